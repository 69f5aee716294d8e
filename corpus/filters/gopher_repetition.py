"""Gopher's repetition rules: reject documents that repeat lines, paragraphs or n-grams.

Rae et al. 2021, "Scaling Language Models: Methods, Analysis & Insights from Training Gopher",
Appendix A.1 and Table A1 (the defaults below). The measures follow DataTrove's
`filters/gopher_repetition_filter.py`, the code FineWeb was produced with:
- paragraphs split on two or more newlines (of the stripped text), lines on one or more; a
  duplicate is every occurrence after the first, and the character fractions sum the lengths of
  those occurrences over `len(text)`;
- top n-gram (n = 2, 3, 4): the length of the most frequent n-gram (ties: the first seen),
  words joined by single spaces, times its count, over `len(text)`;
- duplicated n-grams (n = 5..10): scanning left to right, an n-gram seen before adds its
  characters (words concatenated, no spaces) and the scan jumps past it, so overlapping
  repeats are not counted twice; n-grams skipped over are not remembered.

Deviations from DataTrove:
- Words are whitespace tokens (`str.split()`) where DataTrove uses nltk's `word_tokenize`,
  which makes punctuation separate tokens; the fractions differ slightly.
- When no n-gram occurs twice, the top n-gram fraction is 0. DataTrove takes the first n-gram
  then, which is repetition of nothing and fails texts of a few words ("One line about
  rivers." is 28% of a 79-character text) under `top_4gram` rather than under the rule they
  fail, `gopher_quality:too_few_words`. On pages of ordinary length the two agree, as the
  first n-gram is a small fraction of them.

Cost: linear in the words. Each n-gram is one integer key built from the (n-1)-gram's, cheaper
to build and hash than joined strings; character counts come from prefix sums of word lengths;
once no n-gram repeats for some n, all larger n are 0 without further work. All signals of a
1,600-word page take 1.7 ms (DataTrove's string n-grams: 4.1 ms), of 100,000 words 0.1 s.
"""

import re
from collections import Counter
from collections.abc import Mapping
from itertools import accumulate
from typing import Any, ClassVar

from corpus.filters.checks import Check

DUP_PARAGRAPHS = "gopher_rep:dup_paragraphs"
DUP_PARAGRAPH_CHARS = "gopher_rep:dup_paragraph_chars"
DUP_LINES = "gopher_rep:dup_lines"
DUP_LINE_CHARS = "gopher_rep:dup_line_chars"
TOP_NGRAM_SIZES = (2, 3, 4)
DUP_NGRAM_SIZES = (5, 6, 7, 8, 9, 10)
TOP_NGRAM = {n: f"gopher_rep:top_{n}gram" for n in TOP_NGRAM_SIZES}
DUP_NGRAM = {n: f"gopher_rep:dup_{n}gram" for n in DUP_NGRAM_SIZES}

_PARAGRAPH_BREAK = re.compile(r"\n{2,}")
_LINE_BREAK = re.compile(r"\n+")


class GopherRepetitionFilter:
    """Reject when a repetition fraction exceeds its Table A1 threshold (`>`: a value exactly at
    the threshold is kept), checked in the order of `RULES`; None switches a check off."""

    name = "gopher_rep"
    SIGNALS: ClassVar[dict[str, type]] = {
        "gopher_rep_dup_para_frac": float,  # duplicate paragraphs / paragraphs
        "gopher_rep_dup_para_char_frac": float,  # None for empty text
        "gopher_rep_dup_line_frac": float,
        "gopher_rep_dup_line_char_frac": float,
        **{f"gopher_rep_top_{n}gram_char_frac": float for n in TOP_NGRAM_SIZES},
        **{f"gopher_rep_dup_{n}gram_char_frac": float for n in DUP_NGRAM_SIZES},
    }
    RULES: ClassVar[tuple[str, ...]] = (
        DUP_PARAGRAPHS,
        DUP_PARAGRAPH_CHARS,
        DUP_LINES,
        DUP_LINE_CHARS,
        *TOP_NGRAM.values(),
        *DUP_NGRAM.values(),
    )
    # Signal `gopher_rep_X` is held to parameter `X`; see corpus/filters/checks.py.
    CHECKS: ClassVar[tuple[Check, ...]] = tuple(
        Check(rule, signal, signal.removeprefix("gopher_rep_"), ">")
        for signal, rule in zip(SIGNALS, RULES, strict=True)
    )

    def __init__(
        self,
        *,
        dup_para_frac: float | None = 0.30,
        dup_para_char_frac: float | None = 0.20,
        dup_line_frac: float | None = 0.30,
        dup_line_char_frac: float | None = 0.20,
        top_2gram_char_frac: float | None = 0.20,
        top_3gram_char_frac: float | None = 0.18,
        top_4gram_char_frac: float | None = 0.16,
        dup_5gram_char_frac: float | None = 0.15,
        dup_6gram_char_frac: float | None = 0.14,
        dup_7gram_char_frac: float | None = 0.13,
        dup_8gram_char_frac: float | None = 0.12,
        dup_9gram_char_frac: float | None = 0.11,
        dup_10gram_char_frac: float | None = 0.10,
    ):
        limits = (
            dup_para_frac,
            dup_para_char_frac,
            dup_line_frac,
            dup_line_char_frac,
            top_2gram_char_frac,
            top_3gram_char_frac,
            top_4gram_char_frac,
            dup_5gram_char_frac,
            dup_6gram_char_frac,
            dup_7gram_char_frac,
            dup_8gram_char_frac,
            dup_9gram_char_frac,
            dup_10gram_char_frac,
        )
        # SIGNALS, RULES and these limits are in the same order: (signal, limit, rule) per check.
        self.checks = tuple(
            (signal, limit, rule)
            for signal, rule, limit in zip(self.SIGNALS, self.RULES, limits, strict=True)
            if limit is not None
        )

    def signals(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        text = doc.get("text") or ""
        n_chars = len(text)

        def frac(chars: int) -> float | None:
            return chars / n_chars if n_chars else None

        paragraphs = _PARAGRAPH_BREAK.split(text.strip())  # never empty: "".split gives [""]
        para_dups, para_dup_chars = _duplicates(paragraphs)
        lines = _LINE_BREAK.split(text)
        line_dups, line_dup_chars = _duplicates(lines)
        out: dict[str, Any] = {
            "gopher_rep_dup_para_frac": para_dups / len(paragraphs),
            "gopher_rep_dup_para_char_frac": frac(para_dup_chars),
            "gopher_rep_dup_line_frac": line_dups / len(lines),
            "gopher_rep_dup_line_char_frac": frac(line_dup_chars),
        }

        words = text.split()
        # Each word becomes an id < base, and the n-gram at i the integer ids[i..i+n) in base
        # `base`: unique per n-gram, cheap to hash, and built from the (n-1)-gram keys.
        vocab: dict[str, int] = {}
        ids = [vocab.setdefault(w, len(vocab)) for w in words]
        base = len(vocab) + 1
        prefix = list(accumulate(map(len, words), initial=0))  # chars of words[i:j]: prefix[j] - prefix[i]
        keys = ids
        repeats = True  # whether some (n-1)-gram occurs twice
        for n in range(2, DUP_NGRAM_SIZES[-1] + 1):
            if n in DUP_NGRAM_SIZES and not repeats:
                # A repeated n-gram contains a repeated (n-1)-gram: once none repeats, none will.
                out[f"gopher_rep_dup_{n}gram_char_frac"] = frac(0)
                continue
            keys = [k * base + x for k, x in zip(keys, ids[n - 1 :], strict=False)]
            if n in TOP_NGRAM_SIZES:
                chars, repeats = _top_ngram(keys, n, prefix)
                out[f"gopher_rep_top_{n}gram_char_frac"] = frac(chars)
            else:
                chars = _duplicated_ngram_chars(keys, n, prefix)
                repeats = chars > 0
                out[f"gopher_rep_dup_{n}gram_char_frac"] = frac(chars)
        return out

    def decide(self, signals: Mapping[str, Any]) -> str | None:
        for signal, limit, rule in self.checks:
            value = signals[signal]
            if value is not None and value > limit:
                return rule
        return None

    def filter(self, doc: Mapping[str, Any]) -> str | None:
        return self.decide(self.signals(doc))


def _duplicates(items: list[str]) -> tuple[int, int]:
    """Occurrences after the first of each item, and their total length."""
    counts = Counter(items)
    chars = sum((c - 1) * len(item) for item, c in counts.items() if c > 1)
    return len(items) - len(counts), chars


def _top_ngram(keys: list[int], n: int, prefix: list[int]) -> tuple[int, bool]:
    """Characters in all occurrences of the most frequent n-gram (ties: the first seen), its
    words joined by spaces as in DataTrove, 0 if none occurs twice; and whether one does."""
    if not keys:
        return 0, False
    key, count = Counter(keys).most_common(1)[0]
    if count == 1:
        return 0, False  # nothing repeats (DataTrove would count the first n-gram)
    i = keys.index(key)
    return (prefix[i + n] - prefix[i] + n - 1) * count, True


def _duplicated_ngram_chars(keys: list[int], n: int, prefix: list[int]) -> int:
    """DataTrove's `find_all_duplicate`: characters (words concatenated) of n-grams seen before,
    jumping past each one found; n-grams jumped over are not remembered."""
    if len(set(keys)) == len(keys):
        return 0  # nothing repeats: skip the scan, as for most documents at n >= 5
    seen: set[int] = set()
    chars = i = 0
    end = len(keys)
    while i < end:
        key = keys[i]
        if key in seen:
            chars += prefix[i + n] - prefix[i]
            i += n
        else:
            seen.add(key)
            i += 1
    return chars

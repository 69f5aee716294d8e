"""Gopher's quality rules: reject documents that do not read like natural-language prose.

Rae et al. 2021, "Scaling Language Models: Methods, Analysis & Insights from Training Gopher",
Appendix A.1 ("Quality filtering"): keep a document with 50 to 100,000 words, a mean word length
of 3 to 10 characters, at most 0.1 `#` or ellipses per word, at most 90% of lines starting with
a bullet, at most 30% of lines ending with an ellipsis, at least 80% of words containing a letter
and at least two of the stop words "the, be, to, of, and, that, have, with". The formulation
follows DataTrove's `filters/gopher_quality_filter.py`, the code FineWeb was produced with.

Deviations from DataTrove:
- Words are whitespace tokens (`str.split()`) with surrounding punctuation stripped, and a token
  that is all punctuation is not a word; DataTrove uses nltk's `word_tokenize`, which splits
  punctuation off into tokens it then leaves out of the count. No tokenizer download; counts
  differ at the margin (nltk splits "don't" into "do" and "n't", we keep one word).
- The alphabetic-word ratio is over those words. DataTrove divides the count of tokens with a
  letter (all tokens, punctuation included) by the count of non-punctuation tokens, so
  punctuation-dense prose loses a few points there and not here.
- Stop words are matched case-insensitively ("The" counts), and every occurrence counts, as in
  DataTrove (the paper's "at least two of" could also mean two distinct words).
- DataTrove's `max_non_alpha_words_ratio` is a minimum ratio of words *with* a letter; here it
  is named for what it is, `min_alpha_words_ratio`.
"""

import string
from collections.abc import Mapping
from typing import Any, ClassVar

from corpus.filters.checks import Check

TOO_FEW_WORDS = "gopher_quality:too_few_words"
TOO_MANY_WORDS = "gopher_quality:too_many_words"
MEAN_WORD_LENGTH = "gopher_quality:mean_word_length"
TOO_MANY_HASHES = "gopher_quality:too_many_hashes"
TOO_MANY_ELLIPSES = "gopher_quality:too_many_ellipses"
TOO_MANY_BULLET_LINES = "gopher_quality:too_many_bullet_lines"
TOO_MANY_ELLIPSIS_LINES = "gopher_quality:too_many_ellipsis_lines"
TOO_FEW_ALPHA_WORDS = "gopher_quality:too_few_alpha_words"
TOO_FEW_STOP_WORDS = "gopher_quality:too_few_stop_words"

STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")  # Rae et al. 2021, A.1
# Stripped from both ends of a token before it counts as a word: ASCII punctuation plus the
# typographic quotes, dashes and marks that web text uses in their place.
PUNCTUATION = string.punctuation + "“”‘’«»„‚‹›…–—•·¡¿"
# The bullets DataTrove counts ("•" and "-"); "*" and other glyphs are left out to match it.
BULLETS = ("•", "-")
ELLIPSES = ("...", "…")


class GopherQualityFilter:
    """Reject on the first failing Gopher quality rule (A.1), in the order of `RULES`.

    Word count bounds compare with `<` / `>`, as do the ratios, so a value exactly at its
    threshold is kept. The `#` and ellipsis counts share `max_symbol_word_ratio`, as in the paper.
    """

    name = "gopher_quality"
    SIGNALS: ClassVar[dict[str, type]] = {
        "gopher_word_count": int,
        "gopher_mean_word_length": float,  # None without words
        "gopher_hash_ratio": float,  # `#` per word
        "gopher_ellipsis_ratio": float,  # "..." and "…" per word
        "gopher_bullet_lines_ratio": float,  # None without lines
        "gopher_ellipsis_lines_ratio": float,
        "gopher_alpha_words_ratio": float,  # words with at least one letter
        "gopher_stop_words": int,  # occurrences, not distinct words
    }
    RULES: ClassVar[tuple[str, ...]] = (
        TOO_FEW_WORDS,
        TOO_MANY_WORDS,
        MEAN_WORD_LENGTH,
        TOO_MANY_HASHES,
        TOO_MANY_ELLIPSES,
        TOO_MANY_BULLET_LINES,
        TOO_MANY_ELLIPSIS_LINES,
        TOO_FEW_ALPHA_WORDS,
        TOO_FEW_STOP_WORDS,
    )
    CHECKS: ClassVar[tuple[Check, ...]] = (  # the order of `decide`; see corpus/filters/checks.py
        Check(TOO_FEW_WORDS, "gopher_word_count", "min_doc_words", "<"),
        Check(TOO_MANY_WORDS, "gopher_word_count", "max_doc_words", ">"),
        Check(MEAN_WORD_LENGTH, "gopher_mean_word_length", "min_avg_word_length", "<"),
        Check(MEAN_WORD_LENGTH, "gopher_mean_word_length", "max_avg_word_length", ">"),
        Check(TOO_MANY_HASHES, "gopher_hash_ratio", "max_symbol_word_ratio", ">"),
        Check(TOO_MANY_ELLIPSES, "gopher_ellipsis_ratio", "max_symbol_word_ratio", ">"),
        Check(TOO_MANY_BULLET_LINES, "gopher_bullet_lines_ratio", "max_bullet_lines_ratio", ">"),
        Check(TOO_MANY_ELLIPSIS_LINES, "gopher_ellipsis_lines_ratio", "max_ellipsis_lines_ratio", ">"),
        Check(TOO_FEW_ALPHA_WORDS, "gopher_alpha_words_ratio", "min_alpha_words_ratio", "<"),
        Check(TOO_FEW_STOP_WORDS, "gopher_stop_words", "min_stop_words", "<"),
    )

    def __init__(
        self,
        *,
        min_doc_words: int | None = 50,
        max_doc_words: int | None = 100_000,
        min_avg_word_length: float | None = 3,
        max_avg_word_length: float | None = 10,
        max_symbol_word_ratio: float | None = 0.1,
        max_bullet_lines_ratio: float | None = 0.9,
        max_ellipsis_lines_ratio: float | None = 0.3,
        min_alpha_words_ratio: float | None = 0.8,
        min_stop_words: int | None = 2,
        stop_words: tuple[str, ...] = STOP_WORDS,
    ):
        self.min_doc_words = min_doc_words
        self.max_doc_words = max_doc_words
        self.min_avg_word_length = min_avg_word_length
        self.max_avg_word_length = max_avg_word_length
        self.max_symbol_word_ratio = max_symbol_word_ratio
        self.max_bullet_lines_ratio = max_bullet_lines_ratio
        self.max_ellipsis_lines_ratio = max_ellipsis_lines_ratio
        self.min_alpha_words_ratio = min_alpha_words_ratio
        self.min_stop_words = min_stop_words
        self.stop_words = frozenset(w.lower() for w in stop_words)

    def signals(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        text = doc.get("text") or ""
        words = [w for w in (t.strip(PUNCTUATION) for t in text.split()) if w]
        n_words = len(words)
        lines = text.splitlines()
        n_lines = len(lines)

        def per_word(count: int) -> float | None:
            return count / n_words if n_words else None

        def per_line(count: int) -> float | None:
            return count / n_lines if n_lines else None

        stop_words = self.stop_words
        return {
            "gopher_word_count": n_words,
            "gopher_mean_word_length": per_word(sum(map(len, words))),
            "gopher_hash_ratio": per_word(text.count("#")),
            "gopher_ellipsis_ratio": per_word(text.count("...") + text.count("…")),
            "gopher_bullet_lines_ratio": per_line(sum(1 for s in lines if s.lstrip().startswith(BULLETS))),
            "gopher_ellipsis_lines_ratio": per_line(sum(1 for s in lines if s.rstrip().endswith(ELLIPSES))),
            # any(map(str.isalpha, w)) keeps the per-character loop in C
            "gopher_alpha_words_ratio": per_word(sum(1 for w in words if any(map(str.isalpha, w)))),
            "gopher_stop_words": sum(1 for w in words if w.lower() in stop_words),
        }

    def decide(self, signals: Mapping[str, Any]) -> str | None:
        n_words = signals["gopher_word_count"]
        if self.min_doc_words is not None and n_words < self.min_doc_words:
            return TOO_FEW_WORDS
        if self.max_doc_words is not None and n_words > self.max_doc_words:
            return TOO_MANY_WORDS
        # A ratio is None when its denominator is zero (no words, no lines): nothing to judge.
        mean = signals["gopher_mean_word_length"]
        if _below(mean, self.min_avg_word_length) or _above(mean, self.max_avg_word_length):
            return MEAN_WORD_LENGTH
        if _above(signals["gopher_hash_ratio"], self.max_symbol_word_ratio):
            return TOO_MANY_HASHES
        if _above(signals["gopher_ellipsis_ratio"], self.max_symbol_word_ratio):
            return TOO_MANY_ELLIPSES
        if _above(signals["gopher_bullet_lines_ratio"], self.max_bullet_lines_ratio):
            return TOO_MANY_BULLET_LINES
        if _above(signals["gopher_ellipsis_lines_ratio"], self.max_ellipsis_lines_ratio):
            return TOO_MANY_ELLIPSIS_LINES
        if _below(signals["gopher_alpha_words_ratio"], self.min_alpha_words_ratio):
            return TOO_FEW_ALPHA_WORDS
        if self.min_stop_words is not None and signals["gopher_stop_words"] < self.min_stop_words:
            return TOO_FEW_STOP_WORDS
        return None

    def filter(self, doc: Mapping[str, Any]) -> str | None:
        return self.decide(self.signals(doc))


def _above(value: float | None, limit: float | None) -> bool:
    return value is not None and limit is not None and value > limit


def _below(value: float | None, limit: float | None) -> bool:
    return value is not None and limit is not None and value < limit

"""C4's rules: remove boilerplate lines, reject pages that are code, placeholder or too short.

Raffel et al. 2020, "Exploring the Limits of Transfer Learning with a Unified Text-to-Text
Transformer", Section 2.2, as implemented in TFDS `c4_utils.py` and DataTrove's
`filters/c4_filters.py` (`C4QualityFilter`). Each line is stripped and then, in this order,
removed if it has a word longer than `max_word_length` (1000), has no terminal punctuation
(off by default, as in FineWeb: `filter_no_terminal_punct=False`), has fewer than
`min_words_per_line` (3) words, mentions "javascript", or holds a cookie/terms policy phrase.
A line that survives the first three rules and contains "lorem ipsum", or survives the
javascript rule and contains "{", marks the whole document (`c4:lorem_ipsum`,
`c4:curly_bracket`), as in C4, where a "{" in a one-word line does not count. A document with
fewer than `min_num_sentences` (5) sentences in its kept lines is rejected.

The filter never changes text: `clean(text)` returns the kept lines joined by "\\n", and the
annotator passes that on to later steps when the config sets `clean_lines`. Blank lines are
lines too; they fail the min-words rule and are counted in `c4_lines_too_few_words`.

Deviations from DataTrove:
- Sentences are counted with a regex, not nltk's punkt: a sentence ends at a run of `.`, `!`,
  `?` or `…`, optionally followed by closing quotes or brackets, then whitespace. Deterministic
  and download-free; "Dr. Smith" counts as two sentences where punkt sees one.
- Wikipedia citation marks ("[1]", "[edit]") are ignored by the terminal-punctuation check but
  not removed from the text (DataTrove removes them): filters do not change text.
- The bad-words list of C4 is not applied (nor is it in DataTrove's C4QualityFilter).
"""

import re
from collections.abc import Mapping
from typing import Any, ClassVar

from corpus.filters.checks import Check

LOREM_IPSUM = "c4:lorem_ipsum"
CURLY_BRACKET = "c4:curly_bracket"
TOO_FEW_SENTENCES = "c4:too_few_sentences"

END_PUNCTUATION = (".", "?", "!", '"', "'")  # TFDS c4_utils _END_MARKS
ELLIPSIS = "..."
POLICY_SUBSTRINGS = (
    "terms of use",
    "privacy policy",
    "cookie policy",
    "uses cookies",
    "use of cookies",
    "use cookies",
)
_CITATION = re.compile(r"\[\d*]|\[edit]|\[citation needed]")
# Disjoint character classes in sequence, so matching is linear (no backtracking blow-up).
_SENTENCE_END = re.compile(r"[.!?…]+[\"'”’)\]]*\s+")

# Line-removal reasons, in the order they are checked; each is a `c4_lines_<reason>` count.
_REASONS = ("too_long_word", "no_terminal_punct", "too_few_words", "javascript", "policy")


class C4Filter:
    """Reject `c4:lorem_ipsum`, then `c4:curly_bracket`, then `c4:too_few_sentences`.

    `min_num_sentences`, `min_words_per_line` and `max_word_length` switch off with None
    (DataTrove uses -1); the phrase rules with their `filter_*` flags.
    """

    name = "c4"
    SIGNALS: ClassVar[dict[str, type]] = {
        "c4_lines": int,
        "c4_lines_removed": int,
        **{f"c4_lines_{reason}": int for reason in _REASONS},
        "c4_sentences": int,  # in the kept lines
        "c4_lorem_ipsum": bool,
        "c4_curly_bracket": bool,
    }
    RULES: ClassVar[tuple[str, ...]] = (LOREM_IPSUM, CURLY_BRACKET, TOO_FEW_SENTENCES)
    CHECKS: ClassVar[tuple[Check, ...]] = (  # the order of `decide`; see corpus/filters/checks.py
        Check(LOREM_IPSUM, "c4_lorem_ipsum", "filter_lorem_ipsum", "flag"),
        Check(CURLY_BRACKET, "c4_curly_bracket", "filter_curly_bracket", "flag"),
        Check(TOO_FEW_SENTENCES, "c4_sentences", "min_num_sentences", "<"),
    )

    def __init__(
        self,
        *,
        min_num_sentences: int | None = 5,
        min_words_per_line: int | None = 3,
        max_word_length: int | None = 1000,
        filter_no_terminal_punct: bool = False,
        filter_javascript: bool = True,
        filter_policy: bool = True,
        filter_lorem_ipsum: bool = True,
        filter_curly_bracket: bool = True,
    ):
        self.min_num_sentences = min_num_sentences
        self.min_words_per_line = min_words_per_line
        self.max_word_length = max_word_length
        self.filter_no_terminal_punct = filter_no_terminal_punct
        self.filter_javascript = filter_javascript
        self.filter_policy = filter_policy
        self.filter_lorem_ipsum = filter_lorem_ipsum
        self.filter_curly_bracket = filter_curly_bracket

    def _scan(self, text: str) -> tuple[list[str], dict[str, Any]]:
        """The kept lines, and the signals of one pass over the lines."""
        removed = dict.fromkeys(_REASONS, 0)
        kept: list[str] = []
        lines = text.splitlines()
        sentences = 0
        lorem = curly = False
        for raw in lines:
            line = raw.strip()
            words = line.split()
            reason = None
            if (
                self.max_word_length is not None
                and len(line) > self.max_word_length  # cheap test first: no word is longer than its line
                and max(map(len, words), default=0) > self.max_word_length
            ):
                reason = "too_long_word"
            elif self.filter_no_terminal_punct and not _ends_sentence(line):
                reason = "no_terminal_punct"
            elif self.min_words_per_line is not None and len(words) < self.min_words_per_line:
                reason = "too_few_words"
            else:
                lower = line.lower()
                lorem = lorem or "lorem ipsum" in lower
                if self.filter_javascript and "javascript" in lower:
                    reason = "javascript"
                else:
                    curly = curly or "{" in line
                    if self.filter_policy and any(p in lower for p in POLICY_SUBSTRINGS):
                        reason = "policy"
            if reason is None:
                kept.append(line)
                sentences += _count_sentences(line)
            else:
                removed[reason] += 1
        signals = {
            "c4_lines": len(lines),
            "c4_lines_removed": len(lines) - len(kept),
            **{f"c4_lines_{reason}": count for reason, count in removed.items()},
            "c4_sentences": sentences,
            "c4_lorem_ipsum": lorem,
            "c4_curly_bracket": curly,
        }
        return kept, signals

    def signals(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        return self._scan(doc.get("text") or "")[1]

    def clean(self, text: str) -> str:
        """`text` without the removed lines: kept lines, stripped, joined by newlines."""
        return "\n".join(self._scan(text or "")[0]).strip()

    def decide(self, signals: Mapping[str, Any]) -> str | None:
        if self.filter_lorem_ipsum and signals["c4_lorem_ipsum"]:
            return LOREM_IPSUM
        if self.filter_curly_bracket and signals["c4_curly_bracket"]:
            return CURLY_BRACKET
        if self.min_num_sentences is not None and signals["c4_sentences"] < self.min_num_sentences:
            return TOO_FEW_SENTENCES
        return None

    def filter(self, doc: Mapping[str, Any]) -> str | None:
        return self.decide(self.signals(doc))


def _ends_sentence(line: str) -> bool:
    """Ends in . ? ! " or ' but not "...", ignoring trailing citation marks like "[1]"."""
    if line.endswith("]"):
        line = _CITATION.sub("", line)
    return line.endswith(END_PUNCTUATION) and not line.endswith(ELLIPSIS)


def _count_sentences(line: str) -> int:
    return sum(1 for piece in _SENTENCE_END.split(line) if piece)

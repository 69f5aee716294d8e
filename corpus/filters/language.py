"""Keep documents in the wanted languages, identified confidently enough.

FineWeb keeps English with a lid.176 score of at least 0.65 (Penedo et al. 2024, Section 3.2);
CCNet and RedPajama use 0.5. `min_scores` sets a threshold per language, for example lower for
languages lid.176 scores less confidently. The identification itself (`lang`, `lang_score`)
is an annotation computed before this filter (`classifiers/langid.py`).
"""

from collections.abc import Mapping
from typing import Any, ClassVar

from corpus.filters.checks import Check

NOT_ALLOWED = "lang:not_allowed"
LOW_SCORE = "lang:score"


class LanguageFilter:
    """Reject `lang:not_allowed` outside `languages` (None allows all), then `lang:score`
    when the score is below the language's threshold (`min_scores`, else `min_score`) or no
    language was identified."""

    name = "lang"
    SIGNALS: ClassVar[dict[str, type]] = {}  # lang and lang_score are top-level columns
    RULES: ClassVar[tuple[str, ...]] = (NOT_ALLOWED, LOW_SCORE)
    CHECKS: ClassVar[tuple[Check, ...]] = (  # the order of `decide`; see corpus/filters/checks.py
        Check(LOW_SCORE, "lang", "min_score", "missing"),
        Check(NOT_ALLOWED, "lang", "languages", "not in"),
        Check(LOW_SCORE, "lang_score", "min_score", "<", missing_fails=True, override=("min_scores", "lang")),
    )

    def __init__(
        self,
        *,
        languages: tuple[str, ...] | None = ("en",),
        min_score: float | None = 0.65,
        min_scores: dict[str, float] | None = None,
    ):
        self.languages = None if languages is None else frozenset(languages)
        self.min_score = min_score
        self.min_scores = dict(min_scores or {})

    def signals(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        return {"lang": doc.get("lang"), "lang_score": doc.get("lang_score")}

    def decide(self, signals: Mapping[str, Any]) -> str | None:
        lang, score = signals["lang"], signals["lang_score"]
        # No language (empty text, or shorter than classifiers/langid.py's MIN_CHARS) is a failure
        # to identify, not a language outside the list.
        if lang is None and self.min_score is not None:
            return LOW_SCORE
        if self.languages is not None and lang not in self.languages:
            return NOT_ALLOWED
        threshold = self.min_scores.get(lang, self.min_score)
        if threshold is not None and (score is None or score < threshold):
            return LOW_SCORE
        return None

    def filter(self, doc: Mapping[str, Any]) -> str | None:
        return self.decide(self.signals(doc))

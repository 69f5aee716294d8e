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
# LanguagePrefilter's default margin (measured: bench/RESULTS.md, "Shortcuts").
PREFILTER_MARGIN = 0.02
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


class LanguagePrefilter:
    """`lang:not_allowed` before extraction, on a page's cheap text (classifiers/prefilter.py):
    when the best probability lid.176 gives any allowed language is below `margin`, the page is
    confidently outside `languages` and trafilatura is not run for it. A page too short to tell
    (no scores) passes, to full extraction and `LanguageFilter`. `margin=None` or
    `languages=None` switches it off."""

    name = "lang"
    SIGNALS: ClassVar[dict[str, type]] = {
        "lang_prefilter_lang": str,  # lid.176's top label on the cheap text
        "lang_prefilter_score": float,  # its probability
        "lang_prefilter_allowed_score": float,  # the best probability of an allowed language
    }
    RULES: ClassVar[tuple[str, ...]] = (NOT_ALLOWED,)
    CHECKS: ClassVar[tuple[Check, ...]] = (Check(NOT_ALLOWED, "lang_prefilter_allowed_score", "margin", "<"),)

    def __init__(
        self, *, languages: tuple[str, ...] | None = ("en",), margin: float | None = PREFILTER_MARGIN
    ):
        self.languages = None if languages is None else tuple(sorted(set(languages)))
        self.margin = margin

    def signals(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        """From `doc["lang_probabilities"]`: every label's probability on the cheap text, or None."""
        scores = doc.get("lang_probabilities")
        if not scores:
            return dict.fromkeys(self.SIGNALS)
        top = min(scores, key=lambda lang: (-scores[lang], lang))  # ties: the first label by name
        allowed = None if self.languages is None else max(scores.get(lang, 0.0) for lang in self.languages)
        return {
            "lang_prefilter_lang": top,
            "lang_prefilter_score": scores[top],
            "lang_prefilter_allowed_score": allowed,
        }

    def decide(self, signals: Mapping[str, Any]) -> str | None:
        score = signals["lang_prefilter_allowed_score"]
        if self.margin is None or score is None:
            return None
        return NOT_ALLOWED if score < self.margin else None

    def filter(self, doc: Mapping[str, Any]) -> str | None:
        return self.decide(self.signals(doc))

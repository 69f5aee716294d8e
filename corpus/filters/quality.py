"""Keep documents the quality classifier scores high enough.

DCLM (Li et al. 2024, arXiv 2406.11794, "Model-based quality filtering") keeps the top 10% of
documents by the fastText P(hq) score: a fraction, turned into a score threshold over the whole
pool. The annotated stage computes that threshold over the run's kept documents
(jobs/annotated.py) and passes it here; a fixed `threshold` from the config is used as is. The
score itself (`quality`, a top-level column) is computed before this filter, on the stored text
(classifiers/quality.py).
"""

from collections.abc import Mapping
from typing import Any, ClassVar

from corpus.filters.checks import Check

LOW = "quality:low"


class QualityFilter:
    """Reject `quality:low` when the score is below `threshold` (None: no rule; a document
    without a score, an empty one, is left to the other rules)."""

    name = "quality"
    SIGNALS: ClassVar[dict[str, type]] = {}  # quality is a top-level column
    RULES: ClassVar[tuple[str, ...]] = (LOW,)
    CHECKS: ClassVar[tuple[Check, ...]] = (Check(LOW, "quality", "threshold", "<"),)  # filters/checks.py

    def __init__(self, *, threshold: float | None = None):
        self.threshold = threshold

    def signals(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        return {"quality": doc.get("quality")}

    def decide(self, signals: Mapping[str, Any]) -> str | None:
        score = signals["quality"]
        if self.threshold is None or score is None:
            return None
        return LOW if score < self.threshold else None

    def filter(self, doc: Mapping[str, Any]) -> str | None:
        return self.decide(self.signals(doc))

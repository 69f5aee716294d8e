"""Annotate a document with every filter's signals, then decide: the spine of the annotated stage.

All signals are computed for every document, also after a rule has failed, so the Parquet
`signals` column holds each value and a user can re-threshold in SQL; `reject` is the first
failing rule in step order. A step may also clean: C4's line rules remove lines, and the
steps after it see the cleaned text, as in the FineWeb pipeline (C4 before FineWeb's own
filters). PII redaction runs on the text that is stored; the quality classifier scores
that stored text last, and its `quality:low` rule, when the threshold is known here, comes
after every other rule.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from classifiers.langid import load_model, predict_language
from classifiers.quality import cross_fold, load_quality_model, score_text
from classifiers.quality_data import row_group
from corpus.filters.quality import QualityFilter
from corpus.pii import PiiRedactor


class Filter(Protocol):
    name: str

    def signals(self, doc: Mapping[str, Any]) -> dict[str, Any]: ...
    def decide(self, signals: Mapping[str, Any]) -> str | None: ...


@dataclass(frozen=True)
class Step:
    filter: Filter
    clean: bool = False  # replace the text by `filter.clean(text)` for the steps after this one


@dataclass(frozen=True)
class Annotator:
    steps: tuple[Step, ...]
    redactor: PiiRedactor | None
    lid_model: str  # path of lid.176.ftz as seen by the process that annotates
    # Quality classifiers, as seen by the annotating process; none: no score. With several, a
    # document is scored by the model of its site's fold (cross-fitting, jobs/annotated.py).
    quality_models: tuple[str, ...] = ()
    quality: QualityFilter | None = None  # the `quality:low` rule, when its threshold is known
    seed: int = 0  # of the folds

    def __call__(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        text = doc.get("text") or ""
        lang, lang_score = predict_language(load_model(self.lid_model), text)
        view = {**doc, "text": text, "lang": lang, "lang_score": lang_score}
        signals: dict[str, Any] = {}
        reject = None
        for step in self.steps:
            values = step.filter.signals(view)
            signals.update(values)
            reject = reject or step.filter.decide(values)
            if step.clean:
                view["text"] = step.filter.clean(view["text"])
        pii = None
        if self.redactor is not None:
            view["text"], pii = self.redactor.redact(view["text"])
        # Scored on the stored text, so `refinery classifier apply` on the run gives the same scores.
        if self.quality_models:
            fold = cross_fold(row_group(doc) or "", len(self.quality_models), self.seed)
            view["quality"] = score_text(load_quality_model(self.quality_models[fold]), view["text"])
        if self.quality is not None:
            reject = reject or self.quality.decide(self.quality.signals(view))
        return {**view, "signals": signals, "pii": pii, "reject": doc.get("reject") or reject}

"""The documents stage's gate: the annotated stage's cheap rules, decided before the costly work.

Every HTML page used to pay trafilatura's extraction (17 CPU ms) and htmldate's date search (7.5)
before the annotated stage dropped most of them (72% of crawl-sample is not English). The gate
(corpus/extract.py `Gate`) runs, in the documents stage:
1. the URL rules (corpus/filters/url.py), before the page is even decoded: a rejected page is a
   row with its `url:*` reason and URL signals, and no extraction;
2. the language prefilter (corpus/filters/language.py `LanguagePrefilter`) on the page's cheap
   text (`cheap_text`): a page whose best allowed-language probability is below the margin is
   `lang:not_allowed` with its prefilter signals, without trafilatura;
3. after extraction, `keeps`: the annotated stage's own language rule on the extracted text, so
   that htmldate's date is searched only for a text that can still be kept.
Annotate, then decide, as in the annotated stage: every signal of a rule is computed before it
decides. The annotated stage still applies all its rules to the pages that pass: the gate only
moves the rejection of pages it is sure about earlier.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from classifiers.langid import language_probabilities, load_model, predict_language
from corpus.extract import Extracted
from corpus.filters.language import LanguageFilter, LanguagePrefilter
from corpus.filters.url import UrlFilter


@dataclass(frozen=True)
class Prefilter:
    url: UrlFilter | None  # None: the URL rules are left to the annotated stage
    prefilter: LanguagePrefilter | None  # None: every page is extracted
    language: LanguageFilter | None  # the annotated stage's language rule, for `keeps`; None: all
    lid_model: str | None  # lid.176 as seen by the process that reads the pages

    def url_rejected(self, doc: Mapping[str, Any]) -> Extracted | None:
        """The row of a page the URL rules reject (`doc` has `url` and `domain`), else None."""
        if self.url is None:
            return None
        signals = self.url.signals(doc)
        reject = self.url.decide(signals)
        return None if reject is None else Extracted(None, None, None, reject, signals=signals)

    def page(self, cheap: str) -> Extracted | None:
        if self.prefilter is None:
            return None
        scores = language_probabilities(load_model(self.lid_model), cheap)
        signals = self.prefilter.signals({"lang_probabilities": scores})
        reject = self.prefilter.decide(signals)
        return None if reject is None else Extracted(None, None, None, reject, signals=signals)

    def keeps(self, text: str) -> bool:
        if self.language is None:
            return True
        lang, score = predict_language(load_model(self.lid_model), text)
        return self.language.decide({"lang": lang, "lang_score": score}) is None

"""What every filter class promises the annotator, the Parquet schema and the config."""

import inspect
import pickle

import pydantic
import pytest

from corpus.filters.c4 import C4Filter
from corpus.filters.fineweb import FineWebFilter
from corpus.filters.gopher_quality import GopherQualityFilter
from corpus.filters.gopher_repetition import GopherRepetitionFilter
from corpus.filters.language import LanguagePrefilter
from corpus.filters.url import UrlFilter

FILTERS = (UrlFilter, LanguagePrefilter, GopherRepetitionFilter, GopherQualityFilter, C4Filter, FineWebFilter)
PREFIX = {
    "url": "url_",
    "lang": "lang_prefilter_",  # LanguageFilter's lang and lang_score are columns: no signals
    "gopher_rep": "gopher_rep_",
    "gopher_quality": "gopher_",
    "c4": "c4_",
    "fineweb": "fineweb_",
}
DOC = {
    "url": "https://www.example.org/a/b?c=d",
    "domain": "example.org",
    "text": "A line of text, with the words in it.\n\n• a bullet...\nA line of text, with the words in it.",
}


def test_signal_names_are_globally_unique():
    names = [name for cls in FILTERS for name in cls.SIGNALS]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("cls", FILTERS)
def test_signals_are_prefixed_with_the_family_and_of_arrow_types(cls):
    assert all(name.startswith(PREFIX[cls.name]) for name in cls.SIGNALS)
    assert set(cls.SIGNALS.values()) <= {int, float, bool, str}
    assert all(rule.startswith(cls.name + ":") for rule in cls.RULES)


@pytest.mark.parametrize("cls", FILTERS)
def test_signal_values_have_their_declared_types(cls):
    signals = cls().signals(DOC)
    assert set(signals) == set(cls.SIGNALS)
    for name, value in signals.items():
        kind = cls.SIGNALS[name]
        assert value is None or type(value) is kind or (kind is float and type(value) is int), name


@pytest.mark.parametrize("cls", FILTERS)
def test_parameters_are_keyword_only_and_their_defaults_validate(cls):
    fields = {}
    for name, param in inspect.signature(cls.__init__).parameters.items():
        if name == "self":
            continue
        assert param.kind is inspect.Parameter.KEYWORD_ONLY, name
        fields[name] = (param.annotation, param.default)
    model = pydantic.create_model(
        "Params", __config__=pydantic.ConfigDict(extra="forbid", frozen=True), **fields
    )
    params = model.model_validate(model().model_dump(mode="json"))
    rebuilt = cls(**params.model_dump())
    assert rebuilt.filter(DOC) == cls().filter(DOC)


@pytest.mark.parametrize("cls", FILTERS)
def test_filter_pickles_and_decides_the_same(cls):
    f = cls()
    assert pickle.loads(pickle.dumps(f)).filter(DOC) == f.filter(DOC)


@pytest.mark.parametrize("cls", FILTERS)
def test_decide_returns_a_declared_rule_or_none(cls):
    for text in ("", "x", DOC["text"]):
        rule = cls().filter({**DOC, "text": text})
        assert rule is None or rule in cls.RULES

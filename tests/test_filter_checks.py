"""Every filter's CHECKS (what `refinery why` shows) agree with its `decide()` (what the pipeline runs)."""

import inspect
import random

import pytest

from corpus.filters.c4 import C4Filter
from corpus.filters.checks import Check, evaluate, first_failure
from corpus.filters.fineweb import FineWebFilter
from corpus.filters.gopher_quality import GopherQualityFilter
from corpus.filters.gopher_repetition import GopherRepetitionFilter
from corpus.filters.language import LanguageFilter, LanguagePrefilter
from corpus.filters.quality import QualityFilter
from corpus.filters.url import UrlFilter

FILTERS = (
    UrlFilter,
    LanguagePrefilter,
    LanguageFilter,
    GopherRepetitionFilter,
    GopherQualityFilter,
    C4Filter,
    FineWebFilter,
    QualityFilter,
)
TOP_LEVEL = {"lang", "lang_score", "quality"}  # columns, not fields of the signals struct
WORDS = (
    "the of and to with have be that river stone a x supercalifragilistic 42 # ... — • lorem ipsum {".split()
)
URLS = (
    "https://www.example.org/a/b?c=d",
    "https://sub.brazzers.com/x",  # blocklisted through a parent domain
    "https://example.com/camgirl/1",  # banned word (and subword)
    "https://example.com/adult-amateur-babes",  # soft-banned words
    "https://example.com/livesexcam",  # banned subword only
    "",
)
TRIALS = 1500


def random_doc(rng: random.Random) -> dict:
    lines = []
    for _ in range(rng.choice((0, 1, 3, 8, 20, 40))):
        if lines and rng.random() < 0.2:
            lines.append(rng.choice(lines))  # a repeated line
            continue
        line = " ".join(rng.choices(WORDS[:12] if rng.random() < 0.6 else WORDS, k=rng.randint(0, 18)))
        line = rng.choice(("", "• ", "- ")) + line + rng.choice(("", ".", "...", "!", '"'))
        lines.append(line)
    return {
        "url": rng.choice(URLS),
        "domain": None,
        "text": rng.choice(("\n", "\n\n")).join(lines),
        "lang": rng.choice((None, "en", "de", "fr")),
        "lang_score": rng.choice((None, 0.3, 0.65, 0.8, 0.99)),
        "quality": rng.choice((None, 0.0, 0.2, 0.5, 0.9)),
        # lid.176 on the cheap text (LanguagePrefilter): none, outside `en`, near the margin, `en`
        "lang_probabilities": rng.choice(
            (None, {"de": 0.97, "en": 0.01}, {"fr": 0.9, "en": 0.1}, {"en": 1.0})
        ),
    }


def random_params(cls: type, signals: dict, rng: random.Random) -> dict:
    """Defaults, with every threshold drawn from: off, its default, this document's value (the
    boundary), and either side of it."""
    defaults = {
        name: p.default
        for name, p in inspect.signature(cls.__init__).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }
    params = dict(defaults)
    for check in cls.CHECKS:
        value, default = signals.get(check.signal), defaults[check.param]
        if check.op == "flag":
            params[check.param] = rng.random() < 0.8
        elif check.op == "not in":
            params[check.param] = rng.choice((None, ("en",), ("en", "de")))
        elif check.op in ("<", "<=", ">", ">=") and not isinstance(value, bool):
            pool = [None, default]
            if value is not None:
                step = 1 if isinstance(default, int) else 0.01
                pool += [value, value - step, value + step]
            params[check.param] = rng.choice(pool)
    if cls is FineWebFilter:
        params["line_punct_exclude_zero"] = rng.random() < 0.5
    if cls is LanguageFilter:
        params["min_scores"] = rng.choice((None, {"de": 0.8}, {"en": signals["lang_score"]}))
    return params


def test_every_check_names_a_declared_signal_a_parameter_and_a_rule():
    for cls in FILTERS:
        params = inspect.signature(cls.__init__).parameters
        for check in cls.CHECKS:
            assert check.signal in cls.SIGNALS or check.signal in TOP_LEVEL, (cls.__name__, check)
            assert params[check.param].kind is inspect.Parameter.KEYWORD_ONLY, (cls.__name__, check)
            assert check.rule in cls.RULES, (cls.__name__, check)
        assert {c.rule for c in cls.CHECKS} == set(cls.RULES), cls.__name__


@pytest.mark.parametrize("cls", FILTERS, ids=lambda c: c.__name__)
def test_first_failing_check_is_the_rule_decide_returns(cls):
    rng = random.Random(7)
    seen = set()
    for _ in range(TRIALS):
        doc = random_doc(rng)
        signals = cls().signals(doc)
        params = random_params(cls, signals, rng)
        expected = cls(**params).decide(signals)
        assert first_failure(evaluate(cls.CHECKS, signals, params)) == expected, (signals, params)
        seen.add(expected)
    assert seen == {*cls.RULES, None}  # every rule fired at least once, and some documents passed


def test_a_value_exactly_at_the_threshold_follows_the_comparison():
    at_least = Check("f:low", "s", "min", "<")
    at_most = Check("f:ratio", "s", "thr", "<=")
    assert not at_least.fails(5, 5, {}) and at_least.fails(4, 5, {})
    assert at_most.fails(0.12, 0.12, {}) and not at_most.fails(0.13, 0.12, {})


def test_an_unknown_comparison_is_an_error_naming_the_allowed_ones():
    with pytest.raises(ValueError, match="allowed: <, <=, >, >="):
        Check("f:x", "s", "p", "==")

"""Which signal each filter rule compares with which threshold: a declaration `refinery why` reads.

Every filter class lists its `CHECKS`, in the order its `decide()` tests them. A check names
its rule, the signal, the keyword parameter of the class (= the config key) holding the
threshold, and how they compare: the rule fails when `signal OP threshold`. `evaluate` applies
the checks to a row's stored signals and the run's configured parameters, so `refinery why`
shows each value against its threshold without a second copy of the rules;
tests/test_filter_checks.py asserts, for every filter, that the first failing check is the rule
`decide()` returns, on generated signals and thresholds (boundaries, None, switched-off rules).

`decide()` stays the code that runs in the pipeline, written out per filter: the few special
cases (FineWeb's `line_punct_exclude_zero`, the language filter's per-language scores and its
"no language" rule) read better there than as options of a generic engine.

Operators (`value OP threshold` fails the rule):
- `<`, `<=`, `>`, `>=`: a threshold of None switches the rule off; a value of None (a ratio with
  a zero denominator) passes, unless the check sets `missing_fails`.
- `flag`: the threshold is an on/off switch; the rule fails when it is on and the value is true.
- `found`: the value names what matched (a blocklisted domain, a banned word); the parameter is
  the list it came from, for display only.
- `not in`: the value is not among the threshold's entries (None allows everything).
- `missing`: the value is None while the threshold is set (no language identified, yet a
  minimum score is configured).
"""

import operator
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_COMPARE = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
OPS = (*_COMPARE, "flag", "found", "not in", "missing")


@dataclass(frozen=True)
class Check:
    rule: str
    signal: str  # a key of the signals struct, or a top-level column (lang, lang_score, quality)
    param: str  # the filter's keyword parameter, i.e. the key under annotated.<step> in the config
    op: str
    missing_fails: bool = False  # a None value fails the rule (instead of passing)
    # (dict parameter, signal): a per-key threshold, e.g. min_scores[lang] in place of min_score
    override: tuple[str, str] | None = None
    # a bool parameter that, when true, exempts a value of exactly 0 (FineWeb's line_punct_exclude_zero)
    zero_exempt: str | None = None

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ValueError(f"{self.rule}: unknown comparison {self.op!r}; allowed: {', '.join(OPS)}")

    def threshold(self, signals: Mapping[str, Any], params: Mapping[str, Any]) -> Any:
        """The threshold this document is held to, from the filter's parameters."""
        if self.override is not None:
            per_key = params.get(self.override[0]) or {}
            key = signals.get(self.override[1])
            if key in per_key:
                return per_key[key]
        return params.get(self.param)

    def fails(self, value: Any, threshold: Any, params: Mapping[str, Any]) -> bool:
        if self.op == "flag":
            return bool(threshold) and bool(value)
        if self.op == "found":
            return value is not None
        if self.op == "missing":
            return value is None and threshold is not None
        if threshold is None:
            return False
        if self.op == "not in":
            return value not in threshold
        if value is None:
            return self.missing_fails
        if self.zero_exempt is not None and params.get(self.zero_exempt) and value == 0:
            return False
        return _COMPARE[self.op](value, threshold)


@dataclass(frozen=True)
class Verdict:
    check: Check
    value: Any
    threshold: Any
    failed: bool


def evaluate(
    checks: tuple[Check, ...], signals: Mapping[str, Any], params: Mapping[str, Any]
) -> list[Verdict]:
    """Every check of a filter on one document's signals, in `decide()` order."""
    verdicts = []
    for check in checks:
        value = signals.get(check.signal)
        threshold = check.threshold(signals, params)
        verdicts.append(Verdict(check, value, threshold, check.fails(value, threshold, params)))
    return verdicts


def first_failure(verdicts: list[Verdict]) -> str | None:
    """The rule of the first failing check: what `decide()` returns."""
    return next((v.check.rule for v in verdicts if v.failed), None)

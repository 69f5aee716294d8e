"""`refinery mixture fit` (jobs/mixture.py) and its laws (corpus/mixlaw.py)."""

import json
import random
from pathlib import Path

import numpy as np
import pytest
import yaml
from test_ablate import TINY_PROXY

from corpus import mixlaw
from corpus.manifest import write_json_atomic
from jobs.config import MixedConfig, PipelineConfig
from jobs.mixture import (
    DEFAULT_CONFIG,
    MixtureConfig,
    fit_mixture,
    format_table,
    load_mixture_config,
    mixture_stream,
)
from jobs.stage import Stage
from training.testing import SAMPLE_TEXT, text_documents

NATURAL = np.array([0.5, 0.3, 0.2])


def simplex(n: int, seed: int = 0) -> np.ndarray:
    return mixlaw.draw_mixtures(NATURAL, np.ones(3), n, seed, concentration=4.0)


def test_a_linear_law_is_recovered_and_predicts_held_out_mixtures_exactly():
    w = simplex(20)
    losses = 1.0 + 0.5 * w[:, 0] - 0.3 * w[:, 1]  # the last bucket's weight is implied
    law = mixlaw.fit(w, losses, "linear")
    assert law.coef == pytest.approx([1.0, 0.5, -0.3])
    loo = mixlaw.leave_one_out(w, losses, "linear")
    assert loo == pytest.approx(losses) and mixlaw.spearman(loo, losses) == pytest.approx(1.0)


def test_a_log_linear_law_is_recovered_with_its_irreducible_loss():
    w = simplex(30)
    losses = 0.8 + 0.5 * np.exp(1.2 * w[:, 0] - 0.7 * w[:, 1])
    law = mixlaw.fit(w, losses, "loglinear")
    grid_step = losses.min() / mixlaw.C_GRID
    assert abs(law.c - 0.8) <= grid_step
    assert np.abs(law.predict(w) - losses).max() < 0.01
    # the linear law cannot bend: its error is larger on the same points
    linear_error = np.abs(mixlaw.fit(w, losses, "linear").predict(w) - losses).max()
    assert linear_error > np.abs(law.predict(w) - losses).max()


def test_draws_sum_to_one_respect_the_caps_and_repeat_by_seed():
    caps = np.array([0.6, 0.5, 0.35])
    w = mixlaw.draw_mixtures(NATURAL, caps, 50, seed=3, concentration=4.0)
    assert w.shape == (50, 3) and np.allclose(w.sum(axis=1), 1.0) and np.all(w <= caps)
    assert np.array_equal(w, mixlaw.draw_mixtures(NATURAL, caps, 50, seed=3, concentration=4.0))
    assert not np.array_equal(w, mixlaw.draw_mixtures(NATURAL, caps, 50, seed=4, concentration=4.0))
    with pytest.raises(ValueError, match="no mixture fits"):
        mixlaw.draw_mixtures(NATURAL, np.array([0.3, 0.3, 0.3]), 5, seed=0, concentration=4.0)


def test_the_best_mixture_is_the_candidate_of_least_predicted_loss():
    law = mixlaw.Law("linear", np.array([1.0, -0.5, 0.0]))  # more of bucket 0 is better
    candidates = simplex(100, seed=1)
    assert mixlaw.best_mixture(law, candidates)[0] == candidates[:, 0].max()


def test_spearman_ranks_ties_together():
    assert mixlaw.spearman(np.array([1, 2, 2, 3]), np.array([10, 20, 20, 30])) == pytest.approx(1.0)
    assert mixlaw.spearman(np.array([1, 2, 3]), np.array([3, 2, 1])) == pytest.approx(-1.0)


def test_a_mixture_stream_takes_each_buckets_share_cycling_small_buckets():
    rng = np.random.default_rng(0)
    encoded = {
        "big": [(f"b{i}", rng.integers(0, 100, 50)) for i in range(40)],  # 2,000 tokens
        "small": [(f"s{i}", rng.integers(100, 200, 50)) for i in range(4)],  # 200 tokens
    }
    stream = mixture_stream(encoded, {"big": 0.6, "small": 0.4}, budget=1000, seed=0)
    small = sum(len(t) for t in stream if t[0] >= 100)
    big = sum(len(t) for t in stream if t[0] < 100)
    assert 400 <= small < 450 and 600 <= big < 650  # quota reached, overshoot under one document
    assert small > 200  # the small bucket's 4 documents, cycled
    again = mixture_stream(encoded, {"big": 0.6, "small": 0.4}, budget=1000, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(stream, again, strict=True))


def test_shipped_config_lists_every_option_with_the_code_defaults():
    shipped = load_mixture_config(DEFAULT_CONFIG).model_dump(mode="json")
    defaults = MixtureConfig().model_dump(mode="json")
    assert {**shipped, "reference_files": None} == {**defaults, "reference_files": None}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run whose mixed stage holds three buckets of different text on 30 sites: Shakespeare's
    verse, the same verse upper-cased, and German-like word salad."""
    rng = random.Random(0)
    run = tmp_path_factory.mktemp("mix_run")
    verse = text_documents(SAMPLE_TEXT.read_text()[:150_000], 1500)
    words = "und der die das ist nicht mit einem für auf werden bei sich auch nach".split()
    rows = []
    for i, text in enumerate(verse[:60]):
        bucket = ("verse", "shout", "salad")[i % 3]
        if bucket == "shout":
            text = text.upper()
        elif bucket == "salad":
            text = " ".join(rng.choice(words) for _ in range(250))
        domain = f"site{i % 30}.example.org"
        rows.append(
            {
                "id": f"d{i:03d}",
                "url": f"https://{domain}/{i}",
                "domain": domain,
                "text": text,
                "bucket": bucket,
                "repeats": 1,
            }
        )
    stage = Stage(str(run), "mixed", "test-config", "test-input")
    stage.prepare()
    stage.commit([stage.write_part(0, rows, counts={})], rows_in=len(rows), started=0.0)
    for name in ("documents",):  # the crawl evaluation sets read the documents stage
        stage = Stage(str(run), name, "test-config", "test-input")
        stage.prepare()
        stage.commit([stage.write_part(0, rows, counts={})], rows_in=len(rows), started=0.0)
    write_json_atomic(run / "run.json", {"config": PipelineConfig().model_dump(mode="json")})
    (run / "reference.txt").write_text(SAMPLE_TEXT.read_text()[150_000:])  # verse no bucket holds
    return run


def tiny_config(run, **overrides) -> MixtureConfig:
    cfg = {
        "mixtures": 5,
        "seeds": [0, 1],
        "candidates": 500,
        "reference_files": [str(run / "reference.txt")],
        **TINY_PROXY,
    }
    return MixtureConfig.model_validate({**cfg, **overrides})


def test_a_small_fit_trains_every_mixture_writes_shares_and_validates(run, tmp_path):
    report = fit_mixture(tiny_config(run), run, tmp_path)
    assert list(report["buckets"]) == ["salad", "shout", "verse"]
    assert sum(b["natural"] for b in report["buckets"].values()) == pytest.approx(1.0)
    assert len(report["mixtures"]) == 5 and all(m["target"]["n"] == 1 for m in report["mixtures"].values())
    assert set(report["fit"]["forms"]) == {"linear", "loglinear"} and report["fit"]["form"] in (
        "linear",
        "loglinear",
    )
    assert set(report["validation"]) == {"fitted", "natural", "uniform"}
    assert all(v["target"]["n"] == 2 for v in report["validation"].values())
    shares = yaml.safe_load((tmp_path / "shares.yaml").read_text())["mixed"]["shares"]
    assert set(shares) == set(report["buckets"]) and 0.99 <= sum(shares.values()) <= 1.0
    MixedConfig(bucket_by=("quality",), shares=shares)  # the mixed stage takes the fragment
    assert all(shares[b] <= report["buckets"][b]["cap"] + 1e-9 for b in shares)
    assert (tmp_path / "fit.png").stat().st_size > 0
    assert json.loads((tmp_path / "mixture.json").read_text())["shares"] == shares
    table = format_table(report)
    assert "leave-one-out Spearman" in table and "fitted" in table
    # the run's report shows a fit written into RUN/mixture
    from jobs.report import Page, learned_mixture

    (run / "mixture").mkdir()
    (run / "mixture" / "mixture.json").write_text((tmp_path / "mixture.json").read_text())
    page = Page(run)
    assert "learned share" in learned_mixture(page) and (Path(page.out) / "learned_mixture.png").is_file()


def test_a_run_with_one_bucket_is_refused(run, tmp_path):
    one = tmp_path / "one"
    rows = [{"id": "x", "domain": "a.org", "text": "word " * 50, "bucket": "all", "repeats": 1}]
    stage = Stage(str(one), "mixed", "test-config", "test-input")
    stage.prepare()
    stage.commit([stage.write_part(0, rows, counts={})], rows_in=1, started=0.0)
    write_json_atomic(one / "run.json", {"config": PipelineConfig().model_dump(mode="json")})
    with pytest.raises(ValueError, match="1 bucket"):
        fit_mixture(tiny_config(run), one, tmp_path / "out")

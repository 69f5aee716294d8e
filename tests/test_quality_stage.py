"""The quality classifier in the annotated stage (Spark, small): threshold, top fraction, run models."""

import logging
import re
import shutil

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from qualitydata import reference_docs, web_docs

import corpus.units
from classifiers import quality_data
from classifiers.quality import TrainParams, cross_fold, load_quality_model, score_texts, train
from classifiers.quality_data import read_docs
from corpus.manifest import read_json, write_json_atomic
from corpus.sampling import hashed_unit
from corpus.units import plan_parts
from jobs import annotated
from jobs.config import load_config
from jobs.stage import Stage

pytestmark = pytest.mark.spark
TRAINED = (
    r"annotated: trained model-\d\.ftz in \d+\.\d s on \d+ hq \+ \d+ cc documents: "
    r"held-out ROC AUC \d\.\d{3}, F1 \d\.\d{3} \(model-\d\.json\)"
)
GERMAN = (
    "Alle Menschen sind frei und gleich an Würde und Rechten geboren. Sie sind mit Vernunft und "
    "Gewissen begabt und sollen einander im Geist der Brüderlichkeit begegnen. "
) * 6
# The heuristic filters would reject the templated web pages for their repetition; off, the
# documents reaching the quality rule are the English ones (German: lang:not_allowed).
OFF = "\n".join(
    f"  {step}:\n    enabled: false"
    for step in ("url", "gopher_repetition", "gopher_quality", "c4", "fineweb")
)


@pytest.fixture(scope="module")
def documents_run(tmp_path_factory):
    """RUN/documents with three parts: reference prose, templated web pages, some German."""
    run = tmp_path_factory.mktemp("docs_run")
    docs = [(d, f"library{i % 6}.example.org") for i, d in enumerate(reference_docs(30))]
    docs += [(d, d.group) for d in web_docs(60)]
    docs += [(type(docs[0][0])(GERMAN, "de"), f"verein{i}.example.de") for i in range(6)]
    rows = [
        {
            "id": f"doc-{i:03d}",
            "url": f"https://{domain}/{i}",
            "domain": domain,
            "text": doc.text,
            "source": "test",
        }
        for i, (doc, domain) in enumerate(docs)
    ]
    stage = Stage(str(run), "documents", "test", "test")
    stage.prepare()
    parts = [stage.write_part(k, rows[k::3], counts={"documents": len(rows[k::3])}) for k in range(3)]
    stage.commit(parts, rows_in=len(rows), started=0.0)
    return run


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "quality.ftz"
    train(reference_docs(60), web_docs(120, seed=5), out, TrainParams(epoch=10, cutoff=2_000, bucket=20_000))
    return str(out)


def annotate(spark, documents_run, tmp_path, quality: str):
    run = tmp_path / "run"
    shutil.copytree(documents_run / "documents", run / "documents")
    config = tmp_path / "c.yaml"
    # a tiny task target: one task per documents part (one row group each), as the resume test needs
    config.write_text(f"spark:\n  task_target_mb: 0.001\nannotated:\n{OFF}\n  quality:\n{quality}\n")
    manifest = annotated.main(spark, load_config(config), str(run))
    rows = duckdb.sql(
        f"SELECT id, domain, text, quality, reject FROM '{run}/annotated/*/*.parquet'"
    ).fetchall()
    return run, manifest, rows


@pytest.fixture(scope="module")
def top_fraction_run(spark, documents_run, model, tmp_path_factory):
    quality = f"    model: {model}\n    keep_top_fraction: 0.3"
    return annotate(spark, documents_run, tmp_path_factory.mktemp("top"), quality)


def test_threshold_rejects_low_scores_after_the_other_rules(spark, documents_run, model, tmp_path):
    _, manifest, rows = annotate(spark, documents_run, tmp_path, f"    model: {model}\n    threshold: 0.5")
    assert all(q is not None for _, _, _, q, _ in rows)  # scored, kept or not
    # Only English documents that pass the language rule reach the quality rule.
    assert (
        {None, "quality:low", "lang:not_allowed"}
        <= {r for *_, r in rows}
        <= {
            None,
            "quality:low",
            "lang:not_allowed",
            "lang:score",
        }
    )
    assert all(q >= 0.5 for _, _, _, q, r in rows if r is None)
    assert all(q < 0.5 for _, _, _, q, r in rows if r == "quality:low")
    assert manifest["quality"]["threshold"] == 0.5 and manifest["rejected"]["quality:low"] > 0


def test_top_fraction_keeps_the_top_of_the_documents_that_pass_the_other_rules(top_fraction_run):
    _, manifest, rows = top_fraction_run
    candidates = [(q, r) for _, _, _, q, r in rows if r in (None, "quality:low")]
    scores = np.array([q for q, _ in candidates], dtype=np.float64)
    threshold = manifest["quality"]["threshold"]
    assert threshold in scores and manifest["quality"]["threshold_method"]["function"] == "percentile_approx"
    assert all((r is None) == (q >= threshold) for q, r in candidates)
    assert sum(r is None for _, r in candidates) == pytest.approx(0.3 * len(candidates), abs=1)


def test_top_fraction_threshold_is_within_the_stated_rank_error(spark, tmp_path):
    """percentile_approx at accuracy A: the threshold's rank among n scores is within n / A of
    the exact quantile's, at the accuracy the stage uses and at a coarse one where that bound bites."""
    scores = np.random.default_rng(0).beta(2, 5, size=5000)
    pq.write_table(pa.table({"quality": scores}), tmp_path / "part-00000.parquet")
    ordered = np.sort(scores)
    for accuracy in (annotated.QUANTILE_ACCURACY, 50):
        for fraction in (0.05, 0.3, 0.9):
            threshold = annotated._top_fraction_threshold(spark, tmp_path, fraction, accuracy)
            rank = int(np.searchsorted(ordered, threshold, side="right"))  # scores <= threshold
            assert threshold in scores
            assert abs(rank - (1 - fraction) * len(scores)) <= len(scores) / accuracy + 1


def test_the_training_sample_is_drawn_by_the_executors_and_capped(spark, documents_run, monkeypatch):
    """The driver opens no documents part: it receives the `cap` documents of smallest hash below
    cap / rows, in input order, and nothing else."""
    inputs = sorted(str(p) for p in (documents_run / "documents" / "kept").glob("*.parquet"))
    everything = [(i, n, d) for i, path in enumerate(inputs) for n, d in enumerate(read_docs([path]))]
    # A rate of 5 / 40 over the 96 documents draws about 12: the cap, not the rate, decides.
    cap, rows = 5, 40
    units = [(hashed_unit(d.key, 0), i, n, d) for i, n, d in everything]
    drawn = sorted(u for u in units if u[0] < cap / rows)
    expected = [d for *_, d in sorted(drawn[:cap], key=lambda t: t[1:3])]
    assert len(everything) == 96 and len(drawn) > cap

    def refuse(*args, **kwargs):
        raise AssertionError("the driver read a documents part")

    units = plan_parts(inputs, 0.001)  # from the footers: one unit per row group
    monkeypatch.setattr(quality_data, "_parquet_docs", refuse)
    monkeypatch.setattr(corpus.units, "unit_batches", refuse)
    assert annotated._negative_sample(spark, units, rows, cap, 0) == expected


def test_interrupted_top_fraction_stage_resumes_with_the_same_threshold(spark, top_fraction_run):
    run, manifest, _ = top_fraction_run
    final = run / "annotated"
    before = {p.relative_to(final): p.read_bytes() for p in final.rglob("*.parquet")}
    # Back to a partial directory with part 1 unfinished, as a crash in pass 2 would leave it.
    partial = run / ".annotated.partial"
    final.rename(partial)
    (partial / "manifest.json").unlink()
    (partial / "_parts" / "part-00001.json").unlink()
    for split in ("kept", "rejected"):
        (partial / split / "part-00001.parquet").unlink()
    key = {k: manifest[k] for k in ("config_hash", "input_fingerprint")}
    write_json_atomic(partial / "_attempt.json", key)
    config = load_config(run.parent / "c.yaml")
    resumed = annotated.main(spark, config, str(run))
    assert resumed["quality"] == manifest["quality"]
    assert {p.relative_to(final): p.read_bytes() for p in final.rglob("*.parquet")} == before
    assert not (final / "._scored.partial").exists()


def test_run_trained_models_score_each_site_with_the_model_that_did_not_see_it(
    spark, documents_run, tmp_path, caplog
):
    caplog.set_level(logging.INFO, logger="jobs.annotated")
    run, manifest, rows = annotate(spark, documents_run, tmp_path, "    enabled: true")
    trained = [r.getMessage() for r in caplog.records if " trained model-" in r.getMessage()]
    # one short line per model, its class counts in words rather than the report's raw dict
    assert [re.fullmatch(TRAINED, line) is not None for line in trained] == [True, True], trained
    models = [m["model"] for m in manifest["quality"]["models"]]
    assert models == [str(run / "annotated" / "quality" / f"model-{k}.ftz") for k in range(2)]
    for path in models:
        assert read_json(path.replace(".ftz", ".json"))["held_out"]["roc_auc"] > 0.5
    loaded = [load_quality_model(path) for path in models]
    for _, domain, text, quality, _ in rows:
        expected = score_texts(loaded[cross_fold(domain, 2, 0)], [text])[0]
        assert quality == pytest.approx(expected, abs=1e-6)


def test_apply_on_the_stored_text_reproduces_the_quality_column(top_fraction_run, model):
    _, _, rows = top_fraction_run
    scores = score_texts(load_quality_model(model), [text for _, _, text, _, _ in rows])
    assert [q for *_, q, _ in rows] == pytest.approx(scores, abs=1e-6)

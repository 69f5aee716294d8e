import logging
import shutil

import pyarrow.parquet as pq
import pytest
import yaml
from mixdata import config, synthetic_docs, write_annotated

from corpus.decontam import NGRAM, NgramIndex, find, read_texts
from corpus.manifest import read_json
from training.synth import ArithmeticConfig, CorpusTaskConfig, LettersConfig, SynthSftConfig, procedural

pytestmark = pytest.mark.spark
PLANTED = "doc-0007"
SYNTH = SynthSftConfig(
    test_documents=0.3,
    arithmetic=ArithmeticConfig(train=20, test=20),
    count_letters=LettersConfig(train=10, test=10),
    spell=LettersConfig(train=5, test=5),
    title_choice=CorpusTaskConfig(train=5, test=5),
    cloze=CorpusTaskConfig(train=10, test=10, passage_chars=300),
)


def rows(run, stage, split):
    return [r for p in sorted((run / stage / split).glob("*.parquet")) for r in pq.read_table(p).to_pylist()]


@pytest.fixture(scope="module")
def planted_problem():
    return procedural(SYNTH)["test"][0]


@pytest.fixture(scope="module")
def mixed_run(spark, tmp_path_factory, planted_problem):
    """RUN/mixed of 80 documents, one holding a test problem of SYNTH's test split, and SYNTH's YAML."""
    from jobs import mixed

    run = tmp_path_factory.mktemp("decontam")
    docs = synthetic_docs(80)
    planted = next(d for d in docs if d["id"] == PLANTED)
    planted["text"] += f"\n\nHomework help: {planted_problem.prompt}\n{planted_problem.solution}\n"
    write_annotated(run, docs)
    mixed.main(spark, config(mixed={"repeats": {"books": 2.0}}), str(run))
    (run.parent / "synth.yaml").write_text(yaml.safe_dump(SYNTH.model_dump(mode="json")))
    return run


def decontam_config(run, **decontam):
    defaults = {"synth_config_files": [str(run.parent / "synth.yaml")], "synth_grounded": False}
    return config(decontam={**defaults, **decontam})


def copy_run(mixed_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(mixed_run, run)
    return run


def test_a_planted_test_problem_is_removed_and_listed(spark, mixed_run, tmp_path):
    from jobs import decontam

    run = copy_run(mixed_run, tmp_path)
    manifest = decontam.main(spark, decontam_config(mixed_run), str(run))
    rejected = rows(run, "decontam", "rejected")
    assert [(r["id"], r["reject"]) for r in rejected] == [(PLANTED, NGRAM)]
    assert PLANTED not in {r["id"] for r in rows(run, "decontam", "kept")}
    (listed,) = manifest["matches"]
    assert all("matches" not in part for part in manifest["parts"])  # listed once, not per part too
    assert listed["id"] == PLANTED and listed["sets"] == ["sft_test:synth.yaml:procedural"]
    assert manifest["matched"]["by_set"]["sft_test:synth.yaml:procedural"] == 1
    assert manifest["matched"]["by_set"]["reference:fiction.jsonl.gz"] == 0


def test_manifest_accounts_for_every_mixed_row(spark, mixed_run, tmp_path):
    from jobs import decontam

    run = copy_run(mixed_run, tmp_path)
    manifest = decontam.main(spark, decontam_config(mixed_run), str(run))
    mixed_kept = rows(run, "mixed", "kept")
    assert manifest["rows"] == {"in": len(mixed_kept), "kept": len(mixed_kept) - 1, "rejected": 1}
    assert manifest["rejected"] == {NGRAM: 1}
    planted = next(r for r in mixed_kept if r["id"] == PLANTED)
    assert manifest["removed"] == {"copies": planted["repeats"], "bytes": len(planted["text"].encode())}
    sets = manifest["index"]["sets"]
    assert sets["sft_test:synth.yaml:procedural"]["texts"] == 35  # 20 + 10 + 5 test problems
    assert sets["reference:fiction.jsonl.gz"]["texts"] == 80
    kept = rows(run, "decontam", "kept")
    assert {(r["id"], r["bucket"], r["repeats"]) for r in kept} == {
        (r["id"], r["bucket"], r["repeats"]) for r in mixed_kept if r["id"] != PLANTED
    }


def test_cut_mode_keeps_the_document_without_the_problem(spark, mixed_run, tmp_path, planted_problem):
    from jobs import decontam

    run = copy_run(mixed_run, tmp_path)
    cfg = decontam_config(mixed_run, mode="cut", cut_margin_chars=0, min_piece_chars=20)
    manifest = decontam.main(spark, cfg, str(run))
    assert manifest["rows"]["rejected"] == 0 and manifest["cut"]["documents"] == 1
    (planted,) = [r for r in rows(run, "decontam", "kept") if r["id"] == PLANTED]
    index = NgramIndex.build({"test": [f"{planted_problem.prompt}\n{planted_problem.solution}"]})
    assert find(index, planted["text"]).ngrams == 0 and planted["text"].startswith("Document 7.")


def test_grounded_test_problems_of_synth_sft_never_reach_the_kept_rows(spark, mixed_run, tmp_path):
    """`refinery synth sft --run RUN` makes its corpus-task test problems from kept documents;
    with synth_grounded the stage regenerates them and drops their documents."""
    from jobs import decontam
    from training.synth import synthesize

    run = copy_run(mixed_run, tmp_path)
    manifest = decontam.main(spark, decontam_config(mixed_run, synth_grounded=True), str(run))
    synthesize(SYNTH, run, tmp_path / "sft")
    test_split = NgramIndex.build({"test": read_texts(tmp_path / "sft" / "test.jsonl")})
    kept = rows(run, "decontam", "kept")
    assert all(find(test_split, r["text"]).ngrams == 0 for r in kept)
    assert manifest["matched"]["by_set"]["sft_test:synth.yaml:grounded"] >= 5
    assert manifest["index"]["sets"]["sft_test:synth.yaml:grounded"]["texts"] >= 5


def test_tokenizer_and_shards_read_decontam_rows_and_rerun_skips(spark, mixed_run, tmp_path):
    from jobs import decontam, shards, tokenizer

    run = copy_run(mixed_run, tmp_path)
    cfg = decontam_config(mixed_run)
    cfg = cfg.model_copy(update={"tokenizer": type(cfg.tokenizer)(vocab_size=400)})
    first = decontam.main(spark, cfg, str(run))
    assert decontam.main(spark, cfg, str(run)) == first  # same config and input: skipped
    assert decontam.corpus_dir(run) == str(run / "decontam")
    tok = tokenizer.main(spark, cfg, str(run))
    assert tok["input_fingerprint"] == first["output_fingerprint"]
    manifest = shards.main(spark, cfg, str(run))
    assert sum(b["documents"] for b in manifest["buckets"].values()) == first["rows"]["kept"] == 79


def test_disabled_stage_removes_its_output_and_later_stages_read_mixed(spark, mixed_run, tmp_path):
    from jobs import decontam

    run = copy_run(mixed_run, tmp_path)
    decontam.main(spark, decontam_config(mixed_run), str(run))
    assert decontam.main(spark, config(decontam={"enabled": False}), str(run)) == {
        "stage": "decontam",
        "enabled": False,
    }
    assert not (run / "decontam").exists() and decontam.corpus_dir(run) == str(run / "mixed")


def test_output_older_than_mixed_is_not_read(spark, mixed_run, tmp_path):
    from corpus.manifest import write_json_atomic
    from jobs import decontam

    run = copy_run(mixed_run, tmp_path)
    decontam.main(spark, decontam_config(mixed_run), str(run))
    mixed_manifest = read_json(run / "mixed" / "manifest.json")
    write_json_atomic(run / "mixed" / "manifest.json", {**mixed_manifest, "output_fingerprint": "changed"})
    assert decontam.corpus_dir(run) == str(run / "mixed")


def test_no_evaluation_set_is_an_error(spark, mixed_run, tmp_path):
    from jobs import decontam

    run = copy_run(mixed_run, tmp_path)
    empty = {"synth_config_files": [], "reference_files": []}
    with pytest.raises(ValueError, match="no evaluation set"):
        decontam.main(spark, config(decontam=empty), str(run))


def test_a_finished_stage_reads_no_set_and_builds_no_index(spark, mixed_run, tmp_path, monkeypatch, caplog):
    from jobs import decontam

    run = copy_run(mixed_run, tmp_path)
    cfg = decontam_config(mixed_run, synth_grounded=True)
    first = decontam.main(spark, cfg, str(run))

    def refuse(*args, **kwargs):
        raise AssertionError("a finished stage rebuilt its evaluation sets or index")

    monkeypatch.setattr(decontam, "eval_sets", refuse)
    monkeypatch.setattr(decontam.NgramIndex, "build", refuse)
    caplog.set_level(logging.INFO, logger="jobs.decontam")
    assert decontam.main(spark, cfg, str(run)) == first
    assert "decontam: up to date, skipped" in caplog.text


def test_grounded_sources_are_the_capped_sample_synth_streams_read_by_the_executors(
    spark, mixed_run, monkeypatch
):
    """The driver opens no Parquet file: the executors (other processes) read the mixed parts,
    and only the `sample_documents` drawn reach the driver, the documents synth sft draws."""
    from jobs import decontam
    from training.synth import corpus_sample

    scfg = SYNTH.model_copy(update={"sample_documents": 25})
    streamed = corpus_sample(scfg, mixed_run)
    assert len(corpus_sample(scfg.model_copy(update={"sample_documents": 500}), mixed_run)) == 80

    def refuse(*args, **kwargs):
        raise AssertionError("the driver read a Parquet file")

    monkeypatch.setattr(pq, "ParquetFile", refuse)
    monkeypatch.setattr(pq, "read_table", refuse)
    drawn = decontam.grounded_sources(spark, mixed_run, scfg)
    assert len(drawn) == 25 and drawn == streamed

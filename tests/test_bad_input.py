"""Bad input to `refinery run` and the training commands: one error line naming the file or key,
exit status 2, and nothing written to the output directory. Every check here runs before Spark
or torch starts (jobs/preflight.py), so the tests call the CLI in-process."""

import gzip
import json
import shutil
from pathlib import Path

import pytest

from corpus.faults import members
from jobs.cli import main
from jobs.preflight import check_input_file, check_run_dir, check_upstreams

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample"
WARC = SAMPLE / "commoncrawl-2024-22.warc.gz"


def refuse(capsys, argv: list[str]) -> str:
    """Run the CLI, expect status 2 and exactly one `error: ...` line; return that line."""
    assert main(argv) == 2
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def test_input_glob_matching_nothing_is_refused_and_nothing_written(capsys, tmp_path):
    out = tmp_path / "run"
    line = refuse(capsys, ["run", "--input", str(tmp_path / "none" / "*.warc.gz"), "--out", str(out)])
    assert "none/*.warc.gz" in line and "no file matches" in line
    assert not out.exists()


def test_empty_input_pattern_is_refused(capsys, tmp_path):
    out = tmp_path / "run"
    assert "no file matches" in refuse(capsys, ["run", "--input", "", "--out", str(out)])
    assert not out.exists()


def test_missing_input_path_is_refused_and_nothing_written(capsys, tmp_path):
    out = tmp_path / "run"
    line = refuse(capsys, ["run", "--input", str(tmp_path / "absent.jsonl"), "--out", str(out)])
    assert "absent.jsonl" in line and "no file matches" in line
    assert not out.exists()


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("empty.warc.gz", b"", "empty file"),
        ("page.warc", b"<!doctype html><html><body>hello</body></html>", "not a WARC file"),
        ("data.warc.gz", gzip.compress(b'{"url": "https://example.com"}\n' * 10), "not a WARC record"),
        ("docs.jsonl.gz", b'{"text": "plain, not gzip"}\n', "not a gzip file"),
        ("docs.parquet", b"PAR1 and nothing else", "unreadable Parquet file"),
    ],
)
def test_strict_refuses_an_unreadable_input_naming_the_file(capsys, tmp_path, name, content, expected):
    """Without --strict the run lists the file and goes on (tests/test_inputs_spark.py)."""
    (tmp_path / "in").mkdir()
    shutil.copy(WARC, tmp_path / "in" / "good.warc.gz")
    (tmp_path / "in" / name).write_bytes(content)
    out = tmp_path / "run"
    line = refuse(capsys, ["run", "--input", str(tmp_path / "in" / "*"), "--out", str(out), "--strict"])
    assert str(tmp_path / "in" / name) in line and expected in line
    assert not out.exists()


def test_damaged_warc_passes_preflight_for_the_reader_to_count(tmp_path):
    """A WARC whose first gzip member is corrupt is still a WARC: the reader resynchronizes."""
    blob = WARC.read_bytes()
    first = members(blob)[0]
    damaged = tmp_path / "damaged.warc.gz"
    damaged.write_bytes(blob[:12] + b"\x00" * 40 + blob[52:])
    assert first.end > 52
    check_input_file(str(damaged))
    plain = tmp_path / "plain.warc"
    plain.write_bytes(b"".join(m.data for m in members(blob)))
    check_input_file(str(plain))


def test_unknown_config_key_names_key_and_file(capsys, tmp_path):
    config = tmp_path / "typo.yaml"
    config.write_text("annotated:\n  gopher_quality:\n    min_stop_word: 2\n")
    out = tmp_path / "run"
    assert main(["run", str(config), "--input", str(WARC), "--out", str(out)]) == 2
    printed = capsys.readouterr().out
    assert printed.startswith(f"error: {config}: invalid config")
    assert "annotated.gopher_quality.min_stop_word: unknown key" in printed
    assert not out.exists()


@pytest.mark.parametrize(
    ("yaml_text", "key"),
    [
        ("annotated:\n  lid_model: {missing}\n", "annotated.lid_model"),
        ("annotated:\n  quality:\n    model: {missing}\n", "annotated.quality.model"),
        ("annotated:\n  url:\n    blocklist_files: [{missing}]\n", "annotated.url.blocklist_files"),
    ],
)
def test_missing_model_or_list_file_is_refused_before_any_stage(capsys, tmp_path, yaml_text, key):
    missing = tmp_path / "models" / "absent.ftz"
    config = tmp_path / "c.yaml"
    config.write_text(yaml_text.format(missing=missing))
    out = tmp_path / "run"
    line = refuse(capsys, ["run", str(config), "--input", str(WARC), "--out", str(out)])
    assert key in line and str(missing) in line
    assert not out.exists()


def test_stage_without_its_upstream_is_refused(capsys, tmp_path):
    out = tmp_path / "run"
    line = refuse(capsys, ["run", "--stages", "annotated", "--out", str(out)])
    assert str(out / "documents") in line and "not finished" in line
    assert not out.exists()


def test_decontam_without_mixed_is_refused(capsys, tmp_path):
    out = tmp_path / "run"
    line = refuse(capsys, ["run", "--stages", "decontam", "--out", str(out)])
    assert str(out / "mixed") in line and "not finished" in line
    assert not out.exists()


def finish(run: Path, *stages: str) -> None:
    """Empty manifests: all preflight looks for is that a stage finished."""
    for stage in stages:
        (run / stage).mkdir(parents=True)
        (run / stage / "manifest.json").write_text("{}")


@pytest.mark.parametrize("stage", ["tokenizer", "shards"])
def test_stage_reading_decontam_without_it_is_refused(tmp_path, stage):
    finish(tmp_path, "mixed", "tokenizer")
    with pytest.raises(FileNotFoundError, match=f"--stages {stage}: .*decontam is not finished"):
        check_upstreams(tmp_path, [stage], decontam_enabled=True)
    check_upstreams(tmp_path, ["decontam", stage], decontam_enabled=True)
    check_upstreams(tmp_path, [stage], decontam_enabled=False)  # then it reads mixed/kept


def test_disabled_decontam_needs_no_mixed(tmp_path):
    check_upstreams(tmp_path, ["decontam"], decontam_enabled=False)  # it only removes its old output
    with pytest.raises(FileNotFoundError, match="mixed is not finished"):
        check_upstreams(tmp_path, ["decontam"], decontam_enabled=True)


def another_run(out: Path, inputs: list[str], seed: int) -> bytes:
    """run.json as `refinery run` writes it, for a run with another seed: no Spark needed."""
    from jobs.config import load_config

    cfg = load_config(overrides={"seed": seed})
    record = {"config": cfg.model_dump(mode="json"), "inputs": inputs, "source": "sample"}
    out.mkdir(parents=True)
    (out / "run.json").write_text(json.dumps(record))
    return (out / "run.json").read_bytes()


def test_output_directory_of_another_run_is_refused_unless_forced(capsys, tmp_path):
    out = tmp_path / "run"
    before = another_run(out, [str(WARC)], seed=1)
    line = refuse(capsys, ["run", "--input", str(WARC), "--out", str(out)])
    assert str(out) in line and "config.seed" in line and "--force" in line
    assert (out / "run.json").read_bytes() == before and sorted(out.iterdir()) == [out / "run.json"]


def test_same_run_other_inputs_or_force(tmp_path):
    from jobs.config import load_config

    out = tmp_path / "run"
    another_run(out, [str(WARC)], seed=0)
    same = {"config": load_config().model_dump(mode="json"), "inputs": [str(WARC)], "source": "sample"}
    check_run_dir(out, same, force=False)  # a rerun of the same run resumes it
    check_run_dir(out, {**same, "inputs": []}, force=False)  # `--stages annotated`: no inputs named
    other_inputs = {**same, "inputs": [str(SAMPLE / "commoncrawl-2019.warc.gz")]}
    with pytest.raises(ValueError, match="differs in inputs"):
        check_run_dir(out, other_inputs, force=False)
    check_run_dir(out, other_inputs, force=True)


def test_another_spark_master_or_training_scratch_is_the_same_run(tmp_path):
    from jobs.config import load_config

    out = tmp_path / "run"
    another_run(out, [str(WARC)], seed=0)
    config = load_config().model_dump(mode="json")
    moved = {**config, "spark": {**config["spark"], "master": "local[1]"}}
    moved["train"] = {**config["train"], "scratch": str(tmp_path / "scratch")}
    check_run_dir(out, {"config": moved, "inputs": [str(WARC)], "source": "sample"}, force=False)
    moved["train"]["eval_limit"] = 3
    with pytest.raises(ValueError, match=r"differs in config\.train\.eval_limit\)"):
        check_run_dir(out, {"config": moved, "inputs": [str(WARC)], "source": "sample"}, force=False)


def test_non_empty_directory_without_run_json_is_refused(capsys, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("not a run")
    line = refuse(capsys, ["run", "--input", str(WARC), "--out", str(out)])
    assert "no run.json" in line
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_missing_tokenizer_or_checkpoint_for_training_names_the_path(capsys, tmp_path, text_shards):
    config = str(Path(__file__).resolve().parent.parent / "conf" / "train" / "tiny.yaml")
    missing = tmp_path / "absent" / "tokenizer.json"
    out = tmp_path / "pretrain"
    argv = ["train", "pretrain", "--config", config, "--shards", str(text_shards), "--out", str(out)]
    assert str(missing) in refuse(capsys, [*argv, "--tokenizer", str(missing)])
    assert not out.exists()
    checkpoint = tmp_path / "absent-checkpoint"
    assert str(checkpoint) in refuse(capsys, ["export", "hf", str(checkpoint), str(tmp_path / "hf")])
    assert not (tmp_path / "hf").exists()

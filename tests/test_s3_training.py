"""Training stages of a run in object storage (jobs/train_stages.py `run_stage`): `refinery run
--out s3://…` trains pretrain, synth_sft and sft of tests/test_train_stages.py's tiny configs in a
local working folder and copies each stage's output into the bucket, its marker last.

The server is moto (tests/s3server.py). The tests share one run and build on each other in file
order: the first stages, then sft on a machine without the working folder, then a rerun.
"""

import hashlib
import logging
import shutil
from pathlib import Path

import fsspec
import pytest
import yaml
from test_train_stages import CONFIGS

from corpus.fs import copy_tree, join, list_files, open_input
from corpus.manifest import read_json
from jobs.cli import main
from jobs.config import load_config
from jobs.run import run
from jobs.stage import Stage
from jobs.train_stages import FINISHED, TIMING, TRAIN, _drop_other_key, working_folder
from training.testing import SAMPLE_TEXT

OUT = "s3://runs/trained"
CONFIG = {"pretrain_config": "pretrain.yaml", "synth_config": "synth.yaml", "sft_config": "sft.yaml"}
# tests/test_train_stages.py's configs, shorter: the layout and the staging are under test here
STEPS = {"pretrain.yaml": 10, "sft.yaml": 5}


@pytest.fixture(scope="module")
def config(s3_server, text_shards, tmp_path_factory) -> Path:
    """In the bucket, the shards and tokenizer of `text_shards` and a finished deduped stage of the
    sample text's paragraphs (the corpus tasks' documents); beside the stage configs, a config of
    the first three training stages with a working folder of the test's own."""
    fsspec.filesystem("s3").mkdir("runs")
    for name in ("shards", "tokenizer"):
        copy_tree(text_shards.parent / name, join(OUT, name))
    paragraphs = [p for p in SAMPLE_TEXT.read_text().split("\n\n") if len(p) > 300][:60]
    rows = [
        {"id": f"doc{i:03d}", "title": f"Part {i}", "text": p, "reject": None}
        for i, p in enumerate(paragraphs)
    ]
    stage = Stage(OUT, "deduped", "test", "test")
    stage.prepare()
    stage.commit([stage.write_part(0, rows, counts={"documents": len(rows)})], rows_in=len(rows), started=0.0)
    folder = tmp_path_factory.mktemp("configs")
    for name in CONFIG.values():
        steps = {"steps": STEPS[name]} if name in STEPS else {}
        (folder / name).write_text(yaml.safe_dump(CONFIGS[name] | steps))
    path = folder / "s3.yaml"
    path.write_text(yaml.safe_dump({"train": {**CONFIG, "scratch": str(folder / "scratch")}}))
    return path


@pytest.fixture(scope="module")
def first_stages(config):
    """pretrain and synth_sft into the bucket; `force`: it holds the curated run but no run.json."""
    return run(str(config), [], OUT, stages="pretrain,synth_sft", force=True)


@pytest.fixture(scope="module")
def sft_run(config, first_stages):
    """sft on a machine that has never trained this run: the working folder is gone."""
    shutil.rmtree(working(config))
    return run(str(config), [], OUT, stages="sft")


def working(config) -> Path:
    return working_folder(load_config(config), OUT)


def digests(uri: str) -> dict[str, str]:
    """sha256 of every file under `uri`, by its path relative to it."""
    digest = {}
    for name in list_files(uri):
        with open_input(join(uri, name)) as f:
            digest[name] = hashlib.sha256(f.read()).hexdigest()
    return digest


def test_training_stages_write_into_the_bucket_in_the_layout_of_a_local_run(config, first_stages):
    train, local = join(OUT, TRAIN), working(config) / TRAIN
    written = list_files(train)
    assert "pretrain/checkpoints/step_000010/model.pt" in written and "sft_data/train.jsonl" in written
    assert [p for p in written if p.startswith(FINISHED)] == [
        f"{FINISHED}/pretrain.json",
        f"{FINISHED}/synth_sft.json",
    ]
    # the working folder's tree, file for file, byte for byte; the wall times are the run's own
    assert {p: d for p, d in digests(train).items() if p != TIMING} == digests(str(local))
    assert set(read_json(join(train, TIMING))) == {"pretrain", "synth_sft"}
    marker = read_json(join(train, FINISHED, "pretrain.json"))
    assert marker["result"] == first_stages["pretrain"] and marker["key"]


def test_a_later_stage_on_another_machine_gets_a_local_copy_of_what_it_reads(config, sft_run):
    written = list_files(join(OUT, TRAIN))
    assert "sft/checkpoints/step_000005/model.pt" in written and f"{FINISHED}/sft.json" in written
    fetched = working(config) / TRAIN / "pretrain"
    assert digests(str(fetched)) == digests(join(OUT, TRAIN, "pretrain"))  # sft started from it
    assert sft_run["sft"]["summary"]


def test_a_stage_whose_upload_was_cut_short_resumes_from_the_working_folder(config, sft_run, caplog):
    """No marker: the stage runs again, resumes at its last checkpoint (nothing trains) and copies
    the same files again, marker last."""
    sft = join(OUT, TRAIN, "sft")
    before = digests(sft)
    fsspec.filesystem("s3").rm_file(join(OUT, TRAIN, FINISHED, "sft.json").removeprefix("s3://"))
    metrics = (working(config) / TRAIN / "sft" / "metrics.jsonl").read_bytes()
    with caplog.at_level(logging.INFO):
        again = run(str(config), [], OUT, stages="sft")
    assert "sft: up to date" not in caplog.text
    assert (working(config) / TRAIN / "sft" / "metrics.jsonl").read_bytes() == metrics
    assert digests(sft) == before and again["sft"] == sft_run["sft"]
    assert read_json(join(OUT, TRAIN, FINISHED, "sft.json"))["result"] == sft_run["sft"]


def test_rerun_skips_the_finished_stages_reading_only_the_bucket(config, sft_run, caplog):
    shutil.rmtree(working(config))
    before = digests(OUT)
    with caplog.at_level(logging.INFO):
        again = run(str(config), [], OUT, stages="pretrain,synth_sft,sft")
    skipped = [s for s in ("pretrain", "synth_sft", "sft") if f"{s}: up to date, skipped" in caplog.text]
    assert skipped == ["pretrain", "synth_sft", "sft"]
    assert not working(config).exists()  # nothing downloaded, nothing trained
    assert digests(OUT) == {**before, "run.json": digests(OUT)["run.json"]}
    assert again["sft"] == read_json(join(OUT, TRAIN, FINISHED, "sft.json"))["result"]


@pytest.mark.slow  # a minute or two on the loaded test machine: the report's queries through fsspec
def test_report_and_stats_read_the_trained_run_in_the_bucket(sft_run, capsys):
    assert main(["report", OUT]) == 0
    with open_input(join(OUT, "report", "index.html")) as f:
        page = f.read().decode()
    assert all(f"<td>{stage}</td>" in page for stage in ("pretrain", "synth_sft", "sft"))  # wall times
    assert {"train_pretrain.png", "train_sft.png"} <= set(list_files(join(OUT, "report")))  # curves
    capsys.readouterr()
    assert main(["stats", OUT]) == 0
    assert capsys.readouterr().out


def test_a_finished_output_of_another_key_in_the_working_folder_is_trained_anew(tmp_path):
    """sft's output there was made from another pretrained model: it is dropped, not resumed; one
    without a marker (interrupted) stays for the stage to resume."""
    (tmp_path / TRAIN / "sft").mkdir(parents=True)
    (tmp_path / TRAIN / "sft" / "metrics.jsonl").write_text("{}\n")
    marker = tmp_path / TRAIN / FINISHED / "sft.json"
    marker.parent.mkdir()
    marker.write_text('{"key": "k1"}')
    _drop_other_key(tmp_path, "sft", "k1")
    assert (tmp_path / TRAIN / "sft" / "metrics.jsonl").is_file() and marker.is_file()
    _drop_other_key(tmp_path, "sft", "k2")
    assert not (tmp_path / TRAIN / "sft").exists() and not marker.exists()
    (tmp_path / TRAIN / "reward").mkdir()
    _drop_other_key(tmp_path, "reward", "k3")
    assert (tmp_path / TRAIN / "reward").is_dir()

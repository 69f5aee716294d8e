"""`refinery run`'s progress in a log file, and Spark stopped before the training stages."""

import io
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from corpus.progress import duration, estimate
from jobs import run as run_module
from jobs import train_stages
from jobs.cli import summary_lines
from jobs.config import PipelineConfig

REPO = Path(__file__).resolve().parent.parent
WARC = REPO / "data" / "sample" / "commoncrawl-2019.warc.gz"
# The run's own quality model needs more documents than one sample file holds.
CONFIG = "annotated:\n  quality: {enabled: false}\n"
RUN_TIMEOUT_S = 300
LONG_URL = "https://www.example.org/de/forschungsbereich/energiewende-und-gesellschaftlicher-wandel /page"


def logged_run(tmp_path: Path, *options: str, inputs: str = str(WARC)) -> str:
    """`refinery [OPTIONS] run` of the documents and annotated stages, stdout and stderr sent to a
    file as under `> run.log 2>&1` at COLUMNS=80: the file's text."""
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG)
    log = tmp_path / "run.log"
    argv = [*options, "run", str(config), "--input", inputs, "--out", str(tmp_path / "run")]
    command = [sys.executable, "-m", "jobs.cli", *argv, "--stages", "documents,annotated"]
    env = {**os.environ, "COLUMNS": "80"}
    with log.open("w") as handle:
        done = subprocess.run(
            command, stdout=handle, stderr=subprocess.STDOUT, cwd=REPO, env=env, timeout=RUN_TIMEOUT_S
        )
    text = log.read_text()
    assert done.returncode == 0, text
    return text


@pytest.mark.spark
def test_a_redirected_run_log_has_a_progress_line_at_each_stage_start_and_end(tmp_path):
    text = logged_run(tmp_path)
    assert "\r" not in text  # no console progress bar redrawn in place
    assert "py4j" not in text  # its connection's INFO lines
    progress = re.findall(r"\[(\d)/2\] (\w+) (started|done in \d+ s)", text)
    assert [(i, name, event.split(" in ")[0]) for i, name, event in progress] == [
        ("1", "documents", "started"),
        ("1", "documents", "done"),
        ("2", "annotated", "started"),
        ("2", "annotated", "done"),
    ]


def crawl_with_warnings(folder: Path) -> Path:
    """The sample WARC, a WARC of one fetch whose URL has a space (warcio warns, in a Spark worker)
    and an empty file (the documents stage warns, in the driver)."""
    folder.mkdir()
    shutil.copy(WARC, folder / WARC.name)
    with (folder / "spaces.warc.gz").open("wb") as out:
        writer = WARCWriter(out, gzip=True)
        http = StatusAndHeaders("200 OK", [("Content-Type", "text/html")], protocol="HTTP/1.1")
        page = io.BytesIO(b"<html><body><p>A page at a URL with a space.</p></body></html>")
        writer.write_record(writer.create_warc_record(LONG_URL, "response", payload=page, http_headers=http))
    (folder / "empty.warc.gz").write_bytes(b"")
    return folder


@pytest.mark.spark
def test_quiet_run_prints_no_start_up_banner_no_progress_and_no_line_over_80_columns(tmp_path):
    text = logged_run(tmp_path, "--quiet", inputs=str(crawl_with_warnings(tmp_path / "crawl") / "*"))
    assert "log4j" not in text and "Setting default log level" not in text
    assert "NativeCodeLoader" not in text and "[1/2]" not in text
    assert "incubator" not in text  # the JVM's warning, dropped from its stderr (jobs/spark.py)
    assert [line for line in text.splitlines() if len(line) > 80] == []
    # The rest of the JVM's stderr still comes through: the Python worker's warning from warcio,
    # cut to 80 columns, and the driver's own warning, wrapped.
    assert "URL with spaces, read as %20: https://www.example.org/" in text
    assert re.search(r"WARNING jobs.documents: documents: 1 input file\(s\)\n  unreadable, skipped", text)
    assert "documents: " in text and "annotated: " in text  # the summary still says what was done


class FakeSpark:
    """A session with no Spark stage running, for the stage heartbeat's status tracker."""

    stopped = False

    def stop(self) -> None:
        self.stopped = True

    @property
    def sparkContext(self):  # noqa: N802 (pyspark's name)
        return self

    def statusTracker(self):  # noqa: N802 (pyspark's name)
        return self

    def getActiveStageIds(self) -> list[int]:  # noqa: N802 (pyspark's name)
        return []


def test_spark_is_stopped_after_the_last_curation_stage_before_training(monkeypatch, tmp_path):
    spark = FakeSpark()
    seen = []
    monkeypatch.setattr(run_module.shards, "main", lambda s, cfg, run_dir: seen.append(("shards", s.stopped)))

    def pretrain(cfg, run_dir, train):
        seen.append(("pretrain", spark.stopped))
        return {}

    monkeypatch.setitem(train_stages.STAGES, "pretrain", (pretrain, *train_stages.STAGES["pretrain"][1:]))
    run_module.run_stages(["shards", "pretrain"], spark, PipelineConfig(), [], tmp_path, None)
    assert seen == [("shards", False), ("pretrain", True)]


@pytest.mark.parametrize(
    "seconds, shown", [(0.4, "0 s"), (36.2, "36 s"), (365, "6 min 05 s"), (3725, "1 h 02 min")]
)
def test_stage_durations_read_in_whole_units(seconds, shown):
    assert duration(seconds) == shown


def test_estimate_extrapolates_the_pace_since_the_start_and_says_nothing_before_the_first_unit():
    assert estimate(130, 12, 40) == "12/40, 2 min 10 s, about 5 min 03 s left"
    # resumed at 100 of 200: 20 steps in 60 s, so 80 more take 4 minutes
    assert estimate(60, 120, 200, start=100) == "120/200, 1 min 00 s, about 4 min 00 s left"
    assert estimate(5, 0, 40) == "0/40, 5 s"
    assert estimate(5, 100, 200, start=100) == "100/200, 5 s"


@pytest.mark.spark
def test_a_long_spark_stage_logs_its_tasks_done_and_the_time_left_between_start_and_end(
    spark, monkeypatch, caplog
):
    monkeypatch.setattr(run_module, "EVERY_S", 0.3)
    caplog.set_level(logging.INFO, logger="jobs.run")
    with run_module._heartbeat("[3/9] deduped", spark):
        # 4 tasks of 0.5 s on 2 cores: the stage runs at least a second
        spark.sparkContext.parallelize(range(4), 4).map(lambda x: time.sleep(0.5) or x).collect()
    beats = [r.getMessage() for r in caplog.records if r.getMessage().startswith("[3/9] deduped: ")]
    assert beats, caplog.text
    assert all(
        re.fullmatch(r"\[3/9\] deduped: \d+ s(; Spark stage \d+: tasks \d/4, \d+ s(, about \d+ s left)?)*", b)
        for b in beats
    ), beats
    assert any("Spark stage" in b for b in beats), beats


def test_a_stage_that_logs_its_own_progress_gets_no_heartbeat(monkeypatch, caplog):
    monkeypatch.setattr(run_module, "EVERY_S", 0.05)
    caplog.set_level(logging.INFO, logger="jobs.run")
    with run_module._heartbeat("[9/14] pretrain", None, on=False):
        time.sleep(0.3)
    with run_module._heartbeat("[10/14] synth_prefs", None):
        time.sleep(0.3)
    assert "pretrain" not in caplog.text
    assert re.search(r"\[10/14\] synth_prefs: 0 s$", caplog.text, re.MULTILINE), caplog.text


def test_run_summary_puts_each_nested_result_on_its_own_line_with_dotted_keys():
    accuracy = {"pretrain": {"arithmetic": 0.125, "copy": {"short": 0.5}}, "sft": {"arithmetic": 0.75}}
    assert summary_lines("eval", {"summary": accuracy}) == [
        "eval:",
        "  pretrain: arithmetic 0.125, copy.short 0.5",
        "  sft: arithmetic 0.75",
    ]
    pretrain = {"summary": {"step": 100, "val_bpb": 1.234567, "last": "model"}}
    assert summary_lines("pretrain", pretrain) == ["pretrain: step 100, val_bpb 1.235, last model"]
    rows = {"rows": {"in": 1200, "kept": 1000, "rejected": 200}}
    assert summary_lines("documents", rows) == ["documents: 1,200 in, 1,000 kept, 200 rejected"]
    assert summary_lines("tokenizer", {}) == ["tokenizer: done"]

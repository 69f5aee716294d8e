"""Injected faults: a Python worker killed mid-task, the driver killed mid-stage, in every curation
stage; a shard altered after writing. Each ends in the same bytes as a clean run, or in a clear
refusal.

The runs are real `refinery run` subprocesses, documents to shards, on three small sample WARCs:
task retries need a master of their own (`local[2,3]`: 2 threads, a task may fail 3 times), and
killing the driver needs a process to kill. CONFIG is the smallest that gives every stage rows to
work on: the annotated filters off but language ID (16 of 17 documents kept, in parts of 1, 15
and 0 rows), no quality model (too little text to train one), a 300-token vocabulary, four shards.
The faults hit part 1 of each stage (15 rows), and the shards' first write task. The sample holds
no duplicate, so dedup's clustering writes no decisions here (tests/test_dedup_spark.py has them).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from corpus.manifest import file_sha256, read_json
from jobs.run import CURATION
from jobs.stage import FAULT_ENV, STALL_ENV

pytestmark = pytest.mark.spark
REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "data" / "sample"
BIN = Path(sys.executable).parent
FILES = ("commoncrawl-2019.warc.gz", "commoncrawl-2020-34.warc.gz", "commoncrawl-2024-22.warc.gz")
MASTER = "local[2,3]"  # local[N,F]: local mode retries a failed task only when F > 1
CONFIG = {
    "spark": {
        # one task per upstream part (as many as there are documents parts), so part 1 exists in
        # every stage: at the default target the three small parts would be merged into one task
        "task_target_mb": 0.001,
        "conf": {
            # Tiny data: 2 shuffle partitions rather than 200 (dedup's Spark SQL steps), and a
            # JVM that compiles less (C1 only) and so starts sooner: about 30 s a full run here
            # rather than 42 for the JVM flags alone, measured on a loaded 2-core machine.
            "spark.sql.shuffle.partitions": "2",
            "spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC",
        },
    },
    "annotated": {
        "language": {"languages": None},
        **{step: {"enabled": False} for step in ("gopher_repetition", "gopher_quality", "c4", "fineweb")},
        "quality": {"enabled": False},
    },
    "deduped": {"verify": False},
    "decontam": {"synth_config_files": []},  # the held-out reference prose alone
    "tokenizer": {"vocab_size": 300},
    "shards": {"shard_tokens": 10000, "valid_fraction": 0.1},
}
FAULT_PART = {stage: 0 if stage == "shards" else 1 for stage in CURATION}
RUN_TIMEOUT_S = 600
VOLATILE = ("wall_time_s", "seconds")  # manifest fields that time the run


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[str, Path]:
    folder = tmp_path_factory.mktemp("fault-input")
    for name in FILES:
        shutil.copy(SAMPLE / name, folder / name)
    config = folder / "faults.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    return str(folder / "*.warc.gz"), config


def refinery(out: Path, inputs: tuple[str, Path], *, env: dict | None = None, **popen):
    pattern, config = inputs
    command = [str(BIN / "refinery"), "run", str(config), "--input", pattern, "--out", str(out)]
    command += ["--stages", ",".join(CURATION), "--master", MASTER]
    return command, {"env": {**os.environ, **(env or {})}, "cwd": REPO, **popen}


def run_ok(out: Path, inputs: tuple[str, Path], **kwargs) -> subprocess.CompletedProcess:
    command, options = refinery(out, inputs, **kwargs)
    result = subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, **options)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def output_bytes(stage_dir: Path) -> dict[str, str]:
    """sha256 of every file a stage publishes but its manifests and task records (they hold times
    and absolute paths): Parquet parts, tokenizer.json, shard .bin/.idx."""
    skipped = {"manifest.json", "timing.json"}
    return {
        str(p.relative_to(stage_dir)): file_sha256(p)
        for p in sorted(stage_dir.rglob("*"))
        if p.is_file() and p.name not in skipped and p.parent.name != "_parts"
    }


def manifest(run: Path, stage: str) -> dict:
    """A stage's manifest with the run directory written as RUN and the timings left out."""
    text = (run / stage / "manifest.json").read_text().replace(str(run), "RUN")
    return _without(json.loads(text), VOLATILE)


def _without(value, keys: tuple[str, ...]):
    if isinstance(value, dict):
        return {k: _without(v, keys) for k, v in value.items() if k not in keys}
    if isinstance(value, list):
        return [_without(v, keys) for v in value]
    return value


def assert_same_as_clean(out: Path, clean: Path) -> None:
    for stage in CURATION:
        assert output_bytes(out / stage) == output_bytes(clean / stage), f"{stage}: bytes differ"
        assert manifest(out, stage) == manifest(clean, stage), f"{stage}: manifest differs"
        assert not list((out / stage).rglob(".*.tmp")), f"{stage}: a killed attempt left temporary files"


@pytest.fixture(scope="module")
def clean(inputs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("clean") / "run"
    run_ok(out, inputs)
    return out


# 55 s on 2 cores with its clean run; .ci/run runs this file whole. make test keeps a killed task
# retried to a clean stage: tests/test_attempts.py's task killed midway under Spark.
@pytest.mark.slow
def test_worker_killed_in_every_stage_is_retried_to_the_same_bytes(clean, inputs, tmp_path):
    markers = {stage: tmp_path / f"killed-{stage}" for stage in CURATION}
    spec = ",".join(f"{stage}:{FAULT_PART[stage]}:{marker}" for stage, marker in markers.items())
    out = tmp_path / "run"
    result = run_ok(out, inputs, env={FAULT_ENV: spec})
    assert [s for s, m in markers.items() if not m.exists()] == [], "a fault never fired"
    log = result.stdout + result.stderr
    # Spark saw each worker die and retried its task
    assert log.count("Lost task") >= len(CURATION), log[-3000:]
    assert_same_as_clean(out, clean)


@pytest.mark.slow  # 84 s on 2 cores; .ci/run runs this file whole
def test_driver_killed_in_every_stage_resumes_to_the_same_bytes(clean, inputs, tmp_path):
    """Run k is killed while stage k is half done; run k+1 finishes it from its finished parts."""
    out = tmp_path / "run"
    reused: dict[str, dict[str, int]] = {}
    for stage in CURATION:
        marker = tmp_path / f"stalled-{stage}"
        reused[stage] = kill_driver_mid_stage(out, inputs, stage, marker, other_parts(clean, stage))
        assert (out / f".{stage}.partial").is_dir() and not (out / stage).exists(), stage
        assert reused[stage] or stage == "tokenizer", f"{stage}: no part finished before the kill"
        assert all((out / s / "manifest.json").is_file() for s in CURATION[: CURATION.index(stage)])

    result = run_ok(out, inputs)
    log = result.stdout + result.stderr
    for stage in CURATION[:-1]:
        assert f"{stage}: up to date, skipped" in log
    assert_same_as_clean(out, clean)
    for stage, files in reused.items():  # the parts finished before the kill were not written again
        assert {name: (out / stage / name).stat().st_mtime_ns for name in files} == files, stage


def other_parts(clean: Path, stage: str) -> int:
    """The parts (shards) of a stage but the one its fault stalls: they finish before the kill."""
    if stage == "tokenizer":
        return 0  # its tasks only sample, for the driver to train on: nothing is written apart
    done = read_json(clean / stage / "manifest.json")
    if stage == "shards":  # the stalled first write task holds shard 0 alone (4 ranges, 4 shards)
        return sum(t["shards"] for t in done["totals"].values()) - 1
    return len(done["parts"]) - 1


def kill_driver_mid_stage(out: Path, inputs, stage: str, marker: Path, others: int) -> dict[str, int]:
    """Run until STAGE's fault part stalls and its `others` parts are done, then SIGKILL the driver;
    return the finished parts' files (relative to the stage directory) and their mtimes."""
    spec = f"{stage}:{FAULT_PART[stage]}:{marker}"
    log = out.parent / f"killed-in-{stage}.log"
    command, options = refinery(out, inputs, env={STALL_ENV: spec})
    partial = out / f".{stage}.partial"
    # A process group of its own: SIGKILL takes the driver and its JVM at once, as losing the
    # driver's machine would; the Python workers end with the JVM.
    with open(log, "w") as sink:
        proc = subprocess.Popen(command, stdout=sink, stderr=sink, start_new_session=True, **options)
        try:
            stalled = wait_for(marker.exists, proc)
            settled = stalled and wait_for(lambda: len(list(partial.glob("_parts/*.json"))) >= others, proc)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert stalled, f"{stage}: the fault never fired\n{log.read_text()[-3000:]}"
    assert settled, f"{stage}: fewer than {others} other parts finished\n{log.read_text()[-3000:]}"
    return finished_files(partial)


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen) -> bool:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not condition():
        if proc.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def finished_files(partial: Path) -> dict[str, int]:
    """The files the task records of a partial directory list, with their mtimes."""
    names = []
    for record in map(read_json, sorted(partial.glob("_parts/*.json"))):
        names += [f["file"] for f in record.get("files", {}).values()]  # Parquet stages
        names += [record[k] for k in ("bin", "idx") if k in record]  # shards
    return {name: (partial / name).stat().st_mtime_ns for name in names}


def test_altered_shard_is_refused_by_pretrain_naming_the_file(text_shards, tmp_path):
    shards = tmp_path / "shards"
    shutil.copytree(text_shards, shards)
    shutil.copytree(text_shards.parent / "tokenizer", tmp_path / "tokenizer")
    victim = shards / read_json(shards / "manifest.json")["splits"]["train"][0]["bin"]
    blob = bytearray(victim.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    victim.write_bytes(bytes(blob))
    out = tmp_path / "pretrain"
    command = [str(BIN / "refinery"), "train", "pretrain", "--config", str(REPO / "conf/train/tiny.yaml")]
    command += ["--shards", str(shards), "--out", str(out), "--quiet"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stdout
    assert str(victim) in lines[0] and "sha256" in lines[0]
    assert not out.exists() or not any(out.iterdir()), "pretrain wrote output before refusing"

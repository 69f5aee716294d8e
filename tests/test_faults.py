"""Injected faults: a Python worker killed mid-task, the driver killed mid-run, a shard altered after
writing. Each ends in the same bytes as a clean run, or in a clear refusal.

The runs are real `refinery run` subprocesses on three small sample WARCs: task retries need a
master of their own (`local[2,3]`: 2 threads, a task may fail 3 times), and killing the driver
needs a process to kill. About 15 s a run on 2 cores.
"""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from corpus.manifest import file_sha256, read_json
from jobs.stage import FAULT_ENV

pytestmark = pytest.mark.spark
REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "data" / "sample"
BIN = Path(sys.executable).parent
FILES = ("commoncrawl-2019.warc.gz", "commoncrawl-2020-34.warc.gz", "commoncrawl-2024-22.warc.gz")
MASTER = "local[2,3]"  # local[N,F]: local mode retries a failed task only when F > 1
STAGES = "documents,annotated"
RUN_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("fault-input")
    for name in FILES:
        shutil.copy(SAMPLE / name, folder / name)
    return str(folder / "*.warc.gz")


def refinery(out: Path, inputs: str, *, stages: str = STAGES, env: dict | None = None, **popen):
    command = [str(BIN / "refinery"), "run", "--input", inputs, "--out", str(out), "--stages", stages]
    command += ["--master", MASTER]
    return command, {"env": {**os.environ, **(env or {})}, "cwd": REPO, **popen}


def run_ok(out: Path, inputs: str, **kwargs) -> subprocess.CompletedProcess:
    command, options = refinery(out, inputs, **kwargs)
    result = subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, **options)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def parquet_bytes(stage_dir: Path) -> dict[str, str]:
    return {str(p.relative_to(stage_dir)): file_sha256(p) for p in sorted(stage_dir.glob("*/*.parquet"))}


@pytest.fixture(scope="module")
def clean(inputs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("clean") / "run"
    run_ok(out, inputs)
    return out


def test_worker_killed_mid_task_is_retried_to_the_same_bytes(clean, inputs, tmp_path):
    marker = tmp_path / "fired"
    out = tmp_path / "run"
    result = run_ok(out, inputs, stages="documents", env={FAULT_ENV: f"documents:1:{marker}"})
    assert marker.exists(), "the fault never fired"
    log = result.stdout + result.stderr
    assert "Lost task" in log, log[-3000:]  # Spark saw the worker die and retried the task
    manifest = read_json(out / "documents" / "manifest.json")
    assert (
        manifest["output_fingerprint"]
        == read_json(clean / "documents" / "manifest.json")["output_fingerprint"]
    )
    assert parquet_bytes(out / "documents") == parquet_bytes(clean / "documents")
    assert not list((out / "documents").glob("*/.*.tmp")), "a killed attempt left temporary files"


def test_driver_killed_mid_stage_resumes_to_the_same_bytes(clean, inputs, tmp_path):
    out = tmp_path / "run"
    command, options = refinery(out, inputs)
    # A process group of its own: SIGKILL takes the driver, its JVM and the Python workers at once,
    # as losing the driver's machine would.
    proc = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, **options
    )
    partial = out / ".annotated.partial"
    deadline = time.monotonic() + RUN_TIMEOUT_S
    try:
        while not partial.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert partial.exists(), f"never reached the annotated stage (exit status {proc.returncode})"
    assert not (out / "annotated" / "manifest.json").exists(), "annotated finished before the kill"
    documents_manifest = (out / "documents" / "manifest.json").read_bytes()

    result = run_ok(out, inputs)
    log = result.stdout + result.stderr
    assert "documents: up to date, skipped" in log
    assert (out / "documents" / "manifest.json").read_bytes() == documents_manifest
    assert not partial.exists()
    for stage in ("documents", "annotated"):
        assert (
            read_json(out / stage / "manifest.json")["output_fingerprint"]
            == (read_json(clean / stage / "manifest.json")["output_fingerprint"])
        )
        assert parquet_bytes(out / stage) == parquet_bytes(clean / stage)


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

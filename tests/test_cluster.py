"""A real Spark standalone cluster (master + one worker, from the installed pyspark, on 127.0.0.1):
the curation stages run through `--master spark://...` and through `spark-submit` give the same
bytes as local mode."""

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import fsspec
import pyspark
import pytest

from corpus.faults import members
from corpus.manifest import read_json

pytestmark = pytest.mark.cluster
SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample"
BIN = Path(sys.executable).parent
SPARK_HOME = Path(pyspark.__file__).parent
STARTUP_S = 90
CRAWL_RECORDS = 240


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(log: Path, text: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if log.exists() and text in log.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            raise RuntimeError(f"{log.name}: exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
        time.sleep(0.5)
    raise TimeoutError(f"{log}: no {text!r} within {STARTUP_S} s")


@pytest.fixture(scope="module")
def env():
    return {
        **os.environ,
        "SPARK_HOME": str(SPARK_HOME),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PYSPARK_PYTHON": sys.executable,
    }


@pytest.fixture(scope="module")
def master_url(tmp_path_factory, env):
    logs = tmp_path_factory.mktemp("standalone")
    port = free_port()
    url = f"spark://127.0.0.1:{port}"
    spark_class = str(SPARK_HOME / "bin" / "spark-class")
    procs = []
    try:
        master_log = logs / "master.log"
        master = subprocess.Popen(
            [spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port)]
            + ["--webui-port", str(free_port())],
            stdout=master_log.open("w"),
            stderr=subprocess.STDOUT,
            env=env,
        )
        procs.append(master)
        wait_for(master_log, "I have been elected leader", master)
        worker_log = logs / "worker.log"
        worker = subprocess.Popen(
            [spark_class, "org.apache.spark.deploy.worker.Worker", url, "--host", "127.0.0.1", "--cores", "2"]
            + ["--memory", "2g", "--webui-port", str(free_port()), "--work-dir", str(logs / "work")],
            stdout=worker_log.open("w"),
            stderr=subprocess.STDOUT,
            env=env,
        )
        procs.append(worker)
        wait_for(worker_log, "Successfully registered with master", worker)
        yield url
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Two small real WARCs and the first 240 records of the crawl sample (cut at a gzip member),
    enough for documents to survive every filter and reach the shards."""
    folder = tmp_path_factory.mktemp("cluster-input")
    for name in ("commoncrawl-2020-34.warc.gz", "commoncrawl-2024-22.warc.gz"):
        shutil.copy(SAMPLE / name, folder / name)
    blob = (SAMPLE / "crawl-00003.warc.gz").read_bytes()
    (folder / "crawl-head.warc.gz").write_bytes(blob[: members(blob)[CRAWL_RECORDS].offset])
    return str(folder / "*.warc.gz")


def refinery_run(command: list[str], env: dict, cwd: Path) -> None:
    result = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def fingerprints(run_dir: Path) -> dict[str, str]:
    return {
        m.parent.name: read_json(m)["output_fingerprint"]
        for m in sorted(run_dir.glob("*/manifest.json"))
        if "output_fingerprint" in read_json(m)
    }


def test_standalone_cluster_and_spark_submit_match_local_mode(master_url, inputs, env, tmp_path):
    cli = str(Path(__file__).resolve().parent.parent / "jobs" / "cli.py")
    local, cluster, submitted = tmp_path / "local", tmp_path / "cluster", tmp_path / "submit"
    refinery_run([str(BIN / "refinery"), "run", "--input", inputs, "--out", str(local)], env, tmp_path)
    refinery_run(
        [str(BIN / "refinery"), "run", "--input", inputs, "--out", str(cluster), "--master", master_url],
        env,
        tmp_path,
    )
    refinery_run(
        [
            str(BIN / "spark-submit"),
            "--master",
            master_url,
            cli,
            "run",
            "--input",
            inputs,
            "--out",
            str(submitted),
        ],
        env,
        tmp_path,
    )
    expected = fingerprints(local)
    assert {"documents", "annotated", "deduped", "mixed", "shards"} <= set(expected)
    assert fingerprints(cluster) == expected
    assert fingerprints(submitted) == expected


def test_standalone_cluster_writes_a_run_in_a_bucket_as_local_mode(
    master_url, inputs, env, s3_server, tmp_path
):
    """Inputs and RUN in a moto bucket: the executors of a standalone worker started without the AWS
    variables get them through `spark.executorEnv.*`, as README's "Runs on object storage" says, and
    deduped's Spark intermediates go to `spark.scratch`."""
    from s3server import upload

    upload(sorted(Path(inputs).parent.glob("*.warc.gz")), "s3://crawl/cluster/")
    fsspec.filesystem("s3").mkdir("runs")
    config = tmp_path / "config.yaml"
    config.write_text(f"spark:\n  scratch: {tmp_path / 'scratch'}\n")
    glob, out = "s3://crawl/cluster/*.warc.gz", "s3://runs/cluster"
    env = {**env, **s3_server.env}
    local = tmp_path / "local"
    refinery_run(
        [str(BIN / "refinery"), "run", str(config), "--input", glob, "--out", str(local)], env, tmp_path
    )
    executor_env = [a for k, v in s3_server.env.items() for a in ("--conf", f"spark.executorEnv.{k}={v}")]
    cli = str(Path(__file__).resolve().parent.parent / "jobs" / "cli.py")
    submit = [str(BIN / "spark-submit"), "--master", master_url, *executor_env, cli]
    refinery_run([*submit, "run", str(config), "--input", glob, "--out", out], env, tmp_path)
    expected = fingerprints(local)
    assert {"documents", "annotated", "deduped", "mixed", "shards"} <= set(expected)
    remote = {s: read_json(f"{out}/{s}/manifest.json").get("output_fingerprint") for s in expected}
    assert remote == expected

"""Inputs in object storage: WARCs in a bucket of a moto S3 server (tests/s3server.py) read by the
executors through corpus/fs.py, against a local run of the same files.

The glob run is a real `refinery run` subprocess (its Spark and Python workers get the AWS
variables from their environment, as on a cluster) whose log is searched for the secret key; the
path-list run uses the test session's Spark, whose executors get the variables through
`SparkContext.environment`, what `spark.executorEnv.*` fills. The run directory stays local
(tests/test_s3_outputs.py has runs in a bucket).
"""

import gzip
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from s3server import upload

from corpus.extract import Extractor
from corpus.inputs import input_documents
from corpus.manifest import read_json
from jobs import documents
from jobs.cli import main
from jobs.config import load_config
from jobs.run import expand_inputs

pytestmark = pytest.mark.spark
REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "data" / "sample"
FILES = ("commoncrawl-2019.warc.gz", "commoncrawl-2020-34.warc.gz", "commoncrawl-2024-22.warc.gz")
GLOB = "s3://crawl/sample/*.warc.gz"
LISTING = "s3://crawl/lists/warc.paths.gz"
# The run's own quality model needs more documents than these three files hold.
CONFIG = "annotated:\n  quality: {enabled: false}\n"
STAGES = "documents,annotated,deduped"
RUN_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def bucket(s3_server, spark, tmp_path_factory):
    """The sample WARCs in s3://crawl/sample/ (the local run's source name, `sample`, again), a
    Common Crawl style path list of them relative to s3://crawl/, and the server's variables in
    the executors' environment."""
    upload([SAMPLE / name for name in FILES], "s3://crawl/sample/")
    listing = tmp_path_factory.mktemp("lists") / "warc.paths.gz"
    listing.write_bytes(gzip.compress("".join(f"sample/{name}\n" for name in FILES).encode(), mtime=0))
    upload([listing], "s3://crawl/lists/")
    with pytest.MonkeyPatch.context() as patch:
        for key, value in s3_server.env.items():
            patch.setitem(spark.sparkContext.environment, key, value)
        yield s3_server


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("config") / "config.yaml"
    path.write_text(CONFIG)
    return str(path)


@pytest.fixture(scope="module")
def local_run(spark, config, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("local") / "run"
    inputs = [arg for name in FILES for arg in ("--input", str(SAMPLE / name))]
    assert main(["--quiet", "run", config, *inputs, "--out", str(out), "--stages", STAGES]) == 0
    return out


@pytest.fixture(scope="module")
def s3_run(bucket, config, tmp_path_factory) -> tuple[Path, str]:
    """`refinery run --input 's3://crawl/sample/*.warc.gz'` in a process of its own; its log."""
    out = tmp_path_factory.mktemp("s3") / "run"
    command = [str(Path(sys.executable).parent / "refinery"), "run", config, "--input", GLOB]
    command += ["--out", str(out), "--stages", STAGES, "--master", "local[2]"]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, env=dict(os.environ), cwd=REPO
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    return out, log


@pytest.fixture(scope="module")
def listed_run(bucket, spark, config, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("listed") / "run"
    argv = ["--quiet", "run", config, "--input", LISTING, "--input-prefix", "s3://crawl/"]
    assert main([*argv, "--out", str(out), "--stages", "documents"]) == 0
    return out


def parts(stage_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(stage_dir)): p.read_bytes() for p in sorted(stage_dir.glob("*/*.parquet"))}


def kept_ids(run: Path, stage: str) -> list[str]:
    return sorted(pq.read_table(run / stage / "kept", columns=["id"]).column("id").to_pylist())


def test_s3_glob_run_keeps_the_same_documents_as_the_local_run(local_run, s3_run):
    out, _ = s3_run
    assert kept_ids(out, "deduped") == kept_ids(local_run, "deduped") and kept_ids(out, "deduped")
    for split in ("kept", "rejected"):
        remote, local = (pq.read_table(run / "documents" / split) for run in (out, local_run))
        # Every column is the same but the file each row came from, which names where it was read.
        assert remote.drop_columns(["warc_file"]).equals(local.drop_columns(["warc_file"]))
        assert set(remote.column("warc_file").to_pylist()) <= {f"s3://crawl/sample/{n}" for n in FILES}
    manifest = read_json(out / "documents" / "manifest.json")
    assert manifest["counts"] == read_json(local_run / "documents" / "manifest.json")["counts"]
    assert read_json(out / "run.json")["source"] == "sample"


def test_path_list_with_a_prefix_gives_the_same_documents_as_the_glob(s3_run, listed_run):
    out, _ = s3_run
    assert read_json(listed_run / "run.json")["inputs"] == [f"s3://crawl/sample/{n}" for n in FILES]
    assert read_json(listed_run / "run.json")["inputs"] == read_json(out / "run.json")["inputs"]
    assert parts(listed_run / "documents") == parts(out / "documents") and parts(out / "documents")
    fingerprints = [
        read_json(r / "documents" / "manifest.json")["input_fingerprint"] for r in (out, listed_run)
    ]
    assert fingerprints[0] == fingerprints[1]


def test_rerun_on_the_same_objects_skips_the_stage(spark, bucket, listed_run):
    before = read_json(listed_run / "documents" / "manifest.json")
    files = [f"s3://crawl/sample/{n}" for n in FILES]
    assert documents.main(spark, load_config(), files, str(listed_run), "sample") == before


def test_no_secret_in_any_file_the_runs_write_or_in_the_log(bucket, s3_run, listed_run):
    out, log = s3_run
    secret = bucket.secret.encode()
    assert os.environ["AWS_SECRET_ACCESS_KEY"] == bucket.secret  # the runs were given it
    written = [p for run in (out, listed_run) for p in run.rglob("*") if p.is_file()]
    assert len(written) > 10
    assert [p for p in written if secret in p.read_bytes()] == []
    assert "INFO" in log and bucket.secret not in log


def test_glob_matching_nothing_in_the_bucket_is_refused(bucket, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--input", "s3://crawl/nothing/*.warc.gz", "--out", str(out)]) == 2
    assert "--input 's3://crawl/nothing/*.warc.gz': no file matches" in capsys.readouterr().out
    assert not out.exists()


def test_missing_file_of_a_path_list_is_refused_naming_it(bucket, tmp_path, capsys):
    argv = ["run", "--input", LISTING, "--input-prefix", "s3://crawl/elsewhere", "--out", str(tmp_path / "r")]
    assert main(argv) == 2
    assert f"s3://crawl/elsewhere/sample/{FILES[0]}: no such file" in capsys.readouterr().out


def test_strict_refuses_an_object_that_is_not_a_warc(bucket, tmp_path, capsys):
    page = tmp_path / "page.warc.gz"
    page.write_bytes(b"<!doctype html><html><body>saved page</body></html>")
    upload([page], "s3://crawl/bad/")
    assert main(["run", "--strict", "--input", "s3://crawl/bad/*", "--out", str(tmp_path / "run")]) == 2
    assert "--input s3://crawl/bad/page.warc.gz: not a WARC file" in capsys.readouterr().out


def test_training_stages_into_object_storage_are_refused_for_now(bucket, capsys):
    assert main(["run", str(REPO / "conf" / "full.yaml"), "--input", GLOB, "--out", "s3://runs/r1"]) == 2
    assert "--out s3://runs/r1: the training stage(s) pretrain" in capsys.readouterr().out


def test_a_credential_in_the_configs_spark_settings_is_refused(tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text("spark:\n  conf: {spark.executorEnv.AWS_SECRET_ACCESS_KEY: hunter2}\n")
    out = tmp_path / "run"
    assert main(["run", str(config), "--input", str(SAMPLE / FILES[0]), "--out", str(out)]) == 2
    printed = capsys.readouterr().out
    assert "spark.conf.spark.executorEnv.AWS_SECRET_ACCESS_KEY: a credential in the config" in printed
    assert "hunter2" not in printed and not out.exists()


def test_jsonl_and_parquet_objects_read_as_their_local_copies(s3_server, tmp_path):
    docs = tmp_path / "docs.jsonl.gz"
    docs.write_bytes(
        gzip.compress(b'{"id": "a", "text": "One."}\n{oops\n{"text": "Two.", "n": 2}\n', mtime=0)
    )
    pq.write_table(
        pa.table({"text": ["Three.", None], "url": ["https://www.example.org/p", None]}),
        tmp_path / "d.parquet",
    )
    local = [str(docs), str(tmp_path / "d.parquet")]
    remote = upload([Path(p) for p in local], "s3://docs/in/")
    assert expand_inputs(["s3://docs/in/docs.jsonl.gz"]) == [remote[0]]  # a URI without wildcards

    def read(path: str) -> tuple[list[dict], Counter]:
        counts: Counter = Counter()
        rows = input_documents(
            path, source="s", extractor=Extractor(), counts=counts, errors=[], bad_files=[]
        )
        # A document without an id of its own gets one from its file's path, which differs here.
        return [{k: v for k, v in r.items() if k not in ("warc_file", "id")} for r in rows], counts

    for here, there in zip(local, remote, strict=True):
        assert read(there) == read(here) and read(here)[0]


@pytest.mark.slow  # two runs of crawl-sample's 1,225 pages through dedup
def test_crawl_sample_from_a_bucket_keeps_the_same_documents_as_from_disk(
    bucket, config, shared_data, tmp_path
):
    files = sorted((shared_data / "crawl-sample").glob("*.warc.gz"))
    upload(files, "s3://crawl/crawl-sample/")
    runs = {"local": tmp_path / "local", "s3": tmp_path / "s3"}
    inputs = {"local": [str(f) for f in files], "s3": ["s3://crawl/crawl-sample/*.warc.gz"]}
    for name, out in runs.items():
        argv = ["--quiet", "run", config, *(a for i in inputs[name] for a in ("--input", i))]
        assert main([*argv, "--out", str(out), "--stages", STAGES]) == 0
    assert kept_ids(runs["s3"], "deduped") == kept_ids(runs["local"], "deduped")
    for split in ("kept", "rejected"):
        remote, local = (
            pq.read_table(runs[r] / "documents" / split).drop_columns(["warc_file"]) for r in runs
        )
        assert remote.equals(local)

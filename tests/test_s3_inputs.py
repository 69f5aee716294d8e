"""Inputs in object storage: WARCs in a bucket of a moto S3 server (tests/s3server.py) read by the
executors through corpus/fs.py, against a local run of the same files; models and lists the config
names by URI, against the same files on disk.

The glob run is a real `refinery run` subprocess (its Spark and Python workers get the AWS
variables from their environment, as on a cluster) whose log is searched for the secret key; the
path-list run uses the test session's Spark, whose executors get the variables through
`SparkContext.environment`, what `spark.executorEnv.*` fills. The run directory stays local
(tests/test_s3_outputs.py has runs in a bucket).
"""

import gzip
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from qualitydata import reference_docs, web_docs
from s3server import upload

from classifiers.langid import lid176_path
from classifiers.quality import TrainParams, train
from classifiers.quality_data import read_docs
from corpus.decontam import read_texts
from corpus.extract import Extractor
from corpus.filters.url import read_list
from corpus.inputs import input_documents
from corpus.manifest import read_json
from corpus.mix import read_domain_list
from corpus.yaml_config import load_yaml
from jobs import annotated, documents
from jobs.cli import main
from jobs.config import load_config
from jobs.run import expand_inputs
from jobs.stage import Stage
from training.synth import SynthSftConfig

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


# The annotated rules a model or list decides, alone: the templated pages would fail the others.
HEURISTICS_OFF = {s: {"enabled": False} for s in ("gopher_repetition", "gopher_quality", "c4", "fineweb")}
BLOCKED = "shop3.example.com"


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, str]:
    """A small quality model, a block list naming one site, and lid.176: local files."""
    folder = tmp_path_factory.mktemp("models")
    train(
        reference_docs(60),
        web_docs(120, seed=5),
        folder / "quality.ftz",
        TrainParams(epoch=10, bucket=20_000),
    )
    (folder / "blocked.txt").write_text(f"# a site of tests/qualitydata.py\n{BLOCKED}\n")
    return {
        "quality": str(folder / "quality.ftz"),
        "blocklist": str(folder / "blocked.txt"),
        "lid": lid176_path(),
    }


@pytest.fixture(scope="module")
def documents_stage(tmp_path_factory) -> Path:
    """RUN/documents: reference prose and templated web pages (tests/qualitydata.py), one part."""
    run = tmp_path_factory.mktemp("docs_run")
    docs = [(d, f"library{i % 4}.example.org") for i, d in enumerate(reference_docs(20))]
    docs += [(d, d.group) for d in web_docs(40)]
    rows = [
        {"id": f"doc-{i:03d}", "url": f"https://{site}/{i}", "domain": site, "text": d.text, "source": "test"}
        for i, (d, site) in enumerate(docs)
    ]
    stage = Stage(str(run), "documents", "test", "test")
    stage.prepare()
    stage.commit([stage.write_part(0, rows, counts={"documents": len(rows)})], rows_in=len(rows), started=0.0)
    return run / "documents"


def annotate_with(spark, documents_stage: Path, folder: Path, files: dict[str, str]) -> list[tuple]:
    """The annotated stage with the quality model, block list and lid.176 at `files`; its rows."""
    run = folder / "run"
    shutil.copytree(documents_stage, run / "documents")
    section = {
        **HEURISTICS_OFF,
        "lid_model": files["lid"],
        "url": {"blocklist_files": [files["blocklist"]]},
        "quality": {"model": files["quality"], "threshold": 0.5},
    }
    config = folder / "config.yaml"
    config.write_text(yaml.safe_dump({"annotated": section}))
    annotated.main(spark, load_config(config), str(run))
    return duckdb.sql(f"SELECT id, quality, reject FROM '{run}/annotated/*/*.parquet' ORDER BY id").fetchall()


def test_models_and_lists_in_a_bucket_decide_as_their_local_files(
    spark, bucket, models, documents_stage, tmp_path
):
    remote = dict(zip(models, upload([Path(p) for p in models.values()], "s3://models/run1/"), strict=True))
    assert remote["quality"] == "s3://models/run1/quality.ftz"
    local_rows = annotate_with(spark, documents_stage, tmp_path / "local", models)
    remote_rows = annotate_with(spark, documents_stage, tmp_path / "remote", remote)
    assert remote_rows == local_rows
    rejects = Counter(reject for *_, reject in local_rows)
    assert rejects[None] and rejects["url:blocklist"] == 2 and rejects["quality:low"]  # each file decided


def test_missing_model_in_a_bucket_is_refused_in_one_line_naming_key_and_uri(bucket, tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text("annotated:\n  quality:\n    model: s3://crawl/models/absent.ftz\n")
    out = tmp_path / "run"
    assert main(["run", str(config), "--input", str(SAMPLE / FILES[0]), "--out", str(out)]) == 2
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines == [
        "error: annotated.quality.model (quality classifier): s3://crawl/models/absent.ftz: no such file"
    ]
    assert not out.exists()


def test_list_evaluation_and_config_files_in_a_bucket_read_as_their_local_files(s3_server, tmp_path):
    """Every reader of a file the config names, given its URI, returns what the local file gives;
    the config keeps a URI as written where it resolves a relative path."""
    files = {
        "domains.txt": "# news\nExample.org\n\nnews.example.com\n",
        "eval.jsonl": '{"prompt": "2+2?", "solution": "4"}\n{"text": "A reference line."}\n',
        "positives.jsonl": '{"text": "A well written paragraph."}\n',
        "synth.yaml": "arithmetic: {train: 3, test: 2}\n",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    local = {name: str(tmp_path / name) for name in files}
    remote = dict(zip(files, upload([tmp_path / n for n in files], "s3://lists/v1/"), strict=True))
    readers = {
        "domains.txt": read_domain_list,
        "eval.jsonl": read_texts,
        "positives.jsonl": lambda p: list(read_docs([p])),
        "synth.yaml": lambda p: load_yaml(p, SynthSftConfig),
    }
    for name, read in readers.items():
        assert read(remote[name]) == read(local[name]) and read(local[name]), name
    assert read_list([remote["domains.txt"]]) == {"example.org", "news.example.com"}
    config = tmp_path / "pipeline.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "mixed": {"domain_list_files": [remote["domains.txt"], "domains.txt"]},
                "train": {"sft_config": remote["synth.yaml"]},
            }
        )
    )
    cfg = load_config(config)
    assert cfg.mixed.domain_list_files == (remote["domains.txt"], local["domains.txt"])
    assert cfg.train.sft_config == remote["synth.yaml"]

"""A run directory in object storage: files written whole or not at all through corpus/fs.py, a stage
committed by its manifest alone (no rename), and `refinery run --out s3://…` against a local run.

The server is moto (tests/s3server.py). The stage tests call jobs/stage.py `Stage` on the driver
(no Spark task: `task_attempt()` is "local"); the run tests are `refinery run` subprocesses that get
the AWS variables from their environment, as executors on a cluster would.
"""

import hashlib
import os
import posixpath
import signal
import subprocess
import sys
import time
from pathlib import Path

import fsspec
import pyarrow.parquet as pq
import pytest
import yaml
from s3server import upload
from test_faults import CONFIG

from corpus.fs import exists, expand, is_file, join, open_input, open_output, remove
from corpus.manifest import read_json, write_json_atomic
from corpus.shards import ShardError, open_split, write_split
from jobs.cli import main
from jobs.run import CURATION
from jobs.stage import STALL_ENV, Stage

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "data" / "sample"
FILES = ("commoncrawl-2019.warc.gz", "commoncrawl-2020-34.warc.gz", "commoncrawl-2024-22.warc.gz")
GLOB = "s3://crawl/sample/*.warc.gz"
RUN_TIMEOUT_S = 1800  # a curation run took 8 to over 10 min on the loaded 2-core test machine


@pytest.fixture(scope="module")
def runs(s3_server) -> str:
    """A bucket for run directories."""
    fs = fsspec.filesystem("s3")
    fs.mkdir("runs")
    fs.invalidate_cache()
    return "s3://runs"


def listing(uri: str) -> list[str]:
    fs, path = fsspec.core.url_to_fs(uri)
    fs.invalidate_cache()
    return sorted(p.removeprefix(path).lstrip("/") for p in fs.find(path))


def test_an_object_appears_whole_only_when_its_writer_finishes(runs):
    target = join(runs, "w", "a.bin")
    with open_output(target) as sink:
        sink.write(b"x" * 1000)
        assert not exists(target)  # nothing to see while it is written
    assert sink.size == 1000 and is_file(target)
    with open_input(target) as f:
        assert f.read() == b"x" * 1000


def test_a_writer_that_fails_leaves_no_object(runs):
    target = join(runs, "w", "failed.bin")
    with pytest.raises(RuntimeError), open_output(target) as sink:
        sink.write(b"half")
        raise RuntimeError("the task died")
    assert not exists(target) and listing(join(runs, "w")) == ["a.bin"]


def stage(run_dir: str, config: str = "c1") -> Stage:
    return Stage(run_dir, "annotated", config, "input-1")


ROWS = [
    {"id": f"d{i}", "text": f"Text {i}.", "reject": None if i % 3 else "c4:lorem_ipsum"} for i in range(7)
]


def write_stage(run_dir: str, parts: int = 2) -> dict:
    s = stage(run_dir)
    s.prepare()
    rows = [ROWS[i::parts] for i in range(parts)]
    summaries = [s.write_part(i, r, counts={"documents": len(r)}) for i, r in enumerate(rows)]
    return s.commit(summaries, rows_in=len(ROWS), started=0.0)


def test_stage_on_object_storage_is_committed_by_its_manifest_in_place(runs, tmp_path):
    run = join(runs, "stage")
    remote, local = write_stage(run), write_stage(str(tmp_path))
    # The same parts, byte for byte, as on disk; the stage directory is written where it ends up.
    assert [p["files"] for p in remote["parts"]] == [p["files"] for p in local["parts"]]
    assert remote["output_fingerprint"] == local["output_fingerprint"]
    assert listing(run) == [
        "annotated/_parts/part-00000.json",
        "annotated/_parts/part-00001.json",
        "annotated/kept/part-00000.parquet",
        "annotated/kept/part-00001.parquet",
        "annotated/manifest.json",
        "annotated/rejected/part-00000.parquet",
        "annotated/rejected/part-00001.parquet",
    ]
    assert stage(run).finished() == remote
    with open_input(join(run, "annotated", "kept", "part-00001.parquet")) as f:
        assert pq.read_table(f).column("id").to_pylist() == ["d1", "d5"]


def test_unfinished_stage_on_object_storage_resumes_and_a_changed_one_is_redone(runs):
    run = join(runs, "resume")
    s = stage(run)
    s.prepare()
    done = s.write_part(0, ROWS[0::2], counts={"documents": 4})
    assert s.finished() is None  # no manifest: not complete, though its files are in place
    s.prepare()  # a rerun with the same config keeps the finished part
    assert s.part_done(0) == done and s.part_done(1) is None
    write_stage(run)
    changed = stage(run, "c2")
    assert changed.finished() is None
    changed.prepare()  # another config: the old stage goes, manifest and parts
    assert listing(run) == ["annotated/_attempt.json"]
    remove(join(run, "annotated"))
    assert not exists(join(run, "annotated"))


def test_shards_in_a_bucket_read_back_checked_against_their_manifest(runs, tmp_path):
    docs = [[1, 2, 3, 0], [4, 5, 0], [6, 0]]
    remote, local = join(runs, "sharded", "shards"), tmp_path
    entries = write_split(remote, "train", docs, 300, shard_tokens=4)
    assert entries == write_split(local, "train", docs, 300, shard_tokens=4)  # the same bytes
    manifest = {"tokenizer": {"sha256": "-"}, "dtype": "uint16", "eot_id": 0, "splits": {"train": entries}}
    write_json_atomic(join(remote, "manifest.json"), manifest)
    readers = open_split(remote, "train")
    assert [reader[i].tolist() for reader in readers for i in range(len(reader))] == docs
    with open_output(join(remote, "train_00001.bin")) as f:  # altered: another object version
        f.write(b"\x07\x00" * 5)  # as many bytes as before, other ones
    with pytest.raises(ShardError, match=r"^s3://runs/sharded/shards/train_00001.bin: sha256 does not match"):
        open_split(remote, "train")


def refinery(out: str, config: Path) -> list[str]:
    command = [str(Path(sys.executable).parent / "refinery"), "run", str(config), "--input", GLOB]
    return [*command, "--out", out, "--stages", ",".join(CURATION), "--master", "local[2]"]


def run_ok(out: str, config: Path) -> str:
    command = refinery(out, config)
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, cwd=REPO, env=dict(os.environ)
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    return log


@pytest.fixture(scope="module")
def config(runs, tmp_path_factory) -> Path:
    """The sample WARCs in s3://crawl/sample/, and tests/test_faults.py's config: the smallest that
    gives every curation stage rows, three parts each."""
    upload([SAMPLE / name for name in FILES], "s3://crawl/sample/")
    path = tmp_path_factory.mktemp("config") / "config.yaml"
    path.write_text(yaml.safe_dump(CONFIG))
    return path


@pytest.fixture(scope="module")
def local_run(config, tmp_path_factory) -> Path:
    """The same objects curated into a run directory on disk."""
    out = tmp_path_factory.mktemp("local") / "run"
    run_ok(str(out), config)
    return out


@pytest.fixture(scope="module")
def s3_run(config) -> tuple[str, str]:
    out = "s3://runs/r1"
    return out, run_ok(out, config)


def stage_bytes(stage_dir: str) -> dict[str, str]:
    """sha256 of every file a stage publishes but its manifests and task records (they hold times
    and paths), in a bucket or on disk."""
    fs, path = fsspec.core.url_to_fs(stage_dir)
    fs.invalidate_cache()
    return {
        f.removeprefix(path).lstrip("/"): hashlib.sha256(fs.cat_file(f)).hexdigest()
        for f in sorted(fs.find(path))
        if posixpath.basename(f) not in ("manifest.json", "timing.json") and "/_parts/" not in f
    }


def kept_ids(stage_dir: str) -> list[str]:
    ids = []
    for part in expand(join(stage_dir, "kept", "*.parquet")):
        with open_input(part) as f:
            ids += pq.read_table(f, columns=["id"]).column("id").to_pylist()
    return sorted(ids)


def shard_checksums(run: str) -> list[tuple[str, str, str]]:
    splits = read_json(join(run, "shards", "manifest.json"))["splits"]
    return [(e["name"], e["bin_sha256"], e["idx_sha256"]) for s in sorted(splits) for e in splits[s]]


@pytest.mark.slow  # four curation runs (documents to shards) in a bucket and on disk
@pytest.mark.spark
def test_curation_in_a_bucket_has_the_bytes_of_the_local_run(s3_run, local_run):
    out, _ = s3_run
    for stage in CURATION:
        remote, local = stage_bytes(join(out, stage)), stage_bytes(str(local_run / stage))
        assert remote == local and remote, f"{stage}: files differ"
    assert kept_ids(join(out, "deduped")) == kept_ids(str(local_run / "deduped"))
    assert shard_checksums(out) == shard_checksums(str(local_run)) and shard_checksums(out)
    assert read_json(join(out, "run.json"))["inputs"] == [f"s3://crawl/sample/{n}" for n in FILES]
    assert not [p for p in listing(out) if p.endswith(".tmp") or "/." in p]


@pytest.mark.slow
@pytest.mark.spark
def test_rerun_in_a_bucket_skips_every_stage(s3_run, config):
    out, _ = s3_run
    before = {p: read_json(join(out, p)) for p in listing(out) if p.endswith("manifest.json")}
    log = run_ok(out, config)
    assert [s for s in CURATION if f"{s}: up to date, skipped" not in log] == []
    assert {p: read_json(join(out, p)) for p in listing(out) if p.endswith("manifest.json")} == before


@pytest.mark.slow
@pytest.mark.spark
def test_no_secret_in_the_run_in_the_bucket_or_its_log(s3_server, s3_run):
    out, log = s3_run
    fs, path = fsspec.core.url_to_fs(out)
    written = fs.find(path)
    assert len(written) > 20
    assert [p for p in written if s3_server.secret.encode() in fs.cat_file(p)] == []
    assert "INFO" in log and s3_server.secret not in log


@pytest.mark.slow
@pytest.mark.spark
def test_killed_run_in_a_bucket_resumes_to_the_same_bytes(s3_run, config, tmp_path):
    """The driver is killed while part 1 of deduped's output stalls and its other parts are done;
    the next run skips the finished stages, reuses those parts (and dedup's intermediates) and
    ends with the bytes of the clean run."""
    out, marker = "s3://runs/killed", tmp_path / "stalled"
    parts = join(out, "deduped", "_parts")
    log = tmp_path / "killed.log"
    with open(log, "w") as sink:
        env = {**os.environ, STALL_ENV: f"deduped:1:{marker}"}
        proc = subprocess.Popen(
            refinery(out, config), stdout=sink, stderr=sink, start_new_session=True, cwd=REPO, env=env
        )
        try:
            settled = wait_for(lambda: marker.exists() and len(listing(parts)) == 2, proc)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)  # the driver and its JVM, as losing its machine would
            proc.wait()
    assert settled, log.read_text()[-3000:]
    assert not exists(join(out, "deduped", "manifest.json"))
    finished = {p: read_json(join(parts, p)) for p in listing(parts)}

    resumed = run_ok(out, config)
    assert "annotated: up to date, skipped" in resumed and "deduped: up to date" not in resumed
    assert {p: read_json(join(parts, p)) for p in finished} == finished  # not written again
    for stage in CURATION:
        assert stage_bytes(join(out, stage)) == stage_bytes(join(s3_run[0], stage)), stage


@pytest.mark.slow
@pytest.mark.spark
def test_stats_sql_why_audit_and_report_read_the_run_in_the_bucket(s3_run, local_run, capsys):
    """The commands that read a run give for the bucket what they give for the same run on disk."""
    out, _ = s3_run
    doc_id = kept_ids(join(out, "deduped"))[0]
    commands = [["stats"], ["sql", "SELECT reject, count(*) FROM rejected GROUP BY 1 ORDER BY 1"]]
    commands += [["why", "--json", doc_id], ["pii-audit"]]  # pii-audit: 1 when a shard holds PII
    outputs = {}
    for command in commands:
        printed, codes = [], []
        for run in (out, str(local_run)):
            capsys.readouterr()
            codes.append(main([command[0], run, *command[1:]]))
            printed.append(capsys.readouterr().out.replace(run, "RUN"))
        assert codes[0] == codes[1] and codes[0] in (0, 1), command
        assert printed[0] == printed[1] and printed[0], command
        outputs[command[0]] = printed[0]
    assert doc_id in outputs["why"] and "Funnel" in outputs["stats"]
    assert main(["report", out]) == 0 and main(["report", str(local_run)]) == 0
    written = listing(join(out, "report"))
    assert "index.html" in written and [p for p in written if p.endswith(".png")]
    assert written == sorted(p.name for p in (local_run / "report").iterdir())


def wait_for(condition, proc: subprocess.Popen) -> bool:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not condition():
        if proc.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True

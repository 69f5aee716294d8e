"""Two attempts of one task (a retry beside a lost executor that still runs, a speculative copy)
write the same part at once, or one dies halfway: the committed bytes are a clean run's, and the
committed directory holds no temporary file.

The concurrent tests run the task functions in two threads held together by a barrier until both
have their temporaries open; with one fixed temporary name per part, the second rename found its
file already renamed away. The Spark test is a `local[2,2]` driver in a subprocess (a failed
task is retried once; the session fixture's `local[2]` retries nothing) whose first attempt of
part 1 exits after writing one batch. About 25 s on 2 busy cores.
"""

import inspect
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from corpus.manifest import file_sha256, is_temporary, temporary_path
from corpus.schema import to_table
from corpus.shards import ShardReader, ShardWriter, write_split
from jobs import deduped
from jobs.config import DedupedConfig
from jobs.stage import ROWS_PER_BATCH, Stage

REPO = Path(__file__).resolve().parent.parent
N_ROWS = 2 * ROWS_PER_BATCH + 100  # three batches: an attempt can stop with one written
SPARK_TIMEOUT_S = 240


def rows(n: int) -> list[dict]:
    return [
        {"id": f"d{i}", "text": f"text {i} " * (i % 7 + 1), "reject": "c4:lorem_ipsum" if i % 3 else None}
        for i in range(n)
    ]


def temporaries(directory: str | Path) -> list[str]:
    directory = Path(directory)
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if is_temporary(p.name))


def file_bytes(directory: str | Path, pattern: str = "*/*.parquet") -> dict[str, str]:
    directory = Path(directory)
    return {str(p.relative_to(directory)): file_sha256(p) for p in sorted(directory.glob(pattern))}


def clean_stage(run_dir: Path) -> dict:
    stage = Stage(str(run_dir), "annotated", "c1", "i1")
    stage.prepare()
    parts = [stage.write_part(i, rows(N_ROWS), counts={"documents": N_ROWS}) for i in range(2)]
    return stage.commit(parts, rows_in=2 * N_ROWS, started=0.0)


def in_two_threads(work, barrier: threading.Barrier) -> list:
    """`work()` in two threads that meet at `barrier`; their results, or the first exception."""
    results, errors = [None, None], []

    def run(k: int) -> None:
        try:
            results[k] = work()
        except BaseException as exc:  # re-raised in the test's thread
            barrier.abort()
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


def test_two_attempts_writing_one_part_at_once_commit_clean_bytes(tmp_path):
    clean = clean_stage(tmp_path / "clean")
    stage = Stage(str(tmp_path / "run"), "annotated", "c1", "i1")
    stage.prepare()
    open_at_once = []
    barrier = threading.Barrier(2, timeout=30)

    def attempt() -> dict:
        def meeting() -> object:
            for i, row in enumerate(rows(N_ROWS)):
                if i == 1:  # both attempts have opened their temporaries by now
                    barrier.wait()
                    open_at_once.append(temporaries(Path(stage.partial) / "kept"))
                    barrier.wait()  # neither renames before both have looked
                yield row

        return stage.write_part(0, meeting(), counts={"documents": N_ROWS})

    first, second = in_two_threads(attempt, barrier)
    assert first == second == clean["parts"][0]
    assert all(len(names) == 2 for names in open_at_once), open_at_once  # one temporary each
    part = stage.write_part(1, rows(N_ROWS), counts={"documents": N_ROWS})
    manifest = stage.commit([first, part], rows_in=2 * N_ROWS, started=0.0)
    assert manifest["output_fingerprint"] == clean["output_fingerprint"]
    assert file_bytes(stage.final) == file_bytes(tmp_path / "clean" / "annotated")
    assert temporaries(stage.final) == []


def test_failed_attempt_removes_its_temporaries(tmp_path):
    stage = Stage(str(tmp_path), "annotated", "c1", "i1")
    stage.prepare()

    def failing() -> object:
        yield from rows(N_ROWS)[: ROWS_PER_BATCH + 1]
        raise RuntimeError("executor lost")

    with pytest.raises(RuntimeError, match="executor lost"):
        stage.write_part(0, failing(), counts={"documents": N_ROWS})
    assert temporaries(stage.partial) == []
    assert stage.part_done(0) is None


def test_dead_attempts_temporaries_are_removed_at_commit(tmp_path):
    clean_stage(tmp_path / "clean")
    stage = Stage(str(tmp_path / "run"), "annotated", "c1", "i1")
    stage.prepare()
    # What a worker killed mid-write leaves: half a Parquet file and half a summary, never renamed.
    dead = [
        temporary_path(Path(stage.partial) / "kept" / "part-00000.parquet", "s0p0a0t0"),
        temporary_path(Path(stage.partial) / "_parts" / "part-00000.json", "s0p0a0t0"),
    ]
    for path in dead:
        path.write_bytes(b"PAR1 half")
    parts = [stage.write_part(i, rows(N_ROWS), counts={"documents": N_ROWS}) for i in range(2)]
    assert temporaries(stage.partial) == sorted(str(p.relative_to(stage.partial)) for p in dead)
    stage.commit(parts, rows_in=2 * N_ROWS, started=0.0)
    assert temporaries(stage.final) == []
    assert file_bytes(stage.final) == file_bytes(tmp_path / "clean" / "annotated")


def test_two_shard_writers_of_one_shard_leave_the_same_bytes(tmp_path):
    docs = [np.arange(k, k + 20 + k % 13) % 500 for k in range(300)]
    (tmp_path / "clean").mkdir()
    (tmp_path / "run").mkdir()
    [clean] = write_split(tmp_path / "clean", "train", docs, vocab_size=500)
    prefix = tmp_path / "run" / "train_00000"
    writers = [ShardWriter(prefix, 500, attempt) for attempt in ("s3p0a0t7", "s3p0a1t9")]
    for doc in docs:  # both open at once, interleaved document by document
        for writer in writers:
            writer.add(doc)
    assert len(temporaries(tmp_path / "run")) == 2
    entries = [writer.close() for writer in writers]
    assert entries == [clean, clean]
    assert file_bytes(tmp_path / "run", "*") == file_bytes(tmp_path / "clean", "*")
    assert len(ShardReader.open(prefix, clean)) == len(docs)


def test_two_attempts_writing_one_signature_part_at_once_agree(tmp_path, monkeypatch):
    source = tmp_path / "part-00000.parquet"
    pq.write_table(to_table(rows(ROWS_PER_BATCH + 50)), source)
    cfg = DedupedConfig()
    clean = tmp_path / "clean.parquet"
    deduped.write_signatures(str(source), clean, 0, cfg)
    target = tmp_path / "work" / "signatures.parquet"
    target.parent.mkdir()
    batches = threading.local()
    barrier = threading.Barrier(2, timeout=30)
    sign_batch = deduped.signature_table

    def meeting(*args, **kwargs):
        # an attempt's second batch: both attempts opened their temporaries with the first
        batches.n = getattr(batches, "n", 0) + 1
        if batches.n == 2:
            barrier.wait()
        return sign_batch(*args, **kwargs)

    monkeypatch.setattr(deduped, "signature_table", meeting)

    def attempt() -> int:
        return deduped.write_signatures(str(source), target, 0, cfg)

    assert in_two_threads(attempt, barrier) == [ROWS_PER_BATCH + 50] * 2
    assert file_sha256(target) == file_sha256(clean)
    assert temporaries(target.parent) == []


SPARK_SCRIPT = """
import json, os, sys
from pyspark import TaskContext
from jobs.config import SparkConfig
from jobs.spark import spark_session
from jobs.stage import ROWS_PER_BATCH, Stage
from corpus.manifest import is_temporary

run_dir, n_rows = sys.argv[1], int(sys.argv[2])
# Speculation on as a cluster would run it; local mode never launches a speculative copy (it
# must go to another host), so the second attempt here is the retry of a task that died.
conf = {"spark.speculation": "true", "spark.speculation.interval": "100ms"}
spark = spark_session(SparkConfig(master="local[2,2]", driver_memory="1g", conf=conf))
stage = Stage(run_dir, "annotated", "c1", "i1")
stage.prepare()


def dies_after_one_batch(rows):
    for i, row in enumerate(rows):
        if i == ROWS_PER_BATCH + 1:  # the first batch is in the temporary file
            os._exit(77)
        yield row


def task(index):
    data = rows(n_rows)
    if index == 1 and TaskContext.get().attemptNumber() == 0:
        data = dies_after_one_batch(data)
    return stage.write_part(index, data, counts={"documents": n_rows})


parts = spark.sparkContext.parallelize(range(2), 2).map(task).collect()
left = sorted(n for _, _, names in os.walk(stage.partial) for n in names if is_temporary(n))
stage.commit(parts, rows_in=2 * n_rows, started=0.0)
print("LEFT " + json.dumps(left))
spark.stop()
"""


@pytest.mark.spark
def test_task_killed_midway_and_retried_under_spark_gives_clean_bytes(tmp_path):
    clean = clean_stage(tmp_path / "clean")
    script = inspect.getsource(rows) + SPARK_SCRIPT
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "run"), str(N_ROWS)],
        capture_output=True,
        text=True,
        timeout=SPARK_TIMEOUT_S,
        cwd=REPO,
        env=env,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Lost task" in result.stderr, result.stderr[-3000:]  # Spark saw attempt 0 die
    [line] = [s for s in result.stdout.splitlines() if s.startswith("LEFT ")]
    left = json.loads(line.removeprefix("LEFT "))
    # The dead attempt's own temporaries (part 1, attempt 0), left until the commit removed them.
    assert left and all(".part-00001.parquet.s" in n and "p1a0t" in n for n in left), left
    run = tmp_path / "run" / "annotated"
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["output_fingerprint"] == clean["output_fingerprint"]
    assert file_bytes(run) == file_bytes(tmp_path / "clean" / "annotated")
    assert temporaries(run) == []

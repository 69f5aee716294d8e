"""A stage's output directory: atomic, resumable, skipped when already done.

Layout while running: RUN/.STAGE.partial/ holds `_attempt.json` (the config hash and input
fingerprint it was started with), `kept/` and `rejected/` part files, and one
`_parts/part-NNNNN.json` per finished task, written after its Parquet files. At the end the
driver writes `manifest.json` into it and renames the directory to RUN/STAGE, so a stage
directory with a manifest is always complete. On an object store (RUN an `s3://` URI), which has
no rename, the partial directory is RUN/STAGE itself and the manifest, written last, is the only
commit: `finished()` looks for nothing else, so the two layouts behave alike.

- Rerun with the same config and input: the manifest matches, the stage is skipped.
- Interrupted run, same config and input: finished parts are reused, the rest redone.
- Anything changed: the old output and partial directory are removed and the stage redone.

Tasks write their own files (executors, not the driver), with deterministic names and
content, so the same inputs give byte-identical Parquet. On a cluster RUN must be on a file
system every executor sees, or in object storage (corpus/fs.py).

Attempt safety: two attempts of one task may write the same part at once (a retry beside an
executor that was lost but still runs, a speculative copy with `spark.speculation=true`). Each
writes its files under temporary names of its own, `.NAME.ATTEMPT-PID-RANDOM.tmp` with ATTEMPT
from `task_attempt()`, and renames them onto the deterministic name, so neither truncates or
renames the other's half-written file (on an object store each upload is its own until it
completes: corpus/fs.py `open_output`). The content does not depend on the attempt, so whichever
rename comes last leaves the same bytes, and the summary the driver collects matches them. The
temporaries of an attempt that died or lost are deleted when the stage is published: a committed
stage directory holds none.

A stage's `main` is this skeleton with its own work between the steps: `up_to_date` (the finished
check and its log line), `prepare`, its passes (`run_tasks`, one Spark task per part), and
`run_parts`, the last pass with the commit (`publish` for a stage that writes no Parquet parts).
"""

import contextlib
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pyarrow.parquet as pq
from pyspark import TaskContext
from pyspark.sql import SparkSession

from corpus.fs import (
    Sink,
    exists,
    expand,
    is_file,
    is_remote,
    join,
    make_dirs,
    open_output,
    remove,
    remove_temporaries,
)
from corpus.manifest import fingerprint, read_json, sum_counts, write_json_atomic
from corpus.schema import DOCUMENT, to_table

SPLITS = ("kept", "rejected")
MANIFEST = "manifest.json"
ROWS_PER_BATCH = 1024  # rows converted and written at a time: bounds a task's memory
ROW_GROUP_ROWS = 8192
T = TypeVar("T")
# Test-only fault injection (tests/test_faults.py), never set in production. Each variable holds
# comma-separated specs "STAGE:PART:MARKER": the executor task of STAGE that handles part PART
# (shards: the write task of partition PART), after its first row (tokenizer: Arrow batch),
# creates the file MARKER and then
# - FAULT_ENV: kills its own Python worker (os._exit), as a lost executor would; Spark retries it;
# - STALL_ENV: waits mid-task until its worker's parent is gone, so a test can kill the driver
#   while the stage is half done (the task cannot finish, so neither can the stage).
# Once only: a retry or a rerun that finds MARKER runs normally. Unset (the default) they change
# nothing.
FAULT_ENV = "REFINERY_FAULT_KILL"
STALL_ENV = "REFINERY_FAULT_STALL"
FAULT_EXIT = 77
STALL_POLL_S = 0.05
STALL_MAX_S = 600  # a stalled task nobody came to kill dies then, as a killed worker would
log = logging.getLogger(__name__)


def task_attempt() -> str:
    """`s{stage}p{partition}a{attempt}t{task attempt id}` of the Spark task running this code, for
    temporary names; "local" outside a task (the driver, a test). Temporaries are unique without
    it (corpus/manifest.py `temporary_path`); it says which attempt left a file."""
    ctx = TaskContext.get()
    if ctx is None:
        return "local"
    return f"s{ctx.stageId()}p{ctx.partitionId()}a{ctx.attemptNumber()}t{ctx.taskAttemptId()}"


@dataclass(frozen=True)
class Stage:
    run_dir: str
    name: str
    config_hash: str
    input_fingerprint: str

    @property
    def final(self) -> str:
        return join(self.run_dir, self.name)

    @property
    def in_place(self) -> bool:
        """On an object store the stage is written where it ends up (module docstring)."""
        return is_remote(self.run_dir)

    @property
    def partial(self) -> str:
        return self.final if self.in_place else join(self.run_dir, f".{self.name}.partial")

    def _key(self) -> dict[str, str]:
        return {"config_hash": self.config_hash, "input_fingerprint": self.input_fingerprint}

    def finished(self) -> dict[str, Any] | None:
        """The manifest of a complete run of this stage with the same config and input."""
        path = join(self.final, MANIFEST)
        if not is_file(path):
            return None
        manifest = read_json(path)
        return manifest if {k: manifest.get(k) for k in self._key()} == self._key() else None

    def prepare(self, subdirs: tuple[str, ...] = (*SPLITS, "_parts")) -> None:
        """Clear stale output; keep a partial directory started with the same config and input.

        `subdirs` are created in it: a stage that writes no Parquet (tokenizer, shards) asks for
        fewer."""
        # A published stage that `finished()` did not take is stale; in place, only its manifest
        # tells it from a partial one.
        if exists(join(self.final, MANIFEST) if self.in_place else self.final):
            remove(self.final)
        attempt = join(self.partial, "_attempt.json")
        if exists(self.partial) and (not is_file(attempt) or read_json(attempt) != self._key()):
            remove(self.partial)
        for sub in ("", *subdirs):
            make_dirs(join(self.partial, sub))
        write_json_atomic(attempt, self._key())

    def part_done(self, index: int) -> dict[str, Any] | None:
        path = join(self.partial, "_parts", f"part-{index:05d}.json")
        return read_json(path) if is_file(path) else None

    def save_part(self, index: int, summary: dict[str, Any]) -> dict[str, Any]:
        """Record a finished task (after its files are in place), for `part_done` on a resume."""
        write_json_atomic(join(self.partial, "_parts", f"part-{index:05d}.json"), summary, task_attempt())
        return summary

    def write_part(self, index: int, rows: Iterable[dict[str, Any]], **info: Any) -> dict[str, Any]:
        """Stream `rows` into kept/ and rejected/ part files; return (and record) the part's summary.

        `info` is stored with the summary; an `info["counts"]` Counter may still be filled
        while `rows` is consumed (the reader counts records as it goes), so it is read last.
        """
        name = f"part-{index:05d}.parquet"
        attempt = task_attempt()
        # A failed attempt's half-written files go with it (open_output); both appear only once
        # both are complete.
        with contextlib.ExitStack() as files_open:
            sinks = {
                split: files_open.enter_context(open_output(join(self.partial, split, name), attempt))
                for split in SPLITS
            }
            rows_written = _write_splits(sinks, rows)
        # Size and digest of this attempt's own bytes: another attempt may replace the final name at
        # any time (with the same bytes).
        files = {
            split: {
                "file": f"{split}/{name}",
                "rows": rows_written[split],
                "bytes": sink.size,
                "sha256": sink.sha256(),
            }
            for split, sink in sinks.items()
        }
        counts = Counter(info.pop("counts", {}))
        counts.update({k: v for k, v in rows_written.items() if k.startswith("rejected.")})
        counts["kept"] += rows_written["kept"]
        summary = {"index": index, "files": files, "counts": dict(sorted(counts.items())), **info}
        return self.save_part(index, summary)

    def commit(
        self, parts: list[dict[str, Any]], *, rows_in: int, started: float, **extra: Any
    ) -> dict[str, Any]:
        """Write the manifest from the task summaries, then publish the directory by rename."""
        parts = sorted(parts, key=lambda p: p["index"])
        counts = sum_counts(p["counts"] for p in parts)
        rejected = {k.removeprefix("rejected."): v for k, v in counts.items() if k.startswith("rejected.")}
        manifest = {
            "stage": self.name,
            **self._key(),
            "output_fingerprint": fingerprint([[f["sha256"] for f in p["files"].values()] for p in parts]),
            "rows": {"in": rows_in, "kept": counts.get("kept", 0), "rejected": sum(rejected.values())},
            "rejected": rejected,
            "bytes": {split: sum(p["files"][split]["bytes"] for p in parts) for split in SPLITS},
            "counts": counts,
            "parts": parts,
            "wall_time_s": round(time.time() - started, 3),
            **extra,
        }
        assert manifest["rows"]["in"] == manifest["rows"]["kept"] + manifest["rows"]["rejected"], (
            f"{self.name}: rows in {rows_in} != kept + rejected {manifest['rows']}"
        )
        return self.publish(manifest)

    def publish(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Write manifest.json, with the stage name and this attempt's key, and rename the directory
        into place: from now on `finished()` finds it."""
        manifest = {"stage": self.name, **manifest, **self._key()}
        remove(join(self.partial, "_attempt.json"))
        # Every task has returned, so a temporary left now belongs to an attempt that died or lost.
        if stray := remove_temporaries(self.partial):
            log.info("%s: removed %d temporaries of failed or losing attempts", self.name, len(stray))
        write_json_atomic(join(self.partial, MANIFEST), manifest)
        if not self.in_place:
            os.replace(self.partial, self.final)
        return manifest


def kept_parts(stage_dir: str) -> list[str]:
    """The kept Parquet parts of a finished stage, in part order: the next stage's input."""
    return expand(join(stage_dir, "kept", "part-*.parquet"))


def up_to_date(stage: Stage, logger: logging.Logger) -> dict[str, Any] | None:
    """The manifest of a finished run of `stage` with the same config and input, logged on the
    calling stage's `logger` as skipped; None when the stage has to run. Every stage asks first,
    before it plans, reads or trains anything, so a finished stage costs one manifest read."""
    manifest = stage.finished()
    if manifest is not None:
        logger.info("%s: up to date, skipped (%s)", stage.name, stage.final)
    return manifest


def run_tasks(spark: SparkSession, n_tasks: int, task: Callable[[int], T]) -> list[T]:
    """`task(0)`, ..., `task(n_tasks - 1)` on the executors, one Spark partition each (a part is
    the unit of work and of resumption), results in index order whatever the scheduling."""
    return spark.sparkContext.parallelize(range(n_tasks), max(n_tasks, 1)).map(task).collect()


def run_parts(
    spark: SparkSession,
    stage: Stage,
    n_parts: int,
    task: Callable[[int], dict[str, Any]],
    *,
    started: float,
    finish: Callable[[list[dict[str, Any]]], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The pass a Parquet stage ends with, then its commit; `stage.prepare()` came before (where
    depends on the stage: mixed and decontam fail on a bad config before they write anything).

    `task(index)` writes part `index` on an executor, or returns its summary from an earlier
    attempt (`part_done`). Then, on the driver, `finish(parts)` does what waits for every part
    (removing intermediates) and returns the manifest's own entries. Rows in are the parts'
    `documents` counts: every stage counts its input rows so.
    """
    parts = run_tasks(spark, n_parts, task)
    extra = finish(parts) if finish else {}
    rows_in = sum(p["counts"].get("documents", 0) for p in parts)
    return stage.commit(parts, rows_in=rows_in, started=started, **extra)


def inject_fault(stage: str, index: int, rows: Iterable[T]) -> Iterable[T]:
    """`rows` unchanged, unless FAULT_ENV or STALL_ENV names this stage and part (see FAULT_ENV)."""
    faults = [(env, marker) for env in (FAULT_ENV, STALL_ENV) if (marker := _fault_marker(env, stage, index))]
    if not faults:
        return rows

    def faulted() -> Iterator[T]:
        for n, row in enumerate(rows):
            yield row
            if n > 0:
                continue
            for env, marker in faults:
                if not _first_time(marker):
                    continue  # fired in an earlier attempt: this is the retry, or the rerun
                if env == STALL_ENV:
                    _wait_for_parent_exit()
                os._exit(FAULT_EXIT)  # no cleanup, no more writes: as a killed process

    return faulted()


def _fault_marker(env: str, stage: str, index: int) -> str | None:
    for spec in filter(None, os.environ.get(env, "").split(",")):
        name, part, marker = spec.split(":", 2)
        if name == stage and int(part) == index:
            return marker
    return None


def _first_time(marker: str) -> bool:
    """Create `marker`; False if it exists already (the fault fired in an earlier attempt)."""
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def _wait_for_parent_exit() -> None:
    """Until the worker's parent (Spark's daemon, or the JVM) is gone: the test killed the driver."""
    parent, deadline = os.getppid(), time.monotonic() + STALL_MAX_S
    while os.getppid() == parent and time.monotonic() < deadline:
        time.sleep(STALL_POLL_S)


def _write_splits(sinks: dict[str, Sink], rows: Iterable[dict[str, Any]]) -> Counter[str]:
    """Stream `rows` into one Parquet file per split, into `sinks`; return the rows written per
    split and per reject rule (`rejected.RULE`)."""
    writers = {}
    rows_written: Counter[str] = Counter()
    try:
        for split, sink in sinks.items():
            writers[split] = pq.ParquetWriter(sink, DOCUMENT, compression="zstd")
        for batch in _batches(rows, ROWS_PER_BATCH):
            for split in SPLITS:
                chosen = [r for r in batch if (r.get("reject") is None) == (split == "kept")]
                if chosen:
                    writers[split].write_table(to_table(chosen), row_group_size=ROW_GROUP_ROWS)
                    rows_written[split] += len(chosen)
            for row in batch:
                if row.get("reject") is not None:
                    rows_written[f"rejected.{row['reject']}"] += 1
    finally:
        for writer in writers.values():
            writer.close()
    return rows_written


def _batches(rows: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    batch = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch

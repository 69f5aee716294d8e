"""`refinery run`: resolve the config and inputs, then run the requested stages in order."""

import importlib.metadata
import logging
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pyspark import StatusTracker
from pyspark.sql import SparkSession

from corpus.fs import expand, file_version, is_path_list, is_remote, join, make_dirs, read_path_list
from corpus.manifest import write_json_atomic
from corpus.progress import EVERY_S, duration, estimate
from jobs import annotated, decontam, deduped, documents, mixed, preflight, shards, tokenizer, train_stages
from jobs.config import PipelineConfig, load_config
from jobs.spark import spark_session

CURATION = ("documents", "annotated", "deduped", "mixed", "decontam", "tokenizer", "shards")
# The curation stages after `documents`, each `main(spark, cfg, run_dir)`; the module, not its
# `main`, so that a test's monkeypatched `main` is the one called.
CURATION_MODULES = {
    "annotated": annotated,
    "deduped": deduped,
    "mixed": mixed,
    "decontam": decontam,
    "tokenizer": tokenizer,
    "shards": shards,
}
# Training stages run when the config's `train` section names their configs (conf/full.yaml).
STAGES = CURATION + tuple(train_stages.STAGES)
PACKAGES = (
    "refinery",
    "pyspark",
    "warcio",
    "trafilatura",
    "fasttext-numpy2",
    "pyarrow",
    "tokenizers",
    "datasketch",
    "duckdb",
    "pydantic",
)
log = logging.getLogger(__name__)
POLL_S = 5.0  # seconds between looks at Spark's running stages (each a few calls to the driver's JVM)


def expand_inputs(
    patterns: list[str], *, prefix: str | None = None, skip: int = 0, limit: int | None = None
) -> list[str]:
    """Files matching the globs (local, or URIs such as `s3://b/crawl/*.warc.gz`) and the files
    named by path lists (`*.paths`, `*.paths.gz`: entries `skip` to `skip + limit`, joined to
    `prefix`), sorted and de-duplicated. A glob that matches nothing, or a listed file that does
    not exist, is an error (one metadata request per listed file)."""
    if (prefix or skip or limit is not None) and not any(is_path_list(p) for p in patterns):
        raise ValueError("--input-prefix, --input-skip and --input-limit apply to a path list (*.paths[.gz])")
    if skip < 0 or (limit is not None and limit < 1):
        raise ValueError(f"--input-skip {skip} / --input-limit {limit}: skip must be >= 0, limit >= 1")
    found: set[str] = set()
    for pattern in patterns:
        if is_path_list(pattern):
            listed = read_path_list(pattern, prefix=prefix, skip=skip, limit=limit)
            for path in listed:
                file_version(path)  # FileNotFoundError naming it, before Spark starts
            found.update(listed)
            continue
        matches = expand(pattern)
        if not matches:
            raise FileNotFoundError(f"--input {pattern!r}: no file matches")
        found.update(matches)
    return sorted(found)


def parse_stages(text: str | None, cfg: PipelineConfig | None = None) -> list[str]:
    """The stages to run, in pipeline order: the named ones, or all that the config enables."""
    cfg = cfg or PipelineConfig()
    if not text:
        return [s for s in STAGES if s in CURATION or train_stages.enabled(cfg, s)]
    names = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in names if s not in STAGES]
    if unknown:
        raise ValueError(f"--stages: unknown stage(s) {unknown}; allowed: {', '.join(STAGES)}")
    for name in names:
        if name not in CURATION and not train_stages.enabled(cfg, name):
            key = train_stages.STAGES[name][1]
            raise ValueError(f"--stages {name}: the config sets no train.{key}; see conf/full.yaml")
    return sorted(names, key=STAGES.index)


def _versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def run(
    config: str | None,
    inputs: list[str],
    out: str,
    *,
    master: str | None = None,
    stages: str | None = None,
    force: bool = False,
    strict: bool = False,
    input_prefix: str | None = None,
    input_skip: int = 0,
    input_limit: int | None = None,
) -> dict[str, Any]:
    cfg = load_config(config)
    names = parse_stages(stages, cfg)
    listing = {"prefix": input_prefix, "skip": input_skip, "limit": input_limit}
    files = expand_inputs(inputs, **listing) if "documents" in names else []
    source = cfg.source or (documents.source_name(files) if files else None)
    run_dir = out if is_remote(out) else Path(out)
    record = {
        "config": cfg.model_dump(mode="json"),
        "config_file": str(config) if config else None,
        "inputs": files,
        "source": source,
        "stages": names,
        "seed": cfg.seed,
        "versions": _versions(),
    }
    # Inputs, model files, upstream stages and RUN itself are checked before anything is written.
    preflight.check(cfg, names, files, run_dir, record, force=force, strict=strict)
    make_dirs(run_dir)
    write_json_atomic(join(run_dir, "run.json"), record)
    # Training stages alone need no Spark (and no JVM start-up).
    spark = spark_session(cfg.spark, master) if any(n in CURATION for n in names) else None
    return run_stages(names, spark, cfg, files, run_dir, source)


def run_stages(
    names: list[str],
    spark: SparkSession | None,
    cfg: PipelineConfig,
    files: list[str],
    run_dir: str | Path,
    source: str | None,
) -> dict[str, Any]:
    """Each stage in turn, between two progress lines (`[3/12] deduped started`, `[3/12] deduped
    done in 36 s`): plain log lines, so a redirected log says which stage of how many is running
    and how long each took. In between, a stage that does not log its own progress (the training
    loop does, training/loop.py) gets a line about every minute (`_heartbeat`). Spark is stopped
    before the first training stage: its JVM would otherwise hold ~1.5 GB through half an hour of
    training (conf/full.yaml), and nothing after the shards reads through Spark."""
    manifests = {}
    for i, name in enumerate(names, 1):
        if spark is not None and name not in CURATION:
            spark.stop()
            spark = None
        label = f"[{i}/{len(names)}] {name}"
        log.info("%s started", label)
        started = time.monotonic()
        with _heartbeat(label, spark, on=name not in train_stages.LOGS_PROGRESS):
            manifests[name] = _run_stage(name, spark, cfg, files, run_dir, source)
        seconds = time.monotonic() - started
        if name in train_stages.STAGES:  # a curation stage's manifest holds its own
            train_stages.record_wall_time(run_dir, name, seconds, manifests[name])
        log.info("%s done in %s", label, duration(seconds))
    return manifests


@contextmanager
def _heartbeat(label: str, spark: SparkSession | None, *, on: bool = True) -> Iterator[None]:
    """While the block runs, a line about every `EVERY_S` seconds from a daemon thread: the time so
    far and, under Spark, the tasks done of each running Spark stage with the time that stage has
    left at its pace so far (`[3/12] deduped: 2 min 00 s; Spark stage 7: tasks 12/40, 1 min 05 s,
    about 2 min 10 s left`). A curation stage is several Spark passes, so only the running pass
    can be estimated."""
    if not on:
        yield
        return
    stop = threading.Event()
    tracker = spark.sparkContext.statusTracker() if spark is not None else None
    thread = threading.Thread(target=_beat, args=(label, tracker, stop), daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _beat(label: str, tracker: StatusTracker | None, stop: threading.Event) -> None:
    """Look at Spark's running stages every `POLL_S` seconds, so that a stage's time is counted from
    within seconds of its start; log every `EVERY_S`."""
    started = last = time.monotonic()
    first_seen: dict[int, float] = {}
    while not stop.wait(min(POLL_S, EVERY_S)):
        now = time.monotonic()
        passes = _spark_passes(tracker, first_seen, now) if tracker is not None else []
        if now - last >= EVERY_S:
            last = now
            log.info("%s: %s", label, "; ".join([duration(now - started), *passes]))


def _spark_passes(tracker: StatusTracker, first_seen: dict[int, float], now: float) -> list[str]:
    """`Spark stage 7: tasks 12/40, 1 min 05 s, about 2 min 10 s left` per running Spark stage, timed
    from when this heartbeat first saw it (`first_seen`, by stage id)."""
    lines = []
    for stage_id in sorted(tracker.getActiveStageIds()):
        info = tracker.getStageInfo(stage_id)
        if info is None:  # finished since it was listed
            continue
        tasks = estimate(now - first_seen.setdefault(stage_id, now), info.numCompletedTasks, info.numTasks)
        lines.append(f"Spark stage {stage_id}: tasks {tasks}")
    return lines


def _run_stage(
    name: str,
    spark: SparkSession | None,
    cfg: PipelineConfig,
    files: list[str],
    run_dir: str | Path,
    source: str | None,
) -> dict[str, Any]:
    if name == "documents":
        return documents.main(spark, cfg, files, str(run_dir), source)
    if name in CURATION_MODULES:
        return CURATION_MODULES[name].main(spark, cfg, str(run_dir))
    return train_stages.run_stage(name, cfg, run_dir)

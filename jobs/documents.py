"""documents stage: WARC files → RUN/documents/{kept,rejected}/part-NNNNN.parquet + manifest.json.

Input: WARC files (plain or gzip, one Spark task per file, part N = the N-th file in sorted
order). Every record read is counted by kind in the manifest (`records.*`, and responses by
status and type as `response.<status>.<mime>`); read errors are counted and listed with their
file and offset. HTML 200 responses become rows. Reject rules: `extract:too_large`,
`extract:timeout`, `extract:failed`, `extract:empty`.
"""

import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession

from corpus.documents import warc_documents
from corpus.extract import Extractor
from corpus.manifest import files_fingerprint, fingerprint
from jobs.config import PipelineConfig, build
from jobs.stage import Stage, inject_fault

STAGE = "documents"
VERSION = 1  # bump when a code change alters this stage's output for the same config
log = logging.getLogger(__name__)


def main(
    spark: SparkSession, cfg: PipelineConfig, inputs: list[str], run_dir: str, source: str
) -> dict[str, Any]:
    inputs = sorted(inputs)
    key = {"version": VERSION, "source": source, "extract": cfg.documents.model_dump(mode="json")}
    stage = Stage(run_dir, STAGE, fingerprint(key), files_fingerprint(inputs))
    if manifest := stage.finished():
        log.info("documents: up to date, skipped (%s)", stage.final)
        return manifest
    started = time.time()
    stage.prepare()
    extractor = build(Extractor, cfg.documents)

    def task(index: int) -> dict[str, Any]:
        if done := stage.part_done(index):  # finished by an interrupted earlier attempt
            return done
        counts: Counter = Counter()
        errors: list[dict[str, Any]] = []
        rows = warc_documents(inputs[index], source=source, extractor=extractor, counts=counts, errors=errors)
        rows = inject_fault(STAGE, index, rows)  # test-only hook, inert by default
        return stage.write_part(index, rows, counts=counts, input=inputs[index], errors=errors)

    # One partition per WARC file: a file is read sequentially, so it is the unit of parallelism.
    parts = spark.sparkContext.parallelize(range(len(inputs)), max(len(inputs), 1)).map(task).collect()
    rows_in = sum(p["counts"].get("documents", 0) for p in parts)
    errors = [e for p in parts for e in p["errors"]]
    return stage.commit(parts, rows_in=rows_in, started=started, inputs=len(inputs), errors=errors)


def source_name(inputs: list[str]) -> str:
    """Default source name: the directory the inputs sit in (e.g. `crawl-sample`)."""
    parents = {Path(p).resolve().parent.name for p in inputs}
    return parents.pop() if len(parents) == 1 else "mixed"

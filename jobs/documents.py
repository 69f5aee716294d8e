"""documents stage: input files → RUN/documents/{kept,rejected}/part-NNNNN.parquet + manifest.json.

Input: WARC files (plain or gzip) and documents as JSONL or Parquet (corpus/inputs.py), in
sorted order, one Spark task per piece. A file over `spark.task_target_mb` is cut into pieces of
about that size (corpus/inputs.py `plan_pieces`): a WARC (uncompressed, or a gzip member per
record as Common Crawl writes it; pieces of at least 1 MiB) and a plain JSONL file by byte
ranges, a task reading the records or lines that start in its range (the last one may run past
its end); a Parquet file by runs of row groups. So a 1 GiB crawl WARC is read by 8 tasks at the
default 128. A compressed JSONL file (`.jsonl.gz`, `.jsonl.zst`), a WARC gzipped as one stream,
and a smaller file are one piece each: a task holds one piece, a compressed stream cannot be
entered midway, and the stages after this one re-cut their tasks from these parts' row groups
(corpus/units.py). Part N is the N-th piece; the parts' rows, in order, their ids, counts and
read errors are what one task per file would give (a damaged region counted once, by the piece
whose reading reaches it).
Every WARC record read is counted by kind in the manifest (`records.*`, and responses by status
and type as `response.<status>.<mime>`); read errors are counted and listed with their file and
offset. HTML 200 responses and the rows of JSONL and Parquet files (counted as `input_rows`)
become rows. A file that cannot be read at all (empty, not a WARC, unreadable) is listed in the
manifest's `bad_files` with its reason and counted as `input_files.bad`; the run goes on.
Reject rules: `extract:too_large`, `extract:timeout`, `extract:failed`, `extract:empty`,
`input:bad_json`, `input:too_large`, `input:no_text`; and, decided before extraction on cheap
signals (classifiers/prefilter.py, `documents.url_rules_first` and
`documents.language_prefilter_margin`), the annotated stage's `url:*` rules and its
`lang:not_allowed` by the language prefilter, each row with the signals that decided it.

Driver holds: the input paths, their pieces and one summary per part (O(input files + input
bytes / task_target_mb)): its counts, its bad file if any, and at most MAX_ERRORS_KEPT (20) read
errors (corpus/documents.py). No record or row reaches it.
"""

import dataclasses
import logging
import time
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any

from pyspark import SparkFiles
from pyspark.sql import SparkSession

from classifiers.langid import lid176_path
from classifiers.prefilter import Prefilter
from corpus.documents import MAX_ERRORS_KEPT
from corpus.extract import Extractor
from corpus.filters.language import LanguageFilter, LanguagePrefilter
from corpus.filters.url import UrlFilter
from corpus.inputs import (
    Piece,
    count_newlines,
    input_documents,
    input_format,
    plan_pieces,
    warc_splittable,
    whole_files,
    with_line_counts,
)
from corpus.manifest import file_sha256, files_fingerprint, fingerprint
from corpus.units import MB
from jobs.config import PipelineConfig, build
from jobs.spark import ship
from jobs.stage import Stage, inject_fault, run_parts, run_tasks, up_to_date

STAGE = "documents"
# Bump when a code change alters this stage's output for the same config.
# 2: JSONL and Parquet input, bad files skipped, `extractor` and `metadata` columns; 3: URL rules
# and language prefilter before extraction, date for survivors only, default-mode fallback; pieces
# 4: large WARCs read in pieces (more part files)
VERSION = 4
log = logging.getLogger(__name__)


def main(
    spark: SparkSession, cfg: PipelineConfig, inputs: list[str], run_dir: str, source: str
) -> dict[str, Any]:
    inputs = sorted(inputs)
    gate = make_gate(cfg, cfg.annotated.lid_model or lid176_path())
    key = {
        "version": VERSION,
        "source": source,
        "extract": cfg.documents.model_dump(mode="json"),
        "task_target_mb": cfg.spark.task_target_mb,  # it decides the pieces, so the part files
        "gate": gate_key(gate, cfg),
    }
    stage = Stage(run_dir, STAGE, fingerprint(key), files_fingerprint(inputs))
    if manifest := up_to_date(stage, log):
        return manifest
    started = time.time()
    stage.prepare()
    if gate is not None and gate.lid_model is not None:
        # shipped, so that executors without the driver's file system find it (jobs/spark.py)
        gate = dataclasses.replace(gate, lid_model=ship(spark, gate.lid_model, "lid"))
    pieces = plan(spark, inputs, cfg.spark.task_target_mb)
    task = partial(_read_piece, stage, build(Extractor, cfg.documents), gate, pieces, source)
    # One partition per piece: a piece is read sequentially, so it is the unit of parallelism.
    return run_parts(
        spark, stage, len(pieces), task, started=started, finish=lambda parts: _read_errors(inputs, parts)
    )


def make_gate(cfg: PipelineConfig, lid_model: str) -> Prefilter | None:
    """The annotated rules the documents stage decides first (classifiers/prefilter.py), from the
    annotated config: its URL rules, its language prefilter and, with `date_survivors_only`, its
    language rule for the date; None when there is none."""
    docs, annotated = cfg.documents, cfg.annotated
    url = build(UrlFilter, annotated.url) if docs.url_rules_first and annotated.url.enabled else None
    language = annotated.language if annotated.language.enabled else None
    margin = docs.language_prefilter_margin
    prefilter = None
    if language is not None and language.languages is not None and margin is not None:
        prefilter = LanguagePrefilter(languages=language.languages, margin=margin)
    rule = build(LanguageFilter, language) if language is not None and docs.date_survivors_only else None
    if url is None and prefilter is None and rule is None:
        return None
    return Prefilter(url, prefilter, rule, lid_model if prefilter or rule else None)


def gate_key(gate: Prefilter | None, cfg: PipelineConfig) -> dict[str, Any] | None:
    """What the gate's decisions depend on: the annotated sections it uses, their list files and
    the language model (by content)."""
    if gate is None:
        return None
    key: dict[str, Any] = {}
    if gate.url is not None:
        url = cfg.annotated.url.model_dump(mode="json")
        files = sorted(p for k, v in url.items() if k.endswith("_files") for p in v)
        key["url"] = {**url, "lists": {p: file_sha256(p) for p in files}}
    if gate.lid_model is not None:
        key["language"] = cfg.annotated.language.model_dump(mode="json")
        key["lid_model"] = file_sha256(gate.lid_model)
    return key


def plan(spark: SparkSession, inputs: list[str], target_mb: float) -> list[Piece]:
    """The input files' pieces in file order (corpus/inputs.py `plan_pieces`: a size or a footer
    per file, read here). On the executors: whether each large WARC can be split (`_probe_warcs`),
    and the newlines of plain JSONL byte ranges, a task per range, to number their lines."""
    target = max(1, round(target_mb * MB))
    planned = [piece for path in inputs for piece in plan_pieces(path, target, probe=False)]
    pieces = _probe_warcs(spark, planned)
    ranged = [p for p in pieces if p.stop is not None and input_format(p.path) == "jsonl"]
    if not ranged:
        return pieces
    counted = with_line_counts(ranged, run_tasks(spark, len(ranged), lambda i: count_newlines(ranged[i])))
    numbered = {(p.path, p.index): p for p in counted}
    return [numbered.get((p.path, p.index), p) for p in pieces]


def _probe_warcs(spark: SparkSession, pieces: list[Piece]) -> list[Piece]:
    """The pieces, with each WARC that cannot be split (corpus/inputs.py `warc_splittable`) one
    piece again. The check reads a file's first members: a task per file on the executors, not a
    read per file on the driver (Common Crawl: 90,000 files of 1 GB, each over the target)."""
    cut = sorted({p.path for p in pieces if p.stop is not None and input_format(p.path) == "warc"})
    if not cut:
        return pieces
    splits = run_tasks(spark, len(cut), lambda i: warc_splittable(cut[i]))
    return whole_files(pieces, {path for path, ok in zip(cut, splits, strict=True) if not ok})


def _read_piece(
    stage: Stage, extractor: Extractor, gate: Prefilter | None, pieces: list[Piece], source: str, index: int
) -> dict[str, Any]:
    """Part `index`: the documents of the `index`-th piece (a part finished earlier is reused)."""
    if done := stage.part_done(index):  # finished by an interrupted earlier attempt
        return done
    if gate is not None and gate.lid_model is not None:
        gate = dataclasses.replace(gate, lid_model=SparkFiles.get(gate.lid_model))
    piece = pieces[index]
    counts: Counter = Counter()
    errors: list[dict[str, Any]] = []
    bad: list[dict[str, str]] = []
    rows = input_documents(
        piece.path,
        source=source,
        extractor=extractor,
        counts=counts,
        errors=errors,
        bad_files=bad,
        gate=gate,
        piece=piece,
    )
    rows = inject_fault(STAGE, index, rows)  # test-only hook, inert by default
    info = {"input": piece.path, "range": piece.describe()["range"], "errors": errors, "bad_files": bad}
    return stage.write_part(index, rows, counts=counts, **info)


def _read_errors(inputs: list[str], parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The manifest's input count, read errors and unreadable files, gathered from the parts: the
    first MAX_ERRORS_KEPT read errors of each file, as one task reading it whole keeps them."""
    kept: Counter = Counter()
    errors = []
    for error in (e for p in parts for e in p["errors"]):
        kept[error["file"]] += 1
        if kept[error["file"]] <= MAX_ERRORS_KEPT:
            errors.append(error)
    bad_files = [b for p in parts for b in p["bad_files"]]  # at most one per input file
    if bad_files:
        log.warning("documents: %d input file(s) unreadable, skipped (manifest: bad_files)", len(bad_files))
    return {"inputs": len(inputs), "errors": errors, "bad_files": bad_files}


def source_name(inputs: list[str]) -> str:
    """Default source name: the directory the inputs sit in (e.g. `crawl-sample`)."""
    parents = {Path(p).resolve().parent.name for p in inputs}
    return parents.pop() if len(parents) == 1 else "mixed"

"""The deduped stage's paragraph step (`deduped.paragraphs`): corpus/paragraphs.py at any size.

Paragraphs carried by at least `min_documents` of the documents that URL, exact and near dedup
keep are removed from those documents; a document left with no word is `duplicate:paragraphs`.
Every output row gets `paragraphs_removed`: the lines removed from a document kept (0 for none),
null for a row rejected before this step, and for every row with the step off.

Why after document-level dedup, on the documents it keeps, and not before it so that exact and
near dedup compare cleaned text: copies of one page would count as carriers of its paragraphs.
Five near copies of an article (syndicated, refetched, with different navigation) make every
paragraph of it a paragraph of 5 documents, and at `min_documents` 5 the article would be
stripped from all of them and each rejected as emptied; counted over the documents dedup keeps,
its paragraphs have one carrier. Llama 3 (Dubey et al. 2024, Section 3.1.1) orders its steps so
too: URL, then document (MinHash), then line-level dedup. The cost: two copies of a text that
differ only by boilerplate, under the near threshold before it is removed, both stay (the
exact hash of a row is that of its text before this step).

Three passes, resumable inside the stage's partial directory (`work/`):
1. Keys, one task per input part (pyarrow, numpy): `work/paragraph_keys/part-NNNNN.parquet`,
   one row (row, key) per distinct countable paragraph of each document.
2. Counts, Spark DataFrames: the keys of the rows that document-level dedup rejected are dropped
   (anti-join on `work/decisions/`), the rest counted per key (an aggregate that combines
   map-side), the keys in `min_documents` documents or more joined back to their carriers by
   `join_groups` (a cookie banner in a million documents is broadcast, not sent to one task),
   written as (row, key) to `work/paragraph_removals/part=N/`. The driver collects two counts.
3. In the output step's task of each part (jobs/deduped.py `output_step`): `strip_rows` reads its
   part's removals (bounded by the part) and strips the documents that have some, recomputing
   their paragraph keys.
"""

import os
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from corpus.manifest import read_json, temporary_path, write_json_atomic
from corpus.paragraphs import PARAGRAPHS, distinct_keys, paragraph_keys, strip_paragraphs
from jobs.config import ParagraphDedupConfig
from jobs.spark import LARGE_GROUP, join_groups, spark_uri
from jobs.stage import ROWS_PER_BATCH, run_tasks, task_attempt

KEYS, REMOVALS, FIGURES = "paragraph_keys", "paragraph_removals", "paragraphs.json"
KEYS_SCHEMA_DDL = "part int, row long, key long"
KEYS_SCHEMA = pa.schema(
    [pa.field("part", pa.int32()), pa.field("row", pa.int64()), pa.field("key", pa.int64())]
)


def key_table(texts: list[str | None], part: int, first_row: int, min_words: int) -> pa.Table:
    """(part, row, key) for each distinct paragraph of `min_words` words or more of each text."""
    rows, keys = [], []
    for i, paragraphs in enumerate(paragraph_keys(texts)):
        found = distinct_keys(paragraphs, min_words)
        rows += [first_row + i] * len(found)
        keys += found
    columns = [
        pa.array([part] * len(rows), pa.int32()),
        pa.array(rows, pa.int64()),
        pa.array(keys, pa.int64()),
    ]
    return pa.Table.from_arrays(columns, schema=KEYS_SCHEMA)


def write_keys(source: str, target: Path, part: int, min_words: int) -> None:
    """One input part's paragraph keys into `target` (written aside, then renamed)."""
    if target.is_file():  # done by an interrupted earlier attempt
        return
    tmp = temporary_path(target, task_attempt())
    done = 0
    with pq.ParquetWriter(tmp, KEYS_SCHEMA, compression="zstd") as writer:
        for batch in pq.ParquetFile(source).iter_batches(ROWS_PER_BATCH, columns=["text"]):
            texts = batch.column("text").to_pylist()
            writer.write_table(key_table(texts, part, done, min_words))
            done += len(texts)
    os.replace(tmp, target)


def count_step(spark: SparkSession, work: Path, decisions: Path, cfg: ParagraphDedupConfig) -> dict[str, Any]:
    """Pass 2: write `work/paragraph_removals/`; return the frequent paragraphs and their carriers.
    `decisions`: the clusters step's (part, row, ..., reject), absent when no row is in a cluster."""
    # read twice (counted, then joined): cheaper than a persist (see jobs/deduped.py `cluster`)
    keys = spark.read.schema(KEYS_SCHEMA_DDL).parquet(spark_uri(work / KEYS))
    if decisions.is_dir():
        rejected = spark.read.parquet(spark_uri(decisions)).where(F.col("reject").isNotNull())
        keys = keys.join(rejected.select("part", "row"), ["part", "row"], "left_anti")
    frequent = keys.groupBy("key").agg(F.count("*").alias("size")).where(F.col("size") >= cfg.min_documents)
    removals = join_groups(keys, frequent, LARGE_GROUP, key="key")
    removals.write.mode("overwrite").partitionBy("part").parquet(spark_uri(work / REMOVALS))
    written = spark.read.schema(KEYS_SCHEMA_DDL).parquet(spark_uri(work / REMOVALS))
    row = written.agg(
        F.countDistinct("key").alias("frequent"), F.countDistinct("part", "row").alias("documents")
    ).first()
    return {"frequent_paragraphs": row["frequent"], "documents_carrying": row["documents"]}


def paragraphs_step(
    spark: SparkSession, inputs: list[str], work: Path, decisions: Path, cfg: ParagraphDedupConfig
) -> dict[str, Any]:
    """Passes 1 and 2, after the clusters step; skipped when an interrupted attempt finished them."""
    if (work / FIGURES).is_file():
        return read_json(work / FIGURES)
    (work / KEYS).mkdir(parents=True, exist_ok=True)

    def key_task(index: int) -> None:
        write_keys(inputs[index], work / KEYS / f"part-{index:05d}.parquet", index, cfg.min_words)

    run_tasks(spark, len(inputs), key_task)
    figures = count_step(spark, work, decisions, cfg)
    write_json_atomic(work / FIGURES, figures)
    return figures


def read_removals(directory: Path) -> dict[int, frozenset[int]]:
    """row → the keys of the paragraphs to remove from it, for one part."""
    files = sorted(directory.glob("*.parquet")) if directory.is_dir() else []
    if not files:
        return {}
    table = pq.read_table(files, columns=["row", "key"])
    found: dict[int, set[int]] = {}
    for row, key in zip(table.column("row").to_pylist(), table.column("key").to_pylist(), strict=True):
        found.setdefault(row, set()).add(key)
    return {row: frozenset(keys) for row, keys in found.items()}


def strip_rows(
    rows: Iterable[dict[str, Any]], work: Path, part: int, counts: Counter[str]
) -> Iterator[dict[str, Any]]:
    """Part `part`'s output rows (in input order) with their frequent paragraphs removed, and
    `paragraphs_removed`; adds the part's figures to `counts`. A document emptied keeps its text
    in `rejected/`, so what was removed can be read there."""
    removals = read_removals(work / REMOVALS / f"part={part}")
    for row_number, row in enumerate(rows):
        if row["reject"] is not None:
            yield row
            continue
        counts["paragraphs.documents_examined"] += 1
        counts["paragraphs.chars_examined"] += len(row["text"] or "")
        frequent = removals.get(row_number)
        if not frequent:
            yield {**row, "paragraphs_removed": 0}
            continue
        stripped = strip_paragraphs(row["text"], paragraph_keys([row["text"]])[0], frequent)
        counts["paragraphs.documents_stripped"] += 1
        counts["paragraphs.removed"] += stripped.removed
        # an emptied document leaves whole: what is left of it is blank or punctuation
        counts["paragraphs.chars_removed"] += len(row["text"]) if stripped.emptied else stripped.removed_chars
        if stripped.emptied:
            counts["paragraphs.documents_emptied"] += 1
            yield {**row, "paragraphs_removed": stripped.removed, "reject": PARAGRAPHS}
        else:
            yield {**row, "text": stripped.text, "paragraphs_removed": stripped.removed}


def paragraph_counts(counts: dict[str, int]) -> dict[str, int]:
    """The figures `strip_rows` added to the parts' counts, summed, without their prefix."""
    return {k.removeprefix("paragraphs."): v for k, v in counts.items() if k.startswith("paragraphs.")}

"""The deduped stage's incremental part: `duplicate:previous` against earlier runs, and the keys it
keeps for later ones (the format: corpus/previous.py).

With `deduped.against: [EARLIER, ...]`, after the signatures step (jobs/deduped.py) and before
any clustering, each document is matched against the keys of what the earlier runs kept:

- **url** (with `url.enabled`): its canonical URL is one an earlier run holds;
- **exact**: its exact hash is one an earlier run kept (or folded into a kept document as near);
- **near** (with `near`), for the others: it shares an LSH bucket with the bucket's smallest old
  kept document (the in-run star edge, so a new document has at most `bands` candidates however
  many old documents a bucket holds) and, with `verify`, their shingle sets have an exact Jaccard
  of at least `threshold`.

A matched document is rejected as `duplicate:previous`: `cluster_id` is the earlier document's id,
`cluster_size` null (the cluster spans runs), and `signals` name the earlier run, that id and the
match. When several earlier documents match, url beats exact beats near, then the earlier run
listed first, then its smallest node. The documents left are deduped among themselves as a fresh
run on them would be: a new document near only to a new one that an earlier run already holds is
kept (no chaining through the old corpus). This run's own keys hold only what it kept, so a third
run lists every earlier run in `against`.

Cost of the old corpus: reading its keys (the URL and exact columns, and the band keys and
shingle sets of the old documents in a candidate bucket), aggregated per key map-side before
the joins; the driver reads each earlier run's manifest and nothing per document. The earlier
runs are opened for reading only.
"""

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from functools import reduce
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema

from corpus.fs import is_file, open_input, open_output
from corpus.manifest import read_json, write_json_atomic
from corpus.previous import KEYS, KEYS_SCHEMA, keys_table
from jobs.config import DedupedConfig
from jobs.spark import spark_uri
from jobs.stage import task_attempt

REJECT = "duplicate:previous"
PREVIOUS = "previous"  # in the stage's work/: the matches as `part=N/` (Spark names the files)
MATCHES = ("url", "exact", "near")  # in order of precedence


def read_keys(spark: SparkSession, runs: list[str]) -> DataFrame:
    """The earlier runs' keys, with `run_index` (position in `against`) and `run`."""
    frames = [
        spark.read.schema(from_arrow_schema(KEYS_SCHEMA))
        .parquet(spark_uri(Path(run) / "deduped" / KEYS))
        .withColumn("run_index", F.lit(i))
        .withColumn("run", F.lit(run))
        for i, run in enumerate(runs)
    ]
    return reduce(DataFrame.unionByName, frames)


def first_by_key(keys: DataFrame, key: str) -> DataFrame:
    """(key, old): per value of `key`, the old document of the earliest listed run, smallest node.
    An aggregate that combines map-side: a key held by a million old rows leaves each map task once."""
    old = F.struct("run_index", F.col("node").alias("old_node"), "run", "id")
    return keys.where(F.col(key).isNotNull()).groupBy(key).agg(F.min(old).alias("old"))


def key_matches(new: DataFrame, keys: DataFrame, key: str, kind: str) -> DataFrame:
    """(node, kind, old) for the new documents whose `key` column an earlier run holds.

    The new side is streamed through the sort-merge join against one old row per key, so a text
    copied a million times in the new crawl is never held by one task."""
    return new.join(first_by_key(keys, key), key).select("node", F.lit(kind).alias("kind"), "old")


def near_matches(new: DataFrame, keys: DataFrame, threshold: float | None) -> DataFrame:
    """(node, kind, old) for new documents in an LSH bucket of an old kept document, verified by the
    exact Jaccard of their shingle sets when `threshold` is set (jobs/deduped.py `verify_edges`)."""
    new_bands = new.select("node", F.posexplode("bands").alias("band", "key"))
    old_bands = keys.where(F.col("bands").isNotNull()).select(
        F.struct("run_index", F.col("node").alias("old_node"), "run", "id").alias("old"),
        F.posexplode("bands").alias("band", "key"),
    )
    heads = old_bands.groupBy("band", "key").agg(F.min("old").alias("old"))  # the bucket's star centre
    pairs = new_bands.join(heads, ["band", "key"]).select("node", "old").distinct()
    if threshold is not None:
        old_sets = keys.select(
            F.col("run_index").alias("r"), F.col("node").alias("n"), F.col("shingles").alias("b")
        )
        pairs = pairs.join(new.select("node", F.col("shingles").alias("a")), "node").join(
            old_sets, (F.col("old.run_index") == F.col("r")) & (F.col("old.old_node") == F.col("n"))
        )
        inter = F.size(F.array_intersect("a", "b"))
        pairs = pairs.where(inter / (F.size("a") + F.size("b") - inter) >= F.lit(threshold))
    return pairs.select("node", F.lit("near").alias("kind"), "old")


def previous_matches(signatures: DataFrame, keys: DataFrame, cfg: DedupedConfig) -> DataFrame:
    """(node, run, id, kind): each new document that duplicates an earlier run's, one match each."""
    matches = key_matches(signatures, keys, "exact_hash", "exact")
    if cfg.url.enabled:
        matches = matches.unionByName(key_matches(signatures, keys, "url_key", "url"))
    if cfg.near:
        rest = signatures.join(matches.select("node"), "node", "left_anti")  # near only for the others
        matches = matches.unionByName(near_matches(rest, keys, cfg.threshold if cfg.verify else None))
    precedence = F.array_position(F.array(*map(F.lit, MATCHES)), F.col("kind"))
    best = matches.groupBy("node").agg(F.min(F.struct(precedence.alias("p"), "old", "kind")).alias("m"))
    return best.select("node", F.col("m.old.run").alias("run"), F.col("m.old.id").alias("id"), "m.kind")


def previous_step(
    spark: SparkSession, signatures: Path, work: Path, cfg: DedupedConfig, row_bits: int
) -> dict[str, int]:
    """Match the `signatures` (jobs/deduped.py step 1, nodes of `row_bits` row bits) against the
    earlier runs, write the matches to `work/previous/part=N/` (row, run, id, kind) and return their
    counts by kind; skipped when an interrupted attempt finished it (`work/previous.json`)."""
    done = work / "previous.json"
    if done.is_file():
        return read_json(done)
    new = spark.read.parquet(spark_uri(signatures))
    matches = previous_matches(new, read_keys(spark, list(cfg.against)), cfg)
    located = matches.select(
        F.shiftright("node", row_bits).cast("int").alias("part"),
        F.col("node").bitwiseAND(F.lit((1 << row_bits) - 1)).alias("row"),
        "node",
        "run",
        "id",
        "kind",
    )
    located.write.mode("overwrite").partitionBy("part").parquet(spark_uri(work / PREVIOUS))
    written = spark.read.schema(located.schema).parquet(spark_uri(work / PREVIOUS))
    counts = {kind: n for kind, n in written.groupBy("kind").count().collect()}  # at most 3 rows
    counts = {kind: counts.get(kind, 0) for kind in MATCHES}
    write_json_atomic(done, counts)
    return counts


def new_documents(spark: SparkSession, signatures: DataFrame, work: Path) -> DataFrame:
    """`signatures` without the `duplicate:previous` documents (all of them without `against`)."""
    if not (work / PREVIOUS).is_dir():
        return signatures
    previous = spark.read.schema("node long").parquet(spark_uri(work / PREVIOUS))
    return signatures.join(previous, "node", "left_anti")


def read_previous(directory: Path) -> dict[int, tuple[str, str, str]]:
    """row → (run, earlier id, match kind) for one part's `duplicate:previous` documents."""
    files = sorted(directory.glob("*.parquet")) if directory.is_dir() else []
    if not files:
        return {}
    table = pq.read_table(files, columns=["row", "run", "id", "kind"])
    cols = [table.column(c).to_pylist() for c in ("row", "run", "id", "kind")]
    return {row: (run, cid, kind) for row, run, cid, kind in zip(*cols, strict=True)}


def mark_previous(
    rows: Iterable[dict[str, Any]], previous: Mapping[int, tuple[str, str, str]]
) -> Iterator[dict[str, Any]]:
    """The output rows (in input order), those of `previous` rejected as `duplicate:previous`."""
    for row, doc in enumerate(rows):
        if row in previous:
            run, earlier, kind = previous[row]
            signals = {
                **(doc.get("signals") or {}),
                "duplicate_previous_run": run,
                "duplicate_previous_id": earlier,
                "duplicate_previous_match": kind,
            }
            doc = {**doc, "reject": REJECT, "cluster_id": earlier, "cluster_size": None, "signals": signals}
        yield doc


def write_keys(
    signatures: Path,
    target: str,
    decisions: Mapping[int, tuple[str, int, str | None]],
    previous: Mapping[int, Any],
) -> dict[str, Any]:
    """One part's keys into `target`, whole or not at all (corpus/fs.py `open_output`, on disk or
    in object storage); its file entry for the manifest."""
    name = f"{KEYS}/{target.rsplit('/', 1)[-1]}"
    if not is_file(target):
        table = keys_table(pq.read_table(signatures), decisions, previous)
        with open_output(target, task_attempt()) as sink:
            pq.write_table(table, sink, compression="zstd")
        return {"file": name, "rows": table.num_rows, "bytes": sink.size, "sha256": sink.sha256()}
    # done by an interrupted earlier attempt: its entry from the file itself
    with open_input(target) as f:
        data = f.read()
    rows = pq.ParquetFile(pa.BufferReader(data)).metadata.num_rows
    return {"file": name, "rows": rows, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}

"""shards stage: RUN/mixed/kept + RUN/tokenizer/tokenizer.json → RUN/shards/ + manifest.json.

The rows are read from RUN/decontam/kept instead when the decontam stage ran on the current
mixed output (jobs/decontam.py `corpus_dir`); its rejects count as dropped in `tokens_before`.

Output: `train_NNNNN.bin/.idx` and `valid_NNNNN.bin/.idx` in Megatron-LM's indexed format
(corpus/shards.py), and `manifest.json` as that module's docstring specifies. Nothing is
rejected here; the mixed stage accounted for every row.

1. Count (executors, Arrow batches through `mapInArrow`; tokenizer.json shipped with `addFile`):
   each document's bucket, repeats, UTF-8 bytes and validation key, and, for a seeded sample
   (key(seed, "size", id) < p, p = ESTIMATE_SAMPLE_BYTES over the mixture's bytes: jobs/tokenizer.py
   `sample_probability`), its token count. Summed per bucket and split on the executors: the
   driver receives a few rows, and nothing is persisted.
2. Validation split, by document: key(seed, "valid", id) < valid_fraction. A held-out document
   is written once, whatever its repeats (they weight training, and a repeated validation
   document measures nothing new); none of its copies reaches train. If the fraction selects
   no document (a tiny corpus), the one with the smallest key is held out, so `valid` is not
   empty while valid_fraction > 0 and there are two documents or more.
3. Plan: a split's tokens are estimated as one end-of-text per copy plus its text bytes (repeats
   counted) at the sampled text tokens per byte of each bucket and split, and its
   n = ceil(tokens / shard_tokens) shards are the n equal ranges of the key space. A corpus under
   ESTIMATE_SAMPLE_BYTES is sampled whole, so the estimate is the exact count; above it the error
   is about the spread of tokens per byte over sqrt(sampled documents), well under 1% for
   thousands of sampled documents. The estimate sets only n; the manifest counts real tokens.
   Copy r of a document has key(seed, "shuffle", id, r) and lands in the range that holds it
   (corpus/mix.py `copy_places`, which jobs/why.py shares). Reading the shards in order is the
   sort of all copies by key, a random permutation fixed by the seed, with no step that depends
   on partitioning. A shard holds shard_tokens tokens give or take the estimate's error and the
   binomial spread of the range it draws (about 1/sqrt(documents in it): 0.3% at 100k documents).
4. Tokenize and write (executors): a map task tokenizes its rows once and emits every copy with
   its shard and the tokens as little-endian uint16/int32 bytes (about half the text's bytes, and
   one tokenization whatever the repeats, so tokens rather than text cross the shuffle). The
   shuffle sends shard g's copies to partition g alone (`routes`), where Spark's external sort
   orders them by key, spilling to disk past its memory; the task streams them through
   ShardWriter (temporary names renamed at close) and records the shard in
   `_parts/part-NNNNN.json`, so an interrupted run rewrites only the missing shards. No step
   holds, persists or sorts the whole tokenized corpus: a task holds one shard.
5. The driver writes manifest.json and renames the directory into place. The manifest holds no
   time or absolute path: the same inputs, config and seed give byte-identical files whatever
   the partitioning; `timing.json` beside it has the wall time.

Cost: every document is tokenized once, the sampled ones twice (ESTIMATE_SAMPLE_BYTES of text).
Driver holds: the counts per bucket and split (O(buckets)), one route and one entry per shard
(O(tokens / shard_tokens): 100 entries for 10 billion tokens at the default).
"""

import json
import logging
import math
import os
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
from pyspark import SparkFiles, TaskContext
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from corpus import mix
from corpus.fs import is_file, join
from corpus.manifest import fingerprint, read_json, write_json_atomic
from corpus.shards import ShardWriter, token_dtype
from corpus.tokenizer import encode_documents, file_hash, load
from jobs import decontam
from jobs.config import PipelineConfig
from jobs.spark import read_parquet, ship
from jobs.stage import MANIFEST, ROWS_PER_BATCH, Stage, inject_fault, kept_parts, task_attempt, up_to_date
from jobs.tokenizer import sample_probability

STAGE = "shards"
VERSION = 3  # 3: shard count from a sampled estimate, one shard a task, no persisted tokens
SPLITS = ("train", "valid")
TIMING = "timing.json"
# Text tokenized twice to estimate tokens per byte (step 3): tens of seconds of one core's work,
# spread over the tasks, and ~8,000 documents of 4 KB, so the shard count is within about a
# percent.
ESTIMATE_SAMPLE_BYTES = 32_000_000
# Step 1's rows: one per document.
COUNTED = pa.schema(
    [
        ("bucket", pa.string()),
        ("repeats", pa.int32()),
        ("n_bytes", pa.int64()),
        ("valid_key", pa.int64()),
        ("sampled", pa.bool_()),
        ("n_tokens", pa.int64()),  # 0 unless sampled
    ]
)
COUNTED_DDL = "bucket string, repeats int, n_bytes long, valid_key long, sampled boolean, n_tokens long"
# Step 4's rows: one per copy, with its shard, the value routing it there, and its tokens.
COPIES = pa.schema(
    [
        ("route", pa.int64()),
        ("shard", pa.int32()),
        ("key", pa.int64()),
        ("id", pa.string()),
        ("copy", pa.int32()),
        ("bucket", pa.string()),
        ("valid", pa.bool_()),
        ("n_tokens", pa.int64()),
        ("tokens", pa.binary()),
    ]
)
COPIES_DDL = (
    "route long, shard int, key long, id string, copy int, bucket string, valid boolean, "
    "n_tokens long, tokens binary"
)
# The writer's rows: one per shard, its manifest entry and its token counts per bucket and split.
WRITTEN_DDL = "shard int, entry string, stats string"
WRITTEN = pa.schema([("shard", pa.int32()), ("entry", pa.string()), ("stats", pa.string())])
log = logging.getLogger(__name__)


def shard_name(split: str, index: int) -> str:
    return f"{split}_{index:05d}"


def _slices(batches: Iterator[pa.RecordBatch], rows: int) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        for start in range(0, batch.num_rows, rows):
            yield batch.slice(start, rows)


def _tokenizer_on_executor(tokenizer_file: str):
    # One thread per task: Spark already runs one task per core, and rayon's own pool on top of
    # it would oversubscribe the cores.
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    return load(SparkFiles.get(tokenizer_file))


def count_batches(tokenizer_file: str, seed: int, p: float):
    """The `mapInArrow` function of step 1 (a closure over plain values, so it pickles)."""
    limit = mix.threshold(p)

    def count(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        tok = _tokenizer_on_executor(tokenizer_file)
        for batch in _slices(batches, ROWS_PER_BATCH):  # bounds the Python objects held at once
            ids = batch.column("id").to_pylist()
            sampled = (mix.keys(seed, "size", ids) < limit).tolist()
            texts = batch.column("text").to_pylist()
            chosen = encode_documents(tok, [t or "" for t, s in zip(texts, sampled, strict=True) if s])
            lengths = iter(len(e) for e in chosen)
            yield pa.RecordBatch.from_pydict(
                {
                    "bucket": batch.column("bucket"),
                    "repeats": batch.column("repeats"),
                    "n_bytes": mix.utf8_bytes(batch.column("text")),
                    "valid_key": mix.keys(seed, "valid", ids),
                    "sampled": sampled,
                    "n_tokens": [next(lengths) if s else 0 for s in sampled],
                },
                schema=COUNTED,
            )

    return count


def copy_batches(tokenizer_file: str, seed: int, dtype: np.dtype, limit: int, n_shards: dict, routes: list):
    """The `mapInArrow` function of step 4's map side: every copy of every document, tokenized."""
    offsets = {"train": 0, "valid": n_shards["train"]}  # valid shards follow the train ones

    def copies(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        tok = _tokenizer_on_executor(tokenizer_file)
        for batch in _slices(batches, ROWS_PER_BATCH):
            ids, buckets = batch.column("id").to_pylist(), batch.column("bucket").to_pylist()
            repeats = batch.column("repeats").to_pylist()
            assert all(r >= 1 for r in repeats), "mixed/kept rows have repeats >= 1"
            encoded = encode_documents(tok, [t or "" for t in batch.column("text").to_pylist()])
            rows = []
            for doc_id, bucket, r, tokens in zip(ids, buckets, repeats, encoded, strict=True):
                split, places = mix.copy_places(seed, doc_id, r, limit, n_shards)
                blob = np.asarray(tokens, dtype=dtype).tobytes()
                for copy, (key, index) in enumerate(places):
                    shard = offsets[split] + index
                    rows.append(
                        (routes[shard], shard, key, doc_id, copy, bucket, split == "valid", len(tokens), blob)
                    )
            columns = list(zip(*rows, strict=True)) if rows else [[] for _ in COPIES.names]
            yield pa.RecordBatch.from_arrays(
                [pa.array(c, type=f.type) for c, f in zip(columns, COPIES, strict=True)], schema=COPIES
            )

    return copies


def write_batches(stage: Stage, names: list[str], vocab_size: int):
    """The `mapInArrow` function of step 4's reduce side: one shard's copies sorted by key in, its
    manifest entry and token counts out."""
    dtype = token_dtype(vocab_size)

    def write(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        shard = TaskContext.get().partitionId()  # partition g holds shard g (`routes`)
        done = stage.part_done(shard)  # a shard finished by an interrupted attempt is not written again
        writer = None if done else ShardWriter(join(stage.partial, names[shard]), vocab_size, task_attempt())
        stats: dict[tuple[str, bool], list[int]] = defaultdict(lambda: [0, 0])  # unique, written tokens
        last = (-1, "", -1)
        columns = ("shard", "key", "id", "copy", "bucket", "valid", "n_tokens", "tokens")
        rows = (row for b in batches for row in zip(*(b.column(c).to_pylist() for c in columns), strict=True))
        # test-only hook, inert by default; PART is this task's partition, its shard
        for s, key, doc_id, copy, bucket, valid, n_tokens, blob in inject_fault(STAGE, shard, rows):
            assert s == shard, f"{names[s]} reached the task of {names[shard]}: `routes` disagrees with Spark"
            assert (key, doc_id, copy) > last, f"{names[s]}: rows reached the writer out of key order"
            last = (key, doc_id, copy)
            stats[bucket, valid][0] += n_tokens if copy == 0 else 0
            stats[bucket, valid][1] += n_tokens
            if writer is not None:
                writer.add(np.frombuffer(blob, dtype=dtype))
        entry = done or stage.save_part(shard, writer.close())
        yield pa.RecordBatch.from_pydict(
            {
                "shard": [shard],
                "entry": [json.dumps(entry, sort_keys=True)],
                "stats": [json.dumps(sorted([b, v, *t] for (b, v), t in stats.items()))],
            },
            schema=WRITTEN,
        )

    return write


def bucket_report(
    rows: list[dict[str, Any]], mixed_buckets: dict[str, Any], bytes_per_token: float
) -> dict[str, dict[str, Any]]:
    """Real token counts per bucket. `tokens_before` counts the documents the mix received: the
    kept ones exactly; the downsampled ones (never tokenized) from their bytes at the bucket's
    measured tokens per byte, with `tokens_before_exact` false when any was dropped."""
    out: dict[str, dict[str, Any]] = {}
    for name, mixed in sorted(mixed_buckets.items()):
        mine = [r for r in rows if r["bucket"] == name]
        per_split = {
            split: {
                "documents": sum(r["copies"] for r in mine if r["valid"] == (split == "valid")),
                "tokens": sum(r["written"] for r in mine if r["valid"] == (split == "valid")),
            }
            for split in SPLITS
        }
        kept_tokens, kept_bytes = sum(r["tokens"] for r in mine), sum(r["bytes"] for r in mine)
        dropped_bytes = mixed["bytes_before"] - kept_bytes
        ratio = kept_tokens / kept_bytes if kept_bytes else 1 / bytes_per_token  # all dropped: estimate
        before = kept_tokens + round(dropped_bytes * ratio)
        after = per_split["train"]["tokens"] + per_split["valid"]["tokens"]
        out[name] = {
            "documents": sum(r["documents"] for r in mine),
            "tokens_unique": kept_tokens,
            "tokens_before": before,
            "tokens_before_exact": dropped_bytes == 0,
            "tokens_after": after,
            "tokens_after_estimated": mixed["tokens_after"],
            "epochs": round(after / before, 4) if before else 0.0,
            **per_split,
        }
    return out


def _tokenizer(run: str) -> tuple[dict[str, Any], str, str]:
    """The tokenizer stage's manifest, its file and the file's sha256, checked against each other."""
    for upstream in ("mixed", "tokenizer"):
        if not is_file(join(run, upstream, MANIFEST)):
            raise FileNotFoundError(f"{join(run, upstream)}: not finished; run the `{upstream}` stage first")
    tok_manifest = read_json(join(run, "tokenizer", MANIFEST))
    tok_path = join(run, "tokenizer", tok_manifest["file"])
    sha256 = file_hash(tok_path)
    if sha256 != tok_manifest["sha256"]:
        raise ValueError(f"{tok_path}: sha256 differs from its manifest; rerun the tokenizer stage")
    return tok_manifest, tok_path, sha256


def count(docs: DataFrame, shipped: str, seed: int, p: float) -> DataFrame:
    """Step 1's rows (COUNTED), one per document; computed again by each aggregation over them."""
    return docs.mapInArrow(count_batches(shipped, seed, p), COUNTED_DDL)


def split_counts(counted: DataFrame, limit: int) -> list[dict[str, Any]]:
    """Documents, copies, bytes and the sample's bytes and text tokens per bucket and split, for
    the validation cut `limit`; copies weigh the byte and token sums."""
    valid = (F.col("valid_key") < F.lit(limit)).alias("valid")
    copies = F.when(valid, F.lit(1)).otherwise(F.col("repeats"))
    sampled = F.col("sampled")
    return [
        r.asDict()
        for r in counted.groupBy("bucket", valid)
        .agg(
            F.count("*").alias("documents"),
            F.sum(copies).alias("copies"),
            F.sum("n_bytes").alias("bytes"),
            F.sum(F.col("n_bytes") * copies).alias("written_bytes"),
            F.sum(F.when(sampled, F.col("n_bytes") * copies).otherwise(0)).alias("sample_bytes"),
            # less the end-of-text token each document ends with
            F.sum(F.when(sampled, (F.col("n_tokens") - 1) * copies).otherwise(0)).alias("sample_text_tokens"),
            F.min("valid_key").alias("min_key"),
        )
        .collect()
    ]


def validation_cut(counted: DataFrame | None, valid_fraction: float) -> tuple[int, list[dict[str, Any]]]:
    """Step 2: the valid_key limit and the counts under it (module docstring)."""
    limit = mix.threshold(valid_fraction)
    rows = split_counts(counted, limit) if counted is not None else []
    if valid_fraction > 0 and sum(r["documents"] for r in rows) >= 2 and not any(r["valid"] for r in rows):
        limit = min(r["min_key"] for r in rows) + 1  # hold out the one document with the smallest key
        rows = split_counts(counted, limit)
    return limit, rows


def estimated_tokens(rows: list[dict[str, Any]], bytes_per_token: float) -> dict[str, int]:
    """Step 3: tokens per split, copies counted: an end-of-text per copy plus the text's bytes at
    the sampled text tokens per byte of its bucket and split (of all sampled rows where it drew
    none; the mixed stage's `bytes_per_token` where nothing was). Exact when all was sampled."""
    pooled = sum(r["sample_text_tokens"] for r in rows), sum(r["sample_bytes"] for r in rows)
    out = dict.fromkeys(SPLITS, 0)
    for r in rows:
        tokens, nbytes = (r["sample_text_tokens"], r["sample_bytes"]) if r["sample_bytes"] else pooled
        if nbytes:  # integer arithmetic: bytes * tokens // bytes is the count itself
            text = -(-r["written_bytes"] * tokens // nbytes)
        else:
            text = math.ceil(r["written_bytes"] / bytes_per_token)
        out["valid" if r["valid"] else "train"] += r["copies"] + text
    return out


def routes(spark: SparkSession, n: int) -> list[int]:
    """For each shard g < n, a value whose Spark hash partition among n is g, so that
    `repartition(n, route)` sends shard g's copies to partition g alone. Spark SQL has no
    partitioner by a given index, and `repartitionByRange` would first run the whole tokenizing
    map to sample its bounds. The least such value for each g, from Spark's own hash (the
    partitioner's: pmod(hash(value), n)); the writer checks every row reached its shard's task."""
    found: dict[int, int] = {}
    span = 16 * n
    while len(found) < n:  # n * ln(n) draws find every residue, in expectation
        part = F.expr(f"pmod(hash(id), {n})").alias("part")
        found = {
            r["part"]: r["route"]
            for r in spark.range(span).groupBy(part).agg(F.min("id").alias("route")).collect()
        }
        span *= 4
    return [found[g] for g in range(n)]


def write_shards(
    stage: Stage, copies: DataFrame, names: list[str], vocab_size: int
) -> tuple[dict[int, dict[str, Any]], list[list[Any]]]:
    """Step 4's shuffle and writes: the entry of each shard, and [bucket, valid, unique tokens,
    written tokens] from each shard's task."""
    written = (
        copies.repartition(len(names), "route")
        .sortWithinPartitions("key", "id", "copy")
        .mapInArrow(write_batches(stage, names, vocab_size), WRITTEN_DDL)
    )
    entries, stats = {}, []
    for r in written.collect():
        entries[r["shard"]] = json.loads(r["entry"])
        stats.extend(json.loads(r["stats"]))
    # A partition that drew no copy may run no writer: its shard is written empty here, a few
    # bytes, so the numbering has no gaps.
    for g in sorted(set(range(len(names))) - set(entries)):
        entries[g] = stage.part_done(g) or stage.save_part(
            g, ShardWriter(join(stage.partial, names[g]), vocab_size).close()
        )
    return entries, stats


def with_tokens(rows: list[dict[str, Any]], stats: list[list[Any]]) -> list[dict[str, Any]]:
    """The count rows with the real `tokens` (each document once) and `written` (each copy)."""
    totals: dict[tuple[str, bool], list[int]] = defaultdict(lambda: [0, 0])
    for bucket, valid, tokens, written in stats:
        totals[bucket, valid][0] += tokens
        totals[bucket, valid][1] += written
    return [
        {**r, "tokens": totals[r["bucket"], r["valid"]][0], "written": totals[r["bucket"], r["valid"]][1]}
        for r in rows
    ]


def shards_manifest(
    cfg: PipelineConfig,
    tok_manifest: dict[str, Any],
    sha256: str,
    limit: int,
    names: list[str],
    entries: dict[int, dict[str, Any]],
) -> dict[str, Any]:
    """Step 5's manifest (corpus/shards.py's docstring), less the per-bucket report."""
    vocab_size = tok_manifest["vocab_size"]
    splits = {s: [entries[g] for g, name in enumerate(names) if name.startswith(f"{s}_")] for s in SPLITS}
    return {
        "tokenizer": {
            "file": f"../tokenizer/{tok_manifest['file']}",
            "sha256": sha256,
            "vocab_size": vocab_size,
        },
        "dtype": token_dtype(vocab_size).name,
        "eot_id": tok_manifest["eot_id"],
        "seed": cfg.seed,
        "shard_tokens": cfg.shards.shard_tokens,
        "valid_fraction": cfg.shards.valid_fraction,
        "valid_key_limit": limit,
        "splits": splits,
        "totals": {
            s: {
                "shards": len(splits[s]),
                "documents": sum(e["documents"] for e in splits[s]),
                "tokens": sum(e["tokens"] for e in splits[s]),
            }
            for s in SPLITS
        },
        "output_fingerprint": fingerprint([[e["bin_sha256"], e["idx_sha256"]] for e in entries.values()]),
    }


def main(spark: SparkSession, cfg: PipelineConfig, run_dir: str) -> dict[str, Any]:
    tok_manifest, tok_path, sha256 = _tokenizer(run_dir)
    mixed_manifest = read_json(join(run_dir, "mixed", MANIFEST))
    scfg = cfg.shards
    key = {"version": VERSION, "seed": cfg.seed, "shards": scfg.model_dump(mode="json")}
    corpus = decontam.corpus_dir(run_dir)  # decontam/ when it ran on this mixed output
    # key "mixed" whichever stage it is, so runs from before the decontam stage are not redone
    inputs_key = {"mixed": read_json(join(corpus, MANIFEST))["output_fingerprint"], "tokenizer": sha256}
    stage = Stage(run_dir, STAGE, fingerprint(key), fingerprint(inputs_key))
    if manifest := up_to_date(stage, log):
        return manifest
    started = time.time()
    stage.prepare(subdirs=("_parts",))
    vocab_size = tok_manifest["vocab_size"]
    inputs = kept_parts(corpus)
    bytes_per_token = mixed_manifest["token_estimate"]["bytes_per_token"]

    p = sample_probability(mixed_manifest, ESTIMATE_SAMPLE_BYTES)
    docs = shipped = None
    if inputs:
        shipped = ship(spark, tok_path, "tokenizer")
        docs = read_parquet(spark, inputs, ["id", "bucket", "repeats", "text"])
    limit, rows = validation_cut(
        count(docs, shipped, cfg.seed, p) if docs is not None else None, scfg.valid_fraction
    )
    estimate = estimated_tokens(rows, bytes_per_token)
    n_shards = {s: math.ceil(estimate[s] / scfg.shard_tokens) for s in SPLITS}
    names = [shard_name(s, i) for s in SPLITS for i in range(n_shards[s])]
    log.info("shards: %s tokens estimated in %.1f s", f"{sum(estimate.values()):,}", time.time() - started)
    entries: dict[int, dict[str, Any]] = {}
    stats: list[list[Any]] = []
    if names:
        dtype = token_dtype(vocab_size)
        tokenize = copy_batches(shipped, cfg.seed, dtype, limit, n_shards, routes(spark, len(names)))
        entries, stats = write_shards(stage, docs.mapInArrow(tokenize, COPIES_DDL), names, vocab_size)
        log.info("shards: %d shards written after %.1f s", len(entries), time.time() - started)

    manifest = shards_manifest(cfg, tok_manifest, sha256, limit, names, entries)
    manifest["tokens_estimated"] = {"sample_probability": p, **estimate}
    manifest["buckets"] = bucket_report(with_tokens(rows, stats), mixed_manifest["buckets"], bytes_per_token)
    manifest = stage.publish(manifest)
    write_json_atomic(join(stage.final, TIMING), {"wall_time_s": round(time.time() - started, 3)})
    return manifest

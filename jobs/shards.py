"""shards stage: RUN/mixed/kept + RUN/tokenizer/tokenizer.json → RUN/shards/ + manifest.json.

The rows are read from RUN/decontam/kept instead when the decontam stage ran on the current
mixed output (jobs/decontam.py `corpus_dir`); its rejects count as dropped in `tokens_before`.

Output: `train_NNNNN.bin/.idx` and `valid_NNNNN.bin/.idx` in Megatron-LM's indexed format
(corpus/shards.py), and `manifest.json` as that module's docstring specifies. Nothing is
rejected here; the mixed stage accounted for every row.

1. Tokenize (executors, Arrow batches through `mapInArrow`; tokenizer.json shipped with
   `addFile`): a document's ids and end-of-text, as little-endian uint16/int32 bytes, plus its
   validation key and one shuffle key per copy (corpus/mix.py `key`). The result is persisted:
   the token counts fix the number of shards before anything is written, and tokenizing is
   nearly all of this stage's time, so it must not run twice.
2. Validation split, by document: key(seed, "valid", id) < valid_fraction. A held-out document
   is written once, whatever its repeats (they weight training, and a repeated validation
   document measures nothing new); none of its copies reaches train. If the fraction selects
   no document (a tiny corpus), the one with the smallest key is held out, so `valid` is not
   empty while valid_fraction > 0 and there are two documents or more.
3. Shuffle: copy r of a document has key(seed, "shuffle", id, r); a split's n =
   ceil(tokens / shard_tokens) shards are the n equal ranges of the key space, each sorted by
   key. Reading the shards in order is the sort of all copies by key, a random permutation
   fixed by the seed, with no step that depends on partitioning. A shard holds shard_tokens
   tokens give or take the binomial spread of the range it draws (about 1/sqrt(documents in
   it): 0.3% at 100k documents a shard); copies of one document land in independent places.
4. Write (executors): the copies are range-partitioned by shard and sorted by key within each
   partition; a task streams its shards through ShardWriter (temporary names renamed at close)
   and records each in `_parts/part-NNNNN.json`, so an interrupted run rewrites only the
   missing shards.
5. The driver writes manifest.json and renames the directory into place. The manifest holds no
   time or absolute path: the same inputs, config and seed give byte-identical files;
   `timing.json` beside it has the wall time.

Driver holds: the counts per bucket and split (O(buckets)) and one entry per shard written
(O(tokens / shard_tokens): 100 entries for 10 billion tokens at the default). Tokens and keys
stay on the executors (persisted, then range-partitioned by shard).
"""

import json
import logging
import math
import os
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
from pyspark import SparkFiles, StorageLevel, TaskContext
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

STAGE = "shards"
VERSION = 2  # 2: mix.key from corpus/sampling.py (one hash draw), other draws
SPLITS = ("train", "valid")
TIMING = "timing.json"
# Step 1's rows: the Arrow schema the tokenizer yields and the same in Spark's DDL.
TOKENIZED = pa.schema(
    [
        ("id", pa.string()),
        ("bucket", pa.string()),
        ("repeats", pa.int32()),
        ("n_bytes", pa.int64()),
        ("n_tokens", pa.int64()),
        ("valid_key", pa.int64()),
        ("keys", pa.list_(pa.int64())),
        ("tokens", pa.binary()),
    ]
)
TOKENIZED_DDL = (
    "id string, bucket string, repeats int, n_bytes long, n_tokens long, valid_key long, "
    "keys array<long>, tokens binary"
)
WRITTEN = pa.schema([("shard", pa.int32()), ("entry", pa.string())])  # step 4's rows: one per shard
log = logging.getLogger(__name__)


def shard_name(split: str, index: int) -> str:
    return f"{split}_{index:05d}"


def _slices(batches: Iterator[pa.RecordBatch], rows: int) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        for start in range(0, batch.num_rows, rows):
            yield batch.slice(start, rows)


def tokenize_batches(tokenizer_file: str, seed: int, dtype: np.dtype):
    """The `mapInArrow` function of step 1 (a closure over plain values, so it pickles)."""

    def tokenize(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        # One thread per task: Spark already runs one task per core, and rayon's own pool on
        # top of it would oversubscribe the cores.
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
        tok = load(SparkFiles.get(tokenizer_file))
        for batch in _slices(batches, ROWS_PER_BATCH):  # bounds the Python objects held at once
            ids = batch.column("id").to_pylist()
            repeats = batch.column("repeats").to_pylist()
            assert all(r >= 1 for r in repeats), "mixed/kept rows have repeats >= 1"
            texts = [t or "" for t in batch.column("text").to_pylist()]
            encoded = encode_documents(tok, texts)
            yield pa.RecordBatch.from_pydict(
                {
                    "id": ids,
                    "bucket": batch.column("bucket"),
                    "repeats": repeats,
                    "n_bytes": mix.utf8_bytes(batch.column("text")),
                    "n_tokens": [len(e) for e in encoded],
                    "valid_key": mix.keys(seed, "valid", ids),
                    "keys": [mix.copy_keys(seed, i, n) for i, n in zip(ids, repeats, strict=True)],
                    "tokens": [np.asarray(e, dtype=dtype).tobytes() for e in encoded],
                },
                schema=TOKENIZED,
            )

    return tokenize


def write_batches(stage: Stage, names: list[str], vocab_size: int):
    """The `mapInArrow` function of step 4: rows sorted by (shard, key) in, one row per shard out."""
    dtype = token_dtype(vocab_size)

    def write(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        done: list[tuple[int, dict[str, Any]]] = []
        shard, writer, last_key = -1, None, -1

        def finish() -> None:
            if shard >= 0:
                entry = stage.part_done(shard) if writer is None else stage.save_part(shard, writer.close())
                done.append((shard, entry))

        rows = (
            row
            for batch in batches
            for row in zip(*(batch.column(c).to_pylist() for c in ("shard", "key", "tokens")), strict=True)
        )
        # test-only hook, inert by default; PART is this task's partition (ranges of shards, in order)
        for s, k, blob in inject_fault(STAGE, TaskContext.get().partitionId(), rows):
            if s != shard:
                finish()
                shard, last_key = s, -1
                # a shard finished by an interrupted attempt is not written again
                writer = None
                if not stage.part_done(s):
                    writer = ShardWriter(join(stage.partial, names[s]), vocab_size, task_attempt())
            assert k >= last_key, f"{names[s]}: rows reached the writer out of key order"
            last_key = k
            if writer is not None:
                writer.add(np.frombuffer(blob, dtype=dtype))
        finish()
        yield pa.RecordBatch.from_pydict(
            {"shard": [s for s, _ in done], "entry": [json.dumps(e, sort_keys=True) for _, e in done]},
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


def tokenize(
    spark: SparkSession, tok_path: str, inputs: list[str], seed: int, dtype: np.dtype
) -> DataFrame | None:
    """Step 1's rows (TOKENIZED), persisted (see the module docstring); None without inputs."""
    if not inputs:
        return None
    shipped = ship(spark, tok_path, "tokenizer")
    docs = read_parquet(spark, inputs, ["id", "bucket", "repeats", "text"])
    tokenized = docs.mapInArrow(tokenize_batches(shipped, seed, dtype), TOKENIZED_DDL)
    return tokenized.persist(StorageLevel.MEMORY_AND_DISK)


def split_counts(tokenized: DataFrame, limit: int) -> list[dict[str, Any]]:
    """Documents, copies, bytes and tokens per bucket and split, for the validation cut `limit`."""
    valid = (F.col("valid_key") < F.lit(limit)).alias("valid")
    copies = F.when(valid, F.lit(1)).otherwise(F.col("repeats"))
    return [
        r.asDict()
        for r in tokenized.groupBy("bucket", valid)
        .agg(
            F.count("*").alias("documents"),
            F.sum(copies).alias("copies"),
            F.sum("n_bytes").alias("bytes"),
            F.sum("n_tokens").alias("tokens"),
            F.sum(F.col("n_tokens") * copies).alias("written"),
            F.min("valid_key").alias("min_key"),
        )
        .collect()
    ]


def validation_cut(tokenized: DataFrame | None, valid_fraction: float) -> tuple[int, list[dict[str, Any]]]:
    """Step 2: the valid_key limit and the counts under it (module docstring)."""
    limit = mix.threshold(valid_fraction)
    rows = split_counts(tokenized, limit) if tokenized is not None else []
    if valid_fraction > 0 and sum(r["documents"] for r in rows) >= 2 and not any(r["valid"] for r in rows):
        limit = min(r["min_key"] for r in rows) + 1  # hold out the one document with the smallest key
        rows = split_counts(tokenized, limit)
    return limit, rows


def place(tokenized: DataFrame, limit: int, n_shards: dict[str, int]) -> DataFrame:
    """Step 3: every copy with its shard, the key range of its split that holds its key."""
    is_valid = F.col("valid_key") < F.lit(limit)
    copies = tokenized.select(
        "id",
        is_valid.alias("valid"),
        "tokens",
        F.posexplode(F.when(is_valid, F.slice("keys", 1, 1)).otherwise(F.col("keys"))).alias("copy", "key"),
    )

    def shard_of(split: str) -> F.Column:
        offset = n_shards["train"] if split == "valid" else 0
        divisor = mix.range_divisor(max(n_shards[split], 1))
        return F.lit(offset) + F.expr(f"key div {divisor}")

    return copies.withColumn(
        "shard", F.when(F.col("valid"), shard_of("valid")).otherwise(shard_of("train")).cast("int")
    )


def write_shards(
    stage: Stage, placed: DataFrame, names: list[str], vocab_size: int
) -> dict[int, dict[str, Any]]:
    """Step 4: range-partition by shard, sort by key, write from the executors; entry per shard."""
    written = (
        placed.repartitionByRange(len(names), "shard")
        .sortWithinPartitions("shard", "key", "id", "copy")
        .select("shard", "key", "tokens")
        .mapInArrow(write_batches(stage, names, vocab_size), "shard int, entry string")
    )
    entries = {r["shard"]: json.loads(r["entry"]) for r in written.collect()}
    # A key range that drew no copy (a small corpus over several shards) reached no task:
    # its shard is written empty here, a few bytes, so the numbering has no gaps.
    for g in sorted(set(range(len(names))) - set(entries)):
        entries[g] = stage.part_done(g) or stage.save_part(
            g, ShardWriter(join(stage.partial, names[g]), vocab_size).close()
        )
    return entries


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

    tokenized = tokenize(spark, tok_path, inputs, cfg.seed, token_dtype(vocab_size))
    limit, rows = validation_cut(tokenized, scfg.valid_fraction)
    tokens = {s: sum(r["written"] for r in rows if r["valid"] == (s == "valid")) for s in SPLITS}
    n_shards = {s: math.ceil(tokens[s] / scfg.shard_tokens) for s in SPLITS}
    names = [shard_name(s, i) for s in SPLITS for i in range(n_shards[s])]
    log.info(
        "shards: %s tokens tokenized and counted in %.1f s",
        f"{sum(tokens.values()):,}",
        time.time() - started,
    )
    entries: dict[int, dict[str, Any]] = {}
    if names:
        entries = write_shards(stage, place(tokenized, limit, n_shards), names, vocab_size)
        log.info("shards: %d shards written after %.1f s", len(entries), time.time() - started)
    if tokenized is not None:
        tokenized.unpersist()

    manifest = shards_manifest(cfg, tok_manifest, sha256, limit, names, entries)
    bytes_per_token = mixed_manifest["token_estimate"]["bytes_per_token"]
    manifest["buckets"] = bucket_report(rows, mixed_manifest["buckets"], bytes_per_token)
    manifest = stage.publish(manifest)
    write_json_atomic(join(stage.final, TIMING), {"wall_time_s": round(time.time() - started, 3)})
    return manifest

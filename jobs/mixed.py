"""mixed stage: RUN/deduped/kept (else RUN/annotated/kept) → RUN/mixed/{kept,rejected}/ + manifest.json.

Every row gets a `bucket` and a `repeats` count (corpus/mix.py: buckets, weights, the draw).
Reject rule: `mix:downsampled`, a document drawn 0 times, so every input row is in kept/ or
rejected/ and the mixture is one `GROUP BY bucket, reject` away. Repeats are not expanded here:
the shards stage writes each kept document `repeats` times.

Spark passes over the input, one task per work unit (the upstream row groups cut into units of
about `spark.task_target_mb`, corpus/units.py; part N is unit N): the quality quantiles (only when
bucketing by quality), the estimated tokens per bucket (share weights need the totals before any
factor is known; a bad weight fails here, before anything is written), then the writing pass.
The manifest's `buckets` holds, per bucket, documents, bytes and estimated tokens before and
after, the factor, the realized epochs and the share of the output.

Driver holds: the quality cuts (one number per quantile; `approxQuantile` aggregates on the
executors), the domain lists of the config, the plan (O(row groups of the input)) and per part
its counts per bucket (O(buckets)). No row reaches it.
"""

import logging
import posixpath
import time
from collections import Counter
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession

from corpus.fs import is_file, join
from corpus.manifest import file_sha256, fingerprint, read_json
from corpus.mix import (
    DOMAIN_LIST,
    DOWNSAMPLED,
    QUALITY,
    Bucketer,
    BucketStats,
    bucket_stats,
    estimate_tokens,
    mix_batch,
    read_domain_list,
    report,
    resolve_factors,
    utf8_bytes,
)
from corpus.units import Unit, plan_parts, plan_summary, unit_batches
from jobs.config import MixedConfig, PipelineConfig
from jobs.spark import read_parquet
from jobs.stage import (
    MANIFEST,
    ROWS_PER_BATCH,
    Stage,
    inject_fault,
    kept_parts,
    run_parts,
    run_tasks,
    up_to_date,
)

STAGE = "mixed"
VERSION = 2  # 2: mix.key from corpus/sampling.py (one hash draw), other draws
UPSTREAMS = ("deduped", "annotated")  # the first one that finished is the input
# approxQuantile's rank error: 0.1% of the rank moves a band edge by a negligible amount and
# avoids the full sort an exact quantile (0.0) needs.
QUANTILE_RELATIVE_ERROR = 1e-3
log = logging.getLogger(__name__)


def upstream_dir(run_dir: str) -> str:
    for name in UPSTREAMS:
        if is_file(join(run_dir, name, MANIFEST)):
            return join(run_dir, name)
    raise FileNotFoundError(
        f"{run_dir}: no finished {' or '.join(UPSTREAMS)} stage; run the `annotated` stage first"
    )


def quality_cuts(spark: SparkSession, inputs: list[str], quantiles: tuple[float, ...]) -> tuple[float, ...]:
    """The quality values at `quantiles` over every scored input document."""
    scored = read_parquet(spark, inputs, [QUALITY]).where(f"{QUALITY} IS NOT NULL") if inputs else None
    cuts = scored.approxQuantile(QUALITY, list(quantiles), QUANTILE_RELATIVE_ERROR) if scored else []
    if not cuts:
        raise ValueError(
            "mixed.bucket_by has `quality` but no document has a quality score; "
            "run the quality classifier or bucket by another criterion"
        )
    return tuple(float(c) for c in cuts)


def make_bucketer(cfg: MixedConfig, cuts: tuple[float, ...] = ()) -> Bucketer:
    lists = tuple((Path(p).stem, read_domain_list(p)) for p in cfg.domain_list_files)
    if DOMAIN_LIST in cfg.bucket_by and not lists:
        raise ValueError("mixed.bucket_by has `domain_list` but mixed.domain_list_files is empty")
    quantiles = cfg.quality_quantiles if QUALITY in cfg.bucket_by else ()
    return Bucketer(cfg.bucket_by, quantiles, cuts, lists)


def _weights(cfg: MixedConfig, buckets: list[str]) -> dict[str, dict[str, float]]:
    def weight(b: str) -> dict[str, float]:
        if b in cfg.shares:
            return {"share": cfg.shares[b]}
        return {"repeat": cfg.repeats[b]} if b in cfg.repeats else {"default_repeat": cfg.default_repeat}

    return {b: weight(b) for b in buckets}


def main(spark: SparkSession, cfg: PipelineConfig, run_dir: str) -> dict[str, Any]:
    upstream = upstream_dir(run_dir)
    inputs = kept_parts(upstream)
    mcfg = cfg.mixed
    stage = Stage(
        run_dir,
        STAGE,
        fingerprint(_stage_key(cfg, posixpath.basename(upstream))),
        read_json(join(upstream, MANIFEST))["output_fingerprint"],
    )
    if manifest := up_to_date(stage, log):
        return manifest
    started = time.time()
    cuts = quality_cuts(spark, inputs, mcfg.quality_quantiles) if QUALITY in mcfg.bucket_by else ()
    bucketer = make_bucketer(mcfg, cuts)
    units = plan_parts(inputs, cfg.spark.task_target_mb)

    # Estimated tokens per bucket, then every bucket's factor: a bad weight fails before any write.
    before = _tokens_before(spark, units, bucketer, mcfg.bytes_per_token)
    factors, target = resolve_factors(
        {b: s.tokens for b, s in before.items()},
        repeats=mcfg.repeats,
        shares=mcfg.shares,
        default_repeat=mcfg.default_repeat,
        total_tokens=mcfg.total_tokens,
        max_repeats=mcfg.max_repeats,
    )

    # The writing pass; its `after.BUCKET.*` counts are summed into the manifest.
    stage.prepare()
    task = partial(_mix_unit, stage, units, bucketer, factors, cfg.seed, mcfg.bytes_per_token)
    extra = {
        "inputs": len(inputs),
        "plan": plan_summary(units, cfg.spark.task_target_mb),
        "input_stage": posixpath.basename(upstream),
        "token_estimate": {
            "method": "ceil(utf8_bytes / bytes_per_token)",
            "bytes_per_token": mcfg.bytes_per_token,
        },
        "quality_cuts": {f"{q:g}": c for q, c in zip(bucketer.quality_quantiles, cuts, strict=True)} or None,
        "target_tokens": round(target),
    }

    def finish(parts: list[dict[str, Any]]) -> dict[str, Any]:
        return {**extra, "buckets": report(before, _after(parts), factors, _weights(mcfg, sorted(before)))}

    return run_parts(spark, stage, len(units), task, started=started, finish=finish)


def _stage_key(cfg: PipelineConfig, upstream: str) -> dict[str, Any]:
    """What the output depends on besides the input rows: the config and the domain lists' content."""
    return {
        "version": VERSION,
        "seed": cfg.seed,
        "mixed": cfg.mixed.model_dump(mode="json"),
        "lists": {p: file_sha256(p) for p in cfg.mixed.domain_list_files},
        "upstream": upstream,
        "task_target_mb": cfg.spark.task_target_mb,  # decides the part files
    }


def _tokens_before(
    spark: SparkSession, units: list[Unit], bucketer: Bucketer, bytes_per_token: float
) -> dict[str, BucketStats]:
    """Documents, bytes and estimated tokens per bucket over the input, one task per unit; only
    the per-bucket sums reach the driver."""
    columns = sorted({"id", "text", *bucketer.columns})
    count = partial(_count_unit, units, bucketer, columns, bytes_per_token)
    before: dict[str, BucketStats] = {}
    for stats in run_tasks(spark, len(units), count):
        for name, s in stats.items():
            before[name] = before.get(name, BucketStats()) + s
    return before


def _count_unit(
    units: list[Unit], bucketer: Bucketer, columns: list[str], bytes_per_token: float, index: int
) -> dict[str, BucketStats]:
    stats: dict[str, BucketStats] = {}
    for batch in unit_batches(units[index], ROWS_PER_BATCH, columns):
        nbytes = utf8_bytes(batch.column("text"))
        tokens = estimate_tokens(nbytes, bytes_per_token)
        for name, s in bucket_stats(bucketer.assign(batch), nbytes, tokens).items():
            stats[name] = stats.get(name, BucketStats()) + s
    return stats


def _mix_unit(
    stage: Stage,
    units: list[Unit],
    bucketer: Bucketer,
    factors: dict[str, float],
    seed: int,
    bytes_per_token: float,
    index: int,
) -> dict[str, Any]:
    """Part `index`: the rows of work unit `index` with their bucket and repeats (a part finished
    earlier is reused)."""
    if done := stage.part_done(index):
        return done
    counts: Counter[str] = Counter()
    rows = _mixed_rows(units[index], bucketer, factors, seed, bytes_per_token, counts)
    rows = inject_fault(STAGE, index, rows)  # test-only hook, inert by default
    return stage.write_part(index, rows, counts=counts, input=units[index].describe())


def _mixed_rows(
    unit: Unit,
    bucketer: Bucketer,
    factors: dict[str, float],
    seed: int,
    bytes_per_token: float,
    counts: Counter[str],
) -> Iterator[dict[str, Any]]:
    """The unit's rows with `bucket` and `repeats` (`mix:downsampled` when drawn 0 times); the
    documents read and, per bucket, the documents, copies, bytes and tokens kept go into
    `counts` as the rows go by."""
    for batch in unit_batches(unit, ROWS_PER_BATCH):
        buckets, repeats, nbytes, tokens = mix_batch(
            batch, bucketer, factors, seed=seed, bytes_per_token=bytes_per_token
        )
        counts["documents"] += batch.num_rows
        for row, b, r, nb, t in zip(
            batch.to_pylist(), buckets, repeats.tolist(), nbytes.tolist(), tokens.tolist(), strict=True
        ):
            row["bucket"], row["repeats"] = b, r
            if r == 0:
                row["reject"] = DOWNSAMPLED
            else:
                counts.update({f"after.{b}.documents": 1, f"after.{b}.copies": r})
                counts.update({f"after.{b}.bytes": r * nb, f"after.{b}.tokens": r * t})
            yield row


def _after(parts: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """The parts' `after.BUCKET.FIELD` counts, summed per bucket."""
    after: dict[str, dict[str, int]] = {}
    for part in parts:
        for k, v in part["counts"].items():
            if k.startswith("after."):
                bucket, field = k.removeprefix("after.").rsplit(".", 1)
                after.setdefault(bucket, Counter())[field] += v
    return after

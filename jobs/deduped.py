"""deduped stage: RUN/annotated/kept → RUN/deduped/{kept,rejected,keys}/part-NNNNN.parquet + manifest.json.

Reject rules, in order: `duplicate:url` (with `url.enabled`: another fetch of the same canonical URL,
corpus/filters/url.py `canonical_url`, is kept: the latest by `fetch_time`, or the earliest, then
by id), `duplicate:exact` (same normalized text as the kept document of its cluster) and
`duplicate:near` (in the cluster through MinHash-LSH; with `verify`, at an exact Jaccard of at
least `threshold` with the kept document), then, with `paragraphs.enabled`, `duplicate:paragraphs`
(a document kept so far left with no word once the paragraphs carried by `min_documents` of the
kept documents are removed: jobs/deduped_paragraphs.py). The URL decision comes first and only the fetches it
keeps are clustered by text, so an older fetch of a page never keeps a text cluster for itself. A
`duplicate:url` row's `cluster_id` is the kept fetch's id and its `cluster_size` the number of
fetches of its URL. Every row gets `exact_hash`,
`cluster_id` (the id of the document kept for its cluster; a singleton's own id) and
`cluster_size` (1 for a singleton). Part N of the output holds the rows of part N of the input,
in input order.

With `against` (earlier runs), a document duplicating one an earlier run kept is rejected first,
as `duplicate:previous` (jobs/deduped_previous.py); the others are deduped as above.

Steps, each resumable inside the stage's partial directory (intermediates in `work/`):
1. Signatures, one Spark task per input part (corpus/minhash.py, numpy): `work/signatures/`
   Parquet with a node number (part << 32 | row), the canonical URL, the exact hash, the
   keep-order columns and the band keys (and, for `verify`, the distinct shingle hashes).
1b. With `against`: the `duplicate:previous` matches against the earlier runs' keys, in Spark
   (jobs/deduped_previous.py), to `work/previous/part=N/`; the later steps cluster the others.
2. Clusters, in Spark DataFrames: first the fetch kept per canonical URL, by `max_by`/`min_by`
   (an aggregate that combines map-side, like the exact groups below) and joined back to the
   other fetches as the exact groups are (`join_groups`); then, over the fetches kept, every
   document's rank in the keep order over the whole
   corpus (a range-partitioned sort); exact-hash groups by aggregation (smallest node, size,
   best rank: combined map-side, so a text copied a million times never lands in one task);
   LSH buckets of one representative per group become star edges (member → bucket minimum),
   verified by the exact Jaccard of their shingle sets if `verify` (on the executors, for
   candidate edges only); connected components of the representatives by large-star /
   small-star (Kiveris et al. 2014, "Connected Components in MapReduce and Beyond"), each round
   checkpointed to Parquet; with `verify`, each component of two or more exact groups is split
   into clusters by corpus/dedup.py `attach` (no chaining: a document is dropped only as a near
   duplicate of the kept document itself), in one task for a component of up to LARGE_COMPONENT
   groups and in rounds across tasks above it (`cluster_heads`; after MAX_HEAD_ROUNDS rounds the
   groups still unattached are kept, counted as `unattached_groups`); a cluster keeps its
   document of smallest rank.
   Every per-cluster step sees one row per exact group; the groups' decisions reach their
   members by a broadcast for groups over LARGE_GROUP documents and by a shuffle on the hash for
   the others. The decisions of the documents in clusters of two or more go to
   `work/decisions/part=N/` (Spark names files at random, so they are an intermediate). The
   driver collects counts and a histogram of at most 32 rows, nothing per document.
3. Output, one task per input part: the input rows joined with their decisions, written by
   `Stage.write_part` (pyarrow), so the same input gives byte-identical Parquet.
4. Keys, one task per input part: `keys/part-NNNNN.parquet`, what a later run with this run in
   its `against` reads instead of this corpus (format and rows kept: corpus/previous.py).

`cluster_id` is the kept document's id rather than the component's smallest node: it names a
real row (`JOIN ... ON id = cluster_id` finds what a duplicate was folded into) and does not
depend on the part numbering.

Driver holds: one summary per part (O(input files)), the cluster counts and the histogram of
cluster sizes (at most 32 rows), and one row per connected-components round (`is_star_forest`);
signatures, edges and decisions stay in Parquet on the executors.
"""

import logging
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from functools import reduce
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from corpus.dedup import attach, parse_keep_order
from corpus.filters.url import canonical_url
from corpus.fs import is_file, join, make_dirs, open_input
from corpus.manifest import fingerprint, read_json, sum_counts, temporary_path, write_json_atomic
from corpus.minhash import band_keys, sign
from corpus.previous import KEYS, earlier_keys, keys_fingerprint, match_params
from corpus.units import file_rows
from jobs.config import DedupedConfig, PipelineConfig
from jobs.deduped_paragraphs import paragraph_counts, paragraphs_step, strip_rows
from jobs.deduped_previous import (
    PREVIOUS,
    mark_previous,
    new_documents,
    previous_step,
    read_previous,
    write_keys,
)
from jobs.spark import LARGE_GROUP, join_groups, spark_uri
from jobs.stage import (
    MANIFEST,
    ROWS_PER_BATCH,
    Stage,
    inject_fault,
    kept_parts,
    run_tasks,
    task_attempt,
    up_to_date,
)

STAGE = "deduped"
VERSION = 3  # 2: exact verification and no chaining (clusters split by `attach`); 3: duplicate:url
# Intermediates, under the partial directory's `work/` (not `_work`: Spark skips paths starting with
# `_` or `.`), removed before the stage is published.
WORK = "work"
SIGNATURES, DECISIONS, CHECKPOINTS, CLUSTERS = "signatures", "decisions", "checkpoints", "clusters.json"
ROW_BITS = 32  # node = part << 32 | row: unique, ordered like the input, no driver-side numbering
# Large-star/small-star needs O(log^2 n) rounds (Kiveris et al. 2014, Theorem 4.2); 64 covers any
# graph that fits a cluster, so reaching it means a bug, not a big input.
MAX_ITERATIONS = 64
# Near-duplicate components of more exact groups than this are attached in rounds across tasks,
# not in one task (`cluster_heads`): 10,000 groups hold ~40 MB of shingle hashes. A round per
# cluster their tail above the limit splits into, each a pass over what is left of them: after
# MAX_HEAD_ROUNDS the groups still unattached are kept (`cluster_heads`), not attached at any cost.
LARGE_COMPONENT = 10_000
MAX_HEAD_ROUNDS = 1_000
NO_CLUSTERS = {
    "iterations": 0,
    "clusters": 0,
    "documents_in_clusters": 0,
    "cluster_sizes": {},
    "unattached_groups": 0,
}
log = logging.getLogger(__name__)


# region step 1: signatures (one task per input part, numpy, no Spark DataFrames)


def signature_table(rows: list[dict[str, Any]], part: int, first_row: int, cfg: DedupedConfig) -> pa.Table:
    """Node numbers, exact hashes, keep-order columns and band keys (and shingle sets for verify)."""
    assert first_row + len(rows) < 1 << ROW_BITS, f"part {part} has more than 2^{ROW_BITS} rows"
    texts = [r.get("text") for r in rows]
    sets: list[np.ndarray] = []
    exact, sigs = sign(texts, ngram=cfg.ngram, num_perm=cfg.num_perm, seed=cfg.seed, sets=sets)
    columns = {
        "node": pa.array([(part << ROW_BITS) | (first_row + i) for i in range(len(rows))], pa.int64()),
        "id": pa.array([r["id"] for r in rows], pa.string()),
        "url_key": pa.array([canonical_url(r.get("url")) for r in rows], pa.string()),
        "exact_hash": pa.array(exact, pa.string()),
        "quality": pa.array([r.get("quality") for r in rows], pa.float32()),
        "fetch_time": pa.array([r.get("fetch_time") for r in rows], pa.timestamp("us", tz="UTC")),
        "lang_score": pa.array([r.get("lang_score") for r in rows], pa.float32()),
        "text_length": pa.array([len(t or "") for t in texts], pa.int64()),
    }
    if cfg.near:
        bands, rows_per_band = cfg.lsh_params()
        columns["bands"] = pa.array(list(band_keys(sigs, bands, rows_per_band)), pa.list_(pa.int64()))
        if cfg.verify:  # uint64 hashes as int64: Spark has no unsigned type; sets compare the same
            columns["shingles"] = pa.array([s.view(np.int64) for s in sets], pa.list_(pa.int64()))
    return pa.table(columns)


def write_signatures(source: str, target: Path, part: int, cfg: DedupedConfig) -> int:
    """Signatures of one input part into `target` (written aside, then renamed); returns its rows."""
    if target.is_file():  # done by an interrupted earlier attempt
        return pq.ParquetFile(target).metadata.num_rows
    tmp = temporary_path(target, task_attempt())
    columns = ["id", "url", "text", "quality", "fetch_time", "lang_score"]
    done = 0
    writer = None
    try:
        with open_input(source) as f:
            for batch in pq.ParquetFile(f).iter_batches(ROWS_PER_BATCH, columns=columns):
                table = signature_table(batch.to_pylist(), part, done, cfg)
                writer = writer or pq.ParquetWriter(tmp, table.schema, compression="zstd")
                writer.write_table(table)
                done += len(table)
    finally:
        if writer is not None:
            writer.close()
    if writer is None:  # an empty part: an empty file with the schema
        pq.write_table(signature_table([], part, 0, cfg), tmp)
    os.replace(tmp, target)
    return done


# endregion
# region step 2: clusters (Spark DataFrames)


def url_duplicates(signatures: DataFrame, keep: str) -> DataFrame:
    """(node, cluster_id, cluster_size) of every fetch of a canonical URL but the one kept: the
    latest (`keep="latest"`) or earliest `fetch_time`, a missing one last either way, then the
    largest or smallest id.

    `max_by`/`min_by` are aggregates that combine map-side, so a URL fetched a million times
    reaches the reducer as one row per map task; the decision reaches its fetches through
    `join_groups`, as an exact group's does."""
    fetches = signatures.where(F.col("url_key").isNotNull()).select("node", "id", "url_key", "fetch_time")
    missing = F.col("fetch_time").isNull()
    if keep == "latest":
        best = F.max_by(F.struct("node", "id"), F.struct(~missing, "fetch_time", "id", "node"))
    else:
        best = F.min_by(F.struct("node", "id"), F.struct(missing, "fetch_time", "id", "node"))
    urls = (
        fetches.groupBy("url_key")
        .agg(best.alias("kept"), F.count("*").alias("size"))
        .where(F.col("size") > 1)
        .select(
            "url_key",
            "size",
            F.col("size").alias("cluster_size"),  # `join_groups` drops `size`
            F.col("kept.node").alias("kept_node"),
            F.col("kept.id").alias("cluster_id"),
        )
    )
    members = join_groups(fetches.select("node", "url_key"), urls, LARGE_GROUP, key="url_key")
    return members.where(F.col("node") != F.col("kept_node")).select("node", "cluster_id", "cluster_size")


def keep_rank(docs: DataFrame, keep_order: tuple[str, ...]) -> DataFrame:
    """(node, id, exact_hash, order): `order` is the document's position in the keep order over the
    whole corpus, so the document a cluster keeps is the one of smallest `order`, an aggregate
    that combines map-side (`min`) whatever the directions and types of the keep-order columns.

    A global sort: Spark range-partitions it from a sample of the keys, and the keys end with the
    distinct `node`, so no task sorts more than its share of the rows, however many copies of one
    text there are. `monotonically_increasing_id` grows along the sorted partitions."""
    ordered = docs.sort(*keep_order_columns(keep_order))
    return ordered.select("node", "id", "exact_hash", F.monotonically_increasing_id().alias("order"))


def exact_groups(ranked: DataFrame) -> DataFrame:
    """(exact_hash, rep, size, best) per exact hash: its smallest node, its documents and the
    smallest keep `order` among them. Aggregates only: each map task sends one partial row per
    hash, so a text copied a million times reaches the reducer as one row per map task."""
    return ranked.groupBy("exact_hash").agg(
        F.min("node").alias("rep"), F.count("*").alias("size"), F.min("order").alias("best")
    )


def star_edges(reps: DataFrame) -> DataFrame:
    """(member, bucket minimum) for every bucket (band, key) of two or more representatives.

    The minimum is an aggregate (combined map-side) joined back by `join_groups`, not a window
    over the bucket: a template page near-copied a million times fills one bucket per band, and
    a window would put each in one task."""
    exploded = reps.select("node", F.posexplode("bands").alias("band", "key"))
    bucketed = exploded.select("node", F.struct("band", "key").alias("bucket"))
    buckets = bucketed.groupBy("bucket").agg(F.min("node").alias("dst"), F.count("*").alias("size"))
    members = join_groups(bucketed, buckets.where(F.col("size") > 1), LARGE_GROUP, key="bucket")
    return members.where(F.col("node") != F.col("dst")).select(F.col("node").alias("src"), "dst").distinct()


def verify_edges(edges: DataFrame, sets: DataFrame, threshold: float) -> DataFrame:
    """Edges whose shingle sets have an exact Jaccard of at least `threshold` (JVM-side, no UDF).

    corpus/minhash.py `exact_jaccard` as a Spark expression: the sets hold distinct hashes, so
    `array_intersect` is the intersection; the ratio is a double, as in Python; two empty sets
    (0 / 0, null) fail, as their Jaccard of 0 does in Python."""
    pairs = edges.join(sets.toDF("src", "a"), "src").join(sets.toDF("dst", "b"), "dst")
    return pairs.where(jaccard_reaches("a", "b", threshold)).select("src", "dst")


def jaccard_reaches(a: str, b: str, threshold: float) -> Column:
    """Whether the shingle sets in columns `a` and `b` have an exact Jaccard of at least `threshold`."""
    inter = F.size(F.array_intersect(a, b))
    # two empty sets: 0 / 0, null (not an error under ANSI SQL), which no comparison passes
    return F.try_divide(inter, F.size(a) + F.size(b) - inter) >= F.lit(threshold)


def large_star(edges: DataFrame) -> DataFrame:
    """Connect every larger neighbour of u to the smallest node of u's neighbourhood (with u).

    Edges are (src, dst) with src > dst, before and after.
    """
    both = edges.union(edges.select(F.col("dst").alias("src"), F.col("src").alias("dst")))
    low = both.groupBy("src").agg(F.min("dst").alias("m")).withColumn("m", F.least("m", "src"))
    return (
        both.where(F.col("dst") > F.col("src"))
        .join(low, "src")
        .select(F.col("dst").alias("src"), F.col("m").alias("dst"))
        .distinct()
    )


def small_star(edges: DataFrame) -> DataFrame:
    """Connect u and its smaller neighbours to the smallest of them."""
    low = edges.groupBy("src").agg(F.min("dst").alias("m"))
    neighbours = (
        edges.join(low, "src").where(F.col("dst") != F.col("m")).select(F.col("dst").alias("src"), "m")
    )
    return neighbours.union(low.select("src", "m")).select("src", F.col("m").alias("dst")).distinct()


def is_star_forest(edges: DataFrame) -> bool:
    """Converged: every node has at most one edge to a smaller node, and that node has none.

    One job: per node, its out- and in-degree; then the largest out-degree and the number of
    nodes with both."""
    degrees = (
        edges.select(F.col("src").alias("node"), F.lit(1).alias("out"), F.lit(0).alias("in"))
        .union(edges.select(F.col("dst").alias("node"), F.lit(0).alias("out"), F.lit(1).alias("in")))
        .groupBy("node")
        .agg(F.sum("out").alias("out"), F.sum("in").alias("in"))
    )
    row = degrees.agg(
        F.max("out").alias("max_out"), F.count(F.when((F.col("out") > 0) & (F.col("in") > 0), 1)).alias("mid")
    ).first()
    return (row["max_out"] or 0) <= 1 and row["mid"] == 0


def checkpoint(df: DataFrame, path: Path) -> DataFrame:
    """Write `df` as Parquet and read it back: the lineage is cut, reliably, in one computation.

    (`DataFrame.checkpoint(eager=True)` computes its input twice, once to count it and once to
    write it, unless it is also persisted; `localCheckpoint` is lost with its executor.)
    """
    df.write.mode("overwrite").parquet(spark_uri(path))
    return df.sparkSession.read.schema(df.schema).parquet(spark_uri(path))


def connected_components(edges: DataFrame, work: Path) -> tuple[DataFrame, int]:
    """(src, root) for every node on an edge but the roots; root = the component's smallest node.

    Each round is checkpointed under `work`, so every round's plan is one round deep, not the
    whole history.
    """
    edges = edges.select(F.greatest("src", "dst").alias("src"), F.least("src", "dst").alias("dst")).where(
        F.col("src") != F.col("dst")
    )
    for iteration in range(1, MAX_ITERATIONS + 1):
        edges = checkpoint(small_star(large_star(edges)), work / f"round-{iteration:02d}")
        if is_star_forest(edges):
            return edges, iteration
    raise AssertionError(f"connected components did not converge in {MAX_ITERATIONS} rounds")


def keep_order_columns(spec: tuple[str, ...]) -> list[Column]:
    """The keep order as Spark sort columns; missing values last; `node` breaks any tie."""
    cols = [
        F.col(key).desc_nulls_last() if descending else F.col(key).asc_nulls_last()
        for key, descending in parse_keep_order(spec)
    ]
    return [*cols, F.col("node").asc()]


def cluster_heads(
    groups: DataFrame, sets: DataFrame, threshold: float, checkpoints: Path
) -> tuple[DataFrame, int]:
    """(rep, head) for each exact group of a component of two or more groups: the representative
    of the group heading its cluster, as corpus/dedup.py `attach` finds it on the groups in keep
    order. Exact copies cost nothing here: a group sends one set. Also the number of groups left
    unattached (below).

    A component of at most LARGE_COMPONENT groups is attached in one task (`component_heads`,
    `groupByKey`: ~4 KB of shingle hashes a group, 40 MB at the limit). A larger one, a template
    page copied with small variations, would put all its sets in one task; it is attached in
    rounds instead (`head_round`), each the next step of `attach` for every large component at
    once, until what is left of it fits a task. The root counts, the rounds and their
    checkpoints never gather a component in one task.

    A component can need a round per group: pages joined only through pages that an earlier head
    takes (long pages of a site, each near its short pages but not near one another) are left
    each far from the rest. After MAX_HEAD_ROUNDS rounds the groups of a component still over
    the limit each head their own cluster (issue 26: the documents that fail "are re-clustered
    among themselves (or kept)"): near duplicates among them are kept and counted, and the
    stage finishes in bounded time instead of failing the run. Below that, as `attach`.
    """
    sizes = groups.groupBy("root").agg(F.count("*").alias("size")).where(F.col("size") > 1)
    members = groups.select("rep", "root", "best")
    pending = join_groups(members, sizes.withColumn("groups", F.col("size")), LARGE_COMPONENT, key="root")
    small, heads = [pending.where(F.col("groups") <= LARGE_COMPONENT)], []
    large = pending.where(F.col("groups") > LARGE_COMPONENT)
    if not large.isEmpty():
        # checkpoint: every round reads the large components' groups with their sets
        large = checkpoint(
            large.join(sets.withColumnRenamed("node", "rep"), "rep"), checkpoints / "heads-000"
        )
    rounds = 0
    while rounds < MAX_HEAD_ROUNDS and not large.isEmpty():
        rounds += 1
        attached, left = head_round(large, threshold, checkpoints / f"heads-{rounds:03d}")
        heads.append(attached)
        small.append(left.where(F.col("groups") <= LARGE_COMPONENT).drop("shingles"))
        large = left.where(F.col("groups") > LARGE_COMPONENT)
    unattached = large.count() if rounds == MAX_HEAD_ROUNDS else 0
    if unattached:
        log.warning(
            "deduped: %d groups of components over %d groups unattached after %d rounds: kept",
            unattached,
            LARGE_COMPONENT,
            MAX_HEAD_ROUNDS,
        )
        heads.append(large.select("rep", F.col("rep").alias("head")))
    limit = LARGE_COMPONENT  # a plain value for the executors' closure
    keyed = (
        reduce(DataFrame.unionByName, small)
        .join(sets.withColumnRenamed("node", "rep"), "rep")
        .rdd.map(lambda r: (r["root"], (r["best"], r["rep"], r["shingles"])))
    )
    rest = keyed.groupByKey().flatMap(lambda item: component_heads(item[1], threshold, limit))
    heads.append(groups.sparkSession.createDataFrame(rest, "rep long, head long"))
    return reduce(DataFrame.unionByName, heads), unattached


def head_round(large: DataFrame, threshold: float, path: Path) -> tuple[DataFrame, DataFrame]:
    """One step of `attach` for every large component (rep, root, best, shingles): its first
    unattached group (least keep order, `min_by`, combined map-side) heads a cluster and takes
    every unattached group whose Jaccard with it reaches `threshold`. The heads, one set per large
    component (at most rows / LARGE_COMPONENT of them), are broadcast to the groups where they
    are. Returns the (rep, head) attached and the groups left, with `groups`, what is left of
    their component."""
    first = F.min_by(F.struct("rep", "shingles"), "best")
    firsts = large.groupBy("root").agg(first.alias("h"))
    heads = F.broadcast(
        firsts.select("root", F.col("h.rep").alias("head"), F.col("h.shingles").alias("head_set"))
    )
    joined = large.select("rep", "root", "best", "shingles").join(heads, "root")
    # two empty sets: a null ratio, not near (corpus/minhash.py `exact_jaccard`: 0)
    similar = F.coalesce(jaccard_reaches("shingles", "head_set", threshold), F.lit(False))
    near = (F.col("rep") == F.col("head")) | similar
    attached = checkpoint(joined.where(near).select("rep", "head"), path / "attached")
    left = joined.where(~near).select("rep", "root", "best", "shingles")
    counts = F.broadcast(left.groupBy("root").agg(F.count("*").alias("groups")))
    return attached, checkpoint(left.join(counts, "root"), path / "pending")


def component_heads(
    groups: Iterable[tuple[int, int, list[int]]], threshold: float, limit: int
) -> Iterator[tuple[int, int]]:
    """(rep, head rep) for one component's groups given as (keep order, rep, shingle hashes)."""
    ordered = sorted(groups, key=lambda g: g[0])  # orders are distinct: a total order
    assert len(ordered) <= limit, f"a component of {len(ordered)} groups reached one task (limit {limit})"
    heads = attach([np.asarray(s, dtype=np.int64) for _, _, s in ordered], threshold)
    for (_, rep, _), head in zip(ordered, heads, strict=True):
        yield rep, ordered[head][1]


def group_clusters(
    groups: DataFrame,
    roots: DataFrame,
    sets: DataFrame | None = None,
    threshold: float | None = None,
    checkpoints: Path | None = None,
) -> tuple[DataFrame, int]:
    """The exact groups with `cluster`, the rep naming the cluster each belongs to: its component's
    root (FineWeb), or with `sets` (node, shingles) and `threshold` its head by `cluster_heads`.
    One row per group, joined by representative: no group's members move. Also the groups
    `cluster_heads` left unattached."""
    root_of = roots.select(F.col("src").alias("rep"), F.col("dst").alias("root"))
    groups = groups.join(root_of, "rep", "left").withColumn("root", F.coalesce("root", "rep"))
    if sets is None:
        return groups.withColumn("cluster", F.col("root")), 0
    # a component of one exact group has no heads: its cluster is the group, rep = root
    heads, unattached = cluster_heads(groups, sets, threshold, checkpoints)
    clustered = groups.join(heads, "rep", "left").withColumn("cluster", F.coalesce("head", "rep"))
    return clustered, unattached


def decide(
    ranked: DataFrame,
    groups: DataFrame,
    roots: DataFrame,
    sets: DataFrame | None = None,
    threshold: float | None = None,
    checkpoints: Path | None = None,
) -> tuple[DataFrame, int]:
    """Per document in a cluster of two or more: node, cluster_id, cluster_size, reject; and the
    groups `cluster_heads` left unattached.

    Clusters are made of exact groups (`exact_groups`), so each per-cluster step handles one row
    per group; the kept document is the cluster's smallest keep `order` (`keep_rank`).
    """
    clustered, unattached = group_clusters(groups, roots, sets, threshold, checkpoints)
    clusters = (
        clustered.groupBy("cluster")
        .agg(F.sum("size").alias("cluster_size"), F.min("best").alias("order"))
        .where(F.col("cluster_size") > 1)  # split off alone: the default decision of a singleton
    )
    kept = ranked.select(
        "order",
        F.col("id").alias("cluster_id"),
        F.col("exact_hash").alias("kept_hash"),
        F.col("node").alias("kept_node"),
    )
    per_group = clustered.select("exact_hash", "cluster", "size").join(
        clusters.join(kept, "order"), "cluster"
    )
    members = join_groups(ranked.select("node", "exact_hash"), per_group.drop("order"), LARGE_GROUP)
    reject = (
        F.when(F.col("node") == F.col("kept_node"), F.lit(None).cast("string"))
        .when(F.col("exact_hash") == F.col("kept_hash"), F.lit("duplicate:exact"))
        .otherwise(F.lit("duplicate:near"))
    )
    return members.select("node", "cluster_id", "cluster_size", reject.alias("reject")), unattached


def by_part(decisions: DataFrame) -> DataFrame:
    """Decisions by node as part, row, cluster_id, cluster_size, reject (`work/decisions/`)."""
    return decisions.select(
        F.shiftright("node", ROW_BITS).cast("int").alias("part"),
        (F.col("node").bitwiseAND(F.lit((1 << ROW_BITS) - 1))).alias("row"),
        "cluster_id",
        "cluster_size",
        "reject",
    )


def cluster_figures(decisions: DataFrame) -> dict[str, Any]:
    """Clusters, their documents and sizes in powers of two ({"2": n, "3-4": n, ...}); one job."""
    exponent = F.ceil(F.log2(F.col("cluster_size"))).cast("int").alias("e")
    rows = (
        decisions.where(F.col("reject").isNull())
        .groupBy(exponent)
        .agg(F.count("*").alias("clusters"), F.sum("cluster_size").alias("docs"))
        .collect()  # one row per power of two: at most 32
    )
    sizes = {}
    for row in sorted(rows, key=lambda r: r["e"]):
        e = row["e"]
        sizes["2" if e == 1 else f"{(1 << (e - 1)) + 1}-{1 << e}"] = row["clusters"]
    return {
        "clusters": sum(r["clusters"] for r in rows),
        "documents_in_clusters": sum(r["docs"] for r in rows),
        "cluster_sizes": sizes,
    }


def url_step(signatures: DataFrame, work: Path, cfg: DedupedConfig) -> tuple[DataFrame, DataFrame | None]:
    """The fetches that go on to text clustering, and the `duplicate:url` decisions (None when off)."""
    if not cfg.url.enabled:
        return signatures, None
    # checkpoint: the decisions are both written and subtracted from the fetches clustered by text
    losers = checkpoint(url_duplicates(signatures, cfg.url.keep), work / CHECKPOINTS / "url")
    decisions = losers.withColumn("reject", F.lit("duplicate:url"))
    return signatures.join(losers.select("node"), "node", "left_anti"), decisions


def cluster(spark: SparkSession, work: Path, cfg: DedupedConfig) -> dict[str, Any]:
    """Step 2: write `decisions/` and return the clustering figures for the manifest."""
    shutil.rmtree(work / CHECKPOINTS, ignore_errors=True)
    signatures = spark.read.parquet(spark_uri(work / SIGNATURES))
    signatures = new_documents(spark, signatures, work)  # without the duplicate:previous ones
    survivors, decisions = url_step(signatures, work, cfg)
    # the shingle sets (~8 bytes a word) stay in work/signatures, read by node where needed
    sets = signatures.select("node", "shingles") if cfg.near and cfg.verify else None
    # checkpoints: `ranked` feeds the groups, the kept documents and the decisions, `groups` the
    # counts, the LSH representatives and the clusters; each would otherwise redo its shuffle.
    # Not `persist`: AQE leaves a cached plan's output at spark.sql.shuffle.partitions (200),
    # and every later step then ran 200 tasks, 10x slower at 100,000 documents on 2 cores; read
    # back from Parquet it has a few partitions.
    ranked = checkpoint(
        keep_rank(survivors.drop("shingles", "bands"), cfg.keep_order), work / CHECKPOINTS / "ranked"
    )
    groups = checkpoint(exact_groups(ranked), work / CHECKPOINTS / "groups")
    totals = groups.agg(F.count("*").alias("groups"), F.sum("size").alias("documents")).first()
    stats: dict[str, Any] = {"exact_edges": totals["documents"] - totals["groups"]}
    roots = spark.createDataFrame([], "src long, dst long")
    stats.update(NO_CLUSTERS)
    if cfg.near:
        reps = signatures.select("node", "bands").join(groups.select(F.col("rep").alias("node")), "node")
        # checkpoint: the edges are counted, verified and unioned; the window over the
        # (representatives x bands) rows runs once.
        edges = checkpoint(star_edges(reps), work / CHECKPOINTS / "candidates")
        stats["candidate_edges"] = edges.count()
        if sets is not None:
            edges = checkpoint(verify_edges(edges, sets, cfg.threshold), work / CHECKPOINTS / "verified")
            stats["verified_edges"] = edges.count()
        if not edges.isEmpty():
            roots, stats["iterations"] = connected_components(edges, work / CHECKPOINTS)
    if stats["exact_edges"] or stats["iterations"]:  # else every document is a singleton
        text, stats["unattached_groups"] = decide(
            ranked, groups, roots, sets, cfg.threshold, work / CHECKPOINTS
        )
        decisions = text if decisions is None else decisions.unionByName(text)
    if decisions is not None:
        decisions = by_part(decisions)
        decisions.write.mode("overwrite").partitionBy("part").parquet(spark_uri(work / DECISIONS))
        # the schema given: no URL fetched twice and no text cluster writes no file to infer it from
        written = spark.read.schema(decisions.schema).parquet(spark_uri(work / DECISIONS))
        stats.update(cluster_figures(written))
    return stats


# endregion
# region step 3: output parts (one task per input part, pyarrow)


def read_decisions(directory: Path) -> dict[int, tuple[str, int, str | None]]:
    """row → (cluster_id, cluster_size, reject) for one part's documents in clusters."""
    files = sorted(directory.glob("*.parquet")) if directory.is_dir() else []
    if not files:
        return {}
    table = pq.read_table(files, columns=["row", "cluster_id", "cluster_size", "reject"])
    cols = [table.column(c).to_pylist() for c in ("row", "cluster_id", "cluster_size", "reject")]
    return {row: (cid, size, reject) for row, cid, size, reject in zip(*cols, strict=True)}


def deduped_rows(source: str, signatures: Path, decisions: dict[int, tuple[str, int, str | None]]):
    exact = pq.read_table(signatures, columns=["exact_hash"]).column("exact_hash").to_pylist()
    row = 0
    for doc in file_rows(source, ROWS_PER_BATCH):
        cluster_id, size, reject = decisions.get(row, (doc["id"], 1, None))
        yield {
            **doc,
            "exact_hash": exact[row],
            "cluster_id": cluster_id,
            "cluster_size": size,
            "reject": reject,
        }
        row += 1
    assert row == len(exact), f"{source}: {row} rows but {len(exact)} signatures"


# endregion


def signatures_step(spark: SparkSession, inputs: list[str], work: Path, dcfg: DedupedConfig) -> int:
    """Step 1: signatures, one task per input part; the number of rows read."""
    (work / SIGNATURES).mkdir(parents=True, exist_ok=True)

    def signature_task(index: int) -> int:
        return write_signatures(inputs[index], work / SIGNATURES / f"part-{index:05d}.parquet", index, dcfg)

    return sum(run_tasks(spark, len(inputs), signature_task))


def clusters_step(spark: SparkSession, work: Path, dcfg: DedupedConfig, rows_in: int) -> dict[str, Any]:
    """Step 2: clusters and their figures; skipped when an interrupted attempt finished it."""
    if (work / CLUSTERS).is_file():
        return read_json(work / CLUSTERS)
    stats = cluster(spark, work, dcfg) if rows_in else dict(NO_CLUSTERS, exact_edges=0)
    write_json_atomic(work / CLUSTERS, stats)
    return stats


def output_step(
    spark: SparkSession, stage: Stage, inputs: list[str], work: Path, paragraphs: bool = False
) -> list[dict[str, Any]]:
    """Step 3: the output parts, one task per input part (with `paragraphs`, stripped of their
    frequent paragraphs by jobs/deduped_paragraphs.py `strip_rows`); their summaries."""

    def output_task(index: int) -> dict[str, Any]:
        if done := stage.part_done(index):
            return done
        decisions = read_decisions(work / DECISIONS / f"part={index}")
        signatures = work / SIGNATURES / f"part-{index:05d}.parquet"
        rows_out = deduped_rows(inputs[index], signatures, decisions)
        rows_out = mark_previous(rows_out, read_previous(work / PREVIOUS / f"part={index}"))
        with open_input(inputs[index]) as f:
            counts = Counter(documents=pq.ParquetFile(f).metadata.num_rows)
        if paragraphs:
            rows_out = strip_rows(rows_out, work, index, counts)
        rows_out = inject_fault(STAGE, index, rows_out)  # test-only hook, inert by default
        return stage.write_part(index, rows_out, counts=counts, input=inputs[index])

    return run_tasks(spark, len(inputs), output_task)


def keys_step(spark: SparkSession, stage: Stage, n_parts: int, work: Path) -> list[dict[str, Any]]:
    """Step 4: the keys a later run dedups against (corpus/previous.py), one task per part; their
    file entries. In the stage directory, so they are published with it."""
    make_dirs(join(stage.partial, KEYS))

    def keys_task(index: int) -> dict[str, Any]:
        decisions = read_decisions(work / DECISIONS / f"part={index}")
        previous = read_previous(work / PREVIOUS / f"part={index}")
        signatures = work / SIGNATURES / f"part-{index:05d}.parquet"
        target = join(stage.partial, KEYS, f"part-{index:05d}.parquet")
        return write_keys(signatures, target, decisions, previous)

    return run_tasks(spark, n_parts, keys_task)


def earlier_runs(dcfg: DedupedConfig, run_dir: str) -> list[dict[str, str]]:
    """`against`, each run checked (corpus/previous.py `earlier_keys`) with its keys' fingerprint."""
    ours = match_params(dedup_params(dcfg))
    return [{"run": run, "keys": keys_fingerprint(earlier_keys(run, run_dir, ours))} for run in dcfg.against]


def work_dir(spark: SparkSession, stage: Stage, scratch: str | None) -> Path:
    """Where the intermediates go: RUN/.deduped.partial/work, where Spark reads and writes them
    itself. A run in object storage has none that Spark can use (it would need Hadoop's s3a
    connector), so they go to `spark.scratch` (a POSIX path every executor sees), else to a local
    temporary directory, which only a local master shares; named by the stage's key, so that a
    resume on this machine finds them."""
    if not stage.in_place:
        return Path(stage.partial) / WORK
    if scratch is None and not spark.sparkContext.master.startswith("local"):
        raise ValueError(
            f"{stage.final}: a run in object storage on the cluster {spark.sparkContext.master} needs "
            "spark.scratch, a directory every executor sees, for the deduped stage's intermediates"
        )
    base = Path(scratch) if scratch else Path(tempfile.gettempdir()) / "refinery-scratch"
    return base / f"deduped-{fingerprint([stage.final, stage.config_hash, stage.input_fingerprint])[:16]}"


def dedup_params(dcfg: DedupedConfig) -> dict[str, Any]:
    """The parameters the manifest records, the LSH bands and rows resolved."""
    bands, rows = dcfg.lsh_params() if dcfg.near else (None, None)
    return {
        "ngram": dcfg.ngram,
        "num_perm": dcfg.num_perm,
        "bands": bands,
        "rows": rows,
        "threshold": dcfg.threshold,
        "verify": dcfg.verify,
        "seed": dcfg.seed,
        "keep_order": list(dcfg.keep_order),
        "url": dcfg.url.model_dump(mode="json"),
        "paragraphs": dcfg.paragraphs.model_dump(mode="json"),
    }


def main(spark: SparkSession, cfg: PipelineConfig, run_dir: str) -> dict[str, Any]:
    upstream = join(run_dir, "annotated")
    if not is_file(join(upstream, MANIFEST)):
        raise FileNotFoundError(f"{upstream}: no finished annotated stage; run the `annotated` stage first")
    inputs = kept_parts(upstream)
    dcfg = cfg.deduped
    against = earlier_runs(dcfg, run_dir)  # before anything else: a bad earlier run is refused
    key = {"version": VERSION, "deduped": dcfg.model_dump(mode="json"), "against": against}
    stage = Stage(run_dir, STAGE, fingerprint(key), read_json(join(upstream, MANIFEST))["output_fingerprint"])
    if manifest := up_to_date(stage, log):
        return manifest
    started = time.time()
    stage.prepare()
    work = work_dir(spark, stage, cfg.spark.scratch)

    rows_in = signatures_step(spark, inputs, work, dcfg)
    seconds = {"signatures": round(time.time() - started, 3)}
    previous = {}
    if against and rows_in:
        previous = previous_step(spark, work / SIGNATURES, work, dcfg, ROW_BITS)
        seconds["previous"] = round(time.time() - started - sum(seconds.values()), 3)
    stats = clusters_step(spark, work, dcfg, rows_in - sum(previous.values()))
    seconds["clusters"] = round(time.time() - started - sum(seconds.values()), 3)
    paragraphs = dcfg.paragraphs.enabled and rows_in > 0
    if paragraphs:
        stats["paragraphs"] = paragraphs_step(spark, inputs, work, work / DECISIONS, dcfg.paragraphs)
        seconds["paragraphs"] = round(time.time() - started - sum(seconds.values()), 3)
    parts = output_step(spark, stage, inputs, work, paragraphs)
    seconds["output"] = round(time.time() - started - sum(seconds.values()), 3)
    key_files = keys_step(spark, stage, len(inputs), work)
    seconds["keys"] = round(time.time() - started - sum(seconds.values()), 3)
    # The intermediates go before the rename. A crash between here and the commit makes a rerun
    # redo steps 1 and 2 (every part of step 3 is then found done): slower, never wrong.
    shutil.rmtree(work)

    rejected = sum_counts(p["counts"] for p in parts)
    kinds = ("url", "exact", "near")
    stats["duplicates"] = {kind: rejected.get(f"rejected.duplicate:{kind}", 0) for kind in kinds}
    if against:
        stats["duplicates"]["previous"] = rejected.get("rejected.duplicate:previous", 0)
        stats["previous"] = {"against": against, "matches": previous}
    keys = {"params": match_params(dedup_params(dcfg)), "files": key_files}
    keys["rows"] = sum(f["rows"] for f in key_files)
    if paragraphs:
        stats["paragraphs"] |= paragraph_counts(rejected)
    return stage.commit(
        parts,
        rows_in=rows_in,
        started=started,
        inputs=len(inputs),
        dedup={**stats, "params": dedup_params(dcfg), "seconds": seconds},
        keys=keys,
    )

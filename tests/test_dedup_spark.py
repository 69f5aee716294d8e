"""The deduped stage on a local Spark session, checked against the in-process reference."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from datasketch import MinHash, MinHashLSH

from corpus.dedup import cluster, components, keep_decisions
from corpus.dedup_eval import far_drops
from corpus.manifest import file_sha256, write_json_atomic
from corpus.minhash import band_keys, hash_batch, shingle_sets, sign
from corpus.schema import to_table
from jobs import deduped
from jobs.config import DedupedConfig, PipelineConfig

pytestmark = pytest.mark.spark
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def corpus_docs() -> list[dict]:
    """Singletons, exact copies (restyled), near copies (a word or two changed), a chain, empty texts."""
    rng = np.random.default_rng(0)

    def text(n: int) -> list[str]:
        return [f"w{k}" for k in rng.integers(0, 3000, n)]

    docs = []

    def add(words, quality=None, hours=0, name=None):
        i = len(docs)
        docs.append(
            {
                "id": name or f"doc{i:03d}",
                "url": f"https://example.org/{i}",
                "text": words if isinstance(words, str) else " ".join(words),
                "quality": quality,
                "fetch_time": T0 + timedelta(hours=hours),
            }
        )

    for _ in range(20):
        add(text(int(rng.integers(30, 150))), quality=float(rng.random()), hours=int(rng.integers(0, 100)))
    a = text(120)
    add(a, quality=0.5, hours=10, name="a-original")
    add([w.upper() for w in a[:60]] + a[60:], quality=0.5, hours=5, name="a-exact-earlier")
    add(a[:119] + ["changed"], quality=0.5, hours=1, name="a-near-earliest")
    b = text(100)
    add(b, quality=0.2, hours=0, name="b-original")
    add(", ".join(b) + ".", quality=0.9, hours=50, name="b-exact-better")
    c = text(150)
    add(c, quality=None, hours=0, name="c-no-quality")
    add(c[:75] + ["x"] + c[76:], quality=0.1, hours=90, name="c-near-scored")
    add(c[:90] + text(60), quality=0.3, hours=3, name="c-overlap")  # Jaccard ~0.42: not a duplicate
    # a chain: each step replaces 3 isolated words of 200 (Jaccard 181/211 = 0.86), the ends 0.73
    d = text(200)
    middle = [f"mid{i}" if i in (20, 50, 80) else w for i, w in enumerate(d)]
    add(d, quality=0.9, name="d-chain-start")
    add(middle, quality=0.5, name="d-chain-middle")
    add(
        [f"end{i}" if i in (120, 150, 180) else w for i, w in enumerate(middle)],
        quality=0.1,
        name="d-chain-end",
    )
    add("", name="empty-1")
    add("  ...  ", name="empty-2")
    return docs


def write_annotated(run_dir: Path, docs: list[dict], parts: int = 2) -> None:
    """An annotated stage's output: kept/ parts and a manifest with an output fingerprint."""
    kept = run_dir / "annotated" / "kept"
    kept.mkdir(parents=True)
    for p in range(parts):
        pq.write_table(to_table([dict(d) for d in docs[p::parts]]), kept / f"part-{p:05d}.parquet")
    write_json_atomic(run_dir / "annotated" / "manifest.json", {"output_fingerprint": "test"})


def read_rows(run_dir: Path) -> dict[str, dict]:
    rows = {}
    for split in ("kept", "rejected"):
        for path in sorted((run_dir / "deduped" / split).glob("*.parquet")):
            rows.update({r["id"]: r for r in pq.read_table(path).to_pylist()})
    return rows


def reference(docs: list[dict], cfg: DedupedConfig) -> dict[str, dict]:
    """The decisions of corpus/dedup.py in one process, in the stage's document order."""
    ordered = [d for p in range(2) for d in docs[p::2]]  # node order: part, then row
    sets: list[np.ndarray] = []
    texts = [d["text"] for d in ordered]
    exact, sigs = sign(texts, ngram=cfg.ngram, num_perm=cfg.num_perm, seed=cfg.seed, sets=sets)
    keys = band_keys(sigs, *cfg.lsh_params()) if cfg.near else None
    threshold = cfg.threshold if cfg.near and cfg.verify else None
    labels = cluster(exact, keys, sets, threshold)
    decisions = keep_decisions(ordered, labels, exact, cfg.keep_order, sets, threshold)
    return {d["id"]: {**dec, "exact_hash": h} for d, dec, h in zip(ordered, decisions, exact, strict=True)}


def run_stage(spark, run_dir: Path, docs: list[dict], **deduped_cfg) -> dict:
    if not (run_dir / "annotated").exists():
        write_annotated(run_dir, docs)
    cfg = PipelineConfig(deduped=DedupedConfig(**deduped_cfg))
    return deduped.main(spark, cfg, str(run_dir))


@pytest.fixture(scope="module")
def default_run(spark, tmp_path_factory):
    docs = corpus_docs()
    run_dir = tmp_path_factory.mktemp("dedup") / "run"
    manifest = run_stage(spark, run_dir, docs)
    return docs, run_dir, manifest


def test_every_input_row_is_kept_or_rejected(default_run):
    docs, run_dir, manifest = default_run
    rows = read_rows(run_dir)
    assert sorted(rows) == sorted(d["id"] for d in docs)
    assert manifest["rows"] == {"in": len(docs), "kept": 27, "rejected": 6}
    assert not (run_dir / "deduped" / deduped.WORK).exists() and not (run_dir / ".deduped.partial").exists()


def test_decisions_match_the_in_process_reference(default_run):
    docs, run_dir, _ = default_run
    rows = read_rows(run_dir)
    expected = reference(docs, DedupedConfig())
    got = {
        i: {k: r[k] for k in ("cluster_id", "cluster_size", "reject", "exact_hash")} for i, r in rows.items()
    }
    assert got == expected


def test_keep_rule_prefers_quality_then_earliest_fetch_time(default_run):
    _, run_dir, _ = default_run
    rows = read_rows(run_dir)
    # a: equal quality, so the earliest fetch wins, and the restyled copy is an exact duplicate of
    # the original, not of the kept near copy
    assert rows["a-near-earliest"]["reject"] is None
    assert rows["a-original"]["reject"] == "duplicate:near"
    assert rows["a-exact-earlier"]["reject"] == "duplicate:near"
    assert {rows[k]["cluster_id"] for k in ("a-original", "a-exact-earlier")} == {"a-near-earliest"}
    assert rows["b-exact-better"]["reject"] is None and rows["b-original"]["reject"] == "duplicate:exact"
    assert rows["c-near-scored"]["reject"] is None and rows["c-no-quality"]["reject"] == "duplicate:near"
    assert rows["a-original"]["cluster_size"] == 3 and rows["b-original"]["cluster_size"] == 2


def test_singletons_are_their_own_cluster_of_one(default_run):
    _, run_dir, _ = default_run
    row = read_rows(run_dir)["doc000"]
    assert (row["cluster_id"], row["cluster_size"], row["reject"]) == ("doc000", 1, None)
    assert len(row["exact_hash"]) == 32


def test_empty_texts_are_exact_duplicates_of_each_other(default_run):
    _, run_dir, _ = default_run
    rows = read_rows(run_dir)
    assert rows["empty-2"]["reject"] == "duplicate:exact" and rows["empty-1"]["reject"] is None


def test_manifest_records_clusters_iterations_and_parameters(default_run):
    _, _, manifest = default_run
    dedup = manifest["dedup"]
    assert dedup["clusters"] == 5 and dedup["documents_in_clusters"] == 11
    assert dedup["cluster_sizes"] == {"2": 4, "3-4": 1}
    assert dedup["duplicates"] == {"url": 0, "exact": 2, "near": 4}
    assert dedup["iterations"] >= 1 and dedup["exact_edges"] == 3
    assert dedup["unattached_groups"] == 0
    assert (dedup["params"]["bands"], dedup["params"]["rows"], dedup["params"]["num_perm"]) == (26, 8, 208)
    assert manifest["rejected"] == {"duplicate:exact": 2, "duplicate:near": 4}


def test_chain_end_is_not_dropped_as_a_duplicate_of_the_kept_start(default_run):
    """start ~ middle ~ end (Jaccard 0.86 each step) but start !~ end (0.73): one component, and
    the end, not near the kept start, is kept alone rather than chained into its cluster."""
    _, run_dir, _ = default_run
    rows = read_rows(run_dir)
    middle, end = rows["d-chain-middle"], rows["d-chain-end"]
    assert (middle["reject"], middle["cluster_id"], middle["cluster_size"]) == (
        "duplicate:near",
        "d-chain-start",
        2,
    )
    assert (end["reject"], end["cluster_id"], end["cluster_size"]) == (None, "d-chain-end", 1)


def test_clusters_agree_with_datasketch_minhash_lsh(default_run):
    docs, run_dir, _ = default_run
    # the chain is a component but not a cluster (test above): left out here
    docs = [d for d in docs if not d["id"].startswith("d-chain")]
    rows = {i: r for i, r in read_rows(run_dir).items() if not i.startswith("d-chain")}
    ids = [d["id"] for d in docs]
    cfg = DedupedConfig()
    exact, sigs = sign([d["text"] for d in docs], num_perm=cfg.num_perm)
    lsh = MinHashLSH(num_perm=cfg.num_perm, params=(cfg.bands, cfg.rows))
    sketches = [MinHash(num_perm=cfg.num_perm, hashvalues=s, scheme="affine32") for s in sigs]
    for i, sketch in enumerate(sketches):
        lsh.insert(i, sketch)
    edges = [(i, j) for i, s in enumerate(sketches) for j in lsh.query(s) if i != j]
    # the stage verifies at 0.8: here every candidate passes by datasketch's own estimate
    assert edges and all(sketches[i].jaccard(sketches[j]) >= 0.8 for i, j in edges)
    edges += [(i, j) for i in range(len(docs)) for j in range(i) if exact[i] == exact[j]]
    labels = components(len(docs), edges)
    theirs = {frozenset(ids[i] for i in np.flatnonzero(labels == label)) for label in set(labels.tolist())}
    ours: dict[str, set[str]] = {}
    for doc_id, row in rows.items():
        ours.setdefault(row["cluster_id"], set()).add(doc_id)
    assert {frozenset(group) for group in ours.values()} == theirs


def test_rerun_is_skipped(default_run, spark):
    docs, run_dir, manifest = default_run
    assert run_stage(spark, run_dir, docs) == manifest


def test_fresh_run_writes_byte_identical_parts(default_run, spark, tmp_path):
    docs, run_dir, manifest = default_run
    again = run_stage(spark, tmp_path / "run", docs)
    assert again["output_fingerprint"] == manifest["output_fingerprint"]
    for split in ("kept", "rejected"):
        first = {p.name: file_sha256(p) for p in (run_dir / "deduped" / split).glob("*.parquet")}
        second = {p.name: file_sha256(p) for p in (tmp_path / "run" / "deduped" / split).glob("*.parquet")}
        assert first == second and first


def test_verify_drops_candidates_below_the_threshold(spark, tmp_path):
    """8 bands of 1 row make many false candidates; verification at 0.8 keeps the true ones."""
    docs = corpus_docs()
    manifest = run_stage(spark, tmp_path / "run", docs, bands=8, rows=1, verify=True)
    assert manifest["dedup"]["verified_edges"] < manifest["dedup"]["candidate_edges"]
    rows = read_rows(tmp_path / "run")
    expected = reference(docs, DedupedConfig(bands=8, rows=1, verify=True))
    assert {i: (r["cluster_id"], r["reject"]) for i, r in rows.items()} == {
        i: (e["cluster_id"], e["reject"]) for i, e in expected.items()
    }


def test_components_match_union_find_on_paths_and_trees(spark, tmp_path):
    """A 40-node path in shuffled order (the worst case for label propagation) and random trees."""
    rng = np.random.default_rng(0)
    order = rng.permutation(40)
    pairs = [(int(order[i]), int(order[i + 1])) for i in range(39)]
    pairs += [(int(n), int(rng.integers(40, n))) for n in range(41, 90) if rng.random() < 0.8]
    edges = spark.createDataFrame(pairs, "src long, dst long")
    roots, iterations = deduped.connected_components(edges, tmp_path)
    labels = components(90, pairs)
    assert {(r["src"], r["dst"]) for r in roots.collect()} == {
        (n, int(labels[n])) for n in range(90) if labels[n] != n
    }
    assert iterations <= 8


def test_exact_only_rejects_only_exact_duplicates(spark, tmp_path):
    docs = corpus_docs()
    manifest = run_stage(spark, tmp_path / "run", docs, near=False)
    rows = read_rows(tmp_path / "run")
    assert manifest["rejected"] == {"duplicate:exact": 3}
    assert {i for i, r in rows.items() if r["reject"]} == {"a-original", "b-original", "empty-2"}


def refetched_docs() -> list[dict]:
    """One page fetched three times with different texts (its URL spelled three ways), a copy of
    its oldest text at another URL, and a fetch with no fetch_time."""
    rng = np.random.default_rng(1)
    texts = [" ".join(f"w{k}" for k in rng.integers(0, 3000, 80)) for _ in range(4)]
    fetches = [
        ("fetch-old", "https://News.example/story/", 0, texts[0]),
        ("fetch-latest", "https://news.example:443/story#comments", 48, texts[1]),
        ("fetch-middle", "https://news.example/story", 24, texts[2]),
        ("fetch-undated", "https://news.example/story", None, texts[3]),
    ]
    docs = [
        {"id": i, "url": url, "text": text, "fetch_time": None if h is None else T0 + timedelta(hours=h)}
        for i, url, h, text in fetches
    ]
    # the same text as fetch-old, fetched earlier at another URL: exact duplicates of each other
    # unless fetch-old is decided first and leaves the clustering
    docs.append({"id": "copy-of-old", "url": "https://copy.example/", "text": texts[0], "fetch_time": T0})
    return corpus_docs() + docs


REFETCHES = ("fetch-old", "fetch-latest", "fetch-middle", "fetch-undated")


def test_a_url_fetched_several_times_keeps_its_latest_fetch(spark, tmp_path):
    manifest = run_stage(spark, tmp_path / "run", refetched_docs())
    rows = read_rows(tmp_path / "run")
    assert rows["fetch-latest"]["reject"] is None
    for i in ("fetch-old", "fetch-middle", "fetch-undated"):
        assert (rows[i]["reject"], rows[i]["cluster_id"], rows[i]["cluster_size"]) == (
            "duplicate:url",
            "fetch-latest",
            4,
        )
    # fetch-old left before text clustering: its text's other copy is a singleton, kept
    assert (rows["copy-of-old"]["reject"], rows["copy-of-old"]["cluster_size"]) == (None, 1)
    assert manifest["dedup"]["duplicates"] == {"url": 3, "exact": 2, "near": 4}
    assert manifest["dedup"]["params"]["url"] == {"enabled": True, "keep": "latest"}


def test_url_dedup_keeps_the_earliest_fetch_or_none_when_off(spark, tmp_path):
    docs = refetched_docs()
    run_stage(spark, tmp_path / "earliest", docs, url={"keep": "earliest"})
    rows = read_rows(tmp_path / "earliest")
    assert {i: (rows[i]["reject"], rows[i]["cluster_id"]) for i in REFETCHES} == {
        "fetch-old": ("duplicate:exact", "copy-of-old"),  # kept by URL, then an exact copy
        "fetch-latest": ("duplicate:url", "fetch-old"),
        "fetch-middle": ("duplicate:url", "fetch-old"),
        "fetch-undated": ("duplicate:url", "fetch-old"),  # a missing fetch_time is never kept
    }
    manifest = run_stage(spark, tmp_path / "off", docs, url={"enabled": False})
    assert "duplicate:url" not in manifest["rejected"]


def test_corpus_without_duplicates_keeps_every_row(spark, tmp_path):
    docs = corpus_docs()[:20]  # the singletons, each at its own URL
    manifest = run_stage(spark, tmp_path / "run", docs)
    assert manifest["rows"] == {"in": 20, "kept": 20, "rejected": 0}
    assert manifest["dedup"]["duplicates"] == {"url": 0, "exact": 0, "near": 0}


@pytest.mark.slow
def test_crawl_sample_utm_copies_are_clustered_with_their_pages(spark, shared_data, tmp_path):
    """All 54 labelled `utm_source` copies, with the annotated filters off (about 2 minutes).

    All 54 copies and their pages reach dedup: each pair is one cluster and one of the two is
    rejected as duplicate:exact (the later fetch). One pair extracts to nothing in precision mode
    and reaches dedup with the default mode's text (corpus/extract.py's fallback).
    """
    import duckdb

    from jobs.run import run

    config = tmp_path / "no-filters.yaml"
    steps = ("url", "language", "gopher_repetition", "gopher_quality", "c4", "fineweb")
    config.write_text("annotated:\n" + "".join(f"  {s}: {{enabled: false}}\n" for s in steps))
    out = tmp_path / "run"
    run(str(config), [str(shared_data / "crawl-sample" / "*.warc.gz")], str(out))
    con = duckdb.connect()
    con.execute(
        f"CREATE TABLE labels AS SELECT * FROM read_csv('{shared_data}/crawl-sample/labels.tsv', "
        "delim='\t', header=true, quote='')"
    )
    for stage in ("documents", "deduped"):
        con.execute(
            f"CREATE VIEW {stage} AS SELECT * FROM read_parquet(['{out}/{stage}/kept/*.parquet', "
            f"'{out}/{stage}/rejected/*.parquet'])"
        )
    pairs = con.execute(
        """
        SELECT copy.warc_record_id, copy.cluster_id = page.cluster_id, copy.cluster_size,
               list_sort([copy.reject, page.reject]), dc.reject, dp.reject
        FROM labels l JOIN labels lp ON lp.url = l.duplicate_of AND lp.kind = 'page'
        JOIN documents dc ON dc.warc_record_id = l.record_id
        JOIN documents dp ON dp.warc_record_id = lp.record_id
        LEFT JOIN deduped copy ON copy.warc_record_id = l.record_id
        LEFT JOIN deduped page ON page.warc_record_id = lp.record_id
        WHERE l.kind = 'duplicate'
        """
    ).fetchall()
    assert len(pairs) == 54
    reached = [p for p in pairs if p[0] is not None]
    assert len(reached) == 54
    assert all(
        same and size == 2 and rejects == ["duplicate:exact", None] for _, same, size, rejects, *_ in reached
    )


GIANT = 40_000  # copies of one page: over deduped.LARGE_GROUP, so its decisions are broadcast
GIANT_KEPT = "copy-031337"  # the one copy with a quality score: the keep rule's choice


def giant_cluster() -> list[dict]:
    return [
        {
            "id": f"copy-{i:06d}",
            "url": f"https://template.example/{i}",
            "text": "Welcome to our site. This page is the same everywhere.",
            "quality": 0.9 if f"copy-{i:06d}" == GIANT_KEPT else None,
            "fetch_time": T0,
        }
        for i in range(GIANT)
    ]


def most_shuffle_records_in_one_task(spark, group: str) -> int:
    """The most shuffle records one task of the jobs in `group` read, from Spark's status store
    (what the Spark UI shows per task); stages skipped for reused shuffle output have no tasks."""
    sc = spark.sparkContext
    sc._jsc.sc().listenerBus().waitUntilEmpty()  # the store is filled by listener events
    store, tracker = sc._jsc.sc().statusStore(), sc.statusTracker()
    most = 0
    for job in tracker.getJobIdsForGroup(group):
        for stage in tracker.getJobInfo(job).stageIds:
            tasks = store.taskList(stage, 0, 1 << 30)
            for i in range(tasks.size()):
                metrics = tasks.apply(i).taskMetrics()
                if metrics.isDefined():
                    most = max(most, metrics.get().shuffleReadMetrics().recordsRead())
    return most


def test_giant_exact_cluster_is_decided_without_one_task_reading_all_its_copies(spark, tmp_path):
    docs = corpus_docs()
    write_annotated(tmp_path / "run", docs + giant_cluster(), parts=4)
    # Shuffle partitions of a cluster's size: AQE would otherwise coalesce these few MB into one
    # task, and 8 tasks make a task holding the whole cluster stand out.
    settings = {"spark.sql.shuffle.partitions": "8", "spark.sql.adaptive.coalescePartitions.enabled": "false"}
    saved = {key: spark.conf.get(key) for key in settings}
    group = f"giant-cluster-{tmp_path.name}"
    spark.sparkContext.setJobGroup(group, "deduped stage with a planted giant cluster")
    try:
        for key, value in settings.items():
            spark.conf.set(key, value)
        manifest = run_stage(spark, tmp_path / "run", docs)
    finally:
        for key, value in saved.items():
            spark.conf.set(key, value)
        spark.sparkContext.setLocalProperty("spark.jobGroup.id", None)
    rows = read_rows(tmp_path / "run")
    copies = [rows[f"copy-{i:06d}"] for i in range(GIANT)]
    assert {(r["cluster_id"], r["cluster_size"]) for r in copies} == {(GIANT_KEPT, GIANT)}
    assert [r["id"] for r in copies if r["reject"] is None] == [GIANT_KEPT]
    assert {r["reject"] for r in copies if r["id"] != GIANT_KEPT} == {"duplicate:exact"}
    assert manifest["dedup"]["duplicates"] == {"url": 0, "exact": GIANT - 1 + 2, "near": 4}
    expected = reference(docs, DedupedConfig())
    assert {i: {k: rows[i][k] for k in expected[i]} for i in expected} == expected
    most = most_shuffle_records_in_one_task(spark, group)
    assert 0 < most < GIANT // 4


def near_chains(chains: int = 3, length: int = 25) -> list[dict]:
    """`chains` chains of near copies of a 200-word page, each step replacing 3 words (Jaccard
    ~0.86 to the next, falling along the chain), in a random keep order: components of up to
    `length` exact groups that `attach` splits into several clusters."""
    rng = np.random.default_rng(1)
    docs = []
    for c in range(chains):
        words = [f"t{c}w{k}" for k in rng.integers(0, 3000, 200)]
        for step in range(length):
            for i in rng.choice(200, 3, replace=False):
                words[i] = f"c{c}s{step}x{i}"
            docs.append(
                {
                    "id": f"chain{c}-{step:02d}",
                    "url": f"https://chain.example/{c}/{step}",
                    "text": " ".join(words),
                    "quality": float(rng.random()),
                    "fetch_time": T0,
                }
            )
    return docs


def component_sizes(docs: list[dict], cfg: DedupedConfig) -> list[int]:
    """Documents per component, as corpus/dedup.py `cluster` finds them in one process."""
    sets: list[np.ndarray] = []
    exact, sigs = sign(
        [d["text"] for d in docs], ngram=cfg.ngram, num_perm=cfg.num_perm, seed=cfg.seed, sets=sets
    )
    labels = cluster(exact, band_keys(sigs, *cfg.lsh_params()), sets, cfg.threshold)
    return sorted(np.unique(labels, return_counts=True)[1].tolist())


@pytest.mark.slow
def test_large_near_duplicate_components_are_attached_in_rounds_as_in_one_process(
    spark, tmp_path, monkeypatch
):
    """The stage end to end with components over LARGE_COMPONENT groups: attached across tasks,
    round by round (a task given more groups of one component fails: `component_heads`), with
    the decisions of one process."""
    monkeypatch.setattr(deduped, "LARGE_COMPONENT", 8)
    chains = near_chains()
    assert max(component_sizes(chains, DedupedConfig())) > 8, "no component over the limit"
    docs = corpus_docs() + chains
    run_stage(spark, tmp_path / "run", docs)
    rows = read_rows(tmp_path / "run")
    expected = reference(docs, DedupedConfig())
    assert {i: {k: rows[i][k] for k in expected[i]} for i in expected} == expected
    kept = [r for i, r in rows.items() if i.startswith("chain") and r["reject"] is None]
    assert len(kept) > len(component_sizes(chains, DedupedConfig())), "components split into clusters"


@pytest.mark.slow
def test_components_left_over_the_limit_after_the_last_round_are_kept_without_chaining(
    spark, tmp_path, monkeypatch
):
    """The stage end to end when the rounds run out (one round, limit 8): it finishes, counts the
    groups left unattached, keeps them, and still drops no document far from its kept one."""
    monkeypatch.setattr(deduped, "LARGE_COMPONENT", 8)
    monkeypatch.setattr(deduped, "MAX_HEAD_ROUNDS", 1)
    docs = near_chains()
    manifest = run_stage(spark, tmp_path / "run", docs)
    rows = read_rows(tmp_path / "run")

    assert sorted(rows) == sorted(d["id"] for d in docs)
    assert manifest["dedup"]["unattached_groups"] > 0
    cfg = DedupedConfig()
    sets = shingle_sets(hash_batch([d["text"] for d in docs], cfg.ngram))
    ids = [d["id"] for d in docs]
    assert any(r["reject"] == "duplicate:near" for r in rows.values())
    assert far_drops([rows[i] for i in ids], ids, sets, cfg.threshold) == 0
    expected = reference(docs, cfg)
    assert sum(r["reject"] is None for r in rows.values()) > sum(
        e["reject"] is None for e in expected.values()
    )


def test_cluster_heads_in_rounds_equal_attach_in_one_task(spark, tmp_path, monkeypatch):
    """Components of 8 groups and of 5 empty sets over a limit of 3 are attached in rounds, one
    of 3 groups in one task; two empty sets are not near (0 / 0). The heads are those of
    `component_heads` on each whole component."""
    monkeypatch.setattr(deduped, "LARGE_COMPONENT", 3)
    rng = np.random.default_rng(2)
    # sliding windows: Jaccard 8/12 to the next group, 6/14 to the one after: heads every other group
    sets = {rep: list(range(2 * rep, 2 * rep + 10)) for rep in range(8)}
    sets |= {100: [1000, 1001], 101: [1000, 1001, 1002], 102: [5000], 300: [7]}
    sets |= {rep: [] for rep in range(200, 205)}
    roots = {rep: 0 for rep in range(8)} | {100: 100, 101: 100, 102: 100, 300: 300}
    roots |= {rep: 200 for rep in range(200, 205)}
    best = dict(zip(sets, rng.permutation(len(sets)).tolist(), strict=True))
    groups = spark.createDataFrame(
        [(rep, roots[rep], best[rep]) for rep in sets], "rep long, root long, best long"
    )
    shingles = spark.createDataFrame(list(sets.items()), "node long, shingles array<long>")
    got, unattached = deduped.cluster_heads(groups, shingles, 0.6, tmp_path)
    got = got.collect()
    assert unattached == 0

    expected = set()
    for root in set(roots.values()) - {300}:  # 300 alone: no heads
        members = [(best[r], r, sets[r]) for r in sets if roots[r] == root]
        expected |= set(deduped.component_heads(members, 0.6, len(members)))
    assert sorted((r["rep"], r["head"]) for r in got) == sorted(expected)
    assert len({h for _, h in expected if roots[h] == 0}) >= 3, "the large component splits"


def test_groups_a_component_still_over_the_limit_after_the_last_round_keeps_head_themselves(
    spark, tmp_path, monkeypatch
):
    """Long pages near a short page and far from one another take a round each; after
    MAX_HEAD_ROUNDS the groups left of a component over LARGE_COMPONENT each head their own
    cluster and are counted. The pair of near pages among them is then kept, which `attach`
    over the whole component would have joined."""
    monkeypatch.setattr(deduped, "LARGE_COMPONENT", 3)
    monkeypatch.setattr(deduped, "MAX_HEAD_ROUNDS", 2)
    short = list(range(10))  # Jaccard 10/15 with each long page, 10/20 between two of them
    sets = {rep: short + list(range(100 * rep, 100 * rep + 5)) for rep in range(1, 9)}
    sets |= {8: short + [700, 701, 702, 703, 799], 0: short}  # 8 near 7: 14/16
    best = {rep: rep for rep in range(1, 9)} | {0: 9}  # long pages first: each heads a cluster
    groups = spark.createDataFrame([(rep, 0, best[rep]) for rep in sets], "rep long, root long, best long")
    shingles = spark.createDataFrame(list(sets.items()), "node long, shingles array<long>")
    got, unattached = deduped.cluster_heads(groups, shingles, 0.6, tmp_path)

    assert unattached == 6  # 3 .. 8: rounds 1 and 2 headed by 1 (taking 0) and 2
    assert dict(r.asDict().values() for r in got.collect()) == {0: 1} | {rep: rep for rep in range(1, 9)}
    members = [(best[r], r, sets[r]) for r in sets]
    assert dict(deduped.component_heads(members, 0.6, len(members)))[8] == 7, "attach joins 8 to 7"

"""The shards stage on a small mixed corpus: Megatron reads it, text round-trips, output is exact."""

import json
import re
import shutil
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from mixdata import config, synthetic_docs, write_annotated

from corpus import mix
from corpus.manifest import read_json
from corpus.shards import ShardReader, open_split, read_manifest
from corpus.tokenizer import load

pytestmark = pytest.mark.spark
CFG = {
    "mixed": {"repeats": {"books": 2.5, "wiki": 0.5}},
    "tokenizer": {"vocab_size": 400},
    "shards": {"shard_tokens": 6000, "valid_fraction": 0.1},
}
EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")
IPV4 = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b")
CARD = re.compile(r"\b(?:\d[ -]?){13,19}\b")


def build(spark, run: Path, seed: int = 0) -> Path:
    from jobs import mixed, shards, tokenizer

    write_annotated(run, synthetic_docs(240))
    cfg = config(seed=seed, **CFG)
    for stage in (mixed, tokenizer, shards):
        stage.main(spark, cfg, str(run))
    return run


@pytest.fixture(scope="module")
def run_dir(spark, tmp_path_factory):
    return build(spark, tmp_path_factory.mktemp("shards"))


def mixed_rows(run: Path) -> list[dict]:
    return [
        r for p in sorted((run / "mixed" / "kept").glob("*.parquet")) for r in pq.read_table(p).to_pylist()
    ]


def decoded(run: Path, split: str) -> list[str]:
    tok = load(run / "tokenizer" / "tokenizer.json")
    out = []
    for reader in open_split(run / "shards", split, tokenizer_path=run / "tokenizer" / "tokenizer.json"):
        for i in range(len(reader)):
            ids = reader[i].tolist()
            assert ids[-1] == 0 and 0 not in ids[:-1], "one end-of-text, at the end"
            out.append(tok.decode(ids[:-1], skip_special_tokens=False))
    return out


def test_megatron_indexed_dataset_reads_exactly_our_documents(run_dir):
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    manifest = read_manifest(run_dir / "shards")
    assert len(manifest["splits"]["train"]) >= 3 and manifest["splits"]["valid"]
    for split, entries in manifest["splits"].items():
        for entry, ours in zip(entries, open_split(run_dir / "shards", split), strict=True):
            theirs = IndexedDataset(str(run_dir / "shards" / entry["name"]))
            assert len(theirs) == len(ours) == entry["documents"]
            assert theirs.sequence_lengths.tolist() == ours.lengths.tolist()
            assert theirs.document_indices.tolist() == list(range(len(ours) + 1))
            for i in range(len(ours)):
                assert theirs[i].dtype == ours[i].dtype and theirs[i].tolist() == ours[i].tolist()


def test_decoded_shards_are_the_mixed_texts_with_their_repeats(run_dir):
    rows = mixed_rows(run_dir)
    valid, train = Counter(decoded(run_dir, "valid")), Counter(decoded(run_dir, "train"))
    assert set(valid).isdisjoint(train), "a held-out document reached train"
    expected = Counter()
    for r in rows:
        expected[r["text"]] = 1 if r["text"] in valid else r["repeats"]
    assert valid + train == expected
    assert any(r["repeats"] == 3 and train[r["text"]] == 3 for r in rows), "books copies are expanded"


def test_no_pii_pattern_survives_and_placeholders_are_single_tokens(run_dir):
    texts = decoded(run_dir, "train") + decoded(run_dir, "valid")
    assert not any(EMAIL.search(t) or IPV4.search(t) or CARD.search(t) for t in texts)
    tok = load(run_dir / "tokenizer" / "tokenizer.json")
    placeholder_ids = {tok.token_to_id(p) for p in ("<EMAIL>", "<PHONE>", "<IP>")}
    ids = Counter(
        i for r in open_split(run_dir / "shards", "train") for d in range(len(r)) for i in r[d].tolist()
    )
    assert all(ids[p] > 0 for p in placeholder_ids)
    assert sum(ids[p] for p in placeholder_ids) == sum(
        t.count("<EMAIL>") + t.count("<PHONE>") + t.count("<IP>") for t in decoded(run_dir, "train")
    )


def test_train_order_is_the_sort_of_copies_by_shuffle_key(run_dir):
    by_text = {r["text"]: r for r in mixed_rows(run_dir)}
    held_out = set(decoded(run_dir, "valid"))
    copies = sorted(
        (mix.key(0, "shuffle", r["id"], c), r["text"])
        for r in by_text.values()
        if r["text"] not in held_out
        for c in range(r["repeats"])
    )
    assert decoded(run_dir, "train") == [text for _, text in copies]


def test_validation_split_is_by_hash_of_the_id(run_dir):
    limit = read_manifest(run_dir / "shards")["valid_key_limit"]
    assert limit == mix.threshold(0.1)
    expected = {r["text"] for r in mixed_rows(run_dir) if mix.key(0, "valid", r["id"]) < limit}
    assert set(decoded(run_dir, "valid")) == expected


def test_manifest_totals_and_buckets_match_the_shards(run_dir):
    manifest = read_manifest(run_dir / "shards")
    readers = {s: open_split(run_dir / "shards", s) for s in ("train", "valid")}
    for split, total in manifest["totals"].items():
        assert total["tokens"] == sum(r.num_tokens for r in readers[split])
        assert total["shards"] == -(-total["tokens"] // 6000)
    buckets = manifest["buckets"]
    assert sum(b["train"]["tokens"] for b in buckets.values()) == manifest["totals"]["train"]["tokens"]
    assert buckets["web"]["tokens_before_exact"] and not buckets["wiki"]["tokens_before_exact"]
    assert buckets["web"]["epochs"] == 1.0 and 2.2 < buckets["books"]["epochs"] < 2.8
    assert manifest["tokenizer"]["sha256"] == read_json(run_dir / "tokenizer" / "manifest.json")["sha256"]
    assert manifest["dtype"] == "uint16" and manifest["eot_id"] == 0


def test_shards_view_lists_every_shard(run_dir):
    from jobs.stats import connect

    totals = dict(connect(run_dir).execute("SELECT split, sum(tokens) FROM shards GROUP BY 1").fetchall())
    assert totals == {s: t["tokens"] for s, t in read_manifest(run_dir / "shards")["totals"].items()}


def test_same_inputs_and_seed_give_byte_identical_output(spark, run_dir, tmp_path):
    again = build(spark, tmp_path / "again")
    files = sorted(p.relative_to(run_dir) for p in (run_dir / "shards").rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in (again / "shards").rglob("*") if p.is_file())
    differ = [
        f for f in files if f.name != "timing.json" and (run_dir / f).read_bytes() != (again / f).read_bytes()
    ]
    assert differ == [] and Path("shards/manifest.json") in files


def test_another_seed_shuffles_differently(spark, run_dir, tmp_path):
    other = build(spark, tmp_path / "other", seed=1)
    assert decoded(other, "train") != decoded(run_dir, "train")


def test_rerun_is_skipped(spark, run_dir):
    from jobs import shards

    before = {p: p.stat().st_mtime_ns for p in (run_dir / "shards").iterdir()}
    shards.main(spark, config(**CFG), str(run_dir))
    assert {p: p.stat().st_mtime_ns for p in (run_dir / "shards").iterdir()} == before


def test_interrupted_run_rewrites_only_the_missing_shard(spark, run_dir, tmp_path):
    from jobs import shards

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    manifest_text = (run / "shards" / "manifest.json").read_text()
    # what an attempt killed before its last shard leaves: the partial directory without shard 1
    partial = run / ".shards.partial"
    (run / "shards").rename(partial)
    (partial / "manifest.json").unlink()
    manifest = read_json(run_dir / "shards" / "manifest.json")
    key = {k: manifest[k] for k in ("config_hash", "input_fingerprint")}
    (partial / "_attempt.json").write_text(json.dumps(key))
    for suffix in (".bin", ".idx"):
        (partial / f"train_00001{suffix}").unlink()
    (partial / "_parts" / "part-00001.json").unlink()
    kept = {p.name: p.stat().st_mtime_ns for p in partial.glob("train_0000[02]*")}
    shards.main(spark, config(**CFG), str(run))
    assert (run / "shards" / "manifest.json").read_text() == manifest_text
    assert {p.name: p.stat().st_mtime_ns for p in (run / "shards").glob("train_0000[02]*")} == kept
    ShardReader.open(run / "shards" / "train_00001", manifest["splits"]["train"][1])


def test_tiny_corpus_holds_out_the_document_with_the_smallest_key(spark, tmp_path):
    from jobs import mixed, shards, tokenizer

    write_annotated(tmp_path, synthetic_docs(12))
    cfg = config(tokenizer={"vocab_size": 300}, shards={"valid_fraction": 0.001})
    for stage in (mixed, tokenizer, shards):
        stage.main(spark, cfg, str(tmp_path))
    rows = mixed_rows(tmp_path)
    first = min(rows, key=lambda r: mix.key(0, "valid", r["id"]))
    assert mix.key(0, "valid", first["id"]) >= mix.threshold(0.001), "the fraction alone selects none"
    assert decoded(tmp_path, "valid") == [first["text"]] and len(decoded(tmp_path, "train")) == 11


def test_key_ranges_that_draw_no_copy_become_empty_shards(spark, tmp_path):
    from jobs import mixed, shards, tokenizer

    write_annotated(tmp_path, synthetic_docs(3))
    cfg = config(tokenizer={"vocab_size": 300}, shards={"valid_fraction": 0.0, "shard_tokens": 10})
    for stage in (mixed, tokenizer, shards):
        stage.main(spark, cfg, str(tmp_path))
    readers = open_split(tmp_path / "shards", "train")
    assert len(readers) > 3 and sum(len(r) for r in readers) == 3
    assert any(len(r) == 0 for r in readers)


@pytest.mark.parametrize("n", [1, 5, 37])
def test_routes_send_each_shard_to_its_own_partition(spark, n):
    from pyspark.sql import functions as F

    from jobs.shards import routes

    values = spark.createDataFrame([(g, r) for g, r in enumerate(routes(spark, n))], "shard int, route long")
    placed = values.repartition(n, "route").select("shard", F.spark_partition_id().alias("part")).collect()
    assert sorted((r["shard"], r["part"]) for r in placed) == [(g, g) for g in range(n)]


def test_sampled_estimate_neither_persists_nor_collects_the_corpus(spark, run_dir, tmp_path, monkeypatch):
    """A sample of about a fifth of the text sizes the shards; nothing is persisted, and the
    driver receives a row per bucket and split or per shard, never one per document."""
    from jobs import shards

    DataFrame = type(spark.range(1))  # the class running here (pyspark.sql.classic.dataframe's)

    run = tmp_path / "run"
    for stage in ("mixed", "tokenizer"):
        shutil.copytree(run_dir / stage, run / stage)
    collected = []
    collect = DataFrame.collect
    monkeypatch.setattr(DataFrame, "collect", lambda df: collected.append(collect(df)) or collected[-1])
    for name in ("persist", "cache", "checkpoint", "localCheckpoint"):
        monkeypatch.setattr(DataFrame, name, lambda *a, **k: pytest.fail("the shards stage persisted rows"))
    monkeypatch.setattr(shards, "ESTIMATE_SAMPLE_BYTES", 20_000)
    manifest = shards.main(spark, config(**CFG), str(run))

    assert 0.05 < manifest["tokens_estimated"]["sample_probability"] < 0.5
    assert max(map(len, collected)) <= max(
        6, len(manifest["splits"]["train"]) + len(manifest["splits"]["valid"])
    )
    expected = read_manifest(run_dir / "shards")
    for split, total in manifest["totals"].items():
        assert total["tokens"] == expected["totals"][split]["tokens"]
        assert abs(manifest["tokens_estimated"][split] / total["tokens"] - 1) < 0.1
    assert decoded(run, "train") == decoded(run_dir, "train")  # the same order, whatever the shard count

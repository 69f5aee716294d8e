"""Incremental dedup: `deduped.against` rejects what earlier runs kept as `duplicate:previous`."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pydantic
import pytest

from corpus.dedup import cluster, keep_decisions
from corpus.manifest import read_json, write_json_atomic
from corpus.minhash import band_keys, sign
from corpus.previous import earlier_keys, match_params
from corpus.schema import to_table
from jobs import deduped
from jobs.config import DedupedConfig, PipelineConfig

T0 = datetime(2025, 1, 1, tzinfo=UTC)
RNG = np.random.default_rng(7)


def words(n: int) -> list[str]:
    return [f"w{k}" for k in RNG.integers(0, 5000, n)]


def doc(name: str, text: list[str] | str, url: str, hours: int = 0, quality: float = 0.5) -> dict:
    text = text if isinstance(text, str) else " ".join(text)
    return {
        "id": name,
        "url": url,
        "text": text,
        "quality": quality,
        "fetch_time": T0 + timedelta(hours=hours),
    }


def swap(text: list[str], positions: tuple[int, ...], tag: str) -> list[str]:
    return [f"{tag}{i}" if i in positions else w for i, w in enumerate(text)]


def crawls() -> tuple[list[dict], list[dict]]:
    """Crawl A, and the new documents of crawl B (which re-reads all of A)."""
    page, near_page, base = words(150), words(200), words(200)
    a = [  # a-kept, a-exact and a-near are one cluster in A
        doc("a-kept", page, "https://a.org/page", quality=0.9),
        doc("a-near", swap(page, (40,), "n"), "https://a.org/near", quality=0.1),  # near a-kept
        doc("a-exact", page, "https://mirror.org/page", quality=0.2),  # exact copy of a-kept
        doc("a-fetch-new", words(100), "https://a.org/news", hours=48),
        doc("a-fetch-old", words(100), "https://a.org/news/", hours=1),  # older fetch: duplicate:url
        doc("a-base", base, "https://a.org/base"),
        doc("a-near-page", near_page, "https://a.org/other"),
        *[doc(f"a-single-{i}", words(80), f"https://a.org/s{i}") for i in range(4)],
    ]
    step = swap(base, (20, 50, 80), "mid")  # Jaccard ~0.86 with a-base; `chained` ~0.73
    new = [
        doc("b-exact", ", ".join(page).upper(), "https://b.org/copy"),  # restyled copy of a-kept
        doc("b-copy-of-a-near", a[1]["text"], "https://b.org/near-copy"),  # A folded a-near into a-kept
        doc("b-url", words(90), "HTTPS://A.ORG/news#top"),  # a URL A holds, another text
        doc("b-near", swap(near_page, (100,), "x"), "https://b.org/near"),
        doc("b-step", step, "https://b.org/step", quality=0.9),  # near a-base: previous
        doc("b-chained", swap(step, (120, 150, 180), "end"), "https://b.org/chained"),  # near b-step only
        doc("b-twin-1", (twin := words(120)), "https://b.org/twin1", quality=0.8),
        doc("b-twin-2", twin, "https://b.org/twin2", quality=0.3),
        *[doc(f"b-single-{i}", words(80), f"https://b.org/s{i}") for i in range(3)],
    ]
    return a, new


def write_annotated(run_dir: Path, docs: list[dict], parts: int = 2) -> None:
    kept = run_dir / "annotated" / "kept"
    kept.mkdir(parents=True)
    for p in range(parts):
        pq.write_table(to_table([dict(d) for d in docs[p::parts]]), kept / f"part-{p:05d}.parquet")
    write_json_atomic(run_dir / "annotated" / "manifest.json", {"output_fingerprint": f"test-{len(docs)}"})


def read_rows(run_dir: Path, splits: tuple[str, ...] = ("kept", "rejected")) -> dict[str, dict]:
    rows = {}
    for split in splits:
        for path in sorted((run_dir / "deduped" / split).glob("*.parquet")):
            rows.update({r["id"]: r for r in pq.read_table(path).to_pylist()})
    return rows


def run_deduped(spark, run_dir: Path, docs: list[dict] | None = None, **dcfg) -> dict:
    if docs is not None:
        write_annotated(run_dir, docs)
    return deduped.main(spark, PipelineConfig(deduped=DedupedConfig(**dcfg)), str(run_dir))


def snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(directory.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def runs(spark, tmp_path_factory):
    a_docs, new = crawls()
    root = tmp_path_factory.mktemp("previous")
    a_manifest = run_deduped(spark, root / "a", a_docs)
    before = snapshot(root / "a")
    b_manifest = run_deduped(spark, root / "b", a_docs + new, against=[str(root / "a")])
    return root, a_docs, new, a_manifest, b_manifest, before


@pytest.mark.spark
def test_every_document_of_the_earlier_run_is_a_previous_duplicate_of_what_it_kept(runs):
    root, a_docs, _, _, _, _ = runs
    a_rows, b_rows = read_rows(root / "a"), read_rows(root / "b")
    for d in a_docs:
        row = b_rows[d["id"]]
        assert row["reject"] == "duplicate:previous", d["id"]
        # named: the earlier run and the document it kept in this one's place
        assert row["signals"]["duplicate_previous_run"] == str(root / "a")
        assert row["cluster_id"] == row["signals"]["duplicate_previous_id"] == a_rows[d["id"]]["cluster_id"]
    match = {d["id"]: b_rows[d["id"]]["signals"]["duplicate_previous_match"] for d in a_docs}
    assert match["a-fetch-old"] == "url" and a_rows["a-fetch-old"]["reject"] == "duplicate:url"
    assert match["a-exact"] == match["a-near"] == "url"  # url first, as in a run: their URLs are in A's keys


@pytest.mark.spark
def test_new_documents_matching_earlier_ones_by_url_exact_or_near_are_previous(runs):
    root, *_ = runs
    b_rows = read_rows(root / "b")
    found = {
        name: (b_rows[name]["signals"]["duplicate_previous_match"], b_rows[name]["cluster_id"])
        for name in ("b-exact", "b-copy-of-a-near", "b-url", "b-near", "b-step")
    }
    assert found == {
        "b-exact": ("exact", "a-kept"),
        "b-copy-of-a-near": ("exact", "a-kept"),  # a-near's own hash is in A's keys
        "b-url": ("url", "a-fetch-new"),
        "b-near": ("near", "a-near-page"),
        "b-step": ("near", "a-base"),
    }


@pytest.mark.spark
def test_the_other_new_documents_are_deduped_as_a_fresh_run_on_them(runs):
    """`b-chained` is near only `b-step`, a previous duplicate: kept, as a run without it would."""
    root, _, new, _, _, _ = runs
    b_rows = read_rows(root / "b")
    rest = [d for d in new if b_rows[d["id"]]["reject"] != "duplicate:previous"]
    cfg = DedupedConfig()
    texts = [d["text"] for d in rest]
    sets: list[np.ndarray] = []
    exact, sigs = sign(texts, ngram=cfg.ngram, num_perm=cfg.num_perm, seed=cfg.seed, sets=sets)
    labels = cluster(exact, band_keys(sigs, *cfg.lsh_params()), sets, cfg.threshold)
    expected = keep_decisions(rest, labels, exact, cfg.keep_order, sets, cfg.threshold)
    got = [{k: b_rows[d["id"]][k] for k in ("cluster_id", "cluster_size", "reject")} for d in rest]
    assert got == expected
    assert b_rows["b-chained"]["reject"] is None and b_rows["b-twin-2"]["reject"] == "duplicate:exact"


@pytest.mark.spark
def test_earlier_run_is_read_never_written(runs):
    root, *_, before = runs
    assert snapshot(root / "a") == before


@pytest.mark.spark
def test_keys_hold_what_the_run_kept_and_the_manifest_lists_them(runs):
    root, a_docs, _, a_manifest, b_manifest, _ = runs
    keys = pq.read_table(sorted((root / "b" / "deduped" / "keys").glob("*.parquet"))).to_pylist()
    b_rows = read_rows(root / "b")
    assert {k["id"] for k in keys if k["bands"] is not None} == set(read_rows(root / "b", ("kept",)))
    assert all(b_rows[k["id"]]["reject"] != "duplicate:previous" for k in keys)  # only this run's own
    assert b_manifest["keys"]["rows"] == len(keys) == sum(f["rows"] for f in b_manifest["keys"]["files"])
    assert b_manifest["keys"]["params"] == match_params(b_manifest["dedup"]["params"])
    assert b_manifest["dedup"]["previous"]["against"][0]["run"] == str(root / "a")
    assert b_manifest["rejected"]["duplicate:previous"] == len(a_docs) + 5
    assert b_manifest["dedup"]["duplicates"]["previous"] == len(a_docs) + 5
    assert a_manifest["keys"]["rows"] == 10  # 11 documents, the older fetch of a URL not among them


@pytest.mark.spark
def test_rerun_with_the_same_earlier_runs_is_skipped(runs, spark):
    root, _, _, _, b_manifest, _ = runs
    assert run_deduped(spark, root / "b", against=[str(root / "a")]) == b_manifest


@pytest.mark.slow  # a third stage run (~15 s unloaded)
@pytest.mark.spark
def test_other_earlier_runs_run_the_stage_again(runs, spark):
    root, _, _, _, b_manifest, _ = runs
    alone = run_deduped(spark, root / "b")
    assert alone["config_hash"] != b_manifest["config_hash"] and "previous" not in alone["dedup"]
    assert alone["rejected"].get("duplicate:previous") is None


def test_against_an_unfinished_run_is_refused_naming_it(tmp_path):
    (tmp_path / "a" / ".deduped.partial").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"deduped.against: .*/a: no finished deduped stage") as err:
        earlier_keys(
            str(tmp_path / "a"), str(tmp_path / "b"), match_params(deduped.dedup_params(DedupedConfig()))
        )
    assert "\n" not in str(err.value)


def test_against_keys_of_other_dedup_parameters_is_refused_naming_the_difference(tmp_path):
    theirs = match_params(deduped.dedup_params(DedupedConfig(num_perm=256)))
    (tmp_path / "a" / "deduped").mkdir(parents=True)
    write_json_atomic(tmp_path / "a" / "deduped" / "manifest.json", {"keys": {"params": theirs, "files": []}})
    ours = match_params(deduped.dedup_params(DedupedConfig()))
    with pytest.raises(ValueError, match=r".*/a: its keys were made .*num_perm=256 there, 208 here"):
        earlier_keys(str(tmp_path / "a"), str(tmp_path / "b"), ours)
    # the keep order changes what is kept, not what matches: accepted
    other_order = match_params(deduped.dedup_params(DedupedConfig(num_perm=256, keep_order=["id"])))
    assert earlier_keys(str(tmp_path / "a"), str(tmp_path / "b"), other_order)["params"] == theirs


def test_run_against_an_unfinished_run_is_refused_before_anything_is_written(capsys, tmp_path):
    from jobs.cli import main

    (tmp_path / "a").mkdir()
    (tmp_path / "b.yaml").write_text(f"deduped:\n  against: [{tmp_path / 'a'}]\n")
    warc = Path(__file__).resolve().parent.parent / "data" / "sample" / "commoncrawl-2024-22.warc.gz"
    argv = ["run", str(tmp_path / "b.yaml"), "--input", str(warc), "--out", str(tmp_path / "b")]
    assert main(argv) == 2
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and f"deduped.against: {tmp_path / 'a'}: no finished deduped stage" in lines[0]
    assert not (tmp_path / "b").exists()


def test_against_itself_is_refused(tmp_path):
    with pytest.raises(ValueError, match="is this run itself"):
        earlier_keys(str(tmp_path / "b"), str(tmp_path / "b" / "."), {})


def test_against_config_rejects_repeated_and_empty_runs():
    assert DedupedConfig(against=["runs/a", "runs/b"]).against == ("runs/a", "runs/b")
    with pytest.raises(pydantic.ValidationError, match="runs/a listed twice"):
        DedupedConfig(against=["runs/a", "runs/a"])
    with pytest.raises(pydantic.ValidationError, match="an empty run path"):
        DedupedConfig(against=[""])
    with pytest.raises(pydantic.ValidationError, match="against"):
        DedupedConfig(against="runs/a")  # one string is not a list of runs


def test_keys_hold_kept_documents_whole_and_folded_ones_by_url_and_hash():
    import pyarrow as pa

    from corpus.previous import keys_table

    names = ["kept", "exact", "near", "older-fetch", "previous"]
    signatures = pa.table(
        {
            "node": list(range(5)),
            "id": names,
            "url_key": [f"https://x.org/{n}" for n in names],
            "exact_hash": ["h0", "h0", "h2", "h3", "h4"],
            "bands": [[i, i] for i in range(5)],
            "shingles": [[i] for i in range(5)],
        }
    )
    decisions = {
        0: ("kept", 3, None),
        1: ("kept", 3, "duplicate:exact"),
        2: ("kept", 3, "duplicate:near"),
        3: ("kept", 2, "duplicate:url"),
    }
    rows = keys_table(signatures, decisions, previous={4}).to_pylist()
    assert [(r["node"], r["id"], r["exact_hash"], r["bands"], r["shingles"]) for r in rows] == [
        (0, "kept", "h0", [0, 0], [0]),
        (1, "kept", "h0", None, None),
        (2, "kept", "h2", None, None),
    ]
    assert [r["url_key"] for r in rows] == ["https://x.org/kept", "https://x.org/exact", "https://x.org/near"]


def test_previous_signals_are_in_the_document_schema():
    row = to_table([{"id": "x", "signals": {"duplicate_previous_run": "r", "duplicate_previous_id": "y"}}])
    assert row.column("signals").to_pylist()[0]["duplicate_previous_id"] == "y"


@pytest.mark.slow
@pytest.mark.spark
def test_crawl_sample_run_against_an_earlier_run_keeps_only_what_is_new(spark, shared_data, tmp_path):
    """Issue 26 item 7: A on crawl-sample files 0-1; B on files 0-3 against A; C, fresh, on 2-3.

    B rejects every document A's dedup saw as duplicate:previous, and keeps exactly what C keeps
    but for C's documents that duplicate one of A's (about 4 minutes on 2 cores)."""
    from jobs.run import run

    crawl = [str(p) for p in sorted((shared_data / "crawl-sample").glob("*.warc.gz"))]
    steps = ("url", "language", "gopher_repetition", "gopher_quality", "c4", "fineweb")
    filters_off = "annotated:\n" + "".join(f"  {s}: {{enabled: false}}\n" for s in steps)
    (tmp_path / "a.yaml").write_text(filters_off)
    (tmp_path / "b.yaml").write_text(filters_off + f"deduped:\n  against: [{tmp_path / 'a'}]\n")
    stages = "documents,annotated,deduped"
    run(str(tmp_path / "a.yaml"), crawl[:2], str(tmp_path / "a"), stages=stages)
    before = snapshot(tmp_path / "a")
    b_manifest = run(str(tmp_path / "b.yaml"), crawl, str(tmp_path / "b"), stages=stages)["deduped"]
    run(str(tmp_path / "a.yaml"), crawl[2:], str(tmp_path / "c"), stages=stages)
    assert snapshot(tmp_path / "a") == before

    a, b, c = (read_rows(tmp_path / name) for name in "abc")
    assert a.keys() <= b.keys() and c.keys() <= b.keys() and len(a) > 500
    assert {b[i]["reject"] for i in a} == {"duplicate:previous"}
    previous = {i for i, row in b.items() if row["reject"] == "duplicate:previous"}
    kept_b = {i for i, row in b.items() if row["reject"] is None}
    kept_c = {i for i, row in c.items() if row["reject"] is None}
    assert kept_b == kept_c - previous
    assert kept_c & previous  # files 2-3 do repeat pages of files 0-1: the test has something to find
    # the figures README quotes (run with -s)
    a_manifest = read_json(tmp_path / "a" / "deduped" / "manifest.json")
    print(f"A: {a_manifest['rows']}, keys {a_manifest['keys']['rows']} rows {a_manifest['keys']['files']}")
    matches = b_manifest["dedup"]["previous"]["matches"]
    print(f"B: {b_manifest['rows']} {matches}, previous of files 2-3: {previous - a.keys()}")
    print(f"B deduped seconds: {b_manifest['dedup']['seconds']} of {b_manifest['wall_time_s']}")

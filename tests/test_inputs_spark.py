"""Bad input files and documents as input, through `refinery run`: a folder of WARCs holding empty
and non-WARC files runs to the end and lists each of them, and JSONL documents, alone or mixed
with WARCs, go through the annotated and deduped stages (corpus/inputs.py)."""

import gzip
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console
from test_warc_split import crawl

from corpus.faults import PNG_SIGNATURE
from corpus.manifest import read_json
from jobs.cli import main
from jobs.stats import connect, print_stats

REPO = Path(__file__).resolve().parent.parent
WARC = REPO / "data" / "sample" / "commoncrawl-2020-34.warc.gz"
POSITIVES = REPO / "data" / "quality" / "positives.jsonl.gz"
# The run's own quality models need more documents than these; exact dedup is enough for them.
CONFIG = "annotated:\n  quality: {enabled: false}\ndeduped:\n  near: false\n"
# The sample WARC's pages are mostly not English: with the text filters off they reach dedup too.
FILTERS = ("language", "gopher_repetition", "gopher_quality", "c4", "fineweb")
NO_FILTERS = "annotated:\n" + "".join(f"  {s}: {{enabled: false}}\n" for s in (*FILTERS, "quality"))
NO_FILTERS += "deduped:\n  near: false\n"
STAGES = "documents,annotated,deduped"
BAD = {
    "empty.warc.gz": (b"", "empty file (0 bytes)"),
    "page.warc": (b"<!doctype html><html><body>saved page</body></html>", "not a WARC file"),
    "log.warc.gz": (gzip.compress(b"ts,url\n1,https://example.com/\n" * 50, mtime=0), "not a WARC record"),
    "image.warc.gz": (PNG_SIGNATURE + bytes(200), "not a WARC file"),
}
pytestmark = pytest.mark.spark


def write_docs(folder: Path) -> Path:
    """Six prose documents from the bundled positives, a copy of the first under another id,
    a line that is not JSON and one without text."""
    with gzip.open(POSITIVES, "rt") as f:
        texts = [json.loads(line)["text"] for _, line in zip(range(6), f, strict=False)]
    lines = [json.dumps({"id": f"doc-{i}", "text": t, "group": "positives"}) for i, t in enumerate(texts)]
    lines += [json.dumps({"id": "copy-of-0", "text": texts[0]}), "{oops", json.dumps({"title": "no text"})]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "docs.jsonl").write_text("\n".join(lines) + "\n")
    return folder / "docs.jsonl"


def refinery_run(tmp: Path, inputs: list[str], out: Path, config_text: str = CONFIG) -> int:
    config = tmp / "config.yaml"
    config.write_text(config_text)
    argv = ["--quiet", "run", str(config), "--out", str(out), "--stages", STAGES]
    return main(argv + [arg for path in inputs for arg in ("--input", path)])


@pytest.fixture(scope="module")
def mixed_run(spark, tmp_path_factory) -> tuple[Path, int]:
    """One WARC and four files that are no WARC in a crawl folder, plus JSONL and Parquet documents."""
    tmp = tmp_path_factory.mktemp("mixed")
    crawl = tmp / "crawl"
    crawl.mkdir()
    shutil.copy(WARC, crawl / WARC.name)
    for name, (content, _) in BAD.items():
        (crawl / name).write_bytes(content)
    docs = write_docs(tmp / "docs").parent
    table = {
        "id": ["pq-1", "pq-2"],
        "text": ["A Parquet document.", None],
        "url": ["https://www.example.org/p", None],
    }
    pq.write_table(pa.table({**table, "score": [0.5, 0.25]}), docs / "more.parquet")
    out = tmp / "run"
    return out, refinery_run(tmp, [str(crawl / "*"), str(docs / "*")], out, NO_FILTERS)


def test_bad_files_are_listed_and_the_run_goes_on(mixed_run):
    out, status = mixed_run
    assert status == 0
    manifest = read_json(out / "documents" / "manifest.json")
    crawl = out.parent / "crawl"
    assert sorted(b["file"] for b in manifest["bad_files"]) == sorted(str(crawl / name) for name in BAD)
    for bad in manifest["bad_files"]:
        assert BAD[Path(bad["file"]).name][1] in bad["reason"]
    assert manifest["counts"]["input_files.bad"] == len(BAD) and manifest["inputs"] == len(BAD) + 3
    assert manifest["counts"]["records"] == 50  # the good WARC read in full beside them


def test_stats_lists_every_bad_file(mixed_run, capsys):
    out, _ = mixed_run
    print_stats(out, Console(width=400, force_terminal=False))
    printed = capsys.readouterr().out
    assert f"Bad input files, skipped ({len(BAD)})" in printed
    assert all(str(out.parent / "crawl" / name) in printed for name in BAD)
    assert "bad input files, skipped" in printed and "JSONL/Parquet rows" in printed


def test_warc_jsonl_and_parquet_documents_go_through_dedup_together(mixed_run):
    out, _ = mixed_run
    con = connect(out)
    documents = dict(con.execute("SELECT extractor, count(*) FROM documents GROUP BY 1").fetchall())
    assert documents == {"trafilatura": 16, "none": 11}
    rejected = dict(
        con.execute("SELECT reject, count(*) FROM documents WHERE extractor = 'none' GROUP BY 1").fetchall()
    )
    assert rejected == {None: 8, "input:bad_json": 1, "input:no_text": 2}
    deduped = con.execute("SELECT id, reject FROM deduped WHERE extractor = 'none' ORDER BY id").fetchall()
    # The copy and doc-0 hold one text: one of the pair is kept (the smaller id), the other is a duplicate.
    assert ("copy-of-0", None) in deduped and ("doc-0", "duplicate:exact") in deduped
    # every WARC page reaches deduped: the one precision mode empties (096355.com) has the default
    # mode's text (corpus/extract.py's fallback)
    assert con.execute("SELECT count(*) FROM deduped WHERE extractor = 'trafilatura'").fetchone()[0] == 16
    metadata = con.execute("SELECT DISTINCT metadata FROM annotated WHERE id LIKE 'doc-%'").fetchall()
    assert metadata == [('{"group": "positives"}',)]
    parquet = con.execute("SELECT domain, metadata, reject FROM deduped WHERE id = 'pq-1'").fetchall()
    assert parquet == [("example.org", '{"score": 0.5}', None)]


def test_jsonl_documents_alone_run_through_annotated_and_deduped(spark, tmp_path):
    docs = write_docs(tmp_path / "docs")
    out = tmp_path / "run"
    assert refinery_run(tmp_path, [str(docs)], out) == 0
    manifests = {s: read_json(out / s / "manifest.json") for s in STAGES.split(",")}
    assert manifests["documents"]["rows"] == {"in": 9, "kept": 7, "rejected": 2}
    assert manifests["documents"]["bad_files"] == [] and manifests["documents"]["counts"]["input_rows"] == 9
    assert manifests["annotated"]["rows"]["in"] == 7
    assert manifests["deduped"]["rejected"].get("duplicate:exact") == 1


def test_same_documents_input_gives_byte_identical_parts(spark, tmp_path):
    from jobs import documents
    from jobs.config import load_config

    docs = write_docs(tmp_path / "docs")
    runs = [tmp_path / "a", tmp_path / "b"]
    for out in runs:
        documents.main(spark, load_config(), [str(docs)], str(out), "docs")
    parts = [
        {p.relative_to(out): p.read_bytes() for p in sorted(out.glob("documents/*/*.parquet"))}
        for out in runs
    ]
    assert parts[0] == parts[1] and len(parts[0]) == 2


def test_large_jsonl_parquet_and_warc_files_are_read_by_several_tasks_as_by_one(spark, tmp_path):
    from jobs import documents
    from jobs.config import load_config

    docs = write_docs(tmp_path / "docs")
    texts = [f"Row {i} of a Parquet file. " * (i % 5 + 1) for i in range(60)]
    pq.write_table(pa.table({"text": texts}), tmp_path / "docs" / "rows.parquet", row_group_size=8)
    warc = tmp_path / "docs" / "crawl.warc.gz"
    warc.write_bytes(crawl(pages=6, padding=600_000))  # 6 HTML pages and 3.6 MB of images: 3 pieces
    one_stream = tmp_path / "docs" / "one-stream.warc.gz"  # 2.1 MB, but no member per record: whole
    one_stream.write_bytes(gzip.compress(crawl(pages=3, gzipped=False, padding=700_000), mtime=0))
    inputs = [str(docs), str(tmp_path / "docs" / "rows.parquet"), str(warc), str(one_stream)]

    def rows(target_mb: float) -> tuple[list[dict], dict]:
        cfg = load_config(overrides={"spark": {"task_target_mb": target_mb}})
        out = tmp_path / f"run-{target_mb}"
        manifest = documents.main(spark, cfg, inputs, str(out), "docs")
        parts = sorted(out.glob("documents/*/*.parquet"), key=lambda p: (p.name, p.parent.name))
        return [r for p in parts for r in pq.read_table(p).to_pylist()], manifest

    (whole, one), (pieces, many) = rows(128.0), rows(0.001)  # 0.001 MiB: ~1 KB a piece
    assert len(one["parts"]) == 4 and len(many["parts"]) > 12
    assert sum(p["input"] == str(warc) for p in many["parts"]) == 3  # of at least 1 MiB each
    assert sum(p["input"] == str(one_stream) for p in many["parts"]) == 1
    assert pieces == whole and len(whole) == 9 + 60 + 6 + 3
    assert many["counts"] == one["counts"] and many["errors"] == one["errors"] == []

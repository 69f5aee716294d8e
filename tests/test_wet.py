"""Common Crawl WET files: `conversion` records are documents with the crawl's own text
(`extractor: wet`), no HTML extraction, through every curation stage.

The WET file is made here with warcio from the first pages of data/sample/crawl-00003.warc.gz
(a crawl-sample file): each page's trafilatura text becomes a conversion record that refers to
its response record, as Common Crawl's WET files do."""

import uuid
from collections import Counter
from io import BytesIO
from itertools import islice
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from warcio.warcwriter import WARCWriter

from corpus.documents import WET, document_id, warc_documents
from corpus.extract import Extractor
from corpus.manifest import read_json
from jobs.cli import main

REPO = Path(__file__).resolve().parent.parent
CRAWL = REPO / "data" / "sample" / "crawl-00003.warc.gz"
PAGES = 60
# The run's own quality model needs more documents; a small vocabulary for a small corpus.
CONFIG = "annotated:\n  quality: {enabled: false}\ntokenizer:\n  vocab_size: 400\n"
CURATION = "documents,annotated,deduped,mixed,decontam,tokenizer,shards"


def wet_record(writer: WARCWriter, page: dict, text: str):
    """A conversion record as Common Crawl writes it, with an id derived from the page's own."""
    headers = {
        "WARC-Target-URI": page["url"],
        "WARC-Date": page["fetch_time"].strftime("%Y-%m-%dT%H:%M:%SZ"),
        "WARC-Record-ID": f"<urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, page['warc_record_id'])}>",
        "WARC-Refers-To": page["warc_record_id"],
        "Content-Type": "text/plain",
    }
    body = text.encode("utf-8")
    return writer.create_warc_record(
        page["url"], "conversion", payload=BytesIO(body), length=len(body), warc_headers_dict=headers
    )


@pytest.fixture(scope="module")
def wet(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """CC-MAIN-style `*.warc.wet.gz` of the first PAGES kept pages (one of them blank); its texts by URL."""
    counts: Counter = Counter()
    rows = warc_documents(str(CRAWL), source="s", extractor=Extractor(), counts=counts, errors=[])
    pages = list(islice((r for r in rows if r["reject"] is None), PAGES))
    texts = {p["url"]: p["text"] for p in pages}
    texts[pages[-1]["url"]] = "  \n"  # a page CC found no text in
    path = tmp_path_factory.mktemp("wet") / "sample.warc.wet.gz"
    with open(path, "wb") as f:
        writer = WARCWriter(f, gzip=True)
        writer.write_record(writer.create_warcinfo_record(path.name, {"software": "refinery tests"}))
        for page in pages:
            writer.write_record(wet_record(writer, page, texts[page["url"]]))
    return path, texts


def test_wet_conversion_records_are_documents_with_the_crawls_text(wet):
    path, texts = wet
    counts: Counter = Counter()
    rows = list(warc_documents(str(path), source="s", extractor=Extractor(), counts=counts, errors=[]))
    assert counts["records.conversion"] == PAGES and counts["records.warcinfo"] == 1
    assert counts["documents"] == PAGES and counts["errors"] == 0
    assert {r["extractor"] for r in rows} == {WET}
    kept = {r["url"]: r["text"] for r in rows if r["reject"] is None}
    assert kept == {url: text.strip() for url, text in texts.items() if text.strip()}
    assert [r["reject"] for r in rows if r["reject"]] == ["extract:empty"]
    assert all(r["id"] == document_id(r["warc_record_id"], None, None) for r in rows)


@pytest.mark.spark
@pytest.mark.slow  # 41 s at load 9 on 2 cores: seven stages' Spark jobs
def test_wet_file_runs_through_every_curation_stage(spark, wet, tmp_path):
    path, texts = wet
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG)
    out = tmp_path / "run"
    argv = ["--quiet", "run", str(config), "--input", str(path), "--out", str(out), "--stages", CURATION]
    assert main(argv) == 0
    for stage in CURATION.split(","):
        assert (out / stage / "manifest.json").is_file(), stage
    assert read_json(out / "documents" / "manifest.json")["rows"] == {
        "in": PAGES,
        "kept": PAGES - 1,
        "rejected": 1,
    }
    deduped = pq.read_table(out / "deduped" / "kept", columns=["extractor", "url"])
    assert set(deduped.column("extractor").to_pylist()) == {WET} and deduped.num_rows > 0
    shards = read_json(out / "shards" / "manifest.json")
    assert sum(entry["documents"] for split in shards["splits"].values() for entry in split) > 0

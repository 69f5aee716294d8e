"""The extractor's own title and date step gives what trafilatura's full metadata pass gives."""

from pathlib import Path

import trafilatura

from corpus.extract import Extractor, decode_html
from corpus.warc import WarcError, read_warc

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample"


def html_pages(name: str, limit: int) -> list[tuple[bytes, str | None, str | None]]:
    with open(SAMPLE / name, "rb") as stream:
        records = [r for r in read_warc(stream, max_payload_bytes=2_000_000) if not isinstance(r, WarcError)]
    return [(r.payload, r.url, r.charset) for r in records if r.payload is not None][:limit]


def test_title_date_and_text_match_trafilatura_with_metadata():
    pages = html_pages("commoncrawl-2020-34.warc.gz", 7) + html_pages("commoncrawl-2024-22.warc.gz", 3)
    # precision mode only, the date for every page: as bare_extraction(with_metadata=True) does
    extractor = Extractor(timeout_s=None, fallback_ratio=None, date_survivors_only=False)
    compared = 0
    for payload, url, charset in pages:
        ours = extractor(payload, url=url, charset=charset)
        options = dict(favor_precision=True, include_tables=True, include_comments=False)
        full = trafilatura.bare_extraction(
            decode_html(payload, charset), url=url, with_metadata=True, **options
        )
        if full is None:
            assert ours.text is None
            continue
        text = (full.text or "").strip() or None
        assert (ours.title, ours.date, ours.text) == (full.title or None, full.date or None, text), url
        compared += 1
    assert compared >= 6

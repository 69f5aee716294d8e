"""One WARC file to document rows, counting every record read.

`warc_documents` is the whole documents stage for one file, free of Spark so that tests and
other engines call it directly (compare DataTrove's `process_record()`). Every record lands in
exactly one count: `records.<kind>` for all of them, and for responses also
`response.<status>.<mime>`. Of the responses, those with status 200 and an HTML type become
documents: a row that is kept, or rejected with an `extract:*` rule. In a WET file each
`conversion` record is a document whose text Common Crawl extracted: it is taken as it is
(`extractor: wet`), with no HTML extraction.
"""

import hashlib
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from tld import get_fld

from corpus.extract import EMPTY, TOO_LARGE, Extracted, Extractor, Gate
from corpus.warc import WarcError, WarcRecord, is_html, open_warc, read_warc, record_kind

# The first few read errors of a file are kept verbatim in the manifest; beyond that only
# the count grows, so a file of garbage cannot blow up the driver's result.
MAX_ERRORS_KEPT = 20
WET = "wet"  # the `extractor` of documents whose text is Common Crawl's own (WET files)


def stable_id(key: str) -> str:
    """sha256 of `key`, cut to 128 bits: the id of a document that brings none of its own."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def document_id(record_id: str | None, url: str | None, date: str | None) -> str:
    """Stable id of a WARC document: of the WARC-Record-ID, else of url and date."""
    return stable_id(record_id or f"{url}\x00{date}")


def registered_domain(url: str | None) -> str | None:
    """example.co.uk for https://www.example.co.uk/x, from the public suffix list bundled with `tld`;
    the bare host for IPs and hosts the list does not cover."""
    if not url:
        return None
    domain = get_fld(url, fail_silently=True)
    if domain:
        return domain.lower()
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


def warc_documents(
    path: str,
    *,
    source: str,
    extractor: Extractor,
    counts: Counter,
    errors: list[dict[str, Any]],
    gate: Gate | None = None,
    span: tuple[int, int] | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield a row per HTML 200 response (or WET conversion record) of the WARC at `path`, or of
    its piece `span` (corpus/warc.py `read_warc`); fill `counts` and `errors`.

    Rows carry the provenance and extraction columns of the document schema; the annotation
    columns stay unset, but for the signals of a `gate` rule that rejected the page before
    extraction (its URL rules first, then its language prefilter). A read error is counted and
    recorded, never raised.
    """
    try:
        stream = open_warc(path, counts)
    except OSError as exc:
        counts["errors"] += 1
        errors.append({"file": path, "offset": 0, "message": f"{type(exc).__name__}: {exc}"})
        return
    with stream:
        for item in read_warc(stream, max_payload_bytes=extractor.max_html_bytes, span=span):
            if isinstance(item, WarcError):
                counts["errors"] += 1
                if len(errors) < MAX_ERRORS_KEPT:
                    errors.append({"file": path, "offset": item.offset, "message": item.message})
                continue
            counts["records"] += 1
            kind = record_kind(item)
            counts[f"records.{kind}"] += 1
            if kind == "conversion":  # WET: Common Crawl extracted the text already
                counts["documents"] += 1
                yield _row(item, wet_text(item), path=path, source=source, extractor=WET)
                continue
            if kind != "response":
                continue
            counts[f"response.{item.status or 'unparsed'}.{item.content_type or 'none'}"] += 1
            # The reader reads bodies of 200 responses that are HTML by header or by sniffing.
            if item.status != 200 or (item.payload is None and not is_html(item.content_type)):
                continue
            if item.payload is None:  # an HTML 200 response whose body could not be read
                counts["documents.unreadable"] += 1
                continue
            counts["documents"] += 1
            yield _row(
                item, _extract(item, extractor, gate), path=path, source=source, extractor=extractor.name
            )


def _extract(item: WarcRecord, extractor: Extractor, gate: Gate | None) -> Extracted:
    """The page's extraction, unless the gate's URL rules reject it first."""
    if gate is not None:
        rejected = gate.url_rejected({"url": item.url, "domain": registered_domain(item.url)})
        if rejected is not None:
            return rejected
    return extractor(
        item.payload,
        url=item.url,
        charset=item.charset,
        truncated=item.payload_truncated,
        gate=gate,
        warc_date=item.date,
    )


def wet_text(item: WarcRecord) -> Extracted:
    """The text of a WET `conversion` record as an extraction result: UTF-8 (Common Crawl writes it
    so; a stray byte becomes U+FFFD), stripped, and rejected by the HTML extractor's rules when
    over its size cap (`extract:too_large`) or blank (`extract:empty`). WET has no title or date."""
    if item.payload_truncated:
        return Extracted(None, None, None, TOO_LARGE)
    text = (item.payload or b"").decode("utf-8", "replace").strip()
    return Extracted(None, text or None, None, None if text else EMPTY)


def _row(item: WarcRecord, result: Extracted, *, path: str, source: str, extractor: str) -> dict[str, Any]:
    return {
        "id": document_id(item.record_id, item.url, item.date),
        "url": item.url,
        "domain": registered_domain(item.url),
        "warc_file": path,
        "warc_record_id": item.record_id,
        "fetch_time": item.fetch_time,
        "source": source,
        "title": result.title,
        "text": result.text,
        "date": result.date,
        "extractor": extractor,
        "reject": result.reject,
        "signals": result.signals,
    }

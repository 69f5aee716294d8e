"""The WARC reader: every record counted, every fault an error with an offset, never a crash."""

import gzip
import io
import logging
from collections import Counter
from pathlib import Path

import pytest
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from corpus.warc import WarcError, open_warc, read_warc, record_kind

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample"
PAGE = b"<html><head><title>t</title></head><body><p>Hello there, reader.</p></body></html>"


def build_warc(gzipped: bool = True) -> bytes:
    """warcinfo, request, an HTML 200, a 404, an image, a revisit, a metadata record and a resource."""
    out = io.BytesIO()
    writer = WARCWriter(out, gzip=gzipped)
    writer.write_record(writer.create_warcinfo_record("x.warc.gz", {"software": "test"}))

    def response(url, status, ctype, body):
        http = StatusAndHeaders(status, [("Content-Type", ctype)], protocol="HTTP/1.1")
        return writer.create_warc_record(url, "response", payload=io.BytesIO(body), http_headers=http)

    http_req = StatusAndHeaders("GET / HTTP/1.1", [("Host", "example.com")], is_http_request=True)
    writer.write_record(writer.create_warc_record("https://example.com/", "request", http_headers=http_req))
    writer.write_record(response("https://example.com/", "200 OK", "text/html; charset=utf-8", PAGE))
    writer.write_record(response("https://example.com/missing", "404 Not Found", "text/html", b"<p>no</p>"))
    writer.write_record(response("https://example.com/a.png", "200 OK", "image/png", b"\x89PNG...."))
    writer.write_record(response("https://example.com/sniffed", "200 OK", "application/octet-stream", PAGE))
    revisit = writer.create_revisit_record(
        "https://example.com/", digest="sha1:AAAA", refers_to_uri="https://example.com/", refers_to_date="x"
    )
    writer.write_record(revisit)
    writer.write_record(
        writer.create_warc_record("https://example.com/", "metadata", payload=io.BytesIO(b"via: x\r\n"))
    )
    writer.write_record(
        writer.create_warc_record("dns:example.com", "resource", payload=io.BytesIO(b"1.2.3.4"))
    )
    return out.getvalue()


def read(blob: bytes, max_payload_bytes: int = 1_000_000):
    items = list(read_warc(io.BytesIO(blob), max_payload_bytes=max_payload_bytes))
    records = [i for i in items if not isinstance(i, WarcError)]
    return records, [i for i in items if isinstance(i, WarcError)]


def member_offsets(blob: bytes) -> list[int]:
    offsets, pos = [], 0
    while pos < len(blob):
        offsets.append(pos)
        decomp = __import__("zlib").decompressobj(wbits=31)
        decomp.decompress(blob[pos:])
        pos = len(blob) - len(decomp.unused_data)
    return offsets


def test_every_record_kind_is_read_and_counted():
    records, errors = read(build_warc())
    assert errors == []
    assert Counter(record_kind(r) for r in records) == {
        "warcinfo": 1,
        "request": 1,
        "response": 4,
        "revisit": 1,
        "metadata": 1,
        "other": 1,
    }


def test_only_html_200_responses_carry_a_payload():
    records, _ = read(build_warc())
    with_payload = {r.url: r for r in records if r.payload is not None}
    assert set(with_payload) == {"https://example.com/", "https://example.com/sniffed"}
    page = with_payload["https://example.com/"]
    assert (page.status, page.content_type, page.charset, page.payload) == (200, "text/html", "utf-8", PAGE)


def test_uncompressed_warc_reads_the_same_records():
    gz, _ = read(build_warc(gzipped=True))
    plain, errors = read(build_warc(gzipped=False))
    assert errors == [] and [(r.rec_type, r.url) for r in plain] == [(r.rec_type, r.url) for r in gz]


def test_payload_over_the_cap_is_cut_and_marked():
    records, _ = read(build_warc(), max_payload_bytes=10)
    page = next(r for r in records if r.url == "https://example.com/" and r.rec_type == "response")
    assert page.payload_truncated and page.payload == PAGE[:10]


def test_truncated_gzip_keeps_the_records_before_it():
    blob = build_warc()
    cut = member_offsets(blob)[4] + 20  # inside the image response's member
    records, errors = read(blob[:cut])
    assert len(records) == 4 and len(errors) == 1
    assert errors[0].offset == member_offsets(blob)[4] and "truncated gzip member" in errors[0].message


def test_garbage_between_members_is_one_error_and_reading_resumes():
    blob = build_warc()
    at = member_offsets(blob)[3]
    records, errors = read(blob[:at] + b"\x00garbage\n" * 50 + blob[at:])
    assert len(records) == 9 and len(errors) == 1 and errors[0].offset == at


def test_corrupt_member_is_skipped_and_the_rest_recovered():
    blob = bytearray(build_warc())
    offsets = member_offsets(bytes(blob))
    blob[offsets[2] + 30] ^= 0xFF  # a bit flip inside the HTML response's deflate stream
    records, errors = read(bytes(blob))
    assert len(errors) == 1 and errors[0].offset == offsets[2]
    assert len(records) == 8 and all(
        r.url != "https://example.com/" or r.rec_type != "response" for r in records
    )


def test_uncompressed_file_resyncs_at_the_next_warc_line():
    blob = build_warc(gzipped=False)
    at = blob.index(b"WARC/1", 100)
    records, errors = read(blob[:at] + b"junk line\r\n" * 3 + blob[at:])
    assert len(records) == 9 and len(errors) == 1 and "junk line" in errors[0].message


def test_uncompressed_file_cut_inside_a_record_is_an_error():
    blob = build_warc(gzipped=False)
    records, errors = read(blob[: blob.index(PAGE) + 10])
    assert len(records) == 2 and len(errors) == 1 and "truncated" in errors[0].message


@pytest.mark.parametrize("blob", [b"", b"hello, not a warc", b"\x1f\x8b\x08garbage", bytes(range(256)) * 8])
def test_non_warc_bytes_never_raise(blob):
    records, errors = read(blob)
    assert records == [] and len(errors) == (1 if blob else 0)


def test_malformed_warc_date_gives_no_fetch_time_but_keeps_the_record():
    """ClueWeb09 writes WARC/0.18 with dates like 2008-10-294T…"""
    with open_warc(str(SAMPLE / "clueweb-quirk.warc.gz")) as stream:
        records, errors = [], []
        for item in read_warc(stream, max_payload_bytes=2_000_000):
            (errors if isinstance(item, WarcError) else records).append(item)
    responses = [r for r in records if r.rec_type == "response"]
    assert errors == [] and len(responses) == 29
    assert any(r.date and r.fetch_time is None for r in records)
    assert all(r.payload is not None for r in responses)


def test_real_revisit_records_are_counted_not_read(shared_data):
    path = (
        shared_data / "warc-ukwa-webarchive-discovery" / "BL-20140325122341434-00000-32090-opera-8443.warc.gz"
    )
    records, errors = read(path.read_bytes())
    kinds = Counter(record_kind(r) for r in records)
    assert errors == [] and kinds["revisit"] == 55 and kinds["response"] == 10
    assert all(r.payload is None for r in records if r.rec_type == "revisit")


def test_gzip_decompresses_the_same_as_a_plain_read():
    blob = build_warc()
    assert gzip.decompress(blob).count(b"WARC/1.") == len(read(blob)[0])


def test_wrong_content_length_inside_a_member_is_counted_and_the_record_kept():
    blob = build_warc()
    offsets = member_offsets(blob)
    member = gzip.decompress(blob[offsets[2] : offsets[3]])
    length = int(member.split(b"Content-Length: ")[1].split(b"\r\n")[0])
    damaged = member.replace(b"Content-Length: %d" % length, b"Content-Length: %d" % (length - 30), 1)
    records, errors = read(blob[: offsets[2]] + gzip.compress(damaged) + blob[offsets[3] :])
    assert len(records) == 9 and len(errors) == 1 and "Content-Length" in errors[0].message


def warc_with_spaces(*urls: str) -> bytes:
    """A request and a response record for each URL, as a crawler writes a fetch."""
    out = io.BytesIO()
    writer = WARCWriter(out, gzip=True)
    for url in urls:
        request = StatusAndHeaders("GET / HTTP/1.1", [("Host", "example.com")], is_http_request=True)
        writer.write_record(writer.create_warc_record(url, "request", http_headers=request))
        http = StatusAndHeaders("200 OK", [("Content-Type", "text/html")], protocol="HTTP/1.1")
        writer.write_record(
            writer.create_warc_record(url, "response", payload=io.BytesIO(PAGE), http_headers=http)
        )
    return out.getvalue()


def test_warcios_warning_about_a_url_with_spaces_is_logged_once_per_fetch_not_per_record(caplog):
    caplog.set_level(logging.WARNING, logger="warcio")
    records, errors = read(warc_with_spaces("https://example.com/a b", "https://example.com/c d"))
    assert [r.url for r in records] == ["https://example.com/a%20b"] * 2 + ["https://example.com/c%20d"] * 2
    assert [r.getMessage() for r in caplog.records] == [
        "URL with spaces, read as %20: https://example.com/a b",
        "URL with spaces, read as %20: https://example.com/c d",
    ]


def test_warcios_warning_about_a_long_url_is_cut_in_the_middle_to_the_terminal_width(caplog, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    caplog.set_level(logging.WARNING, logger="warcio")
    url = "https://www.example.org/de/forschungsbereich/energiewende-und-gesellschaftlicher-wandel /missing"
    read(warc_with_spaces(url))
    [message] = [r.getMessage() for r in caplog.records]
    assert len(message) == 80 and "…" in message
    assert message.startswith("URL with spaces, read as %20: https://www.example.org/")
    assert message.endswith(" /missing")

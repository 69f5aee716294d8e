"""A large WARC read in byte-range pieces (corpus/warc.py's module docstring): the pieces
together give the records, errors and rows of one whole-file read, damaged or not. No Spark
here; tests/test_inputs_spark.py runs a split WARC through the documents stage."""

import gzip
import io
import random
from collections import Counter
from pathlib import Path

import pytest
from test_warc_fuzz import STRUCTURAL
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from corpus import inputs
from corpus.documents import MAX_ERRORS_KEPT
from corpus.extract import Extractor
from corpus.faults import MUTATIONS, members
from corpus.inputs import input_documents, plan_pieces, whole_files
from corpus.warc import WarcError, read_warc, splittable

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample"


@pytest.fixture
def tiny_pieces(monkeypatch):
    """WARC pieces of any size, so that these small files split."""
    monkeypatch.setattr(inputs, "MIN_WARC_PIECE", 1)


def crawl(pages: int = 12, gzipped: bool = True, padding: int = 0) -> bytes:
    """A warcinfo record, then a request and an HTML 200 response per page, each followed by an
    image of `padding` incompressible bytes when `padding` is set (a large file, cheap to read)."""
    out = io.BytesIO()
    writer = WARCWriter(out, gzip=gzipped)
    writer.write_record(writer.create_warcinfo_record("split.warc.gz", {"software": "test"}))
    for i in range(pages):
        url = f"https://example.com/page/{i}"
        request = StatusAndHeaders("GET / HTTP/1.1", [("Host", "example.com")], is_http_request=True)
        writer.write_record(writer.create_warc_record(url, "request", http_headers=request))
        http = StatusAndHeaders("200 OK", [("Content-Type", "text/html")], protocol="HTTP/1.1")
        body = f"<html><body><p>Page {i}: {'words ' * (20 + i * 7)}</p></body></html>".encode()
        writer.write_record(
            writer.create_warc_record(url, "response", payload=io.BytesIO(body), http_headers=http)
        )
        if padding:
            image = StatusAndHeaders("200 OK", [("Content-Type", "image/png")], protocol="HTTP/1.1")
            pixels = io.BytesIO(random.Random(i).randbytes(padding))
            writer.write_record(
                writer.create_warc_record(f"{url}.png", "response", payload=pixels, http_headers=image)
            )
    return out.getvalue()


def items(blob: bytes, span: tuple[int, int] | None = None) -> list[tuple]:
    """What the reader yields, comparable: records by offset, id and body; errors by offset and message."""
    return [
        ("error", i.offset, i.message) if isinstance(i, WarcError) else (i.offset, i.record_id, i.payload)
        for i in read_warc(io.BytesIO(blob), max_payload_bytes=1 << 20, span=span)
    ]


def in_pieces(blob: bytes, cuts: list[int]) -> list[tuple]:
    """The items of the pieces [0, c1), [c1, c2), ..., [ck, end), in order."""
    bounds = [0, *cuts, len(blob)]
    return [item for k in range(len(bounds) - 1) for item in items(blob, (bounds[k], bounds[k + 1]))]


def even_cuts(blob: bytes, n: int) -> list[int]:
    return [len(blob) * k // n for k in range(1, n)]


def _plain_starts(blob: bytes) -> list[int]:
    starts, at = [0], 0
    while (at := blob.find(b"\r\n\r\nWARC/1.", at + 1)) >= 0:
        starts.append(at + 4)
    return starts


@pytest.mark.parametrize("gzipped", [True, False])
def test_pieces_read_the_records_of_one_whole_read(gzipped):
    blob = crawl(gzipped=gzipped)
    whole = items(blob)
    assert len(whole) == 25 and not any(i[0] == "error" for i in whole)
    for n in (2, 3, 7, 40):  # 40: pieces smaller than a record, most of them empty
        assert in_pieces(blob, even_cuts(blob, n)) == whole, n


def test_a_cut_exactly_at_a_record_start_gives_that_record_to_the_later_piece():
    blob = crawl()
    at = members(blob)[5].offset
    first, second = items(blob, (0, at)), items(blob, (at, len(blob)))
    assert [i[0] for i in first] == [m.offset for m in members(blob)[:5]] and second[0][0] == at


def test_corrupt_member_in_the_middle_is_one_error_whichever_the_cuts():
    blob = bytearray(crawl())
    damaged = members(bytes(blob))[12]
    blob[damaged.offset + 40] ^= 0xFF  # a bit flip inside its deflate stream
    blob = bytes(blob)
    whole = items(blob)
    assert [i[1] for i in whole if i[0] == "error"] == [damaged.offset]
    assert len(whole) == 25  # 24 records and the error
    for n in (2, 3, 5, 11):
        assert in_pieces(blob, even_cuts(blob, n)) == whole, n


@pytest.mark.parametrize("gzipped", [True, False])
def test_damaged_region_straddling_a_cut_is_counted_once_by_the_piece_reaching_it(gzipped):
    """Garbage over the end of one record and several after it: the piece before the cut reads
    to the first sound record after it."""
    blob = crawl(gzipped=gzipped)
    starts = [m.offset for m in members(blob)] if gzipped else _plain_starts(blob)
    lo, hi = starts[8] - 30, starts[11] + 10
    blob = blob[:lo] + bytes(b ^ 0x5A for b in blob[lo:hi]) + blob[hi:]
    whole = items(blob)
    errors = [i for i in whole if i[0] == "error"]
    assert len(errors) == 1 and len(whole) < 25
    for cut in (lo + 5, (lo + hi) // 2, hi - 1, starts[12] - 1):
        assert in_pieces(blob, [cut]) == whole, cut
    assert in_pieces(blob, [starts[9], (lo + hi) // 2, starts[12]]) == whole


@pytest.mark.parametrize("gzipped", [True, False])
def test_failing_record_starts_inside_a_damaged_region_start_no_piece(gzipped):
    """Records 8 to 10 each damaged behind an intact start (a gzip header, a `WARC/1.0` line).
    A gzip file's whole read counts one region, so a piece may not start at 9 or 10 and count
    them again; warcio reads an unparsable Content-Length as 0, so each plain record is read and
    its block is an error."""
    blob = crawl(gzipped=gzipped)
    starts = [m.offset for m in members(blob)] if gzipped else _plain_starts(blob)
    for k in (8, 9, 10):
        if gzipped:  # a bit flip in the deflate stream
            blob = blob[: starts[k] + 40] + bytes([blob[starts[k] + 40] ^ 0xFF]) + blob[starts[k] + 41 :]
        else:  # an unparsable header line, the same length
            at = blob.index(b"Content-Length: ", starts[k]) + 16
            blob = blob[:at] + b"x" + blob[at + 1 :]
    whole = items(blob)
    errors = [i[1] for i in whole if i[0] == "error"]
    if gzipped:
        assert errors == [starts[8]] and len(whole) == 25 - 3 + 1
    else:
        assert len(errors) == 3 and len(whole) == 25 + 3
    for cut in (starts[9], starts[9] + 1, starts[10], starts[11] - 1):
        assert in_pieces(blob, [cut]) == whole, cut


def test_single_gzip_stream_is_not_splittable_and_plans_one_piece(tmp_path, tiny_pieces):
    plain = crawl(gzipped=False)
    one_stream = tmp_path / "one-stream.warc.gz"
    one_stream.write_bytes(gzip.compress(plain, mtime=0))
    per_record = tmp_path / "per-record.warc.gz"
    per_record.write_bytes(crawl())
    assert [splittable(io.BytesIO(b)) for b in (plain, gzip.compress(plain), crawl())] == [True, False, True]
    assert len(plan_pieces(str(one_stream), 500)) == 1 and len(plan_pieces(str(per_record), 500)) > 3
    assert len(plan_pieces(str(SAMPLE / "commoncrawl-2019.warc.gz"), 500)) == 1  # one member, one record
    unprobed = plan_pieces(str(one_stream), 500, probe=False)  # as the documents stage plans on the driver
    assert len(unprobed) > 3 and whole_files(unprobed, {str(one_stream)}) == [inputs.Piece(str(one_stream))]


def test_small_warc_stays_one_piece(tmp_path, tiny_pieces):
    path = tmp_path / "small.warc.gz"
    path.write_bytes(crawl())
    assert plan_pieces(str(path), path.stat().st_size) == [inputs.Piece(str(path))]


def test_warc_pieces_are_at_least_a_mebibyte_whatever_the_target(tmp_path):
    """A tiny target cuts the later stages' tasks (tests/test_faults.py), not a sample WARC."""
    sample = SAMPLE / "commoncrawl-2020-34.warc.gz"
    assert plan_pieces(str(sample), 1000) == [inputs.Piece(str(sample))]
    path = tmp_path / "large.warc.gz"
    path.write_bytes(crawl(pages=3, padding=1 << 20))  # 3.2 MB
    sizes = [p.stop - p.start for p in plan_pieces(str(path), 1000)]
    assert len(sizes) == 3 and min(sizes) >= 1 << 20 and sum(sizes) == path.stat().st_size


def test_documents_of_warc_pieces_are_the_whole_files_rows_counts_and_errors(tmp_path, tiny_pieces):
    blob = bytearray(crawl())
    blob[members(bytes(blob))[6].offset + 60] ^= 0xFF  # page 2's response
    path = tmp_path / "damaged.warc.gz"
    path.write_bytes(bytes(blob))

    def read(target_bytes: int) -> tuple[list[dict], Counter, list, int]:
        counts, errors, pieces = Counter(), [], plan_pieces(str(path), target_bytes)
        rows = []
        for piece in pieces:
            rows += input_documents(
                str(path),
                source="s",
                extractor=Extractor(),
                counts=counts,
                errors=errors,
                bad_files=[],
                piece=piece,
            )
        return rows, counts, errors, len(pieces)

    whole, pieces = read(1 << 30), read(1000)
    assert whole[3] == 1 and pieces[3] >= 4
    assert pieces[:3] == whole[:3] and whole[1]["errors"] == 1
    assert whole[1]["records.response"] == 11 and [r["url"][-2:] for r in whole[0][:3]] == ["/0", "/1", "/3"]


def test_manifest_keeps_a_files_first_errors_across_its_pieces_as_one_task_would():
    from jobs.documents import _read_errors

    def part(file: str, offsets: range) -> dict:
        return {"errors": [{"file": file, "offset": o, "message": "m"} for o in offsets], "bad_files": []}

    parts = [part("a.warc.gz", range(0, 15)), part("a.warc.gz", range(15, 30)), part("b.warc.gz", range(3))]
    errors = _read_errors(["a.warc.gz", "b.warc.gz"], parts)["errors"]
    expected = [("a.warc.gz", o) for o in range(MAX_ERRORS_KEPT)] + [("b.warc.gz", o) for o in range(3)]
    assert [(e["file"], e["offset"]) for e in errors] == expected


@pytest.mark.slow
@pytest.mark.parametrize("mutation", [*STRUCTURAL, "plain_junk", "plain_cut", "plain_flip"])
def test_pieces_of_damaged_sample_warcs_read_as_the_whole_file(mutation):
    """The fuzzer's damage (tests/test_warc_fuzz.py) on a real Common Crawl WARC, gzip or plain:
    for several seeds and piece counts, the pieces' items are the whole read's."""
    base = (SAMPLE / "commoncrawl-2020-34.warc.gz").read_bytes()
    plain = b"".join(m.data for m in members(base))
    for seed in range(5):
        rng = random.Random(seed)
        if mutation.startswith("plain_"):
            at = rng.randrange(len(plain))
            damaged = {
                "plain_junk": plain[:at] + b"junk line\r\n" * 3 + plain[at:],
                "plain_cut": plain[:at],
                "plain_flip": plain[:at] + bytes([plain[at] ^ 0xFF]) + plain[at + 1 :],
            }[mutation]
        else:
            damaged = MUTATIONS[mutation](base, rng)[0]
        whole = items(damaged)
        for n in (2, 3, 7, 19):
            assert in_pieces(damaged, even_cuts(damaged, n)) == whole, (seed, n)

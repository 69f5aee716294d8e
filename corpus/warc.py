"""Read WARC files record by record, streamed, surviving corrupt and truncated input.

warcio parses the records; this module owns the byte stream under it, because warcio swallows
zlib errors (it prints them to stderr and reports a clean end of file) and cannot tell a
truncated gzip member from a finished one. So a `.warc.gz` is split into gzip members here,
each decompressed as a stream of bounded memory, and warcio parses the records inside one
member at a time. A fault (truncated or corrupt member, garbage between members, a header
warcio rejects, a record shorter than its Content-Length) is yielded as a `WarcError` with its
byte offset; the reader then resynchronizes at the next gzip member (or, in an uncompressed
file, the next line starting with `WARC/`) and goes on. Candidates that fail while
resynchronizing belong to the same damaged region and are not counted again.

A large file is read in pieces, byte ranges [start, stop) read by separate tasks (Hadoop's input
splits): a piece reads from the first *sound* record at or after `start` (a gzip member that
inflates whole to a record, or in an uncompressed file a `WARC/1.` line after a blank line whose
record reads whole) to the first sound record at or after `stop`, which starts the next piece;
piece 0 starts at byte 0. The whole file's read passes through every sound record (a clean
record ends where the next begins, and resynchronizing tries each candidate in turn), so each
record and each damaged region is read by exactly one piece, the one whose reading reaches it:
the pieces' items, in order, are the whole read's. Only the start is sound-checked, not merely a
gzip header whose content begins with `WARC/`, because a damaged region's candidates (headers
that inflate to `WARC/` and then fail) would otherwise start a piece that counts the region
again. What breaks this is a record whose own bytes hold a sound WARC record at a candidate
position, which the whole read skips and the piece starting inside it reads: a crawled
`.warc.gz` stored uncompressed inside a member, a WARC file served as a page of an uncompressed
WARC, or there a Content-Length too large, claiming the records after it.
`splittable` says whether pieces pay: a gzip file must hold a member per record (not one stream
for the whole file, which a piece could only enter by reading from the file's start).

Records are yielded with their HTTP status and content type parsed; the body is read only
for 200 responses that are HTML by their header or, when the header is missing or generic,
by sniffing the first bytes, and for `conversion` records (the plain text of a page in Common
Crawl's WET files).
"""

import logging
import math
import shutil
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import BinaryIO

from warcio.archiveiterator import WARCIterator
from warcio.bufferedreaders import BufferedReader
from warcio.exceptions import ArchiveLoadFailed
from warcio.statusandheaders import StatusAndHeadersParser, StatusAndHeadersParserException

from corpus.fs import open_input

GZIP_MAGIC = b"\x1f\x8b\x08"
WARC_MAGIC = b"WARC/"
CHUNK = 1 << 16
# Decompressed bytes produced per zlib call: bounds memory for a member that inflates hugely.
MAX_INFLATE = 1 << 20
HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
# Types servers send when they do not know: the body is sniffed for HTML (WHATWG MIME Sniffing §7).
SNIFFED_TYPES = frozenset({None, "application/octet-stream", "text/plain", "unknown/unknown"})
SNIFF_BYTES = 1024
SNIFF_INFLATE = 64  # decompressed bytes enough to see whether a gzip file holds `WARC/`
# A record-per-member gzip WARC's members end well within this (Common Crawl cuts a body at 1 MiB,
# before compression); a first member running past it is a stream for many records: not split.
MEMBER_PROBE = 8 << 20
PLAIN_BOUNDARY = b"\r\n\r\n" + WARC_MAGIC + b"1."  # an uncompressed record after its predecessor
BLANK_LINE = 4  # the CRLF CRLF that ends a record, ahead of the next one's `WARC/1.`
_HTML_SIGNS = (b"<!doctype html", b"<html", b"<head", b"<body")
KINDS = ("warcinfo", "request", "response", "revisit", "metadata", "conversion")  # conversion: WET text
# warcio parses HTTP headers only under http(s): target URIs; a record that declares
# `application/http` under another scheme is parsed with this.
_HTTP_HEADERS = StatusAndHeadersParser(["HTTP/1.0", "HTTP/1.1"], verify=False)


class WarcFault(Exception):
    """Bytes that cannot be read as WARC; caught inside `read_warc`, never raised to callers."""


# What warcio raises on bytes that are not a WARC record (ValueError: unparsable numbers).
_FAULTS = (WarcFault, ArchiveLoadFailed, StatusAndHeadersParserException, ValueError, EOFError)


# warcio's warning about a WARC-Target-URI with spaces, and the shorter words logged in its place.
_WARCIO_SPACES = "Replacing spaces in invalid WARC-Target-URI: "
_SPACES_SHORT = "URL with spaces, read as %20: "


class _WarcioWarnings(logging.Filter):
    """warcio's warnings, each once and in one line of the terminal. warcio warns about a
    WARC-Target-URI with spaces once per record it reads, so a fetch's request and response printed
    the same line twice in a row: a message the same as the one just let through is dropped (one
    message held, whatever the file's size). A long URL made that line wider than the terminal, so
    the message let through is cut in the middle to its width (COLUMNS, else 80 columns: a Spark
    worker's stderr is a pipe); the whole URL, with %20, is the document's `url`."""

    def __init__(self) -> None:
        super().__init__()
        self.last: str | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        repeated, self.last = message == self.last, message
        short = message.replace(_WARCIO_SPACES, _SPACES_SHORT, 1)
        record.msg, record.args = fit_width(short, shutil.get_terminal_size().columns), None
        return not repeated


_WARCIO_WARNINGS = _WarcioWarnings()


def fit_width(line: str, width: int) -> str:
    """`line` if it fits in `width` columns, else its first three quarters and its last around a `…`
    (a message keeps its words and the URL's host, the URL its last path segment)."""
    if len(line) <= width:
        return line
    tail = (width - 1) // 4
    return line[: width - 1 - tail] + "…" + line[len(line) - tail :]


@dataclass(frozen=True, slots=True)
class WarcError:
    offset: int  # byte offset in the file where the damaged region starts
    message: str


@dataclass(frozen=True, slots=True)
class WarcRecord:
    offset: int  # of the record, or of its gzip member
    rec_type: str
    record_id: str | None
    url: str | None
    date: str | None  # WARC-Date as written
    fetch_time: datetime | None  # WARC-Date parsed; None when malformed
    status: int | None  # HTTP status of a response
    content_type: str | None  # HTTP media type, lowercased, without parameters
    charset: str | None
    # The decoded HTTP body of an HTML 200 response, or a conversion record's text; else None.
    payload: bytes | None
    payload_truncated: bool = False  # the body was longer than the cap and was cut


def warc_problem(head: bytes) -> str | None:
    """Why a file starting with `head` is not a WARC, or None: a WARC starts with `WARC/`, or with a
    gzip member whose content starts with `WARC/`.

    A gzip member that does not inflate passes: damage is the reader's business (it counts the
    error and resynchronizes at the next member); only a file that is clearly something else
    (HTML, JSON, a gzipped CSV, nothing at all) is named here.
    """
    if not head:
        return "empty file (0 bytes)"
    if head[:2] == GZIP_MAGIC[:2]:
        try:
            inner = zlib.decompressobj(wbits=31).decompress(head, SNIFF_INFLATE)
        except zlib.error:
            return None
        if len(inner) >= len(WARC_MAGIC) and not inner.startswith(WARC_MAGIC):
            return f"gzip file whose content starts {inner[:16]!r}, not a WARC record (WARC/...)"
        return None
    if not head.startswith(WARC_MAGIC):
        return f"not a WARC file (starts {head[:16]!r}; expected WARC/ or gzip)"
    return None


def is_html(content_type: str | None) -> bool:
    return content_type in HTML_TYPES


def record_kind(record: WarcRecord) -> str:
    """The record's WARC-Type if it is one we count by name, else "other"."""
    return record.rec_type if record.rec_type in KINDS else "other"


def open_warc(path: str, counts: Counter | None = None) -> BinaryIO:
    """The WARC at a local path or URI (corpus/fs.py; remote reads retried, counted in `counts`)."""
    return open_input(path, counts)


def read_warc(
    stream: BinaryIO, *, max_payload_bytes: int, span: tuple[int, int] | None = None
) -> Iterator[WarcRecord | WarcError]:
    """Every record of a seekable WARC stream (gzip or not) from its position, with a `WarcError`
    per damaged region; with `span` (start, stop), the records of that piece of the file (module
    docstring)."""
    logging.getLogger("warcio.recordloader").addFilter(_WARCIO_WARNINGS)  # added once however often called
    start, stop = (stream.tell(), None) if span is None else span
    stream.seek(0 if span is not None else start)
    gzipped = stream.read(2) == GZIP_MAGIC[:2]
    if span is not None and start > 0:
        found = _first_sound(stream, start, gzipped, max_payload_bytes)
        if found is None:  # the rest of the file is damaged: the piece before reads it
            return
        start = found
    stream.seek(start)
    if gzipped:
        yield from _read_gzip(stream, start, stop, max_payload_bytes)
    else:
        yield from _read_plain(stream, start, stop, max_payload_bytes)


def splittable(stream: BinaryIO) -> bool:
    """Whether the WARC in `stream` can be read in pieces: an uncompressed WARC/1.x, or a gzip WARC
    whose first two members each hold records and end within MEMBER_PROBE bytes (a member per
    record, as Common Crawl writes them). Reads at most two members."""
    stream.seek(0)
    if stream.read(len(PLAIN_BOUNDARY) - BLANK_LINE) == PLAIN_BOUNDARY[BLANK_LINE:]:
        return True  # WARC/1.x: its records start after a blank line (WARC/0.x may not)
    pos = 0
    for _ in range(2):
        stream.seek(pos)
        if stream.read(len(GZIP_MAGIC)) != GZIP_MAGIC:
            return False
        stream.seek(pos)
        member = _Member(stream, pos)
        try:
            if member.read(len(WARC_MAGIC)) != WARC_MAGIC or not member.drain(MEMBER_PROBE):
                return False
        except WarcFault:
            return False
        assert member.end is not None
        pos = member.end
    return True


def _sound(stream: BinaryIO, pos: int, gzipped: bool, max_payload_bytes: int) -> bool:
    """Whether a piece starts at `pos`: the gzip member there, or the uncompressed record there
    (after a blank line), reads whole without a fault. The stream's position is kept."""
    here = stream.tell()
    try:
        if gzipped:
            for _ in _read_member(stream, pos, max_payload_bytes):
                pass
            return True
        if pos < BLANK_LINE:
            return False
        stream.seek(pos - BLANK_LINE)
        if stream.read(len(PLAIN_BOUNDARY)) != PLAIN_BOUNDARY:
            return False
        stream.seek(pos)
        raw = next(_guarded(WARCIterator(stream)))
        _parse(raw, pos, max_payload_bytes)
        _check_complete(raw)
        return True
    except (*_FAULTS, StopIteration):
        return False
    finally:
        stream.seek(here)


def _first_sound(stream: BinaryIO, pos: int, gzipped: bool, max_payload_bytes: int) -> int | None:
    """Offset of the first place at or after `pos` where a piece starts (`_sound`), or None."""
    magic, lead = (GZIP_MAGIC, 0) if gzipped else (PLAIN_BOUNDARY, BLANK_LINE)
    at = max(0, pos - lead)
    while (found := _scan(stream, at, magic)) is not None:
        if _sound(stream, found + lead, gzipped, max_payload_bytes):
            return found + lead
        at = found + 1
    return None


# --- gzip: one member at a time ---------------------------------------------------------------


class _Member:
    """The decompressed bytes of the gzip member at the stream's position, read on demand.

    Raises `WarcFault` when the member is corrupt or the file ends inside it. `end` is the
    offset just after the member once it has been read to its end.
    """

    def __init__(self, stream: BinaryIO, offset: int):
        self.stream = stream
        self.offset = offset
        self.inflater = zlib.decompressobj(wbits=31)
        self.buffer = bytearray()
        self.raw_read = 0
        self.end: int | None = None

    def read(self, size: int | None = -1) -> bytes:
        while self.end is None and (size is None or size < 0 or len(self.buffer) < size):
            self._inflate()
        n = len(self.buffer) if size is None or size < 0 else size
        out = bytes(self.buffer[:n])
        del self.buffer[:n]
        return out

    def drain(self, limit: float = math.inf) -> bool:
        """Read to the end of the member (warcio may stop before the gzip trailer), unless that is
        over `limit` compressed bytes from its start; whether the end was reached."""
        while self.end is None and self.raw_read < limit:
            self._inflate()
            self.buffer.clear()
        return self.end is not None

    def _inflate(self) -> None:
        data = self.inflater.unconsumed_tail
        if not data:
            data = self.stream.read(CHUNK)
            self.raw_read += len(data)
            if not data:
                raise WarcFault(f"truncated gzip member (file ends {self.raw_read:,} bytes into it)")
        try:
            self.buffer += self.inflater.decompress(data, MAX_INFLATE)
        except zlib.error as exc:
            raise WarcFault(f"corrupt gzip member: {exc}") from None
        if self.inflater.eof:
            self.end = self.offset + self.raw_read - len(self.inflater.unused_data)


def _read_gzip(
    stream: BinaryIO, pos: int, stop: int | None, max_payload_bytes: int
) -> Iterator[WarcRecord | WarcError]:
    """The members from `pos` on; with `stop`, up to the first sound one at or after it."""
    resyncing = False
    while True:
        stream.seek(pos)
        if not stream.read(1):
            return
        if stop is not None and pos >= stop and _sound(stream, pos, True, max_payload_bytes):
            return  # the next piece starts here
        try:
            pos = yield from _read_member(stream, pos, max_payload_bytes)
            resyncing = False
        except _FAULTS as exc:
            if not resyncing:
                yield WarcError(pos, _message(exc))
            found = _scan(stream, pos + 1, GZIP_MAGIC)
            if found is None:
                return
            pos, resyncing = found, True


def _read_member(stream: BinaryIO, pos: int, max_payload_bytes: int) -> Iterator[WarcRecord | WarcError]:
    """The records of the gzip member at `pos`; returns the offset just after it."""
    stream.seek(pos)
    if stream.read(len(GZIP_MAGIC)) != GZIP_MAGIC:
        raise WarcFault("bytes that are not a gzip member (garbage between records or a damaged header)")
    stream.seek(pos)
    member = _Member(stream, pos)
    yield from _records(WARCIterator(member), pos, max_payload_bytes)
    member.drain()
    assert member.end is not None
    return member.end


# --- uncompressed ------------------------------------------------------------------------------


def _read_plain(
    stream: BinaryIO, pos: int, stop: int | None, max_payload_bytes: int
) -> Iterator[WarcRecord | WarcError]:
    """The records from `pos` on; with `stop`, up to the first sound one at or after it."""
    resyncing = False

    def ends(offset: int) -> bool:  # the next piece starts at this record
        return stop is not None and offset >= stop and _sound(stream, offset, False, max_payload_bytes)

    while True:
        stream.seek(pos)
        iterator = WARCIterator(stream)
        try:
            for item in _records(iterator, None, max_payload_bytes, ends):
                resyncing = False
                yield item
            return
        except _FAULTS as exc:
            failed_at = iterator.offset
            if not resyncing:
                yield WarcError(failed_at, _message(exc))
            found = _scan_line_start(stream, failed_at + 1, WARC_MAGIC)
            if found is None:
                return
            pos, resyncing = found, True


# --- shared -------------------------------------------------------------------------------------


def _records(
    iterator: WARCIterator,
    member_offset: int | None,
    max_payload_bytes: int,
    ends: Callable[[int], bool] | None = None,
) -> Iterator[WarcRecord | WarcError]:
    """The records warcio parses, each with its offset (in a gzip file, its member's), checked
    complete; `ends(offset)` true stops before that record (uncompressed pieces)."""
    previous = None
    for raw in _guarded(iterator):
        _check_complete(previous)
        offset = member_offset if member_offset is not None else iterator.offset
        if iterator.err_count:  # warcio found stray bytes after the previous record and skipped them
            iterator.err_count = 0
            yield WarcError(offset, "bytes after the previous record: its Content-Length is wrong")
        if ends is not None and ends(offset):
            return
        yield _parse(raw, offset, max_payload_bytes)
        previous = raw
    _check_complete(previous)
    if iterator.err_count:
        offset = member_offset if member_offset is not None else iterator.offset
        yield WarcError(offset, "bytes after the last record: its Content-Length is wrong")


def _guarded(iterator: WARCIterator) -> Iterator:
    """warcio's records, with its crash on a response or request record that has no
    WARC-Target-URI (`None.startswith` in its HTTP-header step, warcio 1.7) made a WarcFault."""
    records = iter(iterator)
    while True:
        try:
            raw = next(records)
        except StopIteration:
            return
        except AttributeError as exc:
            raise WarcFault(f"record without a required WARC header (warcio: {exc})") from None
        yield raw


def _check_complete(raw) -> None:
    """A record whose block ended before its Content-Length: the file was cut inside it."""
    if raw is not None:
        while raw.raw_stream.read(CHUNK):  # skip what was left unread, as warcio would
            pass
        if getattr(raw.raw_stream, "limit", 0) > 0:
            raise WarcFault(f"record {raw.rec_headers.get_header('WARC-Record-ID')} is truncated")


def _parse(raw, offset: int, max_payload_bytes: int) -> WarcRecord:
    headers = raw.rec_headers
    date = headers.get_header("WARC-Date")
    status = content_type = charset = payload = None
    truncated = False
    if raw.rec_type == "response" and raw.http_headers is None and _declares_http(raw):
        try:
            raw.http_headers = _HTTP_HEADERS.parse(raw.raw_stream)
        except (StatusAndHeadersParserException, EOFError, ValueError):
            pass  # counted as a response without a status
    if raw.rec_type == "response" and raw.http_headers is not None:
        status = _status(raw.http_headers.get_statuscode())
        content_type, charset = _media_type(raw.http_headers.get_header("Content-Type"))
        if status == 200 and (is_html(content_type) or content_type in SNIFFED_TYPES):
            payload, truncated = _read_payload(raw, max_payload_bytes)
            if payload is not None and not is_html(content_type) and not looks_like_html(payload):
                payload, truncated = None, False
    elif raw.rec_type == "conversion":  # a WET file's text of a page: the record's block itself
        payload, truncated = _read_block(raw, max_payload_bytes)
    url = headers.get_header("WARC-Target-URI")
    return WarcRecord(
        offset=offset,
        rec_type=raw.rec_type or "other",
        record_id=headers.get_header("WARC-Record-ID"),
        url=url.strip("<>") if url else None,
        date=date,
        fetch_time=parse_warc_date(date),
        status=status,
        content_type=content_type,
        charset=charset,
        payload=payload,
        payload_truncated=truncated,
    )


def _declares_http(raw) -> bool:
    return (raw.rec_headers.get_header("Content-Type") or "").lower().startswith("application/http")


def _read_payload(raw, limit: int) -> tuple[bytes | None, bool]:
    """Up to `limit` bytes of the HTTP body, decoded (chunked, gzip, deflate, br if available).

    None when the body is encoded in a way warcio cannot decode: those bytes are not HTML text.
    A body that ends before its Content-Length is a `WarcFault` (the file is cut inside it).
    """
    encoding = (raw.http_headers.get_header("Content-Encoding") or "").strip().lower()
    if encoding not in ("", "identity") and encoding not in BufferedReader.get_supported_decompressors():
        return None, False
    try:
        body = raw.content_stream().read(limit + 1)
    except WarcFault:
        raise
    except Exception:  # a broken chunked or gzip transfer inside a sound WARC record
        return None, False
    if len(body) > limit:
        return body[:limit], True
    _check_complete(raw)
    return body, False


def _read_block(raw, limit: int) -> tuple[bytes, bool]:
    """Up to `limit` bytes of a record's block; a block that ends early is a `WarcFault`."""
    block = raw.raw_stream.read(limit + 1)
    if len(block) > limit:
        return block[:limit], True
    _check_complete(raw)
    return block, False


def looks_like_html(payload: bytes) -> bool:
    head = payload[:SNIFF_BYTES].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return any(sign in head for sign in _HTML_SIGNS)


def _status(code: str | None) -> int | None:
    try:
        return int(code) if code else None
    except ValueError:
        return None


def _media_type(header: str | None) -> tuple[str | None, str | None]:
    """`text/html; charset=UTF-8` → ("text/html", "UTF-8")."""
    if not header:
        return None, None
    mime, *params = header.split(";")
    charset = None
    for param in params:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset":
            charset = value.strip().strip("\"'") or None
    return mime.strip().lower() or None, charset


def parse_warc_date(value: str | None) -> datetime | None:
    """ISO 8601 WARC-Date in UTC (`2019-12-10T05:01:03Z`, with or without fractions); None if malformed."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _message(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if isinstance(exc, WarcFault) else f"{type(exc).__name__}: {text}"[:500]


def _scan(stream: BinaryIO, pos: int, magic: bytes) -> int | None:
    """Offset of the next `magic` at or after `pos`, reading forward in chunks."""
    stream.seek(pos)
    carry = b""
    base = pos
    while chunk := stream.read(CHUNK):
        window = carry + chunk
        found = window.find(magic)
        if found >= 0:
            return base + found
        keep = len(magic) - 1
        carry = window[-keep:]
        base += len(window) - len(carry)
    return None


def _scan_line_start(stream: BinaryIO, pos: int, magic: bytes) -> int | None:
    """Offset of the next `magic` that starts a line, at or after `pos`."""
    found = _scan(stream, pos, b"\n" + magic)
    return None if found is None else found + 1

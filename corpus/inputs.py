"""The documents stage's input files, by extension: WARC, or documents as JSONL or Parquet.

- `*.jsonl`, `*.jsonl.gz`, `*.jsonl.zst`: one JSON object per line with at least `text`; read
  line by line through pyarrow's gzip and zstd streams (no `zstandard` package needed).
- `*.parquet`: a `text` column; read by row batches, so a task holds one row group at a time.
- anything else: a WARC, plain or gzip, read and extracted by corpus/documents.py.

Documents given as input are not extracted: their rows say `extractor: none`. `id`, `url`,
`date` and `title` fill their columns (`domain` follows from `url`); every other field goes to
`metadata`, a JSON object with sorted keys (non-finite floats as null), so the row keeps the
document schema. The id is the document's own `id` as given (unique ids are the dataset's
promise, as they are its users' key), else a hash of the file path and line (or row) number:
the same input gives the same ids. A line that is not a JSON object is rejected as
`input:bad_json`, one over MAX_LINE_BYTES as `input:too_large` (unparsed; the metadata of both
is `{"line": N}`), a document without a non-blank string `text` as `input:no_text`: a row with
its reason, never a crash. Blank lines are skipped.

A file that cannot be read at all is a *bad file*, and a bad file is data: `file_problem` names
why (unreadable, empty, not a WARC, not the gzip or zstd its name says, not a Parquet file or
one without `text`), and `input_documents` records it in `bad_files` and counts
`input_files.bad` instead of raising, so one bad file among 90,000 does not stop a run.
`refinery run --strict` refuses the same files, with the same reasons, before anything starts
(jobs/preflight.py). Damage further into a file that started well (a corrupt gzip stream
midway) is a read error in `errors`, with the line or row it followed, after that file's rows.

A large file is read by several tasks (`plan_pieces`): a plain JSONL file in byte ranges (a
piece reads the lines that start in its range; `count_newlines` over the ranges before it gives
its first line number), a Parquet file in runs of row groups (corpus/units.py `plan_units` on
its footer, which holds the row counts), a WARC in byte ranges of at least MIN_WARC_PIECE (a
piece reads the records that start in its range: corpus/warc.py) when it is uncompressed or a
gzip member per record, as Common Crawl writes it. Positions, and so ids, are the whole file's:
the pieces' rows, in order, are the rows one task reads. A gzip or zstd JSONL file, and a WARC
gzipped as one stream, is read whole by one task: a compressed stream cannot be entered midway
without an index of where its records start. The stages after documents cut their tasks from
its parts' row groups (corpus/units.py), so such a file is annotated by several tasks.
"""

import io
import json
import math
from collections import Counter
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from corpus.documents import registered_domain, stable_id, warc_documents
from corpus.extract import Extractor, Gate
from corpus.fs import file_version, open_input
from corpus.units import RowGroup, plan_units
from corpus.warc import GZIP_MAGIC, splittable, warc_problem

BAD_JSON = "input:bad_json"
NO_TEXT = "input:no_text"
TOO_LARGE = "input:too_large"
RULES = (BAD_JSON, NO_TEXT, TOO_LARGE)
NOT_EXTRACTED = "none"  # the `extractor` of documents given as input
COLUMNS = ("id", "url", "date", "title")  # fields with a column of their own, besides `text`
JSONL = (".jsonl", ".jsonl.gz", ".jsonl.zst")
# A longer line is rejected unread: it bounds a task's memory (a WARC body is cut at 2 MB).
MAX_LINE_BYTES = 16 << 20
HEAD_BYTES = 1 << 16  # what `file_problem` reads of each file
# Decompressed bytes read at a time. A stream that breaks midway loses the lines of the chunk
# it broke in (pyarrow returns none of a failed read), so the chunk is kept small.
READ_CHUNK = 1 << 16
PARQUET_MAGIC = b"PAR1"
UTF8_BOM = b"\xef\xbb\xbf"
ROWS_PER_BATCH = 1024
COUNT_CHUNK = 1 << 22  # bytes read at a time by `count_newlines`
# A WARC piece's least size. A piece reads its first record and the next piece's twice (to check
# they are sound, corpus/warc.py), and a tiny target set to cut the later stages' tasks
# (tests/test_faults.py: 1 KB) should not cut a 136 KB sample WARC into 130 tasks. Common Crawl's
# records average 2.7 KB gzipped (data/sample/commoncrawl-2020-34.warc.gz: 50 in 136 KB, requests
# and metadata included), so a 1 MiB piece holds hundreds.
MIN_WARC_PIECE = 1 << 20
# Compressed JSONL by its last suffix: pyarrow's codec name and the magic bytes the file starts with.
CODECS = {".gz": ("gzip", GZIP_MAGIC[:2]), ".zst": ("zstd", b"\x28\xb5\x2f\xfd")}


def input_format(path: str) -> str:
    """`jsonl`, `parquet` or `warc`, by the file name's ending (case-insensitive)."""
    name = path.lower()
    if name.endswith(JSONL):
        return "jsonl"
    if name.endswith(".parquet"):
        return "parquet"
    return "warc"


def _codec(path: str) -> tuple[str, bytes] | None:
    return next((codec for suffix, codec in CODECS.items() if path.lower().endswith(suffix)), None)


@dataclass(frozen=True)
class Piece:
    """What one task reads of an input file: all of it (`stop` None), or bytes [start, stop) of a
    plain JSONL file (the lines that start there) or of a WARC (the records that start there), or
    row groups [start, stop) of a Parquet file.
    `before` is the number of lines (bytes: newlines) or rows ahead of `start`; `index` the
    piece's number in its file (piece 0 records the file when it is bad)."""

    path: str
    start: int = 0
    stop: int | None = None
    before: int = 0
    index: int = 0

    def describe(self) -> dict[str, Any]:
        """The piece for a part summary."""
        return {"file": self.path, "range": None if self.stop is None else [self.start, self.stop]}


def plan_pieces(path: str, target_bytes: int, *, probe: bool = True) -> list[Piece]:
    """The pieces of one input file, about `target_bytes` each (module docstring); a file that is
    small, not splittable or unreadable here is one piece, read (or found bad) by its task. A plain
    JSONL file's pieces still need their `before` (`with_line_counts`); with `probe` False, a large
    WARC's pieces still need `warc_splittable` (`whole_files`), which reads its first members."""
    kind = input_format(path)
    try:
        if kind == "jsonl" and _codec(path) is None:
            pieces = _byte_ranges(path, file_version(path)[0], target_bytes)
        elif kind == "warc":
            pieces = _byte_ranges(path, file_version(path)[0], target_bytes, MIN_WARC_PIECE)
            if probe and len(pieces) > 1 and not warc_splittable(path):
                return [Piece(path)]
        elif kind == "parquet":
            with open_input(path) as f:
                meta = pq.ParquetFile(f).metadata
            groups = [
                RowGroup(meta.row_group(i).num_rows, meta.row_group(i).total_byte_size)
                for i in range(meta.num_row_groups)
            ]
            units = plan_units([(path, groups)], target_bytes)
            before = [sum(u.rows for u in units[:k]) for k in range(len(units))]
            pieces = [
                Piece(path, u.slices[0].first, u.slices[-1].stop, before[k], k) for k, u in enumerate(units)
            ]
        else:
            return [Piece(path)]
    except (OSError, pa.ArrowException):  # its task reads it whole and records why it is bad
        return [Piece(path)]
    return pieces if len(pieces) > 1 else [Piece(path)]


def _byte_ranges(path: str, size: int, target_bytes: int, least: int = 1) -> list[Piece]:
    """`size` bytes cut into equal ranges of at most `target_bytes`, unless that makes them
    shorter than `least`."""
    n = max(1, min(-(-size // target_bytes), size // least))
    cuts = [size * k // n for k in range(n + 1)]
    return [Piece(path, cuts[k], cuts[k + 1], index=k) for k in range(n)]


def warc_splittable(path: str) -> bool:
    """corpus/warc.py `splittable`, for a file that reads as a WARC at all (a bad one is read
    whole, and found bad, by its one task)."""
    if file_problem(path) is not None:
        return False
    with open_input(path) as f:
        return splittable(f)


def whole_files(pieces: Sequence[Piece], paths: Collection[str]) -> list[Piece]:
    """The pieces, with each file in `paths` one piece, read whole."""
    return [Piece(p.path) if p.path in paths else p for p in pieces if p.path not in paths or p.index == 0]


def count_newlines(piece: Piece) -> int:
    """Newline bytes in a JSONL piece's byte range: its `before` count for the pieces after it."""
    assert piece.stop is not None, f"{piece.path}: the whole file has no range to count"
    lines = 0
    with open_input(piece.path) as f:
        f.seek(piece.start)
        left = piece.stop - piece.start
        while left > 0 and (chunk := f.read(min(COUNT_CHUNK, left))):
            lines += chunk.count(b"\n")
            left -= len(chunk)
    return lines


def with_line_counts(pieces: Sequence[Piece], newlines: Sequence[int]) -> list[Piece]:
    """The pieces with `before` set from the newlines of each range (`count_newlines`, the
    pieces' order) ahead of it in its file."""
    out, seen = [], 0
    for piece, count in zip(pieces, newlines, strict=True):
        seen = 0 if piece.index == 0 else seen
        out.append(replace(piece, before=seen))
        seen += count
    return out


def file_problem(path: str) -> str | None:
    """Why the file at `path` cannot be read at all, or None. Reads its first 64 KiB (and a
    Parquet file's footer)."""
    try:
        with open_input(path) as f:
            head = f.read(HEAD_BYTES)
        if not head:
            return "empty file (0 bytes)"
        kind = input_format(path)
        if kind == "warc":
            return warc_problem(head)
        if kind == "parquet":
            return _parquet_problem(path, head)
        codec = _codec(path)
        if codec and not head.startswith(codec[1]):
            return f"not a {codec[0]} file (starts {head[:16]!r})"
        return None
    except OSError as exc:
        return f"unreadable ({type(exc).__name__}: {exc.strerror or exc})"


def _parquet_problem(path: str, head: bytes) -> str | None:
    if not head.startswith(PARQUET_MAGIC):
        return f"not a Parquet file (starts {head[:16]!r})"
    try:
        with open_input(path) as f:
            names = pq.read_schema(f).names
    except pa.ArrowException as exc:
        return f"unreadable Parquet file ({exc})"
    if "text" not in names:
        return f"Parquet file without a `text` column (columns: {', '.join(names[:20])})"
    return None


def input_documents(
    path: str,
    *,
    source: str,
    extractor: Extractor,
    counts: Counter,
    errors: list[dict[str, Any]],
    bad_files: list[dict[str, str]],
    gate: Gate | None = None,
    piece: Piece | None = None,
) -> Iterator[dict[str, Any]]:
    """The rows of one input file of any format, or of one `piece` of it; a bad file yields none
    and is recorded (by its first piece). The `gate` screens a WARC's HTML pages before extraction
    (corpus/documents.py)."""
    piece = piece or Piece(path)
    problem = file_problem(path)
    if problem is not None:
        if piece.index == 0:
            counts["input_files.bad"] += 1
            bad_files.append({"file": path, "reason": problem})
        return
    kind = input_format(path)
    if kind == "warc":
        span = None if piece.stop is None else (piece.start, piece.stop)
        yield from warc_documents(
            path, source=source, extractor=extractor, counts=counts, errors=errors, gate=gate, span=span
        )
    else:
        yield from READERS[kind](path, source=source, counts=counts, errors=errors, piece=piece)


def jsonl_documents(
    path: str, *, source: str, counts: Counter, errors: list[dict[str, Any]], piece: Piece | None = None
) -> Iterator[dict[str, Any]]:
    """A row per non-blank line of a JSONL file, plain, gzip or zstd, streamed; of a plain
    file's `piece`, the lines that start in its byte range."""
    piece = piece or Piece(path)
    line_no = 0
    codec = _codec(path)
    try:
        with open_input(path, counts) as f:
            first, budget = 0, math.inf
            if piece.stop is not None:
                assert codec is None, f"{path}: a compressed file is read whole"
                first, budget = _enter(f, piece)
            raw = pa.input_stream(f, compression=codec[0] if codec else None)
            stream = io.BufferedReader(raw, READ_CHUNK)
            for line_no, line in enumerate(_lines(stream, budget), first + 1):
                if line_no == 1 and line is not None:
                    line = line.removeprefix(UTF8_BOM)  # json.loads refuses it; Windows tools write it
                if line is not None and not line.strip():
                    continue
                counts["documents"] += 1
                counts["input_rows"] += 1
                yield _line_row(line, path=path, line_no=line_no, source=source)
    except (OSError, pa.ArrowException) as exc:  # the stream broke midway (corrupt gzip, I/O error)
        _read_error(counts, errors, path, line_no, "line", exc)


def _enter(f: Any, piece: Piece) -> tuple[int, float]:
    """Move `f` to the first line starting in the piece's byte range; return the number of lines
    ahead of it and the bytes from there to the range's end."""
    if piece.start == 0:
        return 0, piece.stop - piece.start
    f.seek(piece.start - 1)
    skipped = 0  # from start - 1 through the first newline: one byte when a line starts at `start`
    while chunk := f.readline(READ_CHUNK):
        skipped += len(chunk)
        if chunk.endswith(b"\n"):
            break
    # the line cut by `start` (when one is) belongs to the piece before
    return piece.before + (skipped > 1), piece.stop - (piece.start - 1 + skipped)


def _lines(stream: io.BufferedReader, budget: float = math.inf) -> Iterator[bytes | None]:
    """The stream's lines that start within `budget` bytes of its position; None for a line
    longer than MAX_LINE_BYTES, whose rest is skipped."""
    read = 0
    while read < budget and (line := stream.readline(MAX_LINE_BYTES + 1)):
        read += len(line)
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            while rest := stream.readline(READ_CHUNK):
                read += len(rest)
                if rest.endswith(b"\n"):
                    break
            yield None
        else:
            yield line


def _line_row(line: bytes | None, *, path: str, line_no: int, source: str) -> dict[str, Any]:
    if line is None:
        return _unparsed(path, line_no, source, TOO_LARGE)
    try:
        fields = json.loads(line)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError; RecursionError: [[[[...
        return _unparsed(path, line_no, source, BAD_JSON)
    if not isinstance(fields, dict):
        return _unparsed(path, line_no, source, BAD_JSON)
    return document_row(fields, path=path, position=line_no, source=source)


def parquet_documents(
    path: str, *, source: str, counts: Counter, errors: list[dict[str, Any]], piece: Piece | None = None
) -> Iterator[dict[str, Any]]:
    """A row per row of a Parquet file with a `text` column (of its `piece`'s row groups), read a
    batch at a time."""
    piece = piece or Piece(path)
    row_no = piece.before
    try:
        with open_input(path, counts) as f:
            groups = None if piece.stop is None else range(piece.start, piece.stop)
            for batch in pq.ParquetFile(f).iter_batches(ROWS_PER_BATCH, row_groups=groups):
                for fields in batch.to_pylist():
                    row_no += 1
                    counts["documents"] += 1
                    counts["input_rows"] += 1
                    yield document_row(fields, path=path, position=row_no, source=source)
    except (OSError, pa.ArrowException) as exc:  # a corrupt page or row group midway
        _read_error(counts, errors, path, row_no, "row", exc)


READERS = {"jsonl": jsonl_documents, "parquet": parquet_documents}


def document_row(fields: dict[str, Any], *, path: str, position: int, source: str) -> dict[str, Any]:
    """The document-schema row of one input document (a JSON object or a Parquet row)."""
    text = fields.get("text")
    has_text = isinstance(text, str) and bool(text.strip())
    url = _string(fields.get("url"))
    extra = {k: v for k, v in fields.items() if k != "text" and k not in COLUMNS}
    return {
        "id": _string(fields.get("id")) or stable_id(f"{path}\x00{position}"),
        "url": url,
        "domain": registered_domain(url),
        "warc_file": path,
        "source": source,
        "title": _string(fields.get("title")),
        "text": _string(text) if has_text else None,
        "date": _string(fields.get("date")),
        "extractor": NOT_EXTRACTED,
        # ensure_ascii: JSON escapes keep a lone surrogate ("\ud800" in the input) writable as UTF-8
        "metadata": json.dumps(_finite(extra), sort_keys=True, default=str) if extra else None,
        "reject": None if has_text else NO_TEXT,
    }


def _unparsed(path: str, line_no: int, source: str, rule: str) -> dict[str, Any]:
    return {
        "id": stable_id(f"{path}\x00{line_no}"),
        "warc_file": path,
        "source": source,
        "extractor": NOT_EXTRACTED,
        "metadata": json.dumps({"line": line_no}),
        "reject": rule,
    }


def _string(value: Any) -> str | None:
    """A column's string: strings as they are (a lone surrogate, which JSON can carry and UTF-8
    cannot, becomes U+FFFD), objects and lists as JSON, other values by `str`, NaN as None."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in value)
        return value
    if isinstance(value, dict | list):
        return json.dumps(_finite(value), sort_keys=True, default=str)
    return str(value)


def _finite(value: Any) -> Any:
    """`value` with NaN and infinities as None: JSON has no such numbers (DuckDB refuses them)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _read_error(
    counts: Counter, errors: list[dict[str, Any]], path: str, position: int, unit: str, exc: Exception
) -> None:
    counts["errors"] += 1
    message = " ".join(str(exc).split()) or type(exc).__name__
    errors.append({"file": path, "offset": position, "message": f"after {unit} {position}: {message}"[:500]})

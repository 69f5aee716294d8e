"""Reading WARCs: FastWARC (resiliparse's `fastwarc`) against the warcio reader of corpus/warc.py.

    python bench/warc_read.py --fuzzed 200 --rounds 5

Agreement: every WARC under ../shared/data (crawl-sample, Common Crawl, Internet Archive, ClueWeb
quirks, revisits, WET and WAT) and `--fuzzed` damaged copies made as bench/fuzz.py makes them
(corpus/faults.py, seeded by index) are read by both readers, and the records compared field by
field: every field of `WarcRecord` the documents stage reads (offset, type, record id, URI, date,
parsed fetch time, HTTP status, media type, charset, payload bytes, truncation) and the errors
(how many, at which offsets; their wording necessarily differs). Speed: the files of
crawl-sample, already in memory, read by both readers in turns in one process (`--rounds`
rounds, reading only, no extraction), timed in CPU seconds of this process (one core), as
records/s and compressed MB/s. The machine is shared: the ratio and the load average are what to
read, not the absolute rates.

`fastwarc_read` maps FastWARC's records to `WarcRecord` with the rules of `corpus.warc._parse`:
the same HTTP-status, media-type and HTML-sniffing decisions, the same payload cap, the URI
with its angle brackets stripped and its spaces escaped as warcio does. FastWARC has no resync
or error reporting of its own: an exception ends the file as one `WarcError`.
"""

import argparse
import io
import logging
import os
import random
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fastwarc.warc import ArchiveIterator  # noqa: E402

from corpus.faults import MUTATIONS  # noqa: E402
from corpus.warc import (  # noqa: E402
    SNIFFED_TYPES,
    WarcError,
    WarcRecord,
    _media_type,
    is_html,
    looks_like_html,
    parse_warc_date,
    read_warc,
)

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
MAX_PAYLOAD = 2_000_000  # the extractor's default max_html_bytes (conf/pipeline.yaml)
MAX_FUZZ_BASE_BYTES = 300_000  # as bench/fuzz.py: small real files as fuzz bases
FIELDS = WarcRecord.__slots__


def real_warcs() -> list[Path]:
    return sorted(p for p in SHARED.rglob("*.warc*") if p.is_file())


def fuzzed(n: int) -> list[tuple[str, bytes]]:
    """bench/fuzz.py's first `n` files: base i % bases, mutation i % mutations, seed i."""
    small = sorted(p for p in SHARED.glob("warc-*/*.warc.gz") if p.stat().st_size <= MAX_FUZZ_BASE_BYTES)
    bases = [p for p in small if not p.name.endswith((".wat.gz", ".wet.gz"))]
    names = sorted(MUTATIONS)
    out = []
    for i in range(n):
        base, mutation = bases[i % len(bases)], names[i % len(names)]
        blob, _ = MUTATIONS[mutation](base.read_bytes(), random.Random(i))
        out.append((f"fuzz {i:03d} {mutation} {base.name}", blob))
    return out


def warcio_read(blob: bytes) -> list:
    return list(read_warc(io.BytesIO(blob), max_payload_bytes=MAX_PAYLOAD))


def fastwarc_read(blob: bytes) -> list:
    items: list = []
    offset = 0
    try:
        for record in ArchiveIterator(io.BytesIO(blob), parse_http=True, auto_decode="all"):
            offset = record.stream_pos
            items.append(_record(record))
    except Exception as exc:  # FastWARC's only fault report: the file ends here
        items.append(WarcError(offset, f"{type(exc).__name__}: {exc}"))
    return items


def _record(record) -> WarcRecord:
    headers = record.headers
    rec_type = headers.get("WARC-Type")
    status = content_type = charset = payload = None
    truncated = False
    if rec_type == "response" and record.is_http:
        status = record.http_headers.status_code
        content_type, charset = _media_type(record.http_headers.get("Content-Type"))
        if status == 200 and (is_html(content_type) or content_type in SNIFFED_TYPES):
            payload, truncated = _capped(record.reader.read(MAX_PAYLOAD + 1))
            if not is_html(content_type) and not looks_like_html(payload):
                payload, truncated = None, False
    elif rec_type == "conversion":
        payload, truncated = _capped(record.reader.read(MAX_PAYLOAD + 1))
    url = headers.get("WARC-Target-URI")
    date = headers.get("WARC-Date")
    return WarcRecord(
        offset=record.stream_pos,
        rec_type=rec_type or "other",
        record_id=headers.get("WARC-Record-ID"),
        url=url.strip("<>").replace(" ", "%20") if url else None,
        date=date,
        fetch_time=parse_warc_date(date),
        status=status,
        content_type=content_type,
        charset=charset,
        payload=payload,
        payload_truncated=truncated,
    )


def _capped(body: bytes) -> tuple[bytes, bool]:
    return (body[:MAX_PAYLOAD], True) if len(body) > MAX_PAYLOAD else (body, False)


def differences(ours: list, theirs: list) -> Counter:
    """What differs between two readings of one file, by field (`errors`: count or offsets)."""
    diff: Counter = Counter()
    records = [[i for i in items if isinstance(i, WarcRecord)] for items in (ours, theirs)]
    errors = [[i.offset for i in items if isinstance(i, WarcError)] for items in (ours, theirs)]
    if errors[0] != errors[1]:
        diff["errors"] += 1
    if len(records[0]) != len(records[1]):
        diff["record count"] += 1
    for a, b in zip(*records, strict=False):
        for field in FIELDS:
            if getattr(a, field) != getattr(b, field):
                diff[field] += 1
    return diff


def agreement(files: list[tuple[str, bytes]], verbose: bool) -> None:
    """Per file group (the real file, or the fuzz mutation): files, files that differ, and the
    fields that differ in how many files."""
    total: Counter = Counter()
    groups: dict[str, Counter] = {}
    differing = 0
    for name, blob in files:
        group = groups.setdefault(name.split()[2] if name.startswith("fuzz ") else name, Counter())
        group["files"] += 1
        ours, theirs = warcio_read(blob), fastwarc_read(blob)
        diff = differences(ours, theirs)
        total["records"] += sum(isinstance(i, WarcRecord) for i in ours)
        total["errors"] += sum(isinstance(i, WarcError) for i in ours)
        total["fastwarc errors"] += sum(isinstance(i, WarcError) for i in theirs)
        if diff:
            differing += 1
            group["differ"] += 1
            group.update({field: 1 for field in diff})
            if verbose:
                print(f"  differs: {name}: {dict(diff)}")
    for name, group in groups.items():
        if group["differ"]:
            fields = ", ".join(f"{k} {v}" for k, v in group.items() if k not in ("files", "differ"))
            print(f"  {name}: {group['differ']} of {group['files']} differ ({fields})")
    print(
        f"  {len(files)} files, {differing} differ; warcio: {total['records']} records, "
        f"{total['errors']} errors; FastWARC: {total['fastwarc errors']} errors"
    )


def speed(rounds: int) -> None:
    blobs = [p.read_bytes() for p in sorted((SHARED / "crawl-sample").glob("*.warc.gz"))]
    mb = sum(map(len, blobs)) / 1e6
    seconds: dict[str, list[float]] = {"warcio": [], "fastwarc": []}
    records = {}
    for _ in range(rounds):
        for name, read in (("warcio", warcio_read), ("fastwarc", fastwarc_read)):
            started = time.process_time()
            records[name] = sum(len(read(blob)) for blob in blobs)
            seconds[name].append(time.process_time() - started)
    for name, times in seconds.items():
        best, mean = min(times), sum(times) / len(times)
        print(
            f"  {name:<9} {records[name]} items, CPU s per round: best {best:.3f}, mean {mean:.3f}; "
            f"{records[name] / best:,.0f} records/s, {mb / best:.1f} MB/s (best round)"
        )
    ratios = [w / f for w, f in zip(seconds["warcio"], seconds["fastwarc"], strict=True)]
    print(
        f"  FastWARC faster by {min(ratios):.2f}x to {max(ratios):.2f}x per round "
        f"({mb:.1f} MB compressed, load average {os.getloadavg()[0]:.2f})"
    )


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--fuzzed", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--verbose", action="store_true", help="every file that differs, with its fields")
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # warcio's per-record URI warnings
    print(f"real WARCs under {SHARED}:")
    agreement([(str(p.relative_to(SHARED)), p.read_bytes()) for p in real_warcs()], args.verbose)
    print(f"fuzzed WARCs ({args.fuzzed}):")
    agreement(fuzzed(args.fuzzed), args.verbose)
    print(f"speed, crawl-sample, {args.rounds} rounds:")
    speed(args.rounds)


if __name__ == "__main__":
    main()

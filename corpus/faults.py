"""Fault injection for WARC files: the damage real crawls show, made on purpose and reproducibly.

Used by tests/test_warc_fuzz.py and bench/fuzz.py to check the reader's promises: never a crash
or a hang, every record before the first fault recovered, the fault counted (a file that is no
WARC at all: listed as a bad input file). Each mutation takes
the bytes of a multi-member `.warc.gz` and a `random.Random`, and returns the damaged bytes and
the offset of the first damaged byte (members that end before it must read back intact).
Mutations that rewrite a record recompress only that member, as a crawler writing bad
headers would.
"""

import gzip
import random
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Member:
    offset: int
    end: int
    data: bytes  # decompressed


def members(blob: bytes) -> list[Member]:
    """The gzip members of an intact file, with their raw offsets."""
    out, pos = [], 0
    while pos < len(blob):
        inflater = zlib.decompressobj(wbits=31)
        data = inflater.decompress(blob[pos:])
        end = len(blob) - len(inflater.unused_data)
        out.append(Member(pos, end, data))
        pos = end
    return out


def _recompress(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def _replace_member(blob: bytes, member: Member, data: bytes) -> bytes:
    return blob[: member.offset] + _recompress(data) + blob[member.end :]


def _html_members(parts: list[Member]) -> list[Member]:
    return [m for m in parts if b"WARC-Type: response" in m.data[:2000] and b"text/html" in m.data[:4000]]


def truncate(blob: bytes, rng: random.Random) -> tuple[bytes, int]:
    at = rng.randrange(1, len(blob))
    return blob[:at], at


def bit_flip(blob: bytes, rng: random.Random) -> tuple[bytes, int]:
    at = rng.randrange(len(blob))
    damaged = bytearray(blob)
    damaged[at] ^= 1 << rng.randrange(8)
    return bytes(damaged), at


def garbage_between_records(blob: bytes, rng: random.Random) -> tuple[bytes, int]:
    at = rng.choice(members(blob)[1:] or members(blob)).offset
    junk = rng.randbytes(rng.randrange(1, 4096))
    return blob[:at] + junk + blob[at:], at


def corrupt_member(blob: bytes, rng: random.Random) -> tuple[bytes, int]:
    member = rng.choice(members(blob))
    start = member.offset + min(12, member.end - member.offset - 1)
    length = rng.randrange(1, 64)
    junk = rng.randbytes(length)
    return blob[:start] + junk + blob[start + length :], member.offset


def wrong_content_length(blob: bytes, rng: random.Random) -> tuple[bytes, int]:
    """A record whose WARC Content-Length is off by some bytes, larger or smaller."""
    member = rng.choice(members(blob))
    match = re.search(rb"Content-Length: (\d+)", member.data)
    if match is None:
        return blob, len(blob)
    wrong = max(0, int(match.group(1)) + rng.choice([-1, 1]) * rng.randrange(1, 5000))
    data = member.data[: match.start(1)] + str(wrong).encode() + member.data[match.end(1) :]
    return _replace_member(blob, member, data), member.offset


def _set_length(warc_headers: bytes, length: int) -> bytes:
    return re.sub(rb"Content-Length: \d+", b"Content-Length: %d" % length, warc_headers, count=1)


def bad_http_headers(blob: bytes, rng: random.Random) -> tuple[bytes, int]:
    """A response whose HTTP status line or header block is malformed, the WARC record sound
    (its Content-Length fixed): servers and proxies write such responses, crawlers store them."""
    candidates = _html_members(members(blob))
    if not candidates:
        return blob, len(blob)
    member = rng.choice(candidates)
    header_end = member.data.index(b"\r\n\r\n") + 4
    line_end = member.data.index(b"\r\n", header_end)
    broken = rng.choice(
        [b"HTTP/1.1 2OO OK", b"HTTP/1.1", b"\x00\x01\x02 not http", b"HTTP/1.1 200 OK\r\nContent-Type", b""]
    )
    block_end = len(member.data) - 4  # the record ends with \r\n\r\n after its block
    block = broken + member.data[line_end:block_end]
    data = _set_length(member.data[:header_end], len(block)) + block + b"\r\n\r\n"
    return _replace_member(blob, member, data), member.offset


def missing_headers(blob: bytes, rng: random.Random) -> tuple[bytes, int]:
    """A response record without WARC-Record-ID, WARC-Target-URI or WARC-Date (or all three)."""
    candidates = _html_members(members(blob))
    if not candidates:
        return blob, len(blob)
    member = rng.choice(candidates)
    names = rng.choice(
        [
            [b"WARC-Record-ID"],
            [b"WARC-Target-URI"],
            [b"WARC-Date"],
            [b"WARC-Record-ID", b"WARC-Target-URI", b"WARC-Date"],
        ]
    )
    header_end = member.data.index(b"\r\n\r\n") + 4
    headers = member.data[:header_end]
    for name in names:
        headers = re.sub(rb"(?m)^" + name + rb":[^\r\n]*\r\n", b"", headers)
    return _replace_member(blob, member, headers + member.data[header_end:]), member.offset


def _set_payload(
    member: Member, body: bytes, content_type: bytes | None = None, extra_headers: bytes = b""
) -> bytes:
    """Rewrite an HTTP response record with a new body (and Content-Type), fixing both lengths."""
    header_end = member.data.index(b"\r\n\r\n") + 4
    warc_headers = member.data[:header_end]
    http_end = member.data.index(b"\r\n\r\n", header_end) + 4
    http = member.data[header_end:http_end]
    http = re.sub(rb"(?im)^(content-length|transfer-encoding|content-encoding):[^\r\n]*\r\n", b"", http)
    if content_type is not None:
        http = re.sub(rb"(?im)^content-type:[^\r\n]*", b"Content-Type: " + content_type, http)
    http = http[:-2] + extra_headers + b"\r\n"  # before the blank line that ends the headers
    block = http + body
    warc_headers = re.sub(rb"Content-Length: \d+", b"Content-Length: %d" % len(block), warc_headers)
    warc_headers = re.sub(rb"WARC-(Block|Payload)-Digest:[^\r\n]*\r\n", b"", warc_headers)
    return warc_headers + block + b"\r\n\r\n"


def _payload_mutation(make_body: Callable[[random.Random], tuple[bytes, bytes | None]]):
    def mutate(blob: bytes, rng: random.Random) -> tuple[bytes, int]:
        candidates = _html_members(members(blob))
        if not candidates:
            return blob, len(blob)
        member = rng.choice(candidates)
        body, content_type, *extra = make_body(rng)
        data = _set_payload(member, body, content_type, *extra)
        # Valid WARC, just hostile content: no record is lost, so the "first fault" is the end.
        return _replace_member(blob, member, data), len(blob) + 1

    return mutate


def _huge(rng: random.Random) -> tuple[bytes, bytes | None]:
    return b"<html><body><p>" + b"x" * rng.randrange(3_000_000, 6_000_000) + b"</p></body></html>", None


def _empty(rng: random.Random) -> tuple[bytes, bytes | None]:
    return b"", None


def _mislabelled(rng: random.Random) -> tuple[bytes, bytes | None]:
    body = "<html><body><p>Grüße aus Köln, ça va très bien. Ein schöner Tag.</p></body></html>".encode()
    charset = rng.choice([b"utf-16", b"x-no-such-charset", b"ascii"])
    return body, b"text/html; charset=" + charset


def _nested(rng: random.Random) -> tuple[bytes, bytes | None]:
    depth = rng.randrange(5_000, 200_000)
    return b"<html><body>" + b"<div>" * depth + b"deep" + b"</div>" * depth + b"</body></html>", None


def _lying_encoding(rng: random.Random) -> tuple[bytes, bytes | None, bytes]:
    """Plain HTML declared as compressed (or compressed with one codec, declared as another)."""
    body = b"<html><body><p>" + b"Plain text that is not compressed at all. " * 40 + b"</p></body></html>"
    encoding = rng.choice([b"gzip", b"deflate", b"br", b"x-unknown"])
    if rng.random() < 0.3:
        body, encoding = gzip.compress(body, mtime=0), rng.choice([b"br", b"deflate"])
    return body, None, b"Content-Encoding: " + encoding + b"\r\n"


huge_payload = _payload_mutation(_huge)
empty_payload = _payload_mutation(_empty)
wrong_charset = _payload_mutation(_mislabelled)
deep_nesting = _payload_mutation(_nested)
wrong_content_encoding = _payload_mutation(_lying_encoding)

# Files that are not WARCs at all, as a crawl's folder holds them: a failed download, a gzipped
# log or CSV, an image. The whole file is the fault (offset 0); the documents stage lists it
# as a bad input file (corpus/inputs.py) and goes on.
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def zero_bytes(blob: bytes, rng: random.Random) -> tuple[bytes, int]:
    return b"", 0


def gzip_text(blob: bytes, rng: random.Random) -> tuple[bytes, int]:
    lines = (f"{rng.randrange(10**9)},{rng.random():.6f},{rng.choice(['GET', 'POST'])}\n" for _ in range(500))
    return gzip.compress("".join(lines).encode(), mtime=0), 0


def png_file(blob: bytes, rng: random.Random) -> tuple[bytes, int]:
    return PNG_SIGNATURE + b"\x00\x00\x00\rIHDR" + rng.randbytes(rng.randrange(100, 20_000)), 0


NOT_WARC = ("zero_bytes", "gzip_text", "png_file")

MUTATIONS: dict[str, Callable[[bytes, random.Random], tuple[bytes, int]]] = {
    "truncate": truncate,
    "bit_flip": bit_flip,
    "garbage_between_records": garbage_between_records,
    "corrupt_member": corrupt_member,
    "wrong_content_length": wrong_content_length,
    "huge_payload": huge_payload,
    "empty_payload": empty_payload,
    "wrong_charset": wrong_charset,
    "deep_nesting": deep_nesting,
    "bad_http_headers": bad_http_headers,
    "missing_headers": missing_headers,
    "wrong_content_encoding": wrong_content_encoding,
    "zero_bytes": zero_bytes,
    "gzip_text": gzip_text,
    "png_file": png_file,
}


def clean_cut(original: bytes, blob: bytes) -> bool:
    """`blob` is `original` cut exactly at the end of a gzip member: a shorter WARC, valid to the
    last byte. No reader can tell that records are missing, so losing them is not a silent loss."""
    return (
        len(blob) < len(original)
        and original.startswith(blob)
        and any(m.end == len(blob) for m in members(original))
    )


def intact_record_ids(blob: bytes, first_fault: int) -> list[str]:
    """WARC-Record-IDs of the members that end before the first damaged byte."""
    ids = []
    for member in members(blob):
        if member.end > first_fault:
            break
        headers = member.data[: member.data.find(b"\r\n\r\n")]
        ids += [m.decode() for m in re.findall(rb"WARC-Record-ID: (<[^>\r\n]+>)", headers)]
    return ids

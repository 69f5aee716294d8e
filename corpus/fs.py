"""Input files on any filesystem: local paths, or URIs that fsspec knows (`s3://`, `gs://`, `hdfs://`).

One helper per operation the input side needs: `expand` (a glob to sorted files), `open_input`
(binary, streaming, seekable), `file_version` (size and a version for fingerprints) and
`parent_name`. A plain path or a `file://` URI is a local file, read with the builtin `open` as
before; anything else goes through fsspec, which imports the filesystem's package on first use
(s3fs for `s3://`).

Endpoint, region and credentials are never passed here: s3fs gets them from botocore, which reads
the standard AWS sources (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
`AWS_DEFAULT_REGION`, ~/.aws/config, instance roles), so nothing a run records can hold a secret.

Transient errors (503 SlowDown, a reset connection, a timeout) are retried with exponential
backoff, at most TRIES times per call, on top of the retries s3fs and botocore make themselves;
each retry is logged and, where the caller passes a `counts` Counter, counted as `io.retries`
(the documents stage's manifest). A read that fails midway reopens the file at the offset it had
reached, so a reset connection costs one ranged request, not the file.
"""

import errno
import functools
import glob
import gzip
import io
import itertools
import logging
import os
import posixpath
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import fsspec

TRIES = 5
FIRST_BACKOFF_S = 0.2  # doubled after each failure: 0.2 + 0.4 + 0.8 + 1.6 s before the last try
# Bytes fetched per ranged GET (s3fs's default is 50 MiB): bounds a task's read-ahead memory.
BLOCK_BYTES = 8 << 20
BUFFER_BYTES = 1 << 16
# OSError numbers s3fs gives throttling and unavailable services (503 SlowDown is EBUSY).
TRANSIENT_ERRNOS = frozenset({errno.EBUSY, errno.EAGAIN, errno.ETIMEDOUT, errno.ECONNRESET})
RETRIES = "io.retries"
log = logging.getLogger(__name__)
T = TypeVar("T")


def is_remote(path: str) -> bool:
    """True for a URI other than `file://`: read through fsspec rather than `open`."""
    protocol, sep, _ = path.partition("://")
    return bool(sep) and protocol != "file"


def local_path(path: str) -> str:
    """`file:///x/y` → `/x/y`; a plain path unchanged."""
    return path.removeprefix("file://")


def filesystem(uri: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem of `uri` and the path within it (`s3://b/k` → S3FileSystem, `b/k`)."""
    return fsspec.core.url_to_fs(uri)


def is_transient(exc: BaseException) -> bool:
    """A failure that may pass on its own: throttling, a dropped connection, a timeout."""
    if isinstance(exc, (ConnectionError, TimeoutError, *_client_errors())):  # FSTimeoutError: a TimeoutError
        return True
    return isinstance(exc, OSError) and exc.errno in TRANSIENT_ERRNOS


@functools.cache
def _client_errors() -> tuple[type[BaseException], ...]:
    """Connection failures of botocore and aiohttp that s3fs raises as they are once its own retries
    are spent (they are not OSErrors): an unreachable endpoint, a closed or broken connection."""
    errors: list[type[BaseException]] = []
    try:
        from botocore.exceptions import ConnectionError as BotoConnectionError
        from botocore.exceptions import HTTPClientError

        errors += [BotoConnectionError, HTTPClientError]
    except ImportError:  # no s3fs installed: no such errors either
        pass
    try:
        from aiohttp import ClientConnectionError, ClientPayloadError

        errors += [ClientConnectionError, ClientPayloadError]
    except ImportError:
        pass
    return tuple(errors)


def with_retries(action: Callable[[], T], *, what: str, counts: Counter | None = None, sleep=time.sleep) -> T:
    """`action()`, retried on transient errors with exponential backoff, TRIES times at most."""
    for attempt in range(1, TRIES + 1):
        try:
            return action()
        except Exception as exc:
            if attempt == TRIES or not is_transient(exc):
                raise
            delay = FIRST_BACKOFF_S * 2 ** (attempt - 1)
            # The exception's text names the file and the error, never a credential.
            log.warning(
                "%s: %s: %s; retry %d of %d in %.1f s",
                what,
                type(exc).__name__,
                exc,
                attempt,
                TRIES - 1,
                delay,
            )
            if counts is not None:
                counts[RETRIES] += 1
            sleep(delay)
    raise AssertionError("unreachable")


def expand(pattern: str) -> list[str]:
    """The files matching a glob, sorted: local paths as `glob` gives them (`~` expanded), remote
    files as URIs of the pattern's scheme (listed by the filesystem, e.g. S3 ListObjectsV2)."""
    if not is_remote(pattern):
        found = glob.glob(os.path.expanduser(local_path(pattern)))
        return sorted(p for p in found if os.path.isfile(p))
    fs, path = filesystem(pattern)
    matches = with_retries(lambda: fs.glob(path, detail=True), what=pattern)
    return sorted(fs.unstrip_protocol(p) for p, info in matches.items() if info.get("type") == "file")


def file_version(path: str) -> tuple[int, Any]:
    """(size, version) of a file for input fingerprints: the modification time in ns locally, the
    ETag on object stores (else their modification time). Raises FileNotFoundError naming it."""
    try:
        if not is_remote(path):
            st = Path(local_path(path)).stat()
            return st.st_size, st.st_mtime_ns
        fs, inner = filesystem(path)
        info = with_retries(lambda: fs.info(inner), what=path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    version = info.get("ETag") or info.get("etag") or info.get("mtime") or info.get("LastModified")
    return int(info["size"]), str(version).strip('"') if version is not None else None


def parent_name(path: str) -> str:
    """The name of the folder (or bucket) a file sits in: `crawl-sample` for `s3://b/crawl-sample/x`."""
    if not is_remote(path):
        return Path(local_path(path)).resolve().parent.name
    return posixpath.basename(posixpath.dirname(path.partition("://")[2].rstrip("/")))


def open_input(path: str, counts: Counter | None = None) -> BinaryIO:
    """The file at `path` open for binary reading, seekable; remote reads retried (module docstring)."""
    if not is_remote(path):
        return open(local_path(path), "rb")
    return io.BufferedReader(_RetryingReader(path, counts), BUFFER_BYTES)


class _RetryingReader(io.RawIOBase):
    """A remote file read through fsspec, reopened at the current offset after a transient failure."""

    def __init__(self, uri: str, counts: Counter | None):
        self.uri, self.counts = uri, counts
        self.fs, self.path = filesystem(uri)
        self.pos = 0
        self.file = None
        self.size: int | None = None  # asked for on the first seek from the end
        with_retries(self._open, what=uri, counts=counts)  # a missing file fails here, not on a read

    def _open(self):
        if self.file is None:
            self.file = self.fs.open(self.path, "rb", block_size=BLOCK_BYTES)
            self.file.seek(self.pos)
        return self.file

    def _read(self, n: int) -> bytes:
        try:
            return self._open().read(n)
        except Exception:
            self._drop()  # reopened at self.pos by the next try
            raise

    def _drop(self) -> None:
        file, self.file = self.file, None
        if file is not None:
            try:
                file.close()
            except Exception:  # the connection is already broken; nothing to flush on a read
                pass

    def readinto(self, buffer) -> int:
        data = with_retries(lambda: self._read(len(buffer)), what=self.uri, counts=self.counts)
        buffer[: len(data)] = data
        self.pos += len(data)
        return len(data)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_END and self.size is None:
            self.size = with_retries(lambda: self.fs.size(self.path), what=self.uri, counts=self.counts)
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        self.pos = max(base + offset, 0)
        if self.file is not None:
            self.file.seek(self.pos)  # fsspec files seek without a request
        return self.pos

    def close(self) -> None:
        self._drop()
        super().close()


PATH_LIST_SUFFIXES = (".paths", ".paths.gz")


def is_path_list(path: str) -> bool:
    """A Common Crawl style path list (`warc.paths.gz`): one file path a line."""
    return path.lower().endswith(PATH_LIST_SUFFIXES)


def read_path_list(
    path: str, *, prefix: str | None = None, skip: int = 0, limit: int | None = None
) -> list[str]:
    """The files a path list names, in its order: entries `skip` to `skip + limit` (blank lines are
    not entries), each joined to `prefix` (Common Crawl's lists are relative to s3://commoncrawl/).
    Only those lines are read. Without a prefix every entry must be absolute (a URI or /path)."""
    stop = None if limit is None else skip + limit
    try:
        with open_input(path) as raw:
            stream = gzip.open(raw) if path.lower().endswith(".gz") else raw
            entries = (line.decode("utf-8").strip() for line in stream)
            files = [_join(prefix, e, path) for e in itertools.islice(filter(None, entries), skip, stop)]
    except FileNotFoundError:
        raise FileNotFoundError(f"--input {path}: no such file") from None
    except (OSError, EOFError, UnicodeDecodeError) as exc:  # not gzip, cut short, not text
        raise ValueError(f"--input {path}: unreadable path list ({type(exc).__name__}: {exc})") from None
    if not files:
        raise ValueError(f"--input {path}: names no file (after skipping {skip} entries)")
    return files


def _join(prefix: str | None, entry: str, list_path: str) -> str:
    if prefix:
        return prefix.rstrip("/") + "/" + entry.lstrip("/")
    if "://" in entry or entry.startswith("/"):
        return entry
    raise ValueError(
        f"--input {list_path}: {entry!r} is a relative path; pass --input-prefix "
        "(s3://commoncrawl/ for Common Crawl's lists)"
    )

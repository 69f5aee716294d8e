"""Files on any filesystem: local paths, or URIs that fsspec knows (`s3://`, `gs://`, `hdfs://`).

One helper per operation: on the input side `expand` (a glob to sorted files), `open_input`
(binary, streaming, seekable), `file_version` (size and a version for fingerprints) and
`parent_name`; on the output side (a run directory) `join`, `exists`, `is_file`, `make_dirs`,
`remove`, `open_output` (a file that appears whole or not at all), `copy_file`, `list_files` and
`copy_tree` (a folder's files), `local_copy` (for a library that needs a local file) and
`remove_temporaries`. A plain path or a
`file://` URI is a local file, handled with `open`, `os` and `shutil` as before; anything else goes
through fsspec, which imports the filesystem's package on first use (s3fs for `s3://`).

Writing without rename: a local file is written under an attempt-unique temporary name and renamed
into place (`temporary_path`); an object store has no atomic rename, but an object is created
atomically when its upload completes, so `open_output` writes the final name directly with fsspec's
deferred commit (`autocommit=False`: S3 completes the multipart upload only on `commit()`, and a
failed writer's `discard()` aborts it). Either way a reader never sees half a file, and two attempts
writing one deterministic name leave the same bytes, whichever finishes last.

Endpoint, region and credentials are never passed here: s3fs gets them from botocore, which reads
the standard AWS sources (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
`AWS_DEFAULT_REGION`, ~/.aws/config, instance roles), so nothing a run records can hold a secret.

Transient errors (503 SlowDown, a reset connection, a timeout) are retried with exponential
backoff, at most TRIES times per call, on top of the retries s3fs and botocore make themselves;
each retry is logged and, where the caller passes a `counts` Counter, counted as `io.retries`
(the documents stage's manifest). A read that fails midway reopens the file at the offset it had
reached, so a reset connection costs one ranged request, not the file.
"""

import contextlib
import errno
import functools
import glob
import gzip
import hashlib
import io
import itertools
import logging
import os
import posixpath
import shutil
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import fsspec

TRIES = 5
FIRST_BACKOFF_S = 0.2  # doubled after each failure: 0.2 + 0.4 + 0.8 + 1.6 s before the last try
# Bytes fetched per ranged GET (s3fs's default is 50 MiB): bounds a task's read-ahead memory.
BLOCK_BYTES = 8 << 20
BUFFER_BYTES = 1 << 16
COPY_CHUNK_BYTES = 1 << 20
# OSError numbers s3fs gives throttling and unavailable services (503 SlowDown is EBUSY).
TRANSIENT_ERRNOS = frozenset({errno.EBUSY, errno.EAGAIN, errno.ETIMEDOUT, errno.ECONNRESET})
RETRIES = "io.retries"
log = logging.getLogger(__name__)
T = TypeVar("T")


def is_remote(path: str | Path) -> bool:
    """True for a URI other than `file://`: read through fsspec rather than `open`."""
    protocol, sep, _ = str(path).partition("://")
    return bool(sep) and protocol != "file"


def local_path(path: str) -> str:
    """`file:///x/y` → `/x/y`; a plain path unchanged."""
    return path.removeprefix("file://")


def filesystem(uri: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem of `uri` and the path within it (`s3://b/k` → S3FileSystem, `b/k`).

    Its cached listings are dropped first: a run directory is written by other processes (the
    executors), so what this process listed before may be stale (a stage's parts, a manifest)."""
    fs, path = fsspec.core.url_to_fs(uri)
    fs.invalidate_cache()
    return fs, path


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


# region output: a run directory on any filesystem

TEMPORARY_SUFFIX = ".tmp"


def join(base: str | Path, *names: str) -> str:
    """`base/name/...`: a URI keeps its scheme (`s3://b/run` + `kept` → `s3://b/run/kept`)."""
    base = str(base)
    if is_remote(base):
        return "/".join([base.rstrip("/"), *names])
    return os.path.join(local_path(base), *names)


def exists(path: str | Path) -> bool:
    """A file or a directory (on an object store: an object, or a prefix that holds one)."""
    path = str(path)
    if not is_remote(path):
        return os.path.exists(local_path(path))
    fs, inner = filesystem(path)
    return with_retries(lambda: fs.exists(inner), what=path)


def is_file(path: str | Path) -> bool:
    path = str(path)
    if not is_remote(path):
        return os.path.isfile(local_path(path))
    fs, inner = filesystem(path)
    return with_retries(lambda: fs.isfile(inner), what=path)


def make_dirs(path: str | Path) -> None:
    """Create a local directory and its parents; nothing on an object store, where a folder is only
    the common prefix of its objects."""
    if not is_remote(str(path)):
        os.makedirs(local_path(str(path)), exist_ok=True)


def remove(path: str | Path) -> None:
    """Delete a file, or a directory (every object under the prefix) and all in it; nothing if it is
    absent."""
    path = str(path)
    if not is_remote(path):
        if os.path.isdir(local_path(path)):
            shutil.rmtree(local_path(path))
        else:
            Path(local_path(path)).unlink(missing_ok=True)
        return
    fs, inner = filesystem(path)
    if with_retries(lambda: fs.exists(inner), what=path):
        with_retries(lambda: fs.rm(inner, recursive=True), what=path)


def temporary_path(path: str | Path, attempt: str = "") -> Path:
    """The hidden sibling `.NAME.ATTEMPT-PID-RANDOM.tmp` that one writer fills before renaming it
    to `path` (a local file). `attempt` names the writer for a reader of the directory (jobs/stage.py
    `task_attempt`); the pid and 48 random bits make the name unique even when two writers pass
    the same `attempt` (threads, or a Spark stage retried next to its zombie)."""
    path = Path(path)
    unique = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
    return path.with_name(f".{path.name}.{attempt + '-' if attempt else ''}{unique}{TEMPORARY_SUFFIX}")


def is_temporary(name: str) -> bool:
    return name.startswith(".") and name.endswith(TEMPORARY_SUFFIX)


def remove_temporaries(directory: str | Path) -> list[str]:
    """Delete the temporaries under `directory` that no writer renamed (an attempt that died or
    lost to another); return them. Only for a directory no live writer uses any more. (`open_output`
    makes none on an object store; a listing there finds what another tool may have left.)"""
    directory = str(directory)
    if not is_remote(directory):
        walk = os.walk(local_path(directory))
        stray = sorted(os.path.join(root, n) for root, _, names in walk for n in names if is_temporary(n))
        for path in stray:
            Path(path).unlink(missing_ok=True)
        return stray
    fs, inner = filesystem(directory)
    found = with_retries(lambda: fs.find(inner), what=directory) if fs.exists(inner) else []
    stray = sorted(p for p in found if is_temporary(posixpath.basename(p)))
    for path in stray:
        with_retries(lambda p=path: fs.rm_file(p), what=fs.unstrip_protocol(path))
    return [fs.unstrip_protocol(p) for p in stray]


class Sink(io.RawIOBase):
    """A file being written, with the size and sha256 of what was written so far: a writer learns
    its own file's digest without reading it back (another attempt may replace the final name)."""

    def __init__(self, file: BinaryIO):
        self.file, self.size, self.digest = file, 0, hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        data = bytes(data)
        self.file.write(data)
        self.digest.update(data)
        self.size += len(data)
        return len(data)

    def tell(self) -> int:
        return self.size

    def sha256(self) -> str:
        return self.digest.hexdigest()


@contextlib.contextmanager
def open_output(path: str | Path, attempt: str = "") -> Iterator[Sink]:
    """`path` open for binary writing; it appears, whole, when the block ends without an error, and
    not at all when it raises (module docstring). `attempt` names a local temporary's writer."""
    path = str(path)
    if is_remote(path):
        fs, inner = filesystem(path)
        file = fs.open(inner, "wb", autocommit=False)
        try:
            yield Sink(file)
            file.close()
            file.commit()
        except BaseException:
            file.discard()  # S3: aborts the multipart upload; nothing was created
            file.closed = True  # and nothing is flushed when the file object is collected
            raise
        return
    tmp = temporary_path(local_path(path), attempt)
    try:
        with open(tmp, "xb") as file:  # "x": never into another writer's file
            yield Sink(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, local_path(path))
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def copy_file(source: str | Path, target: str | Path, attempt: str = "") -> None:
    """Copy a file between any two filesystems, `target` whole or not at all: a model trained on
    local disk into a run in a bucket, a model in a bucket to the local copy a library opens."""
    with open_input(str(source)) as src, open_output(target, attempt) as dst:
        shutil.copyfileobj(src, dst, COPY_CHUNK_BYTES)


def list_files(directory: str | Path) -> list[str]:
    """Every file under `directory` as a `/`-separated path relative to it, sorted, leaving out
    hidden files and folders (a writer's temporaries: `.step_000500.tmp/`); [] when it is absent."""
    directory = str(directory)
    if not is_remote(directory):
        root = local_path(directory)
        walk = os.walk(root)
        found = [os.path.relpath(os.path.join(r, n), root) for r, _, names in walk for n in names]
        relative = [p.replace(os.sep, "/") for p in found]
    else:
        fs, inner = filesystem(directory)
        is_dir = with_retries(lambda: fs.isdir(inner), what=directory)
        found = with_retries(lambda: fs.find(inner), what=directory) if is_dir else []
        relative = [posixpath.relpath(p, inner.rstrip("/")) for p in found]
    return sorted(p for p in relative if not any(part.startswith(".") for part in p.split("/")))


def copy_tree(source: str | Path, target: str | Path) -> list[str]:
    """Copy the files under `source` (`list_files`) to the same relative paths under `target`,
    between any two filesystems, each file whole or not at all; return those paths."""
    names = list_files(source)
    for name in names:
        make_dirs(os.path.dirname(join(target, name)))  # local parents; nothing on an object store
        copy_file(join(source, name), join(target, name))
    return names


def local_copy(path: str | Path) -> Path:
    """A local file with the content of `path`, for a library that needs one (a memory map): the
    file itself when local, else a copy in the temporary directory named by the object's URI, size
    and version (ETag), made once and reused while the object is unchanged."""
    path = str(path)
    if not is_remote(path):
        return Path(local_path(path))
    size, version = file_version(path)
    key = hashlib.sha256(f"{path}\0{size}\0{version}".encode()).hexdigest()[:16]
    # the file's own name, in a folder of its own: a reader may name what it reads by it
    target = Path(tempfile.gettempdir()) / "refinery-copies" / key / posixpath.basename(path)
    if not target.is_file() or target.stat().st_size != size:
        target.parent.mkdir(parents=True, exist_ok=True)
        copy_file(path, target)
    return target


# endregion

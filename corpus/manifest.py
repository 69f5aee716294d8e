"""Stage manifests: summed counts, fingerprints and atomic JSON writes.

Counts are flat `{name: int}` dicts so the per-partition results of a Spark stage add up to
the stage's totals the way DataTrove's per-rank stats files do (`utils/stats.py`).

A file is written under a temporary name and renamed into place. Two attempts of one task
(a retry beside a lost executor's zombie, a speculative copy) may run at once, so each writes
its own temporary (`temporary_path`): neither truncates nor renames the other's half-written
file, and since a task's content is deterministic, whichever renames last leaves the same bytes.
"""

import hashlib
import json
import os
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from corpus.fs import file_version


def sum_counts(parts: Iterable[Mapping[str, int]]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for part in parts:
        total.update(part)
    return dict(sorted(total.items()))


def fingerprint(obj: Any) -> str:
    """sha256 of a JSON-serializable value with sorted keys: the same value, the same hash."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def files_fingerprint(paths: Iterable[str]) -> str:
    """Identity of input files by path, size and version (local modification time, or an object
    store's ETag: corpus/fs.py `file_version`); cheap enough for a driver, one metadata request
    per remote file.

    Content hashes would be exact but read every input byte on the driver; a stage's own
    outputs are fingerprinted by the sha256 its tasks compute while writing them.
    """
    return fingerprint([(path, *file_version(path)) for path in sorted(paths)])


TEMPORARY_SUFFIX = ".tmp"


def temporary_path(path: str | Path, attempt: str = "") -> Path:
    """The hidden sibling `.NAME.ATTEMPT-PID-RANDOM.tmp` that one writer fills before renaming it
    to `path`. `attempt` names the writer for a reader of the directory (jobs/stage.py
    `task_attempt`); the pid and 48 random bits make the name unique even when two writers pass
    the same `attempt` (threads, or a Spark stage retried next to its zombie)."""
    path = Path(path)
    unique = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
    return path.with_name(f".{path.name}.{attempt + '-' if attempt else ''}{unique}{TEMPORARY_SUFFIX}")


def is_temporary(name: str) -> bool:
    return name.startswith(".") and name.endswith(TEMPORARY_SUFFIX)


def remove_temporaries(directory: str | Path) -> list[Path]:
    """Delete the temporaries under `directory` that no writer renamed (an attempt that died or
    lost to another); return them. Only for a directory no live writer uses any more."""
    stray = sorted(Path(root) / n for root, _, names in os.walk(directory) for n in names if is_temporary(n))
    for path in stray:
        path.unlink(missing_ok=True)
    return stray


def write_json_atomic(path: str | Path, obj: Any, attempt: str = "") -> None:
    """Write to a temporary file of this attempt in the same directory, fsync, then rename over
    `path`."""
    path = Path(path)
    tmp = temporary_path(path, attempt)
    f = open(tmp, "x")  # "x": never into another writer's file, nor remove one below
    try:
        with f:
            json.dump(obj, f, indent=2, sort_keys=True, default=str)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_json(path: str | Path) -> Any:
    with open(path) as f:
        return json.load(f)

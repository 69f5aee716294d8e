"""Stage manifests: summed counts, fingerprints and atomic JSON writes.

Counts are flat `{name: int}` dicts so the per-partition results of a Spark stage add up to
the stage's totals the way DataTrove's per-rank stats files do (`utils/stats.py`).

A file is written whole or not at all (corpus/fs.py `open_output`: locally under a temporary
name renamed into place, on an object store by a deferred commit). Two attempts of one task (a
retry beside a lost executor's zombie, a speculative copy) may run at once, so each writes its own
temporary (`temporary_path`): neither truncates nor renames the other's half-written file, and
since a task's content is deterministic, whichever finishes last leaves the same bytes.
"""

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from corpus.fs import TEMPORARY_SUFFIX as TEMPORARY_SUFFIX  # re-exported: writers import them from here
from corpus.fs import file_version, open_input, open_output
from corpus.fs import is_temporary as is_temporary
from corpus.fs import remove_temporaries as remove_temporaries
from corpus.fs import temporary_path as temporary_path


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
    with open_input(str(path)) as f:
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


def write_json_atomic(path: str | Path, obj: Any, attempt: str = "") -> None:
    """Write `path` whole or not at all (corpus/fs.py `open_output`: a temporary of this attempt
    renamed locally, a deferred commit on an object store)."""
    blob = json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n"
    with open_output(path, attempt) as f:
        f.write(blob.encode())


def read_json(path: str | Path) -> Any:
    with open_input(str(path)) as f:
        return json.load(f)

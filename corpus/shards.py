"""Tokenized shards in the Megatron-LM indexed format (`MMIDIDX`), written and read back checked.

Layout (../shared/DESIGN.md, and megatron/core/datasets/indexed_dataset.py, which reads it):
- `NAME.bin`: the tokens of every document back to back, each document ending with the
  end-of-text token; `uint16` when the vocabulary has fewer than 65,536 entries, else `int32`.
- `NAME.idx`: magic `MMIDIDX\\x00\\x00`, `<Q` version 1, `<B` dtype code, `<Q` sequence count N,
  `<Q` document count N+1, then `int32[N]` sequence lengths, `int64[N]` byte offsets of the
  sequences in .bin, `int64[N+1]` document boundaries (0..N: one sequence per document).

`ShardWriter` streams documents into a temporary pair and renames both at `close()`, returning
the counts and sha256 digests the manifest records. The temporaries are the writer's own
(corpus/manifest.py `temporary_path`), so two attempts writing one shard at once cannot clobber
each other, and leave the same bytes whichever renames last. `ShardReader` memory-maps a pair
and, given the manifest entry, refuses files whose size or checksum differ, naming the file.

`RUN/shards/manifest.json` (written last by jobs/shards.py; read by `open_split`):
    {"stage": "shards", "tokenizer": {"sha256": ..., "vocab_size": ...}, "dtype": "uint16",
     "eot_id": 0, "seed": ..., "splits": {"train": [ENTRY, ...], "valid": [ENTRY, ...]},
     "buckets": {NAME: {"tokens_before": ..., "tokens_after": ...}}, ...}
where ENTRY is what `ShardWriter.close()` returns (file names relative to the manifest's
directory, documents, tokens, sizes, sha256 of both files).
"""

import contextlib
import hashlib
import json
import posixpath
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from corpus.fs import is_file, join, local_copy, open_output
from corpus.manifest import file_sha256, read_json

MANIFEST = "manifest.json"

MAGIC = b"MMIDIDX\x00\x00"
VERSION = 1
# Megatron-LM's DType codes (indexed_dataset.py); only the two token types are written here.
DTYPE_CODES = {np.dtype(np.uint16): 8, np.dtype(np.int32): 4}
CODE_DTYPES = {code: dtype for dtype, code in DTYPE_CODES.items()}
_HEADER = struct.Struct("<9sQBQQ")


class ShardError(ValueError):
    """A shard that does not match its manifest or the format: the message names the file."""


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size < 65536 else np.dtype(np.int32)


class ShardWriter:
    """Write documents to `PREFIX.bin`/`PREFIX.idx`, each in place only once complete (corpus/fs.py
    `open_output`: temporaries renamed at close, or uploads committed on an object store);
    `attempt` labels the temporaries (jobs/stage.py `task_attempt`)."""

    def __init__(self, prefix: str | Path, vocab_size: int, attempt: str = ""):
        self.prefix = str(prefix)
        self.dtype = token_dtype(vocab_size)
        self.vocab_size = vocab_size
        self.attempt = attempt
        self._files = contextlib.ExitStack()
        self._bin = self._files.enter_context(open_output(self.prefix + ".bin", attempt))
        self._lengths: list[int] = []

    def add(self, tokens: np.ndarray | list[int]) -> None:
        """Append one document (its tokens already end with end-of-text)."""
        array = np.asarray(tokens)
        if array.size and (array.min() < 0 or array.max() >= self.vocab_size):
            raise ValueError(f"{self.prefix}: token id outside the vocabulary of {self.vocab_size}")
        self._bin.write(array.astype(self.dtype, copy=False).tobytes())
        self._lengths.append(int(array.size))

    def close(self) -> dict[str, Any]:
        """Finish both files, the .bin first; return the manifest entry for this shard."""
        self._files.close()
        lengths = np.asarray(self._lengths, dtype=np.int32)
        offsets = np.zeros(len(lengths), dtype=np.int64)
        if len(lengths) > 1:
            np.cumsum(lengths[:-1].astype(np.int64) * self.dtype.itemsize, out=offsets[1:])
        index = b"".join(
            [
                _HEADER.pack(MAGIC, VERSION, DTYPE_CODES[self.dtype], len(lengths), len(lengths) + 1),
                lengths.tobytes(),
                offsets.tobytes(),
                np.arange(len(lengths) + 1, dtype=np.int64).tobytes(),
            ]
        )
        with open_output(self.prefix + ".idx", self.attempt) as f:
            f.write(index)
        name = posixpath.basename(self.prefix)
        return {
            "name": name,
            "bin": f"{name}.bin",
            "idx": f"{name}.idx",
            "documents": len(lengths),
            "tokens": int(lengths.sum(dtype=np.int64)),
            "bin_bytes": self._bin.size,  # this writer's own bytes (another attempt may replace the file)
            "idx_bytes": len(index),
            "bin_sha256": self._bin.sha256(),
            "idx_sha256": hashlib.sha256(index).hexdigest(),
        }


@dataclass(frozen=True)
class ShardReader:
    """A memory-mapped shard: `len(reader)` documents, `reader[i]` the tokens of document i."""

    bin_path: Path
    dtype: np.dtype
    lengths: np.ndarray  # int32[N]
    offsets: np.ndarray  # int64[N], in bytes
    tokens: np.ndarray  # memmap over the whole .bin

    @classmethod
    def open(cls, prefix: str | Path, expected: dict[str, Any] | None = None) -> "ShardReader":
        """Open `PREFIX.bin`/`.idx`; with a manifest entry, check sizes and sha256 first. Shards in
        object storage are read from local copies (corpus/fs.py `local_copy`): a memory map needs a
        local file."""
        bin_name, idx_name = f"{prefix}.bin", f"{prefix}.idx"  # errors name these, not local copies
        for path in (bin_name, idx_name):
            if not is_file(path):
                raise ShardError(f"{path}: shard file missing")
        bin_path, idx_path = local_copy(bin_name), local_copy(idx_name)
        if expected is not None:
            _check_file(bin_path, expected["bin_bytes"], expected["bin_sha256"], bin_name)
            _check_file(idx_path, expected["idx_bytes"], expected["idx_sha256"], idx_name)
        raw = idx_path.read_bytes()
        if len(raw) < _HEADER.size:
            raise ShardError(f"{idx_name}: {len(raw)} bytes, shorter than the index header")
        magic, version, code, n, n_docs = _HEADER.unpack_from(raw)
        if magic != MAGIC or version != VERSION or code not in CODE_DTYPES or n_docs != n + 1:
            raise ShardError(f"{idx_name}: not a version-1 MMIDIDX index (magic {magic!r}, code {code})")
        body = _HEADER.size
        if len(raw) != body + n * 4 + n * 8 + (n + 1) * 8:
            raise ShardError(f"{idx_name}: size {len(raw)} does not match its {n} sequences")
        lengths = np.frombuffer(raw, np.int32, n, body)
        offsets = np.frombuffer(raw, np.int64, n, body + n * 4)
        dtype = CODE_DTYPES[code]
        size = bin_path.stat().st_size
        if size != int(lengths.sum(dtype=np.int64)) * dtype.itemsize:
            raise ShardError(f"{bin_name}: {size} bytes, the index expects {int(lengths.sum())} tokens")
        tokens = np.memmap(bin_path, dtype=dtype, mode="r") if size else np.zeros(0, dtype)
        return cls(bin_path, dtype, lengths, offsets, tokens)

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, i: int) -> np.ndarray:
        start = int(self.offsets[i]) // self.dtype.itemsize
        return self.tokens[start : start + int(self.lengths[i])]

    @property
    def num_tokens(self) -> int:
        return int(self.tokens.size)


def _check_file(path: Path, size: int, sha256: str, name: str) -> None:
    actual = path.stat().st_size
    if actual != size:
        raise ShardError(f"{name}: {actual} bytes, the manifest says {size}")
    if file_sha256(path) != sha256:
        raise ShardError(f"{name}: sha256 does not match the manifest (file altered or corrupt)")


def read_manifest(shards_dir: str | Path) -> dict[str, Any]:
    path = join(shards_dir, MANIFEST)
    if not is_file(path):
        raise ShardError(f"{path}: no shard manifest; run the `shards` stage first")
    try:
        manifest = read_json(path)
    except json.JSONDecodeError as exc:
        raise ShardError(f"{path}: not valid JSON ({exc})") from None
    for key in ("tokenizer", "dtype", "eot_id", "splits"):
        if key not in manifest:
            raise ShardError(f"{path}: missing key {key!r}")
    return manifest


def open_split(
    shards_dir: str | Path, split: str, *, tokenizer_path: str | Path | None = None, verify: bool = True
) -> list[ShardReader]:
    """Every shard of `split`, checked against the manifest (sizes and sha256 when `verify`) and,
    with `tokenizer_path`, that the tokenizer file is the one the shards were written with."""
    manifest = read_manifest(shards_dir)
    if split not in manifest["splits"]:
        raise ShardError(
            f"{join(shards_dir, MANIFEST)}: no split {split!r} (has {sorted(manifest['splits'])})"
        )
    if tokenizer_path is not None and file_sha256(tokenizer_path) != manifest["tokenizer"]["sha256"]:
        raise ShardError(f"{tokenizer_path}: not the tokenizer the shards in {shards_dir} were written with")
    return [
        ShardReader.open(join(shards_dir, entry["name"]), entry if verify else None)
        for entry in manifest["splits"][split]
    ]


def write_split(
    shards_dir: str | Path,
    split: str,
    documents: Iterable[np.ndarray | list[int]],
    vocab_size: int,
    *,
    shard_tokens: int = 1 << 28,
) -> list[dict[str, Any]]:
    """Write documents in order to `SPLIT_00000`, `SPLIT_00001`, ... in `shards_dir`, starting a new
    shard once one holds `shard_tokens` tokens; return their manifest entries, in order.

    A single-process writer for tests, demos and small corpora; jobs/shards.py writes the same
    files from Spark tasks.
    """
    entries: list[dict[str, Any]] = []
    writer, held = None, 0
    for doc in documents:
        if writer is None:
            writer, held = ShardWriter(join(shards_dir, f"{split}_{len(entries):05d}"), vocab_size), 0
        writer.add(doc)
        held += len(doc)
        if held >= shard_tokens:
            entries.append(writer.close())
            writer = None
    if writer is not None:
        entries.append(writer.close())
    return entries

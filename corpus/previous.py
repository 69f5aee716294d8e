"""The keys a deduped stage keeps for later runs, and the checks a later run makes before it uses them.

A run deduped with `deduped.against: [EARLIER, ...]` rejects a document that duplicates one an
earlier run kept as `duplicate:previous` (jobs/deduped_previous.py), without recomputing anything
from the earlier corpus: every deduped stage writes these keys beside its outputs.

Layout: `RUN/deduped/keys/part-NNNNN.parquet`, one file per input part (written whether or not a
later run ever reads it), listed in the manifest's `keys` entry with rows, bytes and sha256, and
the dedup parameters they were made with (`match_params`). One row per document of the part
that reached text clustering and was not itself a `duplicate:previous`, in input order:

| column | type | meaning |
|---|---|---|
| node | int64 | the document's node in its run (part << 32 \\| row): unique there |
| id | string | the document the run kept for it: its own id when kept, else its `cluster_id` |
| url_key | string | canonical URL (corpus/filters/url.py `canonical_url`), null without a URL |
| exact_hash | string | corpus/minhash.py exact hash of the normalized text |
| bands | list<int64> | LSH band keys; kept documents only, null otherwise or without `near` |
| shingles | list<int64> | distinct 64-bit shingle hashes; kept documents with `verify` only |

Why these rows: a kept document answers every match; a `duplicate:exact` or `duplicate:near`
one adds its URL (an older fetch of that URL, rejected as `duplicate:url`, names it in a later
run) and, for `duplicate:near`, its own exact hash, so re-reading the same page matches it even
when the near pair was found through a chain of LSH candidates, not one shared bucket. A
`duplicate:url` fetch adds nothing: its URL's kept fetch has a row, and its text, an older
version of the page, is not in the corpus (a fresh run on both crawls would not match it either).

Why shingle hashes and not MinHash signatures: a new document is dropped as a near duplicate of
an old one only at an exact Jaccard of at least `threshold`, as in-run pairs are; a 112-hash
signature only estimates it (standard deviation 0.038 at 0.8). The sets cost ~8 bytes a word
(random hashes do not compress: on crawl-sample files 0-1, 3.9 MB of shingle hashes for 613
documents whose text is 1.4 MB in zstd Parquet), and spare a later run from reading and
re-shingling the old texts of its candidate pairs; re-reading those texts instead would trade
that disk for a join on the old corpus's text.
"""

from collections.abc import Container, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa

from corpus.manifest import fingerprint, read_json

KEYS = "keys"  # RUN/deduped/keys/
# Bump when a key's meaning changes (normalization, hashes, band folding): keys of another
# version are refused, not silently mismatched.
KEYS_VERSION = 1
KEYS_SCHEMA = pa.schema(
    [
        pa.field("node", pa.int64(), nullable=False),
        pa.field("id", pa.string(), nullable=False),
        pa.field("url_key", pa.string()),
        pa.field("exact_hash", pa.string(), nullable=False),
        pa.field("bands", pa.list_(pa.int64())),
        pa.field("shingles", pa.list_(pa.int64())),
    ]
)
# The parameters two runs must share for one's keys to mean the same thing in the other: the
# keep order and which fetch of a URL is kept change which documents are kept, not what matches.
MATCHED = ("ngram", "num_perm", "bands", "rows", "threshold", "verify", "seed")


def match_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """From the deduped manifest's `params` (jobs/deduped.py `dedup_params`), what keys depend on."""
    return {"keys_version": KEYS_VERSION, **{k: params[k] for k in MATCHED}, "url": params["url"]["enabled"]}


def keys_table(
    signatures: pa.Table,
    decisions: Mapping[int, tuple[str, int, str | None]],
    previous: Container[int],
) -> pa.Table:
    """The keys of one part from its signatures (jobs/deduped.py `signature_table`, rows in input
    order), its decisions (row → cluster_id, cluster_size, reject, for documents in clusters) and
    the rows rejected as `duplicate:previous`."""
    near = "bands" in signatures.column_names
    cols = {c: signatures.column(c).to_pylist() for c in ("node", "id", "url_key", "exact_hash")}
    bands = signatures.column("bands").to_pylist() if near else None
    sets = signatures.column("shingles").to_pylist() if "shingles" in signatures.column_names else None
    rows = []
    for row, node in enumerate(cols["node"]):
        cluster_id, _, reject = decisions.get(row, (cols["id"][row], 1, None))
        if row in previous or reject == "duplicate:url":
            continue
        kept = reject is None
        rows.append(
            {
                "node": node,
                "id": cluster_id,
                "url_key": cols["url_key"][row],
                "exact_hash": cols["exact_hash"][row],
                "bands": bands[row] if kept and near else None,
                "shingles": sets[row] if kept and sets is not None else None,
            }
        )
    return pa.Table.from_pylist(rows, schema=KEYS_SCHEMA)


def earlier_keys(run: str, run_dir: str, ours: Mapping[str, Any]) -> dict[str, Any]:
    """`run`'s deduped keys entry, checked: a finished deduped stage with keys of the parameters
    `ours` (`match_params`); else a one-line ValueError naming the run and what is wrong."""
    where = f"deduped.against: {run}"
    if Path(run).resolve() == Path(run_dir).resolve():
        raise ValueError(f"{where} is this run itself; list earlier runs only")
    path = Path(run) / "deduped" / "manifest.json"
    if not path.is_file():
        raise ValueError(f"{where}: no finished deduped stage ({path} missing); finish that run first")
    keys = read_json(path).get(KEYS)
    if keys is None:
        raise ValueError(f"{where}: its deduped stage kept no keys (made before they were); rerun it")
    theirs = keys["params"]
    if diff := [k for k in sorted({*theirs, *ours}) if theirs.get(k) != ours.get(k)]:
        mismatch = ", ".join(f"{k}={theirs.get(k)!r} there, {ours.get(k)!r} here" for k in diff)
        raise ValueError(f"{where}: its keys were made with other dedup parameters: {mismatch}")
    return keys


def keys_fingerprint(keys: Mapping[str, Any]) -> str:
    """One hash of an earlier run's key files: this run's stage key holds it, so a rerun of the
    earlier run's deduped stage (other keys) makes this one rerun too."""
    return fingerprint([f["sha256"] for f in keys["files"]])

"""Mixture weighting: put documents in buckets, give each bucket a repeat factor, draw repeats.

Pure functions over Arrow batches; jobs/mixed.py runs them in Spark, jobs/shards.py reuses the
keys for the shuffle and the validation split.

- **Buckets** come from one or more criteria joined by `/` (`crawl-sample/q50-90`): any
  string, integer or boolean document column (`source`, `lang`, `domain`, ...; null is
  `none`), `quality` (bands between quantile cuts the driver computes, `q0-50`, `q50-90`,
  `q90-100`; unscored documents are `q_none`), or `domain_list` (the stem of the first list
  file holding the document's registered domain, else `other`).
- **Weights**: a bucket has either a repeat factor r (0.3 keeps ~30% of its documents, 2.5
  repeats each document 2 or 3 times) or a share s of the output tokens. With any repeat
  bucket the output total T follows from them, T = R / (1 - sum(s)) where R is the repeat
  buckets' tokens after weighting; with shares only, T is `total_tokens` (default: the input's
  tokens). A share bucket's factor is s * T / tokens_before. Any factor above `max_repeats` is
  an error naming the bucket, never a silent clamp: past about 4 epochs repeated data is worth
  much less than fresh data (Muennighoff et al. 2023, "Scaling Data-Constrained Language
  Models", Section 4), so asking for more is a decision to make explicitly.
- **Repeats** of a document are floor(r) + [key(seed, id) < frac(r)], a Bernoulli draw keyed by
  the document id: deterministic, independent of partitioning, and the expected tokens of a
  bucket are exactly r times its tokens. Documents drawn 0 times are dropped.
- **Token estimates**: the tokenizer is trained after mixing, so weights use ceil(UTF-8 bytes /
  `bytes_per_token`), 4 by default (GPT-2's BPE on English web text averages ~4 bytes a token).
  On crawl-sample's 287 mixed documents the run's own 8,192-token BPE averages 3.90 bytes a
  token, so the estimate is 2.4% low (bench/RESULTS.md, "Shards"); a bias shared by buckets of
  similar text cancels out of their repeat factors. The shard manifest reports the real counts.
"""

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from corpus.fs import open_input
from corpus.sampling import hashed_unit
from corpus.schema import DOCUMENT

KEY_BITS = 62  # non-negative in a signed int64 (Spark's LongType), and 2**62 itself still fits
KEY_SPACE = 1 << KEY_BITS
SEPARATOR = "/"
NONE = "none"
QUALITY, DOMAIN_LIST = "quality", "domain_list"
QUALITY_NONE, OTHER_DOMAINS = "q_none", "other"
DOWNSAMPLED = "mix:downsampled"
# Columns usable as a bucket as they are: scalar and discrete (floats need bands, like quality).
COLUMN_CRITERIA = tuple(
    f.name
    for f in DOCUMENT
    if (pa.types.is_string(f.type) or pa.types.is_integer(f.type) or pa.types.is_boolean(f.type))
    and f.name not in ("bucket", "repeats", "reject")
)
CRITERIA = (*COLUMN_CRITERIA, QUALITY, DOMAIN_LIST)


def key(seed: int, salt: str, doc_id: str, index: int = 0) -> int:
    """A uniform integer in [0, 2**62) from (seed, salt, id, index): the same everywhere, every run.

    The project's one hash draw (corpus/sampling.py) on the integer key space Spark SQL compares
    and divides exactly; its 53 bits of resolution make ties negligible (sorts break them by id).
    """
    unit = hashed_unit(f"{salt}\x1f{doc_id}\x1f{index}", seed)
    return min(int(unit * KEY_SPACE), KEY_SPACE - 1)  # a unit that rounded up to 1.0 stays in range


def keys(seed: int, salt: str, ids: Iterable[str], index: int = 0) -> np.ndarray:
    return np.fromiter((key(seed, salt, i, index) for i in ids), dtype=np.int64)


def threshold(probability: float) -> int:
    """Keys below this value occur with `probability` (clipped to [0, 1])."""
    return int(min(max(probability, 0.0), 1.0) * KEY_SPACE)


def range_divisor(n: int) -> int:
    """`key // range_divisor(n)` cuts the key space into n equal ranges 0..n-1 (integer-exact, so
    Spark SQL's `div` and Python agree)."""
    assert n >= 1, f"{n} ranges"
    return -(-KEY_SPACE // n)


def copy_keys(seed: int, doc_id: str, copies: int) -> list[int]:
    """The shards stage's key of each copy of a document, key(seed, "shuffle", id, r): it orders
    the copies and picks their shards (`shard_placement`)."""
    return [key(seed, "shuffle", doc_id, r) for r in range(copies)]


def shard_placement(
    seed: int, doc_id: str, repeats: int, valid_limit: int, shard_counts: Mapping[str, int]
) -> tuple[str, list[int]]:
    """The split of a mixed document and the shard (index in that split) of each of its copies.

    Held out for validation when key(seed, "valid", id) < `valid_limit`, with one copy; else in
    train with `repeats` copies. Copy r lands in the shard whose key range (`range_divisor` over
    the split's shard count) holds its `copy_keys` key. jobs/shards.py places every copy with
    `copy_places` and jobs/why.py calls this for one document; tests/test_why.py checks the
    two against the written shards.
    """
    split, placed = copy_places(seed, doc_id, repeats, valid_limit, shard_counts)
    return split, [index for _, index in placed]


def copy_places(
    seed: int, doc_id: str, repeats: int, valid_limit: int, shard_counts: Mapping[str, int]
) -> tuple[str, list[tuple[int, int]]]:
    """`shard_placement` with each copy's key: the split and (key, shard index) for copy 0, 1, ..."""
    valid = key(seed, "valid", doc_id) < valid_limit
    split = "valid" if valid else "train"
    n = shard_counts[split]
    if not n:
        return split, []
    divisor = range_divisor(n)
    return split, [(k, k // divisor) for k in copy_keys(seed, doc_id, 1 if valid else repeats)]


def draw_repeats(factors: np.ndarray, doc_keys: np.ndarray) -> np.ndarray:
    """floor(factor) copies of each document, one more where its key falls below frac(factor)."""
    factors = np.asarray(factors, dtype=np.float64)
    whole = np.floor(factors)
    limits = ((factors - whole) * KEY_SPACE).astype(np.int64)
    return (whole.astype(np.int64) + (doc_keys < limits)).astype(np.int32)


def utf8_bytes(texts: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """UTF-8 length of each text; null counts 0."""
    return pc.fill_null(pc.binary_length(texts), 0).to_numpy(zero_copy_only=False).astype(np.int64)


def estimate_tokens(nbytes: np.ndarray, bytes_per_token: float) -> np.ndarray:
    """ceil(bytes / bytes_per_token): the token estimate mixing weights use."""
    return np.ceil(np.asarray(nbytes) / bytes_per_token).astype(np.int64)


def band_labels(quantiles: Iterable[float]) -> list[str]:
    """`q0-50`, `q50-90`, `q90-100` for quantiles (0.5, 0.9)."""
    edges = [0.0, *quantiles, 1.0]
    return [f"q{lo * 100:g}-{hi * 100:g}" for lo, hi in zip(edges, edges[1:], strict=False)]


def read_domain_list(path: str | Path) -> frozenset[str]:
    """One registered domain a line, lower-cased; blank lines and `#` comments are skipped. `path`
    may be a URI (corpus/fs.py)."""
    with open_input(str(path)) as f:
        lines = f.read().decode("utf-8").splitlines()
    return frozenset(s.strip().lower() for s in lines if s.strip() and not s.lstrip().startswith("#"))


@dataclass(frozen=True)
class Bucketer:
    """Bucket names of the rows of a batch, from `by` (see the module docstring).

    `quality_cuts` are the quality values at `quality_quantiles` (computed over the whole input
    by the driver); `domain_lists` are (bucket name, domains) in priority order.
    """

    by: tuple[str, ...]
    quality_quantiles: tuple[float, ...] = ()
    quality_cuts: tuple[float, ...] = ()
    domain_lists: tuple[tuple[str, frozenset[str]], ...] = ()

    def __post_init__(self):
        unknown = [c for c in self.by if c not in CRITERIA]
        if unknown or not self.by:
            raise ValueError(f"bucket_by {list(self.by)}: unknown {unknown}; allowed: {list(CRITERIA)}")
        if QUALITY in self.by:
            assert len(self.quality_cuts) == len(self.quality_quantiles), "one quality cut per quantile"

    @property
    def columns(self) -> list[str]:
        """The document columns `assign` reads."""
        cols = {"domain" if c == DOMAIN_LIST else c for c in self.by}
        return sorted(cols)

    def _criterion(self, batch: pa.RecordBatch | pa.Table, criterion: str) -> list[str]:
        if criterion == QUALITY:
            labels = band_labels(self.quality_quantiles)
            values = batch.column(QUALITY).to_numpy(zero_copy_only=False)
            bands = np.searchsorted(np.asarray(self.quality_cuts, dtype=np.float64), values, side="right")
            return [QUALITY_NONE if math.isnan(v) else labels[b] for v, b in zip(values, bands, strict=True)]
        if criterion == DOMAIN_LIST:
            out = []
            for domain in batch.column("domain").to_pylist():
                d = (domain or "").lower()
                out.append(next((name for name, domains in self.domain_lists if d in domains), OTHER_DOMAINS))
            return out
        return [NONE if v is None else str(v) for v in batch.column(criterion).to_pylist()]

    def assign(self, batch: pa.RecordBatch | pa.Table) -> list[str]:
        parts = [self._criterion(batch, c) for c in self.by]
        return [SEPARATOR.join(names) for names in zip(*parts, strict=True)]


def mix_batch(
    batch: pa.RecordBatch | pa.Table,
    bucketer: Bucketer,
    factors: Mapping[str, float],
    *,
    seed: int,
    bytes_per_token: float,
) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Bucket, repeats, UTF-8 bytes and estimated tokens of every row (`id`, `text` and the
    bucketer's columns). A bucket without a factor is a bug upstream: every bucket counted in the
    first pass has one."""
    buckets = bucketer.assign(batch)
    doc_keys = keys(seed, "mix", batch.column("id").to_pylist())
    repeats = draw_repeats(np.array([factors[b] for b in buckets], dtype=np.float64), doc_keys)
    nbytes = utf8_bytes(batch.column("text"))
    return buckets, repeats, nbytes, estimate_tokens(nbytes, bytes_per_token)


@dataclass(frozen=True)
class BucketStats:
    documents: int = 0
    bytes: int = 0
    tokens: int = 0  # estimated

    def __add__(self, other: "BucketStats") -> "BucketStats":
        return BucketStats(
            self.documents + other.documents, self.bytes + other.bytes, self.tokens + other.tokens
        )


def bucket_stats(buckets: list[str], nbytes: np.ndarray, tokens: np.ndarray) -> dict[str, BucketStats]:
    out: dict[str, BucketStats] = {}
    for name, b, t in zip(buckets, nbytes.tolist(), tokens.tolist(), strict=True):
        out[name] = out.get(name, BucketStats()) + BucketStats(1, b, t)
    return out


def resolve_factors(
    tokens: Mapping[str, int],
    *,
    repeats: Mapping[str, float],
    shares: Mapping[str, float],
    default_repeat: float,
    total_tokens: int | None,
    max_repeats: float,
) -> tuple[dict[str, float], float]:
    """The repeat factor of every bucket in `tokens` (estimated tokens before mixing), and the
    target output total T. Errors name the bucket and the offending value."""
    both = sorted(set(repeats) & set(shares))
    if both:
        raise ValueError(f"bucket(s) {both} have both a repeat factor and a share; give one")
    missing = sorted(b for b in (*repeats, *shares) if tokens.get(b, 0) == 0)
    if missing:
        found = ", ".join(sorted(tokens)) or "(none)"
        raise ValueError(f"weighted bucket(s) {missing} have no documents; buckets found: {found}")
    fixed = {b: repeats.get(b, default_repeat) for b in tokens if b not in shares}
    share_sum = sum(shares.values())
    if fixed and shares:
        if total_tokens is not None:
            raise ValueError(
                f"total_tokens is only used when every bucket has a share; {sorted(fixed)} have none"
            )
        if share_sum >= 1:
            raise ValueError(f"shares sum to {share_sum:g}, leaving nothing for buckets {sorted(fixed)}")
        target = sum(fixed[b] * tokens[b] for b in fixed) / (1 - share_sum)
    elif shares:
        if not math.isclose(share_sum, 1.0, abs_tol=1e-6):
            raise ValueError(f"shares sum to {share_sum:g}; with a share for every bucket they must sum to 1")
        target = float(total_tokens if total_tokens is not None else sum(tokens.values()))
    else:
        if total_tokens is not None:
            raise ValueError("total_tokens is only used with shares; every bucket has a repeat factor")
        target = float(sum(fixed[b] * tokens[b] for b in fixed))
    factors = {**fixed, **{b: s * target / tokens[b] for b, s in shares.items()}}
    for bucket, factor in sorted(factors.items()):
        if factor > max_repeats:
            raise ValueError(
                f"bucket {bucket!r} needs {factor:.3g} repeats, above max_repeats {max_repeats:g}; "
                "lower its weight or raise max_repeats"
            )
    return dict(sorted(factors.items())), target


def report(
    before: Mapping[str, BucketStats],
    after: Mapping[str, Mapping[str, int]],
    factors: Mapping[str, float],
    weights: Mapping[str, dict[str, float]],
) -> dict[str, dict[str, float | int | dict[str, float]]]:
    """Per bucket: what went in, the weight and factor, what came out (documents kept, copies
    and estimated tokens after repeats), the realized epochs and share of the output."""
    total_after = sum(a.get("tokens", 0) for a in after.values()) or 1
    out = {}
    for name in sorted(before):
        b, a = before[name], after.get(name, {})
        out[name] = {
            "documents_before": b.documents,
            "bytes_before": b.bytes,
            "tokens_before": b.tokens,
            "weight": weights[name],
            "factor": round(factors[name], 6),
            "documents_after": a.get("documents", 0),
            "copies_after": a.get("copies", 0),
            "bytes_after": a.get("bytes", 0),
            "tokens_after": a.get("tokens", 0),
            "epochs": round(a.get("tokens", 0) / b.tokens, 4) if b.tokens else 0.0,
            "share_after": round(a.get("tokens", 0) / total_after, 4),
        }
    return out

"""Text normalization, exact hashes, MinHash signatures and LSH band keys, vectorized per batch.

Everything here works on a batch of texts at once with numpy (no Python loop per shingle), so
the deduped stage can run it per Spark partition and the evaluation in-process, on the same code.

- **Normalization** (`normalize`): Unicode NFKC, `casefold`, then every punctuation, symbol,
  separator and control character (categories P*, S*, Z*, Cc, and anything `str.isspace`) is a
  word boundary; words are joined by one space. So `"Hello,  World!"` and `"hello world"` are
  the same text. (DataTrove's `simplify_text` deletes punctuation instead; a boundary keeps
  `"end.Start"` two words.)
- **Exact hash**: BLAKE2b-128 of the normalized text encoded as UTF-32-LE, in hex.
- **Shingles**: word n-grams of the normalized text (default 5, FineWeb), joined by one space;
  a text of 1 to n-1 words is one shingle; an empty text has none (its signature is all
  `MAX_HASH`).
- **Shingle hash**: a polynomial hash of the shingle's code points mod 2^64 (computed for all
  shingles of a batch from one prefix sum), mixed by MurmurHash3's 64-bit finalizer and cut to
  32 bits. `shingle_hash` is the same function on one string, to pass to datasketch as its
  `hashfunc`: then `MinHash(num_perm, seed=seed, hashfunc=shingle_hash).update_batch(shingles)`
  gives exactly our signature (tests/test_minhash.py). SHA-1 per shingle, datasketch's default,
  costs ~1 µs of Python per shingle, the whole budget of 3,000 documents/s of ~500 words.
- **Permutations**: datasketch's own `affine32` parameters for `(num_perm, seed)`; the default
  seed 1 is datasketch's. A signature is the column minimum of `a * fmix32(h) + b mod 2^32`.
- **Shingle sets** (`shingle_sets`, or `sign(..., sets=...)` from the same pass): each document's
  distinct 64-bit shingle hashes, sorted; `exact_jaccard` of two of them is the similarity that
  dedup verifies candidates by (exact up to a 64-bit collision).
- **Band keys**: the first `bands * rows` hash values cut into `bands` bands of `rows`, each
  band folded into a 64-bit key. Two documents share a bucket when one band key is equal, as
  in datasketch's `MinHashLSH` (which compares the band bytes; a 64-bit key differs only by a
  collision, probability ~2^-64 per pair).
"""

import hashlib
import math
import sys
import unicodedata
from dataclasses import dataclass
from functools import cache

import numpy as np
from datasketch import MinHash

NGRAM = 5  # FineWeb (Penedo et al. 2024, Section 3.4): word 5-grams
NUM_PERM = 112  # FineWeb: 14 bands x 8 rows
SEED = 1  # datasketch MinHash's default seed, so the permutations are its defaults
MAX_HASH = np.uint32(0xFFFFFFFF)  # empty signature value, as datasketch initializes hashvalues
# Code points hashed at a time by `sign`: arrays of a few MiB stay in cache; 1,024 documents of
# 3 KB at once (3 M code points) were 1.4x slower per document than 256 of them.
BATCH_CODE_POINTS = 1 << 19
# Shingles permuted at a time: a (112 x 4096) uint32 matrix is 1.8 MiB, so it stays in L2 cache;
# chunks 8x larger were 1.5x slower on 3 KB documents.
CHUNK_SHINGLES = 1 << 12
# A pair at exactly the threshold is a candidate with at least this probability under
# `bands_for_recall` (issue 26, item 3); FineWeb's 14 x 8 gives 0.924 at 0.8.
RECALL = 0.99

_M64 = (1 << 64) - 1
_BASE = 0x9E3779B97F4A7C15  # odd, so it is invertible mod 2^64 (the 64-bit golden ratio)
_BASE_INV = pow(_BASE, -1, 1 << 64)
_FMIX64 = (33, 0xFF51AFD7ED558CCD, 33, 0xC4CEB9FE1A85EC53, 33)  # MurmurHash3 fmix64
_FMIX32 = (16, 0x85EBCA6B, 13, 0xC2B2AE35, 16)  # MurmurHash3 fmix32 (datasketch's pre-mix)
_BOUNDARY_CATEGORIES = ("P", "S", "Z", "Cc")


@cache
def _boundary_table() -> np.ndarray:
    """A bool per code point: True where `normalize` treats the character as a word boundary."""
    table = np.zeros(sys.maxunicode + 1, dtype=bool)
    for cp in range(sys.maxunicode + 1):
        ch = chr(cp)
        category = unicodedata.category(ch)
        table[cp] = category.startswith(_BOUNDARY_CATEGORIES) or ch.isspace()
    return table


def _fold(text: str | None) -> str:
    return unicodedata.normalize("NFKC", text or "").casefold()


def normalize(text: str | None) -> str:
    """The text dedup compares (see the module docstring); one document at a time, for reference."""
    table = _boundary_table()
    return " ".join("".join(" " if table[ord(c)] else c for c in _fold(text)).split())


def exact_hash(text: str | None) -> str:
    return hashlib.blake2b(normalize(text).encode("utf-32-le", "surrogatepass"), digest_size=16).hexdigest()


def shingles(text: str | None, ngram: int = NGRAM) -> list[str]:
    normalized = normalize(text)
    words = normalized.split(" ") if normalized else []
    if 0 < len(words) < ngram:
        return [" ".join(words)]
    return [" ".join(words[i : i + ngram]) for i in range(len(words) - ngram + 1)]


def _fmix64_int(h: int) -> int:
    s1, m1, s2, m2, s3 = _FMIX64
    h ^= h >> s1
    h = (h * m1) & _M64
    h ^= h >> s2
    h = (h * m2) & _M64
    return h ^ (h >> s3)


def shingle_hash64(shingle: str) -> int:
    """Polynomial hash of the code points (each + 1) in base `_BASE` mod 2^64, then fmix64."""
    h, power = 0, 1
    for c in shingle:
        h = (h + (ord(c) + 1) * power) & _M64
        power = (power * _BASE) & _M64
    return _fmix64_int(h)


def shingle_hash(shingle: str) -> int:
    """The 32-bit shingle hash: datasketch's `hashfunc` that reproduces our signatures."""
    return shingle_hash64(shingle) & 0xFFFFFFFF


def _fmix(h: np.ndarray, constants: tuple[int, ...], dtype: type) -> np.ndarray:
    s1, m1, s2, m2, s3 = (dtype(c) for c in constants)
    h = h ^ (h >> s1)
    h = h * m1
    h = h ^ (h >> s2)
    h = h * m2
    return h ^ (h >> s3)


_powers: dict[int, np.ndarray] = {}


def _power_table(base: int, n: int) -> np.ndarray:
    """base**0 .. base**(n-1) mod 2^64, grown by doubling and kept (a pure function of its args)."""
    table = _powers.get(base)
    if table is None or len(table) < n:
        size = max(n, 2 * len(table) if table is not None else 1 << 16)
        table = np.full(size, base, dtype=np.uint64)
        table[0] = 1
        table = np.cumprod(table, dtype=np.uint64)  # wraps mod 2^64, which is the intent
        _powers[base] = table
    return table[:n]


@dataclass(frozen=True)
class HashedBatch:
    """A batch's exact hashes and its shingle hashes in CSR layout (doc i: offsets[i]:offsets[i+1])."""

    exact: list[str]
    hashes: np.ndarray  # uint64, fmix64 of the polynomial hash of each shingle, in document order
    offsets: np.ndarray  # int64, len(exact) + 1

    def doc_hashes(self, i: int) -> np.ndarray:
        return self.hashes[self.offsets[i] : self.offsets[i + 1]]


def hash_batch(texts: list[str | None], ngram: int = NGRAM) -> HashedBatch:
    """Normalize, exact-hash and shingle-hash a batch; equal to the one-text functions above."""
    assert ngram >= 1, f"ngram must be >= 1, got {ngram}"
    n = len(texts)
    folded = [_fold(t) for t in texts]
    # Every document is followed by one separator, so no word runs across two documents.
    raw = np.frombuffer("".join(f + " " for f in folded).encode("utf-32-le", "surrogatepass"), "<u4")
    raw_starts = np.zeros(n + 1, dtype=np.int64)
    np.cumsum([len(f) + 1 for f in folded], out=raw_starts[1:])
    is_word = ~_boundary_table()[raw]
    prev_word = np.concatenate(([False], is_word[:-1]))
    next_word = np.concatenate((is_word[1:], [False]))
    start = is_word & ~prev_word
    # The compact text keeps word characters and one space before each word but a document's
    # first: exactly `normalize(text)` per document, all documents back to back.
    start_pos = np.flatnonzero(start)
    start_doc = np.searchsorted(raw_starts, start_pos, side="right") - 1
    first_in_doc = np.ones(len(start_pos), dtype=bool)
    first_in_doc[1:] = start_doc[1:] != start_doc[:-1]
    keep = is_word.copy()
    keep[start_pos[~first_in_doc] - 1] = True
    compact = np.where(is_word, raw, np.uint32(32))[keep]
    kept_before = np.zeros(len(keep) + 1, dtype=np.int64)
    np.cumsum(keep, out=kept_before[1:])
    new_index = kept_before[1:] - 1
    doc_bounds = kept_before[raw_starts]
    data = compact.tobytes()
    exact = [
        hashlib.blake2b(data[4 * doc_bounds[i] : 4 * doc_bounds[i + 1]], digest_size=16).hexdigest()
        for i in range(n)
    ]
    word_start = new_index[start_pos]
    word_end = new_index[np.flatnonzero(is_word & ~next_word)] + 1
    words_per_doc = np.bincount(start_doc, minlength=n)
    # Shingle k of the batch spans words k .. k+ngram-1 when they are in one document; a document
    # of 1 to ngram-1 words is one shingle of all its words.
    last = np.arange(len(word_start)) + ngram - 1
    full = last < len(word_start)
    full[full] = start_doc[: full.sum()] == start_doc[last[full]]
    first_word = np.concatenate(([0], np.cumsum(words_per_doc)))[:-1]
    short = np.flatnonzero((words_per_doc > 0) & (words_per_doc < ngram))
    span_doc = np.concatenate((start_doc[full], short))
    span_start = np.concatenate((word_start[full], word_start[first_word[short]]))
    span_end = np.concatenate((word_end[last[full]], word_end[first_word[short] + words_per_doc[short] - 1]))
    if len(short):  # put the short documents' shingles in document order
        order = np.argsort(span_doc, kind="stable")
        span_doc, span_start, span_end = span_doc[order], span_start[order], span_end[order]
    # Polynomial hash of compact[s:e] = (prefix[e] - prefix[s]) * BASE^-s with prefix[i] the sum
    # of (c_j + 1) * BASE^j for j < i: one cumulative sum for every shingle of the batch.
    weights = _power_table(_BASE, len(compact))
    prefix = np.zeros(len(compact) + 1, dtype=np.uint64)
    np.cumsum((compact.astype(np.uint64) + np.uint64(1)) * weights, out=prefix[1:])
    unshift = _power_table(_BASE_INV, len(compact) + 1)
    poly = (prefix[span_end] - prefix[span_start]) * unshift[span_start]
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(span_doc, minlength=n), out=offsets[1:])
    return HashedBatch(exact=exact, hashes=_fmix(poly, _FMIX64, np.uint64), offsets=offsets)


@cache
def permutations(num_perm: int = NUM_PERM, seed: int = SEED) -> np.ndarray:
    """datasketch's affine32 permutation parameters (a, b), shape (2, num_perm), uint32."""
    perms = MinHash(num_perm=num_perm, seed=seed, scheme="affine32").permutations
    perms = np.asarray(perms, dtype=np.uint32)
    perms.flags.writeable = False
    return perms


def signatures(batch: HashedBatch, num_perm: int = NUM_PERM, seed: int = SEED) -> np.ndarray:
    """MinHash signatures, shape (documents, num_perm), uint32; empty documents are all MAX_HASH."""
    a, b = permutations(num_perm, seed)
    n = len(batch.offsets) - 1
    out = np.full((n, num_perm), MAX_HASH, dtype=np.uint32)
    counts = np.diff(batch.offsets)
    premixed = _fmix((batch.hashes & np.uint64(0xFFFFFFFF)).astype(np.uint32), _FMIX32, np.uint32)
    doc = 0
    while doc < n:
        # Documents [doc, stop) whose shingles fit one chunk (at least one document per chunk).
        limit = batch.offsets[doc] + CHUNK_SHINGLES
        stop = min(n, max(doc + 1, int(np.searchsorted(batch.offsets, limit, side="right")) - 1))
        rows = np.flatnonzero(counts[doc:stop]) + doc
        if len(rows):
            lo, hi = batch.offsets[doc], batch.offsets[stop]
            # (num_perm, shingles): each permutation's minimum per document is then a reduction
            # over contiguous memory, ~5x faster than over the columns of (shingles, num_perm).
            permuted = a[:, None] * premixed[None, lo:hi]  # uint32: wraps mod 2^32, the intent
            permuted += b[:, None]
            out[rows] = np.minimum.reduceat(permuted, batch.offsets[rows] - lo, axis=1).T
        doc = stop
    return out


def shingle_sets(batch: HashedBatch) -> list[np.ndarray]:
    """Each document's distinct shingle hashes, sorted (uint64): what exact Jaccard compares."""
    return [np.unique(batch.doc_hashes(i)) for i in range(len(batch.exact))]


def exact_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """|A ∩ B| / |A ∪ B| of two shingle sets (arrays of distinct hashes); 0 when both are empty."""
    inter = len(np.intersect1d(a, b, assume_unique=True))
    union = len(a) + len(b) - inter
    return inter / union if union else 0.0


def sign(
    texts: list[str | None],
    *,
    ngram: int = NGRAM,
    num_perm: int = NUM_PERM,
    seed: int = SEED,
    sets: list[np.ndarray] | None = None,
) -> tuple[list[str], np.ndarray]:
    """Exact hashes and signatures (documents x num_perm, uint32) of texts, in cache-sized batches.

    With a list as `sets`, each text's `shingle_sets` entry is appended to it from the same hashing
    pass (hashing is most of the cost of a signature)."""
    exact: list[str] = []
    parts = [np.empty((0, num_perm), dtype=np.uint32)]
    start, size = 0, 0
    for i, text in enumerate(texts):
        size += len(text or "") + 1
        if size >= BATCH_CODE_POINTS or i == len(texts) - 1:
            batch = hash_batch(texts[start : i + 1], ngram)
            exact.extend(batch.exact)
            parts.append(signatures(batch, num_perm, seed))
            if sets is not None:
                sets.extend(shingle_sets(batch))
            start, size = i + 1, 0
    return exact, np.concatenate(parts)


def band_keys(sigs: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """One int64 key per (document, band) from hash values [band*rows, (band+1)*rows)."""
    assert bands * rows <= sigs.shape[1], f"{bands} bands x {rows} rows > {sigs.shape[1]} hash values"
    values = sigs[:, : bands * rows].reshape(len(sigs), bands, rows).astype(np.uint64)
    key = np.zeros((len(sigs), bands), dtype=np.uint64)
    for j in range(rows):
        key = _fmix(key * np.uint64(_BASE) + values[:, :, j] + np.uint64(1), _FMIX64, np.uint64)
    return key.view(np.int64)


def estimated_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """The fraction of equal hash values: the MinHash estimate of the Jaccard similarity."""
    return float(np.mean(a == b))


def candidate_probability(similarity: float | np.ndarray, bands: int, rows: int) -> float | np.ndarray:
    """The probability that two documents at Jaccard `similarity` share at least one of `bands`
    buckets of `rows` hash values: 1 - (1 - s^rows)^bands (Leskovec, Rajaraman and Ullman, Mining of
    Massive Datasets, Section 3.4.2). FineWeb's 14 x 8 at the 0.8 threshold: 0.924."""
    return 1.0 - (1.0 - similarity**rows) ** bands


def bands_for_recall(threshold: float, rows: int, recall: float = RECALL) -> int:
    """The fewest bands of `rows` hash values that make a pair at Jaccard `threshold` a candidate
    with probability at least `recall`: 26 at 0.8 and 8 rows (0.9916), against FineWeb's 14."""
    if not 0.0 < threshold < 1.0 or not 0.0 < recall < 1.0:
        raise ValueError(f"threshold and recall must be in (0, 1), got {threshold} and {recall}")
    bands = math.ceil(math.log1p(-recall) / math.log1p(-(threshold**rows)))
    # the logarithms may round a bound that is met exactly either way: settle it on the formula
    while candidate_probability(threshold, bands, rows) < recall:
        bands += 1
    while bands > 1 and candidate_probability(threshold, bands - 1, rows) >= recall:
        bands -= 1
    return bands


def optimal_params(
    threshold: float, num_perm: int, fp_weight: float = 0.5, fn_weight: float = 0.5
) -> tuple[int, int]:
    """(bands, rows) minimizing the weighted false positive and negative areas of the S-curve.

    datasketch's `_optimal_param` (lsh.py), which integrates with scipy's `quad`; here Simpson's
    rule on 2,001 points, which picks the same (bands, rows) (tests/test_minhash.py).
    """
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    best, best_error = (0, 0), float("inf")
    below = np.linspace(0.0, threshold, 2001)
    above = np.linspace(threshold, 1.0, 2001)
    for bands in range(1, num_perm + 1):
        for rows in range(1, num_perm // bands + 1):
            fp = _simpson(candidate_probability(below, bands, rows), below)
            fn = _simpson(1.0 - candidate_probability(above, bands, rows), above)
            error = fp * fp_weight + fn * fn_weight
            if error < best_error:
                best, best_error = (bands, rows), error
    return best


def _simpson(y: np.ndarray, x: np.ndarray) -> float:
    h = (x[-1] - x[0]) / (len(x) - 1)
    return float(h / 3 * (y[0] + y[-1] + 4 * y[1:-1:2].sum() + 2 * y[2:-1:2].sum()))

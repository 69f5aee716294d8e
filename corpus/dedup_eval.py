"""Pair precision, recall and F1 of the dedup decisions against exact Jaccard: `refinery dedup-eval`.

A true pair is two documents whose exact word-5-gram Jaccard similarity (of the normalized
text, corpus/minhash.py) reaches the threshold; all of them are found by prefix filtering
(Bayardo et al. 2007, "Scaling Up All Pairs Similarity Search": with the shingles of every
document in one global order, two sets with Jaccard >= t share one of the first
|A| - ceil(t |A|) + 1 shingles of A), then checked exactly. Shingles are compared by their
64-bit hashes, so "exact" is up to a 64-bit collision. Predicted pairs come from the stage's own
functions: `sign` and `band_keys` (corpus/minhash.py), then either every pair sharing a bucket
("candidates", what `MinHashLSH.query` returns, verified by exact Jaccard if the setting
verifies) or every pair that the stage's decisions put in one kept cluster ("clusters":
corpus/dedup.py `cluster` and `keep_decisions`, the reference the Spark stage is tested
against: exact groups, star edges, components, split without chaining when verified). That is
what the stage rejects by. `far_drops` counts near-duplicate rejects whose Jaccard with their
kept document is below the threshold. "best clustering" is the highest F1 any clustering reaches
(`best_clustering`): where true pairs do not form cliques (A~B, B~C, A !~ C), not even a perfect
stage scores 1.

Sets:
- **gutenberg**: the 23 other editions of 8 books (shared/data/gutenberg-editions-neardup,
  clusters.tsv) and the 21 canonical copies (gutenberg-gitenberg), Project Gutenberg header
  and licence cut off, in chunks of `chunk_words` words. A canonical book is cut every
  `chunk_words` words; an edition is cut where the word 5-gram at each canonical cut (or one of
  the next `ANCHOR_PROBES` 5-grams) occurs once in the edition, so the chunks of two editions
  cover the same passage and are near-duplicates when the text is.
- **perturbed**: generated documents (Zipf-distributed synthetic words) and copies with word
  deletions, insertions and swaps of neighbours, each at `rate / 3` per word, the rate drawn
  per copy from `RATES`; some copies only change case, punctuation and spacing.
- **chains**: planted chains start ~ middle ~ end with start !~ end (`chain_set`), and two
  edited copies of each start; random `quality`, so the kept document of a chain varies.
"""

import gzip
import math
import re
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from corpus.dedup import (
    DEFAULT_KEEP_ORDER,
    candidate_pairs,
    cluster,
    cluster_pairs,
    components,
    keep_decisions,
    members_by_label,
    verified,
)
from corpus.minhash import NGRAM, HashedBatch, band_keys, exact_jaccard, hash_batch, shingle_sets, sign

CHUNK_WORDS = 500  # about 3 KB of English: a web page's main text
ANCHOR_PROBES = 50  # 5-grams tried after a canonical cut before the cut is given up
# Total edit rate per copy (deletions + insertions + swaps per word). With 5-gram shingles a
# copy at rate r keeps s = (1 - r)^5 of its shingles, Jaccard s / (2 - s): ~0.9 at 1%, ~0.8 at
# 2.3%, ~0.6 at 5%, ~0.35 at 12%. Two of the nine rates put copies near a 0.8 threshold.
RATES = (0.0, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2)
# Share of a chain document's shingles whose word is replaced per step: each replaced word changes
# 5 shingles, so a step has Jaccard (1 - 0.075) / (1 + 0.075) = 0.86 and two steps 0.74.
CHAIN_STEP_SHARE = 0.015
CEILING_MAX_DOCS = 9  # Bell(9) = 21,147 clusterings of a component are enumerated; larger: no ceiling
_START = re.compile(r"^\*{3} ?START OF.*$|^\*END\*? ?THE SMALL PRINT.*$", re.M)
_END = re.compile(r"^\*{3} ?END OF|^End of (the )?Project Gutenberg", re.M | re.I)


@dataclass(frozen=True)
class EvalSet:
    name: str
    ids: list[str]
    texts: list[str]
    quality: list[float] | None = None  # for the keep order; None: documents are kept by id

    def docs(self) -> list[dict[str, Any]]:
        """The columns `keep_decisions` reads."""
        quality = self.quality or [None] * len(self.ids)
        return [{"id": i, "quality": q} for i, q in zip(self.ids, quality, strict=True)]


@dataclass(frozen=True)
class Setting:
    """One LSH configuration to score: bands x rows of `num_perm` hashes, verified or not."""

    name: str
    bands: int
    rows: int
    num_perm: int
    verify: float | None = None


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("latin-1")  # the -8 editions: ISO-8859-1


def gutenberg_body(text: str) -> str:
    """The book without the Project Gutenberg header and licence, when their markers are found."""
    starts = list(_START.finditer(text))
    begin = starts[-1].end() if starts else 0
    end = _END.search(text, begin)
    return text[begin : end.start() if end else len(text)]


def _align(canonical: list[str], edition: list[str], chunk_words: int) -> list[int]:
    """Word positions in `edition` of the canonical cuts k * chunk_words that can be located."""

    def keys(words: list[str]) -> list[str]:  # lowercased: editions differ in case more than in words
        return [" ".join(words[i : i + NGRAM]).lower() for i in range(len(words) - NGRAM + 1)]

    edition_keys = keys(edition)
    seen: dict[str, int] = {}
    for pos, key in enumerate(edition_keys):
        seen[key] = -1 if key in seen else pos  # -1: occurs more than once, useless as an anchor
    canonical_keys = keys(canonical)
    cuts = [0]
    for cut in range(chunk_words, len(canonical), chunk_words):
        for probe in range(min(ANCHOR_PROBES, len(canonical_keys) - cut)):
            pos = seen.get(canonical_keys[cut + probe], -1)
            if pos >= 0:
                if pos - probe > cuts[-1]:
                    cuts.append(pos - probe)
                break
    return cuts


def _chunks(words: list[str], cuts: list[int]) -> list[str]:
    bounds = [*cuts, len(words)]
    return [" ".join(words[a:b]) for a, b in zip(bounds, bounds[1:], strict=False) if b > a]


def load_gutenberg(editions_dir: str | Path, chunk_words: int = CHUNK_WORDS) -> EvalSet:
    editions_dir = Path(editions_dir)
    index = editions_dir / "clusters.tsv"
    if not index.is_file():
        raise FileNotFoundError(f"{index}: not found (gutenberg-editions-neardup with clusters.tsv)")
    rows = [line.split("\t") for line in index.read_text().splitlines()[1:] if line.strip()]
    canonical_dir = editions_dir.parent / "gutenberg-gitenberg"
    books = sorted(p for p in canonical_dir.glob("*.txt") if not p.name.startswith("LICENSE"))
    if not books:
        raise FileNotFoundError(f"{canonical_dir}: no canonical copies (*.txt)")
    ids, texts = [], []
    canonical_words = {}
    for book in books:
        words = gutenberg_body(_read_text(book)).split()
        canonical_words[book.name] = words
        chunks = _chunks(words, list(range(0, len(words), chunk_words)))
        ids += [f"{book.stem}#{i}" for i in range(len(chunks))]
        texts += chunks
    for row in sorted(rows):
        file, canonical = row[0], Path(row[5]).name
        words = gutenberg_body(_read_text(editions_dir / file)).split()
        chunks = _chunks(words, _align(canonical_words[canonical], words, chunk_words))
        ids += [f"{file}#{i}" for i in range(len(chunks))]
        texts += chunks
    return EvalSet("gutenberg", ids, texts)


def _perturb(words: list[str], rate: float, vocab: np.ndarray, rng: np.random.Generator) -> list[str]:
    out: list[str] = []
    ops = rng.random(len(words))
    i = 0
    while i < len(words):
        op = ops[i]
        if op < rate / 3:  # delete
            pass
        elif op < 2 * rate / 3:  # insert a word after this one
            out += [words[i], str(rng.choice(vocab))]
        elif op < rate and i + 1 < len(words):  # swap with the next word
            out += [words[i + 1], words[i]]
            i += 1
        else:
            out.append(words[i])
        i += 1
    return out


def _restyle(words: list[str], rng: np.random.Generator) -> str:
    """The same words with other case, punctuation and spacing: an exact duplicate once normalized."""
    marks = rng.choice(np.array([" ", "  ", ", ", ". ", " - ", "\n"]), len(words))
    return "".join(
        w.upper() + m if i % 7 == 0 else w + m for i, (w, m) in enumerate(zip(words, marks, strict=True))
    )


def _vocabulary(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic words and their Zipf probabilities."""
    zipf = 1.0 / np.arange(1, size + 1)
    return np.array([f"w{i}" for i in range(size)]), zipf / zipf.sum()


def _copy(base: list[str], vocabulary: np.ndarray, rng: np.random.Generator) -> tuple[float, str]:
    """An edited copy at a rate drawn from RATES, or at rate 0 half the time a restyled one."""
    rate = float(rng.choice(RATES))
    if rate == 0.0 and rng.random() < 0.5:
        return rate, _restyle(base, rng)
    return rate, " ".join(_perturb(base, rate, vocabulary, rng))


def perturbed_set(
    seed: int = 0, bases: int = 400, copies: int = 3, words: tuple[int, int] = (100, 1000), vocab: int = 20000
) -> EvalSet:
    """`bases` documents of 100-1,000 words, each with `copies` edited or restyled copies."""
    rng = np.random.default_rng(seed)
    vocabulary, p = _vocabulary(vocab)
    ids, texts = [], []
    for b in range(bases):
        base = list(rng.choice(vocabulary, int(rng.integers(*words)), p=p))
        ids.append(f"base{b}")
        texts.append(" ".join(base))
        for c in range(copies):
            rate, text = _copy(base, vocabulary, rng)
            ids.append(f"base{b}.copy{c}.rate{rate}")
            texts.append(text)
    return EvalSet("perturbed", ids, texts)


def _replace(words: list[str], positions: np.ndarray, tag: str) -> list[str]:
    """`words` with the words at `positions` replaced by words found nowhere else."""
    out = list(words)
    for i in positions.tolist():
        out[i] = f"{tag}x{i}"
    return out


def chain_set(
    seed: int = 0, bases: int = 400, copies: int = 2, words: tuple[int, int] = (200, 1000), vocab: int = 20000
) -> EvalSet:
    """Per base a planted chain start ~ middle ~ end with start !~ end, and `copies` edited copies
    of the start as in `perturbed_set`; every document gets a random `quality`, so which one
    of a chain the keep order puts first varies.

    The middle is the start with k isolated words replaced, the end the middle with k others:
    k = CHAIN_STEP_SHARE of the shingles, each word changes 5 of them, so each step has a Jaccard
    of ~0.86 and the ends ~0.74 (exactly: the truth is computed, not assumed). No split of a chain
    scores every pair: {start, middle, end} has one false pair, any other split misses one.
    """
    rng = np.random.default_rng(seed)
    vocabulary, p = _vocabulary(vocab)
    ids, texts, quality = [], [], []
    for b in range(bases):
        start = list(rng.choice(vocabulary, int(rng.integers(*words)), p=p))
        k = max(1, round(CHAIN_STEP_SHARE * (len(start) - NGRAM + 1)))
        # 2k evenly spaced words, ~33 apart: no shingle holds two of them
        spots = np.linspace(NGRAM, len(start) - NGRAM, 2 * k).round().astype(np.int64)
        middle = _replace(start, spots[0::2], f"m{b}")
        chain = [("start", " ".join(start)), ("middle", " ".join(middle))]
        chain.append(("end", " ".join(_replace(middle, spots[1::2], f"e{b}"))))
        for c in range(copies):
            rate, text = _copy(start, vocabulary, rng)
            chain.append((f"copy{c}.rate{rate}", text))
        for name, text in chain:
            ids.append(f"chain{b}.{name}")
            texts.append(text)
            quality.append(float(rng.random()))
    return EvalSet("chains", ids, texts, quality)


def true_pairs(batch: HashedBatch, threshold: float) -> dict[tuple[int, int], float]:
    """Every pair (i < j) with exact shingle Jaccard >= threshold, and its Jaccard."""
    sets = shingle_sets(batch)  # sorted: one global order
    tokens, docs = [], []
    for doc, shingles in enumerate(sets):
        if len(shingles):
            prefix = min(len(shingles), len(shingles) - math.ceil(threshold * len(shingles) - 1e-9) + 1)
            tokens.append(shingles[:prefix])
            docs.append(np.full(prefix, doc, dtype=np.int64))
    if not tokens:
        return {}
    token, doc = np.concatenate(tokens), np.concatenate(docs)
    order = np.lexsort((doc, token))
    token, doc = token[order], doc[order]
    pairs = set()
    for k in range(1, len(token)):  # pairs k apart in a run of equal tokens
        same = token[k:] == token[:-k]
        if not same.any():
            break
        pairs.update(zip(doc[:-k][same].tolist(), doc[k:][same].tolist(), strict=True))
    found = {}
    for a, b in pairs:
        if a == b:
            continue
        jaccard = exact_jaccard(sets[a], sets[b])
        if jaccard >= threshold:
            found[(min(a, b), max(a, b))] = jaccard
    return found


def _scores(predicted: set[tuple[int, int]], truth: set[tuple[int, int]]) -> dict[str, Any]:
    return _counts(len(predicted & truth), len(predicted), len(truth))


def _counts(tp: int, predicted: int, true: int) -> dict[str, Any]:
    """Precision, recall and F1 of `predicted` pairs, `tp` of them among `true` pairs."""
    precision = tp / predicted if predicted else 1.0
    recall = tp / true if true else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"predicted": predicted, "tp": tp, "precision": precision, "recall": recall, "f1": f1}


def _partitions(items: list[int]) -> Iterator[list[list[int]]]:
    """Every partition of `items` into nonempty blocks (Bell(n) of them)."""
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for blocks in _partitions(rest):
        for i in range(len(blocks)):
            yield blocks[:i] + [[first, *blocks[i]]] + blocks[i + 1 :]
        yield [[first], *blocks]


def _outcomes(members: list[int], inside: list[tuple[int, int]]) -> set[tuple[int, int, int]] | None:
    """(false, missed, true) pair counts of every clustering of one component of the true pairs
    (`inside`: its true pairs); None if it is not a clique and has over `CEILING_MAX_DOCS` documents."""
    if len(inside) == len(members) * (len(members) - 1) // 2:
        return {(0, 0, len(inside))}  # a clique: one cluster makes no error
    if len(members) > CEILING_MAX_DOCS:
        return None
    true = set(inside)
    outcomes = set()
    for blocks in _partitions(members):
        predicted = {(a, b) for block in blocks for i, a in enumerate(block) for b in block[i + 1 :]}
        hit = len(predicted & true)
        outcomes.add((len(predicted) - hit, len(true) - hit, hit))
    return outcomes


def best_clustering(truth: set[tuple[int, int]], n: int) -> dict[str, Any] | None:
    """The highest pair F1 that any clustering of `n` documents reaches against `truth` (pairs i < j),
    found exhaustively; None when a component of the true pairs that is not a clique has more than
    `CEILING_MAX_DOCS` documents.

    A best clustering never joins two components of the true pairs (that only adds false pairs),
    so each component's clusterings are enumerated alone. F1 = 2 TP / (2 TP + FP + FN) is a ratio of
    sums over components, maximized exactly by Dinkelbach's iteration (1967): in each component
    choose the outcome maximizing 2 TP - f (2 TP + FP + FN) for the current F1 f, until f stops
    rising (each step raises it and the outcomes are finite).
    """
    labels = components(n, truth)
    inside: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for a, b in truth:
        inside[int(labels[a])].append((a, b))
    groups = members_by_label(labels.tolist()).items()  # documents ascending, as pairs are (i < j)
    per_component = [_outcomes(docs, inside[label]) for label, docs in groups if len(docs) > 1]
    if any(outcomes is None for outcomes in per_component):
        return None
    f1, best = 0.0, (0, 0, 0)
    while True:
        chosen = [max(o, key=lambda c, f=f1: 2 * c[2] - f * (2 * c[2] + c[0] + c[1])) for o in per_component]
        fp, fn, tp = (sum(c[k] for c in chosen) for k in range(3))
        better = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
        if better <= f1 + 1e-12:
            break
        f1, best = better, (fp, fn, tp)
    fp, fn, tp = best
    return _counts(tp, tp + fp, tp + fn)


def far_drops(
    decisions: list[dict[str, Any]], ids: list[str], sets: list[np.ndarray], threshold: float
) -> int:
    """Documents rejected as near duplicates of a kept document whose Jaccard with them is below
    `threshold`: what chaining does (0 by construction with verification)."""
    row = {doc_id: i for i, doc_id in enumerate(ids)}
    return sum(
        d["reject"] == "duplicate:near" and exact_jaccard(sets[i], sets[row[d["cluster_id"]]]) < threshold
        for i, d in enumerate(decisions)
    )


def evaluate(
    evalset: EvalSet,
    settings: Sequence[Setting],
    threshold: float,
    *,
    ngram: int = NGRAM,
    seed: int = 1,
    keep_order: Sequence[str] = DEFAULT_KEEP_ORDER,
) -> list[dict[str, Any]]:
    """One row per setting and kind of predicted pairs; truth is exact Jaccard on 5-grams. A last
    row gives the best F1 any clustering reaches (`best_clustering`), the ceiling of "clusters".

    "candidates": the pairs sharing an LSH bucket (verified if the setting verifies); "clusters":
    the pairs the stage's decisions put in one kept cluster (`keep_decisions`, the stage's own
    rule), which is what the stage rejects by.
    """
    truth = set(true_pairs(hash_batch(evalset.texts, NGRAM), threshold))
    results = []
    signed: dict[int, tuple[list[str], np.ndarray, list[np.ndarray]]] = {}
    for setting in settings:
        if setting.num_perm not in signed:
            sets: list[np.ndarray] = []
            exact, sigs = sign(evalset.texts, ngram=ngram, num_perm=setting.num_perm, seed=seed, sets=sets)
            signed[setting.num_perm] = exact, sigs, sets
        exact, sigs, sets = signed[setting.num_perm]
        keys = band_keys(sigs, setting.bands, setting.rows)
        candidates = candidate_pairs(keys)
        if setting.verify is not None:
            candidates = verified(candidates, sets, setting.verify)
        labels = cluster(exact, keys, sets, setting.verify)
        decisions = keep_decisions(evalset.docs(), labels, exact, keep_order, sets, setting.verify)
        clusters = cluster_pairs([d["cluster_id"] for d in decisions])
        far = far_drops(decisions, evalset.ids, sets, threshold)
        for kind, predicted in (("candidates", candidates), ("clusters", clusters)):
            results.append(
                {
                    "set": evalset.name,
                    "docs": len(evalset.texts),
                    "true_pairs": len(truth),
                    "setting": setting.name,
                    "pairs": kind,
                    **_scores(predicted, truth),
                    "far_drops": far if kind == "clusters" else None,
                }
            )
    best = best_clustering(truth, len(evalset.texts))
    if best is not None:
        results.append(
            {
                "set": evalset.name,
                "docs": len(evalset.texts),
                "true_pairs": len(truth),
                "setting": "any (exhaustive)",
                "pairs": "best clustering",
                **best,
                "far_drops": None,
            }
        )
    return results


def format_table(results: list[dict[str, Any]]) -> str:
    columns = ("set", "docs", "true_pairs", "setting", "pairs", "predicted", "precision", "recall", "f1")
    columns += ("far_drops",)

    def cell(value: Any) -> str:
        return f"{value:.3f}" if isinstance(value, float) else "-" if value is None else str(value)

    rows = [columns] + [tuple(cell(r[c]) for c in columns) for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    return "\n".join(
        "  ".join(
            cell.ljust(w) if i in (0, 3, 4) else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    )

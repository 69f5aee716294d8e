"""corpus/dedup.py: exact verification and the split of components into clusters (no chaining)."""

import numpy as np
import pytest

from corpus.dedup import attach, cluster, keep_decisions, split_component, verified
from corpus.minhash import band_keys, exact_jaccard, shingle_hash64, shingles, sign


def as_set(*hashes: int) -> np.ndarray:
    return np.array(sorted(hashes), dtype=np.uint64)


def chain_texts() -> list[str]:
    """start ~ middle ~ end at Jaccard 181/211 = 0.86 per step (3 isolated words of 200 replaced),
    start !~ end at 166/226 = 0.73."""
    words = [f"w{k}" for k in np.random.default_rng(0).integers(0, 3000, 200)]
    middle = [f"mid{i}" if i in (20, 50, 80) else w for i, w in enumerate(words)]
    end = [f"end{i}" if i in (120, 150, 180) else w for i, w in enumerate(middle)]
    return [" ".join(words), " ".join(middle), " ".join(end)]


def test_exact_jaccard_counts_shared_hashes_over_the_union():
    assert exact_jaccard(as_set(1, 2, 3, 4), as_set(3, 4, 5)) == 2 / 5
    assert exact_jaccard(as_set(), as_set()) == 0.0
    assert exact_jaccard(as_set(7), as_set(7)) == 1.0


def test_sign_returns_each_texts_distinct_shingle_hashes():
    texts = ["a b c d e f a b c d e f", "", "One, two!", "x " * 3]
    sets: list[np.ndarray] = []
    exact, _ = sign(texts, sets=sets)
    assert len(sets) == len(exact) == 4
    for text, got in zip(texts, sets, strict=True):
        assert got.tolist() == sorted({shingle_hash64(s) for s in shingles(text)})


def test_verified_keeps_only_edges_at_the_threshold_by_exact_jaccard():
    sets = [as_set(1, 2, 3, 4, 5), as_set(1, 2, 3, 4, 6), as_set(1, 2, 3, 4, 5)]
    # 4/6 = 0.67 and 5/5 = 1.0
    assert verified({(1, 0), (2, 0)}, sets, 0.8) == {(2, 0)}


def test_attach_does_not_chain_through_the_middle_document():
    start, middle, end = as_set(*range(10)), as_set(*range(1, 11)), as_set(*range(2, 12))
    # start~middle and middle~end at 9/11 = 0.82, start~end at 8/12 = 0.67
    assert attach([start, middle, end], 0.8) == [0, 0, 2]
    assert attach([middle, start, end], 0.8) == [0, 0, 0]  # the middle kept: both ends are near it


def test_split_component_keeps_exact_groups_whole():
    sets = [as_set(*range(10)), as_set(*range(1, 11)), as_set(*range(2, 12)), as_set(*range(2, 12))]
    exact = ["s", "m", "e", "e"]
    # in keep order: an end copy first, then the start, the middle, the other end copy
    assert split_component([3, 0, 1, 2], exact, sets, 0.8) == [[3, 2, 1], [0]]
    assert split_component([3, 0, 1, 2], exact, sets, None) == [[3, 0, 1, 2]]


@pytest.mark.parametrize("verify", [0.8, None])
def test_chain_end_is_dropped_only_without_verification(verify):
    texts = chain_texts()
    sets: list[np.ndarray] = []
    exact, sigs = sign(texts, sets=sets)
    assert (
        exact_jaccard(sets[0], sets[2])
        < 0.8
        <= min(exact_jaccard(sets[0], sets[1]), exact_jaccard(*sets[1:]))
    )
    labels = cluster(exact, band_keys(sigs, 14, 8), sets, verify)
    assert len(set(labels.tolist())) == 1  # one component either way
    docs = [{"id": name, "quality": q} for name, q in (("start", 0.9), ("middle", 0.5), ("end", 0.1))]
    rejects = [d["reject"] for d in keep_decisions(docs, labels, exact, ["quality desc"], sets, verify)]
    assert rejects == (
        [None, "duplicate:near", None] if verify else [None, "duplicate:near", "duplicate:near"]
    )

import numpy as np
import pytest
from datasketch import MinHash, MinHashLSH
from datasketch.lsh import _optimal_param

from corpus import minhash
from corpus.dedup import candidate_pairs

TRICKY = [
    "Hello,  World! This is a test of the emergency broadcast system.",
    "",
    None,
    "  ... !!! ",
    "one",
    "a b c d",
    "a b c d e",
    "Ünïcödé ﬁne — text\u00a0here\ttabs and\nnewlines, ¼ “quoted”",
    "İstanbul ΣΊΣΥΦΟΣ straße ＦＵＬＬＷＩＤＴＨ",
    "emoji 🙂 and symbols © ® ™ € inside words",
    "lone surrogate \udcff survives",
]


def words(rng: np.random.Generator, n: int) -> list[str]:
    return [f"w{k}" for k in rng.integers(0, 5000, n)]


def test_normalize_folds_case_whitespace_punctuation_and_compatibility_forms():
    assert minhash.normalize("Hello,  World!\n") == "hello world"
    assert minhash.normalize("ＦＵＬＬ ﬁne") == "full fine"
    assert minhash.normalize("end.Start -- straße") == "end start strasse"
    assert minhash.normalize(" ... ") == ""


def test_exact_hash_ignores_case_spacing_and_punctuation_only():
    assert minhash.exact_hash("The cat, sat.") == minhash.exact_hash("the   CAT sat")
    assert minhash.exact_hash("The cat sat.") != minhash.exact_hash("The cat sat down.")


def test_batch_hashes_equal_the_one_document_functions():
    batch = minhash.hash_batch(TRICKY)
    for i, text in enumerate(TRICKY):
        assert batch.exact[i] == minhash.exact_hash(text)
        expected = sorted(minhash.shingle_hash64(s) for s in minhash.shingles(text))
        assert sorted(batch.doc_hashes(i).tolist()) == expected, text


def test_short_text_is_one_shingle_and_empty_text_has_none():
    assert minhash.shingles("a b c", 5) == ["a b c"]
    assert minhash.shingles(" ! ", 5) == []
    assert minhash.shingles("a b c d e f", 5) == ["a b c d e", "b c d e f"]


def test_signatures_equal_datasketch_minhash_with_our_hash_function():
    rng = np.random.default_rng(0)
    texts = TRICKY + [" ".join(words(rng, n)) for n in (3, 40, 700)]
    exact, sigs = minhash.sign(texts, num_perm=64, seed=7)
    assert exact == [minhash.exact_hash(t) for t in texts]
    for text, sig in zip(texts, sigs, strict=True):
        reference = MinHash(num_perm=64, seed=7, hashfunc=minhash.shingle_hash)
        reference.update_batch(minhash.shingles(text))
        assert np.array_equal(reference.hashvalues, sig), text


def test_permutations_are_datasketch_defaults():
    assert np.array_equal(minhash.permutations(112, 1), MinHash(num_perm=112).permutations)


def test_empty_document_signature_is_all_max_hash():
    _, sigs = minhash.sign(["", "word"])
    assert (sigs[0] == minhash.MAX_HASH).all() and not (sigs[1] == minhash.MAX_HASH).all()


def test_sign_in_small_batches_equals_one_batch(monkeypatch):
    rng = np.random.default_rng(1)
    texts = [" ".join(words(rng, int(n))) for n in rng.integers(0, 300, 40)]
    whole = minhash.sign(texts)
    monkeypatch.setattr(minhash, "BATCH_CODE_POINTS", 500)
    monkeypatch.setattr(minhash, "CHUNK_SHINGLES", 7)
    split = minhash.sign(texts)
    assert whole[0] == split[0] and np.array_equal(whole[1], split[1])


def test_estimated_jaccard_is_close_to_the_true_jaccard():
    rng = np.random.default_rng(2)
    base = words(rng, 2000)
    other = base[:1500] + words(rng, 500)  # shingles: 1496 shared of 2 * 1996 - 1496 -> J = 0.4286
    truth = 1496 / (2 * 1996 - 1496)
    _, sigs = minhash.sign([" ".join(base), " ".join(other)], num_perm=1024)
    assert abs(minhash.estimated_jaccard(sigs[0], sigs[1]) - truth) < 3 * (truth * (1 - truth) / 1024) ** 0.5


def test_band_keys_are_equal_exactly_when_the_band_values_are():
    sigs = np.array([[1, 2, 3, 4], [1, 2, 3, 5], [9, 2, 3, 4]], dtype=np.uint32)
    keys = minhash.band_keys(sigs, 2, 2)
    assert keys[0, 0] == keys[1, 0] and keys[0, 1] != keys[1, 1]
    assert keys[0, 0] != keys[2, 0] and keys[0, 1] == keys[2, 1]


@pytest.mark.parametrize("threshold,num_perm", [(0.5, 112), (0.7, 112), (0.8, 112), (0.9, 128), (0.8, 256)])
def test_optimal_params_match_datasketch(threshold, num_perm):
    assert minhash.optimal_params(threshold, num_perm) == _optimal_param(threshold, num_perm, 0.5, 0.5)


def test_candidate_pairs_match_datasketch_minhash_lsh():
    rng = np.random.default_rng(3)
    bases = [words(rng, 200) for _ in range(6)]
    texts = []
    for base in bases:  # copies with 0-8% of the words replaced: Jaccard 1.0 down to ~0.5
        for rate in (0.0, 0.005, 0.01, 0.02, 0.04, 0.08):
            edited = [w if rng.random() >= rate else "x" + w for w in base]
            texts.append(" ".join(edited))
    _, sigs = minhash.sign(texts)
    ours = candidate_pairs(minhash.band_keys(sigs, 14, 8))
    lsh = MinHashLSH(num_perm=112, params=(14, 8))
    sketches = [MinHash(num_perm=112, hashvalues=s, scheme="affine32") for s in sigs]
    for i, sketch in enumerate(sketches):
        lsh.insert(i, sketch)
    theirs = {(min(i, j), max(i, j)) for i, s in enumerate(sketches) for j in lsh.query(s) if i != j}
    assert ours == theirs
    assert len(ours) > 10  # the set has candidates, and not every pair is one
    assert len(ours) < len(texts) * (len(texts) - 1) // 2


def test_candidate_probability_is_one_minus_the_chance_that_no_band_matches():
    assert minhash.candidate_probability(0.8, 14, 8) == pytest.approx(1 - (1 - 0.8**8) ** 14)
    assert minhash.candidate_probability(0.8, 14, 8) == pytest.approx(0.92355, abs=1e-5)  # FineWeb
    assert minhash.candidate_probability(0.8, 26, 8) == pytest.approx(0.99156, abs=1e-5)


def test_bands_for_recall_is_the_fewest_bands_reaching_the_recall():
    for rows, bands in ((8, 26), (6, 16), (5, 12)):
        assert minhash.bands_for_recall(0.8, rows) == bands
        assert minhash.candidate_probability(0.8, bands, rows) >= 0.99
        assert minhash.candidate_probability(0.8, bands - 1, rows) < 0.99
    with pytest.raises(ValueError, match="threshold and recall"):
        minhash.bands_for_recall(0.8, 8, recall=1.0)


def test_pairs_at_the_threshold_become_candidates_as_often_as_the_formula_says():
    """3,000 pairs of word sets at Jaccard exactly 0.8 (400 shared words of 500), signed with 208
    hash values: the share of pairs with an equal band key under 14 x 8 and 26 x 8 (the first 112
    or all 208 values) is the formula's within 4 standard errors."""
    pairs = 3000
    texts = []
    for p in range(pairs):
        words = [f"p{p}w{i}" for i in range(500)]
        texts += [" ".join(words[:450]), " ".join(words[50:])]
    _, sigs = minhash.sign(texts, ngram=1, num_perm=208)
    for bands in (14, 26):
        keys = minhash.band_keys(sigs, bands, 8)
        found = np.mean((keys[0::2] == keys[1::2]).any(axis=1))
        expected = minhash.candidate_probability(0.8, bands, 8)
        assert abs(found - expected) < 4 * np.sqrt(expected * (1 - expected) / pairs), (bands, found)
    assert minhash.candidate_probability(0.8, 14, 8) < 0.99 <= minhash.candidate_probability(0.8, 26, 8)

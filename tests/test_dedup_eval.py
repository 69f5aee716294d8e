import itertools

import numpy as np
import pytest

from corpus import dedup_eval
from corpus.dedup_eval import (
    Setting,
    best_clustering,
    chain_set,
    evaluate,
    gutenberg_body,
    perturbed_set,
    true_pairs,
)
from corpus.minhash import exact_hash, hash_batch
from jobs.cli import main as cli_main


def brute_force_pairs(texts: list[str], threshold: float) -> dict[tuple[int, int], float]:
    batch = hash_batch(texts)
    sets = [set(batch.doc_hashes(i).tolist()) for i in range(len(texts))]
    found = {}
    for a, b in itertools.combinations(range(len(texts)), 2):
        union = len(sets[a] | sets[b])
        jaccard = len(sets[a] & sets[b]) / union if union else 0.0
        if jaccard >= threshold:
            found[(a, b)] = jaccard
    return found


@pytest.mark.parametrize("threshold", [0.5, 0.8, 0.95])
def test_prefix_filter_finds_exactly_the_brute_force_pairs(threshold):
    texts = perturbed_set(seed=3, bases=25, copies=3).texts
    expected = brute_force_pairs(texts, threshold)
    assert true_pairs(hash_batch(texts), threshold) == pytest.approx(expected)
    assert expected  # the set has pairs above each threshold


def test_perturbed_set_is_reproducible_from_its_seed():
    assert perturbed_set(seed=1, bases=5).texts == perturbed_set(seed=1, bases=5).texts
    assert perturbed_set(seed=1, bases=5).texts != perturbed_set(seed=2, bases=5).texts


def test_higher_edit_rates_give_lower_jaccard():
    rng = np.random.default_rng(0)
    vocab = np.array([f"v{i}" for i in range(5000)])
    base = list(rng.choice(vocab, 800))
    texts = [" ".join(base)] + [
        " ".join(dedup_eval._perturb(base, rate, vocab, rng)) for rate in (0.005, 0.02, 0.1)
    ]
    found = true_pairs(hash_batch(texts), 0.0)
    similarity = [found.get((0, i), 0.0) for i in (1, 2, 3)]
    assert similarity == sorted(similarity, reverse=True) and similarity[0] > 0.9 > similarity[2]


def test_restyled_copy_is_an_exact_duplicate():
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    text = dedup_eval._restyle(words, np.random.default_rng(0))
    assert text != " ".join(words) and exact_hash(text) == exact_hash(" ".join(words))


def test_gutenberg_body_drops_header_and_licence():
    book = (
        "Title\n*** START OF THIS PROJECT GUTENBERG EBOOK X ***\nCall me.\n*** END OF THIS EBOOK ***\nLicence"
    )
    assert gutenberg_body(book).strip() == "Call me."
    old = "Header\n*END*THE SMALL PRINT! ETEXTS*END*\nIt was.\nEnd of the Project Gutenberg Etext"
    assert gutenberg_body(old).strip() == "It was."


def test_edition_chunks_are_cut_at_the_canonical_passages():
    rng = np.random.default_rng(0)
    canonical = [f"w{k}" for k in rng.integers(0, 10000, 1000)]
    edition = ["NEW", "HEADER", "words"] + canonical[:420] + ["typo"] + canonical[421:]
    cuts = dedup_eval._align(canonical, edition, 200)
    assert cuts == [0, 203, 403, 603, 803]


def test_scores_count_true_and_false_pairs():
    scores = dedup_eval._scores({(0, 1), (2, 3), (4, 5)}, {(0, 1), (2, 3), (6, 7), (8, 9)})
    assert (scores["tp"], scores["precision"], scores["recall"]) == (2, 2 / 3, 0.5)
    assert scores["f1"] == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))


def test_best_clustering_by_hand():
    """A chain 0~1~2 (0 !~ 2) beside a clique 3, 4, 5: one cluster per component gives 5 true pairs
    and 1 false (F1 10/11); splitting the chain ({0, 1}, {2}) gives 4 true and 1 missed (8/9)."""
    chain, clique = {(0, 1), (1, 2)}, {(3, 4), (3, 5), (4, 5)}
    best = best_clustering(chain | clique, 7)  # document 6 is near nothing
    assert (best["tp"], best["predicted"], best["f1"]) == (5, 6, pytest.approx(10 / 11))
    assert best_clustering(chain, 3)["f1"] == pytest.approx(0.8)
    assert best_clustering(clique, 6)["f1"] == 1.0
    assert best_clustering(set(), 3)["f1"] == 1.0


def _partitions_of(n: int):
    """Every clustering of range(n), as a label per document (restricted growth strings)."""
    for labels in itertools.product(range(n), repeat=n):
        if all(labels[i] <= max(labels[:i], default=-1) + 1 for i in range(n)):
            yield labels


@pytest.mark.parametrize("seed", range(8))
def test_best_clustering_matches_a_search_over_every_clustering(seed):
    """Per-component search with Dinkelbach's iteration against every clustering of the whole set."""
    rng = np.random.default_rng(seed)
    n = 6
    truth = {(a, b) for a, b in itertools.combinations(range(n), 2) if rng.random() < 0.4}
    best = 0.0
    for labels in _partitions_of(n):
        predicted = {(a, b) for a, b in itertools.combinations(range(n), 2) if labels[a] == labels[b]}
        best = max(best, dedup_eval._scores(predicted, truth)["f1"])
    assert best_clustering(truth, n)["f1"] == pytest.approx(best)


def test_best_clustering_gives_up_on_a_large_component_that_is_not_a_clique():
    path = {(i, i + 1) for i in range(dedup_eval.CEILING_MAX_DOCS)}
    assert best_clustering(path, dedup_eval.CEILING_MAX_DOCS + 1) is None
    clique = set(itertools.combinations(range(dedup_eval.CEILING_MAX_DOCS + 1), 2))
    assert best_clustering(clique, dedup_eval.CEILING_MAX_DOCS + 1)["f1"] == 1.0


def test_verification_removes_false_candidates_on_the_generated_set():
    evalset = perturbed_set(seed=0, bases=60)
    plain, verified = Setting("plain", 14, 8, 112), Setting("verified", 14, 8, 112, 0.8)
    rows = {(r["setting"], r["pairs"]): r for r in evaluate(evalset, [plain, verified], 0.8)}
    assert rows[("verified", "candidates")]["precision"] > rows[("plain", "candidates")]["precision"]
    assert rows[("plain", "candidates")]["recall"] > 0.95


def test_chain_set_plants_chains_whose_ends_are_not_near():
    evalset = chain_set(seed=1, bases=10)
    found = true_pairs(hash_batch(evalset.texts), 0.0)
    for b in range(10):
        start, middle, end = (evalset.ids.index(f"chain{b}.{name}") for name in ("start", "middle", "end"))
        assert found[(start, middle)] >= 0.8 and found[(middle, end)] >= 0.8 > found.get((start, end), 0.0)


def test_stage_decisions_drop_no_document_below_the_threshold_of_its_kept_one():
    """Without verification components chain (far drops); verified and split, none."""
    evalset = chain_set(seed=0, bases=40)
    plain, verified = Setting("plain", 14, 8, 112), Setting("verified", 14, 8, 112, 0.8)
    rows = {(r["setting"], r["pairs"]): r for r in evaluate(evalset, [plain, verified], 0.8)}
    assert rows[("plain", "clusters")]["far_drops"] > 0
    assert rows[("verified", "clusters")]["far_drops"] == 0
    assert rows[("verified", "clusters")]["precision"] > rows[("plain", "clusters")]["precision"]


def test_cli_prints_the_table(capsys):
    assert cli_main(["dedup-eval", "--sets", "perturbed,chains", "--bases", "20", "--chains", "5"]) == 0
    out = capsys.readouterr().out
    assert "true pair: exact word-5-gram Jaccard >= 0.8" in out
    assert "26x8 verify" in out and "candidates" in out and "clusters" in out and "far_drops" in out
    assert "chains" in out and "perturbed" in out and "best clustering" in out


def test_cli_rejects_an_unknown_set():
    assert cli_main(["dedup-eval", "--sets", "wikipedia"]) == 2


@pytest.mark.slow
def test_stage_pair_f1_reaches_097_on_editions_and_edits(shared_data):
    """The acceptance figure at cluster level, what the stage rejects by: `refinery dedup-eval`
    (about a minute). On planted chains no clustering can reach it (corpus/dedup_eval.py
    `chain_set`, `best_clustering`); there no document is dropped below the threshold of its kept
    one."""
    setting = Setting("14x8 verify", 14, 8, 112, 0.8)
    for evalset in (
        dedup_eval.load_gutenberg(shared_data / "gutenberg-editions-neardup"),
        perturbed_set(seed=0, bases=1000),
        chain_set(seed=0, bases=400),
    ):
        rows = {r["pairs"]: r for r in evaluate(evalset, [setting], 0.8)}
        row, best = rows["clusters"], rows["best clustering"]
        assert row["far_drops"] == 0, row
        assert row["f1"] <= best["f1"] + 1e-12, (row, best)
        if evalset.name != "chains":
            assert row["f1"] >= 0.97, row
        else:  # the best clustering of the chains: what the stage could reach at most
            assert 0.8 < best["f1"] < 0.97, best

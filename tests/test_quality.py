"""The quality classifier: data preparation, training, figures, scoring and bad model files."""

import gzip
import json
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from qualitydata import reference_docs, web_docs

from classifiers.langid import lid176_path
from classifiers.quality import (
    CHUNK_MAX_WORDS,
    CHUNK_MIN_WORDS,
    LABEL_CC,
    LABEL_HQ,
    TrainParams,
    chunks,
    eval_examples,
    evaluate,
    load_quality_model,
    make_dataset,
    metrics,
    normalize,
    report_path,
    roc_auc,
    score_text,
    score_texts,
    split_groups,
    train,
)
from classifiers.quality_data import Doc, detokenize_wikitext, read_docs
from corpus.filters.quality import LOW, QualityFilter
from corpus.gutenberg import strip_gutenberg
from jobs.config import load_config

FAST = TrainParams(epoch=10, cutoff=2_000, bucket=20_000)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("quality") / "q.ftz"
    report = train(reference_docs(60), web_docs(120), out, FAST)
    return out, report


def words(n: int, tag: str = "w") -> str:
    return " ".join(f"{tag}{i}" for i in range(n))


def test_normalize_lowercases_and_splits_punctuation_onto_one_line():
    assert normalize("Hello, World!\nIt's  2024.") == "hello , world ! it ' s 2024 ."


def test_chunks_have_bounded_length_and_short_documents_give_none():
    pieces = list(chunks(words(5000), random.Random(0)))
    lengths = [len(p.split()) for p in pieces]
    assert all(CHUNK_MIN_WORDS <= n <= CHUNK_MAX_WORDS for n in lengths)
    assert sum(lengths) > 5000 - CHUNK_MIN_WORDS
    assert list(chunks(words(CHUNK_MIN_WORDS - 1), random.Random(0))) == []


def test_held_out_split_keeps_each_group_on_one_side():
    positives = [Doc(words(300, f"g{g}x"), f"g{g}") for g in range(10) for _ in range(3)]
    negatives = [Doc(words(300, f"s{s}x"), f"s{s}") for s in range(10) for _ in range(3)]
    data = make_dataset(positives, negatives, seed=1, test_fraction=0.3)
    # Every token carries its group's name, so a chunk tells which group it came from.
    group_of = {
        split: {text.split()[0].split("x")[0] for _, text in getattr(data, split)}
        for split in ("train", "test")
    }
    assert group_of["train"] and group_of["test"] and not group_of["train"] & group_of["test"]


def test_both_classes_are_balanced_in_each_split():
    data = make_dataset(reference_docs(20), web_docs(80), seed=0)
    for rows in (data.train, data.test):
        labels = [label for label, _ in rows]
        assert labels.count(LABEL_HQ) == labels.count(LABEL_CC) > 0


def test_small_input_still_gets_a_held_out_group():
    assert len(split_groups(["a", "b"], seed=0, fraction=0.01)) == 1
    assert len(split_groups(["a", "b"], seed=0, fraction=0.99)) == 1


def test_too_little_text_is_a_clear_error():
    with pytest.raises(ValueError, match="too little text"):
        make_dataset(reference_docs(5), [Doc("too short", "x")], seed=0)


def test_roc_auc_matches_hand_computed_values():
    assert roc_auc([0.1, 0.4, 0.35, 0.8], [False, False, True, True]) == 0.75
    assert roc_auc([0.5, 0.5], [True, False]) == 0.5  # a tie counts half
    assert roc_auc([0.9, 0.1], [True, False]) == 1.0


def test_metrics_count_precision_recall_and_f1_at_the_threshold():
    m = metrics([0.9, 0.6, 0.4, 0.7, 0.2], [True, True, True, False, False], threshold=0.5)
    # predicted positive: 0.9, 0.6, 0.7 -> 2 of 3 right; 2 of the 3 positives found
    assert (m["precision"], m["recall"], m["f1"]) == (0.6667, 0.6667, 0.6667)


def test_training_writes_a_small_model_and_its_held_out_figures(trained):
    out, report = trained
    assert out.stat().st_size == report["model_bytes"] < 20_000_000
    assert json.loads(report_path(out).read_text()) == report
    held_out = report["held_out"]
    assert held_out["n"] == 2 * report["data"]["test_chunks_per_class"]
    assert held_out["roc_auc"] > 0.9 and held_out["f1"] > 0.8


def test_same_data_and_seed_give_the_same_model_file(trained, tmp_path):
    out, report = trained
    again = train(reference_docs(60), web_docs(120), tmp_path / "again.ftz", FAST)
    assert again["model_sha256"] == report["model_sha256"]


def test_evaluating_the_saved_model_reproduces_the_held_out_figures(trained):
    out, report = trained
    data = make_dataset(reference_docs(60), web_docs(120), seed=FAST.seed, test_fraction=FAST.test_fraction)
    assert evaluate(load_quality_model(str(out)), data.test) == report["held_out"]


def test_eval_on_other_data_balances_every_chunk(trained):
    out, _ = trained
    examples, stats = eval_examples(reference_docs(10), web_docs(40, seed=7))
    assert len(examples) == 2 * stats["chunks_per_class"]
    assert evaluate(load_quality_model(str(out)), examples)["roc_auc"] > 0.9


def test_scores_are_probabilities_of_the_high_quality_label(trained):
    model = load_quality_model(str(trained[0]))
    prose, web = reference_docs(3)[0].text, web_docs(1, seed=9)[0].text
    scores = score_texts(model, [prose, web, "", None])
    assert 0 <= scores[1] < 0.5 < scores[0] <= 1 and scores[2:] == [None, None]
    assert score_text(model, prose) == scores[0]


def test_truncated_model_file_is_a_clear_error(trained, tmp_path):
    blob = trained[0].read_bytes()
    bad = tmp_path / "truncated.ftz"
    bad.write_bytes(blob[: len(blob) // 3])
    with pytest.raises(ValueError, match=r"truncated\.ftz: truncated or corrupt fastText model"):
        load_quality_model(str(bad))


def test_file_that_is_not_a_fasttext_model_is_a_clear_error(tmp_path):
    bad = tmp_path / "notes.ftz"
    bad.write_bytes(b"these are not the weights you are looking for\n" * 10)
    with pytest.raises(ValueError, match=r"notes\.ftz: not a fastText model"):
        load_quality_model(str(bad))


def test_language_id_model_is_not_a_quality_model():
    with pytest.raises(ValueError, match=r"lid\.176\.ftz: a fastText model without __label__hq"):
        load_quality_model(lid176_path())


def test_missing_model_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.ftz: quality model not found"):
        load_quality_model(str(tmp_path / "nope.ftz"))


def test_quality_filter_rejects_below_the_threshold_only():
    rule = QualityFilter(threshold=0.5)
    assert rule.filter({"quality": 0.4999}) == LOW == "quality:low"
    assert rule.filter({"quality": 0.5}) is None
    assert rule.filter({"quality": None}) is None
    assert QualityFilter(threshold=None).filter({"quality": 0.0}) is None


def test_threshold_and_top_fraction_together_are_a_config_error(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("annotated:\n  quality:\n    threshold: 0.5\n    keep_top_fraction: 0.1\n")
    with pytest.raises(ValueError, match=r"annotated\.quality: .*threshold or keep_top_fraction, not both"):
        load_config(path)


def test_gutenberg_header_and_footer_are_stripped():
    text = (
        "The Project Gutenberg EBook of X\r\nLicense blah\r\n"
        "*** START OF THIS PROJECT GUTENBERG EBOOK X ***\r\nCall me _Ishmael_.\r\n\r\n"
        "End of the Project Gutenberg EBook of X\r\n*** END OF THIS PROJECT ***\r\n"
    )
    assert strip_gutenberg(text) == "Call me Ishmael."


def test_wikitext_is_detokenized_and_unknown_words_drop_their_sentence():
    line = ' The 1 @,@ 000 @-@ year old " tree " ( an oak ) is here . A <unk> sentence . '
    assert detokenize_wikitext(line) == 'The 1,000-year old "tree" (an oak) is here.'


def test_inputs_of_each_kind_are_read_with_their_groups(tmp_path):
    run = tmp_path / "run" / "documents" / "kept"
    run.mkdir(parents=True)
    table = pa.table({"id": ["a", "b"], "domain": ["x.org", None], "text": ["one", "two"]})
    pq.write_table(table, run / "part-00000.parquet")
    with gzip.open(tmp_path / "p.jsonl.gz", "wt") as f:
        f.write(json.dumps({"text": "three", "group": "book:1"}) + "\n")
    (tmp_path / "t.txt").write_text("four")
    docs = list(read_docs([tmp_path / "run", tmp_path / "p.jsonl.gz", tmp_path / "t.txt"]))
    assert [(d.text, d.group, d.key) for d in docs] == [
        ("one", "x.org", "a"),
        ("two", "b", "b"),  # no domain: the document is its own group
        ("three", "book:1", "p.jsonl.gz:0"),
        ("four", "t.txt", "t.txt"),
    ]


def test_unknown_input_kind_is_an_error_naming_the_path(tmp_path):
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(ValueError, match=r"x\.csv: unknown input kind"):
        list(read_docs([tmp_path / "x.csv"]))


def test_cli_trains_evaluates_and_applies(tmp_path, capsys):
    from jobs.cli import main

    pos, neg = tmp_path / "pos.jsonl", tmp_path / "neg.jsonl"
    pos.write_text("".join(json.dumps({"text": d.text, "group": d.group}) + "\n" for d in reference_docs(40)))
    neg.write_text("".join(json.dumps({"text": d.text, "group": d.group}) + "\n" for d in web_docs(80)))
    model = tmp_path / "m.ftz"
    common = ["--positive", str(pos), "--negative", str(neg), "--negative-lang", "any"]
    assert main(["classifier", "train", *common, "--out", str(model), "--epoch", "10"]) == 0
    assert "ROC AUC" in capsys.readouterr().out and report_path(model).is_file()
    assert main(["classifier", "eval", str(model), *common]) == 0
    assert "ROC AUC" in capsys.readouterr().out
    assert main(["classifier", "apply", str(model), str(neg), "--out", str(tmp_path / "s.parquet")]) == 0
    scores = pq.read_table(tmp_path / "s.parquet")
    assert scores.num_rows == 80 and max(scores.column("quality").to_pylist()) < 0.5


@pytest.mark.slow
def test_default_positives_against_crawl_sample_reach_held_out_auc_0_9(shared_data, tmp_path):
    """The acceptance figure (bench/RESULTS.md: 0.987), extracting crawl-sample without Spark."""
    from collections import Counter

    from classifiers.quality import in_languages
    from classifiers.quality_data import REFERENCE_SAMPLE
    from corpus.documents import warc_documents
    from corpus.extract import Extractor

    rows = [
        row
        for path in sorted((shared_data / "crawl-sample").glob("*.warc.gz"))
        for row in warc_documents(str(path), source="t", extractor=Extractor(), counts=Counter(), errors=[])
        if row["text"]
    ]
    negatives = in_languages(
        [Doc(r["text"], r["domain"] or r["id"], r["id"]) for r in rows], ["en"], lid176_path()
    )
    report = train(read_docs([REFERENCE_SAMPLE]), negatives, tmp_path / "q.ftz")
    assert report["held_out"]["roc_auc"] >= 0.9 and report["model_bytes"] <= 20_000_000

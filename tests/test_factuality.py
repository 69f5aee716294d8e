"""Factuality data (training/factuality.py): closed-book questions, probe verdicts, refusal targets."""

import json

from corpus.yaml_config import load_yaml
from training.corpus_tasks import Doc, split_documents
from training.factuality import (
    FactualityConfig,
    classify,
    fact_question,
    fact_questions,
    known,
    synthesize,
    targets,
)
from training.tasks import check

SENTENCES = (
    "The harbor master counted {n} wooden boats beside the granite pier. Gulls circled above the quiet water."
)


def docs(n: int) -> list[Doc]:
    return [
        Doc(f"d{i:03d}", f"Harbor notes {i}", SENTENCES.format(n=i) + f" Lantern {i} burned all night.")
        for i in range(n)
    ]


def test_a_fact_question_blanks_a_word_of_one_sentence_and_omits_the_passage():
    import random

    q = fact_question(docs(1)[0], random.Random(0), 2000)
    assert q is not None and q.task == "fact" and "____" in q.prompt and '"Harbor notes 0"' in q.prompt
    assert check("fact", q.solution, q.answer) and len(q.answer) >= 5
    sentence = q.prompt.split("\n", 1)[1].strip('"')
    assert sentence.replace("____", q.answer) in docs(1)[0].text
    assert len(q.prompt) < len(docs(1)[0].text) + 60  # one sentence, not the document


def test_no_test_question_comes_from_a_train_document():
    split = split_documents(docs(60), 0.25, seed=3)
    train = fact_questions(split["train"], 100, 0, 2000)
    test = fact_questions(split["test"], 100, 1, 2000)
    assert train and test and not {q.prompt for q in train} & {q.prompt for q in test}
    titles = lambda qs: {q.prompt.split('"')[1] for q in qs}  # noqa: E731
    assert not titles(train) & titles(test)
    assert fact_questions(split["train"], 100, 0, 2000) == train  # the same seed, the same questions


def test_known_needs_the_configured_share_of_right_answers():
    assert known([True] * 4, 1.0) and not known([True, True, True, False], 1.0)
    assert known([True, True, False, False], 0.5) and not known([True, False, False, False], 0.5)


def test_refusal_targets_only_where_the_probe_says_unknown():
    questions = fact_questions(docs(6), 6, 0, 2000)
    knows = [True, False, True, False, False, True]
    out = targets(questions, knows, "I don't know.")
    for q, ok, t in zip(questions, knows, out, strict=True):
        assert t.prompt == q.prompt and t.answer == q.answer
        assert t.solution == (q.solution if ok else "I don't know.")


def test_classify_sorts_right_refused_and_wrong():
    assert classify("#### granite", "granite", "I don't know.") == "right"
    assert classify("I don't know.", "granite", "I don't know.") == "refused"
    assert classify("#### marble", "granite", "I don't know.") == "wrong"
    assert classify("no idea", "granite", "I don't know.") == "wrong"


def test_shipped_config_lists_every_option():
    import yaml

    assert set(yaml.safe_load(open("conf/synth/factuality.yaml"))) == set(FactualityConfig().model_dump())
    load_yaml("conf/synth/factuality.yaml", FactualityConfig)


def test_synthesize_writes_both_sets_with_refusals_only_where_unknown(tmp_path, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from training import factuality

    run = tmp_path / "run"
    (run / "mixed" / "kept").mkdir(parents=True)
    rows = [{"id": d.id, "title": d.title, "text": d.text} for d in docs(40)]
    pq.write_table(pa.Table.from_pylist(rows), run / "mixed" / "kept" / "part-0.parquet")
    (run / "mixed" / "manifest.json").write_text("{}")
    data = tmp_path / "sft_data"
    data.mkdir()
    sft = {"task": "spell", "prompt": "Spell it.", "solution": "#### i-t", "answer": "i-t", "messages": []}
    for split in ("train", "test"):
        (data / f"{split}.jsonl").write_text(json.dumps(sft | {"split": split}) + "\n")
    # The probe knows the questions whose answer starts with a vowel (a stand-in for a model).
    monkeypatch.setattr(factuality, "probe", lambda cfg, init, qs: [q.answer[0] in "aeiouAEIOU" for q in qs])
    cfg = FactualityConfig(train=20, test=5, test_documents=0.25)
    report = synthesize(cfg, "unused", run, data, tmp_path / "out")
    read = lambda p: [json.loads(line) for line in p.read_text().splitlines()]  # noqa: E731
    refusal, answers = read(tmp_path / "out/refusal/train.jsonl"), read(tmp_path / "out/answers/train.jsonl")
    facts = [r for r in refusal if r["task"] == "fact"]
    assert report["questions"] == {"train": 20, "test": 5} and len(facts) == 20
    assert all((r["solution"] == "I don't know.") == (r["answer"][0] not in "aeiouAEIOU") for r in facts)
    assert all(r["solution"] != "I don't know." for r in answers if r["task"] == "fact")
    assert sum(r["task"] == "spell" for r in refusal) == 1
    held_out = {r["prompt"] for r in read(tmp_path / "out/test.jsonl")}
    assert len(held_out) == 5 and not held_out & {r["prompt"] for r in refusal + answers}


def test_kept_stage_of_a_text_run_holds_its_training_documents_only(tmp_path):
    import pyarrow.parquet as pq

    from training.corpus_tasks import curated_documents
    from training.testing import VALID_FRACTION, split_text, write_kept

    text = "\n\n".join(f"Paragraph {i} " + "word " * 30 for i in range(50))
    write_kept(text, tmp_path, kept_chars=300, doc_chars=500)
    rows = pq.read_table(tmp_path / "mixed" / "kept" / "part-0.parquet").to_pylist()
    train, valid = split_text(text, 500, VALID_FRACTION)
    assert "\n\n".join(r["text"] for r in rows) == "\n\n".join(train)
    assert valid and not any(v in r["text"] for v in valid for r in rows)
    assert len(curated_documents(tmp_path, 1000, 0)[1]) == len(rows) > len(train)

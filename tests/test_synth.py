import json

import pytest

from jobs.stage import Stage
from training.corpus_tasks import (
    cloze,
    curated_documents,
    passage,
    sample_order,
    source_rows,
    split_documents,
    title_choice,
)
from training.synth import SynthSftConfig, synthesize
from training.tasks import check

SMALL = {"arithmetic": {"train": 200, "test": 50}, "count_letters": {"train": 100, "test": 20}}


WORDS = "river meadow orchard harbor granite lantern willow thunder pebble canyon falcon glacier".split()


def text(i: int) -> str:
    rotated = WORDS[i % len(WORDS) :] + WORDS[: i % len(WORDS)]
    return f"Document {i} opens with a short line. The valley holds " + " and ".join(rotated) + "."


@pytest.fixture
def run(tmp_path):
    """An annotated stage with 40 kept documents and 10 rejected ones."""
    rows = [
        {"id": f"k{i:02d}", "title": f"Kept page number {i} about rivers", "text": text(i), "reject": None}
        for i in range(40)
    ] + [
        {
            "id": f"r{i:02d}",
            "title": f"Rejected page {i} about deserts",
            "text": "rejected " * 80,
            "reject": "c4:lorem_ipsum",
        }
        for i in range(10)
    ]
    rows[0]["title"] = "Write to <EMAIL> for the river report"
    stage = Stage(str(tmp_path), "annotated", "c", "i")
    stage.prepare()
    stage.commit([stage.write_part(0, rows, counts={})], rows_in=len(rows), started=0.0)
    return tmp_path


def test_corpus_tasks_use_only_kept_documents(run):
    stage, docs = curated_documents(run, 100, seed=1)
    assert stage == "annotated" and len(docs) == 40 and all(d.id.startswith("k") for d in docs)


def test_no_placeholder_in_a_target(run):
    _, docs = curated_documents(run, 100, seed=1)
    problems = title_choice(docs, 100, 0) + cloze(docs, 100, 0)
    assert problems and not any("<EMAIL>" in p.solution for p in problems)


def test_corpus_task_solutions_pass_the_checker(run):
    _, docs = curated_documents(run, 100, seed=1)
    for p in title_choice(docs, 10, 0) + cloze(docs, 10, 0):
        assert check(p.task, p.solution, p.answer)


def test_corpus_sample_is_the_capped_documents_of_smallest_hash(run):
    _, docs = curated_documents(run, 10, seed=1)
    rows = sorted(
        source_rows(run / "annotated" / "kept" / "part-00000.parquet"), key=lambda r: sample_order(r, 1)
    )
    assert [d.id for d in docs] == sorted(r["id"] for r in rows[:10])
    assert [d.id for d in curated_documents(run, 10, seed=2)[1]] != [d.id for d in docs]


def test_texts_cut_for_the_sample_give_the_same_passages(run):
    _, whole = curated_documents(run, 100, seed=1)
    _, cut = curated_documents(run, 100, seed=1, max_chars=40)
    assert all(len(d.text) <= 41 for d in cut) and any(len(d.text) > 41 for d in whole)
    assert [passage(d.text, 40) for d in cut] == [passage(d.text, 40) for d in whole]


def test_document_split_is_disjoint_and_complete(run):
    _, docs = curated_documents(run, 100, seed=1)
    split = split_documents(docs, 0.25, seed=1)
    assert not {d.id for d in split["train"]} & {d.id for d in split["test"]}
    assert len(split["train"]) + len(split["test"]) == 40 and split["test"]


def test_synthesized_splits_share_no_problem_and_are_reproducible(run, tmp_path):
    cfg = SynthSftConfig.model_validate(SMALL)
    summary = synthesize(cfg, run, tmp_path / "a")
    synthesize(cfg, run, tmp_path / "b")
    train = [json.loads(line) for line in (tmp_path / "a" / "train.jsonl").read_text().splitlines()]
    test = [json.loads(line) for line in (tmp_path / "a" / "test.jsonl").read_text().splitlines()]
    assert not {r["prompt"] for r in train} & {r["prompt"] for r in test}
    assert summary["arithmetic"] == {
        "train": summary["arithmetic"]["train"] | {"problems": 200},
        "test": summary["arithmetic"]["test"] | {"problems": 50},
    }
    assert {"title_choice", "cloze"} <= set(summary)
    for name in ("train.jsonl", "test.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert train[0]["messages"][1]["role"] == "assistant" and train[0]["split"] == "train"

"""Identity data (training/identity.py): held-out paraphrases, multi-turn records, the facts check."""

import json

import pytest
from pydantic import ValidationError

from corpus.yaml_config import load_yaml
from training.identity import QUESTIONS, IdentityConfig, identity_problems, split_templates
from training.synth import SynthSftConfig, synthesize
from training.tasks import check

CFG = IdentityConfig(name="Quill", maker="Harbor Labs", description="a tiny test model", train=300, test=40)


def user_turns(record: dict) -> list[str]:
    return [m["content"] for m in record["messages"] if m["role"] == "user"]


def test_template_split_holds_out_a_quarter_of_each_kind_and_is_fixed_by_the_seed():
    splits = split_templates(1, 0.25)
    for kind, templates in QUESTIONS.items():
        train, test = splits["train"][kind], splits["test"][kind]
        assert set(train) | set(test) == set(templates) and not set(train) & set(test)
        assert len(test) == len(templates) // 4
    assert split_templates(1, 0.25) == splits and split_templates(2, 0.25) != splits


def test_no_held_out_template_is_asked_in_any_train_turn(tmp_path):
    cfg = SynthSftConfig.model_validate(
        {task: {"train": 0, "test": 0} for task in ("arithmetic", "count_letters", "spell")}
        | {"identity": CFG.model_dump()}
    )
    synthesize(cfg, None, tmp_path)
    train = [json.loads(line) for line in (tmp_path / "train.jsonl").read_text().splitlines()]
    test = [json.loads(line) for line in (tmp_path / "test.jsonl").read_text().splitlines()]
    assert len(train) == 300 and len(test) == 40 and {r["task"] for r in train + test} == {"identity"}
    held_out = {t for templates in split_templates(cfg.test_seed, 0.25)["test"].values() for t in templates}
    asked = [turn for r in train for turn in user_turns(r)]
    assert not [q for q in asked if any(q.endswith(t) for t in held_out)]
    assert all(any(r["prompt"].endswith(t) for t in held_out) for r in test)
    assert len({r["prompt"] for r in test}) == 40
    multi = [r for r in train if len(r["messages"]) > 2]
    assert 0.2 < len(multi) / len(train) < 0.4  # multi_turn 0.3
    replies = [m["content"] for r in multi for m in r["messages"] if m["role"] == "assistant"]
    assert all("Quill" in reply or "Harbor Labs" in reply for reply in replies)


def test_every_train_answer_states_the_facts_its_question_asks():
    problems = identity_problems(CFG, train_seed=0, test_seed=1)
    assert all(check("identity", p.solution, p.answer) for p in problems["train"] + problems["test"])
    kinds = {p.answer for p in problems["test"]}
    assert kinds == {"Quill", "Harbor Labs", "Quill\nHarbor Labs"}


def test_identity_check_needs_every_fact_case_aside():
    assert check("identity", "I'm quill, made by harbor labs.", "Quill\nHarbor Labs")
    assert not check("identity", "I'm Quill.", "Quill\nHarbor Labs")
    assert not check("identity", "I am an assistant.", "Quill")


def test_more_test_questions_than_the_held_out_templates_give_is_an_error():
    with pytest.raises(ValueError, match="identity.test 1000"):
        identity_problems(CFG.model_copy(update={"test": 1000}), 0, 1)


def test_identity_section_rejects_unknown_keys(tmp_path):
    path = tmp_path / "sft.yaml"
    path.write_text("identity:\n  name: Quill\n  creator: Harbor Labs\n")
    with pytest.raises((ValueError, ValidationError), match="creator"):
        load_yaml(path, SynthSftConfig)

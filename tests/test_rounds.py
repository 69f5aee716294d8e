"""Iterative post-training rounds (training/rounds.py) on the tiny model: two few-step rounds."""

import json
import shutil

import pytest
import torch
import yaml
from test_align import sft_checkpoint, sft_data  # noqa: F401 (fixtures)

from corpus.yaml_config import load_yaml
from jobs import train_stages
from jobs.cli import main as cli_main
from jobs.config import PipelineConfig, load_config
from jobs.run import parse_stages
from training.checkpoint import latest_checkpoint, read_meta, resolve_checkpoint
from training.config import RoundsConfig
from training.rounds import round_prompts, rounds

LOOP = {"dtype": "float32", "threads": 1, "log_every": 1, "eval_every": 0, "save_every": 0}
STEP = LOOP | {"steps": 2, "global_batch": 2, "micro_batch": 2, "keep_checkpoints": 1}
OPTIM = {"lr": 1e-3, "warmup_steps": 1, "weight_decay": 0.0}
# The tiny SFT model's worked steps rarely hold (3% of samples), so samples are graded by their
# final answer (about a third right at temperature 0.7). Rejection sampling at lr 0 keeps its
# start's weights: round 2's RS checkpoint is then exactly the policy round 2 started from, which
# must be round 1's DPO checkpoint.
SETTINGS = {
    "rounds": 2, "prompts": 12, "heldout_prompts": 8, "samples": 4, "eval_tasks": 8, "max_new_tokens": 20,
    "sampling": {"temperature": 0.7, "response_tokens": 20}, "steps": False, "dtype": "float32", "threads": 1,
    "reward": STEP | {"steps": 3, "eval_pairs": 16, "optim": OPTIM},
    "rs": STEP | {"eval_tasks": 0, "optim": OPTIM | {"lr": 0.0}},
    "dpo": STEP | {"eval_tasks": 0, "eval_pairs": 16, "optim": OPTIM},
}  # fmt: skip
CONFIG = RoundsConfig.model_validate(SETTINGS)


@pytest.fixture(scope="module")
def two_rounds(sft_checkpoint, sft_data, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("rounds") / "out"
    table = rounds(CONFIG, sft_checkpoint, sft_data, out, quiet=True)
    return out, table


def weights(checkpoint) -> dict[str, torch.Tensor]:
    return torch.load(checkpoint / "model.pt", weights_only=True)


def lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_each_round_writes_its_pairs_models_and_evaluation(two_rounds):
    out, _ = two_rounds
    for r in (1, 2):
        folder = out / f"round_{r}"
        for name in ("samples.jsonl", "pairs/train.jsonl", "pairs/test.jsonl", "eval.json"):
            assert (folder / name).is_file(), (r, name)
        for model in ("rm", "rs", "dpo"):
            assert latest_checkpoint(folder / model) is not None, (r, model)
        assert {p["round"] for p in lines(folder / "pairs" / "train.jsonl")} == {r}
    assert (out / "round_0" / "eval.json").is_file()


def test_round_two_starts_from_round_one_dpo_checkpoint(two_rounds):
    out, _ = two_rounds
    dpo_1 = resolve_checkpoint(out / "round_1" / "dpo")
    rs_2 = latest_checkpoint(out / "round_2" / "rs")
    assert read_meta(rs_2)["config"]["init"] == str(dpo_1)
    assert json.loads((out / "round_2" / "eval.json").read_text())["start"] == str(dpo_1)
    before, after = weights(dpo_1), weights(rs_2)  # RS at lr 0: its start's weights
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    rs_1 = weights(latest_checkpoint(out / "round_1" / "rs"))
    assert not all(torch.equal(rs_1[k], before[k]) for k in before)  # round 1's DPO moved the policy


def test_the_reward_model_trains_on_every_pair_so_far(two_rounds):
    out, _ = two_rounds
    first = lines(out / "round_1" / "pairs" / "train.jsonl")
    second = lines(out / "round_2" / "pairs" / "train.jsonl")
    assert lines(out / "round_1" / "rm_data" / "train.jsonl") == first
    assert lines(out / "round_2" / "rm_data" / "train.jsonl") == first + second
    meta = read_meta(latest_checkpoint(out / "round_2" / "rm"))
    assert meta["train_pairs"] + meta["dropped_pairs"] == len(first) + len(second)
    # its held-out pairs are the round's: samples of the policy round 2 started from
    assert lines(out / "round_2" / "rm_data" / "test.jsonl") == lines(
        out / "round_2" / "pairs" / "test.jsonl"
    )


def test_the_table_has_a_row_per_round_with_its_columns(two_rounds):
    out, table = two_rounds
    assert [row["round"] for row in table] == [0, 1, 2]
    assert json.loads((out / "rounds.json").read_text()) == table
    for row in table:
        assert {"acc_arithmetic", "majority_arithmetic", "acc", "kl", "length"} <= row.keys()
    assert table[0]["kl"] == 0.0  # the SFT model against itself
    assert table[1]["rm_prev_acc"] is None and 0.0 <= table[2]["rm_prev_acc"] <= 1.0
    assert all(0.0 <= row["rm_acc"] <= 1.0 and row["pairs"] > 0 for row in table[1:])
    markdown = (out / "rounds.md").read_text().splitlines()
    assert markdown[0].startswith("| round | arithmetic (majority ")
    for column in ("RM acc, current policy", "previous RM acc", "KL to SFT", "mean length"):
        assert column in markdown[0]
    assert [line.split("|")[1].strip() for line in markdown[2:]] == ["0 (SFT)", "1", "2"]


def test_a_rerun_resumes_after_the_last_finished_round(two_rounds, sft_checkpoint, sft_data, tmp_path):  # noqa: F811
    out = tmp_path / "out"
    shutil.copytree(two_rounds[0], out)
    redone = json.loads((out / "round_2" / "eval.json").read_text())
    (out / "round_2" / "eval.json").unlink()  # round 2 was cut short: it has all but its marker
    kept = {p: p.stat().st_mtime_ns for p in (out / "round_1").rglob("*") if p.is_file()}
    table = rounds(CONFIG, sft_checkpoint, sft_data, out, quiet=True)
    assert {p: p.stat().st_mtime_ns for p in (out / "round_1").rglob("*") if p.is_file()} == kept
    # round 2 ran again from its start, from the same inputs and seeds: the same figures
    again = json.loads((out / "round_2" / "eval.json").read_text())
    assert again.pop("start") == str(resolve_checkpoint(out / "round_1" / "dpo"))
    assert again == {k: v for k, v in redone.items() if k != "start"}
    assert [row["acc"] for row in table] == [row["acc"] for row in two_rounds[1]]


def test_a_rerun_with_another_config_is_an_error(two_rounds, sft_checkpoint, sft_data):  # noqa: F811
    other = CONFIG.model_copy(update={"samples": 6})
    with pytest.raises(ValueError, match="rounds_config.json: this run was made with other config"):
        rounds(other, sft_checkpoint, sft_data, two_rounds[0], quiet=True)


def test_the_rounds_stage_of_refinery_run_reads_its_config(two_rounds, sft_checkpoint, sft_data, tmp_path):  # noqa: F811
    # A run whose SFT model and data are the fixture's, and whose rounds are finished: the stage
    # finds them, runs nothing and returns the last round's row.
    train = tmp_path / "run" / "train"
    train.mkdir(parents=True)
    (train / "sft").symlink_to(sft_checkpoint.parent.parent)
    (train / "sft_data").symlink_to(sft_data)
    shutil.copytree(two_rounds[0], train / "rounds")
    (tmp_path / "rounds.yaml").write_text(yaml.safe_dump(SETTINGS))
    (tmp_path / "run.yaml").write_text(yaml.safe_dump({"train": {"rounds_config": "rounds.yaml"}}))
    cfg = load_config(tmp_path / "run.yaml")
    assert parse_stages("rounds", cfg) == ["rounds"]
    assert train_stages.run_stage("rounds", cfg, tmp_path / "run")["summary"] == two_rounds[1][-1]
    with pytest.raises(ValueError, match="--stages rounds: the config sets no train.rounds_config"):
        parse_stages("rounds", PipelineConfig())


def test_each_round_takes_the_next_prompts_of_every_task():
    train = {"a": [{"id": i} for i in range(5)], "b": [{"id": 10 + i} for i in range(3)]}
    assert [p["id"] for p in round_prompts(train, 2, 1)] == [0, 1, 10, 11]
    assert [p["id"] for p in round_prompts(train, 2, 2)] == [2, 3, 12, 10]  # b wraps around


def test_config_errors_name_the_key(tmp_path):
    path = tmp_path / "rounds.yaml"
    path.write_text("rounds: 2\nround: 3\n")
    with pytest.raises(ValueError, match="round"):
        load_yaml(path, RoundsConfig)
    path.write_text("rs: {samples: 4}\n")
    with pytest.raises(ValueError, match="rs.samples: rejection sampling picks from the round's samples"):
        load_yaml(path, RoundsConfig)
    path.write_text("rounds: 0\n")
    with pytest.raises(ValueError, match="rounds"):
        load_yaml(path, RoundsConfig)


def test_the_command_names_the_file_and_the_bad_key_before_loading_anything(capsys, tmp_path):
    config = tmp_path / "rounds.yaml"
    config.write_text("rs: {samples: 4}\n")
    argv = ["train", "rounds", str(config), "--init", "SFT", "--data", "DATA", "--out", str(tmp_path / "o")]
    assert cli_main(argv) == 2
    output = capsys.readouterr().out
    assert output.startswith(f"error: {config}: invalid config")
    assert "rs.samples: rejection sampling" in output
    assert not (tmp_path / "o").exists()

"""`refinery run`'s training stages on a tiny run: pretrain → synth_sft → sft → synth_prefs → reward →
align → eval, in one call, then a rerun that trains nothing; then each `align_method` on a copy of
that run, through the `refinery` command line."""

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from jobs import train_stages
from jobs.cli import main as cli_main
from jobs.run import run
from training.checkpoint import latest_checkpoint, load_model
from training.testing import SAMPLE_TEXT

LOOP = {"dtype": "float32", "threads": 1, "log_every": 5, "eval_every": 0, "save_every": 0}
ALIGN = {
    "global_batch": 8, "micro_batch": 8, "eval_tasks": 2, "max_new_tokens": 24,
    "sampling": {"response_tokens": 24}, "optim": {"lr": 0.001, "warmup_steps": 1, "weight_decay": 0.0},
}  # fmt: skip
CONFIGS = {
    "pretrain.yaml": LOOP | {
        "steps": 40, "global_batch": 8, "micro_batch": 8, "eval_windows": 8,
        "model": {"context_length": 128, "n_layer": 2, "n_head": 2, "d_model": 64},
        "optim": {"lr": 0.01, "warmup_steps": 4},
    },
    "synth.yaml": {
        "arithmetic": {"train": 200, "test": 6, "max_number": 10, "operations": [2]},
        "count_letters": {"train": 40, "test": 6}, "spell": {"train": 20, "test": 6},
        "title_choice": {"train": 0, "test": 0}, "cloze": {"train": 8, "test": 4, "passage_chars": 100},
    },
    "sft.yaml": LOOP | {
        "steps": 20, "global_batch": 8, "micro_batch": 8, "eval_conversations": 8, "eval_tasks": 0,
        "optim": {"lr": 0.003, "warmup_steps": 2, "weight_decay": 0.0},
    },
    "prefs.yaml": {"train_prompts": 6, "test_prompts": 3, "samples": 4, "threads": 1, "dtype": "float32",
                   "sampling": {"response_tokens": 24}},
    "reward.yaml": LOOP | {"steps": 6, "global_batch": 8, "micro_batch": 8, "eval_pairs": 8,
                           "optim": {"lr": 0.001, "warmup_steps": 1, "weight_decay": 0.0}},
    "grpo.yaml": LOOP | ALIGN | {
        "steps": 2, "save_every": 2, "prompts_per_rollout": 2, "group_size": 4,
        "reward": {"checker": 1.0, "reward_model": 0.5},
    },
    # 2 epochs over a rollout of 8: 2 optimizer steps, one rollout
    "ppo.yaml": LOOP | ALIGN | {"steps": 2, "prompts_per_rollout": 2, "group_size": 4, "epochs": 2},
    "dpo.yaml": LOOP | ALIGN | {"steps": 2, "eval_pairs": 8},
    "kto.yaml": LOOP | ALIGN | {"steps": 2, "eval_pairs": 8},
    "rs.yaml": LOOP | ALIGN | {"steps": 2, "global_batch": 4, "micro_batch": 4, "samples": 2, "prompts": 2},
}  # fmt: skip
TRAIN = {
    "pretrain_config": "pretrain.yaml", "synth_config": "synth.yaml", "sft_config": "sft.yaml",
    "preferences_config": "prefs.yaml", "reward_config": "reward.yaml", "align_config": "grpo.yaml",
    "align_method": "grpo", "eval_limit": 3,
}  # fmt: skip


# The stages conf/full.yaml runs; the optional ones (`rounds`) are tested in tests/test_rounds.py.
PIPELINE = [name for name in train_stages.STAGES if name not in train_stages.OPTIONAL]


@pytest.fixture(scope="module")
def run_dir(text_shards, tmp_path_factory):
    """A run with shards, a tokenizer and a finished `mixed` stage of paragraphs of the sample text."""
    root = tmp_path_factory.mktemp("train_stages")
    run_dir = root / "run"
    for name in ("shards", "tokenizer"):
        shutil.copytree(text_shards.parent / name, run_dir / name)
    paragraphs = [p for p in SAMPLE_TEXT.read_text().split("\n\n") if len(p) > 300][:60]
    rows = [{"id": f"doc{i:03d}", "title": f"Part {i}", "text": p} for i, p in enumerate(paragraphs)]
    (run_dir / "mixed" / "kept").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), run_dir / "mixed" / "kept" / "part-0.parquet")
    (run_dir / "mixed" / "manifest.json").write_text(json.dumps({"output_fingerprint": "sample"}))
    for name, content in CONFIGS.items():
        (root / name).write_text(yaml.safe_dump(content))
    (root / "full.yaml").write_text(yaml.safe_dump({"train": TRAIN}))
    return run_dir


@pytest.fixture(scope="module")
def first_run(run_dir):
    """Every training stage in one call, GRPO aligning: what each stage returned."""
    # force: the fixture's run directory has outputs but no run.json of its own
    stages = ",".join(PIPELINE)
    return run(str(run_dir.parent / "full.yaml"), [], str(run_dir), stages=stages, force=True)


def test_every_training_stage_runs_in_order_and_a_rerun_trains_nothing(run_dir, first_run):
    config, first = run_dir.parent / "full.yaml", first_run
    stages = ",".join(PIPELINE)
    assert list(first) == PIPELINE
    train = run_dir / "train"
    for name in ("pretrain", "sft", "reward", "align"):
        assert sorted((train / name / "checkpoints").iterdir()), name
    assert first["synth_prefs"]["summary"]["train"] > 0
    assert first["align"]["summary"]["method"] == "grpo"
    assert "val_rm_score" in first["align"]["summary"]  # the reward model is in GRPO's reward
    evaluation = json.loads((train / "eval.json").read_text())
    assert set(evaluation["accuracy"]) == {"pretrain", "sft", "align"}
    # The majority baseline answers without steps: 0 on every TASK+steps row.
    assert set(evaluation["majority"]) == set(evaluation["problems"])
    assert {t: v for t, v in evaluation["majority"].items() if t.endswith("+steps")} == {
        "arithmetic+steps": 0.0,
        "count_letters+steps": 0.0,
    }
    assert "arithmetic+steps" in evaluation["accuracy"]["sft"]
    assert evaluation["data"] == "train/sft_data/test.jsonl"
    assert_consistent_comparisons(evaluation)
    timings = json.loads((train / "timing.json").read_text())
    assert list(timings) == sorted(PIPELINE) and all(t["wall_time_s"] > 0 for t in timings.values())

    weights = {p: p.read_bytes() for p in train.rglob("model.pt")}
    second = run(str(config), [], str(run_dir), stages=stages)
    assert second["eval"] == first["eval"] and second["synth_prefs"] == first["synth_prefs"]
    assert {p: p.read_bytes() for p in train.rglob("model.pt")} == weights
    # a rerun that trained nothing keeps the wall times of the run that did
    assert json.loads((train / "timing.json").read_text()) == timings


def assert_consistent_comparisons(evaluation: dict) -> None:
    """Each model against the one before it in training order, on the answer rows only, with wins
    and losses that add up to the accuracies' difference."""
    comparisons = evaluation["comparisons"]
    assert [(c["earlier"], c["later"]) for c in comparisons] == [("pretrain", "sft"), ("sft", "align")]
    answer_rows = [t for t in evaluation["problems"] if not t.endswith("+steps")]
    for c in comparisons:
        assert set(c["tasks"]) == set(answer_rows)
        assert c["n"] == sum(evaluation["problems"][t] for t in answer_rows)
        assert c["wins"] == sum(f["wins"] for f in c["tasks"].values())
        assert c["losses"] == sum(f["losses"] for f in c["tasks"].values())
        for task, figures in c["tasks"].items():
            gain = evaluation["accuracy"][c["later"]][task] - evaluation["accuracy"][c["earlier"]][task]
            assert figures["wins"] - figures["losses"] == round(gain * figures["n"]), (c, task)
        assert 0 < c["p"] <= 1 and (c["p"] == 1.0) == (c["wins"] == 0)


def test_an_eval_json_written_before_the_comparisons_is_evaluated_again(run_dir, first_run):
    """An eval.json of the layout before "comparisons", keyed as it was then, is not skipped."""
    from corpus.manifest import fingerprint
    from training.eval_tasks import read_problems

    out = run_dir / "train" / "eval.json"
    current = json.loads(out.read_text())
    problems = read_problems(run_dir / current["data"], limit=TRAIN["eval_limit"])
    old = {k: v for k, v in current.items() if k != "comparisons"}
    old["key"] = fingerprint({"models": current["checkpoints"], "problems": problems})
    out.write_text(json.dumps(old))
    run(str(run_dir.parent / "full.yaml"), [], str(run_dir), stages="eval")
    assert json.loads(out.read_text()) == current


def stage_outputs(out: Path) -> dict[Path, bytes]:
    """A training stage's checkpoint files and records, as bytes."""
    return {p: p.read_bytes() for p in (out / "checkpoints").rglob("*.pt")} | {
        out / "metrics.jsonl": (out / "metrics.jsonl").read_bytes()
    }


@pytest.mark.parametrize("method", ["ppo", "grpo", "dpo", "kto", "rs"])
def test_each_align_method_runs_through_refinery_run_and_a_rerun_trains_nothing(
    run_dir, first_run, method, tmp_path
):
    # The first run's SFT model, pairs and reward model, aligned again by `method` from scratch.
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    shutil.rmtree(copy / "train" / "align")
    (copy / "train" / "eval.json").unlink()
    config = run_dir.parent / f"full-{method}.yaml"  # beside the stage configs it names
    train = TRAIN | {"align_config": f"{method}.yaml", "align_method": method}
    config.write_text(yaml.safe_dump({"train": train}))
    command = ["run", str(config), "--out", str(copy), "--stages", "align,eval"]

    # --force: the copy holds the first run's run.json, another align_method's
    assert cli_main([*command, "--force"]) == 0
    align = copy / "train" / "align"
    checkpoint = latest_checkpoint(align)
    assert json.loads((checkpoint / "meta.json").read_text())["method"] == method
    load_model(checkpoint)  # the policy alone, a plain GPT, whatever the method
    assert (checkpoint / "critic.pt").is_file() == (method == "ppo")
    assert "align" in json.loads((copy / "train" / "eval.json").read_text())["accuracy"]

    saved = stage_outputs(align)
    assert cli_main(command) == 0  # the same run again: resumed at its last step, nothing trains
    assert stage_outputs(align) == saved

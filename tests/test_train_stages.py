"""`refinery run`'s training stages on a tiny run: pretrain → synth_sft → sft → synth_prefs → reward →
align → eval, in one call, then a rerun that trains nothing."""

import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from jobs import train_stages
from jobs.run import run
from training.testing import SAMPLE_TEXT

LOOP = {"dtype": "float32", "threads": 1, "log_every": 5, "eval_every": 0, "save_every": 0}
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
    "grpo.yaml": LOOP | {
        "steps": 2, "global_batch": 8, "micro_batch": 8, "save_every": 2, "prompts_per_rollout": 2,
        "group_size": 4, "eval_tasks": 2, "max_new_tokens": 24, "sampling": {"response_tokens": 24},
        "reward": {"checker": 1.0, "reward_model": 0.5},
        "optim": {"lr": 0.001, "warmup_steps": 1, "weight_decay": 0.0},
    },
}  # fmt: skip


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
    train = {
        "pretrain_config": "pretrain.yaml", "synth_config": "synth.yaml", "sft_config": "sft.yaml",
        "preferences_config": "prefs.yaml", "reward_config": "reward.yaml", "align_config": "grpo.yaml",
        "align_method": "grpo", "eval_limit": 3,
    }  # fmt: skip
    (root / "full.yaml").write_text(yaml.safe_dump({"train": train}))
    return run_dir


def test_every_training_stage_runs_in_order_and_a_rerun_trains_nothing(run_dir):
    config = run_dir.parent / "full.yaml"
    stages = ",".join(train_stages.STAGES)
    # force: the fixture's run directory has outputs but no run.json of its own
    first = run(str(config), [], str(run_dir), stages=stages, force=True)

    assert list(first) == list(train_stages.STAGES)
    train = run_dir / "train"
    for name in ("pretrain", "sft", "reward", "align"):
        assert sorted((train / name / "checkpoints").iterdir()), name
    assert first["synth_prefs"]["summary"]["train"] > 0
    assert first["align"]["summary"]["method"] == "grpo"
    assert "val_rm_score" in first["align"]["summary"]  # the reward model is in GRPO's reward
    evaluation = json.loads((train / "eval.json").read_text())
    assert set(evaluation["accuracy"]) == {"pretrain", "sft", "align"}
    # The majority baseline answers without steps: it has no TASK+steps row.
    assert set(evaluation["majority"]) == {t for t in evaluation["problems"] if not t.endswith("+steps")}
    assert "arithmetic+steps" in evaluation["accuracy"]["sft"]

    weights = {p: p.read_bytes() for p in train.rglob("model.pt")}
    second = run(str(config), [], str(run_dir), stages=stages)
    assert second["eval"] == first["eval"] and second["synth_prefs"] == first["synth_prefs"]
    assert {p: p.read_bytes() for p in train.rglob("model.pt")} == weights

"""bench/r1zero.py: the format-only warm-up's data, and the driver end to end on the tiny model."""

import sys
from pathlib import Path

import pytest
import yaml
from test_align import problem, sft_checkpoint, sft_data  # noqa: F401  (fixtures)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import r1zero  # noqa: E402

LOOP = {"dtype": "float32", "threads": 1, "log_every": 1, "keep_checkpoints": 1}
# test_align.py's GRPO at a quarter of the rollout: 4 prompts x 4 samples, R1-Zero's reward
GRPO = LOOP | {
    "steps": 4, "global_batch": 16, "micro_batch": 16, "eval_every": 2, "save_every": 4,
    "prompts_per_rollout": 4, "group_size": 4, "tasks": ["arithmetic"], "eval_tasks": 8,
    "max_new_tokens": 20, "sampling": {"response_tokens": 20}, "reward": {"checker": 1.0, "format": 0.5},
    "optim": {"lr": 1e-3, "warmup_steps": 1, "weight_decay": 0.0},
}  # fmt: skip
WARMUP = LOOP | {
    "steps": 4, "global_batch": 8, "micro_batch": 8, "eval_every": 0, "save_every": 4,
    "eval_conversations": 8, "eval_tasks": 4, "max_new_tokens": 20,
    "optim": {"lr": 3e-3, "warmup_steps": 1, "weight_decay": 0.0},
}  # fmt: skip


def test_warm_up_answers_each_prompt_with_another_prompts_solution_of_its_task():
    problems = [problem(a, a + 1) for a in range(6)] + [
        {"task": "count_letters", "prompt": f"count {w}", "solution": f"#### {n}", "answer": str(n)}
        for w, n in (("x", 1), ("yy", 2), ("zzz", 3))
    ]
    rows = r1zero.mismatched(problems, seed=0)
    given = {(r["task"], r["messages"][0]["content"]): r["messages"][1]["content"] for r in rows}
    own = {(p["task"], p["prompt"]): p["solution"] for p in problems}
    assert given.keys() == own.keys() and all(given[k] != own[k] for k in own)
    for task in ("arithmetic", "count_letters"):  # every solution used once, within its task
        assert sorted(v for k, v in given.items() if k[0] == task) == sorted(
            v for k, v in own.items() if k[0] == task
        )


@pytest.mark.slow  # four `refinery` processes, each importing torch: ~40 s on 2 loaded cores
def test_driver_tables_and_plots_three_starts(tiny_checkpoint, sft_checkpoint, sft_data, tmp_path, capsys):  # noqa: F811
    for name, values in (("grpo.yaml", GRPO), ("warmup.yaml", WARMUP)):
        (tmp_path / name).write_text(yaml.safe_dump(values))
    argv = ["--base", str(tiny_checkpoint), "--sft", str(sft_checkpoint), "--data", str(sft_data)]
    argv += ["--out", str(tmp_path / "out"), "--config", str(tmp_path / "grpo.yaml")]
    argv += ["--warmup-config", str(tmp_path / "warmup.yaml"), "--steps", "2", "--warmup-steps", "2"]
    r1zero.main(argv)
    headers = [line for line in capsys.readouterr().out.splitlines() if line.startswith("### ")]
    assert headers == ["### before RL (greedy, held-out)", "### base", "### sft", "### warmup"]
    assert (tmp_path / "out" / "r1zero.png").stat().st_size > 0
    for name in r1zero.RUNS:
        rows = r1zero.step_rows(r1zero.read_records(tmp_path / "out" / name))
        assert [r["step"] for r in rows] == [0, 1, 2]  # the start validated before any update
        assert {"val_format", "val_acc"} <= rows[0].keys()
        assert rows[0]["val_format"] >= rows[0]["val_acc"]  # a right answer is well formed
        assert {"reward", "format", "correct", "length"} <= rows[1].keys()
    warm = (tmp_path / "out" / "warmup_data" / "train.jsonl").read_text().splitlines()
    assert len(warm) == 80  # every train prompt of the tiny data, with another's solution
    before = {name: r1zero.read_records(tmp_path / "out" / name) for name in r1zero.RUNS}
    r1zero.main(argv)  # a rerun: every run is finished, nothing trains or validates again
    assert {name: r1zero.read_records(tmp_path / "out" / name) for name in r1zero.RUNS} == before

"""R1-Zero against GRPO from SFT: reward, format rate, accuracy and length over steps (issue 28).

    python bench/r1zero.py --run RUN --out OUT
    python bench/r1zero.py --base PRE --sft SFT --data SFT_DATA --out OUT [--steps 2 --warmup-steps 2]

RUN is a `refinery run conf/full.yaml` directory: PRE = RUN/train/pretrain (the base), SFT =
RUN/train/sft, SFT_DATA = RUN/train/sft_data. Three runs of
`refinery train align --method grpo --config conf/train/r1zero.yaml`, one config, only `--init`
differing, so all three have the same budget (steps, prompts, group size, lr, reward):

- `base`: R1-Zero (DeepSeek-R1, §2.2): GRPO from the base, paid for right answers and for the
  `#### N` final line (`reward.format`);
- `sft`: GRPO from the SFT model;
- `warmup`: GRPO from the base after a format-only warm-up, `refinery train sft --config
  conf/train/r1zero-warmup.yaml` on OUT/warmup_data: the train prompts of the config's tasks,
  each answered with another problem's solution of its task (`mismatched`). A base that never
  writes the format gives every group the same reward 0 and GRPO nothing to learn from; the
  warm-up teaches the form without the answers (conf/train/r1zero-warmup.yaml says why not
  DeepSeek-R1's cold start on right solutions).

Every run validates at step 0, before any RL: its start's greedy `val_format` (final line of the
answer's form) and `val_acc` on the held-out problems (training/align.py `heldout_figures`), printed
first in a table of the three starts; then a markdown table per run over steps (rollout reward,
format, correct, length; held-out format and accuracy). The curves go to OUT/r1zero.png.

Cost, estimated and not measured: at demo scale a GRPO step (16 x 8 samples of 96 tokens) takes
~20 s on one core, so 30 steps are ~10 min a run plus 7 evaluations of 100 greedy answers; the
warm-up is 20 SFT steps (~1 min, demo SFT's ~3 s a step). Some 45 min in all, one run at a time
(threads: 1). Every command runs with `--resume`: a rerun continues an interrupted run
and only replots a finished one; a rerun with other settings into the same OUT stops with the
checkpoint's config difference. `--steps`/`--warmup-steps` (smoke runs) write the configs with
the steps changed to OUT/configs/.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

CONFIG = REPO / "conf" / "train" / "r1zero.yaml"
WARMUP_CONFIG = REPO / "conf" / "train" / "r1zero-warmup.yaml"
RUNS = ("base", "sft", "warmup")  # the GRPO runs, by their start
# (metrics key, table header): the rollouts' figures, then the held-out ones
COLUMNS = (
    ("reward", "reward"),
    ("format", "format"),
    ("correct", "correct"),
    ("length", "length"),
    ("val_format", "val format"),
    ("val_acc", "val acc"),
)


def starts(args: argparse.Namespace) -> tuple[Path, Path, Path]:
    """The base checkpoint, the SFT checkpoint and SFT_DATA, from --run or given one by one."""
    train = Path(args.run) / "train" if args.run else None
    base = Path(args.base) if args.base else train / "pretrain" if train else None
    sft = Path(args.sft) if args.sft else train / "sft" if train else None
    data = Path(args.data) if args.data else train / "sft_data" if train else None
    for name, path in (("base", base), ("sft", sft), ("data", data)):
        if path is None:
            raise SystemExit(f"r1zero: no {name}: give --run RUN or --{name}")
        if not path.exists():
            raise SystemExit(f"r1zero: {path}: no such {name} (a `refinery run conf/full.yaml` run's train/)")
    return base, sft, data


def with_steps(config: Path, steps: int | None, out: Path) -> Path:
    """`config`, or a copy in OUT/configs with `steps` changed (evaluating and saving at most then)."""
    if steps is None:
        return config
    values = yaml.safe_load(config.read_text())
    values |= {
        "steps": steps,
        "eval_every": min(values.get("eval_every") or steps, steps),
        "save_every": steps,
    }
    path = out / "configs" / config.name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


def mismatched(problems: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """Conversations: each problem's prompt answered with the solution of another prompt of its task
    (training/kto.py `with_mismatched`, task by task so the form is the task's own)."""
    from training.kto import with_mismatched

    conversations = []
    for task in sorted({p["task"] for p in problems}):
        examples = [{"prompt": p["prompt"], "response": p["solution"]} for p in problems if p["task"] == task]
        for pair in with_mismatched(examples, seed):
            turns = [
                {"role": "user", "content": pair["prompt"]},
                {"role": "assistant", "content": pair["rejected"]},
            ]
            conversations.append({"task": task, "messages": turns})
    return conversations


def warmup_data(data: Path, tasks: list[str] | None, seed: int, out: Path) -> Path:
    """OUT/warmup_data: mismatched train conversations of `tasks` (None: every task), and their real
    test problems, so the warm-up's validation measures what it taught beyond the form."""
    from training.eval_tasks import read_problems

    folder = out / "warmup_data"
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        problems = [p for p in read_problems(data / f"{split}.jsonl") if not tasks or p["task"] in tasks]
        rows = mismatched(problems, seed) if split == "train" else problems
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def refinery(*argv: str | Path) -> None:
    """`refinery ARGV` in a process of its own (as the integrator would type it); stops on failure."""
    command = [sys.executable, "-m", "jobs.cli", *map(str, argv)]
    print("$ refinery " + " ".join(map(str, argv)), flush=True)
    if subprocess.run(command, cwd=REPO).returncode:
        raise SystemExit(f"r1zero: `refinery {' '.join(map(str, argv))}` failed")


def read_records(out: Path) -> list[dict[str, Any]]:
    from training.loop import METRICS, read_metrics

    path = out / METRICS
    if not path.is_file():
        raise SystemExit(f"r1zero: {path}: no metrics (did the run start?)")
    return read_metrics(path)


def step_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per step: the step's rollout figures and, where it validated, the held-out ones
    (step 0: the start, before any update)."""
    rows: dict[int, dict[str, Any]] = {}
    for record in records:
        rows.setdefault(record["step"], {"step": record["step"]}).update(
            {key: record[key] for key, _ in COLUMNS if key in record}
        )
    return [rows[step] for step in sorted(rows)]


def table(name: str, rows: list[dict[str, Any]]) -> str:
    """Markdown: a row per step, an empty cell where the step has no such figure."""
    lines = [f"### {name}", "", "| step | " + " | ".join(h for _, h in COLUMNS) + " |"]
    lines.append("|---" * (len(COLUMNS) + 1) + "|")
    for row in rows:
        cells = [f"{row[key]:.3f}" if key in row else "" for key, _ in COLUMNS]
        lines.append(f"| {row['step']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def starts_table(runs: dict[str, list[dict[str, Any]]]) -> str:
    """Markdown: each start's held-out format rate and accuracy before any RL (its step-0 row)."""
    lines = ["### before RL (greedy, held-out)", "", "| start | val format | val acc |", "|---|---|---|"]
    for name, rows in runs.items():
        lines.append(f"| {name} | {rows[0]['val_format']:.3f} | {rows[0]['val_acc']:.3f} |")
    return "\n".join(lines)


def plot(runs: dict[str, list[dict[str, Any]]], png: Path) -> None:
    """A panel per figure of COLUMNS, a line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from training.align import draw_panel
    from training.loop import save_figure

    fig, axes = plt.subplots(2, 3, figsize=(13, 7))
    for ax, (key, title) in zip(axes.flat, COLUMNS, strict=True):
        draw_panel(ax, title, [(name, key, rows) for name, rows in runs.items()])
    save_figure(fig, png)


def run_all(base: Path, sft: Path, data: Path, out: Path, config: Path, warmup_config: Path) -> dict:
    """The warm-up, then the three GRPO runs into OUT/<run>; their step rows by run."""
    settings = yaml.safe_load(config.read_text())
    warm = warmup_data(data, settings.get("tasks"), settings.get("seed", 0), out)
    warmed = out / "warmup_sft"
    refinery("train", "sft", "--config", warmup_config, "--init", base, "--data", warm, "--out", warmed,
             "--resume", "--quiet")  # fmt: skip
    for name, init in zip(RUNS, (base, sft, warmed), strict=True):
        refinery("train", "align", "--method", "grpo", "--config", config, "--init", init, "--data", data,
                 "--out", out / name, "--resume", "--quiet")  # fmt: skip
    return {name: step_rows(read_records(out / name)) for name in RUNS}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", help="a `refinery run conf/full.yaml` directory (its train/)")
    parser.add_argument("--base", help="the pretrained checkpoint (default RUN/train/pretrain)")
    parser.add_argument("--sft", help="the SFT checkpoint (default RUN/train/sft)")
    parser.add_argument("--data", help="`refinery synth sft` directory (default RUN/train/sft_data)")
    parser.add_argument("--out", required=True, help="output directory: a folder per run, r1zero.png")
    parser.add_argument("--config", default=str(CONFIG), help="GRPO config of every run")
    parser.add_argument("--warmup-config", default=str(WARMUP_CONFIG), help="SFT config of the warm-up")
    parser.add_argument("--steps", type=int, help="GRPO steps instead of the config's (smoke runs)")
    parser.add_argument("--warmup-steps", type=int, help="warm-up steps instead of the config's")
    args = parser.parse_args(argv)
    base, sft, data = starts(args)
    out = Path(args.out)
    config = with_steps(Path(args.config), args.steps, out)
    warmup_config = with_steps(Path(args.warmup_config), args.warmup_steps, out)
    runs = run_all(base, sft, data, out, config, warmup_config)
    print("\n\n".join([starts_table(runs), *(table(name, rows) for name, rows in runs.items())]))
    plot(runs, out / "r1zero.png")
    print(f"\nwrote {out / 'r1zero.png'}")


if __name__ == "__main__":
    main()

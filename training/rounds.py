"""Iterative post-training rounds, as Llama 3's (Dubey et al. 2024, §4.1, Figure 7):

    refinery train rounds CONFIG --init SFT --data SFT_DATA --out OUT [--pairs PREFS]

Round r starts from the policy round r − 1 ended with (round 1 from the SFT model) and:

1. samples K responses to its train prompts (`prompts` per task, the next ones each round) and to
   `heldout_prompts` test prompts per task, and grades them with the checker (training/tasks.py);
   a prompt with a right and a wrong sample gives a pair (training/preferences.py
   `on_policy_pairs`): the round's pairs, train and held-out;
2. trains the reward model from the SFT model on every train pair so far (PREFS/train.jsonl when
   given, then rounds 1..r), validated on the round's held-out pairs: its accuracy there is on
   the samples of the policy as it is now, which the previous round's reward model is also
   scored on (`rm_prev_acc`), to show the drift as the policy moves;
3. rejection sampling (training/rs.py): the reward model picks the best of each train prompt's
   K samples (among the solved ones with `rs.require_correct`) and the policy is fine-tuned on
   the winners;
4. DPO (training/dpo.py) from that checkpoint on the round's train pairs;
5. evaluates the DPO checkpoint, the round's policy: greedy held-out accuracy per task against
   the majority baseline, KL to the SFT model along those answers and their mean length
   (training/align.py `heldout_figures`), into eval.json.

Layout (round 0 holds the SFT model's evaluation, the table's first row):

    OUT/rounds_config.json     the resolved config and inputs; a rerun with others is an error
    OUT/round_<r>/samples.jsonl  the train samples, graded
    OUT/round_<r>/pairs/       train.jsonl, test.jsonl (the round's pairs), report.json
    OUT/round_<r>/rm_data/     train.jsonl (every pair so far), test.jsonl (the round's held-out)
    OUT/round_<r>/rm/  rs/  dpo/   checkpoints of the three trainings
    OUT/round_<r>/eval.json    written last: the round is finished
    OUT/rounds.json, rounds.md the per-round table

Rerunning resumes at a round boundary: finished rounds (eval.json present) are read back, and
an unfinished round's folder is deleted and the round redone from its start, since its
sampling, pairs and trainings depend on one another in order.
"""

import json
import random
import shutil
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from corpus.manifest import read_json, write_json_atomic
from corpus.tokenizer import load as load_tokenizer
from training.align import Run, align, answerable, frozen, heldout_figures, prepare
from training.chat import ChatTokens
from training.checkpoint import load_model, resolve_checkpoint
from training.config import RoundsConfig
from training.eval_tasks import majority_baseline, read_problems
from training.factuality import write_jsonl
from training.loop import Runtime, runtime
from training.model import GPT
from training.pairs import PairBatches, read_pairs
from training.preferences import on_policy_pairs
from training.reward import load_reward_model, pair_figures, pair_scores, train_reward
from training.rollout import decode, sample
from training.rs import choose, fine_tune, write_winners

CONFIG = "rounds_config.json"
EVAL = "eval.json"
TABLE_JSON, TABLE_MD = "rounds.json", "rounds.md"


@dataclass
class Context:
    """What every round reads: the inputs, the SFT model and the problems."""

    cfg: RoundsConfig
    rt: Runtime
    sft: Path  # the SFT checkpoint, resolved
    data: Path
    out: Path
    seed_pairs: Path | None  # PREFS: train pairs every reward model trains on
    quiet: bool
    chat: ChatTokens
    sft_model: GPT  # frozen: the reference of the KL column
    train: dict[str, list[dict[str, Any]]]  # train problems per task
    heldout: list[dict[str, Any]]  # test prompts sampled for the held-out pairs
    evaluation: list[dict[str, Any]]  # test problems answered greedily after each round


def round_dir(out: Path, r: int) -> Path:
    return out / f"round_{r}"


def policy_of(ctx: Context, r: int) -> Path:
    """The checkpoint round r starts from: the SFT model, then each round's DPO checkpoint."""
    return ctx.sft if r == 1 else resolve_checkpoint(round_dir(ctx.out, r - 1) / "dpo")


def round_prompts(train: dict[str, list[dict[str, Any]]], per_task: int, r: int) -> list[dict[str, Any]]:
    """Round r's `per_task` train problems of each task: the ones after round r − 1's, wrapping."""
    return [
        problems[((r - 1) * per_task + i) % len(problems)]
        for _, problems in sorted(train.items())
        for i in range(per_task)
    ]


# --- setup and resume ---------------------------------------------------------------------------


def _check_inputs(cfg: RoundsConfig, out: Path, inputs: dict[str, Any]) -> None:
    """Record the config and inputs in OUT; a rerun with different ones would mix two runs' rounds."""
    path = out / CONFIG
    record = {"config": cfg.model_dump(mode="json"), **inputs}
    if path.is_file():
        saved = read_json(path)
        changed = sorted(k for k in record | saved if record.get(k) != saved.get(k))
        if changed:
            raise ValueError(f"{path}: this run was made with other {', '.join(changed)}; use a new --out")
        return
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, record)


def _context(
    cfg: RoundsConfig, init: Path, data: Path, out: Path, pairs: Path | None, quiet: bool
) -> Context:
    rt = runtime(cfg)  # reads `threads` and `dtype` only
    sft = resolve_checkpoint(init)
    chat = ChatTokens(load_tokenizer(sft / "tokenizer.json"))
    sft_model = frozen(load_model(sft, rt.device))
    T = sft_model.cfg.context_length

    def problems(split: str, limit: int | None) -> list[dict[str, Any]]:
        chosen = read_problems(data / f"{split}.jsonl", limit)
        chosen = [p for p in chosen if not cfg.tasks or p["task"] in cfg.tasks]
        return answerable(chosen, chat, T)

    train = defaultdict(list)
    for p in problems("train", None):
        train[p["task"]].append(p)
    if not train:
        raise ValueError(f"{data / 'train.jsonl'}: no train prompt of tasks {cfg.tasks} fits the context")
    return Context(
        cfg, rt, sft, data, out, pairs, quiet, chat, sft_model, dict(train),
        problems("test", cfg.heldout_prompts), problems("test", cfg.eval_tasks),
    )  # fmt: skip


def rounds(
    cfg: RoundsConfig,
    init: str | Path,
    data: str | Path,
    out: str | Path,
    *,
    pairs: str | Path | None = None,
    quiet: bool = False,
) -> list[dict[str, Any]]:
    """Run the rounds not yet finished in OUT; write and return the per-round table."""
    out, data = Path(out), Path(data)
    pairs = Path(pairs) if pairs else None
    if pairs is not None:
        read_pairs(pairs / "train.jsonl")  # a missing file fails now, not after round 1's sampling
    ctx = _context(cfg, Path(init), data, out, pairs, quiet)
    _check_inputs(cfg, out, {"init": str(ctx.sft), "data": str(data.resolve()), "pairs": str(pairs)})
    if not (round_dir(out, 0) / EVAL).is_file():
        round_dir(out, 0).mkdir(exist_ok=True)
        write_json_atomic(round_dir(out, 0) / EVAL, {"round": 0, **_evaluate(ctx, ctx.sft_model)})
    for r in range(1, cfg.rounds + 1):
        folder = round_dir(out, r)
        if (folder / EVAL).is_file():
            continue
        if folder.exists():  # unfinished: its steps depend on one another, so it starts over
            shutil.rmtree(folder)
        one_round(ctx, r)
    table = read_table(out, cfg.rounds)
    write_json_atomic(out / TABLE_JSON, table)
    (out / TABLE_MD).write_text(format_table(table) + "\n")
    return table


# --- one round ----------------------------------------------------------------------------------


def one_round(ctx: Context, r: int) -> None:
    """Sample and grade, reward model, rejection sampling, DPO, evaluation; eval.json last."""
    cfg, folder = ctx.cfg, round_dir(ctx.out, r)
    start = policy_of(ctx, r)
    problems = round_prompts(ctx.train, cfg.prompts, r)
    rows, report = _sample_pairs(ctx, load_model(start, ctx.rt.device), problems, r)

    # --- the reward model, retrained from the SFT model on every train pair so far
    so_far = read_pairs(ctx.seed_pairs / "train.jsonl") if ctx.seed_pairs else []
    for k in range(1, r + 1):
        so_far += read_pairs(round_dir(ctx.out, k) / "pairs" / "train.jsonl")
    write_jsonl(folder / "rm_data" / "train.jsonl", so_far)
    shutil.copyfile(folder / "pairs" / "test.jsonl", folder / "rm_data" / "test.jsonl")
    rm = train_reward(cfg.reward, ctx.sft, folder / "rm_data", folder / "rm", quiet=ctx.quiet)

    # --- rejection sampling on the round's samples, picked by this round's reward model
    run = Run(start, ctx.data, folder / "rs", reward=folder / "rm", quiet=ctx.quiet)
    setup = prepare(cfg.rs, run)
    winners, selection = choose(setup, problems, rows, cfg.samples, setup.cfg)
    if not winners:
        raise ValueError(f"round {r}: no prompt kept a winner (rs.require_correct {cfg.rs.require_correct})")
    write_winners(run.out, winners, selection)
    fine_tune(setup, winners, run)
    del setup  # its policy, reference and reward model: DPO loads its own

    # --- DPO from the rejection-sampling checkpoint on the round's pairs
    align("dpo", cfg.dpo, folder / "rs", ctx.data, folder / "dpo", pairs=folder / "pairs", quiet=ctx.quiet)

    record = {
        "round": r,
        "start": str(start),
        "pairs": report["train_pairs"],
        "heldout_pairs": report["test_pairs"],
        "rm_train_pairs": len(so_far),
        "rm_acc": rm["val_acc"],
        "rm_prev_acc": _previous_rm_accuracy(ctx, r),
        "winners": len(winners),
        "winner_accuracy": selection["winner_accuracy"],
        "sample_accuracy": report["train"]["sample_accuracy"],
    }
    policy = frozen(load_model(resolve_checkpoint(folder / "dpo"), ctx.rt.device))
    write_json_atomic(folder / EVAL, record | _evaluate(ctx, policy))


def _sample_pairs(ctx: Context, policy: GPT, problems: list[dict[str, Any]], r: int):
    """K samples per train and held-out prompt from `policy`, graded into the round's pairs
    (pairs/train.jsonl, pairs/test.jsonl, pairs/report.json); the train rows, for rejection sampling."""
    cfg, folder = ctx.cfg, round_dir(ctx.out, r)
    report: dict[str, Any] = {}
    train_rows = []
    for split, chosen, offset in (("train", problems, 0), ("test", ctx.heldout, 1)):
        rows = sample(
            policy, ctx.chat, [p["prompt"] for p in chosen], cfg.samples, cfg.sampling,
            cfg.seed * 1_000_000 + 2 * r + offset, ctx.rt.autocast,
        )  # fmt: skip
        texts = [decode(ctx.chat, response) for _, response in rows]
        grouped = [texts[i : i + cfg.samples] for i in range(0, len(texts), cfg.samples)]
        rng = random.Random(f"{split}:{cfg.seed}:{r}")
        made, report[split] = on_policy_pairs(chosen, grouped, cfg.pairs_per_prompt, rng, steps=cfg.steps)
        if not made:
            raise ValueError(
                f"round {r}: no {split} prompt had both a right and a wrong sample among its {cfg.samples}; "
                "raise samples or prompts, or grade the final answer alone (steps: false)"
            )
        write_jsonl(folder / "pairs" / f"{split}.jsonl", [{**p, "split": split, "round": r} for p in made])
        report[f"{split}_pairs"] = len(made)
        if split == "train":
            train_rows = rows
            asked = [chosen[i // cfg.samples] for i in range(len(texts))]
            samples = [
                {"prompt": p["prompt"], "task": p["task"], "response": t}
                for p, t in zip(asked, texts, strict=True)
            ]
            write_jsonl(folder / "samples.jsonl", samples)
    write_json_atomic(folder / "pairs" / "report.json", report)
    return train_rows, report


def _previous_rm_accuracy(ctx: Context, r: int) -> float | None:
    """Round r − 1's reward model on round r's held-out pairs: what it is worth on the samples of a
    policy that has moved since it was trained."""
    if r == 1:
        return None
    scorer = frozen(load_reward_model(round_dir(ctx.out, r - 1) / "rm", ctx.rt.device))
    held_out = PairBatches(
        read_pairs(round_dir(ctx.out, r) / "rm_data" / "test.jsonl"),
        ctx.chat,
        ctx.sft_model.cfg.context_length,
        shuffle=False,
    )
    scores = pair_scores(scorer, held_out, ctx.cfg.reward.micro_batch, ctx.rt.autocast)
    return pair_figures(scores, held_out)["acc"]


@torch.no_grad()
def _evaluate(ctx: Context, policy: GPT) -> dict[str, float]:
    """Greedy held-out accuracy per task, KL to the SFT model and mean length of `policy`."""
    return heldout_figures(
        policy, ctx.chat, ctx.evaluation, ctx.cfg.max_new_tokens, ref=ctx.sft_model, autocast=ctx.rt.autocast
    ) | {f"majority_{task}": v for task, v in majority_baseline(ctx.evaluation).items()}


# --- the table ----------------------------------------------------------------------------------


def read_table(out: Path, n: int) -> list[dict[str, Any]]:
    """eval.json of rounds 0..n, in order."""
    return [json.loads((round_dir(out, r) / EVAL).read_text()) for r in range(n + 1)]


def _cell(value: Any) -> str:
    return "" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def format_table(table: list[dict[str, Any]]) -> str:
    """Markdown: one row per round (0: the SFT model), accuracy per task with its majority baseline
    in the header, the reward model's accuracy on the current policy's held-out samples (and the
    previous round's), KL to SFT, mean length, and the round's pairs."""
    tasks = sorted(k.removeprefix("acc_") for k in table[0] if k.startswith("acc_"))
    columns = [(f"acc_{t}", f"{t} (majority {table[0][f'majority_{t}']:.3f})") for t in tasks]
    columns += [
        ("acc", "mean acc"),
        ("rm_acc", "RM acc, current policy"),
        ("rm_prev_acc", "previous RM acc"),
        ("kl", "KL to SFT"),
        ("length", "mean length"),
        ("pairs", "new pairs"),
        ("rm_train_pairs", "RM pairs"),
    ]
    lines = ["| round | " + " | ".join(label for _, label in columns) + " |"]
    lines.append("|---" * (len(columns) + 1) + "|")
    for row in table:
        name = "0 (SFT)" if row["round"] == 0 else str(row["round"])
        lines.append(f"| {name} | " + " | ".join(_cell(row.get(key)) for key, _ in columns) + " |")
    return "\n".join(lines)

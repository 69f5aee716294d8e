"""Alignment from an SFT checkpoint: `refinery train align --method ppo|grpo|dpo|kto|rs`.

    refinery train align --method grpo --init SFT --data SFT_DATA --out OUT [--config conf/train/grpo.yaml]
    refinery train align --method ppo  --init SFT --data SFT_DATA --reward RM --out OUT
    refinery train align --method dpo  --init SFT --data SFT_DATA --pairs PREFS --out OUT
    refinery train align --method kto  --init SFT --data SFT_DATA --pairs PREFS --out OUT
    refinery train align --method rs   --init SFT --data SFT_DATA --reward RM --out OUT

Every method starts the policy from the SFT checkpoint and keeps a frozen copy of it as the
reference π_ref. One file per method, its setup and objective in view, all on the shared loop
(training/loop.py): a checkpoint's model.pt holds the policy alone (PPO keeps its critic beside it,
in critic.pt), so it loads with `load_model` like any GPT checkpoint (`refinery eval tasks`,
`refinery eval compare`, a further `--init`), and every method resumes from it. With
`lora_rank` R the policy trains rank-R adapters over its frozen SFT weights and checkpoints hold
the adapters, which `load_model` merges over the SFT checkpoint.

| method | file | learns from | reward | KL to π_ref |
|---|---|---|---|---|
| dpo | dpo.py | PREFS pairs, offline | implicit: β·log π/π_ref | through β |
| kto | kto.py | PREFS responses, unpaired | implicit, against z_ref | through β |
| grpo | grpo.py | G samples per prompt | checker, reward model, or a mix | k3 term in the loss |
| ppo | ppo.py | samples and a critic | reward model (or a mix) | penalty in the reward |
| rs | rs.py | best of N, then SFT | reward model and/or checker, to select | none (SFT stays near) |

SFT_DATA is the `refinery synth sft` directory: train.jsonl gives the prompts (their solutions
are never used by the on-policy methods) and test.jsonl the held-out problems.

Validation, the same for every method and for `refinery eval compare` (`heldout_figures`): greedy
answers to `eval_tasks` held-out problems per task, graded by the checker: `val_acc_<task>` and
`val_acc` (their mean over tasks), `val_format` (the share whose final line has the answer's form,
right or wrong: training/tasks.py `well_formed`), `val_length` (response tokens, the stop token included),
`val_kl` (KL to the reference along those answers, exact over the vocabulary and summed over the
response's tokens), and `val_rm_score` (mean normalized reward-model score) when a reward model is
given. OUT/align.png plots them over steps with the training rollouts' own figures.
"""

import os
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from corpus.tokenizer import load as load_tokenizer
from training.chat import ChatTokens
from training.checkpoint import load_model
from training.config import (
    AlignConfig,
    DpoConfig,
    GrpoConfig,
    KtoConfig,
    PpoConfig,
    RsConfig,
    SamplingConfig,
)
from training.eval_tasks import read_problems
from training.loop import METRICS, Runtime, read_metrics, runtime, save_figure
from training.lora import add_lora
from training.model import GPT
from training.reward import RewardModel, load_reward_model
from training.rollout import PromptStream, decode, exact_kl, in_chunks, pad_responses, sample, user_prompt
from training.sft import from_checkpoint, resolve_checkpoint
from training.tasks import check, solved, well_formed

PLOT = "align.png"
# A prompt must leave this much of the context to answer in (a demo arithmetic solution is ~40
# tokens, a title choice ~20); longer prompts are skipped, in training and validation alike.
MIN_RESPONSE_TOKENS = 32


@dataclass(frozen=True)
class Run:
    """Where a method reads and writes: the paths and flags of `refinery train align`."""

    init: Path  # the SFT checkpoint, or a training directory (its latest checkpoint)
    data: Path  # SFT_DATA
    out: Path
    reward: Path | None = None  # reward-model checkpoint (ppo, rs; grpo with reward.reward_model > 0)
    pairs: Path | None = None  # `refinery synth preferences` directory (dpo, kto)
    resume: bool = False
    quiet: bool = False


@dataclass
class Setup:
    """What every method starts from."""

    cfg: Any  # the method's config, `init` and `model` filled in from the checkpoint
    rt: Runtime
    chat: ChatTokens
    tokenizer_path: Path
    policy: GPT  # trains
    ref: GPT  # frozen copy of the initial policy
    train: list[dict[str, Any]]  # train problems (their prompts)
    heldout: list[dict[str, Any]]  # test problems for validation
    scorer: RewardModel | None  # the normalized, frozen reward model, when one is given


def answerable(problems: list[dict[str, Any]], chat: ChatTokens, context_length: int) -> list[dict[str, Any]]:
    """The problems whose prompt leaves MIN_RESPONSE_TOKENS of the context to answer in."""
    room = context_length - MIN_RESPONSE_TOKENS
    return [p for p in problems if len(user_prompt(chat, p["prompt"])) <= room]


def frozen(model: torch.nn.Module) -> torch.nn.Module:
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


def prepare(cfg: AlignConfig, run: Run) -> Setup:
    rt = runtime(cfg)
    if rt.world > 1:
        raise ValueError("alignment runs in one process (rollouts are not sharded across ranks)")
    cfg, chat = from_checkpoint(cfg, run.init)
    init, data = Path(cfg.init), run.data
    tokenizer_path = init / "tokenizer.json"

    def fits(problems: list[dict[str, Any]]) -> list[dict[str, Any]]:
        chosen = [p for p in problems if not cfg.tasks or p["task"] in cfg.tasks]
        return answerable(chosen, chat, cfg.model.context_length)

    heldout = fits(read_problems(data / "test.jsonl", limit=cfg.eval_tasks)) if cfg.eval_tasks else []
    policy = load_model(init, rt.device).train()
    if cfg.lora_rank:  # the policy's base weights freeze; checkpoints hold the adapters (`trainable_only`)
        add_lora(policy, cfg.lora_rank, cfg.lora_alpha, seed=cfg.seed, embeddings=cfg.lora_embeddings)
    return Setup(
        cfg=cfg,
        rt=rt,
        chat=chat,
        tokenizer_path=tokenizer_path,
        policy=policy,
        ref=frozen(load_model(init, rt.device)),
        train=fits(read_problems(data / "train.jsonl")),
        heldout=heldout,
        scorer=frozen(load_reward_model(run.reward, rt.device)) if run.reward else None,
    )


def reward_scores(scorer: RewardModel, ids: torch.Tensor, mask: torch.Tensor, autocast: Any = None):
    """Normalized reward-model scores (B,) of response rows (training/rollout.py layout)."""
    return in_chunks(scorer.score, ids, mask, autocast)


@torch.no_grad()
def heldout_figures(
    policy: GPT,
    chat: ChatTokens,
    problems: list[dict[str, Any]],
    max_new_tokens: int,
    *,
    ref: GPT | None = None,
    scorer: RewardModel | None = None,
    autocast: Any = None,
) -> dict[str, float]:
    """Greedy answers to `problems`: checker accuracy per task and overall, the share with a final
    line of the answer's form (`format`), length, KL, RM score."""
    if not problems:
        return {}
    greedy = SamplingConfig(temperature=0.0, response_tokens=max_new_tokens)
    rows = sample(policy, chat, [p["prompt"] for p in problems], 1, greedy, seed=0, autocast=autocast)
    right, total, formed = defaultdict(int), defaultdict(int), 0
    for p, (_, response) in zip(problems, rows, strict=True):
        text = decode(chat, response)
        total[p["task"]] += 1
        right[p["task"]] += check(p["task"], text, p["answer"])
        formed += well_formed(p["task"], text)
    figures = {f"acc_{task}": right[task] / total[task] for task in sorted(total)}
    figures["acc"] = sum(figures.values()) / len(figures)
    figures["format"] = formed / len(problems)  # R1-Zero's first hurdle: a base rarely writes `#### N`
    figures["length"] = sum(len(r) for _, r in rows) / len(rows)
    ids, mask = pad_responses(rows)
    device = next(policy.parameters()).device
    ids, mask = ids.to(device), mask.to(device)
    if ref is not None:
        figures["kl"] = exact_kl(policy, ref, ids, mask).mean().item()
    if scorer is not None:
        figures["rm_score"] = reward_scores(scorer, ids, mask, autocast).mean().item()
    return figures


@dataclass
class Rollout:
    ids: torch.Tensor  # (B, L) prompt + response rows on the device (training/rollout.py layout)
    mask: torch.Tensor  # (B, L−1) response targets
    reward: torch.Tensor  # (B,) on the CPU
    figures: dict[str, float]  # `correct`, `length` and `rm` (with a reward model), for the records


def roll_out(setup: Setup, prompts: PromptStream, index: int) -> Rollout:
    """Rollout `index` of an on-policy method (GRPO, PPO): `prompts_per_rollout` train prompts ×
    `group_size` samples from the policy as it is now, rewarded per response with
    reward = checker·verdict + format·[well-formed] + reward_model·normalized RM score, prompt-major
    (rows i·G … i·G+G−1 answer prompt i). The checker's verdict is computed whatever the mix: it is
    how a reward-model-only run is watched for reward hacking."""
    cfg, G = setup.cfg, setup.cfg.group_size
    problems = prompts.take(index, cfg.prompts_per_rollout)
    rows = sample(
        setup.policy,
        setup.chat,
        [p["prompt"] for p in problems],
        G,
        cfg.sampling,
        cfg.seed * 1_000_000 + index,
        setup.rt.autocast,
    )
    ids, mask = (t.to(setup.rt.device) for t in pad_responses(rows))
    answered = [p for p in problems for _ in range(G)]
    texts = [decode(setup.chat, r) for _, r in rows]
    correct = torch.tensor(
        [check(p["task"], t, p["answer"]) for p, t in zip(answered, texts, strict=True)], dtype=torch.float
    )
    formed = torch.tensor(
        [well_formed(p["task"], t) for p, t in zip(answered, texts, strict=True)], dtype=torch.float
    )
    figures = {
        "correct": correct.mean().item(),
        "format": formed.mean().item(),
        "length": mask.sum(1).mean().item(),
    }
    verdict = correct
    if cfg.reward.steps:
        verdict = torch.tensor(
            [solved(p, t) for p, t in zip(answered, texts, strict=True)], dtype=torch.float
        )
        figures["solved"] = verdict.mean().item()
    reward = cfg.reward.checker * verdict + cfg.reward.format * formed
    if setup.scorer is not None:
        rm = reward_scores(setup.scorer, ids, mask, setup.rt.autocast).cpu()
        reward = reward + cfg.reward.reward_model * rm
        figures["rm"] = rm.mean().item()
    elif cfg.reward.reward_model:
        raise ValueError("the reward mixes in the reward model (reward.reward_model > 0): give --reward")
    return Rollout(ids, mask, reward, figures)


def validation(setup: Setup, extra: Callable[[], dict[str, float]] | None = None) -> Callable[[], dict]:
    """The validate() of a method: held-out figures of the policy now, plus the method's own."""

    def validate() -> dict[str, float]:
        figures = extra() if extra is not None else {}
        figures |= heldout_figures(
            setup.policy,
            setup.chat,
            setup.heldout,
            setup.cfg.max_new_tokens,
            ref=setup.ref,
            scorer=setup.scorer,
            autocast=setup.rt.autocast,
        )
        setup.policy.train()
        return figures

    return validate


# --- plot --------------------------------------------------------------------------------------

PANELS = (  # (title, [(metrics key, label)])
    ("reward", [("reward", "rollouts"), ("rm", "rollouts: RM score"), ("val_rm_score", "held-out RM score")]),
    ("KL to reference (nats per response)", [("kl", "rollouts (k1)"), ("val_kl", "held-out (exact)")]),
    ("response length (tokens)", [("length", "rollouts"), ("val_length", "held-out")]),
    ("checker accuracy", [("correct", "rollouts"), ("val_acc", "held-out")]),
)


def plot_alignment(metrics_path: Path, png_path: Path) -> None:
    """Reward, KL, length and accuracy over steps, written atomically as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(metrics_path)
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    for ax, (title, series) in zip(axes.flat, PANELS, strict=True):
        draw_panel(ax, title, [(label, key, records) for key, label in series])
    save_figure(fig, png_path)


def draw_panel(ax: Any, title: str, lines: list[tuple[str, str, list[dict[str, Any]]]]) -> None:
    """One panel of curves over steps: per (label, key, records), the records' `key` by step; the
    held-out figures (`val_`), taken every few steps, are marked."""
    for label, key, records in lines:
        points = [(r["step"], r[key]) for r in records if key in r]
        if points:
            ax.plot(*zip(*points, strict=True), label=label, marker="o" if key.startswith("val_") else None)
    ax.set_title(title)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend()


# --- dispatch ----------------------------------------------------------------------------------

CONFIGS: dict[str, type[AlignConfig]] = {
    "dpo": DpoConfig,
    "grpo": GrpoConfig,
    "kto": KtoConfig,
    "ppo": PpoConfig,
    "rs": RsConfig,
}


def align(
    method: str,
    cfg: AlignConfig,
    init: str | Path,
    data: str | Path,
    out: str | Path,
    *,
    reward: str | Path | None = None,
    pairs: str | Path | None = None,
    resume: bool = False,
    quiet: bool = False,
) -> dict[str, Any]:
    """Run one method; write OUT/align.png; return the last step's figures."""
    from training import dpo, grpo, kto, ppo, rs

    methods = {"dpo": dpo.dpo, "grpo": grpo.grpo, "kto": kto.kto, "ppo": ppo.ppo, "rs": rs.rs}
    if method not in methods:
        raise ValueError(f"unknown method {method!r}; expected one of {sorted(methods)}")
    if not isinstance(cfg, CONFIGS[method]):
        raise ValueError(f"method {method} takes a {CONFIGS[method].__name__}, not {type(cfg).__name__}")
    run = Run(
        Path(init),
        Path(data),
        Path(out),
        reward=Path(reward) if reward else None,
        pairs=Path(pairs) if pairs else None,
        resume=resume,
        quiet=quiet,
    )
    result = methods[method](cfg, run)
    if int(os.environ.get("RANK", "0")) == 0:
        plot_alignment(Path(out) / METRICS, Path(out) / PLOT)
    return result


# --- side by side: `refinery eval compare` ------------------------------------------------------


def compare(
    checkpoints: list[str],
    data: str | Path,
    *,
    ref: str | Path,
    reward: str | Path | None = None,
    limit: int | None = None,
    max_new_tokens: int = 128,
) -> dict[str, dict[str, float]]:
    """heldout_figures of each checkpoint against the same reference and reward model, on the
    problems of `data` whose prompt leaves room to answer (`answerable`, as validation takes them)."""
    ref_path = resolve_checkpoint(ref)
    chat = ChatTokens(load_tokenizer(ref_path / "tokenizer.json"))
    reference = frozen(load_model(ref_path))
    scorer = frozen(load_reward_model(reward)) if reward else None
    problems = answerable(read_problems(data, limit=limit), chat, reference.cfg.context_length)
    return {
        name: heldout_figures(
            frozen(load_model(resolve_checkpoint(name))),
            chat,
            problems,
            max_new_tokens,
            ref=reference,
            scorer=scorer,
        )
        for name in checkpoints
    }


def format_compare(results: dict[str, dict[str, float]]) -> str:
    """Figures as rows, checkpoints as columns."""
    columns = list(results)
    keys = sorted({k for r in results.values() for k in r if k.startswith("acc_")})
    keys += [
        k for k in ("acc", "format", "rm_score", "kl", "length") if any(k in r for r in results.values())
    ]
    lines = [f"{'figure':<22}" + "".join(f"{c[-16:]:>18}" for c in columns)]
    for key in keys:
        cells = "".join(f"{results[c][key]:>18.3f}" if key in results[c] else f"{'-':>18}" for c in columns)
        lines.append(f"{key:<22}" + cells)
    return "\n".join(lines)

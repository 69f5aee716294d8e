"""Rejection sampling: `refinery train align --method rs --init SFT --data SFT_DATA --reward RM --out OUT`.

Best-of-N, then SFT on the winners (Touvron et al. 2023, Llama 2 §3.2.3; Dubey et al. 2024,
Llama 3 §4.2.2): the SFT model samples `samples` (N) responses to each train prompt, the reward
model scores them, and the highest-scoring response of each prompt becomes the assistant turn of
a new SFT conversation. The policy is then fine-tuned on those conversations with SFT's pieces
(training/sft_data.py's ChatBatches: assistant tokens only, packed rows) on the shared loop.
By default the reward model alone selects and the checker is never consulted for training, so
the winners' checker accuracy (OUT/selection.json, against the samples' own) measures how well
the reward model picks. One round; a second would start from this run's checkpoint.

`require_correct` chooses among the solved samples only (the checker accepts the answer and the
worked steps hold: training/tasks.py `solved`, so no winner is right by luck), and drops the
prompts with none: rejection-sampling fine-tuning on verifiable tasks (RFT, Yuan et al. 2023; Llama 3 §4.3.3
keeps the correct solutions and lets a reward model rank them). The reward model then orders the
correct samples; without one (no --reward) the first correct sample wins. At the demo scale a
reward model right on 72% of on-policy pairs picks winners that are 62% wrong and SFT on them
costs 7 points of accuracy; the checker's selection holds it (bench/RESULTS.md, "Alignment").

OUT/winners.jsonl holds the chosen responses (prompt, response, score, correct, solved, task) and
OUT/selection.json the selection figures: mean score of all samples and of the winners, checker
accuracy and solved share of both, mean lengths. A resumed run reads the winners back instead
of sampling again.
"""

import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

from corpus.manifest import write_json_atomic
from training.align import Run, Setup, prepare, reward_scores, validation
from training.config import RsConfig
from training.loop import train_loop
from training.rollout import decode, pad_responses, sample
from training.sft_data import ChatBatches
from training.tasks import check, solved

WINNERS = "winners.jsonl"
SELECTION = "selection.json"


def best_of_n(s: Setup, problems: list[dict[str, Any]], cfg: RsConfig) -> tuple[list[dict], dict[str, float]]:
    """The highest-scoring of N samples per problem, and the selection figures."""
    rows = sample(
        s.policy, s.chat, [p["prompt"] for p in problems], cfg.samples, cfg.sampling, cfg.seed, s.rt.autocast
    )
    return choose(s, problems, rows, cfg.samples, cfg)


def choose(
    s: Setup, problems: list[dict[str, Any]], rows: list, N: int, cfg: RsConfig
) -> tuple[list[dict], dict[str, float]]:
    """The winner of each problem's N sampled `rows` (prompt-major, training/rollout.py `sample`),
    by the reward model's score among the eligible ones, and the selection figures."""
    texts = [decode(s.chat, r) for _, r in rows]
    correct = [check(problems[i // N]["task"], t, problems[i // N]["answer"]) for i, t in enumerate(texts)]
    worked = [solved(problems[i // N], t) for i, t in enumerate(texts)]
    if s.scorer is None:
        scores = torch.zeros(len(problems), N)
    else:
        ids, mask = (t.to(s.rt.device) for t in pad_responses(rows))
        scores = reward_scores(s.scorer, ids, mask, s.rt.autocast).view(len(problems), N).cpu()
    eligible = torch.tensor(worked).view(len(problems), N) | (not cfg.require_correct)
    # A prompt with no eligible sample tops out at −inf: it has no winner.
    top, arg = scores.masked_fill(~eligible, float("-inf")).max(dim=1)
    winners = []
    for i, p in enumerate(problems):
        best, score = i * N + int(arg[i]), top[i].item()
        if score > float("-inf") and (cfg.min_score is None or score >= cfg.min_score):
            winners.append(
                {"task": p["task"], "prompt": p["prompt"], "response": texts[best], "score": score}
                | {"correct": correct[best], "solved": worked[best], "tokens": len(rows[best][1])}
            )
    figures = {
        "prompts": len(problems),
        "winners": len(winners),
        "score_mean": scores.mean().item(),
        "winner_score_mean": statistics.fmean(w["score"] for w in winners) if winners else float("nan"),
        "sample_accuracy": sum(correct) / len(correct),
        "winner_accuracy": statistics.fmean(w["correct"] for w in winners) if winners else float("nan"),
        "sample_solved": sum(worked) / len(worked),
        "winner_solved": statistics.fmean(w["solved"] for w in winners) if winners else float("nan"),
        "sample_tokens_mean": statistics.fmean(len(r) for _, r in rows),
        "winner_tokens_mean": statistics.fmean(w["tokens"] for w in winners) if winners else float("nan"),
    }
    return winners, figures


def rs(cfg: RsConfig, run: Run) -> dict[str, Any]:
    if run.reward is None and not cfg.require_correct:
        raise ValueError(
            "rs selects by reward model: give --reward (a `refinery train reward` checkpoint), "
            "or set require_correct to select by the checker"
        )
    s = prepare(cfg, run)
    cfg, out = s.cfg, run.out

    # --- best-of-N with the SFT model, once (a resumed run reads the winners back)
    if run.resume and (out / WINNERS).is_file():
        winners = [json.loads(line) for line in (out / WINNERS).read_text().splitlines() if line]
    else:
        problems, seen = [], defaultdict(int)
        for p in s.train:  # the first `prompts` of each task
            if cfg.prompts is None or seen[p["task"]] < cfg.prompts:
                seen[p["task"]] += 1
                problems.append(p)
        winners, figures = best_of_n(s, problems, cfg)
        if not winners:
            raise ValueError(
                f"no prompt kept a winner (min_score {cfg.min_score}, require_correct {cfg.require_correct})"
            )
        write_winners(out, winners, figures)
    return fine_tune(s, winners, run)


def write_winners(out: Path, winners: list[dict[str, Any]], figures: dict[str, float]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / SELECTION, figures)
    tmp = out / f".{WINNERS}.tmp"
    tmp.write_text("".join(json.dumps(w, ensure_ascii=False) + "\n" for w in winners))
    tmp.replace(out / WINNERS)


def fine_tune(s: Setup, winners: list[dict[str, Any]], run: Run) -> dict[str, Any]:
    """SFT of the policy on the winners, on SFT's loop; the last step's figures."""
    cfg = s.cfg
    conversations = [
        [{"role": "user", "content": w["prompt"]}, {"role": "assistant", "content": w["response"]}]
        for w in winners
    ]
    T = cfg.model.context_length
    return train_loop(
        cfg,
        s.rt,
        s.policy,
        s.policy.optimizer(cfg.optim, fused=True),
        ChatBatches(conversations, s.chat, T, seed=cfg.seed),
        validation(s),
        run.out,
        s.tokenizer_path,
        tokens_per_step=cfg.global_batch * T,
        resume=run.resume,
        quiet=run.quiet,
        trainable_only=bool(cfg.lora_rank),
        meta_extra={"method": "rs", "winners": len(winners)},
    )

"""DPO: `refinery train align --method dpo --init SFT --data SFT_DATA --pairs PREFS --out OUT`.

Direct Preference Optimization (Rafailov et al. 2023) trains the policy on preference pairs
with the loss of their eq. 7 (`training.losses.dpo_loss`): no reward model and no sampling. The
reference model's log-probabilities of every pair's chosen and rejected response are computed
once, before training: the reference is frozen, so recomputing them each step would double the
forward passes to get the same numbers. They ride along in the batches (training/pairs.py).

Validation adds, on PREFS/test.jsonl (pairs from held-out problems): `val_margin`, the mean
log π(chosen) − log π(rejected) summed over response tokens, the quantity DPO pushes up;
`val_reward_acc`, how often the implicit reward β·log π/π_ref ranks the chosen response first;
and `val_dpo_loss`. At step 0 these are the SFT model's (the loss is ln 2 there exactly).
The training records add the same `margin` and `reward_acc` over the steps since the last one.

DPO learns only from the responses in PREFS. Lowering log π(rejected) is as good for the loss
as raising log π(chosen), and it often does both go down (Pal et al. 2024, "Smaug"); the
held-out checker accuracy in validation is the check that the model's own answers did not
suffer. `nll_weight` adds the chosen responses' likelihood to the loss (DPO+NLL, Pang et al.
2024), the remedy those authors found for it on reasoning tasks.
"""

from typing import Any

import torch
import torch.nn as nn

from training.align import Run, prepare, validation
from training.config import DpoConfig
from training.loop import train_loop
from training.losses import dpo_loss
from training.model import GPT
from training.pairs import PairBatches, read_pairs, sequence_logprobs
from training.rollout import Averager


class DpoObjective(nn.Module):
    """The policy's DPO loss on a batch of pairs with their reference log-probabilities."""

    def __init__(self, policy: GPT, beta: float, nll_weight: float, stats: Averager):
        super().__init__()
        self.policy, self.beta, self.nll_weight, self.stats = policy, beta, nll_weight, stats

    def forward(self, chosen, chosen_mask, rejected, rejected_mask, ref_chosen, ref_rejected) -> torch.Tensor:
        logp = sequence_logprobs(
            self.policy, torch.cat([chosen, rejected]), torch.cat([chosen_mask, rejected_mask])
        )
        policy_chosen, policy_rejected = logp.chunk(2)
        with torch.no_grad():
            implicit = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)
            self.stats.add(
                margin=(policy_chosen - policy_rejected).mean(), reward_acc=(implicit > 0).float().mean()
            )
        return dpo_loss(
            policy_chosen,
            policy_rejected,
            ref_chosen,
            ref_rejected,
            self.beta,
            self.nll_weight,
            chosen_tokens=chosen_mask.sum(-1),
        )


@torch.no_grad()
def pair_logprobs(model: GPT, pairs: PairBatches, batch_size: int, autocast: Any = None) -> torch.Tensor:
    """Sequence log-probabilities (N, 2) of every pair's chosen and rejected response, in order."""
    was_training = model.training
    model.eval()
    out = []
    for _, (chosen, chosen_mask, rejected, rejected_mask, *_) in pairs.eval_batches(batch_size):
        with autocast or torch.autocast("cpu", enabled=False):
            logp = sequence_logprobs(
                model, torch.cat([chosen, rejected]), torch.cat([chosen_mask, rejected_mask])
            )
        out.append(torch.stack(logp.chunk(2), dim=1))
    model.train(was_training)
    return torch.cat(out)


def pair_figures(
    policy: GPT, held_out: PairBatches, beta: float, batch_size: int, autocast: Any = None
) -> dict[str, float]:
    """The held-out pairs' figures of `policy`: margin (overall and per source), implicit-reward
    accuracy and DPO loss against the reference log-probabilities in `held_out.extras`."""
    logp, ref = pair_logprobs(policy, held_out, batch_size, autocast), held_out.extras
    implicit = (logp[:, 0] - ref[:, 0]) - (logp[:, 1] - ref[:, 1])
    margin = logp[:, 0] - logp[:, 1]
    figures = {
        "margin": margin.mean().item(),
        "reward_acc": (implicit > 0).float().mean().item(),
        "dpo_loss": dpo_loss(logp[:, 0], logp[:, 1], ref[:, 0], ref[:, 1], beta).item(),
        "chosen_logp": logp[:, 0].mean().item(),  # both may fall while the margin rises
    }
    for source in sorted({p["source"] for p in held_out.pairs}):
        rows = torch.tensor([p["source"] == source for p in held_out.pairs])
        figures[f"margin_{source}"] = margin[rows].mean().item()
    return figures


def dpo(cfg: DpoConfig, run: Run) -> dict[str, Any]:
    if run.pairs is None:
        raise ValueError("dpo trains on preference pairs: give --pairs (a `refinery synth preferences` DIR)")
    s = prepare(cfg, run)
    cfg, T = s.cfg, s.cfg.model.context_length

    # --- pairs, each with the reference's log-probabilities, computed once
    train = PairBatches(read_pairs(run.pairs / "train.jsonl"), s.chat, T, seed=cfg.seed)
    held_out = PairBatches(read_pairs(run.pairs / "test.jsonl", cfg.eval_pairs), s.chat, T, shuffle=False)
    for batches in (train, held_out):
        batches.extras = pair_logprobs(s.ref, batches, cfg.micro_batch, s.rt.autocast)

    stats = Averager()
    return train_loop(
        cfg,
        s.rt,
        DpoObjective(s.policy, cfg.beta, cfg.nll_weight, stats),
        s.policy.optimizer(cfg.optim, fused=True),
        train,
        validation(s, lambda: pair_figures(s.policy, held_out, cfg.beta, cfg.micro_batch, s.rt.autocast)),
        run.out,
        s.tokenizer_path,
        tokens_per_step=cfg.global_batch * 2 * T,
        resume=run.resume,
        quiet=run.quiet,
        trainable_only=bool(cfg.lora_rank),
        meta_extra={"method": "dpo", "train_pairs": len(train), "dropped_pairs": train.dropped},
        weights=s.policy,
        step_metrics=stats.pop,
    )

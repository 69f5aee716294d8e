"""KTO: `refinery train align --method kto --init SFT --data SFT_DATA --pairs PREFS --out OUT`.

Kahneman-Tversky Optimization (Ethayarajh et al. 2024) learns from unpaired examples, each a
response marked desirable or undesirable, with the loss of their eq. 8 (`training.losses.kto_loss`):
a desirable response's implicit reward r = log π/π_ref is pushed above the reference point z_ref,
an undesirable one's below it, each through a saturating sigmoid. PREFS is the directory DPO reads
(`refinery synth preferences`); its pairs come apart into examples, every chosen response once as
desirable and every rejected one once as undesirable (TRL's `unpair_preference_dataset` does the
same), so KTO and DPO train on the same responses and the comparison is of the losses alone. On
`on_policy` pairs these are the SFT model's own samples as the checker graded them.

z_ref estimates KL(π ‖ π_ref) from mismatched pairs (x, y′), y′ a response written for another
prompt (`training.losses.kto_reference_point`): the paper (§4.2) and TRL take y′ from another
example of the same micro-batch; here each example is given its y′ once, before training (the
next example of a seeded order whose prompt differs), so that the reference's log-probabilities
of both (x, y) and (x, y′) are computed once, as DPO's are (training/dpo.py). The estimate is a
mean over a micro-batch, so a micro-batch of a few examples gives a noisy z_ref.

Validation adds the figures DPO reports on the held-out pairs (`val_margin`, `val_reward_acc`,
`val_dpo_loss`, `val_chosen_logp`, training/dpo.py `pair_figures`), so the two methods compare
on one scale, and `val_kto_loss` and `val_z_ref` over the held-out examples. The training
records add the mean implicit reward of the desirable and of the undesirable examples and z_ref.
"""

import random
from typing import Any

import torch
import torch.nn as nn

from training.align import Run, Setup, prepare, validation
from training.config import KtoConfig
from training.dpo import pair_figures, pair_logprobs
from training.loop import train_loop
from training.losses import kto_loss, kto_reference_point
from training.model import GPT
from training.pairs import PairBatches, read_pairs, sequence_logprobs
from training.rollout import Averager


def unpaired(pairs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each pair's chosen response as a desirable example and its rejected one as an undesirable
    example, once each (the rule-built sources repeat the gold solution), in file order."""
    seen, examples = set(), []
    for pair in pairs:
        for response, desirable in ((pair["chosen"], True), (pair["rejected"], False)):
            key = (pair["prompt"], response, desirable)
            if key not in seen:
                seen.add(key)
                examples.append({**_fields(pair), "response": response, "desirable": desirable})
    return examples


def _fields(pair: dict[str, Any]) -> dict[str, Any]:
    return {"prompt": pair["prompt"], "task": pair.get("task"), "source": pair.get("source")}


def with_mismatched(examples: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """The examples as PairBatches records: `chosen` the example's response, `rejected` y′, the
    response of the next example of a seeded order whose prompt differs (the KL estimate's pair;
    PairBatches renders both after one prompt)."""
    if len({e["prompt"] for e in examples}) < 2:
        raise ValueError("KTO's reference point needs examples of at least two prompts")
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    position = {i: k for k, i in enumerate(order)}
    records = []
    for i, example in enumerate(examples):
        k = position[i] + 1
        while examples[order[k % len(order)]]["prompt"] == example["prompt"]:
            k += 1
        other = examples[order[k % len(order)]]
        records.append({**example, "chosen": example["response"], "rejected": other["response"]})
    return records


class KtoObjective(nn.Module):
    """The policy's KTO loss on a micro-batch of examples, z_ref from its mismatched pairs."""

    def __init__(self, policy: GPT, cfg: KtoConfig, stats: Averager):
        super().__init__()
        self.policy, self.cfg, self.stats = policy, cfg, stats

    def forward(self, ids, mask, kl_ids, kl_mask, ref_logp, ref_kl_logp, desirable) -> torch.Tensor:
        logp = sequence_logprobs(self.policy, ids, mask)
        with torch.no_grad():  # z_ref carries no gradient (losses.kto_reference_point)
            z_ref = kto_reference_point(sequence_logprobs(self.policy, kl_ids, kl_mask), ref_kl_logp)
            record(self.stats, logp - ref_logp, desirable.bool(), z_ref)
        cfg = self.cfg
        return kto_loss(
            logp, ref_logp, desirable, z_ref, cfg.beta, cfg.desirable_weight, cfg.undesirable_weight
        )


def record(stats: Averager, rewards: torch.Tensor, desirable: torch.Tensor, z_ref: torch.Tensor) -> None:
    """Mean implicit reward log π/π_ref of each kind present in the batch, and z_ref."""
    stats.add(z_ref=z_ref)
    if desirable.any():
        stats.add(reward_desirable=rewards[desirable].mean())
    if (~desirable).any():
        stats.add(reward_undesirable=rewards[~desirable].mean())


def scored_examples(records: list[dict[str, Any]], s: Setup, batch_size: int, **batching) -> PairBatches:
    """PairBatches of KTO records with extras (reference log π of y, of y′, desirable), computed once."""
    batches = PairBatches(records, s.chat, s.cfg.model.context_length, **batching)
    desirable = torch.tensor([float(r["desirable"]) for r in batches.pairs]).unsqueeze(1)
    batches.extras = torch.cat([pair_logprobs(s.ref, batches, batch_size, s.rt.autocast), desirable], 1)
    return batches


def kto_figures(policy: GPT, held_out: PairBatches, cfg: KtoConfig, autocast: Any = None) -> dict[str, float]:
    """KTO loss of the held-out examples, z_ref estimated over all of them at once."""
    logp = pair_logprobs(policy, held_out, cfg.micro_batch, autocast)
    ref_logp, ref_kl_logp, desirable = held_out.extras.unbind(-1)
    z_ref = kto_reference_point(logp[:, 1], ref_kl_logp)
    loss = kto_loss(
        logp[:, 0], ref_logp, desirable, z_ref, cfg.beta, cfg.desirable_weight, cfg.undesirable_weight
    )
    return {"kto_loss": loss.item(), "z_ref": z_ref.item()}


def kto(cfg: KtoConfig, run: Run) -> dict[str, Any]:
    if run.pairs is None:
        raise ValueError("kto trains on the responses of pairs: give --pairs (`refinery synth preferences`)")
    s = prepare(cfg, run)
    cfg, T = s.cfg, s.cfg.model.context_length

    # --- unpaired examples with their mismatched y′, and held-out pairs for DPO's figures
    examples = with_mismatched(unpaired(read_pairs(run.pairs / "train.jsonl")), cfg.seed)
    train = scored_examples(examples, s, cfg.micro_batch, seed=cfg.seed)
    held_pairs = read_pairs(run.pairs / "test.jsonl", cfg.eval_pairs)
    held_examples = with_mismatched(unpaired(held_pairs), cfg.seed)
    held_out = scored_examples(held_examples, s, cfg.micro_batch, shuffle=False)
    pairs = PairBatches(held_pairs, s.chat, T, shuffle=False)
    pairs.extras = pair_logprobs(s.ref, pairs, cfg.micro_batch, s.rt.autocast)

    def figures() -> dict[str, float]:
        return pair_figures(s.policy, pairs, cfg.beta, cfg.micro_batch, s.rt.autocast) | kto_figures(
            s.policy, held_out, cfg, s.rt.autocast
        )

    stats = Averager()
    desirable = sum(r["desirable"] for r in train.pairs)
    return train_loop(
        cfg,
        s.rt,
        KtoObjective(s.policy, cfg, stats),
        s.policy.optimizer(cfg.optim, fused=True),
        train,
        validation(s, figures),
        run.out,
        s.tokenizer_path,
        tokens_per_step=cfg.global_batch * 2 * T,  # (x, y) and (x, y′) both pass through the policy
        resume=run.resume,
        quiet=run.quiet,
        trainable_only=bool(cfg.lora_rank),
        meta_extra={
            "method": "kto",
            "desirable": desirable,
            "undesirable": len(train) - desirable,
            "dropped_examples": train.dropped,
        },
        weights=s.policy,
        step_metrics=stats.pop,
    )

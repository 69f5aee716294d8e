"""GRPO: `refinery train align --method grpo --init SFT --data SFT_DATA --out OUT [--reward RM]`.

Group Relative Policy Optimization (Shao et al. 2024, "DeepSeekMath", §4.1). Each rollout
samples `group_size` (G) responses to each of `prompts_per_rollout` train prompts from the
current policy and rewards each response: `reward.checker` × [the checker accepts it] +
`reward.format` × [its final line has the answer's form, right or wrong] +
`reward.reward_model` × its normalized reward-model score. R1-Zero (DeepSeek-R1, §2.2): `--init`
the *base* checkpoint with `reward: {checker: 1, format: W}`, so the policy first learns the
chat turn and the `#### ANSWER` line it has never seen, then the answers. Every token of a response gets its
group-relative advantage (r − mean of the group) / std of the group (outcome supervision; no
critic: the other samples of the prompt are the baseline). The loss is their eq. 3: per token,
the clipped surrogate plus β times the k3 estimate of KL(π ‖ π_ref), averaged over each
response's tokens, then over responses (training/losses.py).

With `epochs` 1 and one optimizer step per rollout (the shipped config), every sample is used
once, by the policy that drew it: π_old = π, the ratio is 1 and the clip never acts, so the
objective takes π_old as the current log-probabilities detached instead of a forward pass more
per rollout (REINFORCE with a group baseline, as nanochat's chat_rl). More epochs or several
steps per rollout compute π_old once at collection and the clip bounds each step.

A group whose samples all get the same reward (all solved, all failed) has advantage 0 and
teaches nothing: `zero_adv` in the records says how much of a rollout was wasted that way, and
is why GRPO gains least on tasks the SFT model already solves or never does.

Records per log: `reward`, `correct` (checker accuracy of the rollouts), `format` (share of
well-formed responses), `rm` (mean RM score
when one is loaded), `kl` (k1 per response, Σ log π/π_ref over its tokens), `kl_k3` (per token,
as in the loss), `length`, `zero_adv`, `clip_frac`.
"""

from typing import Any

import torch
import torch.nn as nn

from training.align import Run, prepare, roll_out, validation
from training.config import GrpoConfig
from training.loop import train_loop
from training.losses import clipped_surrogate, group_advantages, kl_k3, masked_mean, token_logprobs
from training.model import GPT
from training.rollout import Averager, PromptStream, RolloutBatches, logprobs


class GrpoObjective(nn.Module):
    def __init__(self, policy: GPT, cfg: GrpoConfig, stats: Averager):
        super().__init__()
        self.policy, self.cfg, self.stats = policy, cfg, stats
        self.on_policy = cfg.steps_per_rollout == 1  # π_old is the policy of this very step

    def forward(self, ids, mask, old_logp, ref_logp, advantages) -> torch.Tensor:
        # Masked first: outside the response log-probs are 0, so no exp() there can overflow.
        logp = token_logprobs(self.policy(ids[:, :-1]), ids[:, 1:], self.cfg.sampling.temperature) * mask
        old_logp = logp.detach() if self.on_policy else old_logp
        surrogate = clipped_surrogate(logp, old_logp, advantages[:, None], self.cfg.clip_eps)
        kl = kl_k3(logp, ref_logp)
        with torch.no_grad():
            ratio = torch.exp(logp - old_logp)
            self.stats.add(
                kl=((logp - ref_logp) * mask).sum(-1).mean(),
                kl_k3=masked_mean(kl, mask),
                clip_frac=masked_mean(((ratio - 1).abs() > self.cfg.clip_eps).float(), mask),
            )
        return masked_mean(surrogate + self.cfg.kl_beta * kl, mask, per_sequence=True)


def grpo(cfg: GrpoConfig, run: Run) -> dict[str, Any]:
    s = prepare(cfg, run)
    cfg, P, G = s.cfg, s.cfg.prompts_per_rollout, s.cfg.group_size
    prompts, stats = PromptStream(s.train, cfg.seed), Averager()
    objective = GrpoObjective(s.policy, cfg, stats)
    device = s.rt.device

    def collect(index: int) -> tuple[torch.Tensor, ...]:
        """Rollout `index`: P prompts × G samples, rewarded, with group advantages."""
        r = roll_out(s, prompts, index)
        advantages = group_advantages(r.reward.view(P, G), scale=cfg.scale_std)
        tau = cfg.sampling.temperature  # log-probs of the distribution the rollout was drawn from
        ref_logp = logprobs(s.ref, r.ids, r.mask, s.rt.autocast, tau)
        old_logp = (
            torch.zeros_like(ref_logp)
            if objective.on_policy
            else logprobs(s.policy, r.ids, r.mask, s.rt.autocast, tau)
        )
        stats.add(
            reward=r.reward.mean(),
            zero_adv=(advantages.abs().amax(dim=1) < 1e-6).float().mean(),
            **r.figures,
        )
        return r.ids, r.mask, old_logp, ref_logp, advantages.flatten().to(device)

    return train_loop(
        cfg,
        s.rt,
        objective,
        s.policy.optimizer(cfg.optim, fused=True),
        RolloutBatches(collect, cfg.rollout_size, cfg.epochs, cfg.seed),
        validation(s),
        run.out,
        s.tokenizer_path,
        tokens_per_step=cfg.global_batch * cfg.model.context_length,
        resume=run.resume,
        quiet=run.quiet,
        trainable_only=bool(cfg.lora_rank),
        meta_extra={"method": "grpo", "train_prompts": len(s.train)},
        weights=s.policy,
        step_metrics=stats.pop,
    )

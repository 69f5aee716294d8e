"""PPO: `refinery train align --method ppo --init SFT --data SFT_DATA --reward RM --out OUT`.

InstructGPT's RL step (Ouyang et al. 2022, §3.5, after Stiennon et al. 2020): the policy samples
responses to train prompts, the reward model scores each complete response once, at its end, and
every token pays a KL penalty −β·(log π − log π_ref) to the frozen SFT model (their eq. 2;
`training.losses.kl_penalized_rewards`). A critic estimates the value of each prefix;
advantages and returns come from GAE over the response's tokens (Schulman et al. 2016), are
whitened over the rollout, and the policy and critic minimize the clipped losses of Schulman et
al. 2017 over `epochs` passes (training/losses.py). The default reward is the reward model only
(`reward.checker: 0`): the checker's verdict is still computed and logged (`correct`) so the
run shows whether optimizing the reward model's score also raises true accuracy, or hacks it.

Critic: a separate network of the reward model's shape (GPT backbone + scalar head, every
position read: `RewardModel.values`), initialized from the reward model as InstructGPT does. A
separate critic costs a second forward and backward per micro-batch, but its loss cannot pull
the policy's features (a value head on the policy trunk would share them, trading the two losses
through `vf_coef`). The reward model is normalized on load (training/reward.py), so scores, the
critic's values and `value_clip` are all in units of the reward model's held-out std.

The critic's learning rate is `critic_lr_scale` × the policy's (OpenRLHF runs its critic ~10×
faster), and for the first `critic_warmup` rollouts it trains alone, the policy held, so the
first policy updates see values fitted to the policy's own samples rather than the reward
model's head read at every prefix. With `spread_likelihood` and a reward model that has a
likelihood term (training/reward.py), each response token is paid its own share of that term,
β·log p(token)/length, and only the head waits for the end: the total per response is the same
score, but GAE credits the token that made a step wrong instead of spreading the verdict evenly.

Checkpoints hold the policy in model.pt (so they load as a plain GPT) and the critic beside it in
critic.pt; one AdamW trains both, so optim.pt holds the critic's moments too. A PPO run resumes
like the others: from its latest checkpoint, with the critic it had there, bitwise on CPU as if
never stopped (tests/test_align.py); a first run asked to resume starts fresh.

Records per log: `reward` (score + KL penalty, per response), `rm` (score alone), `correct`,
`kl` (k1 per response), `length`, `clip_frac`, `value_loss`, `policy_loss`.
"""

from typing import Any

import torch
import torch.nn as nn

from training.align import Run, prepare, roll_out, validation
from training.config import PpoConfig
from training.loop import train_loop
from training.losses import (
    clipped_surrogate,
    clipped_value_loss,
    gae,
    kl_penalized_rewards,
    masked_mean,
    token_logprobs,
)
from training.model import GPT
from training.reward import RewardModel, adamw, load_reward_model, param_groups
from training.rollout import Averager, PromptStream, RolloutBatches, in_chunks, logprobs


class PpoObjective(nn.Module):
    """Clipped policy loss + vf_coef × clipped value loss on a batch of rollout rows."""

    def __init__(self, policy: GPT, critic: RewardModel, cfg: PpoConfig, stats: Averager):
        super().__init__()
        self.policy, self.critic, self.cfg, self.stats = policy, critic, cfg, stats
        self.policy_trains = True  # False during the critic's warm-up: the loss is the value loss alone

    def forward(self, ids, mask, old_logp, advantages, returns, old_values) -> torch.Tensor:
        inputs, targets = ids[:, :-1], ids[:, 1:]
        values = self.critic.values(inputs)
        value_loss = masked_mean(clipped_value_loss(values, old_values, returns, self.cfg.value_clip), mask)
        if not self.policy_trains:
            self.stats.add(value_loss=value_loss.detach())
            return self.cfg.vf_coef * value_loss
        logp = token_logprobs(self.policy(inputs), targets, self.cfg.sampling.temperature) * mask
        policy_loss = masked_mean(clipped_surrogate(logp, old_logp, advantages, self.cfg.clip_eps), mask)
        with torch.no_grad():
            ratio = torch.exp(logp - old_logp)
            self.stats.add(
                policy_loss=policy_loss,
                value_loss=value_loss,
                clip_frac=masked_mean(((ratio - 1).abs() > self.cfg.clip_eps).float(), mask),
            )
        return policy_loss + self.cfg.vf_coef * value_loss


def whiten(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean 0, std 1 over the masked entries; 0 elsewhere."""
    mean = masked_mean(values, mask)
    var = masked_mean((values - mean) ** 2, mask)
    return (values - mean) * torch.rsqrt(var + 1e-8) * mask


def ppo(cfg: PpoConfig, run: Run) -> dict[str, Any]:
    if run.reward is None:
        raise ValueError("ppo needs a reward model: give --reward (a `refinery train reward` checkpoint)")
    s = prepare(cfg, run)
    cfg, device = s.cfg, s.rt.device
    if cfg.spread_likelihood and not s.scorer.likelihood_weight:
        raise ValueError(f"spread_likelihood: the reward model {run.reward} has no likelihood term")
    # Initialized from the reward model; a resumed run loads its own critic over it (train_loop).
    critic = load_reward_model(run.reward, device).train()
    groups = param_groups(s.policy, cfg.optim) + param_groups(critic, cfg.optim, cfg.critic_lr_scale)
    prompts, stats = PromptStream(s.train, cfg.seed), Averager()
    objective = PpoObjective(s.policy, critic, cfg, stats)

    def collect(index: int) -> tuple[torch.Tensor, ...]:
        """Rollout `index`: samples, per-token rewards, values, GAE advantages and returns."""
        r = roll_out(s, prompts, index)
        objective.policy_trains = index >= cfg.critic_warmup
        ids, mask = r.ids, r.mask
        tau = cfg.sampling.temperature  # log-probs of the distribution the rollout was drawn from
        old_logp = logprobs(s.policy, ids, mask, s.rt.autocast, tau)
        ref_logp = logprobs(s.ref, ids, mask, s.rt.autocast, tau)
        with torch.no_grad(), s.rt.autocast:
            values = critic.values(ids[:, :-1]) * mask
        end = r.reward.to(device)
        spread = torch.zeros_like(old_logp)
        if cfg.spread_likelihood:
            spread = cfg.reward.reward_model * in_chunks(s.scorer.likelihood_terms, ids, mask, s.rt.autocast)
            end = end - spread.sum(1)
        rewards = kl_penalized_rewards(end, old_logp, ref_logp, mask, cfg.kl_beta) + spread
        advantages, returns = gae(rewards, values, mask, cfg.gamma, cfg.lam)
        if cfg.whiten:
            advantages = whiten(advantages, mask)
        stats.add(reward=rewards.sum(1).mean(), kl=((old_logp - ref_logp) * mask).sum(1).mean(), **r.figures)
        return ids, mask, old_logp, advantages, returns, values

    return train_loop(
        cfg,
        s.rt,
        objective,
        adamw(groups, cfg.optim),
        RolloutBatches(collect, cfg.rollout_size, cfg.epochs, cfg.seed),
        validation(s),
        run.out,
        s.tokenizer_path,
        tokens_per_step=cfg.global_batch * cfg.model.context_length,
        resume=run.resume,
        quiet=run.quiet,
        trainable_only=bool(cfg.lora_rank),
        meta_extra={"method": "ppo", "train_prompts": len(s.train)},
        weights=s.policy,
        step_metrics=stats.pop,
        companions={"critic": critic},
    )

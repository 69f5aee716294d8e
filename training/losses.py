"""Losses as pure functions of tensors; each cites where its formula comes from."""

import torch
import torch.nn.functional as F

IGNORE_INDEX = -1  # target id whose position carries no loss (prompt tokens in SFT, padding)


def next_token_nll(logits: torch.Tensor, targets: torch.Tensor, *, reduction: str = "mean") -> torch.Tensor:
    """Negative log-likelihood in nats of `targets` (B, T) under `logits` (B, T, V).

    The softmax runs in float32 whatever the autocast dtype: bf16 logits lose ~3 significant
    digits, enough to bias a loss near 3 nats by ~0.01. `reduction="none"` gives (B, T), which
    bits-per-byte weighs by each target's byte length; `IGNORE_INDEX` targets count 0 there and
    are left out of the mean.
    """
    nll = F.cross_entropy(
        logits.float().flatten(0, -2), targets.flatten(), ignore_index=IGNORE_INDEX, reduction=reduction
    )
    return nll.view(targets.shape) if reduction == "none" else nll


# --- post-training: preference and policy-gradient losses ----------------------------------------
# Token-level tensors are (B, T) over target positions: `mask` is 1 where the target is a response
# token (the only positions with a policy action), 0 on prompt and padding. Per-token functions
# return (B, T) so the caller picks the reduction (`masked_mean`), which the methods differ on.


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log π(target_t | prefix) (B, T) from logits (B, T, V), the softmax in float32 (as next_token_nll).

    `temperature` τ gives the log-probability under softmax(logits / τ), the distribution a rollout
    sampled at τ was drawn from: a policy gradient on τ-samples is then the exact gradient of the
    τ-policy's return, and ratios and KL compare the distributions that produced the data (verl
    divides the actor's logits by the rollout temperature the same way)."""
    logits = logits.float()
    if temperature != 1.0:
        logits = logits / temperature
    logp = F.log_softmax(logits, dim=-1)
    return logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)


def masked_mean(values: torch.Tensor, mask: torch.Tensor, *, per_sequence: bool = False) -> torch.Tensor:
    """Mean of `values` over masked tokens: over all of the batch's tokens (PPO implementations), or
    per sequence first and then over sequences (`per_sequence`, DeepSeekMath eq. 3's 1/|o_i|)."""
    mask = mask.to(values.dtype)
    if per_sequence:
        return ((values * mask).sum(-1) / mask.sum(-1).clamp(min=1)).mean()
    return (values * mask).sum() / mask.sum().clamp(min=1)


def bradley_terry_loss(
    chosen: torch.Tensor, rejected: torch.Tensor, margin: torch.Tensor | float = 0.0
) -> torch.Tensor:
    """Reward-model loss −log σ(r(x, y_c) − r(x, y_r) − m), mean over pairs.

    Ouyang et al. 2022 ("Training language models to follow instructions with human feedback"),
    eq. 1, for one pair per prompt; the margin m is Llama 2's (Touvron et al. 2023, eq. 2), 0 = off.
    `logsigmoid` keeps it finite for any score gap.
    """
    return -F.logsigmoid(chosen - rejected - margin).mean()


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
    nll_weight: float = 0.0,
    chosen_tokens: torch.Tensor | None = None,
) -> torch.Tensor:
    """Direct Preference Optimization, −log σ(β[log π/π_ref(y_c) − log π/π_ref(y_r)]), mean over pairs.

    Rafailov et al. 2023, eq. 7. Inputs are sequence log-probabilities (summed over response
    tokens), (B,). β·log π/π_ref is the implicit reward; β sets how far from π_ref it may move.

    With `nll_weight` α > 0 it adds α times the chosen responses' negative log-likelihood per
    token, −log π(y_c) / |y_c| (`chosen_tokens` gives |y_c|): the DPO+NLL loss of Pang et al. 2024
    ("Iterative Reasoning Preference Optimization", eq. 3, α = 1), which keeps DPO from lowering
    the probability of correct reasoning along with that of the rejected one.
    """
    logits = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)
    loss = -F.logsigmoid(beta * logits).mean()
    if nll_weight:
        if chosen_tokens is None:
            raise ValueError("dpo_loss with nll_weight needs chosen_tokens")
        loss = loss - nll_weight * (policy_chosen / chosen_tokens).mean()
    return loss


def kto_reference_point(kl_policy: torch.Tensor, kl_ref: torch.Tensor) -> torch.Tensor:
    """KTO's z_ref: the batch's estimate of KL(π ‖ π_ref), max(0, mean(log π(y′|x) − log π_ref(y′|x))).

    Ethayarajh et al. 2024 ("KTO: Model Alignment as Prospect Theoretic Optimization"), §4.2: the
    sequence log-probabilities (B,) are of mismatched pairs (x, y′), a response to another prompt,
    so the mean estimates the KL term without sampling; negative estimates clamp to 0 and no
    gradient flows through it (TRL's KTOTrainer, `kl.mean().clamp(min=0).detach()`), so the
    policy cannot lower its loss by moving the reference point.
    """
    return (kl_policy - kl_ref).mean().clamp(min=0).detach()


def kto_loss(
    policy_logp: torch.Tensor,
    ref_logp: torch.Tensor,
    desirable: torch.Tensor,
    z_ref: torch.Tensor,
    beta: float,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
) -> torch.Tensor:
    """Kahneman-Tversky Optimization on unpaired examples, mean over the batch of λ_y − v(x, y).

    Ethayarajh et al. 2024, eq. 8: with r = log π(y|x) − log π_ref(y|x) (sequence log-probabilities,
    (B,)) and z_ref from `kto_reference_point`,
        v = λ_D·σ(β(r − z_ref))  if y is desirable,   v = λ_U·σ(β(z_ref − r))  if undesirable,
    so λ_y − v is λ_D·(1 − σ(β(r − z_ref))) or λ_U·(1 − σ(β(z_ref − r))) (TRL's form). `desirable`
    (B,) is a boolean mask. The paper sets λ_D·n_D / (λ_U·n_U) in [1, 4/3] (§4.2); at β·r far from
    z_ref the sigmoid saturates, which bounds how far one example can pull the policy.
    """
    margin = beta * (policy_logp - ref_logp - z_ref)
    desirable = desirable.bool()
    return torch.where(
        desirable,
        desirable_weight * (1 - torch.sigmoid(margin)),
        undesirable_weight * (1 - torch.sigmoid(-margin)),
    ).mean()


def clipped_surrogate(
    logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, eps: float
) -> torch.Tensor:
    """Per-token PPO policy loss −min(ρ·A, clip(ρ, 1−ε, 1+ε)·A), ρ = π/π_old (B, T).

    Schulman et al. 2017 ("Proximal Policy Optimization Algorithms"), eq. 7, negated to minimize.
    The min makes the objective a pessimistic bound: moving ρ beyond 1 ± ε in the direction the
    advantage favours earns nothing, so one batch cannot push the policy far.
    """
    ratio = torch.exp(logp - old_logp)
    return -torch.min(ratio * advantages, ratio.clamp(1 - eps, 1 + eps) * advantages)


def clipped_value_loss(
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, eps: float
) -> torch.Tensor:
    """Per-token ½·max((V − R)², (V_old + clip(V − V_old, −ε, ε) − R)²) (B, T).

    The squared error is Schulman et al. 2017 eq. 9's L^VF; clipping the value's move to ±ε of
    the rollout's estimate is from their reference code (OpenAI baselines ppo2), so the critic is
    as conservative as the policy. ε is in reward units.
    """
    clipped = old_values + (values - old_values).clamp(-eps, eps)
    return 0.5 * torch.max((values - returns) ** 2, (clipped - returns) ** 2)


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimates and returns (A + V), each (B, T), 0 outside `mask`.

    Schulman et al. 2016 ("High-Dimensional Continuous Control Using Generalized Advantage
    Estimation"), eq. 16: A_t = Σ_l (γλ)^l δ_{t+l}, δ_t = r_t + γ·V_{t+1} − V_t, computed backwards.
    A response is a contiguous run of masked positions; past its last one V = 0 (the episode ends).
    """
    mask = mask.to(values.dtype)
    advantages = torch.zeros_like(values)
    running = torch.zeros_like(values[:, 0])
    next_value = torch.zeros_like(values[:, 0])
    for t in reversed(range(values.shape[1])):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = (delta + gamma * lam * running) * mask[:, t]
        advantages[:, t] = running
        next_value = values[:, t] * mask[:, t]
    return advantages, (advantages + values) * mask


def group_advantages(rewards: torch.Tensor, *, scale: bool = True, eps: float = 1e-6) -> torch.Tensor:
    """GRPO's outcome advantages (P, G): each reward minus its group's mean, over the group's std.

    Shao et al. 2024 ("DeepSeekMath"), §4.1.2: Â_i = (r_i − mean(r)) / std(r) over the G samples of
    one prompt; the population std here (TRL uses the sample std: ×√((G−1)/G)). A group whose
    samples all score the same gets advantage 0: nothing to learn from it. `scale=False` drops the
    division (Liu et al. 2025, "Understanding R1-Zero-Like Training"), which otherwise weighs
    nearly-solved and nearly-failed prompts up.
    """
    centered = rewards - rewards.mean(dim=-1, keepdim=True)
    if not scale:
        return centered
    return centered / (rewards.std(dim=-1, unbiased=False, keepdim=True) + eps)


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token estimate of KL(π ‖ π_ref) from tokens sampled from π: e^{Δ} − Δ − 1, Δ = log π_ref − log π.

    Schulman 2020 ("Approximating KL Divergence") k3, used by DeepSeekMath eq. 4: unbiased like
    −Δ (k1) but never negative, and of lower variance when π is near π_ref.
    """
    delta = ref_logp - logp
    return torch.exp(delta) - delta - 1


def kl_penalized_rewards(
    score: torch.Tensor, logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor, beta: float
) -> torch.Tensor:
    """Per-token PPO rewards (B, T): −β·(log π − log π_ref) at every response token, plus the
    reward model's score (B,) at the last one.

    Ouyang et al. 2022 eq. 2 (after Ziegler et al. 2019 and Stiennon et al. 2020) puts the KL
    penalty in the reward; per token its sum is the k1 estimate of β·KL for the whole response.
    """
    mask = mask.to(logp.dtype)
    rewards = -beta * (logp - ref_logp) * mask
    last = (mask * torch.arange(mask.shape[1], device=mask.device)).argmax(dim=1)
    return rewards.index_put((torch.arange(len(score), device=score.device), last), score, accumulate=True)

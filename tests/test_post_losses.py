"""The post-training losses of training/losses.py against hand-computed values."""

import math

import torch

from training.losses import (
    bradley_terry_loss,
    clipped_surrogate,
    clipped_value_loss,
    dpo_loss,
    gae,
    group_advantages,
    kl_k3,
    kl_penalized_rewards,
    kto_loss,
    kto_reference_point,
    masked_mean,
    token_logprobs,
)


def close(a: torch.Tensor, b) -> bool:
    return torch.allclose(a, torch.as_tensor(b, dtype=a.dtype), atol=1e-4)


def test_bradley_terry_is_minus_log_sigmoid_of_the_score_gap():
    chosen, rejected = torch.tensor([2.0, 0.0]), torch.tensor([1.0, 1.0])
    # -log σ(1) = 0.31326, -log σ(-1) = 1.31326
    assert close(bradley_terry_loss(chosen, rejected), (0.31326 + 1.31326) / 2)
    # margin 0.5: -log σ(0.5) = 0.47408, -log σ(-1.5) = 1.70141
    assert close(bradley_terry_loss(chosen, rejected, 0.5), (0.47408 + 1.70141) / 2)


def test_dpo_loss_compares_log_ratios_to_the_reference():
    policy_chosen, policy_rejected = torch.tensor([-1.0, -2.0]), torch.tensor([-3.0, -2.0])
    ref_chosen, ref_rejected = torch.tensor([-2.0, -2.0]), torch.tensor([-2.0, -2.0])
    # pair 1: β·((−1+2) − (−3+2)) = 0.5·2 = 1 → −log σ(1) = 0.31326; pair 2: 0 → ln 2
    expected = (0.31326 + math.log(2)) / 2
    assert close(dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta=0.5), expected)


def test_dpo_nll_adds_the_chosen_responses_loss_per_token():
    policy_chosen, policy_rejected = torch.tensor([-4.0, -9.0]), torch.tensor([-6.0, -9.0])
    tokens = torch.tensor([2.0, 3.0])  # per-token log-likelihood −2 and −3: mean NLL 2.5
    pairs = (policy_chosen, policy_rejected, policy_chosen, policy_rejected)  # the policy is its reference
    plain = dpo_loss(*pairs, beta=0.1)
    with_nll = dpo_loss(*pairs, 0.1, nll_weight=0.4, chosen_tokens=tokens)
    assert close(plain, math.log(2)) and close(with_nll, math.log(2) + 0.4 * 2.5)


def test_dpo_loss_is_ln2_when_the_policy_is_the_reference():
    logp = torch.tensor([-5.0, -1.0])
    assert close(dpo_loss(logp, logp - 3, logp, logp - 3, beta=0.1), math.log(2))


def test_kto_reference_point_is_the_clamped_mean_log_ratio_of_mismatched_pairs():
    kl_policy = torch.tensor([-4.0, -5.0], requires_grad=True)
    assert close(kto_reference_point(kl_policy, torch.tensor([-5.0, -5.2])), 0.6)  # mean(1, 0.2)
    z = kto_reference_point(kl_policy, torch.tensor([-3.0, -4.0]))  # mean(−1, −1) < 0
    assert close(z, 0.0) and not z.requires_grad  # clamped, and no gradient moves the reference point


def test_kto_loss_by_hand():
    policy, ref = torch.tensor([-1.0, -3.0, -2.0]), torch.tensor([-2.0, -2.0, -2.0])  # r = 1, −1, 0
    desirable = torch.tensor([True, False, False])
    z_ref = torch.tensor(0.6)
    # β = 0.5, λ_D = 1, λ_U = 2:
    # desirable r = 1:     1·(1 − σ(0.5·(1 − 0.6)))  = 1 − σ(0.2) = 0.450166
    # undesirable r = −1:  2·(1 − σ(0.5·(0.6 + 1)))  = 2·(1 − σ(0.8)) = 0.620052
    # undesirable r = 0:   2·(1 − σ(0.5·0.6))        = 2·(1 − σ(0.3)) = 0.851114
    expected = (0.450166 + 0.620052 + 0.851114) / 3
    loss = kto_loss(policy, ref, desirable, z_ref, beta=0.5, desirable_weight=1.0, undesirable_weight=2.0)
    assert close(loss, expected)


def test_kto_loss_raises_desirable_and_lowers_undesirable_likelihood():
    logp = torch.tensor([-2.0, -2.0], requires_grad=True)
    loss = kto_loss(logp, logp.detach(), torch.tensor([True, False]), torch.tensor(0.0), beta=0.1)
    assert close(loss, 0.5)  # the policy is its reference: 1 − σ(0) for each
    loss.backward()
    assert logp.grad[0] < 0 < logp.grad[1]  # descent raises log π of the desirable, lowers the other


def test_clipped_surrogate_takes_the_pessimistic_term():
    ratio = torch.tensor([[1.5, 0.5, 1.1, 0.5]])
    advantages = torch.tensor([[1.0, 1.0, -1.0, -1.0]])
    loss = clipped_surrogate(ratio.log(), torch.zeros_like(ratio), advantages, eps=0.2)
    # min(1.5, 1.2)=1.2 | min(0.5, 0.8)=0.5 | min(−1.1, −1.1)=−1.1 | min(−0.5, −0.8)=−0.8; negated
    assert close(loss, [[-1.2, -0.5, 1.1, 0.8]])


def test_clipped_surrogate_gradient_vanishes_beyond_the_clip():
    logp = torch.tensor([math.log(1.5), math.log(1.1)], requires_grad=True)
    clipped_surrogate(logp, torch.zeros(2), torch.tensor([1.0, 1.0]), eps=0.2).sum().backward()
    assert logp.grad[0] == 0 and close(logp.grad[1], -1.1)  # d(−ρA)/d log π = −ρA


def test_clipped_value_loss_takes_the_larger_error():
    values, old_values = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 0.0])
    returns = torch.tensor([2.0, 0.5])
    # token 1: (1−2)² = 1, clipped to 0.2: (0.2−2)² = 3.24 → ½·3.24; token 2: ½·0.25
    assert close(clipped_value_loss(values, old_values, returns, eps=0.2), [1.62, 0.125])


def test_gae_by_hand():
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.5, 0.6, 0.7]])
    advantages, returns = gae(rewards, values, torch.ones(1, 3), gamma=1.0, lam=0.5)
    # δ = (0.1, 0.1, 0.3); A2 = 0.3, A1 = 0.1 + 0.5·0.3 = 0.25, A0 = 0.1 + 0.5·0.25 = 0.225
    assert close(advantages, [[0.225, 0.25, 0.3]]) and close(returns, [[0.725, 0.85, 1.0]])


def test_gae_ignores_prompt_and_padding_positions():
    rewards = torch.tensor([[0.0, 0.0, 0.0, 1.0, 0.0]])
    values = torch.tensor([[9.0, 0.5, 0.6, 0.7, 9.0]])  # 9: prompt and padding, never read
    mask = torch.tensor([[0.0, 1.0, 1.0, 1.0, 0.0]])
    advantages, returns = gae(rewards, values, mask, gamma=1.0, lam=0.5)
    assert close(advantages, [[0.0, 0.225, 0.25, 0.3, 0.0]]) and close(
        returns, [[0.0, 0.725, 0.85, 1.0, 0.0]]
    )


def test_gae_discounts_with_gamma():
    advantages, _ = gae(torch.tensor([[0.0, 1.0]]), torch.zeros(1, 2), torch.ones(1, 2), gamma=0.9, lam=1.0)
    assert close(advantages, [[0.9, 1.0]])  # Monte Carlo returns when λ = 1 and V = 0


def test_group_advantages_normalize_within_each_group():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    # group 1: mean 0.5, population std 0.5; group 2: every sample the same → 0
    assert close(group_advantages(rewards), [[1.0, -1.0, -1.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    assert close(group_advantages(rewards, scale=False), [[0.5, -0.5, -0.5, 0.5], [0.0] * 4])


def test_k3_by_hand_and_zero_at_the_reference():
    logp, ref = torch.tensor([math.log(0.5), -1.0]), torch.tensor([math.log(0.25), -1.0])
    # Δ = log(0.25/0.5): e^Δ − Δ − 1 = 0.5 + 0.69315 − 1
    assert close(kl_k3(logp, ref), [0.19315, 0.0])


def test_k3_averaged_over_the_policy_is_the_exact_kl():
    p, q = torch.tensor([0.7, 0.2, 0.1]), torch.tensor([0.3, 0.3, 0.4])
    expected = (p * (p / q).log()).sum()
    assert close((p * kl_k3(p.log(), q.log())).sum(), expected)


def test_kl_penalized_rewards_add_the_score_at_the_last_response_token():
    logp = torch.tensor([[0.0, -1.0, -2.0, 0.0]])
    ref = torch.tensor([[0.0, -1.5, -1.0, 0.0]])
    mask = torch.tensor([[0.0, 1.0, 1.0, 0.0]])
    rewards = kl_penalized_rewards(torch.tensor([3.0]), logp, ref, mask, beta=0.1)
    # −0.1·(−1 + 1.5) = −0.05; −0.1·(−2 + 1) = 0.1, + score 3
    assert close(rewards, [[0.0, -0.05, 3.1, 0.0]])


def test_masked_mean_per_token_and_per_sequence():
    values = torch.tensor([[1.0, 3.0, 100.0], [2.0, 100.0, 100.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    assert close(masked_mean(values, mask), 2.0)  # (1 + 3 + 2) / 3
    assert close(masked_mean(values, mask, per_sequence=True), 2.0)  # (2 + 2) / 2
    mask[1] = torch.tensor([1.0, 0.0, 0.0])
    values[0, 1] = 5.0
    assert close(masked_mean(values, mask), 8 / 3) and close(
        masked_mean(values, mask, per_sequence=True), 2.5
    )


def test_token_logprobs_are_log_softmax_at_the_targets():
    logits = torch.tensor([[[0.0, math.log(3.0)], [math.log(3.0), 0.0]]])
    assert close(token_logprobs(logits, torch.tensor([[1, 1]])), [[math.log(0.75), math.log(0.25)]])
    # at τ = 0.5 the logits double: softmax([0, 2·ln 3]) = [1/10, 9/10], softmax([2·ln 3, 0]) = [9/10, 1/10]
    assert close(token_logprobs(logits, torch.tensor([[1, 1]]), 0.5), [[math.log(0.9), math.log(0.1)]])

"""Sampling and rollout batches: what the on-policy methods (GRPO, PPO), best-of-N (RS) and
on-policy preference pairs share.

- `sample`: n responses per single-turn prompt from a model, with the KV-cache engine
  (training/engine.py), as token ids, so log-probabilities are taken of exactly what was sampled
  (decoding and re-encoding can change the tokens).
- `pad_responses`: prompt + response rows, right-padded, with the mask of response targets:
  `mask[b, t]` is 1 when `ids[b, t + 1]` is a response token, the stop token included (the policy
  chose to stop). Rows are scored with `model(ids[:, :-1])` against `ids[:, 1:]`.
- `RolloutBatches`: train_loop's data object for on-policy methods. At the first micro-batch of
  each rollout it calls the method's `collect(index)` with the policy as it is now, and serves the
  result `epochs` times in micro-batches. Rollout i draws its prompts and its sampling seed from i
  alone, so the position is two integers and a run resumed at a rollout boundary (RolloutConfig
  keeps checkpoints there) repeats the unbroken run.
- `Averager`: figures accumulated between two log records (`train_loop(step_metrics=...)`).
"""

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from training.chat import ChatTokens, render_for_generation
from training.config import SamplingConfig
from training.engine import END_OF_TEXT_ID, IM_END_ID, generate
from training.losses import token_logprobs
from training.model import GPT

STOP_IDS = (IM_END_ID, END_OF_TEXT_ID)
GEN_BATCH = 64  # rows generated together: the KV cache of a demo model at 64 rows is a few MB
SCORE_BATCH = 32  # rows per no-grad forward pass when scoring


def user_prompt(chat: ChatTokens, prompt: str) -> list[int]:
    return render_for_generation([{"role": "user", "content": prompt}], chat)


def sample(
    model: GPT,
    chat: ChatTokens,
    prompts: Sequence[str],
    n: int,
    sampling: SamplingConfig,
    seed: int,
    autocast: Any = None,
) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, response ids) for n responses per prompt, prompt-major: rows i·n … i·n+n−1 answer
    prompt i. A response ends with its stop token, or has none when it was cut at the length
    limit (`sampling.response_tokens`, or what the context leaves). Temperature 0 is greedy."""
    rendered = [user_prompt(chat, p) for p in prompts]
    jobs = [r for r in rendered for _ in range(n)]
    # Batched by prompt length: a batch's budget is what its longest prompt leaves of the context,
    # so a short prompt batched with a long one would have its answer cut short.
    order = sorted(range(len(jobs)), key=lambda i: len(jobs[i]))
    out: list[tuple[list[int], list[int]]] = [([], [])] * len(jobs)
    was_training = model.training
    model.eval()
    for start in range(0, len(jobs), GEN_BATCH):
        rows = order[start : start + GEN_BATCH]
        chunk = [jobs[i] for i in rows]
        budget = min(sampling.response_tokens, model.cfg.context_length - max(len(r) for r in chunk))
        if budget <= 0:
            raise ValueError(f"a prompt of {max(len(r) for r in chunk)} tokens fills the context")
        with autocast or torch.autocast("cpu", enabled=False):
            new = generate(
                model,
                chunk,
                budget,
                temperature=sampling.temperature,
                top_k=sampling.top_k,
                stop_ids=STOP_IDS,
                seed=seed * 1_000_003 + start,  # distinct per chunk, fixed per (seed, position)
            )
        for i, response in zip(rows, new, strict=True):
            out[i] = (jobs[i], response)
    model.train(was_training)
    return out


def decode(chat: ChatTokens, response: Sequence[int]) -> str:
    """The response's text, without its stop token."""
    ids = list(response)
    if ids and ids[-1] in STOP_IDS:
        ids = ids[:-1]
    return chat.tok.decode(ids)


def pad_responses(rows: Sequence[tuple[Sequence[int], Sequence[int]]]) -> tuple[torch.Tensor, torch.Tensor]:
    """ids (B, L) right-padded with end-of-text, and the float mask (B, L−1) of response targets."""
    length = max(len(p) + len(r) for p, r in rows)
    ids = torch.full((len(rows), length), END_OF_TEXT_ID, dtype=torch.long)
    mask = torch.zeros(len(rows), length - 1)
    for b, (prompt, response) in enumerate(rows):
        ids[b, : len(prompt) + len(response)] = torch.tensor(list(prompt) + list(response))
        mask[b, len(prompt) - 1 : len(prompt) + len(response) - 1] = 1.0
    return ids, mask


@torch.no_grad()
def in_chunks(fn: Callable[..., torch.Tensor], ids: torch.Tensor, mask: torch.Tensor, autocast: Any = None):
    """fn(ids, mask) over SCORE_BATCH rows at a time, no grad, the results concatenated along rows."""
    out = []
    for start in range(0, len(ids), SCORE_BATCH):
        with autocast or torch.autocast("cpu", enabled=False):
            out.append(fn(ids[start : start + SCORE_BATCH], mask[start : start + SCORE_BATCH]))
    return torch.cat(out)


def logprobs(
    model: GPT, ids: torch.Tensor, mask: torch.Tensor, autocast: Any = None, temperature: float = 1.0
) -> torch.Tensor:
    """log π(token) of every response target (B, L−1), 0 elsewhere; in micro-batches, no grad.
    At `temperature` τ: under softmax(logits / τ) (`token_logprobs`)."""
    return in_chunks(
        lambda i, m: token_logprobs(model(i[:, :-1]), i[:, 1:], temperature) * m, ids, mask, autocast
    )


@torch.no_grad()
def exact_kl(policy: GPT, ref: GPT, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """KL(π(·|s) ‖ π_ref(·|s)) summed over each row's response positions (B,): the whole next-token
    distributions, so it has no sampling noise (the rollouts' k1/k3 figures estimate the same)."""
    out = []
    for start in range(0, len(ids), SCORE_BATCH):
        chunk, m = ids[start : start + SCORE_BATCH, :-1], mask[start : start + SCORE_BATCH]
        logp = torch.log_softmax(policy(chunk).float(), dim=-1)
        logq = torch.log_softmax(ref(chunk).float(), dim=-1)
        out.append(((logp.exp() * (logp - logq)).sum(-1) * m).sum(-1))
    return torch.cat(out)


class PromptStream:
    """Train problems in a seeded order per epoch; `take(i, k)` is rollout i's k problems, a pure
    function of i, so rollouts need no state beyond their index."""

    def __init__(self, problems: list[dict[str, Any]], seed: int):
        if not problems:
            raise ValueError("no train prompts")
        self.problems, self.seed = problems, seed

    def take(self, index: int, k: int) -> list[dict[str, Any]]:
        n, out = len(self.problems), []
        for pos in range(index * k, index * k + k):
            order = np.random.default_rng((self.seed, pos // n)).permutation(n)
            out.append(self.problems[int(order[pos % n])])
        return out


class Averager:
    """Means of named figures since the last `pop`."""

    def __init__(self):
        self.sums: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)

    def add(self, **figures: float) -> None:
        for key, value in figures.items():
            self.sums[key] += float(value)
            self.counts[key] += 1

    def pop(self) -> dict[str, float]:
        out = {key: self.sums[key] / self.counts[key] for key in self.sums}
        self.sums.clear()
        self.counts.clear()
        return out


class RolloutBatches:
    """Micro-batches of on-policy rollouts for train_loop.

    `collect(i)` returns rollout i as a tuple of tensors with one row per sequence
    (`rollout_size` rows); each of `epochs` passes serves them in a permutation seeded by (seed, i,
    pass). A new rollout is collected when the last one is used up, that is at the first
    micro-batch of an optimizer step, after the previous step changed the policy.
    """

    def __init__(
        self,
        collect: Callable[[int], tuple[torch.Tensor, ...]],
        rollout_size: int,
        epochs: int,
        seed: int,
    ):
        self.collect, self.size, self.epochs, self.seed = collect, rollout_size, epochs, seed
        self.index, self.served = 0, 0  # rollouts collected; rows served of the current one
        self.rollout: tuple[torch.Tensor, ...] | None = None

    def next_batch(self, batch_size: int) -> tuple[torch.Tensor, ...]:
        if self.size % batch_size:
            raise ValueError(f"micro_batch {batch_size} does not divide a rollout of {self.size}")
        if self.rollout is None or self.served == self.size * self.epochs:
            self.rollout = self.collect(self.index)
            assert all(len(t) == self.size for t in self.rollout), "collect returned a wrong row count"
            self.index, self.served = self.index + 1, 0
        epoch, offset = divmod(self.served, self.size)
        order = torch.from_numpy(np.random.default_rng((self.seed, self.index, epoch)).permutation(self.size))
        rows = order[offset : offset + batch_size]
        self.served += batch_size
        return tuple(t[rows] for t in self.rollout)

    def state_dict(self) -> dict[str, Any]:
        finished = self.rollout is None or self.served == self.size * self.epochs
        assert finished, "checkpoint in the middle of a rollout (RolloutConfig keeps them at boundaries)"
        return {"rollouts": self.index, "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["seed"] != self.seed:
            raise ValueError(f"rollouts were seeded {state['seed']}, this run {self.seed}")
        self.index, self.served, self.rollout = state["rollouts"], 0, None

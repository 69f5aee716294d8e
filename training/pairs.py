"""Preference pairs as training batches, for the reward model and DPO.

A pair (a JSONL record of `refinery synth preferences`: prompt, chosen, rejected, task, answer,
source) renders to two chat sequences that share the prompt (training/chat.py): `<|endoftext|>`,
the user turn, the assistant header, then the response and its `<|im_end|>`. A micro-batch holds
B pairs as (chosen ids, chosen mask, rejected ids, rejected mask, *extras), both halves
right-padded to one length L so one forward pass scores all 2B rows; `mask` (B, L−1) marks
response targets as in training/rollout.py, so the last masked target is the `<|im_end|>` the
reward model reads. `extras` are per-pair tensors carried along (DPO: the reference model's
log-probabilities, computed once).

Pairs longer than the context are dropped (`dropped` counts them). Order and resume are as in
training/sft_data.py: a seeded permutation per epoch and (epoch, cursor) as the position.
"""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.chat import ChatTokens, render
from training.engine import END_OF_TEXT_ID
from training.losses import token_logprobs
from training.sft_data import saved_position


def read_pairs(path: str | Path, limit: int | None = None) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (written by `refinery synth preferences`)")
    pairs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return pairs[:limit] if limit is not None else pairs


def encode(chat: ChatTokens, prompt: str, response: str) -> tuple[list[int], list[int]]:
    """ids of the rendered conversation and its target mask (len(ids) − 1): 1 on response targets."""
    ids, mask = render(
        [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}], chat
    )
    return ids, mask[1:]


def pad(rows: list[tuple[list[int], list[int]]], length: int) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.full((len(rows), length), END_OF_TEXT_ID, dtype=torch.long)
    mask = torch.zeros(len(rows), length - 1)
    for b, (row_ids, row_mask) in enumerate(rows):
        ids[b, : len(row_ids)] = torch.tensor(row_ids)
        mask[b, : len(row_mask)] = torch.tensor(row_mask, dtype=torch.float)
    return ids, mask


class PairBatches:
    def __init__(
        self,
        pairs: list[dict[str, Any]],
        chat: ChatTokens,
        context_length: int,
        *,
        seed: int = 0,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
    ):
        self.items, self.pairs = [], []
        for pair in pairs:
            chosen = encode(chat, pair["prompt"], pair["chosen"])
            rejected = encode(chat, pair["prompt"], pair["rejected"])
            if max(len(chosen[0]), len(rejected[0])) <= context_length:
                self.items.append((chosen, rejected))
                self.pairs.append(pair)
        self.dropped = len(pairs) - len(self.items)
        if not self.items:
            raise ValueError("no preference pair fits the context")
        # Per-pair tensors (len(self), k) appended to every batch as k columns; set by the caller.
        self.extras: torch.Tensor | None = None
        self.seed, self.shuffle, self.rank, self.world_size = seed, shuffle, rank, world_size
        self.epoch, self.cursor = 0, 0

    def __len__(self) -> int:
        return len(self.items)

    def batch(self, indices: np.ndarray | list[int]) -> tuple[torch.Tensor, ...]:
        """The pairs at `indices`, padded to their longest sequence."""
        chosen = [self.items[int(i)][0] for i in indices]
        rejected = [self.items[int(i)][1] for i in indices]
        length = max(len(ids) for ids, _ in chosen + rejected)
        out = (*pad(chosen, length), *pad(rejected, length))
        if self.extras is not None:
            out += tuple(self.extras[torch.as_tensor(np.asarray(indices, dtype=np.int64))].unbind(-1))
        return out

    def _order(self) -> np.ndarray:
        n = len(self.items)
        return np.random.default_rng((self.seed, self.epoch)).permutation(n) if self.shuffle else np.arange(n)

    def next_batch(self, batch_size: int) -> tuple[torch.Tensor, ...]:
        span = batch_size * self.world_size
        if span > len(self.items):
            raise ValueError(f"a round of {span} pairs exceeds the {len(self.items)} pairs")
        if self.cursor + span > len(self.items):
            self.epoch, self.cursor = self.epoch + 1, 0
        first = self.cursor + self.rank * batch_size
        self.cursor += span
        return self.batch(self._order()[first : first + batch_size])

    def eval_batches(self, batch_size: int) -> Iterator[tuple[np.ndarray, tuple[torch.Tensor, ...]]]:
        """(indices, batch) over every pair in file order: this rank's share."""
        mine = np.arange(self.rank, len(self.items), self.world_size)
        for j in range(0, len(mine), batch_size):
            yield mine[j : j + batch_size], self.batch(mine[j : j + batch_size])

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "cursor": self.cursor, "seed": self.seed, "items": len(self.items)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.cursor = saved_position(state, len(self.items), self.seed, "pairs")


def sequence_logprobs(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Σ log π(response tokens) per row (B,), with grad: the quantity DPO compares."""
    return (token_logprobs(model(ids[:, :-1]), ids[:, 1:]) * mask).sum(-1)

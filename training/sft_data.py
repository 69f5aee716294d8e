"""SFT batches: chat conversations rendered with their loss mask and packed into rows.

Each conversation renders to ids and a mask (training/chat.py): it starts with `<|endoftext|>`
and only assistant tokens carry loss. Rows of T+1 tokens are filled greedily in the epoch's
order: a conversation that does not fit in what is left of a row starts the next one, and the
rest of the row is padding that carries no loss. Attention is not masked between the
conversations of a row; each starts with end-of-text, which the model learned in pretraining
as a reset (as training/data.py packs documents). A conversation longer than T+1 tokens is cut
(`truncated` counts them); its assistant tokens past the cut are lost.

Order and position are as in training/data.py: epoch e packs the conversations in a
permutation from (seed, e); rank r's micro-batch a of a step is row slice (a·world + r), so one
or N ranks see the same rows; (epoch, cursor) is the whole position.
"""

from typing import Any

import numpy as np
import torch

from training.chat import ChatTokens, render
from training.losses import IGNORE_INDEX


class ChatBatches:
    def __init__(
        self,
        conversations: list[list[dict[str, Any]]],
        chat: ChatTokens,
        context_length: int,
        *,
        seed: int = 0,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
    ):
        if not conversations:
            raise ValueError("no conversations to train on")
        self.T, self.seed, self.shuffle, self.rank, self.world_size = (
            context_length,
            seed,
            shuffle,
            rank,
            world_size,
        )
        rendered = [render(c, chat) for c in conversations]
        self.truncated = sum(len(ids) > context_length + 1 for ids, _ in rendered)
        self.items = [(ids[: context_length + 1], mask[: context_length + 1]) for ids, mask in rendered]
        self.pad_id = chat.eot
        self.epoch, self.cursor = 0, 0
        self._rows: tuple[np.ndarray, np.ndarray] | None = None

    def _pack(self, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows (n, T+1) of ids and of targets-to-train (bool), packed greedily in `order`."""
        width = self.T + 1
        rows_ids, rows_mask = [], []
        ids, mask = [], []
        for i in order:
            item_ids, item_mask = self.items[int(i)]
            if len(ids) + len(item_ids) > width:
                rows_ids.append(ids + [self.pad_id] * (width - len(ids)))
                rows_mask.append(mask + [0] * (width - len(mask)))
                ids, mask = [], []
            ids, mask = ids + item_ids, mask + item_mask
        if ids:
            rows_ids.append(ids + [self.pad_id] * (width - len(ids)))
            rows_mask.append(mask + [0] * (width - len(mask)))
        return np.asarray(rows_ids, dtype=np.int64), np.asarray(rows_mask, dtype=bool)

    def _epoch_rows(self) -> tuple[np.ndarray, np.ndarray]:
        if self._rows is None:
            n = len(self.items)
            order = (
                np.random.default_rng((self.seed, self.epoch)).permutation(n)
                if self.shuffle
                else np.arange(n)
            )
            self._rows = self._pack(order)
        return self._rows

    @property
    def num_rows(self) -> int:
        return len(self._epoch_rows()[0])

    def next_batch(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's next `batch_size` rows as (inputs, targets); untrained targets are IGNORE_INDEX."""
        span = batch_size * self.world_size
        ids, mask = self._epoch_rows()
        if span > len(ids):
            raise ValueError(f"a round of {span} rows exceeds the epoch's {len(ids)}")
        if self.cursor + span > len(ids):
            self.epoch, self.cursor, self._rows = self.epoch + 1, 0, None
            ids, mask = self._epoch_rows()
        first = self.cursor + self.rank * batch_size
        self.cursor += span
        return _inputs_targets(ids[first : first + batch_size], mask[first : first + batch_size])

    def eval_batches(self, batch_size: int):
        """Every row of the unshuffled packing, this rank's share, in batches."""
        ids, mask = self._pack(np.arange(len(self.items)))
        mine = np.arange(self.rank, len(ids), self.world_size)
        for j in range(0, len(mine), batch_size):
            chosen = mine[j : j + batch_size]
            yield _inputs_targets(ids[chosen], mask[chosen])

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "cursor": self.cursor, "seed": self.seed, "items": len(self.items)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.cursor = saved_position(state, len(self.items), self.seed, "conversations")
        self._rows = None


def saved_position(state: dict[str, Any], items: int, seed: int, noun: str) -> tuple[int, int]:
    """(epoch, cursor) of a state_dict, checked to be saved for data of `items` items and this seed."""
    if state["items"] != items or state["seed"] != seed:
        raise ValueError(
            f"data position was saved for {state['items']} {noun} and seed {state['seed']}, "
            f"this data has {items} and seed {seed}"
        )
    return state["epoch"], state["cursor"]


def _inputs_targets(ids: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.from_numpy(ids[:, :-1].copy())
    y = torch.from_numpy(np.where(mask[:, 1:], ids[:, 1:], IGNORE_INDEX))
    return x, y

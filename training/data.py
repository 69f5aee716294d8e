"""Training windows packed from the token shards, in a seeded order, split across ranks, resumable.

Packing: the shards of a split are read as one token stream (shard after shard, each document
ending with end-of-text, as corpus/shards.py writes them). Window i is the T+1 tokens starting
at i·T: inputs are its first T, targets its last T, so consecutive windows share one token and
every token but the first is a target once per epoch. Windows cross document (and shard)
boundaries and attention is not masked at them: the model sees `...end of doc A <|endoftext|>
start of doc B` and learns that end-of-text resets the context, as GPT-2 and nanoGPT train. No
token is dropped or padded; the cost is that a document's first tokens may be predicted from
the previous document's tail. nanochat instead starts every row at a document (BOS-aligned
best-fit packing) and crops ~35% of tokens to do so.

Order: epoch e visits all windows in a permutation drawn from `numpy.random.default_rng((seed,
e))`, the same on every rank. An optimizer step takes the next `global_batch` windows of it;
micro-batch a of rank r is the slice `[(a·world + r)·micro, +micro)`, so a step covers the same
windows whatever the number of ranks, and 2-rank DDP sees single-process batches. The windows
left at the end of an epoch (fewer than one micro-round) are skipped. The position is two
integers (epoch, cursor): `state_dict()` saves it and `load_state_dict()` restores it exactly.
"""

from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer

from corpus.shards import ShardReader
from corpus.tokenizer import RESERVED_TOKENS


class PackedWindows:
    def __init__(
        self,
        readers: list[ShardReader],
        context_length: int,
        *,
        seed: int = 0,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
    ):
        self.readers, self.T, self.seed, self.shuffle = readers, context_length, seed, shuffle
        self.rank, self.world_size = rank, world_size
        self.starts = np.cumsum([0] + [r.num_tokens for r in readers], dtype=np.int64)
        total = int(self.starts[-1])
        self.num_windows = max(total - 1, 0) // context_length
        if self.num_windows == 0:
            raise ValueError(f"{total} tokens in the split: fewer than one window of {context_length + 1}")
        self.epoch, self.cursor = 0, 0
        self._order: np.ndarray | None = None

    def window(self, i: int) -> np.ndarray:
        """Tokens [i·T, i·T + T + 1) of the stream, as int64, read across shard ends."""
        start, end = i * self.T, i * self.T + self.T + 1
        pieces = []
        k = int(np.searchsorted(self.starts, start, side="right")) - 1
        while start < end:
            lo, hi = start - int(self.starts[k]), min(end, int(self.starts[k + 1])) - int(self.starts[k])
            pieces.append(self.readers[k].tokens[lo:hi])
            start, k = int(self.starts[k]) + hi, k + 1
        return np.concatenate(pieces).astype(np.int64)

    def _epoch_order(self) -> np.ndarray:
        if self._order is None:
            if self.shuffle:
                self._order = np.random.default_rng((self.seed, self.epoch)).permutation(self.num_windows)
            else:
                self._order = np.arange(self.num_windows)
        return self._order

    def next_batch(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's next `batch_size` windows as (inputs, targets), int64 (batch_size, T)."""
        span = batch_size * self.world_size
        if span > self.num_windows:
            raise ValueError(f"a round of {span} windows exceeds the split's {self.num_windows}")
        if self.cursor + span > self.num_windows:
            self.epoch, self.cursor, self._order = self.epoch + 1, 0, None
        first = self.cursor + self.rank * batch_size
        ids = self._epoch_order()[first : first + batch_size]
        self.cursor += span
        return _split(np.stack([self.window(int(i)) for i in ids]))

    def eval_batches(self, limit: int, batch_size: int):
        """The split's first `limit` windows in stream order, this rank's share, in batches."""
        mine = list(range(self.rank, min(limit, self.num_windows), self.world_size))
        for j in range(0, len(mine), batch_size):
            yield _split(np.stack([self.window(i) for i in mine[j : j + batch_size]]))

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "cursor": self.cursor,
            "seed": self.seed,
            "num_windows": self.num_windows,
            "context_length": self.T,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in ("context_length", "num_windows", "seed"):
            mine = self.state_dict()[key]
            if state[key] != mine:
                raise ValueError(f"data position was saved with {key} {state[key]}, these shards give {mine}")
        self.epoch, self.cursor, self._order = state["epoch"], state["cursor"], None


class AnnealedWindows:
    """The main windows until the anneal starts, then the anneal's windows (Llama 3's final phase on
    a higher-quality mix). The switch comes after `switch_rows` rows drawn on this rank, the rows of
    the optimizer steps before the anneal, so it falls on a step boundary for any micro-batching; the
    position (rows drawn, and each source's own) is saved and restored exactly."""

    def __init__(self, main: PackedWindows, anneal: PackedWindows, switch_rows: int):
        self.main, self.anneal, self.switch_rows, self.rows = main, anneal, switch_rows, 0

    def next_batch(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        source = self.main if self.rows < self.switch_rows else self.anneal
        self.rows += batch_size
        return source.next_batch(batch_size)

    def state_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "switch_rows": self.switch_rows,
            "main": self.main.state_dict(),
            "anneal": self.anneal.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("switch_rows") != self.switch_rows:
            raise ValueError(f"data position was saved with the anneal at row {state.get('switch_rows')}")
        self.main.load_state_dict(state["main"])
        self.anneal.load_state_dict(state["anneal"])
        self.rows = state["rows"]


def _split(windows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    batch = torch.from_numpy(windows)
    return batch[:, :-1].contiguous(), batch[:, 1:].contiguous()


def token_bytes(tok: Tokenizer) -> np.ndarray:
    """UTF-8 bytes each token id stands for: control and tool tokens 0, placeholders their literal text.

    Byte-level BPE spells a token with one printable character per byte (GPT-2's byte-to-unicode
    map), so a token's byte count is its string length; bits per byte divides by these.
    """
    counts = np.zeros(tok.get_vocab_size(), dtype=np.int64)
    added = tok.get_added_tokens_decoder()
    for token, i in tok.get_vocab().items():
        if i in added:
            counts[i] = 0 if token in RESERVED_TOKENS else len(token.encode("utf-8"))
        else:
            counts[i] = len(token)
    return counts

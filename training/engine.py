"""Generation with a KV cache: batched prompts, temperature, top-k, stop tokens.

    generate(model, [prompt_ids, ...], max_new_tokens=64, temperature=0.8, top_k=50,
             stop_ids=(END_OF_TEXT_ID, IM_END_ID), seed=0) -> [new_ids, ...]

Prompts of different lengths are left-padded: row b's padding is masked out as keys and its
positions count from its first real token, so each row generates what it would alone (the
tests check this token for token). A prompt is prefilled in one forward pass; each new token
then costs one pass over one position, reading keys and values from a preallocated cache
instead of recomputing the whole prefix (bench/generate.py: the speed-up).

Tools (`tools=ChatTokens`, training/chat.py): when a row generates `<|python_end|>`, the call
since its `<|python_start|>` is run in the sandbox (training/sandbox.py) and
`<|output_start|>RESULT<|output_end|>` is queued for that row. The row's next steps feed the
queued tokens instead of sampled ones, one per step through the cache like any token (no
recomputation), then the row samples again. Rows queue independently, so in a batch each row
calls its tools at its own steps; the fed tokens are part of the returned ids and count
toward `max_new_tokens`.
"""

from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from training.model import GPT

if TYPE_CHECKING:
    from training.chat import ChatTokens

END_OF_TEXT_ID = 0  # corpus/tokenizer.py: <|endoftext|> is id 0, <|im_end|> id 3
IM_END_ID = 3


class KVCache:
    """Keys and values of every layer for B rows of up to `max_len` positions, filled left to right.

    `pad[b]` is the number of left-padding positions in row b: they never serve as keys, and
    rotary positions of row b start after them.
    """

    def __init__(self, n_layer: int, max_len: int, pad: torch.Tensor):
        self.n_layer, self.max_len, self.pad = n_layer, max_len, pad
        self.pos = 0  # positions written (shared by all rows)
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None

    def attention(self, T: int) -> tuple[torch.Tensor, torch.Tensor | None, bool]:
        """For the next T positions: rotary positions, a boolean mask (B, 1, T, keys) or None, causal."""
        assert self.pos + T <= self.max_len, f"KV cache of {self.max_len} positions is full"
        device = self.pad.device
        query = torch.arange(self.pos, self.pos + T, device=device)
        if not bool(self.pad.any()):
            # No padding: plain causal attention over the prefix, or a single query seeing all of it.
            if self.pos == 0:
                return query, None, True
            if T == 1:
                return query, None, False
        keys = torch.arange(self.pos + T, device=device)
        visible = (keys[None, None, :] <= query[None, :, None]) & (
            keys[None, None, :] >= self.pad[:, None, None]
        )
        # A padding query sees itself, so no softmax row is empty (NaN); its output is never read.
        visible |= keys[None, None, :] == query[None, :, None]
        positions = (query[None, :] - self.pad[:, None]).clamp(min=0)
        return positions, visible[:, None], False

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (B, H_kv, T, D) at the current positions; return everything cached so far."""
        if self.k is None:  # allocated at first use, in the dtype autocast gives k and v
            B, H, _, D = k.shape
            shape = (self.n_layer, B, H, self.max_len, D)
            self.k = torch.empty(shape, dtype=k.dtype, device=k.device)
            self.v = torch.empty(shape, dtype=v.dtype, device=v.device)
        end = self.pos + k.shape[2]
        self.k[layer, :, :, self.pos : end] = k
        self.v[layer, :, :, self.pos : end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]

    def advance(self, T: int) -> None:
        self.pos += T


def sample_next(
    logits: torch.Tensor, temperature: float, top_k: int | None, generator: torch.Generator
) -> torch.Tensor:
    """One token id per row of logits (B, V): argmax at temperature 0, else top-k sampling."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = F.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


@torch.inference_mode()
def generate(
    model: GPT,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    stop_ids: Sequence[int] = (END_OF_TEXT_ID,),
    seed: int = 0,
    use_cache: bool = True,
    tools: "ChatTokens | None" = None,
) -> list[list[int]]:
    """New token ids for each prompt, ending with the stop token that ended it (if one did).

    A row stops at its first token in `stop_ids` (pass `(END_OF_TEXT_ID, IM_END_ID)` for chat);
    the batch stops when every row has, or after `max_new_tokens`. Sampling draws from one
    generator seeded by `seed`: the same call gives the same tokens. `use_cache=False`
    recomputes each prompt's full sequence at every step: the reference the cache must equal.
    With `tools`, calls are run and their outputs fed back (module docstring).
    """
    if tools is not None and not tools.tools:
        raise ValueError("generate with tools needs a tokenizer with the tool tokens")
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("generate needs at least one prompt, and no empty prompt")
    if temperature < 0:
        raise ValueError(f"temperature {temperature} is negative")
    longest = max(len(p) for p in prompts)
    if longest + max_new_tokens > model.cfg.context_length:
        raise ValueError(
            f"prompt of {longest} + {max_new_tokens} new tokens exceeds the context of "
            f"{model.cfg.context_length}"
        )
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    stops = set(stop_ids)
    B = len(prompts)

    if use_cache:
        pad = torch.tensor([longest - len(p) for p in prompts], device=device)
        idx = torch.tensor([[0] * (longest - len(p)) + list(p) for p in prompts], device=device)
        cache = KVCache(model.cfg.n_layer, longest + max_new_tokens, pad)
        logits = model(idx, kv_cache=cache)[:, -1]
    else:
        sequences = [list(p) for p in prompts]
        logits = _last_logits(model, sequences, device)

    out: list[list[int]] = [[] for _ in range(B)]
    done = [False] * B
    queued: list[deque[int]] = [deque() for _ in range(B)]  # tool outputs still to feed, per row
    for _ in range(max_new_tokens):
        token = _feed_queued(sample_next(logits, temperature, top_k, generator), queued)
        for b, t in enumerate(token.tolist()):
            if not done[b]:
                out[b].append(t)
                done[b] = t in stops
                if tools is not None and t == tools.python_end:
                    queued[b].extend(tools.tool_output(_last_call(out[b], tools)))
        if all(done):
            break
        if use_cache:
            logits = model(token[:, None], kv_cache=cache)[:, -1]
        else:
            for seq, t in zip(sequences, token.tolist(), strict=True):
                seq.append(t)
            logits = _last_logits(model, sequences, device)
    return out


def _feed_queued(token: torch.Tensor, queued: list[deque[int]]) -> torch.Tensor:
    """The sampled tokens, with each row that has queued tool output taking its next one instead."""
    if not any(queued):
        return token
    token = token.clone()
    for b, q in enumerate(queued):
        if q:
            token[b] = q.popleft()
    return token


def _last_call(ids: list[int], tools: "ChatTokens") -> list[int]:
    """The ids of the call that `ids` (ending with `<|python_end|>`) just closed; empty (an error
    for the sandbox) when no `<|python_start|>` opened it since the last tool token."""
    closers = (tools.python_end, tools.output_start, tools.output_end)
    for i in range(len(ids) - 2, -1, -1):
        if ids[i] == tools.python_start:
            return ids[i + 1 : -1]
        if ids[i] in closers:
            break
    return []


def _last_logits(model: GPT, sequences: list[list[int]], device) -> torch.Tensor:
    """Next-token logits of each sequence by a full forward pass, one sequence at a time."""
    return torch.cat([model(torch.tensor([seq], device=device))[:, -1] for seq in sequences])

"""Can a checkpoint copy a span of its context? The induction test of Olsson et al. (2022, "In-context
Learning and Induction Heads"): a random sequence of ordinary tokens, then the same sequence again.
A model with induction heads predicts the repeat from the first copy (its loss falls towards 0 and
its greedy guess is the copied token); one without them does no better on the repeat than on the
first, unpredictable, copy.

    python bench/copy_probe.py CKPT [CKPT ...] [--length 24] [--rows 64] [--seed 0]

prints, per checkpoint, the mean loss (nats per token) on the first copy and on the repeat, and the
share of repeat tokens it predicts greedily. Tool calls need this skill: the word of the prompt is
copied into the call (bench/RESULTS.md, "Tool calls").
"""

import argparse

import torch
import torch.nn.functional as F

from corpus.tokenizer import PLACEHOLDER_TOKENS, RESERVED_TOKENS
from training.checkpoint import load_model, resolve_checkpoint
from training.engine import END_OF_TEXT_ID


def ordinary_ids(vocab: int) -> tuple[int, int]:
    """[low, high) of the ordinary ids: after the control and tool tokens, below the PII
    placeholders added last."""
    return len(RESERVED_TOKENS), vocab - len(PLACEHOLDER_TOKENS)


def repeated_sequences(vocab: int, length: int, rows: int, seed: int) -> torch.Tensor:
    """Rows of `<|endoftext|>`, `length` random ordinary tokens, the same tokens again."""
    generator = torch.Generator().manual_seed(seed)
    low, high = ordinary_ids(vocab)
    first = torch.randint(low, high, (rows, length), generator=generator)
    eot = torch.full((rows, 1), END_OF_TEXT_ID)
    return torch.cat([eot, first, first], dim=1)


@torch.no_grad()
def copy_scores(model: torch.nn.Module, ids: torch.Tensor, length: int) -> dict[str, float]:
    logits = model(ids[:, :-1])
    targets = ids[:, 1:]
    loss = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
    # Target positions 0..length-1 are the first copy, length..2·length-1 the repeat; the repeat's
    # first token follows the last of the first copy, so it is predictable only from position.
    first, repeat = slice(0, length), slice(length + 1, 2 * length)
    hits = (logits.argmax(-1) == targets)[:, repeat].float()
    return {
        "loss_first": loss[:, first].mean().item(),
        "loss_repeat": loss[:, repeat].mean().item(),
        "repeat_top1": hits.mean().item(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--length", type=int, default=24, help="tokens in each copy")
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"{'checkpoint':<60}{'loss first':>12}{'loss repeat':>13}{'repeat top-1':>14}")
    for name in args.checkpoints:
        model = load_model(resolve_checkpoint(name))
        ids = repeated_sequences(model.cfg.vocab_size, args.length, args.rows, args.seed)
        s = copy_scores(model, ids, args.length)
        print(f"{name[-60:]:<60}{s['loss_first']:>12.3f}{s['loss_repeat']:>13.3f}{s['repeat_top1']:>14.3f}")


if __name__ == "__main__":
    main()

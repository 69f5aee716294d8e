"""Pretraining data that rewards copying a span of the context: the two stages of a base that copies.

    python bench/copy_base.py shards RUN/text/tokenizer/tokenizer.json OUT [--documents 300000] [--seed 0]
    python bench/copy_base.py text data/text/tinyshakespeare-200k.txt OUT.txt [--repeats 3] [--seed 0]

`shards` writes OUT/shards (train and valid, the manifest of corpus/shards.py for that tokenizer):
documents of 6-30 random ordinary token ids, then the same ids again. Only the copy is predictable,
so this is the most direct signal for induction heads (Olsson et al. 2022): the 4 x 128 model of
bench/RESULTS.md ("A base that copies"), 32 windows of 64 tokens a step at lr 1e-3, copies from
step ~3,000 on, after a plateau at ln V.

`text` writes the input's paragraphs, each followed by `--repeats` *repeat paragraphs*: a random
sequence of 6-16 words drawn from the input's own vocabulary, a line break, and the same sequence
again. The second copy is predictable only by looking back at the first. 600 steps on this text
alone did not form induction heads; stage 2 of the base trains on it after stage 1 (the shards), so
the model reads text again and keeps copying at 256 tokens. Tool calls need the copy: the word of
the prompt goes into the call. The words come from the input text, not from the task word list
(training/tasks.py), so no test word is planted on purpose. Deterministic for a seed.
"""

import argparse
import random
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from copy_probe import ordinary_ids  # noqa: E402  (bench/, beside this script)

from corpus.tokenizer import END_OF_TEXT, load  # noqa: E402
from training.testing import write_shards  # noqa: E402

WORDS_PER_REPEAT = (6, 16)  # long enough that a memorized bigram cannot stand in for the copy
TOKENS_PER_REPEAT = (6, 30)
VALID_DOCUMENTS = 500


def repeat_documents(vocab_size: int, n: int, rng: np.random.Generator, eot: int) -> Iterator[np.ndarray]:
    """`n` documents, one at a time (the shard writer streams them): a random span of ordinary ids
    (bench/copy_probe.py's range), the span again, end-of-text."""
    low, high = ordinary_ids(vocab_size)
    for length in rng.integers(TOKENS_PER_REPEAT[0], TOKENS_PER_REPEAT[1] + 1, size=n):
        span = rng.integers(low, high, size=length)
        yield np.concatenate([span, span, [eot]])


def write_repeat_shards(tokenizer_path: Path, out: Path, documents: int, seed: int) -> Path:
    """OUT/shards of repeat documents for this tokenizer (train, then valid, from one generator)."""
    tok = load(tokenizer_path)
    vocab, eot = tok.get_vocab_size(), tok.token_to_id(END_OF_TEXT)
    rng = np.random.default_rng(seed)
    splits = {
        name: repeat_documents(vocab, n, rng, eot)
        for name, n in (("train", documents), ("valid", VALID_DOCUMENTS))
    }
    return write_shards(out / "shards", tokenizer_path, splits, seed=seed)


def vocabulary(text: str) -> list[str]:
    """The input's distinct lower-case alphabetic words, sorted (so the draw depends on the seed only)."""
    return sorted({w.lower() for w in re.findall(r"[A-Za-z]+", text)})


def repeat_paragraph(words: list[str], rng: random.Random) -> str:
    span = " ".join(rng.choice(words) for _ in range(rng.randint(*WORDS_PER_REPEAT)))
    return f"{span}\n{span}"


def with_repeats(text: str, repeats: int, seed: int) -> str:
    """`text`'s paragraphs, each followed by `repeats` repeat paragraphs. Many distinct ones, so that
    a run of several epochs cannot memorize them instead of learning to copy."""
    rng, words = random.Random(seed), vocabulary(text)
    out = []
    for paragraph in (p for p in text.split("\n\n") if p.strip()):
        out.append(paragraph)
        out.extend(repeat_paragraph(words, rng) for _ in range(repeats))
    return "\n\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    shards = commands.add_parser("shards", help="repeated random token spans, as shards")
    shards.add_argument("tokenizer", type=Path, help="tokenizer.json")
    shards.add_argument("out", type=Path)
    shards.add_argument("--documents", type=int, default=300000)
    text = commands.add_parser("text", help="a text with repeat paragraphs")
    text.add_argument("text", type=Path)
    text.add_argument("out", type=Path)
    text.add_argument("--repeats", type=int, default=3, help="repeat paragraphs after each paragraph")
    for command in (shards, text):
        command.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.command == "shards":
        print(f"wrote {write_repeat_shards(args.tokenizer, args.out, args.documents, args.seed)}")
    else:
        args.out.write_text(with_repeats(args.text.read_text(), args.repeats, args.seed))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

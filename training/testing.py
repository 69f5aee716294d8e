"""A small run directory (tokenizer + train/valid shards) from plain text, for tests, benches and
demos, before the Spark stages have produced one:

    python -m training.testing data/text/tinyshakespeare-200k.txt runs/shakespeare [--vocab 1024]

writes `RUN/tokenizer/tokenizer.json` and `RUN/shards/` with the manifest contract of
corpus/shards.py. Documents are runs of paragraphs (blank-line separated) of about `doc_chars`
characters; the last `valid_fraction` of them, contiguous text the tokenizer never saw, are
the validation split. With `--kept-chars N` it also writes RUN/mixed/ (kept/part-0.parquet and a
manifest), the training documents' text cut into documents of about N characters, as a `mixed`
stage that kept them: what `refinery synth sft --run` and `refinery synth factuality --run` read,
so their questions are about text the model was pretrained on.
"""

import argparse
import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from corpus.manifest import write_json_atomic
from corpus.shards import MANIFEST, token_dtype, write_split
from corpus.tokenizer import END_OF_TEXT, TOOL_TOKENS, encode_documents, file_hash, load, train_bpe

VALID_FRACTION = 0.1  # the share of documents (the last ones) that validate
SAMPLE_TEXT = Path(__file__).resolve().parent.parent / "data" / "text" / "tinyshakespeare-200k.txt"


def text_documents(text: str, doc_chars: int) -> list[str]:
    """Consecutive paragraphs joined until a document reaches `doc_chars` characters."""
    docs, current = [], []
    size = 0
    for paragraph in text.split("\n\n"):
        if paragraph.strip():
            current.append(paragraph)
            size += len(paragraph)
        if size >= doc_chars:
            docs.append("\n\n".join(current))
            current, size = [], 0
    if current:
        docs.append("\n\n".join(current))
    return docs


def split_text(text: str, doc_chars: int, valid_fraction: float) -> tuple[list[str], list[str]]:
    """Train and validation documents: the last `valid_fraction` of them validate."""
    docs = text_documents(text, doc_chars)
    n_valid = max(1, round(valid_fraction * len(docs)))
    if len(docs) <= n_valid:
        raise ValueError(f"{len(docs)} documents: too few for a validation split of {n_valid}")
    return docs[:-n_valid], docs[-n_valid:]


def make_text_run(
    text: str,
    run_dir: str | Path,
    *,
    vocab_size: int = 512,
    doc_chars: int = 2000,
    valid_fraction: float = VALID_FRACTION,
    shard_tokens: int = 1 << 28,
    seed: int = 0,
) -> Path:
    """Train a tokenizer on the training documents, write both splits; return RUN/shards."""
    run_dir = Path(run_dir)
    train_docs, valid_docs = split_text(text, doc_chars, valid_fraction)
    (run_dir / "tokenizer").mkdir(parents=True, exist_ok=True)
    tokenizer_path = run_dir / "tokenizer" / "tokenizer.json"
    tok = train_bpe(train_docs, vocab_size)
    tok.save(str(tokenizer_path))
    splits = {"train": encode_documents(tok, train_docs), "valid": encode_documents(tok, valid_docs)}
    return write_shards(run_dir / "shards", tokenizer_path, splits, seed=seed, shard_tokens=shard_tokens)


def write_shards(
    shards: Path,
    tokenizer_path: Path,
    splits: dict[str, Iterable[list[int] | np.ndarray]],
    *,
    seed: int = 0,
    shard_tokens: int = 1 << 28,
) -> Path:
    """`splits` (name -> documents of token ids, each ending with end-of-text; consumed in order,
    one split after the other, so a generator streams) as shards in `shards`,
    with the manifest of corpus/shards.py that `refinery train pretrain` checks: the tokenizer's
    hash and vocabulary. Returns `shards`."""
    tok = load(tokenizer_path)
    vocab = tok.get_vocab_size()
    shards.mkdir(parents=True, exist_ok=True)
    written = {
        name: write_split(shards, name, documents, vocab, shard_tokens=shard_tokens)
        for name, documents in splits.items()
    }
    manifest = {
        "stage": "shards",
        "tokenizer": {"sha256": file_hash(tokenizer_path), "vocab_size": vocab},
        "dtype": token_dtype(vocab).name,
        "eot_id": tok.token_to_id(END_OF_TEXT),
        "seed": seed,
        "splits": written,
        "buckets": {},
    }
    write_json_atomic(shards / MANIFEST, manifest)
    return shards


def without_tool_tokens(tok: Tokenizer, path: str | Path) -> Tokenizer:
    """`tok` as a tokenizer from before the tool tokens existed (saved at `path`, loaded back): ids
    4..7 are ordinary vocabulary entries, as an old tokenizer's first BPE merges are."""
    data = json.loads(tok.to_str())
    data["added_tokens"] = [t for t in data["added_tokens"] if t["content"] not in TOOL_TOKENS]
    for k, token in enumerate(TOOL_TOKENS):
        data["model"]["vocab"][f"unused{k}"] = data["model"]["vocab"].pop(token)
    Path(path).write_text(json.dumps(data))
    return load(path)


def write_kept(text: str, run_dir: str | Path, kept_chars: int, doc_chars: int = 2000) -> Path:
    """RUN/mixed as a curation stage that kept the training documents of make_text_run(text,
    doc_chars=doc_chars), re-cut into documents of about `kept_chars`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    docs = text_documents("\n\n".join(split_text(text, doc_chars, VALID_FRACTION)[0]), kept_chars)
    kept = Path(run_dir) / "mixed" / "kept"
    kept.mkdir(parents=True, exist_ok=True)
    rows = [{"id": f"text{i:05d}", "title": None, "text": d} for i, d in enumerate(docs)]
    table = pa.Table.from_pylist(
        rows, schema=pa.schema([("id", pa.string()), ("title", pa.string()), ("text", pa.string())])
    )
    pq.write_table(table, kept / "part-0.parquet")
    fingerprint = file_hash(kept / "part-0.parquet")
    write_json_atomic(
        kept.parent / MANIFEST, {"stage": "mixed", "rows": len(rows), "output_fingerprint": fingerprint}
    )
    return kept.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("text", type=Path, help="a UTF-8 text file")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--vocab", type=int, default=1024, help="tokenizer vocabulary size")
    parser.add_argument("--doc-chars", type=int, default=2000)
    parser.add_argument(
        "--kept-chars", type=int, help="also write RUN/mixed: the training text in documents of N chars"
    )
    args = parser.parse_args()
    shards = make_text_run(
        args.text.read_text(), args.run_dir, vocab_size=args.vocab, doc_chars=args.doc_chars
    )
    print(f"wrote {shards}")
    if args.kept_chars:
        print(f"wrote {write_kept(args.text.read_text(), args.run_dir, args.kept_chars, args.doc_chars)}")


if __name__ == "__main__":
    main()

"""`refinery pii-audit RUN`: is any PII left in the tokens a model will train on?

The annotated stage redacts PII in `text` (corpus/pii.py); everything after it (dedup, mix,
tokenization, sharding) should carry the placeholders through. This audit checks the end
product instead of trusting the chain: it opens every shard of every split against the shard
manifest (sizes and sha256, corpus/shards.py `open_split`), decodes each document with the run's
tokenizer, and runs the same detector over the decoded text. Anything found is a leak: a kind
switched off in the config, text changed after redaction, or a tokenizer that does not
round-trip. Exit status 1 when anything is found, so CI can gate a corpus on it.

Examples are printed masked (first character kept, every other letter or digit as `*`), with
the surrounding text masked the same way wherever it holds another finding: the audit report
must not itself leak what it found.

Cost: decoding is the tokenizer's Rust `decode_batch`; detection runs at about 24 M characters
a second (corpus/pii.py), so a 100 M-token corpus (~400 MB of text) takes minutes on one core.
"""

import posixpath
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corpus.fs import exists, is_file, join
from corpus.pii import KINDS, PiiRedactor
from corpus.shards import open_split, read_manifest
from corpus.tokenizer import load as load_tokenizer

# The brief of the audit: what a leak of personal data into a web corpus mostly is.
DEFAULT_KINDS: tuple[str, ...] = ("email", "ip", "credit_card", "phone")
DECODE_BATCH = 256  # documents decoded per call
CONTEXT_CHARS = 30  # around an example


@dataclass
class Audit:
    kinds: tuple[str, ...]
    shards: int = 0
    documents: int = 0
    tokens: int = 0
    documents_with_pii: int = 0
    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    @property
    def found(self) -> int:
        return sum(self.counts.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "kinds": list(self.kinds),
            "shards": self.shards,
            "documents": self.documents,
            "tokens": self.tokens,
            "documents_with_pii": self.documents_with_pii,
            "counts": {k: self.counts[k] for k in self.kinds},
            "examples": self.examples,
        }


def mask(value: str) -> str:
    """`jane.doe@example.com` → `j***.***@*******.***`: the shape stays, the letters and digits go."""
    return value[:1] + "".join("*" if c.isalnum() else c for c in value[1:])


def masked_example(text: str, spans: list[tuple[int, int, str]], chosen: int) -> str:
    """The `chosen` span with CONTEXT_CHARS of text either side, every span inside masked."""
    start, end, _ = spans[chosen]
    lo, hi = max(0, start - CONTEXT_CHARS), min(len(text), end + CONTEXT_CHARS)
    pieces, pos = [], lo
    for s, e, _ in spans:
        if e <= lo or s >= hi:
            continue
        s, e = max(s, lo), min(e, hi)
        pieces += [text[pos:s], mask(text[s:e])]
        pos = e
    pieces.append(text[pos:hi])
    window = "".join(pieces).replace("\n", " ")
    return ("…" if lo > 0 else "") + window + ("…" if hi < len(text) else "")


def _decoded(readers, tokenizer) -> Iterator[tuple[str, int, int, str]]:
    """(shard name, document index, tokens, decoded text) for every document of the readers."""
    for reader in readers:
        for first in range(0, len(reader), DECODE_BATCH):
            ids = [reader[i].tolist() for i in range(first, min(first + DECODE_BATCH, len(reader)))]
            texts = tokenizer.decode_batch(ids, skip_special_tokens=False)
            for offset, (doc, text) in enumerate(zip(ids, texts, strict=True)):
                yield reader.bin_path.stem, first + offset, len(doc), text


def audit_shards(
    run_dir: str | Path,
    *,
    kinds: tuple[str, ...] = DEFAULT_KINDS,
    tokenizer_path: str | Path | None = None,
    examples_per_kind: int = 3,
) -> Audit:
    """Scan every document of every split of RUN/shards (or of a shards directory given directly)."""
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise ValueError(f"--kinds: unknown kind(s) {unknown or list(kinds)}; allowed: {', '.join(KINDS)}")
    # a path or a URI (s3://…: corpus/fs.py); RUN, or a shards directory given directly
    shards_dir = join(run_dir, "shards") if exists(join(run_dir, "shards")) else str(run_dir)
    manifest = read_manifest(shards_dir)
    run = posixpath.dirname(shards_dir.rstrip("/"))
    tokenizer_path = str(tokenizer_path or join(run, "tokenizer", "tokenizer.json"))
    if not is_file(tokenizer_path):
        raise FileNotFoundError(f"{tokenizer_path}: tokenizer not found (pass --tokenizer)")
    tokenizer = load_tokenizer(tokenizer_path)
    # The detector redacts kinds in priority order; asking for a subset keeps that order's claims.
    detector = PiiRedactor(kinds=kinds)
    result = Audit(kinds=tuple(kinds), examples={k: [] for k in kinds})
    for split in manifest["splits"]:
        readers = open_split(shards_dir, split, tokenizer_path=tokenizer_path)
        result.shards += len(readers)
        for shard, index, tokens, text in _decoded(readers, tokenizer):
            result.documents += 1
            result.tokens += tokens
            spans = detector.find(text)
            if not spans:
                continue
            result.documents_with_pii += 1
            for n, (_, _, kind) in enumerate(spans):
                result.counts[kind] += 1
                if len(result.examples[kind]) < examples_per_kind:
                    where = f"{split}/{shard} document {index}"
                    result.examples[kind].append(f"{where}: {masked_example(text, spans, n)}")
    return result


def format_audit(audit: Audit) -> str:
    lines = [
        f"{audit.documents:,} documents, {audit.tokens:,} tokens in {audit.shards} shards; "
        f"{audit.documents_with_pii:,} with PII",
        f"{'kind':<14}{'found':>8}",
    ]
    lines += [f"{kind:<14}{audit.counts[kind]:>8,}" for kind in audit.kinds]
    for kind in audit.kinds:
        for example in audit.examples[kind]:
            lines.append(f"  {kind}: {example}")
    lines.append("PII found: exit status 1" if audit.found else "no PII found")
    return "\n".join(lines)

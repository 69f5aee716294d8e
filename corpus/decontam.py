"""Decontamination: documents that share a long word n-gram with an evaluation text are removed,
or the shared spans cut out.

Brown et al. 2020 ("Language Models are Few-Shot Learners", Appendix C) removed training text
that shares a 13-gram with a benchmark; the EleutherAI harness's `janitor.py` and Llama 2's
report (Touvron et al. 2023, Appendix A.6) do the same on normalized words. Here:

- **Words**: runs of non-space characters; each is NFKC-normalized (non-ASCII text only),
  lower-cased, and stripped of punctuation and symbols (Unicode categories P* and S*), so
  "Hello, World!" and "hello world" are the same two words and "don't" is `dont`. A run of
  only punctuation ("--", "...") is no word. The character span of every word is kept, so a
  match maps back to the original text.
- **N-grams**: every n consecutive words (n = 13 by default), hashed to 64 bits: a word's hash
  is blake2b of its UTF-8 (8 bytes), an n-gram's the polynomial sum(h_i * M^(n-1-i)) mod 2^64
  with an odd M, computed for all positions of a document at once in numpy. Two different
  n-grams collide with probability about 2^-64: against 10^7 evaluation n-grams, 10^11 corpus
  n-grams give ~5e-2 expected false matches.
- **Index** (`NgramIndex`): the sorted unique hashes of the evaluation texts and, per hash, a
  bitmask of the named evaluation sets that hold it (at most 64 sets), so a match says which
  set it came from. An evaluation text shorter than n words has no n-gram and is counted as
  `too_short` in the index's stats, not matched.
- **Decision** (`Decontaminator`): a document with at least `min_matches` matched n-gram
  positions is contaminated. Mode `remove` rejects it (`decontam:ngram`); mode `cut` removes
  each matched n-gram and `cut_margin_chars` on both sides, and keeps the pieces in between that
  have at least `min_piece_chars` characters, joined by a blank line; a document left with no
  piece or more than `max_pieces` is rejected (GPT-3's numbers: 200 characters, 200 characters,
  10 pieces). Cutting rewrites text, so it is a cleaner (STYLE.md): `cut()` is apart from
  `decide()`.

Pure functions and small objects, no engine: jobs/decontam.py runs them per partition with the
index broadcast, jobs/ablate.py on the driver.
"""

import gzip
import hashlib
import io
import json
import re
import sys
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np

from corpus.fs import is_file, open_input

NGRAM = "decontam:ngram"
MODES = ("remove", "cut")
DEFAULT_N = 13  # GPT-3, Appendix C
MAX_SETS = 64  # bits of the per-hash set mask
# Odd, so multiplying by it is a bijection mod 2^64 (the golden-ratio constant of Fibonacci hashing).
_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)
_TOKEN = re.compile(r"\S+")
WORD_CACHE = 1 << 18  # distinct words whose hashes a process keeps


@lru_cache(maxsize=1)
def _punctuation_table() -> dict[int, None]:
    """str.translate table deleting every punctuation and symbol code point (built on first use)."""
    return {cp: None for cp in range(sys.maxunicode + 1) if unicodedata.category(chr(cp))[0] in "PS"}


def word_spans(text: str) -> tuple[list[str], list[tuple[int, int]]]:
    """The normalized words of `text` and the character span of each in `text`."""
    table = _punctuation_table()
    nfkc = not text.isascii()
    words, spans = [], []
    for m in _TOKEN.finditer(text):
        if nfkc:  # compatibility forms ("ﬁ", full-width letters) fold; some fold to a space
            word = unicodedata.normalize("NFKC", m.group()).lower().translate(table).replace(" ", "")
        else:
            word = m.group().lower().translate(table)
        if word:
            words.append(word)
            spans.append(m.span())
    return words, spans


def normalize(text: str) -> list[str]:
    """The normalized words of `text` (see the module docstring)."""
    return word_spans(text)[0]


@lru_cache(maxsize=WORD_CACHE)
def word_hash(word: str) -> int:
    return int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")


def ngram_hashes(words: list[str], n: int) -> np.ndarray:
    """uint64 hash of the n-gram starting at each word position (len(words) - n + 1 of them)."""
    count = len(words) - n + 1
    if count <= 0:
        return np.zeros(0, dtype=np.uint64)
    per_word = np.fromiter((word_hash(w) for w in words), dtype=np.uint64, count=len(words))
    acc = np.zeros(count, dtype=np.uint64)
    for k in range(n):  # numpy's uint64 arithmetic wraps: the sum is mod 2^64
        acc = acc * _MULTIPLIER + per_word[k : k + count]
    return acc


@dataclass(frozen=True)
class NgramIndex:
    """The n-gram hashes of named evaluation sets (sorted, unique) and which sets hold each."""

    n: int
    names: tuple[str, ...]
    hashes: np.ndarray  # uint64, sorted, unique
    sets: np.ndarray  # uint64 bitmask per hash: bit i = names[i] holds the n-gram
    stats: dict[str, dict[str, int]] = field(default_factory=dict)  # per set: texts, too_short, ngrams

    @classmethod
    def build(cls, sets: Mapping[str, Iterable[str]], n: int = DEFAULT_N) -> "NgramIndex":
        if n < 1:
            raise ValueError(f"n-gram length {n}: must be at least 1")
        names = tuple(sets)
        if len(names) > MAX_SETS:
            raise ValueError(f"{len(names)} evaluation sets: at most {MAX_SETS}")
        found, bits, stats = [], [], {}
        for i, name in enumerate(names):
            texts = too_short = 0
            per_text = []
            for text in sets[name]:
                texts += 1
                hashes = ngram_hashes(normalize(text), n)
                too_short += hashes.size == 0
                per_text.append(hashes)
            unique = np.unique(np.concatenate(per_text)) if per_text else np.zeros(0, np.uint64)
            stats[name] = {"texts": texts, "too_short": int(too_short), "ngrams": int(unique.size)}
            found.append(unique)
            bits.append(np.full(unique.size, np.uint64(1) << np.uint64(i), dtype=np.uint64))
        all_hashes = np.concatenate(found) if found else np.zeros(0, np.uint64)
        all_bits = np.concatenate(bits) if bits else np.zeros(0, np.uint64)
        order = np.argsort(all_hashes, kind="stable")
        all_hashes, all_bits = all_hashes[order], all_bits[order]
        starts = np.flatnonzero(np.r_[True, all_hashes[1:] != all_hashes[:-1]]) if all_hashes.size else []
        masks = np.bitwise_or.reduceat(all_bits, starts) if all_hashes.size else all_bits
        return cls(n, names, all_hashes[starts] if all_hashes.size else all_hashes, masks, stats)

    def __len__(self) -> int:
        return int(self.hashes.size)

    def lookup(self, hashes: np.ndarray) -> np.ndarray:
        """The set bitmask of each queried hash; 0 where no evaluation set holds it."""
        if not len(self) or not hashes.size:
            return np.zeros(hashes.size, dtype=np.uint64)
        at = np.minimum(np.searchsorted(self.hashes, hashes), len(self) - 1)
        return np.where(self.hashes[at] == hashes, self.sets[at], np.uint64(0))

    def set_names(self, mask: int) -> list[str]:
        return [name for i, name in enumerate(self.names) if mask >> i & 1]

    def fingerprint(self) -> str:
        digest = hashlib.sha256(json.dumps([self.n, self.names]).encode())
        digest.update(self.hashes.tobytes())
        digest.update(self.sets.tobytes())
        return digest.hexdigest()


@dataclass(frozen=True)
class Match:
    """Where a text meets the index."""

    ngrams: int  # word positions whose n-gram is in the index
    sets: int  # bitmask of the evaluation sets matched
    spans: tuple[tuple[int, int], ...]  # character spans of the matched n-grams, merged, in order
    example: str | None  # the first matched n-gram, normalized words joined by spaces


def find(index: NgramIndex, text: str) -> Match:
    words, spans = word_spans(text)
    masks = index.lookup(ngram_hashes(words, index.n))
    hits = np.flatnonzero(masks)
    if not hits.size:
        return Match(0, 0, (), None)
    merged: list[tuple[int, int]] = []
    for i in hits.tolist():
        start, end = spans[i][0], spans[i + index.n - 1][1]
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    first = int(hits[0])
    return Match(
        int(hits.size),
        int(np.bitwise_or.reduce(masks[hits])),
        tuple(merged),
        " ".join(words[first : first + index.n]),
    )


class Decontaminator:
    """Reject (`remove`) or cut (`cut`) documents sharing `min_matches` n-grams with the index.

    GPT-3 (Appendix C) cut 13-grams with a 200-character margin, dropped pieces under 200
    characters and rejected documents cut into more than 10 pieces: `cut_margin_chars`,
    `min_piece_chars` and `max_pieces` default to those numbers.
    """

    name = "decontam"
    RULES = (NGRAM,)

    def __init__(
        self,
        index: NgramIndex,
        *,
        mode: Literal["remove", "cut"] = "remove",
        min_matches: int = 1,
        cut_margin_chars: int = 200,
        min_piece_chars: int = 200,
        max_pieces: int = 10,
    ):
        if mode not in MODES:
            raise ValueError(f"decontam mode {mode!r}: allowed {', '.join(MODES)}")
        if min_matches < 1:
            raise ValueError(f"min_matches {min_matches}: must be at least 1")
        self.index, self.mode, self.min_matches = index, mode, min_matches
        self.cut_margin_chars, self.min_piece_chars, self.max_pieces = (
            cut_margin_chars,
            min_piece_chars,
            max_pieces,
        )

    def contaminated(self, match: Match) -> bool:
        return match.ngrams >= self.min_matches

    def cut(self, text: str, match: Match) -> list[str]:
        """The pieces of `text` outside the matched spans and their margins, long enough to keep."""
        pieces, position = [], 0
        for start, end in match.spans:
            pieces.append(text[position : max(start - self.cut_margin_chars, position)])
            position = max(position, min(end + self.cut_margin_chars, len(text)))
        pieces.append(text[position:])
        return [p.strip() for p in pieces if len(p.strip()) >= max(self.min_piece_chars, 1)]

    def decide(self, match: Match, pieces: list[str] | None = None) -> str | None:
        """`decontam:ngram` for a contaminated document in `remove` mode, or one that cutting
        (its `pieces`) leaves empty or in more than `max_pieces` pieces."""
        if not self.contaminated(match):
            return None
        if self.mode == "remove":
            return NGRAM
        return NGRAM if not pieces or len(pieces) > self.max_pieces else None

    def apply(self, text: str) -> tuple[str, str | None, Match]:
        """(text to keep, reject rule or None, match): the text is cut in `cut` mode."""
        match = find(self.index, text)
        if not self.contaminated(match):
            return text, None, match
        pieces = self.cut(text, match) if self.mode == "cut" else None
        reject = self.decide(match, pieces)
        if reject is not None or pieces is None:
            return text, reject, match
        return "\n\n".join(pieces), None, match


# --- evaluation texts from files ---------------------------------------------------------------


def record_text(row: Mapping[str, Any]) -> str:
    """The text of a JSON line: `text`, else a problem's `prompt` and `solution` (the rows of
    `refinery synth sft`), else the contents of its `messages`."""
    if isinstance(row.get("text"), str):
        return row["text"]
    if "prompt" in row or "solution" in row:
        return "\n".join(str(row[k]) for k in ("prompt", "solution") if row.get(k))
    if isinstance(row.get("messages"), list):
        return "\n".join(str(m.get("content", "")) for m in row["messages"] if isinstance(m, Mapping))
    raise ValueError(f"a JSON line with none of text, prompt, solution, messages (keys: {sorted(row)})")


def read_texts(path: str | Path) -> list[str]:
    """Evaluation texts of a file: one per line of `*.jsonl[.gz]` (`record_text`), or the whole
    of any other file read as UTF-8 (`.gz` decompressed). `path` may be a URI (corpus/fs.py)."""
    path = str(path)
    if not is_file(path):
        raise FileNotFoundError(f"{path}: evaluation file not found")
    with open_input(path) as raw:
        stream = gzip.open(raw, "rb") if path.endswith(".gz") else raw
        with io.TextIOWrapper(stream, encoding="utf-8-sig") as f:
            if not path.endswith((".jsonl", ".jsonl.gz")):
                return [f.read()]
            texts = []
            for number, line in enumerate(f, 1):
                if line.strip():
                    try:
                        texts.append(record_text(json.loads(line)))
                    except (ValueError, AttributeError) as exc:
                        raise ValueError(f"{path}:{number}: {exc}") from None
            return texts

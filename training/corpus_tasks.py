"""Tasks grounded in the curated corpus: questions about documents the pipeline kept.

- `title_choice`: a passage and four page titles (its own and three of other kept documents);
  the answer is the letter of its own. Teaches reading a passage for its topic.
- `cloze`: a passage with one content word blanked out; the answer is the word. Teaches reading
  the context on both sides of a gap.

Both have exact answers, so the checker of training/tasks.py grades them. Documents come from
the last curation stage of a run that finished (mixed, else deduped, else annotated) and only
from its kept rows: a sample of at most `cap` of them, those of smallest seeded hash of the id
(`sample_order`), each cut to the longest passage a task reads, so whoever draws it holds
O(cap) short rows whatever the corpus size. Train and test use disjoint documents (split by
another seeded hash of the id), so a document stays on its side as the corpus grows.
No target holds a PII placeholder: titles with one are skipped and blanked words are
alphabetic.
"""

import heapq
import random
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from corpus.fs import expand, is_file, join, open_input
from corpus.sampling import hashed_unit
from corpus.tokenizer import PLACEHOLDER_TOKENS
from training.tasks import FINAL, Problem

CURATED_STAGES = ("mixed", "deduped", "annotated")
SAMPLE_SALT = "sample"
ROWS_PER_BATCH = 1024  # rows read at a time: bounds the reader's memory
LETTERS = "ABCD"
MIN_TITLE_WORDS, MAX_TITLE_WORDS = 3, 20
MIN_BLANK_CHARS = 5  # short words (the, and) are guessable without reading
_WORD = re.compile(r"\b[A-Za-z]+\b")


@dataclass(frozen=True)
class Doc:
    id: str
    title: str | None
    text: str


def curated_parts(run_dir: str | Path) -> tuple[str, list[str]]:
    """The run's last finished curation stage and its kept Parquet parts, in name order (a run
    directory on any filesystem: corpus/fs.py)."""
    for stage in CURATED_STAGES:
        if is_file(join(run_dir, stage, "manifest.json")):
            return stage, expand(join(run_dir, stage, "kept", "*.parquet"))
    raise FileNotFoundError(f"{run_dir}: no finished curation stage ({', '.join(CURATED_STAGES)})")


def source_rows(part: str | Path, max_chars: int | None = None) -> Iterator[dict[str, Any]]:
    """A part's rows as the corpus tasks read them: id, title and the text, cut to `max_chars` + 1
    characters (enough for `passage(text, max_chars)` to come out the same), streamed."""
    with open_input(str(part)) as f:
        for batch in pq.ParquetFile(f).iter_batches(ROWS_PER_BATCH, columns=["id", "title", "text"]):
            for row in batch.to_pylist():
                text = row["text"] or ""
                yield {**row, "text": text if max_chars is None else text[: max_chars + 1]}


def sample_order(row: dict[str, Any], seed: int) -> tuple[float, str, str, str]:
    """A row's place in the sample: a seeded hash of its id (salted, so independent of the
    train/test split's hash), then the row itself, so the order is total and the sample exact."""
    return hashed_unit(f"{SAMPLE_SALT}:{row['id']}", seed), row["id"], row["title"] or "", row["text"]


def documents(rows: Iterable[dict[str, Any]]) -> list[Doc]:
    """Documents in id order, one per id (the first row of each in `rows`)."""
    by_id: dict[str, Doc] = {}
    for r in rows:
        by_id.setdefault(r["id"], Doc(r["id"], r["title"], r["text"] or ""))
    return sorted(by_id.values(), key=lambda d: d.id)


def curated_documents(
    run_dir: str | Path, cap: int, seed: int, max_chars: int | None = None
) -> tuple[str, list[Doc]]:
    """The `cap` kept documents of smallest `sample_order` in the run's last finished curation
    stage, in id order. Streams the parts in one process, holding at most `cap` rows;
    jobs/decontam.py draws the same documents on Spark's executors (jobs/sampling.py)."""
    stage, parts = curated_parts(run_dir)
    rows = (row for part in parts for row in source_rows(part, max_chars))
    return stage, documents(heapq.nsmallest(cap, rows, key=lambda r: sample_order(r, seed)))


def split_documents(docs: list[Doc], test_fraction: float, seed: int) -> dict[str, list[Doc]]:
    """Disjoint train and test documents, by a seeded hash of the id (stable as the corpus grows)."""
    return {
        "train": [d for d in docs if hashed_unit(d.id, seed) >= test_fraction],
        "test": [d for d in docs if hashed_unit(d.id, seed) < test_fraction],
    }


def passage(text: str, max_chars: int) -> str:
    """The start of a text, cut at a word boundary."""
    if len(text) <= max_chars:
        return text.strip()
    cut = text[:max_chars]
    return cut[: cut.rfind(" ")].strip() if " " in cut else cut


def _has_placeholder(text: str) -> bool:
    return any(p in text for p in PLACEHOLDER_TOKENS)


def title_choice(docs: list[Doc], n: int, seed: int, *, passage_chars: int = 600) -> list[Problem]:
    """Up to `n` problems, one per titled document, distractors drawn from the same split."""
    titled = [
        d
        for d in docs
        if d.title
        and MIN_TITLE_WORDS <= len(d.title.split()) <= MAX_TITLE_WORDS
        and not _has_placeholder(d.title)
    ]
    titles = sorted({d.title for d in titled})
    if len(titles) < len(LETTERS):
        return []
    rng = random.Random(f"title_choice:{seed}")
    out = []
    for doc in rng.sample(titled, min(n, len(titled))):
        options = [doc.title, *rng.sample([t for t in titles if t != doc.title], len(LETTERS) - 1)]
        rng.shuffle(options)
        letter = LETTERS[options.index(doc.title)]
        listed = "\n".join(f"{c}) {t}" for c, t in zip(LETTERS, options, strict=True))
        prompt = f"Which title fits this passage best?\n\n{passage(doc.text, passage_chars)}\n\n{listed}"
        out.append(
            Problem("title_choice", prompt, f"The passage is from: {doc.title}\n{FINAL}{letter}", letter)
        )
    return out


def cloze(docs: list[Doc], n: int, seed: int, *, passage_chars: int = 600) -> list[Problem]:
    """Up to `n` problems, one per document: a word of the passage, blanked once."""
    rng = random.Random(f"cloze:{seed}")
    out = []
    for doc in rng.sample(docs, min(n, len(docs))):
        text = passage(doc.text, passage_chars)
        # A word that occurs once, so the blank has one answer; not in the first 50 characters,
        # so there is context before it.
        counts: dict[str, int] = {}
        for m in _WORD.finditer(text):
            counts[m.group().lower()] = counts.get(m.group().lower(), 0) + 1
        candidates = [
            m
            for m in _WORD.finditer(text)
            if len(m.group()) >= MIN_BLANK_CHARS and counts[m.group().lower()] == 1 and m.start() >= 50
        ]
        if not candidates:
            continue
        m = rng.choice(candidates)
        blanked = text[: m.start()] + "____" + text[m.end() :]
        prompt = f"Fill in the blank with the missing word.\n\n{blanked}"
        out.append(Problem("cloze", prompt, f"{FINAL}{m.group()}", m.group()))
    return out


CORPUS_TASKS = {"title_choice": title_choice, "cloze": cloze}

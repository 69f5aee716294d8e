"""Paragraph-level dedup: paragraphs that repeat across many documents are boilerplate, removed.

Navigation, cookie banners, share buttons and templates survive text extraction as lines that
recur, word for word, across the pages of a site or a CMS. CCNet (Wenzek et al. 2020, Section
3.2) removes paragraphs repeated across a shard, Dolma and DCLM (BFF) paragraphs already seen
through a Bloom filter; Llama 3 (Dubey et al. 2024, Section 3.1.1) removes "lines that appeared
more than 6 times in each bucket of 30M documents" from every document carrying them, and found
that it removes navigation menus and cookie warnings but also "frequent high-quality text", with
"strong improvements" all the same. Refinery follows Llama 3's rule:

- a **paragraph** is a line of the text (trafilatura writes one paragraph a line, as CCNet's
  paragraphs are the lines of a WET record); two paragraphs are the same when their normalized
  texts are (corpus/minhash.py `normalize`: case, punctuation and spacing folded), compared by a
  64-bit key, the first half of their BLAKE2b exact hash;
- a paragraph of fewer than `min_words` words is neither counted nor removed;
- a paragraph counts once per document that carries it, however often it repeats inside it (the
  Gopher repetition filter judges repetition inside a document);
- a paragraph carried by at least `min_documents` documents is removed from every one of them,
  with all its repeats. Default 7: Llama 3's "more than 6 times". Deviations: Llama 3 counts
  occurrences, per bucket of 30M documents; here documents, over the whole run (so 7 carriers in
  a run of a thousand pages is a far lower bar than 7 in 30M);
- a document left with no word is `duplicate:paragraphs` (it was made of boilerplate only).
"""

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np

PARAGRAPHS = "duplicate:paragraphs"
MIN_DOCUMENTS = 7  # Llama 3 (Dubey et al. 2024, Section 3.1.1): lines seen more than 6 times
MIN_WORDS = 1  # Llama 3 sets no minimum: one-word lines ("Share", "Menu") are boilerplate too


def split_paragraphs(text: str | None) -> list[str]:
    return (text or "").split("\n")


def paragraph_keys(texts: Sequence[str | None]) -> list[list[tuple[int, int]]]:
    """Per document, per paragraph (line): (64-bit key of its normalized text, its words).

    Vectorized over the lines of many documents with corpus/minhash.py `hash_batch`, in batches of
    about BATCH_CODE_POINTS characters; with ngram=1 its shingles are the words, so the shingle
    offsets count them."""
    # here, not at the top: corpus/minhash.py imports datasketch (~1 s), and jobs/config.py, which
    # every command loads, needs only this module's constants
    from corpus.minhash import BATCH_CODE_POINTS, hash_batch

    lines = [split_paragraphs(t) for t in texts]
    flat = [line for doc in lines for line in doc]
    keys: list[int] = []
    words: list[int] = []
    start, size = 0, 0
    for i, line in enumerate(flat):
        size += len(line) + 1
        if size >= BATCH_CODE_POINTS or i == len(flat) - 1:
            batch = hash_batch(flat[start : i + 1], ngram=1)
            first_half = np.array([int(h[:16], 16) for h in batch.exact], dtype=np.uint64)
            keys.extend(first_half.view(np.int64).tolist())  # signed: Spark has no unsigned type
            words.extend(np.diff(batch.offsets).tolist())
            start, size = i + 1, 0
    out, at = [], 0
    for doc in lines:
        out.append(list(zip(keys[at : at + len(doc)], words[at : at + len(doc)], strict=True)))
        at += len(doc)
    return out


def distinct_keys(paragraphs: Sequence[tuple[int, int]], min_words: int = MIN_WORDS) -> list[int]:
    """The keys a document contributes to the counts: each paragraph of `min_words` words or more,
    once, sorted."""
    return sorted({key for key, words in paragraphs if words >= min_words})


@dataclass(frozen=True)
class Stripped:
    text: str  # the document without its frequent paragraphs
    removed: int  # paragraphs (lines) removed, every repeat counted
    removed_chars: int  # characters removed, the line breaks of removed lines included
    emptied: bool  # paragraphs were removed and no line with a word is left


def strip_paragraphs(
    text: str | None, paragraphs: Sequence[tuple[int, int]], frequent: Collection[int]
) -> Stripped:
    """`text` without the paragraphs whose key is in `frequent`; `paragraphs` is its
    `paragraph_keys` entry. Kept lines are joined as they were, by one line break."""
    lines = split_paragraphs(text)
    assert len(lines) == len(paragraphs), f"{len(lines)} lines but {len(paragraphs)} paragraph keys"
    kept = [line for line, (key, _) in zip(lines, paragraphs, strict=True) if key not in frequent]
    left = "\n".join(kept)
    words_left = any(words and key not in frequent for key, words in paragraphs)
    removed = len(lines) - len(kept)
    return Stripped(left, removed, len(text or "") - len(left), removed > 0 and not words_left)

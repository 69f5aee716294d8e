"""Seeded hash draws: a number in [0, 1) per key, the same on the driver and every executor.

A document is sampled, held out or put in a fold by `hashed_unit(its id, seed)` against a rate,
so the choice depends on the id alone: not on partitioning, scheduling or the other documents,
and a document stays on its side as the corpus grows. The k documents of smallest unit are a
sample of exactly min(k, n) documents with the same properties (a bottom-k sample), which
Spark selects without the corpus reaching the driver (jobs/sampling.py).

The project's one hash draw: the quality classifier's folds and held-out sites
(classifiers/quality.py), the corpus tasks' sample and split (training/corpus_tasks.py), and,
scaled to 62-bit integers, the mixture's repeats, the tokenizer sample and the shards' order
and validation split (corpus/mix.py `key`).
"""

import hashlib


def hashed_unit(key: str, seed: int) -> float:
    """A number in [0, 1) from a hash of (seed, key): the same key, the same number, in any order.

    The first 8 bytes of sha256("{seed}:{key}"), over 2**64. Salt the key (`f"fold:{group}"`)
    for a draw independent of another one made from the same key and seed.
    """
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64

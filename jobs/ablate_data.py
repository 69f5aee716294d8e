"""The data of `refinery ablate` (jobs/ablate.py): each variant's training documents, the
held-out evaluation sets, decontamination against them, the shared tokenizer and the shards.
No torch here; the run is read with pyarrow on the driver (the proxy budgets are small).

- **Held-out sites**: a site (registered domain; a document without one is its own site) is
  held out when key(seed, "ablate-heldout", site) < heldout_fraction (corpus/mix.py `key`).
  Its documents are in no variant's training set, whatever the stage; sites rather than
  documents, so a held-out page is not predicted from its own site's template seen in training.
- **Variants**: the kept rows of a stage (`documents`, `annotated`, `deduped`, `mixed`,
  `decontam`), each document `repeats` times for the stages that set it (mixed, decontam), once
  otherwise. `without: [lang, ...]` (annotated only) adds back the rejected rows that pass the
  run's other annotated rules, re-decided from the stored signals with the run's own config
  (jobs/annotated.py `make_annotator`; the quality threshold from its manifest): the corpus
  the annotated stage would have kept with those steps switched off. The stored text is the one
  the steps saw (C4 line cleaning and PII redaction stay applied).
- **Evaluation sets**: `reference` (the configured files, by default data/heldout/fiction.jsonl.gz,
  corpus/heldout.py), `crawl` (the held-out sites' documents as extracted, documents/kept) and
  `crawl_kept` (those of them that the most curated stage among the variants kept).
- **Decontamination**: every variant's documents are matched against the n-grams of all three
  sets (corpus/decontam.py) and cut or removed, so no variant trains on evaluation text, and a
  near copy of a held-out page on another site does not leak it.
- **Shards**: corpus/shards.py `write_split` plus the manifest contract, as training/testing.py
  writes them; a variant's copies are ordered by key(seed, "ablate-order", id, copy).
"""

import os
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from corpus import mix
from corpus.decontam import Decontaminator, read_texts
from corpus.manifest import read_json, write_json_atomic
from corpus.shards import MANIFEST, token_dtype, write_split
from corpus.tokenizer import END_OF_TEXT, encode_documents, file_hash, load

STAGES = ("documents", "annotated", "deduped", "mixed", "decontam")  # pipeline order
REPEAT_STAGES = ("mixed", "decontam")  # stages whose rows carry `repeats`
FILTER_NAMES = ("url", "lang", "gopher_rep", "gopher_quality", "c4", "fineweb", "quality")
EVAL_SETS = ("reference", "crawl", "crawl_kept")
COLUMNS = ["id", "domain", "text", "repeats", "signals", "lang", "lang_score", "quality", "reject", "bucket"]
BATCH_ROWS = 1024


@dataclass(frozen=True)
class Doc:
    id: str
    text: str
    copies: int = 1


def stage_dir(run: Path, stage: str) -> Path:
    if not (run / stage / "manifest.json").is_file():
        raise FileNotFoundError(f"{run / stage}: no finished {stage} stage in the run")
    return run / stage


def read_rows(directory: Path, split: str) -> Iterator[dict[str, Any]]:
    for part in sorted((directory / split).glob("part-*.parquet")):
        file = pq.ParquetFile(part)
        columns = [c for c in COLUMNS if c in file.schema_arrow.names]
        for batch in file.iter_batches(BATCH_ROWS, columns=columns):
            yield from batch.to_pylist()


def heldout_rule(seed: int, fraction: float) -> Callable[[dict[str, Any]], bool]:
    """True for a row of a held-out site."""
    limit = mix.threshold(fraction)
    return lambda row: mix.key(seed, "ablate-heldout", row.get("domain") or row["id"]) < limit


def redecider(run: Path, without: tuple[str, ...]) -> Callable[[dict[str, Any]], str | None]:
    """The first failing annotated rule of a row with the steps `without` switched off."""
    # Here, not at the top: jobs.annotated imports pyspark, which only `without:` variants need.
    from corpus.filters.quality import QualityFilter
    from jobs.annotated import make_annotator
    from jobs.config import AnnotatedConfig

    acfg = AnnotatedConfig.model_validate(read_json(run / "run.json")["config"]["annotated"])
    filters = [s.filter for s in make_annotator(acfg, lid_model="").steps if s.filter.name not in without]
    threshold = (read_json(stage_dir(run, "annotated") / "manifest.json").get("quality") or {}).get(
        "threshold"
    )
    if acfg.quality.enabled and "quality" not in without and threshold is not None:
        filters.append(QualityFilter(threshold=threshold))

    def decide(row: dict[str, Any]) -> str | None:
        if row.get("signals") is None:  # never annotated: keep the stored decision
            return row.get("reject")
        view = {**row["signals"], **{k: row.get(k) for k in ("lang", "lang_score", "quality")}}
        return next((rule for f in filters if (rule := f.decide(view)) is not None), None)

    return decide


def variant_docs(
    run: Path, stage: str, without: tuple[str, ...], heldout: Callable[[dict[str, Any]], bool]
) -> list[Doc]:
    """A variant's training documents (held-out sites left out), in id order."""
    directory = stage_dir(run, stage)

    def doc(row: dict[str, Any]) -> Doc:
        copies = (row.get("repeats") or 1) if stage in REPEAT_STAGES else 1
        return Doc(row["id"], row.get("text") or "", copies)

    docs = [doc(r) for r in read_rows(directory, "kept") if not heldout(r)]
    if without:
        decide = redecider(run, without)
        docs += [doc(r) for r in read_rows(directory, "rejected") if not heldout(r) and decide(r) is None]
    return sorted(docs, key=lambda d: d.id)


def eval_sets(
    run: Path, reference_files: tuple[str, ...], curated_stage: str, heldout: Callable[[dict[str, Any]], bool]
) -> dict[str, list[str]]:
    """The texts of each evaluation set (module docstring), documents in id order."""

    def texts(stage: str) -> list[str]:
        rows = sorted(
            (r for r in read_rows(stage_dir(run, stage), "kept") if heldout(r)), key=lambda r: r["id"]
        )
        return [r["text"] for r in rows if r.get("text")]

    reference = [t for path in reference_files for t in read_texts(path)]
    return {"reference": reference, "crawl": texts("documents"), "crawl_kept": texts(curated_stage)}


def decontaminate(docs: list[Doc], dec: Decontaminator) -> tuple[list[Doc], dict[str, int]]:
    """The documents with evaluation n-grams cut out (or removed), and what was done."""
    kept, counts = [], Counter()
    for d in docs:
        text, reject, match = dec.apply(d.text)
        if match.ngrams:
            counts["matched"] += 1
        if reject is not None:
            counts["removed"] += 1
        else:
            counts["cut_chars"] += len(d.text) - len(text)
            kept.append(Doc(d.id, text, d.copies) if text != d.text else d)
    return kept, {k: counts[k] for k in ("matched", "removed", "cut_chars")}


def tokenizer_sample(variants: dict[str, list[Doc]], sample_bytes: int, seed: int) -> list[str]:
    """About `sample_bytes` of text from each variant (documents in a seeded order): no variant's
    text is favoured by the shared tokenizer's merges."""
    texts = []
    for docs in variants.values():
        taken = 0
        for d in sorted(docs, key=lambda d: mix.key(seed, "ablate-tokenizer", d.id)):
            if taken >= sample_bytes:
                break
            texts.append(d.text)
            taken += len(d.text.encode())
    return texts


def encode(tok: Any, texts: list[str], vocab_size: int) -> list[np.ndarray]:
    dtype = token_dtype(vocab_size)
    return [np.asarray(ids, dtype=dtype) for ids in encode_documents(tok, texts)]


def train_stream(tok: Any, docs: list[Doc], vocab_size: int, seed: int) -> list[np.ndarray]:
    """Every copy of every document, tokenized, in the order of key(seed, "ablate-order", id, copy)."""
    encoded = encode(tok, [d.text for d in docs], vocab_size)
    order = sorted(
        (mix.key(seed, "ablate-order", d.id, c), i) for i, d in enumerate(docs) for c in range(d.copies)
    )
    return [encoded[i] for _, i in order]


def write_shards(
    out: Path, tokenizer_path: Path, splits: dict[str, list[np.ndarray]], vocab_size: int
) -> dict:
    """A shards directory (corpus/shards.py contract) with one entry list per split, written into
    a temporary directory and renamed into place."""
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    manifest = {
        "stage": "shards",
        "tokenizer": {"sha256": file_hash(tokenizer_path), "vocab_size": vocab_size},
        "dtype": token_dtype(vocab_size).name,
        "eot_id": load(tokenizer_path).token_to_id(END_OF_TEXT),
        "splits": {name: write_split(tmp, name, docs, vocab_size) for name, docs in splits.items()},
        "buckets": {},
    }
    write_json_atomic(tmp / MANIFEST, manifest)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return manifest

"""tokenizer stage: a sample of RUN/mixed/kept → RUN/tokenizer/tokenizer.json + manifest.json.

The rows are read from RUN/decontam/kept instead when the decontam stage ran on the current
mixed output (jobs/decontam.py `corpus_dir`).

Byte-level BPE with the reserved special tokens (corpus/tokenizer.py), trained on the driver on
a deterministic sample of the mixture: a document is drawn when its key (seed, id) falls below
p * repeats, with p = sample_bytes / (bytes of the mixture, repeats counted), so an upsampled
bucket weighs in the sample as in the mixture without duplicating its text in it (a document
with p * repeats >= 1 is simply taken). Executors scan the Parquet parts; only the sample
travels to the driver. HF `tokenizers` trains deterministically (merge ties are broken by the
pair), so the same sample gives a byte-identical tokenizer.json; its sha256 in the manifest is
what the shards record and training checks.

Driver holds: the sample's texts, independent draws of expected total `sample_bytes` (100 MB by
default; an expectation, not a hard cap: the relative spread is about 1 / sqrt(documents
drawn), widened by the spread of document sizes), the BPE trainer's counts over them, and one
list of texts per work unit until they are joined (O(units)).

`refinery tokenizer train RUN` (jobs/tokenizer_cli.py) runs this stage alone.
"""

import importlib.metadata
import logging
import time
from functools import partial
from typing import Any

import pyarrow.compute as pc
from pyspark.sql import SparkSession

from corpus import mix
from corpus.fs import is_file, join, open_output
from corpus.manifest import fingerprint, read_json
from corpus.tokenizer import END_OF_TEXT, PLACEHOLDER_TOKENS, RESERVED_TOKENS, file_hash, load, train_bpe
from corpus.units import Unit, plan_parts, unit_batches
from jobs import decontam
from jobs.config import PipelineConfig, TokenizerConfig
from jobs.stage import MANIFEST, ROWS_PER_BATCH, Stage, inject_fault, kept_parts, run_tasks, up_to_date

STAGE = "tokenizer"
VERSION = 3  # 2: mix.key from corpus/sampling.py (one hash draw), other draws; 3: tool tokens at ids 4..7
TOKENIZER_FILE = "tokenizer.json"
log = logging.getLogger(__name__)


def sample_probability(mixed_manifest: dict[str, Any], sample_bytes: int) -> float:
    """p such that documents drawn with probability p * repeats hold about `sample_bytes`."""
    total = sum(b["bytes_after"] for b in mixed_manifest["buckets"].values())
    return min(1.0, sample_bytes / total) if total else 1.0


def main(spark: SparkSession, cfg: PipelineConfig, run_dir: str) -> dict[str, Any]:
    upstream = join(run_dir, "mixed")
    if not is_file(join(upstream, MANIFEST)):
        raise FileNotFoundError(f"{upstream}: no finished mixed stage; run the `mixed` stage first")
    mixed_manifest = read_json(join(upstream, MANIFEST))
    corpus = decontam.corpus_dir(run_dir)  # decontam/ when it ran on this mixed output
    inputs = kept_parts(corpus)
    tcfg = cfg.tokenizer
    key = {
        "version": VERSION,
        "seed": cfg.seed,
        "tokenizer": tcfg.model_dump(mode="json"),
        # a different `tokenizers` release may merge differently
        "tokenizers": importlib.metadata.version("tokenizers"),
    }
    stage = Stage(run_dir, STAGE, fingerprint(key), read_json(join(corpus, MANIFEST))["output_fingerprint"])
    if manifest := up_to_date(stage, log):
        return manifest
    started = time.time()
    # Started before the executors sample, as every stage is: a rerun after a kill finds the
    # partial directory and keeps it (it holds nothing to reuse: the sample is cheap to redo).
    stage.prepare(subdirs=())
    p = sample_probability(mixed_manifest, tcfg.sample_bytes)
    # One task per work unit (corpus/units.py); the sample does not depend on the units.
    units = plan_parts(inputs, cfg.spark.task_target_mb)
    # Part order, then row order: the sample (and so the tokenizer) does not depend on scheduling.
    parts = run_tasks(spark, len(units), partial(_sample_unit, units, cfg.seed, p))
    texts = [t for part in parts for t in part]
    if not texts:
        raise ValueError(f"{upstream}: no text to train a tokenizer on (the mixed stage kept nothing)")
    return _train(stage, tcfg, texts, p, started)


def _sample_unit(units: list[Unit], seed: int, p: float, index: int) -> list[str]:
    """The non-empty texts of work unit `index` drawn into the sample, in row order: a document
    is drawn when its key falls below p * repeats."""
    texts = []
    batches = unit_batches(units[index], ROWS_PER_BATCH, ["id", "repeats", "text"])
    for batch in inject_fault(STAGE, index, batches):  # test-only hook, inert by default
        doc_keys = mix.keys(seed, "tokenizer", batch.column("id").to_pylist())
        repeats = batch.column("repeats").to_numpy(zero_copy_only=False)
        limits = [mix.threshold(p * r) for r in repeats.tolist()]
        chosen = [i for i, (k, lim) in enumerate(zip(doc_keys.tolist(), limits, strict=True)) if k < lim]
        texts.extend(pc.take(batch.column("text"), chosen).to_pylist())
    return [t for t in texts if t]


def _train(stage: Stage, tcfg: TokenizerConfig, texts: list[str], p: float, started: float) -> dict[str, Any]:
    """Train the BPE on the sample, on the driver, save it into the partial directory and publish."""
    tok = train_bpe(texts, tcfg.vocab_size, min_frequency=tcfg.min_frequency, digit_group=tcfg.digit_group)
    path = join(stage.partial, TOKENIZER_FILE)
    with open_output(path) as f:  # the bytes `tok.save` writes, on any filesystem
        f.write(tok.to_str(pretty=True).encode())
    load(path)  # checks the special tokens sit at their ids
    return stage.publish(
        {
            "file": TOKENIZER_FILE,
            "sha256": file_hash(path),
            "vocab_size": tok.get_vocab_size(),
            "vocab_size_requested": tcfg.vocab_size,
            "eot_id": tok.token_to_id(END_OF_TEXT),
            "special_tokens": {t: tok.token_to_id(t) for t in (*RESERVED_TOKENS, *PLACEHOLDER_TOKENS)},
            "sample": {
                "probability": p,
                "documents": len(texts),
                "bytes": sum(len(t.encode()) for t in texts),
            },
            "wall_time_s": round(time.time() - started, 3),
        }
    )

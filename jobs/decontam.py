"""decontam stage: RUN/mixed/kept → RUN/decontam/{kept,rejected}/ + manifest.json.

Reject rule: `decontam:ngram`, a document sharing at least `min_matches` word 13-grams with an
evaluation set (corpus/decontam.py); in `cut` mode the shared spans are cut out instead and
only a document left in no piece or too many is rejected. Every mixed/kept row is in kept/ or
rejected/, `bucket` and `repeats` unchanged; the tokenizer and shards stages read decontam/kept
(`corpus_dir`), so no evaluation text reaches the shards.

1. Driver: the evaluation sets (`eval_sets`): the test split of each `synth_config_files`
   config regenerated from its seeds (procedural tasks) and, with `synth_grounded`, its corpus
   tasks' test problems made from this run's mixed documents exactly as `refinery synth sft
   --run RUN` makes them (training/synth.py); `sft_test_files`, `reference_files` and
   `eval_files`. The corpus tasks' documents are a sample drawn on the executors
   (`grounded_sources`: the config's `sample_documents` rows of smallest seeded hash of the
   id, cut to the passages, jobs/sampling.py); only the sample reaches the driver. Their n-gram
   index (sorted 64-bit hashes and a 64-bit set mask, 16 bytes an n-gram) is built here and
   broadcast: on crawl-sample, 108,327 distinct 13-grams (800 procedural and 103 grounded test
   problems, 80 sections of reference prose), 1.7 MB, 0.8 s.
   The corpus-grounded test problems are passages of kept documents: this stage is what keeps
   those documents out of pretraining.
2. Executors, one task per work unit (the mixed row groups cut into units of about
   `spark.task_target_mb`, corpus/units.py): every row matched against the index, rejected or
   cut, written with jobs/stage.py (resumable per part; part N is unit N).
3. The manifest: the index (per set: texts, texts shorter than n words, n-grams), documents
   matched per set, n-grams matched, copies and bytes removed, characters cut, and the matched
   documents themselves (id, n-grams, sets, the first shared n-gram; the first MAX_LISTED).

The stage key holds the config and the sha256 of every file the sets come from (synth configs,
test, reference and eval files), and its input fingerprint covers the mixed rows, so a finished stage
is found before any set is read or any index built; a changed evaluation file, synth config
or mixed output redoes the stage (the index's fingerprint is recorded in the manifest).

Driver holds: the plan and the part summaries (O(row groups of the input), with at most
MAX_LISTED matches each), the grounded sample (per synth config at most `sample_documents`
rows: id, title and the text cut to `passage_chars` + 1 characters; 20,000 x ~700 bytes by
default) and its test problems, the evaluation files' texts, and the index (16 bytes per
distinct n-gram of the evaluation sets, independent of the corpus size).
`enabled: false` removes an earlier decontam/ directory, so the later stages read mixed/kept.
"""

import inspect
import logging
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

from pyspark import Broadcast
from pyspark.sql import SparkSession

from corpus.decontam import Decontaminator, NgramIndex, read_texts, record_text
from corpus.fs import exists, is_file, join, remove
from corpus.manifest import file_sha256, fingerprint, read_json, sum_counts
from corpus.units import Unit, plan_parts, plan_summary, unit_rows
from jobs.config import PipelineConfig
from jobs.sampling import bottom_k
from jobs.stage import MANIFEST, ROWS_PER_BATCH, Stage, inject_fault, kept_parts, run_parts, up_to_date

STAGE = "decontam"
UPSTREAM = "mixed"
VERSION = 2  # 2: keyed by the evaluation files, not the index; grounded tasks from a capped sample
MAX_LISTED = 1000  # matched documents listed in the manifest (all are counted)
log = logging.getLogger(__name__)


def corpus_dir(run_dir: str | Path) -> str:
    """The stage whose kept rows the tokenizer and shards stages read: decontam when it finished
    on the current mixed output, else mixed (decontam disabled, or not run since mixed changed)."""
    mixed, own = join(run_dir, UPSTREAM), join(run_dir, STAGE)
    if is_file(join(own, MANIFEST)) and is_file(join(mixed, MANIFEST)):
        if (
            read_json(join(own, MANIFEST))["input_fingerprint"]
            == read_json(join(mixed, MANIFEST))["output_fingerprint"]
        ):
            return own
        log.warning("%s: older than %s; reading %s/kept", own, mixed, UPSTREAM)
    return mixed


def _unique(name: str, taken: dict[str, Any]) -> str:
    n, candidate = 1, name
    while candidate in taken:
        n, candidate = n + 1, f"{name}#{n + 1}"
    return candidate


def eval_sets(spark: SparkSession, cfg: PipelineConfig, run_dir: str | Path) -> dict[str, list[str]]:
    """Every configured evaluation set by name (`kind:file`), as lists of texts."""
    from corpus.yaml_config import load_yaml
    from training.synth import SynthSftConfig, grounded, procedural

    dcfg = cfg.decontam
    sets: dict[str, list[str]] = {}
    for path in dcfg.synth_config_files:
        scfg = load_yaml(path, SynthSftConfig)
        name = Path(path).name
        problems = {"procedural": procedural(scfg)["test"]}
        if dcfg.synth_grounded:
            problems["grounded"] = grounded(scfg, grounded_sources(spark, run_dir, scfg))["test"]
        for kind, chosen in problems.items():
            key = _unique(f"sft_test:{name}:{kind}", sets)
            sets[key] = [record_text(p.to_record("test")) for p in chosen]
    for kind, paths in (
        ("sft_test", dcfg.sft_test_files),
        ("reference", dcfg.reference_files),
        ("eval", dcfg.eval_files),
    ):
        for path in paths:
            sets[_unique(f"{kind}:{Path(path).name}", sets)] = read_texts(path)
    if not sets:
        raise ValueError(
            "decontam.enabled but no evaluation set is configured (synth_config_files, sft_test_files, "
            "reference_files, eval_files are empty); set decontam.enabled: false"
        )
    return sets


def grounded_sources(spark: SparkSession, run_dir: str | Path, scfg: Any) -> list[Any]:
    """The documents a synth config's corpus tasks are made from, drawn on the executors: the
    `sample_documents` kept rows of smallest `sample_order`, cut to the passages; the same
    documents `refinery synth sft --run RUN` streams (training/synth.py `corpus_sample`)."""
    from training.corpus_tasks import curated_parts, documents, sample_order, source_rows
    from training.synth import passage_chars

    _, parts = curated_parts(run_dir)
    inputs, limit, seed = [str(p) for p in parts], passage_chars(scfg), scfg.test_seed
    rows = bottom_k(
        spark,
        len(inputs),
        lambda index: source_rows(inputs[index], limit),
        scfg.sample_documents,
        order=lambda row: sample_order(row, seed),
    )
    return documents(rows)


def stage_key(dcfg: Any, task_target_mb: float) -> dict[str, Any]:
    """What the output depends on besides the mixed rows: the config and the content of every file
    the evaluation sets come from. It needs no index, so a finished stage builds none; a change
    to the code that makes the test problems (training/tasks.py, corpus_tasks.py) bumps VERSION."""
    files = (*dcfg.synth_config_files, *dcfg.sft_test_files, *dcfg.reference_files, *dcfg.eval_files)
    return {
        "version": VERSION,
        "decontam": dcfg.model_dump(mode="json"),
        "files": {path: file_sha256(path) for path in sorted(set(files))},
        "task_target_mb": task_target_mb,  # decides the part files
    }


def main(spark: SparkSession, cfg: PipelineConfig, run_dir: str) -> dict[str, Any]:
    dcfg = cfg.decontam
    if not dcfg.enabled:
        return _disabled(run_dir)
    upstream = join(run_dir, UPSTREAM)
    if not is_file(join(upstream, MANIFEST)):
        raise FileNotFoundError(f"{upstream}: no finished mixed stage; run the `mixed` stage first")
    upstream_manifest = read_json(join(upstream, MANIFEST))
    started = time.time()
    stage = Stage(
        run_dir,
        STAGE,
        fingerprint(stage_key(dcfg, cfg.spark.task_target_mb)),
        upstream_manifest["output_fingerprint"],
    )
    if manifest := up_to_date(stage, log):
        return manifest

    # 1: the evaluation sets' n-gram index, on the driver
    index = NgramIndex.build(eval_sets(spark, cfg, run_dir), dcfg.ngram)
    decontaminator = make_decontaminator(index, dcfg)
    log.info(
        "decontam: %s distinct %d-grams from %d evaluation sets in %.1f s",
        f"{len(index):,}",
        index.n,
        len(index.names),
        time.time() - started,
    )

    # 2: match every row, per work unit of the mixed parts (corpus/units.py), in the executors
    inputs = kept_parts(upstream)
    units = plan_parts(inputs, cfg.spark.task_target_mb)
    stage.prepare()
    shipped = spark.sparkContext.broadcast(decontaminator)
    task = partial(_decontaminate_unit, stage, shipped, units)
    extra = {
        "inputs": len(inputs),
        "plan": plan_summary(units, cfg.spark.task_target_mb),
        "input_stage": UPSTREAM,
        "ngram": index.n,
        "mode": dcfg.mode,
        "index": {"ngrams": len(index), "sets": index.stats, "fingerprint": index.fingerprint()},
    }
    # 3: the manifest, with what the parts matched
    finish = partial(_finish, shipped, index.names, extra)
    return run_parts(spark, stage, len(units), task, started=started, finish=finish)


def _disabled(run_dir: str) -> dict[str, Any]:
    """`enabled: false`: an earlier decontam output goes, so the later stages read mixed/kept."""
    for path in (join(run_dir, STAGE), join(run_dir, f".{STAGE}.partial")):
        if exists(path):
            remove(path)
            log.info("decontam: disabled, removed %s", path)
    return {"stage": STAGE, "enabled": False}


def _decontaminate_unit(stage: Stage, shipped: Broadcast, units: list[Unit], part: int) -> dict[str, Any]:
    """Part `part`: the rows of work unit `part`, matched against the broadcast index (a part
    finished earlier is reused)."""
    if done := stage.part_done(part):
        return done
    counts: Counter[str] = Counter()
    listed: list[dict[str, Any]] = []
    rows = unit_rows(units[part], ROWS_PER_BATCH)
    decontaminated = decontaminate_rows(shipped.value, rows, counts, listed)
    decontaminated = inject_fault(STAGE, part, decontaminated)  # test-only hook, inert by default
    return stage.write_part(part, decontaminated, counts=counts, input=units[part].describe(), matches=listed)


def _finish(
    shipped: Broadcast, names: tuple[str, ...], extra: dict[str, Any], parts: list[dict[str, Any]]
) -> dict[str, Any]:
    """The manifest's entries: `extra`, and the documents, n-grams, copies and characters the
    parts matched, removed or cut, with the first MAX_LISTED matched documents by id. The
    executors' copies of the index are released first. Each part's own list leaves its summary
    here (the `_parts/` records keep it for a resume): the manifest lists the matches once."""
    shipped.unpersist()
    counts = sum_counts(p["counts"] for p in parts)
    matches = sorted((m for p in parts for m in p.pop("matches")), key=lambda m: m["id"])
    return {
        **extra,
        "matched": {
            "documents": counts.get("matched.documents", 0),
            "ngrams": counts.get("matched.ngrams", 0),
            "by_set": {name: counts.get(f"matched.set.{name}", 0) for name in names},
        },
        "removed": {"copies": counts.get("removed.copies", 0), "bytes": counts.get("removed.bytes", 0)},
        "cut": {"documents": counts.get("cut.documents", 0), "chars": counts.get("cut.chars", 0)},
        "matches": matches[:MAX_LISTED],
        "matches_listed_all": counts.get("matched.documents", 0) <= MAX_LISTED,
    }


def decontaminate_rows(
    dec: Decontaminator, rows: Iterable[dict[str, Any]], counts: Counter[str], listed: list[dict[str, Any]]
) -> Iterator[dict[str, Any]]:
    """Each row with `reject` set or its text cut; counts and the first MAX_LISTED matches are
    added to `counts` and `listed` as the rows go by."""
    for row in rows:
        counts["documents"] += 1
        original = row["text"] or ""
        text, reject, match = dec.apply(original)
        if match.ngrams:
            names = dec.index.set_names(match.sets)
            counts.update({"matched.documents": 1, "matched.ngrams": match.ngrams})
            counts.update(f"matched.set.{name}" for name in names)
            if len(listed) < MAX_LISTED:
                listed.append(
                    {"id": row["id"], "ngrams": match.ngrams, "sets": names, "example": match.example}
                )
        if reject is not None:
            row["reject"] = reject
            counts.update({"removed.copies": row["repeats"] or 0, "removed.bytes": len(original.encode())})
        elif text != original:
            row["text"] = text
            counts.update({"cut.documents": 1, "cut.chars": len(original) - len(text)})
        yield row


def make_decontaminator(index: NgramIndex, dcfg: Any) -> Decontaminator:
    """The configured Decontaminator over `index` (its keyword arguments are config fields)."""
    accepted = inspect.signature(Decontaminator).parameters
    return Decontaminator(
        index, **{k: v for k, v in dcfg.model_dump().items() if k in accepted and k != "index"}
    )

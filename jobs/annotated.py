"""annotated stage: RUN/documents/kept → RUN/annotated/{kept,rejected}/part-NNNNN.parquet + manifest.json.

Every document gets `lang`/`lang_score` (fastText lid.176), all filter signals, PII counts, a
redacted `text` (classifiers/annotate.py) and `quality`, the quality classifier's P(hq) of that text;
`reject` is the first failing rule in config order: `url:*`, `lang:not_allowed`, `lang:score`,
`gopher_rep:*`, `gopher_quality:*`, `c4:*`, `fineweb:*`, `quality:low`. One Spark task per work
unit: the documents stage's row groups cut into units of about `spark.task_target_mb`
(corpus/units.py), so one large input file is annotated by several tasks and small parts are
merged; part N is unit N, and the plan is in the manifest (`plan`).

Quality (`annotated.quality`, classifiers/quality.py):
- `model: null` trains classifiers for the run first (seconds): the bundled positives against
  a sample of the run's documents in the configured languages, one model per fold of sites,
  each scoring only the sites it did not see (`_run_models`), into
  RUN/annotated/quality/model-K.ftz with held-out figures in model-K.json. The sample is drawn
  on the executors (`_negative_sample`): the documents whose hash of the id falls below
  sample_docs / rows, at most `sample_docs` (10,000) of them, in input order. The same
  documents give the same models.
- `threshold` is decided in the one pass, with the other rules.
- `keep_top_fraction` takes two passes. Pass 1 annotates every part into a staging stage inside
  the partial directory (`._scored.partial/`). The threshold is Spark SQL's `percentile_approx`
  of `quality` over the staged kept rows at accuracy QUANTILE_ACCURACY (the executors
  aggregate; no score goes to the driver): one of the scores, whose rank is within 1/10,000
  of the kept rows of the exact quantile's. It is saved to `_quality.json` and, with the method
  and its rank error, in the manifest. Pass 2 moves each staged part's kept rows below it to
  rejected as `quality:low`, into the stage's own part files. Both passes resume per part, and
  a resumed attempt reuses the saved threshold.

Driver holds: the plan and the part summaries (O(row groups of the input)); with `model: null`,
the training sample (at most `sample_docs` documents with their text: ~34 MB at the 3.4 KB
median crawl page, at most `sample_docs` x the extractor's `max_html_bytes`), the positives
(the bundled file: 3 MB) and the chunks cut from both (at most MAX_CHUNKS_PER_CLASS a class);
the threshold (one number). A finished stage (its manifest matches) trains and reads nothing.
"""

import dataclasses
import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from operator import itemgetter
from pathlib import Path
from typing import Any

from pyspark import SparkFiles
from pyspark.sql import SparkSession

from classifiers.annotate import Annotator, Step
from classifiers.langid import lid176_path
from classifiers.quality import TrainParams, cross_fold, in_languages, report_path, train
from classifiers.quality_data import DOC_COLUMNS, Doc, parquet_doc, read_docs
from corpus.filters.c4 import C4Filter
from corpus.filters.fineweb import FineWebFilter
from corpus.filters.gopher_quality import GopherQualityFilter
from corpus.filters.gopher_repetition import GopherRepetitionFilter
from corpus.filters.language import LanguageFilter
from corpus.filters.quality import QualityFilter
from corpus.filters.url import UrlFilter
from corpus.fs import copy_file, expand, is_file, is_remote, join, local_copy, remove
from corpus.manifest import file_sha256, fingerprint, read_json, write_json_atomic
from corpus.pii import PiiRedactor
from corpus.sampling import hashed_unit
from corpus.units import Unit, file_rows, plan_parts, plan_summary, unit_rows
from jobs.config import AnnotatedConfig, PipelineConfig, build
from jobs.sampling import bottom_k
from jobs.spark import read_parquet, ship
from jobs.stage import (
    MANIFEST,
    ROWS_PER_BATCH,
    Stage,
    inject_fault,
    kept_parts,
    run_parts,
    run_tasks,
    up_to_date,
)

STAGE = "annotated"
VERSION = 3  # 2: quality column and rule; 3: capped training sample, approximate top-fraction threshold
# percentile_approx's accuracy (Spark's default) for keep_top_fraction: the threshold's rank is
# within 1/10,000 of the kept rows of the exact one (1,000 documents in 10 million).
QUANTILE_ACCURACY = 10_000
FOLDS = 2  # the run's own models (cross-fitting, see _run_models)
log = logging.getLogger(__name__)


def make_annotator(
    cfg: AnnotatedConfig, lid_model: str, quality_models: tuple[str, ...] = (), seed: int = 0
) -> Annotator:
    """The configured steps in the order FineWeb runs them; disabled steps are left out. The
    `quality:low` rule is here only with a fixed threshold (top fraction: decided in pass 2)."""
    steps = [
        Step(build(cls, params), clean=getattr(params, "clean_lines", False))
        for cls, params in (
            (UrlFilter, cfg.url),
            (LanguageFilter, cfg.language),
            (GopherRepetitionFilter, cfg.gopher_repetition),
            (GopherQualityFilter, cfg.gopher_quality),
            (C4Filter, cfg.c4),
            (FineWebFilter, cfg.fineweb),
        )
        if params.enabled
    ]
    redactor = build(PiiRedactor, cfg.pii) if cfg.pii.enabled else None
    rule = QualityFilter(threshold=cfg.quality.threshold) if cfg.quality.threshold is not None else None
    return Annotator(
        steps=tuple(steps),
        redactor=redactor,
        lid_model=lid_model,
        quality_models=quality_models if cfg.quality.enabled else (),
        quality=rule if cfg.quality.enabled else None,
        seed=seed,
    )


def _list_files(cfg: AnnotatedConfig) -> list[str]:
    """Every list file the config points at (blocklists): their content is part of the config."""
    dumped = cfg.model_dump()
    return sorted(
        p
        for section in dumped.values()
        if isinstance(section, dict)
        for k, v in section.items()
        if k.endswith("_files")
        for p in v
    )


def _negative_sample(spark: SparkSession, units: list[Unit], rows: int, cap: int, seed: int) -> list[Doc]:
    """The run's documents its own models train on, drawn on the executors, one task per work
    unit: those whose hashed_unit(id, seed) falls below cap / rows (about `cap` of them), at
    most the `cap` of smallest unit, in input order (unit, then row). Only they reach the driver."""
    rate = cap / max(rows, 1)

    def draw(index: int) -> Iterator[tuple[tuple[float, int, int], Doc]]:
        for row, fields in enumerate(unit_rows(units[index], ROWS_PER_BATCH, list(DOC_COLUMNS))):
            doc = parquet_doc(fields, f"unit-{index}:{row}")  # documents rows all have an id
            value = hashed_unit(doc.key, seed)
            if rate >= 1 or value < rate:
                yield (value, index, row), doc

    drawn = bottom_k(spark, len(units), draw, cap, order=itemgetter(0))
    return [doc for _, doc in sorted(drawn, key=lambda pair: pair[0][1:])]


def _run_models(
    spark: SparkSession, cfg: PipelineConfig, stage: Stage, units: list[Unit], rows: int, lid_model: str
) -> list[str]:
    """The run's own quality models, one per fold (cross-fitting): model k is trained on the
    sampled documents of the other folds' sites and scores only the sites of fold k, so no
    document is scored by a model that saw it. With one model trained on the run, the sites it
    trained on scored a mean P(hq) of 0.018 and the held-out ones 0.089 (crawl-sample), which a
    top fraction would turn into a choice of sites. An earlier attempt's models are reused."""
    folder = join(stage.partial, "quality")
    names = [f"model-{k}.ftz" for k in range(FOLDS)]
    paths = [join(folder, name) for name in names]
    reports = [join(folder, report_path(name).name) for name in names]
    if all(map(is_file, [*paths, *reports])):  # reports come after models
        return paths
    # fastText writes local files: for a run in object storage they are trained on local disk and
    # copied in (`_copy_models`).
    local = Path(tempfile.mkdtemp(prefix="refinery-quality-")) if is_remote(folder) else Path(folder)
    quality, language = cfg.annotated.quality, cfg.annotated.language
    sample = _negative_sample(spark, units, rows, quality.sample_docs, cfg.seed)
    languages = language.languages if language.enabled else None
    negatives = list(in_languages(sample, languages, str(local_copy(lid_model))))  # fastText reads a file
    positives = list(read_docs(quality.positives_files))

    def fit(k: int) -> dict[str, Any]:
        others = [d for d in negatives if cross_fold(d.group, FOLDS, cfg.seed) != k]
        return train(positives, others, local / names[k], TrainParams(seed=cfg.seed))

    # Each training runs in its own fastText process: the threads only wait for them.
    try:
        with ThreadPoolExecutor(FOLDS) as pool:
            trained = list(pool.map(fit, range(FOLDS)))
    except ValueError as exc:
        raise ValueError(
            f"annotated.quality: cannot train the run's own quality models ({exc}); set "
            "annotated.quality.model to a `refinery classifier train` model, or enabled: false"
        ) from None
    for name, report in zip(names, trained, strict=True):
        # one short line; the counts per class and held-out group are in the model's report file
        data, held_out = report["data"], report["held_out"]
        log.info(
            "annotated: trained %s in %.1f s on %d hq + %d cc documents: held-out ROC AUC %.3f, F1 %.3f (%s)",
            name,
            report["train_seconds"],
            data["hq"]["documents"],
            data["cc"]["documents"],
            held_out["roc_auc"],
            held_out["f1"],
            report_path(name).name,
        )
    if is_remote(folder):
        _copy_models(local, folder, names)
    return paths


def _copy_models(local: Path, folder: str, names: list[str]) -> None:
    """Models trained on local disk into the run's folder in object storage, the models first and
    then their reports (a model without its report is trained again on a resume)."""
    for name in names:
        copy_file(local / name, join(folder, name))
    for name in names:
        copy_file(report_path(local / name), join(folder, report_path(name).name))
    shutil.rmtree(local)


def _top_fraction_threshold(
    spark: SparkSession, kept_dir: str | Path, fraction: float, accuracy: int = QUANTILE_ACCURACY
) -> float | None:
    """A score at the (1 - fraction) quantile of the kept rows, by Spark SQL's `percentile_approx`
    over the Parquet files (the executors aggregate; no score goes to the driver); None when no
    row is kept. It is one of the scores, and its rank among them is within n / accuracy of
    (1 - fraction) * n: Spark's stated relative error 1 / accuracy (Greenwald-Khanna sketches
    of O(accuracy) entries per task, merged)."""
    frame = read_parquet(spark, expand(join(kept_dir, "*.parquet")), ["quality"])
    return frame.selectExpr(f"percentile_approx(quality, {1.0 - fraction}, {accuracy}) AS t").first()["t"]


def main(spark: SparkSession, cfg: PipelineConfig, run_dir: str) -> dict[str, Any]:
    upstream = join(run_dir, "documents")
    if not is_file(join(upstream, MANIFEST)):
        raise FileNotFoundError(f"{upstream}: no finished documents stage; run the `documents` stage first")
    inputs = kept_parts(upstream)
    upstream_manifest = read_json(join(upstream, MANIFEST))
    lid_model = cfg.annotated.lid_model or lid176_path()
    key = fingerprint(_stage_key(cfg, lid_model))
    stage = Stage(run_dir, STAGE, key, upstream_manifest["output_fingerprint"])
    if manifest := up_to_date(stage, log):
        return manifest
    started = time.time()
    stage.prepare()
    units = plan_parts(inputs, cfg.spark.task_target_mb)
    # The models are shipped to every executor (addFile of a local copy: jobs/spark.py `ship`), so
    # the same code runs on a cluster whose workers do not share the driver's file system, and a
    # model in a bucket is fetched once, by the driver.
    lid_name = ship(spark, lid_model, "lid")
    models, extra = _quality_models(spark, cfg, stage, units, upstream_manifest["rows"]["kept"], lid_model)
    names = tuple(ship(spark, m, "quality") for m in models)
    annotator = make_annotator(cfg.annotated, lid_model=lid_name, quality_models=names, seed=cfg.seed)
    annotate = partial(_annotate_unit, stage, annotator, names, units)
    quality = cfg.annotated.quality
    if quality.enabled and quality.keep_top_fraction is not None:
        # Pass 1 annotates into a staging stage; pass 2 (the task) decides the rows into the stage.
        task, decided = _score_then_decide(spark, stage, annotate, len(units), quality.keep_top_fraction)
        extra["quality"].update(decided)
    else:
        task = partial(annotate, stage)
    extra = {"inputs": len(inputs), "plan": plan_summary(units, cfg.spark.task_target_mb), **extra}
    return run_parts(spark, stage, len(units), task, started=started, finish=partial(_finish, stage, extra))


def _stage_key(cfg: PipelineConfig, lid_model: str) -> dict[str, Any]:
    """What the output depends on besides the documents: the config and the content of every
    list and model it names."""
    quality = cfg.annotated.quality
    return {
        "version": VERSION,
        "annotated": cfg.annotated.model_dump(mode="json"),
        "lists": {p: file_sha256(p) for p in _list_files(cfg.annotated)},
        "lid_model": file_sha256(lid_model),
        # A given model is part of the config; a trained one follows from the lists and the input.
        "quality_model": file_sha256(quality.model) if quality.enabled and quality.model else None,
        "seed": cfg.seed,
        "task_target_mb": cfg.spark.task_target_mb,  # decides the part files
    }


def _quality_models(
    spark: SparkSession, cfg: PipelineConfig, stage: Stage, units: list[Unit], rows: int, lid_model: str
) -> tuple[list[str], dict[str, Any]]:
    """The quality models the tasks score with (none with quality off), and the manifest's
    `quality` entry: the given model, else the run's own (`_run_models`); a run too small to
    train its own only leaves the quality column empty, unless a quality rule was asked for."""
    quality = cfg.annotated.quality
    if not quality.enabled:
        return [], {}
    try:
        models = [quality.model] if quality.model else _run_models(spark, cfg, stage, units, rows, lid_model)
    except ValueError as exc:
        if quality.threshold is not None or quality.keep_top_fraction is not None:
            raise  # a quality rule was asked for: it cannot be applied without a model
        # Scoring only: a run too small to train its own model still annotates everything else.
        log.warning("annotated: %s; the quality column stays empty", exc)
        return [], {"quality": {"skipped": str(exc)}}
    # Trained models move with the directory: RUN/annotated/quality/model-K.ftz once committed.
    where = models if quality.model else [join(stage.final, "quality", Path(m).name) for m in models]
    entries = [{"model": w, "sha256": file_sha256(m)} for w, m in zip(where, models, strict=True)]
    return models, {"quality": {"models": entries, "threshold": quality.threshold}}


def _annotate_unit(
    stage: Stage, annotator: Annotator, names: tuple[str, ...], units: list[Unit], target: Stage, index: int
) -> dict[str, Any]:
    """Annotate the rows of work unit `index` into part `index` of `target` (the stage, or its
    staging stage with a top fraction); a part finished in either is reused."""
    if done := stage.part_done(index) or target.part_done(index):
        return done
    local = dataclasses.replace(
        annotator,
        lid_model=SparkFiles.get(annotator.lid_model),
        quality_models=tuple(SparkFiles.get(name) for name in names),
    )
    unit = units[index]
    rows = (local(doc) for doc in unit_rows(unit, ROWS_PER_BATCH))
    rows = inject_fault(STAGE, index, rows)  # test-only hook, inert by default
    return target.write_part(index, rows, counts={"documents": unit.rows}, input=unit.describe())


def _score_then_decide(
    spark: SparkSession,
    stage: Stage,
    annotate: Callable[[Stage, int], dict[str, Any]],
    n_units: int,
    fraction: float,
) -> tuple[Callable[[int], dict[str, Any]], dict[str, Any]]:
    """Pass 1 of `keep_top_fraction` and its threshold: pass 2's task and the manifest's figures.
    Every unit is annotated into the staging stage; the threshold comes from its kept rows and is
    saved in the partial directory, so that a resumed attempt reuses it."""
    scored = _scored(stage)
    scored.prepare()
    run_tasks(spark, n_units, partial(annotate, scored))
    saved = join(stage.partial, "_quality.json")
    if not is_file(saved):
        kept = join(scored.partial, "kept")
        threshold = _top_fraction_threshold(spark, kept, fraction) if n_units else None
        write_json_atomic(saved, {"keep_top_fraction": fraction, "threshold": threshold})
    threshold = read_json(saved)["threshold"]
    decided = {
        "keep_top_fraction": fraction,
        "threshold": threshold,
        "threshold_method": {"function": "percentile_approx", "accuracy": QUANTILE_ACCURACY},
        "threshold_rank_error": 1 / QUANTILE_ACCURACY,
    }
    return partial(_decide_part, stage, scored, QualityFilter(threshold=threshold)), decided


def _scored(stage: Stage) -> Stage:
    """The staging stage of a top fraction's pass 1, inside the partial directory."""
    return Stage(stage.partial, "_scored", stage.config_hash, stage.input_fingerprint)


def _decide_part(stage: Stage, scored: Stage, rule: QualityFilter, index: int) -> dict[str, Any]:
    """Pass 2: staged part `index` into part `index` of the stage, its kept rows below the
    threshold rejected as `quality:low` (a part finished earlier is reused)."""
    if done := stage.part_done(index):
        return done
    staged = scored.part_done(index)
    rows = (
        {**row, "reject": rule.decide(rule.signals(row))} if row["reject"] is None else row
        for row in _rows(scored, staged)
    )
    return stage.write_part(
        index, rows, counts={"documents": staged["counts"]["documents"]}, input=staged["input"]
    )


def _rows(stage: Stage, summary: dict[str, Any]):
    """The staged rows of one part: its rejected rows, then its kept rows, each in file order."""
    for split in ("rejected", "kept"):
        yield from file_rows(join(stage.partial, summary["files"][split]["file"]), ROWS_PER_BATCH)


def _finish(stage: Stage, extra: dict[str, Any], parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Every part is decided: the staging directory of a top fraction goes, before the commit."""
    remove(_scored(stage).partial)  # staging only: the decided parts are in place
    return extra

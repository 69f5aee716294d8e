"""Checks `refinery run` makes before it starts Spark or writes anything to RUN.

Every problem found here would otherwise surface minutes into a run, after earlier stages had
written their outputs: a model or list file that does not exist (the annotated stage hashes it
when it starts), a stage whose upstream stage never finished, an output directory that holds
another run, or a credential in the config's Spark settings (run.json would record it). An input
file that cannot be read (empty, not a WARC) is refused here only with `--strict`; otherwise the
documents stage lists it in its manifest and the run goes on.
Each check raises `ValueError` or `FileNotFoundError` with one line naming the file or key and
what is wrong; jobs/cli.py prints it and exits with status 2.
"""

from pathlib import Path
from typing import Any

from pydantic import BaseModel

from corpus.fs import exists, is_file, is_remote, join
from corpus.inputs import file_problem
from corpus.manifest import read_json
from corpus.yaml_config import MISSING, differences
from jobs import train_stages

# Upstream stages each stage reads; one of them must be requested in the same run or finished
# already (jobs/<stage>.py raises the same error later, after Spark has started).
UPSTREAMS: dict[str, tuple[str, ...]] = {
    "annotated": ("documents",),
    "deduped": ("annotated",),
    "mixed": ("deduped", "annotated"),
    "decontam": ("mixed",),
    "tokenizer": ("mixed",),
    "shards": ("mixed",),
}
REQUIRES_ALL: dict[str, tuple[str, ...]] = {"shards": ("tokenizer",)}  # besides its UPSTREAMS
# With decontam enabled, these stages read decontam/kept (jobs/decontam.py `corpus_dir`); without a
# finished decontam stage they would read mixed/kept and train on rows never checked against the
# evaluation sets.
READS_DECONTAM = ("tokenizer", "shards")
# run.json fields that identify a run: another value means another run's outputs. Spark settings
# (master, memory) and the training stages' local scratch folder do not change what a stage writes,
# so they are left out of the comparison.
IDENTITY = ("config", "inputs", "source")
NOT_IDENTITY = ("spark", "train.scratch")
# Parts of a setting's name that say its value is a credential (spark.executorEnv.AWS_SECRET_ACCESS_KEY).
SECRET_WORDS = ("SECRET", "TOKEN", "PASSWORD")


def check_no_secrets(cfg: Any) -> None:
    """No credential in the config's Spark settings: run.json records the config. Executors get
    theirs from their environment (README, "Runs on object storage")."""
    for key in cfg.spark.conf:
        if any(word in key.upper() for word in SECRET_WORDS):
            raise ValueError(
                f"spark.conf.{key}: a credential in the config would be written to run.json; "
                "set it in the executors' environment or use instance roles"
            )


def check_input_file(path: str) -> None:
    """The file can be read as what its name says (corpus/inputs.py `file_problem`): for
    `--strict`, which refuses up front the bad files a run would otherwise list and skip."""
    if (problem := file_problem(path)) is not None:
        raise ValueError(f"--input {path}: {problem}")


def check_inputs(files: list[str], *, strict: bool) -> None:
    """With `strict`, every input file is readable as its kind (one read of its head each, on the
    driver). Without, a bad file is the documents stage's to list and skip; a glob that matches
    nothing was refused already (jobs/run.py `expand_inputs`)."""
    if strict:
        for path in files:
            check_input_file(path)


def _must_exist(path: str | None, what: str) -> None:
    """A local path or a URI (one metadata request) names an existing file."""
    if path is not None and not is_file(path):
        raise FileNotFoundError(f"{what}: {path}: no such file")


def check_config_files(cfg: Any, stages: list[str]) -> None:
    """Model and list files of the stages to run exist (the config names them by path). The
    documents stage decides annotated's URL and language rules first (jobs/documents.py
    `make_gate`), so it needs annotated's lists and language model too."""
    if "annotated" in stages or "documents" in stages:
        ann = cfg.annotated
        _must_exist(ann.lid_model, "annotated.lid_model (fastText language-ID model)")
        if ann.quality.enabled:
            _must_exist(ann.quality.model, "annotated.quality.model (quality classifier)")
            if ann.quality.model is None:
                for p in ann.quality.positives_files:
                    _must_exist(p, "annotated.quality.positives_files")
        for section, params in ann:  # the filters' word and URL lists
            if section == "quality" or not isinstance(params, BaseModel) or not params.enabled:
                continue
            for key, value in params:
                if key.endswith("_files"):
                    for p in value:
                        _must_exist(p, f"annotated.{section}.{key}")
    if "mixed" in stages:
        for p in cfg.mixed.domain_list_files:
            _must_exist(p, "mixed.domain_list_files")
    for stage in stages:  # training stages name their configs (jobs/train_stages.py)
        if stage in train_stages.STAGES:
            key = train_stages.STAGES[stage][1]
            _must_exist(getattr(cfg.train, key), f"train.{key}")
            train_stages.load_stage_config(cfg, stage)  # a bad key fails now, not after curation


def required_upstreams(stage: str, decontam_enabled: bool) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(any of, all of): the stages `stage` reads, one of the first and every one of the second.
    A disabled decontam stage reads nothing (it only removes its old output)."""
    if stage == "decontam" and not decontam_enabled:
        return (), ()
    every = REQUIRES_ALL.get(stage, ())
    if decontam_enabled and stage in READS_DECONTAM:
        every = ("decontam", *every)
    return UPSTREAMS.get(stage, ()), every


def check_upstreams(run_dir: str | Path, stages: list[str], *, decontam_enabled: bool) -> None:
    """Every stage to run finds the stages it reads finished in RUN or requested in this run."""

    def ready(name: str) -> bool:
        return name in stages or is_file(join(run_dir, name, "manifest.json"))

    for stage in stages:
        any_of, every = required_upstreams(stage, decontam_enabled)
        missing = [any_of[0]] if any_of and not any(ready(u) for u in any_of) else []
        missing += [u for u in every if not ready(u)]
        if missing:
            raise FileNotFoundError(
                f"--stages {stage}: {join(run_dir, missing[0])} is not finished; "
                f"add `{missing[0]}` to --stages or run it first"
            )


def check_run_dir(run_dir: str | Path, record: dict[str, Any], *, force: bool) -> None:
    """RUN is new, empty, or holds this same run (same config, inputs and source): a rerun
    resumes it. Another run's outputs are refused unless `force`; then the stages whose
    config or input changed are redone (jobs/stage.py) and the others kept.

    Inputs and source are compared only where both runs name them: `--stages annotated` alone
    has no inputs, and neither changes what an earlier documents stage read.
    """
    if force or not exists(run_dir):
        return
    if is_file(run_dir):
        raise ValueError(f"--out {run_dir}: exists and is not a directory")
    previous = join(run_dir, "run.json")
    if not is_file(previous):
        # An object store's folder exists only while an object is in it.
        if is_remote(str(run_dir)) or any(Path(run_dir).iterdir()):
            raise ValueError(
                f"--out {run_dir}: not empty and has no run.json (not a run directory); "
                "choose another --out, or pass --force to write into it"
            )
        return
    try:
        old = read_json(previous)
    except ValueError as exc:
        raise ValueError(f"{previous}: unreadable ({exc}); pass --force to overwrite it") from None
    changed = []
    for key in IDENTITY:
        a, b = old.get(key), record.get(key)
        if key != "config" and (not a or not b):
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            # A key only one side has is a field another Refinery version added or removed.
            changed += [
                f"config.{k}"
                for k, x, y in differences(a, b)
                if MISSING not in (x, y) and not any(k == n or k.startswith(f"{n}.") for n in NOT_IDENTITY)
            ]
        elif a != b:
            changed.append(key)
    if changed:
        shown = ", ".join(changed[:5]) + (f" (+{len(changed) - 5} more)" if len(changed) > 5 else "")
        raise ValueError(
            f"--out {run_dir}: holds another run (run.json differs in {shown}); choose another --out, "
            "or pass --force to rerun there (stages whose config or input changed are redone)"
        )


def check_earlier_runs(cfg: Any, stages: list[str], run_dir: Path) -> None:
    """Each run in `deduped.against` has a finished deduped stage with keys of this run's dedup
    parameters (jobs/deduped.py `earlier_runs`, which the stage calls again when it starts)."""
    if "deduped" in stages:
        from jobs.deduped import earlier_runs  # pyspark: imported only when the check applies

        earlier_runs(cfg.deduped, str(run_dir))


def check(
    cfg: Any,
    stages: list[str],
    files: list[str],
    run_dir: str | Path,
    record: dict[str, Any],
    *,
    force: bool,
    strict: bool = False,
) -> None:
    """All of the above, cheapest first; nothing is written."""
    check_no_secrets(cfg)
    check_run_dir(run_dir, record, force=force)
    check_config_files(cfg, stages)
    check_upstreams(run_dir, stages, decontam_enabled=cfg.decontam.enabled)
    check_earlier_runs(cfg, stages, run_dir)
    check_inputs(files, strict=strict)

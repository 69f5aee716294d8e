"""The training stages of `refinery run`, after the shards: pretrain → synth_sft → sft →
synth_prefs → reward → align → eval.

They run when the config's `train` section names their configs (conf/full.yaml does; the
default conf/pipeline.yaml stops at the shards). Outputs live in RUN/train/:

    pretrain/   checkpoints, metrics.jsonl, loss.png        (training/pretrain.py)
    sft_data/   train.jsonl, test.jsonl, report.json        (training/synth.py)
    sft/        checkpoints, metrics.jsonl, loss.png        (training/sft.py)
    prefs/      preference pairs and their report            (training/preferences.py)
    reward/     the reward model                             (training/reward.py)
    align/      the aligned model, metrics, align.png        (training/align.py, `align_method`)
    rounds/     iterative rounds from the SFT model, rounds.md (training/rounds.py; optional)
    eval.json   task accuracy of each model on the SFT test split, and each model against the
                one before it: wins, losses, sign-test p (training/eval_tasks.py)

Rerunning is resuming: a training phase continues from its latest checkpoint and does nothing
when that checkpoint is its last step; a changed config is an error naming the changed keys
(training/loop.py), since silently discarding a trained model is worse than asking. Synthesis
and evaluation are skipped when their output records the same inputs.

A run in object storage (`--out s3://…`, `run_stage`): torch trains on one machine, on local
disk, so each stage writes into a local working folder, `train.scratch` (default: the system's
temporary directory, refinery-train/) / HASH of the run's URI, laid out as RUN/train. The curation
outputs it reads (shards, the tokenizer, the corpus tasks' documents) are read from the bucket
(corpus/fs.py). When the stage ends, its output is copied to RUN/train/ in the same layout, and
then RUN/train/_finished/STAGE.json: the commit, holding the stage's key (its config, the
fingerprint of the curation output it read and the keys of the training stages it read) and
what it returned. A rerun skips a stage whose marker holds its key, downloading nothing; a stage
interrupted midway (no marker) resumes from the working folder's checkpoints when they are on
this machine, else starts over; a stage that reads an earlier stage's output (sft the pretrained
checkpoint, eval every model) gets a local copy of it unless the working folder holds the very
copy that marker commits. On a local run the outputs themselves say what is done, as above.
"""

import hashlib
import logging
import tempfile
from pathlib import Path
from typing import Any

from corpus.fs import copy_file, copy_tree, is_file, is_remote, join, make_dirs, remove
from corpus.manifest import fingerprint, read_json, write_json_atomic
from jobs.config import PipelineConfig

log = logging.getLogger(__name__)
TRAIN = "train"
# RUN/train/timing.json: each training stage's wall time, for the report's stage table (the
# curation stages keep theirs in their manifests).
TIMING = "timing.json"
# RUN/train/_finished/STAGE.json: a training stage of a run in object storage is complete (module
# docstring); the working folder keeps a copy of each marker whose output it holds.
FINISHED = "_finished"
# The layout of RUN/train/eval.json, part of its key: 2 added "comparisons". A file of another
# layout is evaluated again (the per-problem answers a comparison needs are not kept in it).
EVAL_RECORD = 2


# Each stage reads the curation outputs from RUN (`run_dir`, a path or a URI) and reads and writes
# the training outputs in `train`, a local folder: RUN/train, or the working folder's train/.


def pretrain_stage(cfg: PipelineConfig, run_dir: str | Path, train: Path) -> dict[str, Any]:
    from training.pretrain import pretrain

    train_cfg = load_stage_config(cfg, "pretrain")
    result = pretrain(train_cfg, join(run_dir, "shards"), train / "pretrain", resume=True)
    return {"summary": result}


def synth_sft_stage(cfg: PipelineConfig, run_dir: str | Path, train: Path) -> dict[str, Any]:
    from training.synth import format_report, synthesize

    synth_cfg = load_stage_config(cfg, "synth_sft")
    out = train / "sft_data"
    inputs = {"config": synth_cfg.model_dump(mode="json"), "corpus": _curated_fingerprint(run_dir)}
    report = out / "report.json"
    if report.is_file() and read_json(report).get("inputs") == inputs:
        log.info("synth_sft: up to date, skipped (%s)", out)
        return {"summary": read_json(report)["tasks"]}
    summary = synthesize(synth_cfg, run_dir, out)
    write_json_atomic(report, {**read_json(report), "inputs": inputs})  # marks the output complete
    log.info("synth_sft: wrote %s\n%s", out, format_report(summary))
    return {"summary": summary}


def sft_stage(cfg: PipelineConfig, run_dir: str | Path, train: Path) -> dict[str, Any]:
    from training.sft import sft

    sft_cfg = load_stage_config(cfg, "sft")
    return {"summary": sft(sft_cfg, train / "pretrain", train / "sft_data", train / "sft", resume=True)}


def synth_prefs_stage(cfg: PipelineConfig, run_dir: str | Path, train: Path) -> dict[str, Any]:
    """Preference pairs from the SFT model (on-policy) and from rules, for `reward` and DPO."""
    from training.checkpoint import latest_checkpoint
    from training.preferences import format_report, synthesize

    prefs_cfg = load_stage_config(cfg, "synth_prefs")
    sft = latest_checkpoint(train / "sft")
    if sft is None:
        raise FileNotFoundError(f"synth_prefs: no SFT checkpoint in {train / 'sft'}; run the sft stage")
    data, out = train / "sft_data", train / "prefs"
    inputs = {
        "config": prefs_cfg.model_dump(mode="json"),
        "sft": str(sft),
        "data": read_json(data / "report.json").get("inputs"),
    }
    report = out / "report.json"
    if report.is_file() and read_json(report).get("inputs") == inputs:
        log.info("synth_prefs: up to date, skipped (%s)", out)
        return {"summary": _pair_counts(read_json(report))}
    summary = synthesize(prefs_cfg, sft, data, out)
    write_json_atomic(report, {**summary, "inputs": inputs})  # marks the output complete
    log.info("synth_prefs: wrote %s\n%s", out, format_report(summary))
    return {"summary": _pair_counts(summary)}


def _pair_counts(report: dict[str, Any]) -> dict[str, int]:
    return {split: sum(r["pairs"] for r in report[split].values()) for split in ("train", "test")}


def reward_stage(cfg: PipelineConfig, run_dir: str | Path, train: Path) -> dict[str, Any]:
    from training.reward import train_reward

    reward_cfg = load_stage_config(cfg, "reward")
    result = train_reward(reward_cfg, train / "sft", train / "prefs", train / "reward", resume=True)
    return {"summary": result}


def align_stage(cfg: PipelineConfig, run_dir: str | Path, train: Path) -> dict[str, Any]:
    """`train.align_method` from the SFT model; the reward model and pairs when they exist."""
    from training.align import align

    method = cfg.train.align_method
    reward, pairs = train / "reward", train / "prefs"
    result = align(
        method,
        load_stage_config(cfg, "align"),
        train / "sft",
        train / "sft_data",
        train / "align",
        reward=reward if enabled(cfg, "reward") else None,
        pairs=pairs if enabled(cfg, "synth_prefs") else None,
        resume=True,
    )
    return {"summary": {"method": method, **result}}


def rounds_stage(cfg: PipelineConfig, run_dir: str | Path, train: Path) -> dict[str, Any]:
    """Iterative rounds from the SFT model; the preference pairs join every reward model when the
    synth_prefs stage runs. A rerun resumes after the last finished round."""
    from training.rounds import rounds

    table = rounds(
        load_stage_config(cfg, "rounds"),
        train / "sft",
        train / "sft_data",
        train / "rounds",
        pairs=train / "prefs" if enabled(cfg, "synth_prefs") else None,
    )
    return {"summary": table[-1]}


def eval_stage(cfg: PipelineConfig, run_dir: str | Path, train: Path) -> dict[str, Any]:
    """Greedy task accuracy of every trained model on the SFT test split, side by side, and each
    model tested against the one before it in training order (training/eval_tasks.py)."""
    from corpus.tokenizer import load as load_tokenizer
    from training.chat import ChatTokens
    from training.checkpoint import latest_checkpoint, load_model
    from training.eval_tasks import evaluation_record, format_table, read_problems, task_correctness
    from training.significance import comparison_lines

    models = {name: latest_checkpoint(train / name) for name in ("pretrain", "sft", "align")}
    models = {name: path for name, path in models.items() if path is not None}
    data = train / "sft_data" / "test.jsonl"
    problems = read_problems(data, limit=cfg.train.eval_limit)
    checkpoints = {n: str(p) for n, p in models.items()}
    key = fingerprint({"models": checkpoints, "problems": problems, "record": EVAL_RECORD})
    out = train / "eval.json"
    if out.is_file() and read_json(out).get("key") == key:
        log.info("eval: up to date, skipped (%s)", out)
        return {"summary": read_json(out)["accuracy"]}
    correct = {}
    for name, path in models.items():
        chat = ChatTokens(load_tokenizer(path / "tokenizer.json"))
        correct[name] = task_correctness(load_model(path), chat, problems)
    record = evaluation_record(problems, correct)
    # `data` relative to RUN, as `refinery eval tasks --out` names its problems file
    write_json_atomic(
        out, {"key": key, "checkpoints": checkpoints, "data": str(data.relative_to(train.parent)), **record}
    )
    table = format_table(record["accuracy"], record["problems"], record["majority"])
    lines = [table, *comparison_lines(record["comparisons"])]
    log.info("eval: task accuracy on the SFT test split\n%s", "\n".join(lines))
    return {"summary": record["accuracy"]}


def _curated_fingerprint(run_dir: str | Path) -> str | None:
    """The output fingerprint of the stage the corpus tasks read (training/corpus_tasks.py)."""
    from training.corpus_tasks import CURATED_STAGES

    for stage in CURATED_STAGES:
        manifest = join(run_dir, stage, "manifest.json")
        if is_file(manifest):
            return read_json(manifest)["output_fingerprint"]
    return None


def _pretrain_config(cfg: PipelineConfig, path: str):
    from training.config import load_pretrain_config

    return load_pretrain_config(path)


def _synth_config(cfg: PipelineConfig, path: str):
    from corpus.yaml_config import load_yaml
    from training.synth import SynthSftConfig

    return load_yaml(path, SynthSftConfig)


def _sft_config(cfg: PipelineConfig, path: str):
    from corpus.yaml_config import load_yaml
    from training.config import SftConfig

    return load_yaml(path, SftConfig)


def _prefs_config(cfg: PipelineConfig, path: str):
    from corpus.yaml_config import load_yaml
    from training.preferences import SynthPreferencesConfig

    return load_yaml(path, SynthPreferencesConfig)


def _reward_config(cfg: PipelineConfig, path: str):
    from corpus.yaml_config import load_yaml
    from training.config import RewardConfig

    return load_yaml(path, RewardConfig)


def _rounds_config(cfg: PipelineConfig, path: str):
    from corpus.yaml_config import load_yaml
    from training.config import RoundsConfig

    return load_yaml(path, RoundsConfig)


def _align_config(cfg: PipelineConfig, path: str):
    from corpus.yaml_config import load_yaml
    from training.align import CONFIGS

    return load_yaml(path, CONFIGS[cfg.train.align_method])


# name -> (the stage, the `train:` key naming its config file, that file's loader)
STAGES = {
    "pretrain": (pretrain_stage, "pretrain_config", _pretrain_config),
    "synth_sft": (synth_sft_stage, "synth_config", _synth_config),
    "sft": (sft_stage, "sft_config", _sft_config),
    "synth_prefs": (synth_prefs_stage, "preferences_config", _prefs_config),
    "reward": (reward_stage, "reward_config", _reward_config),
    "align": (align_stage, "align_config", _align_config),
    "rounds": (rounds_stage, "rounds_config", _rounds_config),
    "eval": (eval_stage, "sft_config", _sft_config),
}

# Stages a config may name that conf/full.yaml does not: the one-command run trains without them.
OPTIONAL = frozenset({"rounds"})

# The stages that train in training/loop.py, which logs its own progress about every minute.
LOGS_PROGRESS = frozenset({"pretrain", "sft", "reward", "align"})
# Each stage's output under RUN/train, and the training stages whose outputs it reads.
OUTPUTS = {
    "pretrain": "pretrain",
    "synth_sft": "sft_data",
    "sft": "sft",
    "synth_prefs": "prefs",
    "reward": "reward",
    "align": "align",
    "rounds": "rounds",
    "eval": "eval.json",
}
READS = {
    "pretrain": (),
    "synth_sft": (),
    "sft": ("pretrain", "synth_sft"),
    "synth_prefs": ("sft", "synth_sft"),
    "reward": ("sft", "synth_prefs"),
    "align": ("sft", "synth_sft", "reward", "synth_prefs"),
    "rounds": ("sft", "synth_sft", "synth_prefs"),
    "eval": ("pretrain", "sft", "align", "synth_sft"),
}


def run_stage(name: str, cfg: PipelineConfig, run_dir: str | Path) -> dict[str, Any]:
    """Training stage `name` of the run in `run_dir`; in object storage, through a local working
    folder, skipped when its marker holds its key (module docstring)."""
    stage = STAGES[name][0]
    if not is_remote(run_dir):
        return stage(cfg, Path(run_dir), Path(run_dir) / TRAIN)
    run_dir = str(run_dir)
    upstream = {u: m for u in READS[name] if (m := _marker(run_dir, u)) is not None}
    key = _stage_key(cfg, name, run_dir, upstream)
    done = _marker(run_dir, name)
    if done is not None and done["key"] == key:
        log.info("%s: up to date, skipped (%s)", name, join(run_dir, TRAIN, FINISHED, f"{name}.json"))
        return done["result"]
    work = working_folder(cfg, run_dir)
    for earlier, marker in upstream.items():
        _fetch(run_dir, work, earlier, marker)
    _drop_other_key(work, name, key)
    result = stage(cfg, run_dir, work / TRAIN)
    _publish(work, run_dir, name, {"stage": name, "key": key, "result": result})
    return result


def working_folder(cfg: PipelineConfig, run_dir: str) -> Path:
    """The local folder the training stages of the run in object storage `run_dir` write to:
    `train.scratch` or the temporary directory's refinery-train/, then a hash of the URI, so that
    a rerun on this machine finds what an interrupted stage left there."""
    root = Path(cfg.train.scratch) if cfg.train.scratch else Path(tempfile.gettempdir()) / "refinery-train"
    return root / hashlib.sha256(run_dir.rstrip("/").encode()).hexdigest()[:16]


def _marker(run_dir: str | Path, name: str) -> dict[str, Any] | None:
    path = join(run_dir, TRAIN, FINISHED, f"{name}.json")
    return read_json(path) if is_file(path) else None


def _stage_key(cfg: PipelineConfig, name: str, run_dir: str, upstream: dict[str, dict[str, Any]]) -> str:
    """What a stage's output depends on: its config (with the align method; the eval limit and
    eval.json's layout, `EVAL_RECORD`), the curation output it reads (pretrain: the shards;
    synth_sft: the corpus tasks' documents) and the keys of the training stages whose outputs it
    reads."""
    curation = None
    if name == "pretrain" and is_file(shards := join(run_dir, "shards", "manifest.json")):
        curation = read_json(shards).get("output_fingerprint")
    elif name == "synth_sft":
        curation = _curated_fingerprint(run_dir)
    options = {"align": cfg.train.align_method, "eval": (cfg.train.eval_limit, EVAL_RECORD)}
    return fingerprint(
        {
            "stage": name,
            "config": load_stage_config(cfg, name).model_dump(mode="json"),
            "option": options.get(name),
            "curation": curation,
            "upstream": {u: m["key"] for u, m in sorted(upstream.items())},
        }
    )


def _fetch(run_dir: str, work: Path, name: str, marker: dict[str, Any]) -> None:
    """Stage `name`'s output from the bucket into the working folder, unless the folder holds the
    copy `marker` commits (it made it, or fetched it before)."""
    local_marker = work / TRAIN / FINISHED / f"{name}.json"
    if local_marker.is_file() and read_json(local_marker) == marker:
        return
    local, remote = work / TRAIN / OUTPUTS[name], join(run_dir, TRAIN, OUTPUTS[name])
    remove(local)
    local.parent.mkdir(parents=True, exist_ok=True)
    if is_file(remote):  # eval.json
        copy_file(remote, local)
    else:
        copy_tree(remote, local)
    _keep_marker(work, name, marker)


def _publish(work: Path, run_dir: str, name: str, marker: dict[str, Any]) -> None:
    """The stage's output from the working folder into RUN/train in the same layout, then its
    marker. The old marker goes first and the old output with it, so an upload cut short leaves
    the stage unfinished, never finished with another run's files."""
    remote_marker = join(run_dir, TRAIN, FINISHED, f"{name}.json")
    remove(remote_marker)
    local, remote = work / TRAIN / OUTPUTS[name], join(run_dir, TRAIN, OUTPUTS[name])
    remove(remote)
    if local.is_file():
        copy_file(local, remote)
    else:
        copy_tree(local, remote)
    write_json_atomic(remote_marker, marker)
    _keep_marker(work, name, read_json(remote_marker))  # as read back, for `_fetch`'s comparison


def _drop_other_key(work: Path, name: str, key: str) -> None:
    """A finished output of another key in the working folder (a stage it reads was redone, or
    --force changed its config) is trained anew, not resumed; an unfinished one, without a marker
    there, resumes (training/loop.py refuses it if its config changed)."""
    local_marker = work / TRAIN / FINISHED / f"{name}.json"
    if local_marker.is_file() and read_json(local_marker)["key"] != key:
        remove(work / TRAIN / OUTPUTS[name])
        local_marker.unlink()


def _keep_marker(work: Path, name: str, marker: dict[str, Any]) -> None:
    """The working folder holds the output `marker` commits (it made it, or fetched it)."""
    (work / TRAIN / FINISHED).mkdir(parents=True, exist_ok=True)
    write_json_atomic(work / TRAIN / FINISHED / f"{name}.json", marker)


def enabled(cfg: PipelineConfig, name: str) -> bool:
    """A training stage runs when the config names the config file it needs."""
    return getattr(cfg.train, STAGES[name][1]) is not None


def record_wall_time(run_dir: str | Path, name: str, seconds: float, result: dict[str, Any]) -> None:
    """Keep `seconds` as the wall time of training stage `name` in RUN/train/timing.json, unless the
    file holds a time for the same result: a rerun that found the stage done (resumed at its last
    checkpoint, or skipped as up to date) returns the same result in a second, and the time it took
    to make that result is the one worth reporting."""
    path = join(run_dir, TRAIN, TIMING)
    timings = read_json(path) if is_file(path) else {}
    key = fingerprint(result)
    if timings.get(name, {}).get("result") != key:
        timings[name] = {"wall_time_s": round(seconds, 3), "result": key}
        make_dirs(join(run_dir, TRAIN))
        write_json_atomic(path, timings)


def load_stage_config(cfg: PipelineConfig, name: str):
    """The validated config of a training stage, from the file the pipeline config names."""
    _, key, load = STAGES[name]
    return load(cfg, getattr(cfg.train, key))

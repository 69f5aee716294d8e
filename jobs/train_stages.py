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
    eval.json   task accuracy of each model on the SFT test split (training/eval_tasks.py)

Rerunning is resuming: a training phase continues from its latest checkpoint and does nothing
when that checkpoint is its last step; a changed config is an error naming the changed keys
(training/loop.py), since silently discarding a trained model is worse than asking. Synthesis
and evaluation are skipped when their output records the same inputs.
"""

import logging
from pathlib import Path
from typing import Any

from corpus.manifest import fingerprint, read_json, write_json_atomic
from jobs.config import PipelineConfig

log = logging.getLogger(__name__)
TRAIN = "train"
# RUN/train/timing.json: each training stage's wall time, for the report's stage table (the
# curation stages keep theirs in their manifests).
TIMING = "timing.json"


def pretrain_stage(cfg: PipelineConfig, run_dir: Path) -> dict[str, Any]:
    from training.pretrain import pretrain

    train_cfg = load_stage_config(cfg, "pretrain")
    result = pretrain(train_cfg, run_dir / "shards", run_dir / TRAIN / "pretrain", resume=True)
    return {"summary": result}


def synth_sft_stage(cfg: PipelineConfig, run_dir: Path) -> dict[str, Any]:
    from training.synth import format_report, synthesize

    synth_cfg = load_stage_config(cfg, "synth_sft")
    out = run_dir / TRAIN / "sft_data"
    inputs = {"config": synth_cfg.model_dump(mode="json"), "corpus": _curated_fingerprint(run_dir)}
    report = out / "report.json"
    if report.is_file() and read_json(report).get("inputs") == inputs:
        log.info("synth_sft: up to date, skipped (%s)", out)
        return {"summary": read_json(report)["tasks"]}
    summary = synthesize(synth_cfg, run_dir, out)
    write_json_atomic(report, {**read_json(report), "inputs": inputs})  # marks the output complete
    log.info("synth_sft: wrote %s\n%s", out, format_report(summary))
    return {"summary": summary}


def sft_stage(cfg: PipelineConfig, run_dir: Path) -> dict[str, Any]:
    from training.sft import sft

    sft_cfg = load_stage_config(cfg, "sft")
    train = run_dir / TRAIN
    return {"summary": sft(sft_cfg, train / "pretrain", train / "sft_data", train / "sft", resume=True)}


def synth_prefs_stage(cfg: PipelineConfig, run_dir: Path) -> dict[str, Any]:
    """Preference pairs from the SFT model (on-policy) and from rules, for `reward` and DPO."""
    from training.checkpoint import latest_checkpoint
    from training.preferences import format_report, synthesize

    prefs_cfg = load_stage_config(cfg, "synth_prefs")
    train = run_dir / TRAIN
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


def reward_stage(cfg: PipelineConfig, run_dir: Path) -> dict[str, Any]:
    from training.reward import train_reward

    train = run_dir / TRAIN
    reward_cfg = load_stage_config(cfg, "reward")
    result = train_reward(reward_cfg, train / "sft", train / "prefs", train / "reward", resume=True)
    return {"summary": result}


def align_stage(cfg: PipelineConfig, run_dir: Path) -> dict[str, Any]:
    """`train.align_method` from the SFT model; the reward model and pairs when they exist."""
    from training.align import align

    train = run_dir / TRAIN
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


def rounds_stage(cfg: PipelineConfig, run_dir: Path) -> dict[str, Any]:
    """Iterative rounds from the SFT model; the preference pairs join every reward model when the
    synth_prefs stage runs. A rerun resumes after the last finished round."""
    from training.rounds import rounds

    train = run_dir / TRAIN
    table = rounds(
        load_stage_config(cfg, "rounds"),
        train / "sft",
        train / "sft_data",
        train / "rounds",
        pairs=train / "prefs" if enabled(cfg, "synth_prefs") else None,
    )
    return {"summary": table[-1]}


def eval_stage(cfg: PipelineConfig, run_dir: Path) -> dict[str, Any]:
    """Greedy task accuracy of every trained model on the SFT test split, side by side."""
    from corpus.tokenizer import load as load_tokenizer
    from training.chat import ChatTokens
    from training.checkpoint import latest_checkpoint, load_model
    from training.eval_tasks import evaluation_record, format_table, read_problems, task_accuracy

    train = run_dir / TRAIN
    models = {name: latest_checkpoint(train / name) for name in ("pretrain", "sft", "align")}
    models = {name: path for name, path in models.items() if path is not None}
    data = train / "sft_data" / "test.jsonl"
    problems = read_problems(data, limit=cfg.train.eval_limit)
    key = fingerprint({"models": {n: str(p) for n, p in models.items()}, "problems": problems})
    out = train / "eval.json"
    if out.is_file() and read_json(out).get("key") == key:
        log.info("eval: up to date, skipped (%s)", out)
        return {"summary": read_json(out)["accuracy"]}
    accuracy = {}
    for name, path in models.items():
        chat = ChatTokens(load_tokenizer(path / "tokenizer.json"))
        accuracy[name] = task_accuracy(load_model(path), chat, problems)
    checkpoints = {n: str(p) for n, p in models.items()}
    record = evaluation_record(problems, accuracy)
    # `data` relative to RUN, as `refinery eval tasks --out` names its problems file
    write_json_atomic(
        out, {"key": key, "checkpoints": checkpoints, "data": str(data.relative_to(run_dir)), **record}
    )
    table = format_table(accuracy, record["problems"], record["majority"])
    log.info("eval: task accuracy on the SFT test split\n%s", table)
    return {"summary": accuracy}


def _curated_fingerprint(run_dir: Path) -> str | None:
    """The output fingerprint of the stage the corpus tasks read (training/corpus_tasks.py)."""
    from training.corpus_tasks import CURATED_STAGES

    for stage in CURATED_STAGES:
        manifest = run_dir / stage / "manifest.json"
        if manifest.is_file():
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


def enabled(cfg: PipelineConfig, name: str) -> bool:
    """A training stage runs when the config names the config file it needs."""
    return getattr(cfg.train, STAGES[name][1]) is not None


def record_wall_time(run_dir: Path, name: str, seconds: float, result: dict[str, Any]) -> None:
    """Keep `seconds` as the wall time of training stage `name` in RUN/train/timing.json, unless the
    file holds a time for the same result: a rerun that found the stage done (resumed at its last
    checkpoint, or skipped as up to date) returns the same result in a second, and the time it took
    to make that result is the one worth reporting."""
    path = run_dir / TRAIN / TIMING
    timings = read_json(path) if path.is_file() else {}
    key = fingerprint(result)
    if timings.get(name, {}).get("result") != key:
        timings[name] = {"wall_time_s": round(seconds, 3), "result": key}
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, timings)


def load_stage_config(cfg: PipelineConfig, name: str):
    """The validated config of a training stage, from the file the pipeline config names."""
    _, key, load = STAGES[name]
    return load(cfg, getattr(cfg.train, key))

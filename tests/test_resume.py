import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from training.checkpoint import CHECKPOINTS, latest_checkpoint, step_dir
from training.config import load_pretrain_config
from training.pretrain import pretrain

STEPS = 40
CFG = load_pretrain_config("conf/train/tiny.yaml").model_copy(
    update={"steps": STEPS, "log_every": 1, "eval_every": 10, "save_every": 5, "keep_checkpoints": 20}
)


def losses(out):
    """Every loss the run recorded, by step (timings left out: they differ run to run)."""
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r.get("loss"), r.get("val_loss"), r.get("grad_norm")) for r in records]


def assert_same_state(a, b, files=("model.pt", "optim.pt")):
    """The state files of checkpoint directories `a` and `b` hold bitwise the same tensors."""
    for name in files:
        sa = torch.load(a / name, weights_only=True)
        sb = torch.load(b / name, weights_only=True)
        flat_a, flat_b = _tensors(sa), _tensors(sb)
        assert flat_a.keys() == flat_b.keys()
        for key in flat_a:
            assert torch.equal(flat_a[key], flat_b[key]), f"{name} {key} differs"


def _tensors(obj, prefix=""):
    if isinstance(obj, torch.Tensor):
        return {prefix: obj}
    if isinstance(obj, dict):
        return {k: v for key, val in obj.items() for k, v in _tensors(val, f"{prefix}.{key}").items()}
    if isinstance(obj, list | tuple):
        return {k: v for i, val in enumerate(obj) for k, v in _tensors(val, f"{prefix}[{i}]").items()}
    return {prefix: torch.tensor(obj) if isinstance(obj, int | float) else torch.tensor(0)}


@pytest.fixture(scope="module")
def straight(text_shards, tmp_path_factory):
    out = tmp_path_factory.mktemp("straight")
    pretrain(CFG, text_shards, out, quiet=True)
    return out


def test_resumed_run_matches_an_unbroken_run_bitwise(straight, text_shards, tmp_path):
    # A run stopped after step 20: its checkpoint, records written past it, a line torn by the kill.
    half = step_dir(straight, STEPS // 2)
    shutil.copytree(half, tmp_path / CHECKPOINTS / half.name)
    shutil.copy(straight / "metrics.jsonl", tmp_path / "metrics.jsonl")
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 41, "tokens": 4')
    pretrain(CFG, text_shards, tmp_path, resume=True, quiet=True)
    assert losses(tmp_path) == losses(straight)
    assert_same_state(latest_checkpoint(tmp_path), latest_checkpoint(straight))


def test_killed_process_resumes_to_the_same_weights(straight, text_shards, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(CFG.model_dump(mode="json")))
    out = tmp_path / "out"
    command = [sys.executable, "-m", "jobs.cli", "train", "pretrain", "--config", str(config)]
    command += ["--shards", str(text_shards), "--out", str(out), "--quiet"]
    proc = subprocess.Popen(command, stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": os.getcwd()})
    deadline = time.monotonic() + 120
    while latest_checkpoint(out) is None and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = latest_checkpoint(out)
    assert killed_at is not None and killed_at.name < step_dir(out, STEPS).name, "not killed mid-run"
    pretrain(CFG, text_shards, out, resume=True, quiet=True)
    assert losses(out) == losses(straight)
    assert_same_state(latest_checkpoint(out), latest_checkpoint(straight))


def test_resuming_with_a_changed_config_is_an_error(straight, text_shards, tmp_path):
    shutil.copytree(step_dir(straight, 10), tmp_path / CHECKPOINTS / "step_000010")
    changed = CFG.model_copy(update={"optim": CFG.optim.model_copy(update={"lr": 0.02})})
    with pytest.raises(ValueError, match=r"optim\.lr: 0\.01 -> 0\.02"):
        pretrain(changed, text_shards, tmp_path, resume=True, quiet=True)


def _drop_from_meta(checkpoint, section, key):
    meta = json.loads((checkpoint / "meta.json").read_text())
    del meta["config"][section][key]
    (checkpoint / "meta.json").write_text(json.dumps(meta))


def test_an_option_newer_than_the_checkpoint_resumes_only_at_its_default(straight, text_shards, tmp_path):
    # A checkpoint written before an option existed does not name it: at its default (the old
    # behaviour) the run resumes, set to anything else it is a change like any other.
    older = tmp_path / "older" / CHECKPOINTS / "step_000010"
    shutil.copytree(step_dir(straight, 10), older)
    _drop_from_meta(older, "optim", "cooldown_frac")  # tiny.yaml leaves it at its default
    assert pretrain(CFG, text_shards, tmp_path / "older", resume=True, quiet=True)["step"] == STEPS

    changed = tmp_path / "changed" / CHECKPOINTS / "step_000010"
    shutil.copytree(step_dir(straight, 10), changed)
    _drop_from_meta(changed, "optim", "warmup_steps")  # tiny.yaml sets 10, the default is 100
    with pytest.raises(ValueError, match=r"optim\.warmup_steps: None -> 10"):
        pretrain(CFG, text_shards, tmp_path / "changed", resume=True, quiet=True)

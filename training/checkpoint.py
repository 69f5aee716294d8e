"""Checkpoints: one directory per step, written under a temporary name and renamed when complete.

    OUT/checkpoints/step_000500/
        model.pt        fp32 state_dict of the bare model (no DDP or compile prefixes)
        optim.pt        AdamW state_dict (moments and step counts)
        critic.pt ...   fp32 state_dict of each further module the run trains beside the model
                        (PPO's critic; its moments are in optim.pt, one optimizer for both)
        rng_0.pt ...    each rank's RNG states: torch (and CUDA), numpy, python
        tokenizer.json  the tokenizer the model was trained with, so the directory stands alone
        meta.json       step, resolved config, data position, tokens seen; written last

A directory named `step_*` is complete by construction (the rename is the commit), so
`latest_checkpoint` is simply the highest step; a crash mid-save leaves only a `.step_*.tmp`
directory, which the next save of that step replaces. Everything loads with
`torch.load(weights_only=True)`: RNG states are stored as tensors and lists, not pickled objects.
"""

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from corpus.manifest import write_json_atomic
from training.config import ModelConfig
from training.model import GPT

CHECKPOINTS = "checkpoints"
META = "meta.json"


def step_dir(out: Path, step: int) -> Path:
    return Path(out) / CHECKPOINTS / f"step_{step:06d}"


def latest_checkpoint(out: str | Path) -> Path | None:
    root = Path(out) / CHECKPOINTS
    steps = sorted(p for p in root.glob("step_*") if p.is_dir()) if root.is_dir() else []
    return steps[-1] if steps else None


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() else None,
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), *rest))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def _torch_save(obj: Any, path: Path) -> None:
    with open(path, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())


def save_checkpoint(
    out: Path,
    step: int,
    model: GPT,
    optimizer: torch.optim.Optimizer,
    meta: dict[str, Any],
    tokenizer_path: Path,
    *,
    rank: int = 0,
    keep: int = 2,
    trainable_only: bool = False,
    companions: dict[str, torch.nn.Module] | None = None,
) -> Path:
    """Every rank calls this (it synchronizes them); rank 0 writes all but the RNG files.

    `trainable_only`: model.pt holds only the parameters that require grad (LoRA adapters).
    `companions`: NAME -> module, each saved whole as NAME.pt beside model.pt, which stays the
    model alone (so `load_model` reads a PPO checkpoint as the plain GPT policy)."""
    final = step_dir(out, step)
    tmp = final.with_name(f".{final.name}.tmp")
    distributed = dist.is_initialized()
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    if distributed:
        dist.barrier()
    _torch_save(rng_state(), tmp / f"rng_{rank}.pt")
    if rank == 0:
        state = model.state_dict()
        if trainable_only:
            trained = {name for name, p in model.named_parameters() if p.requires_grad}
            state = {k: v for k, v in state.items() if k in trained}
        _torch_save(state, tmp / "model.pt")
        for name, module in (companions or {}).items():
            _torch_save(module.state_dict(), tmp / f"{name}.pt")
        _torch_save(optimizer.state_dict(), tmp / "optim.pt")
        shutil.copyfile(tokenizer_path, tmp / "tokenizer.json")
    if distributed:
        dist.barrier()  # every rank's RNG file is in place before the rename commits the directory
    if rank == 0:
        write_json_atomic(tmp / META, meta)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        for old in sorted((Path(out) / CHECKPOINTS).glob("step_*"))[:-keep]:
            shutil.rmtree(old)
    if distributed:
        dist.barrier()
    return final


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint directory, or a training output directory (its latest checkpoint); absolute."""
    path = Path(path)
    if (path / META).is_file():
        return path.resolve()
    latest = latest_checkpoint(path)
    if latest is None:
        raise FileNotFoundError(f"{path}: neither a checkpoint nor a training directory with checkpoints")
    return latest.resolve()


def read_meta(path: str | Path) -> dict[str, Any]:
    meta_path = Path(path) / META
    if not meta_path.is_file():
        raise FileNotFoundError(f"{path}: not a checkpoint directory (no {META})")
    return json.loads(meta_path.read_text())


def load_checkpoint(
    path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    rank: int = 0,
    strict: bool = True,
    companions: dict[str, torch.nn.Module] | None = None,
) -> dict:
    """Restore the weights of the model and its `companions`, the optimizer state and this rank's
    RNG; return the checkpoint's meta. `strict=False` loads a checkpoint of trainable parameters
    only over the model as built."""
    device = next(model.parameters()).device
    _, unexpected = model.load_state_dict(
        torch.load(path / "model.pt", map_location=device, weights_only=True), strict=strict
    )
    assert not unexpected, f"{path}: weights the model does not have: {unexpected[:5]}"
    for name, module in (companions or {}).items():
        if not (path / f"{name}.pt").is_file():
            raise FileNotFoundError(f"{path}: no {name}.pt, so the {name} cannot resume; start a new --out")
        module.load_state_dict(torch.load(path / f"{name}.pt", map_location=device, weights_only=True))
    optimizer.load_state_dict(torch.load(path / "optim.pt", map_location=device, weights_only=True))
    rng_file = path / f"rng_{rank}.pt"
    if rng_file.is_file():  # absent when resuming with more ranks than saved: those start fresh
        set_rng_state(torch.load(rng_file, weights_only=True))
    return read_meta(path)


def load_model(path: str | Path, device: str | torch.device = "cpu") -> GPT:
    """The model of a checkpoint directory, fp32, in eval mode (for sampling, export, post-training).

    A LoRA checkpoint holds only adapters: they are loaded over the base checkpoint its config
    names (`init`) and merged, so the result is a plain GPT either way."""
    from training.lora import add_lora, merge_lora

    path = Path(path)
    config = read_meta(path)["config"]
    weights = torch.load(path / "model.pt", map_location=device, weights_only=True)
    if config.get("lora_rank"):
        base = load_model(config["init"], device)
        model = add_lora(
            base, config["lora_rank"], config["lora_alpha"], embeddings=config.get("lora_embeddings", False)
        )
        missing, unexpected = model.load_state_dict(weights, strict=False)
        assert not unexpected and not any(".lora_" in k for k in missing), f"{path}: adapters do not fit"
        return merge_lora(model).eval()
    model = GPT(ModelConfig.model_validate(config["model"])).to(device)
    model.load_state_dict(weights)
    return model.eval()

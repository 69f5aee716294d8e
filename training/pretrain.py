"""Pretraining on the token shards: `refinery train pretrain --config C --shards RUN/shards --out DIR`.

Input: `RUN/shards/` (manifest.json and its train/valid shards) and the tokenizer the shards were
written with (default `RUN/tokenizer/tokenizer.json`). With `init` (`--init CKPT`) the run continues
from a checkpoint's weights, possibly on a longer context (training/continued.py); with
`optim.anneal_frac` and `anneal_shards` its last steps train on other shards of the same tokenizer.
Output, in DIR: `checkpoints/step_*/` (training/checkpoint.py), `metrics.jsonl` (one JSON object
per log or eval step), `loss.png`.

`pretrain()` sets up the shards, the model and its validation (loss and bits per byte on the
valid split), then runs the shared loop of training/loop.py. Distributed runs start under
torchrun (`torchrun --nproc_per_node N -m jobs.cli train pretrain ...`).
"""

import posixpath
from pathlib import Path
from typing import Any

import torch

from corpus.fs import join, local_copy
from corpus.shards import open_split, read_manifest
from corpus.tokenizer import load as load_tokenizer
from training.checkpoint import resolve_checkpoint
from training.config import PretrainConfig
from training.continued import continued_model, resolve_init
from training.data import AnnealedWindows, PackedWindows, token_bytes
from training.evaluate import evaluate
from training.loop import Runtime, anneal_start, runtime, train_loop
from training.model import GPT


def pretrain(
    cfg: PretrainConfig,
    shards: str | Path,
    out: str | Path,
    *,
    tokenizer_path: str | Path | None = None,
    resume: bool = False,
    quiet: bool = False,
) -> dict[str, Any]:
    """Train, evaluate and checkpoint; return the last step's train and validation figures."""
    shards = str(shards)  # a path, or a URI (s3://…: shards read from local copies, corpus/shards.py)
    rt = runtime(cfg)

    # --- data: the shards are checked against the manifest once, by rank 0
    run = posixpath.dirname(shards.rstrip("/"))
    tokenizer_path = local_copy(tokenizer_path or join(run, "tokenizer", "tokenizer.json"))
    manifest = read_manifest(shards)
    if cfg.init:
        cfg = resolve_init(cfg, resolve_checkpoint(cfg.init), manifest["tokenizer"]["sha256"])
    cfg = cfg.model_copy(
        update={"model": cfg.model.model_copy(update={"vocab_size": manifest["tokenizer"]["vocab_size"]})}
    )
    T = cfg.model.context_length
    train_data = _train_windows(cfg, rt, shards, tokenizer_path)
    valid_readers = open_split(shards, "valid", verify=rt.is_main)
    valid_data = PackedWindows(valid_readers, T, shuffle=False, rank=rt.rank, world_size=rt.world)
    nbytes = torch.from_numpy(token_bytes(load_tokenizer(tokenizer_path))).to(rt.device)

    # --- model and optimizer (fused AdamW: one kernel per step on CUDA and CPU); a continued run
    # starts from its checkpoint's weights, the optimizer always fresh
    if cfg.init:
        model = continued_model(cfg)
    else:
        model = GPT(cfg.model)
        model.init_weights(cfg.seed)
    model.to(rt.device)
    optimizer = model.optimizer(cfg.optim, fused=True)

    def validate() -> dict[str, float]:
        batches = valid_data.eval_batches(cfg.eval_windows, cfg.micro_batch)
        result = evaluate(model, batches, nbytes, autocast=rt.autocast)
        return {"loss": result["loss"], "bpb": result["bpb"]}

    return train_loop(
        cfg,
        rt,
        model,
        optimizer,
        train_data,
        validate,
        out,
        tokenizer_path,
        tokens_per_step=cfg.global_batch * T,
        resume=resume,
        quiet=quiet,
    )


def _train_windows(cfg: PretrainConfig, rt: Runtime, shards: Path, tokenizer_path: Path):
    """The training windows: the main shards', switching to the anneal shards' at the anneal."""
    T = cfg.model.context_length

    def windows(directory: Path) -> PackedWindows:
        readers = open_split(directory, "train", tokenizer_path=tokenizer_path, verify=rt.is_main)
        return PackedWindows(readers, T, seed=cfg.seed, rank=rt.rank, world_size=rt.world)

    main = windows(shards)
    if not cfg.anneal_shards:
        return main
    rows_per_step = cfg.global_batch // rt.world
    switch = anneal_start(cfg.steps, cfg.optim) * rows_per_step
    return AnnealedWindows(main, windows(Path(cfg.anneal_shards)), switch)

"""The training loop every phase shares: pretraining, SFT, reward model and alignment set up their
model, data and validation, then call `train_loop`.

`train_loop` reads top to bottom: resume, then per step: learning rate, accumulated micro-batches,
clip, AdamW step, log, evaluate, save. Distributed runs start under torchrun: rank and world
size come from its environment (`runtime()`), gloo on CPU, NCCL on CUDA; plain DDP, every rank
holds the whole model and optimizer. On CPU the same seed gives bitwise the same losses and
weights, and a run resumed from a checkpoint continues bitwise as if never stopped
(tests/test_resume.py). On CUDA kernels such as the embedding backward add in nondeterministic
order, so runs agree only closely.

The data object gives `next_batch(micro_batch)`, a tuple of tensors the model's forward takes
and turns into a loss (`(inputs, targets)` for language modelling; more for preference losses),
and saves its position with `state_dict()`/`load_state_dict()`; `validate()` returns figures
(at least "loss") and is called on every rank. Output, in OUT: `checkpoints/step_*/` (training/checkpoint.py),
`metrics.jsonl` (one JSON object per log or eval step) and `loss.png`.
"""

import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist
from pydantic import BaseModel

from training.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from training.config import RESUMABLE_CHANGES, LoopConfig, OptimConfig

logger = logging.getLogger(__name__)

METRICS = "metrics.jsonl"
PLOT = "loss.png"


class Batches(Protocol):
    def next_batch(self, batch_size: int) -> tuple[torch.Tensor, ...]: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class Runtime:
    rank: int
    local_rank: int
    world: int
    device: torch.device
    autocast: Any  # a torch.autocast context (disabled for float32)

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def runtime(cfg: LoopConfig) -> Runtime:
    """Ranks from torchrun's environment, the device, the process group, threads and precision."""
    rank, local_rank, world = (
        int(os.environ.get(k, d)) for k, d in (("RANK", 0), ("LOCAL_RANK", 0), ("WORLD_SIZE", 1))
    )
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{local_rank}" if cuda else "cpu")
    if world > 1 and not dist.is_initialized():
        if cuda:
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(minutes=10))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cuda:
        torch.set_float32_matmul_precision("high")  # TF32 for the float32 matmuls outside autocast
    else:
        # Adam's moments of embedding rows a batch never touches shrink by beta each step, into
        # denormal floats after ~700 steps; an AdamW step over denormal moments took 1.5x as long
        # here (0.75 vs 0.49 ms per million values). Flushing them to zero costs nothing.
        torch.set_flush_denormal(True)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.dtype == "bfloat16")
    return Runtime(rank, local_rank, world, device, autocast)


def lr_multiplier(step: int, total: int, optim: OptimConfig) -> float:
    """Learning-rate factor for optimizer step `step` (0-based) of `total`.

    Linear warmup over `warmup_steps`, then either a cosine from 1 down to `min_lr_ratio` at the
    last step (Loshchilov & Hutter 2017), or WSD: constant 1 until the last `cooldown_frac` of
    steps, then linear to `min_lr_ratio` (Hägele et al. 2024, "Scaling Laws and Compute-Optimal
    Training Beyond Fixed Training Durations"). WSD's constant phase lets a run be extended
    before its cooldown; cosine fixes the length up front.
    """
    floor = optim.min_lr_ratio
    if step < optim.warmup_steps:
        return (step + 1) / optim.warmup_steps
    if optim.schedule == "cosine":
        progress = (step - optim.warmup_steps) / max(total - 1 - optim.warmup_steps, 1)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    cooldown = max(round(optim.cooldown_frac * total), 1)
    decay_start = total - cooldown
    if step < decay_start:
        return 1.0
    return 1.0 - (1.0 - floor) * (step - decay_start + 1) / cooldown


def _config_changes(saved: dict[str, Any], current: BaseModel, prefix: str = "") -> list[str]:
    """The options of `current` that differ from the checkpoint's `saved` config. An option the
    checkpoint does not name is newer than it; new options default to the old behaviour, so
    one left at its default is no change."""
    dumped = current.model_dump(mode="json")
    fields = type(current).model_fields
    changes = []
    for key in sorted(set(saved) | set(dumped)):
        a, b = saved.get(key), dumped.get(key)
        value = getattr(current, key, None)
        if isinstance(a, dict) and isinstance(value, BaseModel):
            changes += _config_changes(a, value, f"{prefix}{key}.")
        elif (
            key not in saved
            and key in fields
            and b == _dump(fields[key].get_default(call_default_factory=True))
        ):
            continue
        elif a != b and key not in RESUMABLE_CHANGES:
            changes.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return changes


def _dump(value: Any) -> Any:
    return value.model_dump(mode="json") if isinstance(value, BaseModel) else value


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop the records a killed run wrote after the checkpoint it resumes from (and a torn last line)."""
    if path.is_file():
        kept = []
        for line in path.read_text().splitlines():
            try:
                if json.loads(line)["step"] <= step:
                    kept.append(line)
            except json.JSONDecodeError:
                continue
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text("".join(line + "\n" for line in kept))
        os.replace(tmp, path)


def _progress(step: int, total: int, loss: float, tok_per_s: float, eta_s: float) -> None:
    bar_width = 24
    filled = int(bar_width * step / total)
    eta = time.strftime("%H:%M:%S", time.gmtime(eta_s))
    bar = "#" * filled + "." * (bar_width - filled)
    line = f"[{bar}] {step}/{total} loss {loss:.4f} {tok_per_s:,.0f} tok/s ETA {eta}"
    sys.stderr.write(f"\r{line}\x1b[K")
    sys.stderr.flush()


def plot_metrics(metrics_path: Path, png_path: Path) -> None:
    """Train and validation loss against tokens seen, written atomically as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(line) for line in metrics_path.read_text().splitlines() if line]
    train = [(r["tokens"], r["loss"]) for r in records if "loss" in r]
    valid = [(r["tokens"], r["val_loss"]) for r in records if "val_loss" in r]
    fig, ax = plt.subplots(figsize=(7, 4))
    for points, label in ((train, "train"), (valid, "validation")):
        if points:
            ax.plot(*zip(*points, strict=True), label=label, marker="o" if label == "validation" else None)
    ax.set_xlabel("tokens")
    ax.set_ylabel("loss (nats/token)")
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, png_path)


def save_figure(fig, png_path: Path) -> None:
    """Write a matplotlib figure to `png_path` atomically (a reader never sees half a PNG) and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    tmp = png_path.with_name(f".{png_path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, png_path)


def train_loop(
    cfg: LoopConfig,
    rt: Runtime,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    data: Batches,
    validate: Callable[[], dict[str, float]],
    out: str | Path,
    tokenizer_path: str | Path,
    *,
    tokens_per_step: int,
    resume: bool = False,
    quiet: bool = False,
    trainable_only: bool = False,
    meta_extra: dict[str, Any] | None = None,
    weights: torch.nn.Module | None = None,
    step_metrics: Callable[[], dict[str, float]] | None = None,
    companions: dict[str, torch.nn.Module] | None = None,
) -> dict[str, Any]:
    """Train, evaluate and checkpoint; return the last step's train and validation figures.

    `trainable_only`: checkpoints hold only the parameters that require grad (LoRA adapters),
    and resuming loads them over the model as it was built.
    `weights`: the module checkpoints hold and resume restores, when `model` is a loss wrapper
    around it (DPO, GRPO: the policy, so an aligned checkpoint loads as a plain GPT); default `model`.
    `step_metrics`: called at each log record, its figures join the record (alignment: reward,
    KL and response length of the rollouts since the last record).
    `companions`: NAME -> a module trained beside `weights` (PPO's critic), saved as NAME.pt in each
    checkpoint and restored on resume; its parameters are in `optimizer`, so optim.pt holds its moments.
    """
    weights = model if weights is None else weights
    out = Path(out)
    accum = cfg.global_batch // (cfg.micro_batch * rt.world)
    if accum * cfg.micro_batch * rt.world != cfg.global_batch:
        raise ValueError(
            f"global_batch {cfg.global_batch} is not a multiple of micro_batch × {rt.world} ranks"
        )
    # REFINERY_QUIET: `refinery --quiet` (jobs/cli.py) turns the bar off for every training phase
    live = rt.is_main and not quiet and not os.environ.get("REFINERY_QUIET") and sys.stderr.isatty()

    # --- resume: weights, optimizer, RNG, data position, step; later records dropped
    step, tokens, elapsed, train_loss, val = 0, 0, 0.0, float("nan"), {}
    checkpoint = latest_checkpoint(out) if resume else None
    if checkpoint is not None:
        meta = load_checkpoint(
            checkpoint, weights, optimizer, rank=rt.rank, strict=not trainable_only, companions=companions
        )
        changes = _config_changes(meta["config"], cfg)
        if changes:
            raise ValueError(f"{checkpoint}: the config differs from the checkpoint's: " + "; ".join(changes))
        data.load_state_dict(meta["data"])
        step, tokens, elapsed, train_loss = (
            meta["step"],
            meta["tokens"],
            meta["elapsed_s"],
            meta["train_loss"],
        )
        val = {key[len("val_") :]: value for key, value in meta.items() if key.startswith("val_")}
        logger.info("resuming from %s (step %d)", checkpoint, step)
    elif resume:
        logger.info("no checkpoint in %s: starting at step 0", out / "checkpoints")
    out.mkdir(parents=True, exist_ok=True)
    metrics_path = out / METRICS
    if rt.is_main:
        if checkpoint is not None:
            _truncate_metrics(metrics_path, step)
        else:
            metrics_path.unlink(missing_ok=True)
    metrics = open(metrics_path, "a") if rt.is_main else None

    def record(entry: dict[str, Any]) -> None:
        if metrics is not None:
            metrics.write(json.dumps(entry) + "\n")
            metrics.flush()

    def run_validation() -> dict[str, float]:
        result = validate()
        record({"step": step, "tokens": tokens, **{f"val_{k}": v for k, v in result.items()}})
        if rt.is_main:
            if live:
                sys.stderr.write("\n")
            logger.info("step %d: %s", step, ", ".join(f"val {k} {v:.4f}" for k, v in result.items()))
        return result

    # --- wrapping: DDP averages gradients; compile last, around the DDP module
    train_model: torch.nn.Module = model
    ddp = None
    if rt.world > 1:
        ddp = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[rt.local_rank] if rt.cuda else None
        )
        train_model = ddp
    if cfg.compile:
        train_model = torch.compile(train_model)
    params = [p for p in model.parameters() if p.requires_grad]

    if step == 0:
        val = run_validation()
    loss_sum = torch.zeros((), device=rt.device)
    window_start, window_steps = time.perf_counter(), 0
    while step < cfg.steps:
        # --- one optimizer step over `accum` micro-batches per rank
        lr = cfg.optim.lr * lr_multiplier(step, cfg.steps, cfg.optim)
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)  # a group may run at a multiple (PPO's critic)
        for micro in range(accum):
            batch = [t.to(rt.device, non_blocking=True) for t in data.next_batch(cfg.micro_batch)]
            # Gradients are all-reduced only on the last micro-batch of the step.
            last = micro == accum - 1
            with nullcontext() if ddp is None or last else ddp.no_sync(), rt.autocast:
                loss = train_model(*batch)
                (loss / accum).backward()
            loss_sum += loss.detach()
        grad_norm = None
        if cfg.optim.grad_clip is not None:
            grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step, tokens, window_steps = step + 1, tokens + tokens_per_step, window_steps + 1

        # --- log: the loss averaged over the steps since the last log and over all ranks. A step
        # that evaluates or saves also logs, so a resumed run's records match an unbroken run's.
        last_step = step == cfg.steps
        evaluating = (cfg.eval_every and step % cfg.eval_every == 0) or last_step
        saving = (cfg.save_every and step % cfg.save_every == 0) or last_step
        if step % cfg.log_every == 0 or evaluating or saving:
            if rt.world > 1:
                dist.all_reduce(loss_sum)
            train_loss = loss_sum.item() / (window_steps * accum * rt.world)
            if rt.cuda:
                torch.cuda.synchronize()
            now = time.perf_counter()
            elapsed += now - window_start
            tok_per_s = window_steps * tokens_per_step / (now - window_start)
            entry = {"step": step, "tokens": tokens, "loss": train_loss, "lr": lr, "tok_per_s": tok_per_s}
            if grad_norm is not None:
                entry["grad_norm"] = grad_norm.item()
            if step_metrics is not None:
                entry |= step_metrics()
            record(entry)
            if live:
                eta = (cfg.steps - step) * tokens_per_step / tok_per_s
                _progress(step, cfg.steps, train_loss, tok_per_s, eta)
            loss_sum.zero_()
            window_steps = 0

        # --- evaluate and save (every rank takes part: evaluation all-reduces, saving synchronizes)
        if evaluating:
            val = run_validation()
        if saving:
            meta = {
                "step": step,
                "tokens": tokens,
                "elapsed_s": elapsed,
                "world_size": rt.world,
                "config": cfg.model_dump(mode="json"),
                "data": data.state_dict(),
                "train_loss": train_loss,
                **{f"val_{k}": v for k, v in val.items()},
                **(meta_extra or {}),
            }
            save_checkpoint(
                out,
                step,
                weights,
                optimizer,
                meta,
                tokenizer_path,
                rank=rt.rank,
                keep=cfg.keep_checkpoints,
                trainable_only=trainable_only,
                companions=companions,
            )
            if rt.is_main:
                plot_metrics(metrics_path, out / PLOT)
        if window_steps == 0:
            window_start = time.perf_counter()  # evaluation and saving are not training time

    if metrics is not None:
        metrics.close()
    if live:
        sys.stderr.write("\n")
    return {
        "step": step,
        "tokens": tokens,
        "train_loss": train_loss,
        **{f"val_{k}": v for k, v in val.items()},
    }

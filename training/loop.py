"""The training loop every phase shares: pretraining, SFT, reward model and alignment set up their
model, data and validation, then call `train_loop`.

`train_loop` reads top to bottom, one named step each: resume, then per step the learning rate,
the accumulated micro-batches, clip and AdamW step, then log, evaluate and save when due. What it
trains (`_Job`) and how it runs (`_Run`) are fixed for the run; `_State` is what a checkpoint
saves, `_Window` the steps since the last log record. Distributed runs start under torchrun: rank and world
size come from its environment (`runtime()`), gloo on CPU, NCCL on CUDA; plain DDP, every rank
holds the whole model and optimizer. On CPU the same seed gives bitwise the same losses and
weights, and a run resumed from a checkpoint continues bitwise as if never stopped
(tests/test_resume.py). On CUDA kernels such as the embedding backward add in nondeterministic
order, so runs agree only closely.

The data object gives `next_batch(micro_batch)`, a tuple of tensors the model's forward takes
and turns into a loss (`(inputs, targets)` for language modelling; more for preference losses),
and saves its position with `state_dict()`/`load_state_dict()`; `validate()` returns figures
(at least "loss") and is called on every rank. Output, in OUT: `checkpoints/step_*/` (training/checkpoint.py),
`metrics.jsonl` (one JSON object per log or eval step) and `loss.png`. On a terminal rank 0 shows
rich's progress bar on stderr; a redirected log, `--quiet` and `refinery --quiet` get none, and
instead rank 0 logs a line about every minute (corpus/progress.py): `pretrain: step 120/200,
3 min 02 s, about 2 min 01 s left, loss 3.2100`.
"""

import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist
from pydantic import BaseModel
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch.nn.parallel import DistributedDataParallel

from corpus.progress import EVERY_S, estimate
from corpus.yaml_config import MISSING, differences
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

    With `anneal_frac`, the last n = anneal_frac·total steps instead decay linearly from the
    schedule's value at their first step, v, to zero: step s of them trains at v·(total - s)/n, so
    the anneal starts at v and would reach 0 one step past the end (no step trains at lr 0).
    """
    start = anneal_start(total, optim)
    if step < start:
        return _schedule(step, total, optim)
    return _schedule(start, total, optim) * (total - step) / (total - start)


def anneal_start(total: int, optim: OptimConfig) -> int:
    """The first step of the anneal; `total` when there is none."""
    if not optim.anneal_frac:
        return total
    return total - max(round(optim.anneal_frac * total), 1)


def _schedule(step: int, total: int, optim: OptimConfig) -> float:
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


def _config_changes(saved: dict[str, Any], current: BaseModel) -> list[str]:
    """The options of `current` that differ from the checkpoint's `saved` config. An option the
    checkpoint does not name is newer than it; new options default to the old behaviour, so
    one left at its default is no change."""
    changes = []
    for key, a, b in differences(saved, current.model_dump(mode="json")):
        if key.rsplit(".", 1)[-1] in RESUMABLE_CHANGES:
            continue
        if a is MISSING and b == _default(current, key):
            continue
        changes.append(f"{key}: {None if a is MISSING else a!r} -> {None if b is MISSING else b!r}")
    return changes


def _default(model: BaseModel, dotted: str) -> Any:
    """The JSON default of the option at `dotted` in `model`'s nested configs; MISSING where the
    path leaves them (an option only the checkpoint names has none)."""
    *path, name = dotted.split(".")
    for part in path:
        model = getattr(model, part, None)
    fields = type(model).model_fields if isinstance(model, BaseModel) else {}
    if name not in fields:
        return MISSING
    value = fields[name].get_default(call_default_factory=True)
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


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl, in the order they were logged."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_metrics(metrics_path: Path, png_path: Path) -> None:
    """Train and validation loss against tokens seen, written atomically as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(metrics_path)
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


@dataclass(frozen=True)
class _Job:
    """What a phase trains, as its script set it up (`train_loop`'s arguments)."""

    model: torch.nn.Module
    weights: torch.nn.Module
    optimizer: torch.optim.Optimizer
    data: Batches
    validate: Callable[[], dict[str, float]]
    tokens_per_step: int
    trainable_only: bool
    meta_extra: dict[str, Any]
    step_metrics: Callable[[], dict[str, float]] | None
    companions: dict[str, torch.nn.Module] | None


@dataclass(frozen=True)
class _Run:
    """How it runs: the loop's config, the ranks, the micro-batches per rank in a step, the outputs."""

    cfg: LoopConfig
    rt: Runtime
    accum: int
    out: Path
    tokenizer_path: str | Path


@dataclass
class _State:
    """Where the loop is: each checkpoint's meta holds it, and a resumed run starts from it."""

    step: int = 0
    tokens: int = 0
    elapsed: float = 0.0  # seconds of training, evaluation and saving left out
    train_loss: float = math.nan
    val: dict[str, float] = field(default_factory=dict)

    def figures(self) -> dict[str, Any]:
        return {"step": self.step, "tokens": self.tokens, "train_loss": self.train_loss, **_val(self.val)}


@dataclass
class _Window:
    """The steps since the last log record: their summed micro-batch losses (kept on the device, so a
    step does not wait for the GPU) and when they began."""

    loss_sum: torch.Tensor
    start: float
    steps: int = 0


def _val(figures: dict[str, float]) -> dict[str, float]:
    return {f"val_{k}": v for k, v in figures.items()}


def _accumulation(cfg: LoopConfig, rt: Runtime) -> int:
    """Micro-batches per rank in one optimizer step."""
    accum = cfg.global_batch // (cfg.micro_batch * rt.world)
    if accum * cfg.micro_batch * rt.world != cfg.global_batch:
        raise ValueError(
            f"global_batch {cfg.global_batch} is not a multiple of micro_batch × {rt.world} ranks"
        )
    return accum


def _resume(job: _Job, run: _Run) -> _State:
    """Restore the latest checkpoint in OUT: weights, optimizer, RNG, data position and loop state.
    A fresh state when there is none."""
    checkpoint = latest_checkpoint(run.out)
    if checkpoint is None:
        logger.info("no checkpoint in %s: starting at step 0", run.out / "checkpoints")
        return _State()
    meta = load_checkpoint(
        checkpoint,
        job.weights,
        job.optimizer,
        rank=run.rt.rank,
        strict=not job.trainable_only,
        companions=job.companions,
    )
    changes = _config_changes(meta["config"], run.cfg)
    if changes:
        raise ValueError(f"{checkpoint}: the config differs from the checkpoint's: " + "; ".join(changes))
    job.data.load_state_dict(meta["data"])
    logger.info("resuming from %s (step %d)", checkpoint, meta["step"])
    val = {key.removeprefix("val_"): value for key, value in meta.items() if key.startswith("val_")}
    return _State(meta["step"], meta["tokens"], meta["elapsed_s"], meta["train_loss"], val)


class _Metrics:
    """OUT/metrics.jsonl (OUT made if missing), written by rank 0 only: one JSON object per log or eval
    step. A resumed run (`step` > 0) first drops what a killed run wrote after its checkpoint; a fresh
    one starts anew."""

    def __init__(self, run: _Run, step: int):
        run.out.mkdir(parents=True, exist_ok=True)
        self.file = None
        if run.rt.is_main:
            path = run.out / METRICS
            if step:
                _truncate_metrics(path, step)
            else:
                path.unlink(missing_ok=True)
            self.file = open(path, "a")

    def record(self, entry: dict[str, Any]) -> None:
        if self.file is not None:
            self.file.write(json.dumps(entry) + "\n")
            self.file.flush()

    def __enter__(self) -> "_Metrics":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.file is not None:
            self.file.close()


def _show_progress(rt: Runtime, quiet: bool) -> bool:
    """A progress bar on rank 0's terminal only: a redirected log gets no carriage-return lines, and
    REFINERY_QUIET (`refinery --quiet`, jobs/cli.py) turns it off for every training phase."""
    return rt.is_main and not quiet and not os.environ.get("REFINERY_QUIET") and sys.stderr.isatty()


@contextmanager
def _progress_bar(run: _Run, step: int, quiet: bool) -> Iterator[Progress | None]:
    """rich's progress bar on stderr (steps done, loss, tokens/s, time left), or None where it is
    not shown (`_show_progress`).

    Log handlers set up before it hold the real stderr and would write through the bar; while it
    shows, they write to rich's stand-in for sys.stderr, which prints each line above the bar."""
    if not _show_progress(run.rt, quiet):
        yield None
        return
    columns = (BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[figures]}"), TimeRemainingColumn())
    # stdout is left alone: rich would send it to the bar's console, stderr
    bar = Progress(*columns, console=Console(stderr=True), redirect_stdout=False, refresh_per_second=2)
    bar.add_task("train", total=run.cfg.steps, completed=step, figures="")
    stderr = sys.stderr
    root = logging.getLogger().handlers
    handlers = [h for h in root if isinstance(h, logging.StreamHandler) and h.stream is stderr]
    with bar:
        for handler in handlers:
            handler.setStream(sys.stderr)
        try:
            yield bar
        finally:
            for handler in handlers:
                handler.setStream(stderr)


def _advance(bar: Progress | None, entry: dict[str, Any]) -> None:
    if bar is not None:
        figures = f"loss {entry['loss']:.4f}  {entry['tok_per_s']:,.0f} tok/s"
        bar.update(bar.task_ids[0], completed=entry["step"], figures=figures)


class _Heartbeat:
    """Where no progress bar shows (a log file), rank 0's INFO line about every `EVERY_S` seconds: the
    phase (OUT's name), the step of how many, the time so far and left, and the last logged train
    loss. The time left is at this run's pace (evaluation and saving included), from the step it
    started or resumed at."""

    def __init__(self, run: _Run, step: int, on: bool):
        self.name, self.total, self.first = run.out.name, run.cfg.steps, step
        self.on = on and run.rt.is_main
        self.start = self.last = time.monotonic()

    def beat(self, state: _State) -> None:
        now = time.monotonic()
        if not self.on or now - self.last < EVERY_S:
            return
        self.last = now
        progress = estimate(now - self.start, state.step, self.total, start=self.first)
        logger.info("%s: step %s, loss %.4f", self.name, progress, state.train_loss)


def _wrap(model: torch.nn.Module, run: _Run) -> tuple[torch.nn.Module, DistributedDataParallel | None]:
    """The module the steps call, and its DDP wrapper (None on one rank): DDP averages gradients;
    compile goes last, around the DDP module."""
    train_model, ddp = model, None
    if run.rt.world > 1:
        device_ids = [run.rt.local_rank] if run.rt.cuda else None
        ddp = DistributedDataParallel(model, device_ids=device_ids)
        train_model = ddp
    if run.cfg.compile:
        train_model = torch.compile(train_model)
    return train_model, ddp


def _set_lr(optimizer: torch.optim.Optimizer, cfg: LoopConfig, step: int) -> float:
    lr = cfg.optim.lr * lr_multiplier(step, cfg.steps, cfg.optim)
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)  # a group may run at a multiple (PPO's critic)
    return lr


def _micro_batches(
    train_model: torch.nn.Module, ddp: DistributedDataParallel | None, job: _Job, run: _Run, window: _Window
) -> None:
    """Forward and backward over the step's micro-batches, their gradients averaged and their losses
    added to the window's."""
    for micro in range(run.accum):
        batch = [t.to(run.rt.device, non_blocking=True) for t in job.data.next_batch(run.cfg.micro_batch)]
        # Gradients are all-reduced only on the last micro-batch of the step.
        last = micro == run.accum - 1
        with nullcontext() if ddp is None or last else ddp.no_sync(), run.rt.autocast:
            loss = train_model(*batch)
            (loss / run.accum).backward()
        window.loss_sum += loss.detach()


def _optimizer_step(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, cfg: LoopConfig
) -> torch.Tensor | None:
    """Clip, step, clear the gradients; the gradient norm before clipping (None without `grad_clip`)."""
    grad_norm = None
    if cfg.optim.grad_clip is not None:
        params = [p for p in model.parameters() if p.requires_grad]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return grad_norm


def _due(cfg: LoopConfig, step: int) -> tuple[bool, bool, bool]:
    """Whether step `step` logs, evaluates, saves. The last step does all three, and a step that
    evaluates or saves also logs, so a resumed run's records match an unbroken run's."""
    last = step == cfg.steps
    evaluating = bool(cfg.eval_every and step % cfg.eval_every == 0) or last
    saving = bool(cfg.save_every and step % cfg.save_every == 0) or last
    return step % cfg.log_every == 0 or evaluating or saving, evaluating, saving


def _log_record(
    state: _State, window: _Window, job: _Job, run: _Run, lr: float, grad_norm: torch.Tensor | None
) -> dict[str, Any]:
    """Close the window; its log record: the train loss averaged over its steps and over all ranks,
    its tokens/s, the step's lr and gradient norm, and the phase's `step_metrics`."""
    rt = run.rt
    if rt.world > 1:
        dist.all_reduce(window.loss_sum)
    state.train_loss = window.loss_sum.item() / (window.steps * run.accum * rt.world)
    if rt.cuda:
        torch.cuda.synchronize()
    now = time.perf_counter()
    state.elapsed += now - window.start
    tok_per_s = window.steps * job.tokens_per_step / (now - window.start)
    window.loss_sum.zero_()
    window.steps = 0
    entry = {
        "step": state.step,
        "tokens": state.tokens,
        "loss": state.train_loss,
        "lr": lr,
        "tok_per_s": tok_per_s,
    }
    if grad_norm is not None:
        entry["grad_norm"] = grad_norm.item()
    if job.step_metrics is not None:
        entry |= job.step_metrics()
    return entry


def _evaluate(state: _State, job: _Job, run: _Run, metrics: _Metrics) -> None:
    """Validation figures into `state` and the metrics (every rank calls it: evaluation all-reduces)."""
    state.val = job.validate()
    metrics.record({"step": state.step, "tokens": state.tokens, **_val(state.val)})
    if run.rt.is_main:
        logger.info("step %d: %s", state.step, ", ".join(f"val {k} {v:.4f}" for k, v in state.val.items()))


def _save(state: _State, job: _Job, run: _Run) -> None:
    """A checkpoint of the weights, optimizer, data position and loop state, then the loss plot
    (every rank calls it: saving synchronizes)."""
    meta = {
        "step": state.step,
        "tokens": state.tokens,
        "elapsed_s": state.elapsed,
        "world_size": run.rt.world,
        "config": run.cfg.model_dump(mode="json"),
        "data": job.data.state_dict(),
        "train_loss": state.train_loss,
        **_val(state.val),
        **job.meta_extra,
    }
    save_checkpoint(
        run.out,
        state.step,
        job.weights,
        job.optimizer,
        meta,
        run.tokenizer_path,
        rank=run.rt.rank,
        keep=run.cfg.keep_checkpoints,
        trainable_only=job.trainable_only,
        companions=job.companions,
    )
    if run.rt.is_main:
        plot_metrics(run.out / METRICS, run.out / PLOT)


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
    job = _Job(
        model, model if weights is None else weights, optimizer, data, validate, tokens_per_step,
        trainable_only, meta_extra or {}, step_metrics, companions,
    )  # fmt: skip
    run = _Run(cfg, rt, _accumulation(cfg, rt), Path(out), tokenizer_path)
    state = _resume(job, run) if resume else _State()
    with _Metrics(run, state.step) as metrics, _progress_bar(run, state.step, quiet) as bar:
        train_model, ddp = _wrap(model, run)
        if state.step == 0:
            _evaluate(state, job, run, metrics)
        window = _Window(torch.zeros((), device=rt.device), time.perf_counter())
        heartbeat = _Heartbeat(run, state.step, on=bar is None)
        while state.step < cfg.steps:
            lr = _set_lr(optimizer, cfg, state.step)
            _micro_batches(train_model, ddp, job, run, window)
            grad_norm = _optimizer_step(model, optimizer, cfg)
            state.step += 1
            state.tokens += tokens_per_step
            window.steps += 1
            logs, evaluating, saving = _due(cfg, state.step)
            if logs:
                entry = _log_record(state, window, job, run, lr, grad_norm)
                metrics.record(entry)
                _advance(bar, entry)
            if evaluating:
                _evaluate(state, job, run, metrics)
            if saving:
                _save(state, job, run)
            if window.steps == 0:
                window.start = time.perf_counter()  # evaluation and saving are not training time
            heartbeat.beat(state)
    return state.figures()

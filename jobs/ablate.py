"""`refinery ablate [CONFIG] --run RUN --out DIR`: does the curation help?

Identical small models are trained on equal token budgets drawn from chosen stages of a run
(FineWeb's method for choosing its filters: Penedo et al. 2024, Section 3, "ablation models"),
several seeds each, and compared by bits per byte on text none of them trained on:
- `reference`: clean held-out prose (data/heldout/fiction.jsonl.gz by default, corpus/heldout.py);
- `crawl`: the documents of held-out sites as extracted; `crawl_kept`: those of them the most
  curated stage among the variants kept (jobs/ablate_data.py).
`crawl` favours the variants whose text is most like raw crawl and `crawl_kept` the curated ones,
by construction; `reference` is the arbiter.

Decisions (numbers in bench/RESULTS.md):
- **One tokenizer for all variants**, by default trained on the same number of bytes from each
  variant (`tokenizer: neutral`). The run's own tokenizer (`tokenizer: run`) was fit to the
  mixed stage: text the filters drop (other languages, boilerplate) would take more tokens per
  byte, so under an equal token budget the unfiltered variant would see fewer bytes and lose
  for a reason that is the tokenizer's, not the data's. Bits per byte, not loss per token, is
  compared, so the tokenizer's own compression does not enter the figure.
- **Equal token budget**: steps x global_batch x context_length for every variant; a variant
  with fewer tokens is repeated (training/data.py visits the windows in a new permutation each
  epoch) and its epochs are reported. A variant with more sees a random part of its windows.
- **Same model, same data order per seed**: seed s sets the initialization and the window
  order; every variant trains once per seed, so the spread across seeds is the noise floor the
  gap between variants is judged against.
- Training is `training.pretrain.pretrain` (the shared loop) on shards written with
  `corpus.shards.write_split`; evaluation is `training.evaluate.evaluate` on the last checkpoint.

Output, in DIR: `tokenizer/tokenizer.json`, `data/VARIANT/` and `data/eval/` (shards),
`train/VARIANT/seed_S/` (the pretrain output and `result.json`), `ablation.json` (everything,
with mean, std, min and max per variant and evaluation set), `ablation.png` (bits per byte per
variant, min-max bars over seeds), and the table printed. A rerun reuses every `result.json`
whose inputs and config are unchanged; variants whose training shards are identical (`mixed`
with all repeats 1 is `deduped`) share their results.
"""

import argparse
import json
import logging
import math
import multiprocessing
import shutil
import statistics
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, PositiveInt

from corpus.decontam import DEFAULT_N, Decontaminator, NgramIndex
from corpus.heldout import HELDOUT_REFERENCE
from corpus.manifest import fingerprint, write_json_atomic
from corpus.yaml_config import load_yaml
from jobs import ablate_data as data
from training.config import ModelConfig, OptimConfig, PretrainConfig

STRICT = ConfigDict(extra="forbid", frozen=True)
DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "conf" / "ablate.yaml"
RESULT = "result.json"
KEY = "job.json"  # written when a training starts: what its checkpoints belong to
log = logging.getLogger(__name__)


class VariantConfig(BaseModel):
    model_config = STRICT
    stage: Literal["documents", "annotated", "deduped", "mixed", "decontam"]
    without: tuple[str, ...] = ()  # annotated: rules switched off (re-decided from stored signals)
    # another run's stage, e.g. deduped with another config over the same annotated stage: a path
    # relative to `--run` (`../other` for a sibling); None: `--run`'s, which also gives the eval sets
    run: str | None = None

    @pydantic.model_validator(mode="after")
    def _known_rules(self) -> "VariantConfig":
        unknown = [w for w in self.without if w not in data.FILTER_NAMES]
        if unknown:
            raise ValueError(f"without: unknown {unknown}; allowed: {', '.join(data.FILTER_NAMES)}")
        if self.without and self.stage != "annotated":
            raise ValueError(f"without: only with stage annotated (stage is {self.stage})")
        return self


class DecontamParams(BaseModel):
    """corpus/decontam.py's Decontaminator; `cut` by default, so a variant loses only the spans it
    shares with the evaluation sets (boilerplate shared with a held-out site, a quoted novel)."""

    model_config = STRICT
    ngram: PositiveInt = DEFAULT_N
    mode: Literal["remove", "cut"] = "cut"
    min_matches: PositiveInt = 1
    cut_margin_chars: pydantic.NonNegativeInt = 200
    min_piece_chars: pydantic.NonNegativeInt = 200
    max_pieces: PositiveInt = 10


DEFAULT_VARIANTS = {
    "documents": VariantConfig(stage="documents"),
    "annotated": VariantConfig(stage="annotated"),
    "deduped": VariantConfig(stage="deduped"),
    "mixed": VariantConfig(stage="mixed"),
    "annotated_no_lang": VariantConfig(stage="annotated", without=("lang",)),
}
# A proxy of 1.9M parameters (0.85M outside the two embedding matrices) at a 4,096 vocabulary:
# ~8,500 tokens a second of one core's CPU time in bf16 autocast (1.4x float32 at this width).
DEFAULT_TRAIN = PretrainConfig(
    steps=300,
    global_batch=16,
    micro_batch=16,
    dtype="bfloat16",
    threads=1,
    log_every=50,
    eval_every=0,
    eval_windows=128,
    save_every=0,
    keep_checkpoints=1,
    model=ModelConfig(context_length=128, n_layer=4, n_head=4, d_model=128),
    optim=OptimConfig(lr=3e-3, warmup_steps=40),
)


class ProxyConfig(BaseModel):
    """What every study with proxy models shares: the seeds, the shared tokenizer, the held-out
    sites and reference text, decontamination, and the proxy and its budget (the ablation here,
    the mixture fit in jobs/mixture.py)."""

    model_config = STRICT
    seeds: tuple[int, ...] = (0, 1, 2)
    tokenizer: Literal["neutral", "run"] = "neutral"
    vocab_size: int = pydantic.Field(4096, ge=300)
    tokenizer_sample_bytes: PositiveInt = 1_000_000  # per variant
    heldout_fraction: float = pydantic.Field(0.1, gt=0, lt=1)  # of the run's sites
    seed: int = 0  # the held-out sites, the document order, the tokenizer sample
    reference_files: tuple[str, ...] = (str(HELDOUT_REFERENCE),)
    eval_windows: PositiveInt | None = None  # per evaluation set; None: all its windows
    decontam: DecontamParams = DecontamParams()
    workers: PositiveInt = 1  # trainings run at once, in separate processes
    train: PretrainConfig = DEFAULT_TRAIN

    @pydantic.model_validator(mode="after")
    def _shape(self) -> "ProxyConfig":
        if not self.seeds:
            raise ValueError("seeds must not be empty")
        if self.train.global_batch % self.train.micro_batch:
            raise ValueError(f"train.global_batch {self.train.global_batch} is not a multiple of micro_batch")
        return self

    @property
    def budget(self) -> int:
        return self.train.steps * self.train.global_batch * self.train.model.context_length


class AblateConfig(ProxyConfig):
    variants: dict[str, VariantConfig] = DEFAULT_VARIANTS

    @pydantic.model_validator(mode="after")
    def _some_variant(self) -> "AblateConfig":
        if not self.variants:
            raise ValueError("variants must not be empty")
        return self


def load_proxy_config(
    path: str | Path | None, cls: type[ProxyConfig] | None = None, default: Path = DEFAULT_CONFIG
) -> ProxyConfig:
    """The YAML, `reference_files` relative to the file (as the pipeline config's `*_files`)."""
    path = Path(path or default)
    cfg = load_yaml(path, cls or AblateConfig)
    base = path.resolve().parent
    resolved = tuple(str((base / p).resolve()) for p in cfg.reference_files)
    return cfg.model_copy(update={"reference_files": resolved})


def load_ablate_config(path: str | Path | None) -> AblateConfig:
    return load_proxy_config(path, AblateConfig)


# --- data: documents, decontamination, tokenizer, shards --------------------------------------


def prepare(cfg: AblateConfig, run: Path, out: Path) -> dict[str, Any]:
    """Write the tokenizer and every shard directory; return what each variant holds."""
    heldout = data.heldout_rule(cfg.seed, cfg.heldout_fraction)
    docs = {
        name: data.variant_docs(run / (v.run or "."), v.stage, v.without, heldout)
        for name, v in cfg.variants.items()
    }
    curated = max((v.stage for v in cfg.variants.values()), key=data.STAGES.index)
    texts = data.eval_sets(run, cfg.reference_files, curated, heldout)
    index = NgramIndex.build(texts, cfg.decontam.ngram)
    docs, stats = decontaminate_variants(cfg, run, docs, index)
    tok_path = shared_tokenizer(cfg, run, out, docs)
    manifests = _write_shards(cfg, out, tok_path, docs, texts, stats)
    eval_stats = {
        name: {
            "documents": len(texts[name]),
            "tokens": sum(e["tokens"] for e in manifests["eval"]["splits"][name]),
            "source": {"reference": "reference_files", "crawl": "documents"}.get(name, curated),
        }
        for name in data.EVAL_SETS
    }
    return {
        "tokenizer": {
            "kind": cfg.tokenizer,
            "vocab_size": manifests["eval"]["tokenizer"]["vocab_size"],
            "sha256": manifests["eval"]["tokenizer"]["sha256"],
        },
        "variants": stats,
        "eval": eval_stats,
        "eval_fingerprint": fingerprint(manifests["eval"]["splits"]),
        "decontam_index": {"ngrams": len(index), "sets": index.stats},
    }


def decontaminate_variants(
    cfg: ProxyConfig, run: Path, docs: dict[str, list[Any]], index: NgramIndex
) -> tuple[dict[str, list[Any]], dict[str, dict[str, Any]]]:
    """Each variant's documents decontaminated against the evaluation sets, and per variant its
    documents and characters before and what was cut."""
    dec = Decontaminator(index, **cfg.decontam.model_dump(exclude={"ngram"}))
    cleaned_docs, stats = {}, {}
    for name, chosen in docs.items():
        cleaned_docs[name], cleaned = data.decontaminate(chosen, dec)
        chars = sum(len(d.text) for d in chosen)
        stats[name] = {"documents": len(chosen), "chars": chars, "decontam": cleaned}
        if not cleaned_docs[name]:
            raise ValueError(f"variant {name}: no training document left (run {run})")
    return cleaned_docs, stats


def shared_tokenizer(cfg: ProxyConfig, run: Path, out: Path, docs: dict[str, list[Any]]) -> Path:
    """OUT/tokenizer/tokenizer.json: the run's own, or one trained on an equal sample of each variant."""
    from corpus.tokenizer import train_bpe

    tok_path = out / "tokenizer" / "tokenizer.json"
    tok_path.parent.mkdir(parents=True, exist_ok=True)
    if cfg.tokenizer == "run":
        shutil.copyfile(run / "tokenizer" / "tokenizer.json", tok_path)
    else:
        sample = data.tokenizer_sample(docs, cfg.tokenizer_sample_bytes, cfg.seed)
        train_bpe(sample, cfg.vocab_size).save(str(tok_path))
    return tok_path


def _write_shards(
    cfg: AblateConfig,
    out: Path,
    tok_path: Path,
    docs: dict[str, list[Any]],
    texts: dict[str, list[str]],
    stats: dict[str, dict[str, Any]],
) -> dict[str, dict[str, Any]]:
    """OUT/data/eval and OUT/data/VARIANT (train, and the reference set as valid); their shard
    manifests by name. Each variant's tokens, copies and epochs go into `stats`."""
    from corpus.tokenizer import load

    tok = load(tok_path)
    vocab = tok.get_vocab_size()
    evals = {name: data.encode(tok, texts[name], vocab) for name in data.EVAL_SETS}
    manifests = {"eval": data.write_shards(out / "data" / "eval", tok_path, evals, vocab)}
    for name, chosen in docs.items():
        stream = data.train_stream(tok, chosen, vocab, cfg.seed)
        manifests[name] = data.write_shards(
            out / "data" / name, tok_path, {"train": stream, "valid": evals["reference"]}, vocab
        )
        tokens = sum(e["tokens"] for e in manifests[name]["splits"]["train"])
        stats[name].update(
            kept_documents=len(chosen),
            copies=len(stream),
            tokens=tokens,
            epochs=round(cfg.budget / tokens, 3),
            train_fingerprint=fingerprint([e["bin_sha256"] for e in manifests[name]["splits"]["train"]]),
        )
    return manifests


# --- training and evaluation ------------------------------------------------------------------


def train_and_evaluate(job: dict[str, Any]) -> dict[str, Any]:
    """One variant and seed: pretrain, then bits per byte of the last checkpoint on each
    evaluation set. A module-level function of plain values, so worker processes can run it."""
    import torch

    from corpus.shards import open_split
    from corpus.tokenizer import load as load_tokenizer
    from training.checkpoint import latest_checkpoint, load_model
    from training.data import PackedWindows, token_bytes
    from training.evaluate import evaluate
    from training.pretrain import pretrain

    cfg = PretrainConfig.model_validate(job["config"])
    out, tok_path = Path(job["out"]), Path(job["tokenizer"])
    # An interrupted training of this same job resumes; another job's checkpoints are cleared.
    started = out / KEY
    if not started.is_file() or json.loads(started.read_text())["key"] != job["key"]:
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        write_json_atomic(started, {"key": job["key"]})
    trained = pretrain(cfg, job["shards"], out, tokenizer_path=tok_path, resume=True, quiet=True)
    model = load_model(latest_checkpoint(out))
    nbytes = torch.from_numpy(token_bytes(load_tokenizer(tok_path)))
    bpb = {}
    for name in job["eval_sets"]:
        readers = open_split(job["eval_dir"], name, tokenizer_path=tok_path)
        try:
            windows = PackedWindows(readers, cfg.model.context_length, shuffle=False)
        except ValueError:  # fewer tokens than one window: nothing to measure
            continue
        limit = min(windows.num_windows, job["eval_windows"] or windows.num_windows)
        bpb[name] = evaluate(model, windows.eval_batches(limit, cfg.micro_batch), nbytes)["bpb"]
    result = {
        "key": job["key"],
        "seed": cfg.seed,
        "train_loss": trained["train_loss"],
        "val_bpb": trained.get("val_bpb"),
        "bpb": bpb,
    }
    write_json_atomic(out / RESULT, result)
    return result


def jobs_for(
    cfg: ProxyConfig, out: Path, prepared: dict[str, Any], seeds: tuple[int, ...] | None = None
) -> list[dict[str, Any]]:
    """One training job per variant of `prepared` (its shards in OUT/data/NAME) and seed."""
    jobs = []
    for name in prepared["variants"]:
        for seed in seeds or cfg.seeds:
            train_cfg = cfg.train.model_copy(update={"seed": seed}).model_dump(mode="json")
            key = fingerprint(
                {
                    "train": train_cfg,
                    "data": prepared["variants"][name]["train_fingerprint"],
                    "eval": prepared["eval_fingerprint"],
                    "eval_windows": cfg.eval_windows,
                    "tokenizer": prepared["tokenizer"]["sha256"],
                }
            )
            jobs.append(
                {
                    "variant": name,
                    "key": key,
                    "config": train_cfg,
                    "shards": str(out / "data" / name),
                    "out": str(out / "train" / name / f"seed_{seed}"),
                    "tokenizer": str(out / "tokenizer" / "tokenizer.json"),
                    "eval_dir": str(out / "data" / "eval"),
                    "eval_sets": list(data.EVAL_SETS),
                    "eval_windows": cfg.eval_windows,
                }
            )
    return jobs


def run_jobs(jobs: list[dict[str, Any]], workers: int, label: str = "ablate") -> dict[str, dict[str, Any]]:
    """Results by key: a finished `result.json` with the same key is reused, a key shared by
    several jobs is trained once, the rest run `workers` at a time."""
    results: dict[str, dict[str, Any]] = {}
    for job in jobs:
        saved = Path(job["out"]) / RESULT
        if saved.is_file() and json.loads(saved.read_text())["key"] == job["key"]:
            results[job["key"]] = json.loads(saved.read_text())
    todo: dict[str, dict[str, Any]] = {}
    for job in jobs:
        if job["key"] not in results:
            todo.setdefault(job["key"], job)
    pending = list(todo.values())
    log.info("%s: %d trainings to run (%d reused or shared)", label, len(pending), len(jobs) - len(pending))

    def finished(job: dict[str, Any], result: dict[str, Any]) -> None:
        results[job["key"]] = result
        figures = ", ".join(f"{k} {v:.4f}" for k, v in result["bpb"].items())
        log.info("%s: %s, seed %d: bits per byte %s", label, job["variant"], result["seed"], figures)

    if workers == 1 or len(pending) <= 1:
        for job in pending:
            finished(job, train_and_evaluate(job))
    else:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(train_and_evaluate, job): job for job in pending}
            for future in as_completed(futures):
                finished(futures[future], future.result())
    return results


# --- summary: table, JSON, plot --------------------------------------------------------------


def spread(values: list[float]) -> dict[str, float]:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def summarize(jobs: list[dict[str, Any]], results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per variant and evaluation set: the seeds' bits per byte and their spread."""
    summary: dict[str, Any] = {}
    for job in jobs:
        result = results[job["key"]]
        entry = summary.setdefault(job["variant"], {"seeds": {}, "bpb": {}})
        entry["seeds"][str(result["seed"])] = result["bpb"]
    for entry in summary.values():
        sets = sorted({s for bpb in entry["seeds"].values() for s in bpb}, key=data.EVAL_SETS.index)
        entry["bpb"] = {s: spread([bpb[s] for bpb in entry["seeds"].values() if s in bpb]) for s in sets}
    return summary


def format_table(report: dict[str, Any]) -> str:
    """One line per variant: its data, then mean ± std (min–max) bits per byte per set, and the
    reference figure relative to the first variant."""
    variants, summary = report["variants"], report["summary"]
    sets = [s for s in data.EVAL_SETS if any(s in e["bpb"] for e in summary.values())]
    first = next(iter(summary.values()))["bpb"].get("reference", {}).get("mean")
    head = f"{'variant':<22}{'docs':>7}{'tokens':>11}{'epochs':>8}"
    head += "".join(f"{s + ' bpb':>33}" for s in sets) + f"{'ref vs first':>14}"
    lines = [head]
    for name, entry in summary.items():
        v = variants[name]
        line = f"{name:<22}{v['kept_documents']:>7,}{v['tokens']:>11,}{v['epochs']:>8.2f}"
        for s in sets:
            b = entry["bpb"].get(s)
            cell = f"{b['mean']:.4f} ± {b['std']:.4f} ({b['min']:.3f}–{b['max']:.3f})" if b else "-"
            line += f"{cell:>33}"
        ref = entry["bpb"].get("reference", {}).get("mean")
        line += f"{100 * (ref / first - 1):>+13.1f}%" if ref and first else f"{'-':>14}"
        lines.append(line)
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> None:
    """Bits per byte per variant, one panel per evaluation set: mean bars, min-max whiskers, seeds
    as dots."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = report["summary"]
    names = list(summary)
    sets = [s for s in data.EVAL_SETS if any(s in e["bpb"] for e in summary.values())]
    fig, axes = plt.subplots(1, len(sets), figsize=(4.2 * len(sets), 3.8), squeeze=False)
    for ax, s in zip(axes[0], sets, strict=True):
        stats = [summary[n]["bpb"].get(s) for n in names]
        means = [b["mean"] if b else math.nan for b in stats]
        low = [b["mean"] - b["min"] if b else 0 for b in stats]
        high = [b["max"] - b["mean"] if b else 0 for b in stats]
        ax.bar(range(len(names)), means, yerr=[low, high], capsize=4, color="#8fb3d9", edgecolor="#2f5f8f")
        for i, n in enumerate(names):
            seeds = [bpb[s] for bpb in summary[n]["seeds"].values() if s in bpb]
            ax.plot([i] * len(seeds), seeds, "o", color="#1f3f5f", markersize=3)
        finite = [m for m in means if not math.isnan(m)]
        if finite:
            pad = 0.15 * (max(finite) - min(finite) or max(finite) * 0.05)
            ax.set_ylim(min(b["min"] for b in stats if b) - pad, max(b["max"] for b in stats if b) + pad)
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
        ax.set_title(f"{s} (lower is better)")
        ax.set_ylabel("bits per byte")
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def ablate(cfg: AblateConfig, run: str | Path, out: str | Path) -> dict[str, Any]:
    """Prepare the data, train every variant and seed, write ablation.json and ablation.png."""
    run, out = Path(run), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    prepared = prepare(cfg, run, out)
    jobs = jobs_for(cfg, out, prepared)
    results = run_jobs(jobs, cfg.workers)
    report = {
        "run": str(run.resolve()),
        "config": cfg.model_dump(mode="json"),
        "budget_tokens": cfg.budget,
        **prepared,
        "summary": summarize(jobs, results),
    }
    write_json_atomic(out / "ablation.json", report)
    plot(report, out / "ablation.png")
    return report


def _ablate(args: argparse.Namespace) -> None:
    cfg = load_ablate_config(args.config)
    if args.workers:
        cfg = cfg.model_copy(update={"workers": args.workers})
    report = ablate(cfg, args.run, args.out)
    print(f"budget: {report['budget_tokens']:,} tokens per training; tokenizer: {report['tokenizer']}")
    print(format_table(report))
    print(f"wrote {Path(args.out) / 'ablation.json'} and {Path(args.out) / 'ablation.png'}")


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ablate", help="train proxy models on each curation stage of a run and compare them")
    p.add_argument("config", nargs="?", help=f"YAML config (default: {DEFAULT_CONFIG.name} in conf/)")
    p.add_argument("--run", required=True, help="a run directory with finished curation stages")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--workers", type=int, help="override `workers`: trainings at once")
    p.set_defaults(func=_ablate)

"""`refinery mixture fit RUN [CONFIG] --out DIR`: learn the mixed stage's bucket shares from proxies.

Over the buckets of the run's mixed stage (its `bucket_by`: source, language, quality band,
domain list, ...), `mixtures` mixtures are drawn around the natural token shares, a proxy model
trains on each (`refinery ablate`'s proxy, equal token budgets, fixed seeds), and a law fitted
from mixture to the target set's bits per byte (corpus/mixlaw.py: linear as RegMix, Liu et al.
2024, or log-linear as the Data Mixing Laws of Ye et al. 2024) picks the mixture it predicts best.
That mixture is validated against the natural and the uniform mixtures, `seeds` proxies each.

Data (jobs/ablate_data.py, as the ablation): the documents entering the mixed stage (its kept and
its downsampled rows, each once) with their `bucket`, sites held out, decontaminated against the
evaluation sets (`reference`, `crawl`, `crawl_kept`), one shared tokenizer. A mixture w takes, from
bucket b, w_b · budget tokens: b's documents in a seeded order, cycled when w_b · budget exceeds
b's tokens. A share that would repeat a bucket more than `max_repeats` times (the run's
`mixed.max_repeats` by default) is never drawn, as the mixed stage would refuse it.

The driver holds the mixed stage's documents: like `refinery ablate`, this is a study over a run
of proxy scale (a sample of a crawl), not a stage over the whole corpus.

Output, in DIR: `mixture.json` (the buckets and their natural shares, every mixture with its
figures, the fits with their leave-one-out ρ and error, the chosen shares, the validation),
`shares.yaml` (a config fragment: `mixed: {shares: ...}` for the pipeline config), `fit.png`
(predicted against measured loss, and the validation), and the ablation's folders (`data/`,
`train/`, `tokenizer/`). A rerun reuses every finished training.
"""

import argparse
import logging
import math
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pydantic
import yaml
from pydantic import PositiveFloat, PositiveInt

from corpus import mix, mixlaw
from corpus.decontam import NgramIndex
from corpus.manifest import fingerprint, read_json, write_json_atomic
from jobs import ablate
from jobs import ablate_data as data

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "conf" / "mixture.yaml"
TARGETS = ("reference", "crawl", "crawl_kept", "mean")
log = logging.getLogger(__name__)


class MixtureConfig(ablate.ProxyConfig):
    mixtures: PositiveInt = 8  # K proxies fitted (RegMix trains hundreds; K ≥ buckets + 2 for a check)
    concentration: PositiveFloat = 4.0  # Dirichlet(concentration · natural shares): higher, closer
    fit_seeds: tuple[int, ...] = (0,)  # seeds per fitted mixture; `seeds` are the validation's
    target: Literal["reference", "crawl", "crawl_kept", "mean"] = "reference"
    form: Literal["auto", "linear", "loglinear"] = "auto"  # auto: the lower leave-one-out error
    candidates: PositiveInt = 100_000  # draws the best mixture is chosen from
    max_repeats: float | None = pydantic.Field(None, ge=1)  # None: the run's mixed.max_repeats


def load_mixture_config(path: str | Path | None) -> MixtureConfig:
    return ablate.load_proxy_config(path, MixtureConfig, DEFAULT_CONFIG)


# --- data ---------------------------------------------------------------------------------------


def bucket_docs(run: Path, heldout) -> dict[str, list[data.Doc]]:
    """The documents entering the mixed stage, once each, by bucket (held-out sites left out)."""
    directory = data.stage_dir(run, "mixed")
    buckets: dict[str, list[data.Doc]] = defaultdict(list)
    for split in ("kept", "rejected"):
        for row in data.read_rows(directory, split):
            if not heldout(row) and row.get("text"):
                buckets[row["bucket"] or mix.NONE].append(data.Doc(row["id"], row["text"]))
    return {b: sorted(docs, key=lambda d: d.id) for b, docs in sorted(buckets.items())}


def mixture_stream(
    encoded: dict[str, list[tuple[str, np.ndarray]]], weights: dict[str, float], budget: int, seed: int
):
    """Each bucket's w_b · budget tokens (its documents in a seeded order, cycled), all buckets'
    documents then interleaved in a seeded order."""
    chosen = []
    for bucket, docs in encoded.items():
        quota, taken, copy = weights[bucket] * budget, 0, 0
        while taken < quota:
            order = sorted(docs, key=lambda d: mix.key(seed, f"mixture-order-{copy}", d[0]))
            for doc_id, tokens in order:
                if taken >= quota:
                    break
                chosen.append((mix.key(seed, "mixture-interleave", doc_id, copy), tokens))
                taken += len(tokens)
            copy += 1
    return [tokens for _, tokens in sorted(chosen, key=lambda c: c[0])]


def prepare(cfg: MixtureConfig, run: Path, out: Path) -> dict[str, Any]:
    """Buckets, evaluation shards, tokenizer, encoded documents, natural shares and caps."""
    from corpus.tokenizer import load

    heldout = data.heldout_rule(cfg.seed, cfg.heldout_fraction)
    buckets = bucket_docs(run, heldout)
    if len(buckets) < 2:
        raise ValueError(f"{run / 'mixed'}: {len(buckets)} bucket(s); a mixture needs at least 2 (bucket_by)")
    texts = data.eval_sets(run, cfg.reference_files, "mixed", heldout)
    buckets, stats = ablate.decontaminate_variants(
        cfg, run, buckets, NgramIndex.build(texts, cfg.decontam.ngram)
    )
    tok_path = ablate.shared_tokenizer(cfg, run, out, buckets)
    tok = load(tok_path)
    vocab = tok.get_vocab_size()
    evals = {name: data.encode(tok, texts[name], vocab) for name in data.EVAL_SETS}
    eval_manifest = data.write_shards(out / "data" / "eval", tok_path, evals, vocab)
    encoded = {
        b: list(zip([d.id for d in docs], data.encode(tok, [d.text for d in docs], vocab), strict=True))
        for b, docs in buckets.items()
    }
    tokens = np.array([sum(len(t) for _, t in encoded[b]) for b in buckets], dtype=float)
    max_repeats = cfg.max_repeats or read_json(run / "run.json")["config"]["mixed"]["max_repeats"]
    return {
        "buckets": list(buckets),
        "tokens": tokens,
        "natural": tokens / tokens.sum(),
        # A share past max_repeats breaks the proxy's budget or the mixed stage's own total (the
        # input's tokens), whichever is larger.
        "caps": np.minimum(1.0, max_repeats * tokens / max(cfg.budget, tokens.sum())),
        "max_repeats": max_repeats,
        "encoded": encoded,
        "evals": evals,
        "tokenizer": tok_path,
        "vocab": vocab,
        "eval_fingerprint": fingerprint(eval_manifest["splits"]),
        "tokenizer_sha256": eval_manifest["tokenizer"]["sha256"],
        "documents": stats,
    }


def write_mixtures(
    cfg: MixtureConfig, out: Path, prep: dict[str, Any], mixtures: dict[str, np.ndarray]
) -> dict:
    """OUT/data/NAME per mixture (its train stream, the reference set as valid), in the shape
    jobs/ablate.py `jobs_for` reads."""
    variants = {}
    for name, w in mixtures.items():
        weights = dict(zip(prep["buckets"], w.tolist(), strict=True))
        stream = mixture_stream(prep["encoded"], weights, cfg.budget, cfg.seed)
        manifest = data.write_shards(
            out / "data" / name,
            prep["tokenizer"],
            {"train": stream, "valid": prep["evals"]["reference"]},
            prep["vocab"],
        )
        variants[name] = {
            "weights": weights,
            "train_fingerprint": fingerprint([e["bin_sha256"] for e in manifest["splits"]["train"]]),
        }
    return {
        "variants": variants,
        "eval_fingerprint": prep["eval_fingerprint"],
        "tokenizer": {"sha256": prep["tokenizer_sha256"]},
    }


# --- proxies, fit, validation -------------------------------------------------------------------


def target_bpb(cfg: MixtureConfig, result: dict[str, Any]) -> float:
    bpb = result["bpb"]
    return statistics.fmean(bpb.values()) if cfg.target == "mean" else bpb[cfg.target]


def train(
    cfg: MixtureConfig, out: Path, prep: dict[str, Any], mixtures: dict[str, np.ndarray], seeds
) -> dict:
    """Per mixture: its weights, every seed's bits per byte, and the target's mean and spread."""
    prepared = write_mixtures(cfg, out, prep, mixtures)
    jobs = ablate.jobs_for(cfg, out, prepared, seeds=seeds)
    results = ablate.run_jobs(jobs, cfg.workers, label="mixture")
    report = {}
    for name, variant in prepared["variants"].items():
        runs = [results[j["key"]] for j in jobs if j["variant"] == name]
        target = [target_bpb(cfg, r) for r in runs]
        report[name] = {
            "weights": variant["weights"],
            "seeds": {str(r["seed"]): r["bpb"] for r in runs},
            "target": ablate.spread(target),
        }
    return report


def fit_law(cfg: MixtureConfig, fitted: dict[str, Any], buckets: list[str]) -> tuple[mixlaw.Law, dict]:
    """The law of `cfg.form` (or of the lower leave-one-out error) and every form's fit report."""
    w = np.array([[m["weights"][b] for b in buckets] for m in fitted.values()])
    y = np.array([m["target"]["mean"] for m in fitted.values()])
    forms = {}
    for form in mixlaw.FORMS:
        loo = mixlaw.leave_one_out(w, y, form)
        forms[form] = {
            "loo_predicted": loo.tolist(),
            "loo_spearman": mixlaw.spearman(loo, y),
            "loo_mae": float(np.mean(np.abs(loo - y))),
        }
    chosen = cfg.form if cfg.form != "auto" else min(forms, key=lambda f: forms[f]["loo_mae"])
    law = mixlaw.fit(w, y, chosen)
    return law, {
        "form": chosen,
        "forms": forms,
        "measured": y.tolist(),
        "coef": law.coef.tolist(),
        "c": law.c,
    }


def validation_mixtures(prep: dict[str, Any], best: np.ndarray) -> dict[str, np.ndarray]:
    """The fitted, natural and uniform mixtures; uniform left out where it breaks a bucket's cap."""
    n = len(prep["buckets"])
    mixtures = {"fitted": best, "natural": prep["natural"]}
    uniform = np.full(n, 1.0 / n)
    if np.all(uniform <= prep["caps"]):
        mixtures["uniform"] = uniform
    else:
        log.warning("mixture: the uniform mixture repeats a bucket past max_repeats; not validated")
    return mixtures


def fit_mixture(cfg: MixtureConfig, run: str | Path, out: str | Path) -> dict[str, Any]:
    """Draw, train and fit; validate the chosen mixture; write mixture.json, shares.yaml, fit.png."""
    run, out = Path(run), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    prep = prepare(cfg, run, out)
    draws = mixlaw.draw_mixtures(prep["natural"], prep["caps"], cfg.mixtures, cfg.seed, cfg.concentration)
    fitted = train(cfg, out, prep, {f"mix_{i:02d}": w for i, w in enumerate(draws)}, cfg.fit_seeds)
    law, fit_report = fit_law(cfg, fitted, prep["buckets"])
    candidates = mixlaw.draw_mixtures(
        prep["natural"], prep["caps"], cfg.candidates, cfg.seed + 1, cfg.concentration
    )
    best = mixlaw.best_mixture(law, candidates)
    validation = train(cfg, out, prep, validation_mixtures(prep, best), cfg.seeds)
    # Rounded down, so the shares never sum past 1 (the mixed stage's check)
    shares = {b: math.floor(float(w) * 10_000) / 10_000 for b, w in zip(prep["buckets"], best, strict=True)}
    report = {
        "run": str(run.resolve()),
        "config": cfg.model_dump(mode="json"),
        "budget_tokens": cfg.budget,
        "buckets": {
            b: {"tokens": int(t), "natural": float(s), "cap": float(c)}
            for b, t, s, c in zip(prep["buckets"], prep["tokens"], prep["natural"], prep["caps"], strict=True)
        },
        "max_repeats": prep["max_repeats"],
        "documents": prep["documents"],
        "mixtures": fitted,
        "fit": {**fit_report, "predicted_best": float(law.predict(best)[0])},
        "shares": shares,
        "validation": validation,
    }
    write_json_atomic(out / "mixture.json", report)
    (out / "shares.yaml").write_text(
        "# refinery mixture fit: the predicted-best token shares of the mixed stage's buckets\n"
        + yaml.safe_dump({"mixed": {"shares": shares}}, sort_keys=True)
    )
    plot(report, out / "fit.png")
    return report


# --- output -------------------------------------------------------------------------------------


def format_table(report: dict[str, Any]) -> str:
    """The buckets' shares per mixture with the target's bits per byte, the fit, the validation."""
    buckets = list(report["buckets"])
    head = f"{'mixture':<10}" + "".join(f"{b[:12]:>13}" for b in buckets) + f"{'target bpb':>24}"
    natural = {b: v["natural"] for b, v in report["buckets"].items()}

    def row(name: str, weights: dict[str, float], target: dict[str, float] | None) -> str:
        cells = "".join(f"{weights[b]:>13.3f}" for b in buckets)
        figure = f"{target['mean']:.4f} ± {target['std']:.4f}" if target else "-"
        return f"{name:<10}{cells}{figure:>24}"

    lines = [head, row("natural", natural, None)]
    lines += [row(n, m["weights"], m["target"]) for n, m in report["mixtures"].items()]
    fit = report["fit"]
    for form, f in fit["forms"].items():
        mark = " (chosen)" if form == fit["form"] else ""
        lines.append(
            f"fit {form}{mark}: leave-one-out Spearman {f['loo_spearman']:.3f}, MAE {f['loo_mae']:.4f}"
        )
    lines.append("validation (" + report["config"]["target"] + f", {len(report['config']['seeds'])} seeds):")
    lines += [row(n, m["weights"], m["target"]) for n, m in report["validation"].items()]
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> None:
    """OUT/fit.png: `figure`, written aside and renamed into place."""
    import matplotlib.pyplot as plt

    fig = figure(report)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def figure(report: dict[str, Any]):
    """Left: each fitted mixture's measured target loss against its leave-one-out prediction.
    Right: the validation's mixtures, mean and min-max over seeds. Also the run report's chart."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fit = report["fit"]
    measured, predicted = fit["measured"], fit["forms"][fit["form"]]["loo_predicted"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.8))
    left.plot(predicted, measured, "o", color="#2f5f8f")
    lo, hi = min(measured + predicted), max(measured + predicted)
    left.plot([lo, hi], [lo, hi], "--", color="#999999", linewidth=1)
    left.set_xlabel(f"predicted ({fit['form']} law, leave-one-out)")
    left.set_ylabel(f"measured {report['config']['target']} bits per byte")
    left.set_title(f"fit: Spearman {fit['forms'][fit['form']]['loo_spearman']:.2f}")
    names = list(report["validation"])
    stats = [report["validation"][n]["target"] for n in names]
    right.bar(
        range(len(names)),
        [s["mean"] for s in stats],
        yerr=[[s["mean"] - s["min"] for s in stats], [s["max"] - s["mean"] for s in stats]],
        capsize=4,
        color="#8fb3d9",
        edgecolor="#2f5f8f",
    )
    pad = 0.2 * (max(s["max"] for s in stats) - min(s["min"] for s in stats) or 0.01)
    right.set_ylim(min(s["min"] for s in stats) - pad, max(s["max"] for s in stats) + pad)
    right.set_xticks(range(len(names)), names)
    right.set_title("validation (lower is better)")
    fig.tight_layout()
    return fig


def _fit(args: argparse.Namespace) -> None:
    cfg = load_mixture_config(args.config)
    if args.workers:
        cfg = cfg.model_copy(update={"workers": args.workers})
    report = fit_mixture(cfg, args.run, args.out)
    print(f"budget: {report['budget_tokens']:,} tokens per proxy; target: {cfg.target}")
    print(format_table(report))
    print(f"wrote {Path(args.out) / 'mixture.json'}, shares.yaml and fit.png")


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("mixture", help="learn the mixed stage's bucket shares from proxy runs")
    commands = p.add_subparsers(dest="mixture_command", required=True)
    f = commands.add_parser("fit", help="train proxies on sampled mixtures, fit a law, write the best shares")
    f.add_argument("run", help="a run directory with a finished mixed stage")
    f.add_argument("config", nargs="?", help=f"YAML config (default: {DEFAULT_CONFIG.name} in conf/)")
    f.add_argument("--out", required=True, help="output directory")
    f.add_argument("--workers", type=int, help="override `workers`: trainings at once")
    f.set_defaults(func=_fit)

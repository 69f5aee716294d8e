"""`refinery dedup-eval`: pair precision, recall and F1 of the dedup settings (corpus/dedup_eval.py).

Scores the `deduped` section of a pipeline config (default conf/pipeline.yaml) without
verification (FineWeb: components are clusters), with verification at its threshold (the stage's
default: exact Jaccard, no chaining), with datasketch's optimal bands x rows for the threshold,
and with twice the hash values (bands doubled): one table row per setting and kind of predicted
pairs; the "clusters" rows score the stage's decisions, and a last row per set gives the best F1
any clustering reaches (found exhaustively), their ceiling. Runs in this process on numpy, without
Spark, through the stage's own signature, LSH and decision functions (corpus/dedup.py).
"""

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from corpus.dedup_eval import Setting
    from jobs.config import DedupedConfig

SETS = ("gutenberg", "perturbed", "chains")


def settings(dcfg: "DedupedConfig", threshold: float) -> list["Setting"]:
    from corpus.dedup_eval import Setting
    from corpus.minhash import optimal_params

    n = dcfg.num_perm
    bands, rows = dcfg.lsh_params()
    best = optimal_params(threshold, n)
    found = [
        Setting(f"{bands}x{rows}", bands, rows, n),
        Setting(f"{bands}x{rows} verify", bands, rows, n, threshold),
        Setting(f"{best[0]}x{best[1]} verify", *best, n, threshold),
        Setting(f"{2 * bands}x{rows}/{2 * n} verify", 2 * bands, rows, 2 * n, threshold),
    ]
    return list({s.name: s for s in found}.values())  # the configured one may be the optimum


def _eval(args: argparse.Namespace) -> None:
    from pathlib import Path

    from corpus.dedup_eval import chain_set, evaluate, format_table, load_gutenberg, perturbed_set
    from jobs.config import load_config

    dcfg = load_config(args.config).deduped
    threshold = args.threshold if args.threshold is not None else dcfg.threshold
    names = [s.strip() for s in args.sets.split(",") if s.strip()]
    unknown = [s for s in names if s not in SETS]
    if unknown:
        raise ValueError(f"--sets: unknown set(s) {unknown}; allowed: {', '.join(SETS)}")
    results = []
    for name in names:
        if name == "gutenberg":
            evalset = load_gutenberg(Path(args.data_dir) / "gutenberg-editions-neardup", args.chunk_words)
        elif name == "perturbed":
            evalset = perturbed_set(seed=args.seed, bases=args.bases)
        else:
            evalset = chain_set(seed=args.seed, bases=args.chains)
        found = settings(dcfg, threshold)
        results += evaluate(
            evalset, found, threshold, ngram=dcfg.ngram, seed=dcfg.seed, keep_order=dcfg.keep_order
        )
    print(f"true pair: exact word-5-gram Jaccard >= {threshold}")
    print(format_table(results))


def add_commands(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser("dedup-eval", help="pair precision, recall and F1 of MinHash-LSH dedup settings")
    ev.add_argument(
        "--config", help="YAML config whose `deduped` section is scored (default: conf/pipeline.yaml)"
    )
    ev.add_argument("--sets", default=",".join(SETS), help=f"comma-separated, of: {', '.join(SETS)}")
    ev.add_argument("--data-dir", default="../shared/data", help="holds gutenberg-editions-neardup/")
    ev.add_argument("--threshold", type=float, help="Jaccard of a true pair (default: deduped.threshold)")
    ev.add_argument("--chunk-words", type=int, default=500, help="words per Gutenberg chunk")
    ev.add_argument("--bases", type=int, default=1000, help="generated documents, each with 3 copies")
    ev.add_argument("--chains", type=int, default=400, help="planted chains, each with 2 edited copies")
    ev.add_argument("--seed", type=int, default=0, help="seed of the generated sets")
    ev.set_defaults(func=_eval)

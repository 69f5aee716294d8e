"""Continued pretraining, measured: the anneal against none at equal tokens, and context extension.

    python bench/continued.py --out /tmp/continued --seeds 0 1 2

On the bundled text (data/text/tinyshakespeare-200k.txt, a 512-token BPE, its last 10% held out):

1. Anneal. Per seed, `--base` (WSD with no cooldown: constant lr after warmup) and `--anneal` (the
   same run with `optim.anneal_frac`: its last steps decay linearly to 0) train the same steps on
   the same windows; their held-out bits per byte at the end compare at equal tokens.
2. Context extension. From the first seed's base model, `--init` runs continue for the same tokens:
   `--extend` (twice the context and a 4x RoPE base), `--extend-same-theta` (twice the context, the
   base unchanged) and `--control` (the original context). Each model, and the base model itself,
   is scored on held-out windows of the original and of the doubled length.

Prints a JSON record and the two tables of bench/RESULTS.md.
"""

import argparse
import json
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

CONFIGS = REPO / "bench" / "configs" / "train"


def train(config: Path, shards: Path, out: Path, **changes) -> Path:
    """Train `config` (with `changes`) unless OUT already holds its last checkpoint; return it."""
    from training.checkpoint import latest_checkpoint, read_meta
    from training.config import load_pretrain_config
    from training.pretrain import pretrain

    cfg = load_pretrain_config(config, changes)
    last = latest_checkpoint(out)
    if last is None or read_meta(last)["step"] < cfg.steps:
        pretrain(cfg, shards, out, resume=True, quiet=True)
    return latest_checkpoint(out)


def heldout(checkpoint: Path, shards: Path, length: int, windows: int) -> dict[str, float]:
    """Loss and bits per byte of the checkpoint's model on the valid split's first `windows`
    windows of `length` tokens (its rope tables rebuilt for that length, its weights unchanged)."""
    import torch

    from corpus.shards import open_split
    from corpus.tokenizer import load as load_tokenizer
    from training.checkpoint import load_model
    from training.data import PackedWindows, token_bytes
    from training.evaluate import evaluate
    from training.model import GPT

    trained = load_model(checkpoint)
    model = GPT(trained.cfg.model_copy(update={"context_length": length}))
    model.load_state_dict(trained.state_dict())
    data = PackedWindows(open_split(shards, "valid"), length, shuffle=False)
    nbytes = torch.from_numpy(token_bytes(load_tokenizer(checkpoint / "tokenizer.json")))
    result = evaluate(model, data.eval_batches(windows, 8), nbytes)
    return {"loss": round(result["loss"], 4), "bpb": round(result["bpb"], 4)}


def anneal_rows(args, shards: Path) -> list[dict]:
    rows = []
    for seed in args.seeds:
        for name, config in (("base", args.base), ("anneal", args.anneal)):
            ckpt = train(config, shards, args.out / f"{name}-seed{seed}", seed=seed)
            rows.append({"run": name, "seed": seed, **heldout(ckpt, shards, args.length, args.windows)})
    return rows


def extension_rows(args, shards: Path) -> list[dict]:
    base = train(args.base, shards, args.out / f"base-seed{args.seeds[0]}", seed=args.seeds[0])
    runs = {"base (no continuation)": base}
    variants = (("extend", args.extend), ("same theta", args.extend_same_theta), ("control", args.control))
    for name, config in variants:
        runs[name] = train(config, shards, args.out / f"cont-{name.replace(' ', '-')}", init=str(base))
    rows = []
    for name, ckpt in runs.items():
        short = heldout(ckpt, shards, args.length, args.windows)
        long = heldout(ckpt, shards, 2 * args.length, args.windows // 2)
        rows.append(
            {"run": name, f"loss@{args.length}": short["loss"], f"loss@{2 * args.length}": long["loss"]}
        )
    return rows


def summary(rows: list[dict]) -> dict[str, str]:
    out = {}
    for name in ("base", "anneal"):
        bpb = [r["bpb"] for r in rows if r["run"] == name]
        spread = statistics.stdev(bpb) if len(bpb) > 1 else 0.0
        out[name] = f"{statistics.mean(bpb):.4f} ± {spread:.4f}"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="working directory (runs are reused)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--base", type=Path, default=CONFIGS / "continued-base.yaml")
    parser.add_argument("--anneal", type=Path, default=CONFIGS / "continued-anneal.yaml")
    parser.add_argument("--extend", type=Path, default=CONFIGS / "continued-extend.yaml")
    same_theta = CONFIGS / "continued-extend-same-theta.yaml"
    parser.add_argument("--extend-same-theta", type=Path, default=same_theta)
    parser.add_argument("--control", type=Path, default=CONFIGS / "continued-control.yaml")
    parser.add_argument("--length", type=int, default=64, help="the base model's context")
    parser.add_argument("--windows", type=int, default=128, help="held-out windows of --length tokens")
    args = parser.parse_args()

    from training.testing import SAMPLE_TEXT, make_text_run

    shards = args.out / "run" / "shards"
    if not (shards / "manifest.json").is_file():
        make_text_run(SAMPLE_TEXT.read_text(), args.out / "run", vocab_size=512)
    anneal = anneal_rows(args, shards)
    record = {"anneal": anneal, "anneal_summary": summary(anneal), "extension": extension_rows(args, shards)}
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()

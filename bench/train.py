"""CPU training throughput: `training.pretrain` against a minimal nanoGPT-style loop of the same size.

    python bench/train.py --threads 1 --rounds 3

The reference is nanoGPT's `model.py` and `train.py` (karpathy/nanoGPT) reduced to what a step
does: learned position embeddings, LayerNorm, one fused qkv matmul, a 4·d GELU MLP,
tied embeddings, random-offset batches from a memory-mapped token array, AdamW (decay on
matrices), clipping at 1.0, and float32 on CPU, as nanoGPT runs there. Ours is the real loop:
shard reader, packed windows, schedule, clipping, fused AdamW, logging. Both get the same
width, depth, heads, context, vocabulary and batch. The `minimal` variants put our model into
the reference's loop, which separates what the loop costs from what the architecture costs.
Every measurement runs in a fresh process (so process-wide settings such as the denormal flush
do not leak between them), in alternating rounds, and the median counts. tokens/s excludes the
first `WARMUP` steps (allocator warm-up, and compilation for the `+compile` variants).

`--clock cpu` (the default) times steps by the process's CPU time instead of the wall clock: on
a shared machine the wall clock measures whoever else is running, and with one thread per
process CPU time is the wall time an idle machine would show. `--clock wall` for a quiet one.
"""

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

WARMUP = 5
VARIANTS = (
    "reference",
    "reference-bfloat16",
    "minimal",
    "minimal-bfloat16",
    "float32",
    "bfloat16",
    "float32+compile",
    "bfloat16+compile",
)


def clock(name: str):
    return time.process_time if name == "cpu" else time.perf_counter


def reference(args, shards: Path, bf16: bool) -> float:
    """nanoGPT's model and loop, trimmed (with nanoGPT's CUDA autocast if `bf16`): tokens/s after warm-up."""
    import numpy as np
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    from corpus.shards import read_manifest

    torch.set_num_threads(args.threads)
    manifest = read_manifest(shards)
    V, T, d, L, H = manifest["tokenizer"]["vocab_size"], args.context, args.d_model, args.n_layer, args.n_head
    data = np.memmap(shards / manifest["splits"]["train"][0]["bin"], dtype=np.uint16, mode="r")

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1, self.ln_2 = nn.LayerNorm(d, bias=False), nn.LayerNorm(d, bias=False)
            self.c_attn, self.attn_proj = nn.Linear(d, 3 * d, bias=False), nn.Linear(d, d, bias=False)
            self.c_fc, self.mlp_proj = nn.Linear(d, 4 * d, bias=False), nn.Linear(4 * d, d, bias=False)

        def forward(self, x):
            B, T_, _ = x.shape
            q, k, v = self.c_attn(self.ln_1(x)).split(d, dim=2)
            q, k, v = (t.view(B, T_, H, d // H).transpose(1, 2) for t in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.attn_proj(y.transpose(1, 2).contiguous().view(B, T_, d))
            return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x))))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte, self.wpe = nn.Embedding(V, d), nn.Embedding(T, d)
            self.blocks = nn.ModuleList(Block() for _ in range(L))
            self.ln_f = nn.LayerNorm(d, bias=False)
            self.lm_head = nn.Linear(d, V, bias=False)
            self.wte.weight = self.lm_head.weight
            for name, p in self.named_parameters():
                if p.ndim == 2:
                    std = 0.02 / math.sqrt(2 * L) if name.endswith("proj.weight") else 0.02
                    nn.init.normal_(p, 0.0, std)

        def forward(self, idx, targets):
            x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
            for block in self.blocks:
                x = block(x)
            logits = self.lm_head(self.ln_f(x))
            return F.cross_entropy(logits.view(-1, V), targets.view(-1))

    torch.manual_seed(0)
    return minimal_loop(args, GPT(), data, T, bf16)


def minimal(args, shards: Path, bf16: bool) -> float:
    """Our GPT in the reference's loop: what our loop costs or saves, with the architecture equal."""
    import numpy as np
    import torch

    from corpus.shards import read_manifest
    from training.config import ModelConfig
    from training.model import GPT

    torch.set_num_threads(args.threads)
    manifest = read_manifest(shards)
    data = np.memmap(shards / manifest["splits"]["train"][0]["bin"], dtype=np.uint16, mode="r")
    cfg = ModelConfig(
        vocab_size=manifest["tokenizer"]["vocab_size"],
        context_length=args.context,
        n_layer=args.n_layer,
        n_head=args.n_head,
        d_model=args.d_model,
    )
    return minimal_loop(args, GPT(cfg), data, args.context, bf16)


def minimal_loop(args, model, data, T: int, bf16: bool) -> float:
    """nanoGPT's train.py step, trimmed: random-offset batches, AdamW (foreach), clipping; tokens/s."""
    import numpy as np
    import torch

    params = [p for p in model.parameters()]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": 0.1},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.95))
    times, now = [], clock(args.clock)
    for _ in range(args.steps):
        started = now()
        ix = torch.randint(len(data) - T, (args.batch,))
        x = torch.stack([torch.from_numpy(data[i : i + T].astype(np.int64)) for i in ix])
        y = torch.stack([torch.from_numpy(data[i + 1 : i + 1 + T].astype(np.int64)) for i in ix])
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(now() - started)
    return args.batch * T * (args.steps - WARMUP) / sum(times[WARMUP:])


def ours(args, shards: Path, variant: str) -> float:
    """`training.pretrain` itself; tokens per second from its metrics, after warm-up."""
    import types

    from training import loop
    from training import pretrain as module
    from training.config import ModelConfig, OptimConfig, PretrainConfig

    # The loop times itself with time.perf_counter; give it the chosen clock.
    loop.time = types.SimpleNamespace(**{**vars(time), "perf_counter": clock(args.clock)})
    dtype, _, compiled = variant.partition("+")

    cfg = PretrainConfig(
        steps=args.steps,
        global_batch=args.batch,
        micro_batch=args.batch,
        dtype=dtype,
        compile=bool(compiled),
        threads=args.threads,
        log_every=WARMUP,
        eval_every=0,
        eval_windows=args.batch,
        save_every=0,
        model=ModelConfig(
            context_length=args.context, n_layer=args.n_layer, n_head=args.n_head, d_model=args.d_model
        ),
        optim=OptimConfig(lr=1e-3, warmup_steps=WARMUP),
    )
    with tempfile.TemporaryDirectory() as out:
        module.pretrain(cfg, shards, out, quiet=True)
        records = [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]
    windows = [r for r in records if "tok_per_s" in r][1:]  # the first window holds the warm-up steps
    tokens = args.batch * args.context * WARMUP * len(windows)
    return tokens / sum(args.batch * args.context * WARMUP / r["tok_per_s"] for r in windows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--text", default=str(REPO / "data" / "text" / "tinyshakespeare-200k.txt"))
    parser.add_argument("--vocab", type=int, default=4096)
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--n-layer", type=int, default=4)
    parser.add_argument("--n-head", type=int, default=4)
    parser.add_argument("--context", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=30, help="steps per measurement (multiple of 5)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {VARIANTS}")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--shards", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        shards = Path(args.shards)
        if args.worker.startswith("reference"):
            rate = reference(args, shards, bf16=args.worker.endswith("bfloat16"))
        elif args.worker.startswith("minimal"):
            rate = minimal(args, shards, bf16=args.worker.endswith("bfloat16"))
        else:
            rate = ours(args, shards, args.worker)
        print(json.dumps({"tok_per_s": rate}))
        return

    from training.testing import make_text_run

    work = Path(tempfile.mkdtemp(prefix="bench-train-"))
    shards = make_text_run(Path(args.text).read_text(), work, vocab_size=args.vocab)
    variants = args.variants.split(",")
    if "reference" not in variants or not set(variants) <= set(VARIANTS):
        raise ValueError(f"--variants {args.variants!r}: must include reference, from {VARIANTS}")
    runs: dict[str, list[float]] = {name: [] for name in variants}
    sizes = ("vocab", "d_model", "n_layer", "n_head", "context", "batch", "steps", "threads", "clock")
    passthrough = [x for k in sizes for x in (f"--{k.replace('_', '-')}", str(getattr(args, k)))]
    for _ in range(args.rounds):
        for name in runs:
            command = [sys.executable, __file__, *passthrough, "--worker", name, "--shards", str(shards)]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            runs[name].append(json.loads(done.stdout.strip().splitlines()[-1])["tok_per_s"])
            print(f"  {name}: {runs[name][-1]:,.0f} tok/s", file=sys.stderr)
    base = statistics.median(runs["reference"])
    print(
        f"d_model {args.d_model}, {args.n_layer} layers, {args.n_head} heads, context {args.context}, "
        f"vocab {args.vocab}, batch {args.batch}, {args.threads} thread(s), {args.clock} clock, "
        f"{args.rounds} rounds of {args.steps} steps"
    )
    print("| loop | dtype | tok/s (median) | all rounds | vs reference |")
    print("|---|---|---|---|---|")
    for name, rates in runs.items():
        loops = {"reference": "nanoGPT model, minimal loop", "minimal": "our model, minimal loop"}
        loop = next((v for k, v in loops.items() if name.startswith(k)), "our model, refinery loop")
        dtype = name.removeprefix("reference").removeprefix("minimal").removeprefix("-") or "float32"
        dtype = dtype.replace("bfloat16", "bfloat16 autocast")
        median = statistics.median(rates)
        all_rounds = ", ".join(f"{r:,.0f}" for r in rates)
        print(f"| {loop} | {dtype} | {median:,.0f} | {all_rounds} | {median / base:.2f}x |")


if __name__ == "__main__":
    main()

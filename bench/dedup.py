"""Dedup benchmarks: MinHash signature throughput, and the deduped stage at N and 2N documents.

    python bench/dedup.py --n 100000 --cores 2
    python bench/dedup.py --n 100000 --compare conf/pipeline.yaml bench/configs/pipeline/dedup-recall.yaml

1. Signatures: documents per second on one core (one process, one thread) for synthetic 3 KB
   documents and 112 hash functions: `corpus.minhash.sign` (normalize, exact hash, shingle hashes,
   signatures, band keys) against datasketch's `MinHash.update_batch` per document (its default
   SHA-1 hash of each shingle), both from the text, in the same run.
2. Stage: `jobs.deduped.main` on N and 2N synthetic documents (8% exact copies restyled in case,
   punctuation and spacing, 8% near copies with 1% of their words replaced, in random order and
   parts), each size in a fresh process: wall time, the Python driver's peak RSS
   (VmHWM), the JVM's peak RSS (VmHWM; in local mode it holds the executors too), and the
   duplicates found against those planted.
3. `--compare CONFIG...` (instead of 1 and 2): the deduped stage on one set of N documents once
   per config, each in a fresh process: the cost in time of other LSH settings, e.g.
   FineWeb's 14 x 8 (conf/pipeline.yaml) against 26 x 8 over 208 hash values, the fewest bands of
   8 rows that make a pair at the 0.8 threshold a candidate with probability 0.99
   (corpus/minhash.py `bands_for_recall`). Besides the planted copies (near copies at Jaccard
   ~0.9), N x NEAR_SHARE / 2 copies are edited to Jaccard ~0.8, where the settings differ.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

VOCAB = 30000
EXACT_SHARE = NEAR_SHARE = 0.08
NEAR_EDIT_RATE = 0.01  # words replaced in a near copy: 5-gram Jaccard ~0.9 (estimates >= 0.8)
# `--compare`: a word in 45 replaced changes up to 5 of its 5-grams; spaced at random, Jaccard ~0.8
THRESHOLD_EDIT_RATE = 0.022


def vocabulary(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic words of 2-10 letters with Zipf frequencies: English-like lengths and repetition."""
    letters = np.array(list("etaoinshrdlucmfwypvbgkjqxz"))
    lengths = rng.integers(2, 11, VOCAB)
    words = np.array(["".join(rng.choice(letters, n)) for n in lengths])
    p = 1.0 / np.arange(1, VOCAB + 1)
    return words, p / p.sum()


def documents(n: int, chars: int, rng: np.random.Generator) -> list[str]:
    words, p = vocabulary(rng)
    per_doc = chars // 7 + 1  # 2-10 letters (6 on average) and a space per word
    ids = rng.choice(len(words), size=(n, per_doc), p=p)
    return [" ".join(words[row]) for row in ids]


def bench_signatures(docs: int, ds_docs: int, rng: np.random.Generator) -> dict:
    from datasketch import MinHash

    from corpus.minhash import band_keys, sign

    texts = documents(docs, 3000, rng)
    sign(texts[:50])  # build the code point table once, outside the timing
    started = time.perf_counter()
    _, sigs = sign(texts)
    band_keys(sigs, 14, 8)
    ours = docs / (time.perf_counter() - started)
    started = time.perf_counter()
    for text in texts[:ds_docs]:
        words = text.lower().split()
        sketch = MinHash(num_perm=112)
        sketch.update_batch([" ".join(words[i : i + 5]).encode() for i in range(len(words) - 4)])
    theirs = ds_docs / (time.perf_counter() - started)
    mean_chars = sum(map(len, texts)) / len(texts)
    return {"chars": round(mean_chars), "ours": ours, "datasketch": theirs}


def _restyle(text: str, rng: np.random.Generator) -> str:
    words = text.split()
    return "  ".join(w.upper() if rng.random() < 0.2 else w + "," for w in words) + "!"


def make_run(run_dir: Path, n: int, parts: int, seed: int, threshold_copies: bool = False) -> dict:
    """RUN/annotated/{kept/part-*.parquet, manifest.json} with planted exact and near copies; with
    `threshold_copies`, half of the near copies edited at THRESHOLD_EDIT_RATE instead."""
    import pyarrow.parquet as pq

    from corpus.manifest import write_json_atomic
    from corpus.schema import to_table

    rng = np.random.default_rng(seed)
    n_exact, n_near = int(n * EXACT_SHARE), int(n * NEAR_SHARE)
    texts = documents(n - n_exact - n_near, 3000, rng)
    words, _ = vocabulary(rng)
    for _ in range(n_exact):
        texts.append(_restyle(texts[int(rng.integers(0, n - n_exact - n_near))], rng))
    for k in range(n_near):
        base = texts[int(rng.integers(0, n - n_exact - n_near))].split()
        rate = THRESHOLD_EDIT_RATE if threshold_copies and k % 2 else NEAR_EDIT_RATE
        for i in rng.choice(len(base), max(1, round(rate * len(base))), replace=False):
            base[i] = str(words[rng.integers(0, VOCAB)])
        texts.append(" ".join(base))
    order = rng.permutation(n)
    kept = run_dir / "annotated" / "kept"
    shutil.rmtree(run_dir, ignore_errors=True)
    kept.mkdir(parents=True)
    t0 = np.datetime64("2025-01-01T00:00:00", "us")
    for p, chunk in enumerate(np.array_split(order, parts)):
        rows = [
            {
                "id": f"doc{i:09d}",
                "text": texts[i],
                "fetch_time": (t0 + int(i) * 1_000_000).item(),
                "quality": None,
            }
            for i in chunk.tolist()
        ]
        pq.write_table(to_table(rows), kept / f"part-{p:05d}.parquet", compression="zstd")
    write_json_atomic(run_dir / "annotated" / "manifest.json", {"output_fingerprint": f"bench-{n}-{seed}"})
    return {"exact_copies": n_exact, "near_copies": n_near}


def _status(path: Path) -> dict[str, str]:
    return {
        k: v.strip() for k, v in (line.split(":", 1) for line in path.read_text().splitlines() if ":" in line)
    }


def _peak_rss_mb(status: dict[str, str]) -> float:
    """VmHWM: the peak RSS of the process's own memory since its exec. (`getrusage`'s ru_maxrss
    would also count the parent's memory at the fork: Linux keeps it across execve.)"""
    return int(status["VmHWM"].split()[0]) / 1024


def _jvm_peak_rss_mb() -> float | None:
    """Peak RSS of this process's java child (the local Spark driver JVM)."""
    for path in Path("/proc").glob("[0-9]*/status"):
        try:
            status = _status(path)
        except OSError:
            continue
        if status.get("PPid") == str(os.getpid()) and status.get("Name") == "java":
            return _peak_rss_mb(status)
    return None


def stage_only(run_dir: str, cores: int, config: str | None = None) -> None:
    """Run in a fresh process: the deduped stage alone; prints one JSON line of figures."""
    from jobs import deduped
    from jobs.config import load_config
    from jobs.spark import spark_session

    cfg = load_config(config)
    spark = spark_session(cfg.spark, master=f"local[{cores}]")
    spark.sparkContext.parallelize(range(cores), cores).count()  # start the Python workers first
    shutil.rmtree(Path(run_dir) / "deduped", ignore_errors=True)
    started = time.perf_counter()
    manifest = deduped.main(spark, cfg, run_dir)
    wall = time.perf_counter() - started
    figures = {
        "rows": manifest["rows"]["in"],
        "wall_s": wall,
        "driver_peak_rss_mb": _peak_rss_mb(_status(Path("/proc/self/status"))),
        "jvm_peak_rss_mb": _jvm_peak_rss_mb(),
        "duplicates": manifest["dedup"]["duplicates"],
        "iterations": manifest["dedup"]["iterations"],
        "clusters": manifest["dedup"]["clusters"],
        "seconds": manifest["dedup"]["seconds"],
        "candidate_edges": manifest["dedup"].get("candidate_edges"),
        "verified_edges": manifest["dedup"].get("verified_edges"),
    }
    spark.stop()
    print(json.dumps(figures))


def run_stage(run_dir: Path, cores: int, config: str | None = None) -> dict:
    """`stage_only` in a fresh process; its figures."""
    command = [sys.executable, __file__, "--stage-only", str(run_dir), "--cores", str(cores)]
    out = subprocess.run(
        command + (["--config", config] if config else []), check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def compare(args: argparse.Namespace) -> None:
    """The stage on one run of N documents (with copies at the threshold) once per config."""
    from jobs.config import load_config

    run_dir = Path(args.work) / "compare"
    planted = make_run(run_dir, args.n, args.parts, args.seed + 1, threshold_copies=True)
    print(f"deduped stage, Spark local[{args.cores}], {args.n} documents, {planted}:")
    print(f"  {'config':<45} {'LSH':>10} {'wall s':>7} {'sig s':>6} {'clu s':>6} {'cand.':>7} {'near':>6}")
    for config in args.compare:
        dcfg = load_config(config).deduped
        bands, rows = dcfg.lsh_params()
        r = run_stage(run_dir, args.cores, config)
        sec = r["seconds"]
        print(
            f"  {config:<45} {f'{bands}x{rows}/{dcfg.num_perm}':>10} {r['wall_s']:>7.1f} "
            f"{sec['signatures']:>6.1f} {sec['clusters']:>6.1f} {r['candidate_edges'] or 0:>7} "
            f"{r['duplicates']['near']:>6}"
        )
    shutil.rmtree(run_dir)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=100_000, help="documents of the smaller stage run")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--parts", type=int, default=8, help="input parts per N documents")
    parser.add_argument("--work", default="/tmp/refinery-bench-dedup")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compare", nargs="+", metavar="CONFIG", help="pipeline configs timed on one set")
    parser.add_argument("--stage-only", metavar="RUN", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage_only:
        stage_only(args.stage_only, args.cores, args.config)
        return
    if args.compare:
        compare(args)
        return
    rng = np.random.default_rng(args.seed)
    sig = bench_signatures(4000, 500, rng)
    print(f"signatures, one core, {sig['chars']}-character documents, 112 hashes:")
    print(f"  corpus.minhash.sign           {sig['ours']:8.0f} documents/s")
    print(f"  datasketch MinHash per doc    {sig['datasketch']:8.0f} documents/s")
    print(f"  speed-up                      {sig['ours'] / sig['datasketch']:8.1f}x")
    results = []
    for k in (1, 2):
        run_dir = Path(args.work) / f"n{k}"
        planted = make_run(run_dir, k * args.n, k * args.parts, args.seed + k)
        results.append({**run_stage(run_dir, args.cores), **planted})
        shutil.rmtree(run_dir)
    print(f"deduped stage, Spark local[{args.cores}] (seconds: signatures / clusters / output):")
    print(
        f"  {'docs':>8} {'wall s':>7} {'sig s':>6} {'clu s':>6} {'out s':>6} {'driver MB':>9} {'JVM MB':>7} "
        f"{'rounds':>6} {'exact found/planted':>19} {'near found/planted':>18}"
    )
    for r in results:
        sec = r["seconds"]
        print(
            f"  {r['rows']:>8} {r['wall_s']:>7.1f} {sec['signatures']:>6.1f} {sec['clusters']:>6.1f} "
            f"{sec['output']:>6.1f} {r['driver_peak_rss_mb']:>9.0f} {r['jvm_peak_rss_mb'] or 0:>7.0f} "
            f"{r['iterations']:>6} {r['duplicates']['exact']:>9}/{r['exact_copies']:<9} "
            f"{r['duplicates']['near']:>8}/{r['near_copies']:<9}"
        )
    print(f"  time 2N / N: {results[1]['wall_s'] / results[0]['wall_s']:.2f}x")


if __name__ == "__main__":
    main()

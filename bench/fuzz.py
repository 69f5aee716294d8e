"""Fuzz the documents stage (WARC reader + extraction) with 1,000 damaged real WARC files.

    python bench/fuzz.py --files 1000 --workers 2

Each file is a real WARC from ../shared/data with one mutation from corpus/faults.py (truncation,
bit flips, garbage between records, corrupt members, wrong Content-Length, malformed HTTP headers,
missing WARC headers, huge and empty payloads, wrong charsets, lying Content-Encoding, deeply
nested HTML) or replaced by a file that is no WARC at all (zero bytes, a gzipped CSV, a PNG),
chosen and seeded by its index so the run is reproducible. Every file runs through
`corpus.inputs.input_documents`, as the documents stage reads it, in a worker process:
- crash: an exception escaped (must be 0);
- hang: no result within --hang-s seconds (must be 0; the worker pool is restarted);
- lost: a record of a member that ends before the first damaged byte was not read back (must be 0);
- counted: files whose counts hold a read error or that were listed as bad input files; bad:
  those listed as bad files (not a WARC, empty); silent: files that lost records with no error
  counted (must be 0). A file cut exactly at a gzip member boundary is a valid shorter WARC that
  no reader can tell from a complete one: its missing records are not counted as lost.
"""

import argparse
import multiprocessing as mp
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from corpus.extract import Extractor  # noqa: E402
from corpus.faults import MUTATIONS, clean_cut, intact_record_ids, members  # noqa: E402
from corpus.inputs import input_documents  # noqa: E402

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
EXTRACTOR = Extractor()
MAX_BASE_BYTES = 300_000  # small real files keep 1,000 extractions within minutes on 2 cores


def bases() -> list[Path]:
    files = sorted(p for p in SHARED.glob("warc-*/*.warc.gz") if p.stat().st_size <= MAX_BASE_BYTES)
    return [p for p in files if not p.name.endswith((".wat.gz", ".wet.gz"))]


def one(task: tuple[int, str, str, str]) -> dict:
    index, base, mutation, tmpdir = task
    original = Path(base).read_bytes()
    blob, first_fault = MUTATIONS[mutation](original, random.Random(index))
    path = Path(tmpdir) / f"{index:05d}.warc.gz"
    path.write_bytes(blob)
    counts: Counter = Counter()
    errors: list = []
    bad_files: list = []
    try:
        rows = input_documents(
            str(path), source="fuzz", extractor=EXTRACTOR, counts=counts, errors=errors, bad_files=bad_files
        )
        documents = sum(1 for _ in rows)
    except Exception as exc:  # the property under test: this must never happen
        return {"index": index, "mutation": mutation, "crash": f"{type(exc).__name__}: {exc}"}
    finally:
        path.unlink(missing_ok=True)
    expected = intact_record_ids(original, first_fault)
    # A file cut exactly between gzip members is a shorter valid WARC: only its members count.
    kept_to = len(blob) if clean_cut(original, blob) else len(original)
    records_original = sum(len(m.data) > 0 for m in members(original) if m.end <= kept_to)
    return {
        "index": index,
        "mutation": mutation,
        "crash": None,
        "records": counts["records"],
        "expected_min": len(expected),
        "lost": max(0, len(expected) - counts["records"]),
        "errors": counts["errors"] + len(bad_files),
        "bad": len(bad_files),
        "damaged": counts["records"] < records_original,
        "documents": documents,
    }


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--hang-s", type=float, default=60.0)
    args = parser.parse_args()
    files = bases()
    names = sorted(MUTATIONS)
    started = time.time()
    results, hangs = [], []
    with tempfile.TemporaryDirectory() as tmpdir:
        tasks = [(i, str(files[i % len(files)]), names[i % len(names)], tmpdir) for i in range(args.files)]
        pending = list(tasks)
        while pending:
            with mp.get_context("spawn").Pool(args.workers) as pool:
                futures = [(t, pool.apply_async(one, (t,))) for t in pending]
                pending = []
                for i, (task, future) in enumerate(futures):
                    try:
                        results.append(future.get(timeout=args.hang_s))
                    except mp.TimeoutError:
                        hangs.append(task)
                        pending = [t for t, _ in futures[i + 1 :]]
                        pool.terminate()  # the hung worker cannot be interrupted; start a new pool
                        break
    wall = time.time() - started
    crashes = [r for r in results if r["crash"]]
    ok = [r for r in results if not r["crash"]]
    print(f"{args.files} fuzzed files from {len(files)} real WARCs, {args.workers} workers, {wall:.0f} s")
    print(f"crashes: {len(crashes)}   hangs: {len(hangs)}")
    print(
        f"{'mutation':<26}{'files':>6}{'records':>9}{'lost':>6}{'counted':>9}{'bad':>5}{'silent':>8}{'docs':>7}"
    )
    for name in names:
        rs = [r for r in ok if r["mutation"] == name]
        print(
            f"{name:<26}{len(rs):>6}{sum(r['records'] for r in rs):>9}{sum(r['lost'] for r in rs):>6}"
            f"{sum(r['errors'] > 0 for r in rs):>9}{sum(r['bad'] for r in rs):>5}"
            f"{sum(r['damaged'] and not r['errors'] for r in rs):>8}"
            f"{sum(r['documents'] for r in rs):>7}"
        )
    for r in crashes[:10]:
        print("CRASH", r)
    for t in hangs[:10]:
        print("HANG", t[:3])


if __name__ == "__main__":
    main()

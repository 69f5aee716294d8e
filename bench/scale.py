"""Scale: per-stage wall and CPU time, peak memory and spill at N and 2N (issue 23).

    python bench/scale.py crawl --copies 3 --config bench/configs/pipeline/scale.yaml
    python bench/scale.py prose --docs 250000 --config bench/configs/pipeline/scale.yaml
    python bench/scale.py dedup --docs 2000000 --config bench/configs/pipeline/scale.yaml
    python bench/scale.py compare WORK/crawl-3.json WORK/crawl-6.json

Inputs, written under WORK/input (reused when present: the name holds every parameter):
- crawl: the WARCs of ../shared/data/crawl-sample copied K times, copy k with every host renamed
  `k<k>-<host>` and new record ids (so new document ids). Every stage runs, documents to shards.
- prose: N JSONL documents of 3-6 KB, each a run of paragraphs drawn at random from the
  Gutenberg books of ../shared/data/gutenberg-gitenberg (so two documents share a paragraph
  rarely); 8% are exact copies of an earlier document and 8% near copies (one word in 100
  replaced: Jaccard ~0.9). One plain .jsonl file, which the documents stage reads in pieces.
  Every stage runs; the documents stage reads JSONL, extracts nothing.
- dedup: N documents of 500-1,500 bytes from the same generator, written as the annotated stage
  writes them (RUN/annotated, 16 parts); the deduped stage alone runs.

Measured per stage, in this process: wall seconds; CPU seconds of the process tree (this Python
driver, the Spark JVM and its Python workers: each process's own user + system time from /proc,
polled every 100 ms and kept at its last value once it exits, so a worker that Spark's daemon
reaps mid-stage still counts; a process that lives less than a poll is missed); the peak RSS
of the Python driver, of the JVM and of the Python workers together (polled every 100 ms, so a
peak shorter than that can be missed); spill (memory and disk bytes of
the tasks' metrics) from Spark's event log, by the stage's job group. Spark runs as the config
says (scale.yaml: local[2], spark.driver.memory 4g: in local mode the driver is the executor, so
spilling, not the machine's memory, bounds what Spark holds).

`compare` prints, per stage, the ratios of a run at 2N to one at N against the targets: time at
2N <= 2.2x time at N, Python driver peak RSS at 2N within 10% of N's.
"""

import argparse
import gzip
import json
import os
import random
import re
import shutil
import sys
import threading
import time
import uuid
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"
CRAWL = DATA / "crawl-sample"
BOOKS = DATA / "gutenberg-gitenberg"
MB = 1 << 20
TICKS = os.sysconf("SC_CLK_TCK")
POLL_S = 0.1
EXACT, NEAR = 0.08, 0.08  # planted fractions of exact and near copies
NEAR_EVERY = 100  # a near copy replaces one word in this many
TARGETS = {"time_ratio": 2.2, "driver_rss_ratio": 1.10}


# region inputs


def copy_warc(source: Path, target: Path, copy: int) -> None:
    """`source` with every record's target host renamed `k<copy>-<host>` and a new record id (a
    uuid5 of the old one and the copy), each record its own gzip member, as crawlers write them."""
    data = gzip.decompress(source.read_bytes())
    host = re.compile(rb"^(WARC-Target-URI: *<?[a-zA-Z]+://)", re.MULTILINE)
    record_id = re.compile(rb"^WARC-Record-ID: *<urn:uuid:([0-9a-fA-F-]+)>", re.MULTILINE)
    with open(target, "wb") as out:
        pos = 0
        while pos < len(data):
            head_end = data.index(b"\r\n\r\n", pos) + 4
            head = data[pos:head_end]
            length = int(re.search(rb"Content-Length: *(\d+)", head, re.IGNORECASE).group(1))
            end = head_end + length + 4  # the block and its closing CRLF CRLF
            head = host.sub(rb"\g<1>k%d-" % copy, head)
            head = record_id.sub(lambda m: _new_id(m.group(1), copy), head)
            packer = zlib.compressobj(6, zlib.DEFLATED, 31)
            out.write(packer.compress(head + data[head_end:end]) + packer.flush())
            pos = end
            while data[pos : pos + 2] == b"\r\n":  # blank lines between records, if any
                pos += 2


def _new_id(old: bytes, copy: int) -> bytes:
    fresh = uuid.uuid5(uuid.NAMESPACE_URL, f"{copy}:{old.decode()}")
    return f"WARC-Record-ID: <urn:uuid:{fresh}>".encode()


def crawl_input(work: Path, copies: int) -> list[str]:
    folder = work / "input" / f"crawl-x{copies}"
    files = sorted(CRAWL.glob("*.warc.gz"))
    if not (folder / "done").is_file():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for k in range(copies):
            for f in files:
                copy_warc(f, folder / f"k{k}-{f.name}", k)
        (folder / "done").write_text("")
    return sorted(str(p) for p in folder.glob("*.warc.gz"))


def paragraphs() -> list[str]:
    """The paragraphs (40 characters or more, whitespace collapsed) of every bundled book."""
    from corpus.gutenberg import strip_gutenberg

    found = []
    for book in sorted(BOOKS.glob("*.txt")):
        text = strip_gutenberg(book.read_text(encoding="utf-8", errors="replace"))
        found += [p for p in (" ".join(b.split()) for b in re.split(r"\n\s*\n", text)) if len(p) >= 40]
    return found


def prose_documents(n: int, min_bytes: int, max_bytes: int, seed: int = 0) -> Iterator[dict]:
    """`n` documents (module docstring): paragraphs drawn at random up to a size drawn in
    [min_bytes, max_bytes]; 8% exact and 8% near copies of an earlier document."""
    pool = paragraphs()
    rng = random.Random(seed)
    recent: list[str] = []  # copies are drawn from the last 10,000 documents: memory stays flat
    for i in range(n):
        draw = rng.random()
        if recent and draw < EXACT:
            text = rng.choice(recent)
        elif recent and draw < EXACT + NEAR:
            words = rng.choice(recent).split(" ")
            for k in range(rng.randrange(NEAR_EVERY), len(words), NEAR_EVERY):
                words[k] = f"w{rng.randrange(10**6)}"
            text = " ".join(words)
        else:
            size, parts, length = rng.randint(min_bytes, max_bytes), [], 0
            while length < size:
                parts.append(rng.choice(pool))
                length += len(parts[-1]) + 2
            text = "\n\n".join(parts)[:max_bytes]
        recent = recent[-9_999:] + [text] if len(recent) >= 10_000 else recent + [text]
        yield {"id": f"doc-{i:09d}", "url": f"https://site{i % 5000}.example/{i}", "text": text}


def prose_input(work: Path, n: int, min_bytes: int, max_bytes: int) -> list[str]:
    path = work / "input" / f"prose-{n}-{min_bytes}-{max_bytes}.jsonl"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w") as out:
            for doc in prose_documents(n, min_bytes, max_bytes):
                out.write(json.dumps(doc) + "\n")
        tmp.rename(path)
    return [str(path)]


def annotated_input(run: Path, n: int, min_bytes: int, max_bytes: int, parts: int = 16) -> None:
    """RUN/annotated as the annotated stage leaves it: `parts` kept parts and a manifest."""
    import pyarrow.parquet as pq

    from corpus.manifest import fingerprint, write_json_atomic
    from corpus.schema import to_table

    kept = run / "annotated" / "kept"
    kept.mkdir(parents=True)
    docs = prose_documents(n, min_bytes, max_bytes)
    per_part = -(-n // parts)
    for p in range(parts):
        rows = max(0, min(per_part, n - p * per_part))
        with pq.ParquetWriter(kept / f"part-{p:05d}.parquet", to_table([]).schema) as writer:
            for start in range(0, rows, 8192):
                batch = [next(docs) for _ in range(min(8192, rows - start))]
                writer.write_table(to_table([{**d, "lang": "en", "source": "prose"} for d in batch]))
    key = fingerprint(["bench/scale.py", n, min_bytes, max_bytes, parts])
    write_json_atomic(run / "annotated" / "manifest.json", {"output_fingerprint": key})


# endregion
# region measurement (/proc)


def _stat(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()  # fields from the state on (the name may hold spaces)


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = defaultdict(list)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                children[int(_stat(int(entry))[1])].append(int(entry))
            except (OSError, IndexError):
                continue  # exited while listed
    found, todo = [], [root]
    while todo:
        found += children[todo[-1]]
        todo = todo[:-1] + children[todo[-1]]
    return found


def _name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def own_cpu_seconds(pid: int) -> float:
    """User + system seconds of `pid` itself (not its reaped children: those are polled as
    processes of their own, and counting them again through their parent would count twice)."""
    return sum(int(v) for v in _stat(pid)[11:13]) / TICKS  # utime stime


def cpu_by_process(pids: list[int]) -> dict[int, float]:
    """pid -> its own CPU seconds, for those of `pids` still running."""
    seconds = {}
    for pid in pids:
        try:
            seconds[pid] = own_cpu_seconds(pid)
        except (OSError, IndexError):
            continue  # exited while listed
    return seconds


def rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class Meter:
    """Peak RSS of the driver, the JVM and the Python workers, polled while in `with`."""

    def __init__(self) -> None:
        self.peaks = {"driver": 0, "jvm": 0, "workers": 0}
        self.cpu: dict[int, float] = {}  # pid -> its CPU seconds when last seen
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.poll, daemon=True)

    def sample(self) -> None:
        tree = descendants(os.getpid())
        self.cpu.update(cpu_by_process([os.getpid(), *tree]))  # an exited process keeps its last value
        jvms = [p for p in tree if _name(p) == "java"]
        workers = [p for p in tree if _name(p).startswith("python")]
        now = {
            "driver": rss_bytes(os.getpid()),
            "jvm": sum(map(rss_bytes, jvms)),
            "workers": sum(map(rss_bytes, workers)),
        }
        self.peaks = {k: max(v, now[k]) for k, v in self.peaks.items()}

    def poll(self) -> None:
        while not self.stop.is_set():
            self.sample()
            time.sleep(POLL_S)

    def __enter__(self) -> "Meter":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()
        self.sample()


def measure(spark, name: str, run: Callable[[], object]) -> dict:
    """Run one stage under its own job group; its wall and CPU seconds and memory peaks."""
    spark.sparkContext.setJobGroup(name, f"bench/scale.py {name}")
    # every process's CPU seconds so far: a process first seen later started at 0
    before = cpu_by_process([os.getpid(), *descendants(os.getpid())])
    started = time.perf_counter()
    with Meter() as meter:
        run()
    wall = time.perf_counter() - started
    cpu = sum(seconds - before.get(pid, 0.0) for pid, seconds in meter.cpu.items())
    peaks = {f"{k}_peak_rss_mb": round(v / MB, 1) for k, v in meter.peaks.items()}
    return {"stage": name, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2), **peaks}


def spills(events: Path) -> dict[str, dict[str, float]]:
    """Memory and disk bytes spilled per job group, from the tasks' metrics in Spark's event log."""
    group_of_stage: dict[int, str] = {}
    spilled: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    # Spark 4 writes a folder: rolled `events_N_APP` files beside an empty status file and checksums
    logs = [p for p in events.rglob("*") if p.is_file() and not p.name.startswith((".", "appstatus"))]
    for log in sorted(logs):
        for line in log.open():
            event = json.loads(line)
            kind = event.get("Event")
            if kind == "SparkListenerJobStart":
                group = (event.get("Properties") or {}).get("spark.jobGroup.id")
                for stage in event["Stage IDs"]:
                    group_of_stage[stage] = group
            elif kind == "SparkListenerTaskEnd" and event.get("Task Metrics"):
                metrics = event["Task Metrics"]
                spilled[event["Stage ID"]][0] += metrics.get("Memory Bytes Spilled", 0)
                spilled[event["Stage ID"]][1] += metrics.get("Disk Bytes Spilled", 0)
    out: dict[str, dict[str, float]] = defaultdict(lambda: {"memory_spilled_mb": 0.0, "disk_spilled_mb": 0.0})
    for stage, (memory, disk) in spilled.items():
        group = out[group_of_stage.get(stage) or "?"]
        group["memory_spilled_mb"] += round(memory / MB, 1)
        group["disk_spilled_mb"] += round(disk / MB, 1)
    return out


# endregion


def run_stages(args, cfg, stages: list[str], inputs: list[str], run: Path) -> list[dict]:
    """The stages in order on a fresh Spark session with an event log; one record per stage."""
    from jobs import documents
    from jobs.run import CURATION_MODULES
    from jobs.spark import spark_session

    events = Path(args.work) / "events"
    shutil.rmtree(events, ignore_errors=True)
    events.mkdir(parents=True)
    conf = {
        **cfg.spark.conf,
        "spark.eventLog.enabled": "true",
        "spark.eventLog.dir": events.resolve().as_uri(),
        "spark.eventLog.compress": "false",
    }
    cfg = cfg.model_copy(update={"spark": cfg.spark.model_copy(update={"conf": conf})})
    spark = spark_session(cfg.spark)
    records = []
    for name in stages:
        if name == "documents":
            call = lambda: documents.main(spark, cfg, inputs, str(run), "bench")  # noqa: E731
        else:
            call = lambda module=CURATION_MODULES[name]: module.main(spark, cfg, str(run))  # noqa: E731
        records.append(measure(spark, name, call))
        print(json.dumps(records[-1]), flush=True)
    spark.stop()
    spilled = spills(events)
    return [{**r, **spilled[r["stage"]]} for r in records]


def compare(before: Path, after: Path) -> None:
    a, b = json.loads(before.read_text()), json.loads(after.read_text())
    print(f"{a['label']} -> {b['label']} (targets: time <= {TARGETS['time_ratio']}x, driver RSS <= +10%)")
    print(f"{'stage':<10} {'wall':>6} {'cpu':>6} {'driver':>7} {'jvm':>6} ok")
    old = {r["stage"]: r for r in a["stages"]}
    for r in b["stages"]:
        o = old[r["stage"]]
        wall, cpu = r["wall_s"] / o["wall_s"], r["cpu_s"] / max(o["cpu_s"], 1e-9)
        driver = r["driver_peak_rss_mb"] / o["driver_peak_rss_mb"]
        jvm = r["jvm_peak_rss_mb"] / max(o["jvm_peak_rss_mb"], 1e-9)
        ok = wall <= TARGETS["time_ratio"] and driver <= TARGETS["driver_rss_ratio"]
        figures = f"{wall:>5.2f}x {cpu:>5.2f}x {driver:>6.2f}x {jvm:>5.2f}x"
        print(f"{r['stage']:<10} {figures} {'yes' if ok else 'NO'}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("mode", choices=("crawl", "prose", "dedup", "compare"))
    parser.add_argument("files", nargs="*", help="compare: the runs at N and at 2N (JSON)")
    parser.add_argument("--copies", type=int, default=3, help="crawl: copies of crawl-sample")
    parser.add_argument("--docs", type=int, default=250_000, help="prose, dedup: documents")
    parser.add_argument("--min-bytes", type=int, help="prose: 3000, dedup: 500")
    parser.add_argument("--max-bytes", type=int, help="prose: 6000, dedup: 1500")
    parser.add_argument("--config", default=str(REPO / "bench" / "configs" / "pipeline" / "scale.yaml"))
    parser.add_argument("--work", default="/tmp/refinery-bench-scale")
    args = parser.parse_args()
    if args.mode == "compare":
        return compare(*map(Path, args.files))

    from jobs.config import load_config
    from jobs.run import CURATION

    cfg = load_config(args.config)
    work = Path(args.work)
    small = args.mode == "dedup"
    low, high = args.min_bytes or (500 if small else 3000), args.max_bytes or (1500 if small else 6000)
    label = f"{args.mode}-{args.copies if args.mode == 'crawl' else args.docs}"
    run = work / "runs" / label
    shutil.rmtree(run, ignore_errors=True)
    inputs: list[str] = []
    if args.mode == "crawl":
        inputs, stages = crawl_input(work, args.copies), list(CURATION)
    elif args.mode == "prose":
        inputs, stages = prose_input(work, args.docs, low, high), list(CURATION)
    else:
        annotated_input(run, args.docs, low, high)
        stages = ["deduped"]
    records = run_stages(args, cfg, stages, inputs, run)
    result = {"label": label, "config": args.config, "input_files": len(inputs), "stages": records}
    (work / f"{label}.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result))


if __name__ == "__main__":
    main()

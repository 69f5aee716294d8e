"""Fixed costs of a documents + annotated run: what is paid once per run, per stage, per Python
worker and per task, against the work itself.

    python bench/fixed_costs.py loads --config bench/configs/pipeline/fixed-costs-x3.yaml \
        --input '/tmp/fastwarc-x3/crawl/*.warc.gz' --run RUN
    python bench/fixed_costs.py events --events /tmp/fastwarc-events --log RUN.log --start T0 --end T1

`loads`, in this fresh process as a Spark Python worker starts: the imports a task's closure
brings (jobs.documents, jobs.annotated: trafilatura, resiliparse), then two documents tasks (two
input WARCs, the stage's extractor and gate) and two annotated tasks (two 1 MiB units of RUN's
documents) one after the other, as a reused worker runs them, each timed, with the fastText models
loaded during each (fasttext.load_model counted). A model loaded per task shows as a load in the
second task; with `--same` both documents tasks read the same WARC, so the difference between
them is what the first task pays once. Times are CPU seconds of this process, which a loaded
machine inflates less than wall time.

`events` reads the run's log (the `[1/2] documents started` / `done in` lines, timestamped by
the CLI) and Spark's event log (`spark.eventLog.enabled`, the config above): the seconds from
process start (`--start`, `date +%s.%N` before the command) to the SparkContext (Python start,
imports, JVM) and to the first stage, and from the last stage's end to exit (`--end`, after the
command); per stage its wall time, the time inside Spark jobs, and its tasks' deserialize and run
times.
"""

import argparse
import glob
import json
import os
import sys
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

LOG_TIME = "%Y-%m-%d %H:%M:%S,%f"


def loads(config: str, inputs: list[str], run: str, same: bool) -> None:
    started = time.process_time()
    import fasttext

    import jobs.annotated  # noqa: F401  what unpickling an annotated task imports
    import jobs.documents  # noqa: F401  what unpickling a documents task imports

    print(f"imports (jobs.documents, jobs.annotated): {time.process_time() - started:.2f} CPU s")
    calls = []
    load = fasttext.load_model
    fasttext.load_model = lambda path, *a, **k: calls.append(path) or load(path, *a, **k)
    # --same: both documents tasks read the first WARC, so task 1 - task 2 is the first task's extra
    documents = _documents_task(config, inputs[:1] * 2 if same else inputs)
    tasks = {"documents": documents, "annotated": _annotated_task(config, run)}
    for name, task in tasks.items():
        for i in range(2):
            before, began = len(calls), time.process_time()
            rows = task(i)
            print(
                f"{name} task {i + 1}: {time.process_time() - began:.2f} CPU s, {rows} rows, "
                f"fastText models loaded: {len(calls) - before}"
            )


def _documents_task(config: str, inputs: list[str]):
    from collections import Counter

    from classifiers.langid import lid176_path
    from corpus.extract import Extractor
    from corpus.inputs import input_documents
    from jobs.config import build, load_config
    from jobs.documents import make_gate

    cfg = load_config(config)
    extractor, gate = build(Extractor, cfg.documents), make_gate(cfg, lid176_path())

    def task(i: int) -> int:
        counts: Counter = Counter()
        rows = input_documents(
            inputs[i], source="x3", extractor=extractor, counts=counts, errors=[], bad_files=[], gate=gate
        )
        return sum(1 for _ in rows)

    return task


def _annotated_task(config: str, run: str):
    from classifiers.langid import lid176_path
    from corpus.units import plan_parts, unit_rows
    from jobs.annotated import make_annotator
    from jobs.config import load_config
    from jobs.stage import ROWS_PER_BATCH

    cfg = load_config(config)
    annotator = make_annotator(cfg.annotated, lid176_path(), seed=cfg.seed)
    # units of 1 MiB, not the config's 128: crawl-sample x3's 1,098 kept documents are one unit at 128
    units = plan_parts(sorted(glob.glob(f"{run}/documents/kept/*.parquet")), 1.0)
    return lambda i: sum(1 for doc in unit_rows(units[i], ROWS_PER_BATCH) if annotator(doc))


def events(folder: str, log: str, start: float, end: float | None) -> None:
    lines = _event_log(folder)
    app = next(e for e in lines if e["Event"] == "SparkListenerApplicationStart")["Timestamp"] / 1000
    stages = _stage_times(log)
    first = min(began for began, _ in stages.values())
    print(f"process start to SparkContext: {app - start:.1f} s; to the first stage: {first - start:.1f} s")
    if end is not None:
        last = max(done for _, done in stages.values())
        print(f"whole run: {end - start:.1f} s; last stage done to exit: {end - last:.1f} s")
    jobs = {e["Job ID"]: e["Submission Time"] / 1000 for e in lines if e["Event"] == "SparkListenerJobStart"}
    ends = {e["Job ID"]: e["Completion Time"] / 1000 for e in lines if e["Event"] == "SparkListenerJobEnd"}
    tasks = [e for e in lines if e["Event"] == "SparkListenerTaskEnd"]
    for name, (began, done) in stages.items():
        in_jobs = sum(ends[j] - s for j, s in jobs.items() if began <= s <= done)
        mine = [t for t in tasks if began <= t["Task Info"]["Launch Time"] / 1000 <= done]
        run_s = sum(t["Task Metrics"]["Executor Run Time"] for t in mine) / 1000
        deser = sum(t["Task Metrics"]["Executor Deserialize Time"] for t in mine) / 1000
        print(
            f"{name}: wall {done - began:.1f} s, in Spark jobs {in_jobs:.1f} s, driver only "
            f"{done - began - in_jobs:.1f} s; {len(mine)} tasks: run {run_s:.1f} s, deserialize {deser:.2f} s"
        )


def _event_log(folder: str) -> list[dict]:
    """The events of the latest application logged in `folder` (Spark 4: `eventlog_v2_*/events_*`,
    zstd-compressed by default)."""
    paths = glob.glob(f"{folder}/eventlog_v2_*/events_*") or glob.glob(f"{folder}/*")
    if not paths:
        raise FileNotFoundError(f"{folder}: no Spark event log (spark.eventLog.enabled in the run's config)")
    path = max(paths, key=os.path.getmtime)
    import pyarrow as pa

    raw = pa.OSFile(path)
    stream = pa.CompressedInputStream(raw, "zstd") if path.endswith(".zstd") else raw
    return [json.loads(line) for line in stream.read().decode().splitlines() if line]


def _stage_times(log: str) -> dict[str, tuple[float, float]]:
    """{stage: (start, end)} in epoch seconds, from the CLI's `[i/n] NAME started|done in` lines."""
    out: dict[str, list[float]] = {}
    for line in Path(log).read_text().splitlines():
        if " jobs.run: [" not in line or not (line.endswith(" started") or " done in " in line):
            continue
        stamp = datetime.strptime(line[:23], LOG_TIME).timestamp()
        name = line.split("] ", 1)[1].split(" ", 1)[0]
        out.setdefault(name, []).append(stamp)
    return {name: (times[0], times[-1]) for name, times in out.items()}


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    sub = parser.add_subparsers(dest="mode", required=True)
    a = sub.add_parser("loads")
    a.add_argument("--config", required=True)
    a.add_argument("--input", required=True)
    a.add_argument("--run", required=True, help="a run whose documents stage is done")
    a.add_argument("--same", action="store_true", help="both documents tasks read the first input")
    e = sub.add_parser("events")
    e.add_argument("--events", required=True)
    e.add_argument("--log", required=True)
    e.add_argument("--start", type=float, required=True)
    e.add_argument("--end", type=float, help="epoch seconds just after the command (date +%%s.%%N)")
    args = parser.parse_args()
    if args.mode == "loads":
        loads(args.config, sorted(glob.glob(args.input)), args.run, args.same)
    else:
        events(args.events, args.log, args.start, args.end)
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

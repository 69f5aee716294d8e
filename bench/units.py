"""Work units: one large JSONL.gz file as the only input, and the annotated tasks it becomes.

    python bench/units.py --docs 100000 --chars 2000

Writes `--docs` documents (slices of `--chars` characters of the bundled positives, each with
its own id) into WORK/input/docs.jsonl.gz, runs the documents stage (one task: a gzip file is
read sequentially) and the annotated stage at the default `spark.task_target_mb`, quality
scoring off, on local[CORES]. Prints the annotated plan from the manifest (corpus/units.py),
the rows of each part, the Spark tasks of the annotated stage and the most tasks running at
once, polled every 50 ms from `SparkContext.statusTracker`. These are task counts, not timings.
"""

import argparse
import gzip
import json
import shutil
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

POSITIVES = Path(__file__).resolve().parent.parent / "data" / "quality" / "positives.jsonl.gz"


def write_input(path: Path, docs: int, chars: int) -> None:
    texts = [json.loads(line)["text"] for line in gzip.open(POSITIVES, "rt")]
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as out:
        for i in range(docs):
            text = texts[i % len(texts)]
            start = (i * 7919) % max(1, len(text) - chars)  # a different slice for each id
            out.write(json.dumps({"id": f"doc-{i}", "text": text[start : start + chars]}) + "\n")


class TaskWatch:
    """The most tasks any active stage ran at once, and each stage's task count, while in `with`."""

    def __init__(self, spark) -> None:
        self.tracker = spark.sparkContext.statusTracker()
        self.most_running, self.tasks = 0, {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.poll, daemon=True)

    def poll(self) -> None:
        while not self.stop.is_set():
            for stage in self.tracker.getActiveStageIds():
                if info := self.tracker.getStageInfo(stage):
                    self.most_running = max(self.most_running, info.numActiveTasks)
                    self.tasks[stage] = info.numTasks
            time.sleep(0.05)

    def __enter__(self) -> "TaskWatch":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--chars", type=int, default=2000, help="characters of text per document")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--work", default="/tmp/refinery-bench-units")
    args = parser.parse_args()

    from jobs import annotated, documents
    from jobs.config import load_config
    from jobs.spark import spark_session

    work = Path(args.work)
    source = work / "input" / "docs.jsonl.gz"
    write_input(source, args.docs, args.chars)
    shutil.rmtree(work / "run", ignore_errors=True)
    cfg = load_config()
    quality = cfg.annotated.quality.model_copy(update={"enabled": False})
    cfg = cfg.model_copy(update={"annotated": cfg.annotated.model_copy(update={"quality": quality})})
    spark = spark_session(cfg.spark, f"local[{args.cores}]")
    docs = documents.main(spark, cfg, [str(source)], str(work / "run"), "units")
    with TaskWatch(spark) as watch:
        manifest = annotated.main(spark, cfg, str(work / "run"))
    spark.stop()
    figures = {
        "input_bytes": source.stat().st_size,
        "documents_parts": len(docs["parts"]),
        "documents_rows": docs["rows"]["kept"],
        "annotated_plan": manifest["plan"],
        "annotated_part_rows": [p["counts"]["documents"] for p in manifest["parts"]],
        "annotated_stage_tasks": sorted(watch.tasks.values()),
        "most_tasks_running_at_once": watch.most_running,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

"""Balanced work units in the stages after documents: one large documents part is annotated by
several tasks, with the same rows as one task gives (corpus/units.py)."""

import gzip
import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from corpus.manifest import read_json
from jobs import annotated, documents, mixed
from jobs.config import load_config

REPO = Path(__file__).resolve().parent.parent
POSITIVES = REPO / "data" / "quality" / "positives.jsonl.gz"
DOCS = 2400  # three row groups of the documents part (jobs/stage.py ROWS_PER_BATCH)
TINY_MB = 0.25  # under one row group (~1 MB here): one unit per row group
pytestmark = pytest.mark.spark


def config(target_mb: float):
    cfg = load_config()
    quality = cfg.annotated.quality.model_copy(update={"enabled": False})  # too few sites to train on
    return cfg.model_copy(
        update={
            "annotated": cfg.annotated.model_copy(update={"quality": quality}),
            "mixed": cfg.mixed.model_copy(update={"default_repeat": 0.5}),  # some rows drawn 0 times
            "spark": cfg.spark.model_copy(update={"task_target_mb": target_mb}),
        }
    )


@pytest.fixture(scope="module")
def documents_run(spark, tmp_path_factory) -> Path:
    """A documents stage of one part: prose of several lengths, every tenth document too short."""
    with gzip.open(POSITIVES, "rt") as f:
        texts = [json.loads(line)["text"] for line in f]
    folder = tmp_path_factory.mktemp("input")
    with gzip.open(folder / "docs.jsonl.gz", "wt") as out:
        for i in range(DOCS):
            text = "too short" if i % 10 == 0 else texts[i % len(texts)][: 600 + 100 * (i % 7)]
            out.write(json.dumps({"id": f"doc-{i}", "text": text}) + "\n")
    run = tmp_path_factory.mktemp("documents")
    documents.main(spark, config(128), [str(folder / "docs.jsonl.gz")], str(run), "docs")
    assert len(read_json(run / "documents" / "manifest.json")["parts"]) == 1
    return run


def annotate(spark, documents_run: Path, out: Path, target_mb: float) -> dict:
    shutil.copytree(documents_run / "documents", out / "documents")
    return annotated.main(spark, config(target_mb), str(out))


def rows(run: Path, stage: str = "annotated", columns: tuple[str, ...] = ("id", "text", "reject", "lang")):
    found = set()
    for split in ("kept", "rejected"):
        for path in sorted((run / stage / split).glob("part-*.parquet")):
            table = pq.read_table(path, columns=list(columns))
            found |= {tuple(r.values()) for r in table.to_pylist()}
    return found


def test_one_documents_part_is_annotated_by_several_tasks_with_the_same_rows(spark, documents_run, tmp_path):
    whole = annotate(spark, documents_run, tmp_path / "whole", 128)
    split = annotate(spark, documents_run, tmp_path / "split", TINY_MB)
    assert whole["plan"]["units"] == len(whole["parts"]) == 1
    assert split["plan"]["units"] == len(split["parts"]) >= 2
    assert [p["counts"]["documents"] for p in split["parts"]] == [1024, 1024, DOCS - 2048]
    assert split["rows"] == whole["rows"] and split["rejected"] == whole["rejected"]
    assert split["rows"]["kept"] > 0 and split["rows"]["rejected"] >= DOCS // 10
    assert rows(tmp_path / "split") == rows(tmp_path / "whole")
    again = annotate(spark, documents_run, tmp_path / "again", TINY_MB)
    assert again["output_fingerprint"] == split["output_fingerprint"]


def test_mixed_cuts_one_upstream_part_into_several_tasks_with_the_same_draws(spark, documents_run, tmp_path):
    annotate(spark, documents_run, tmp_path / "whole", 128)
    shutil.copytree(tmp_path / "whole", tmp_path / "split")
    whole = mixed.main(spark, config(128), str(tmp_path / "whole"))
    split = mixed.main(spark, config(TINY_MB), str(tmp_path / "split"))
    assert len(whole["parts"]) == 1 and len(split["parts"]) == split["plan"]["units"] >= 2
    assert split["rows"] == whole["rows"] and split["rejected"]["mix:downsampled"] > 0
    columns = ("id", "bucket", "repeats", "reject")
    assert rows(tmp_path / "split", "mixed", columns) == rows(tmp_path / "whole", "mixed", columns)

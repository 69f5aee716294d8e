"""The documents stage with its shortcuts on (classifiers/prefilter.py): the same bytes on a rerun,
and on one core as on two."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from corpus.filters.language import PREFILTER_MARGIN
from jobs import documents
from jobs.config import load_config

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "data" / "sample"
# Common Crawl pages in several languages and ClueWeb's Japanese ones: the prefilter rejects some.
FILES = ("commoncrawl-2020-34.warc.gz", "commoncrawl-2024-22.warc.gz", "clueweb-quirk.warc.gz")

pytestmark = [pytest.mark.spark, pytest.mark.slow]


def parts(run: Path) -> dict[Path, bytes]:
    return {p.relative_to(run): p.read_bytes() for p in sorted(run.glob("documents/*/*.parquet"))}


def test_documents_are_byte_identical_on_rerun_and_on_one_or_two_cores(spark, tmp_path):
    inputs = tmp_path / "sample"
    inputs.mkdir()
    for name in FILES:
        shutil.copy(SAMPLE / name, inputs / name)
    paths = sorted(str(p) for p in inputs.glob("*.warc.gz"))
    two = tmp_path / "two"  # the session fixture: local[2]
    documents.main(spark, load_config(), paths, str(two), "sample")
    prefiltered = duckdb.sql(
        f"SELECT count(*) FROM read_parquet('{two}/documents/rejected/*.parquet') "
        f"WHERE reject = 'lang:not_allowed' AND signals.lang_prefilter_allowed_score < {PREFILTER_MARGIN}"
    ).fetchall()[0][0]
    assert prefiltered > 0
    first = parts(two)

    shutil.rmtree(two / "documents")
    documents.main(spark, load_config(), paths, str(two), "sample")
    assert parts(two) == first

    one = tmp_path / "one"
    command = [
        sys.executable,
        "-m",
        "jobs.cli",
        "run",
        "--input",
        str(inputs / "*.warc.gz"),
        "--out",
        str(one),
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [*command, "--stages", "documents", "--master", "local[1]"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert parts(one) == first

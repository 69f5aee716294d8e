"""The one hash draw (corpus/sampling.py) and the bounded sample selected in Spark (jobs/sampling.py)."""

import json
import os
import subprocess
import sys

import pytest

from corpus.sampling import hashed_unit

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PARTS = 4
# A part's candidates: (unit, id) of 50 ids, so the order is total (ties broken by the id).
DRAW = "lambda index: [(hashed_unit(f'id-{index}-{n}', 7), f'id-{index}-{n}') for n in range(50)]"


def test_hashed_unit_values_are_pinned():
    """Folds, held-out splits and samples of existing runs depend on these exact values."""
    assert hashed_unit("doc-1", 0) == 0.9716008599955269
    assert hashed_unit("fold:example.org", 3) == 0.653497720274612


def everything() -> list[tuple[float, str]]:
    draw = eval(DRAW)
    return sorted(item for index in range(PARTS) for item in draw(index))


@pytest.mark.spark
def test_the_driver_receives_at_most_k_items_the_k_smallest(spark):
    from jobs.sampling import bottom_k

    received = bottom_k(spark, PARTS, eval(DRAW), 7, order=lambda item: item)
    assert len(everything()) == 200 and received == everything()[:7]
    assert bottom_k(spark, PARTS, eval(DRAW), 500, order=lambda item: item) == everything()
    assert bottom_k(spark, 0, eval(DRAW), 7, order=lambda item: item) == []


LOCAL_ONE = f"""
import json
from corpus.sampling import hashed_unit
from jobs.config import SparkConfig
from jobs.sampling import bottom_k
from jobs.spark import spark_session

spark = spark_session(SparkConfig(master="local[1]", driver_memory="1g"))
print(json.dumps(bottom_k(spark, {PARTS}, {DRAW}, 9, order=lambda item: item)))
spark.stop()
"""


@pytest.mark.spark
@pytest.mark.slow
def test_the_sample_is_the_same_on_one_and_two_local_cores(spark):
    """The session fixture runs local[2]; a fresh process runs local[1]."""
    from jobs.sampling import bottom_k

    two = bottom_k(spark, PARTS, eval(DRAW), 9, order=lambda item: item)
    env = {**os.environ, "PYTHONPATH": REPO}
    one = subprocess.run(
        [sys.executable, "-c", LOCAL_ONE], capture_output=True, text=True, env=env, cwd=REPO, check=True
    )
    assert [tuple(item) for item in json.loads(one.stdout.strip().splitlines()[-1])] == two

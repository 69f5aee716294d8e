"""A bounded sample of a stage's input, selected on the executors: only the sample reaches the driver.

`bottom_k` is a distributed top-k. Each task reads its own input part and keeps the k items of
smallest `order` as they stream by (heapq, O(k) memory); one task keeps the k smallest of
those (a shuffle of at most k items per part); the driver receives at most k items, sorted.
With distinct orders (a seeded hash of the id, ties broken by the id or the position) the
result is a function of the input alone, whatever the partitioning, scheduling or master.
"""

import heapq
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from pyspark.sql import SparkSession

T = TypeVar("T")


def bottom_k(
    spark: SparkSession, parts: int, draw: Callable[[int], Iterable[T]], k: int, order: Callable[[T], Any]
) -> list[T]:
    """The k items of smallest `order` among `draw(0)`, ..., `draw(parts - 1)`, in that order.

    `draw(index)` runs on an executor and yields the candidate items of input part `index`.
    """

    def smallest(items: Iterable[T]) -> list[T]:
        return heapq.nsmallest(k, items, key=order)

    tasks = spark.sparkContext.parallelize(range(parts), max(parts, 1))  # one task per input part
    per_part = tasks.flatMap(draw).mapPartitions(smallest)
    return per_part.repartition(1).mapPartitions(smallest).collect()

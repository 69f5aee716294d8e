"""Work units: a stage's tasks sized by bytes of its input, not by the number of upstream files.

A stage reading an upstream stage's Parquet parts plans its tasks from the parts' footers: each
row group's row count and uncompressed size (pyarrow `RowGroupMetaData.total_byte_size`). The
row groups, in (part, row group) order, are cut greedily into units of about `target_bytes`:
one 20 GB part becomes many units, read in parallel, and a run of small parts is merged into
one unit. A unit never splits a row group, so a unit holds at most `target_bytes` plus one row
group (the documents stage writes row groups of at most ROWS_PER_BATCH rows, jobs/stage.py: ~3.5
MB at the 3.4 KB median crawl page).

The plan is a function of the footers and the target alone, so the same input and config give
the same units, in the same order, and a resumed stage finds its finished units by index.
"""

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from corpus.fs import open_input

MB = 1 << 20


@dataclass(frozen=True)
class RowGroup:
    rows: int
    bytes: int  # uncompressed


@dataclass(frozen=True)
class Slice:
    """Row groups `first` to `stop - 1` of one file."""

    file: str
    first: int
    stop: int


@dataclass(frozen=True)
class Unit:
    slices: tuple[Slice, ...]
    rows: int
    bytes: int

    def describe(self) -> list[dict]:
        """The unit for a part summary: its files and row-group ranges."""
        return [{"file": s.file, "row_groups": [s.first, s.stop]} for s in self.slices]


def row_groups(path: str) -> list[RowGroup]:
    """Row count and uncompressed size of each row group of a Parquet file, from its footer."""
    with open_input(path) as f:
        meta = pq.ParquetFile(f).metadata
    return [
        RowGroup(meta.row_group(i).num_rows, meta.row_group(i).total_byte_size)
        for i in range(meta.num_row_groups)
    ]


def plan_units(files: Sequence[tuple[str, Sequence[RowGroup]]], target_bytes: int) -> list[Unit]:
    """Cut the files' row groups, in the order given, into units of about `target_bytes` each.

    A unit is closed before the row group that would take it over the target, so every unit but
    one of a single oversized row group stays within it. Empty row groups and files add nothing.
    """
    assert target_bytes > 0, f"target_bytes must be positive, got {target_bytes}"
    units: list[Unit] = []
    slices: list[Slice] = []
    rows = size = 0
    for file, groups in files:
        for index, group in enumerate(groups):
            if group.rows == 0:
                continue
            if slices and size + group.bytes > target_bytes:
                units.append(Unit(tuple(slices), rows, size))
                slices, rows, size = [], 0, 0
            last = slices[-1] if slices else None
            if last is not None and last.file == file and last.stop == index:
                slices[-1] = Slice(file, last.first, index + 1)
            else:
                slices.append(Slice(file, index, index + 1))
            rows, size = rows + group.rows, size + group.bytes
    if slices:
        units.append(Unit(tuple(slices), rows, size))
    return units


def plan_parts(paths: Sequence[str], target_mb: float) -> list[Unit]:
    """The units of Parquet files `paths` (in that order) at a target of `target_mb` MiB each."""
    return plan_units([(p, row_groups(p)) for p in paths], max(1, round(target_mb * MB)))


def unit_batches(unit: Unit, batch_rows: int, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
    """The unit's rows in plan order, `batch_rows` at a time; only its row groups are read."""
    for part in unit.slices:
        with open_input(part.file) as f:  # a local file or an object (corpus/fs.py)
            groups = range(part.first, part.stop)
            yield from pq.ParquetFile(f).iter_batches(batch_rows, row_groups=groups, columns=columns)


def unit_rows(unit: Unit, batch_rows: int, columns: list[str] | None = None) -> Iterator[dict]:
    """The unit's rows as dicts, in plan order."""
    for batch in unit_batches(unit, batch_rows, columns):
        yield from batch.to_pylist()


def file_rows(path: str, batch_rows: int) -> Iterator[dict]:
    """The rows of one Parquet file (local, or an object: corpus/fs.py) as dicts, in file order."""
    with open_input(path) as f:
        for batch in pq.ParquetFile(f).iter_batches(batch_rows):
            yield from batch.to_pylist()


def plan_summary(units: Sequence[Unit], target_mb: float) -> dict:
    """The plan as a manifest records it: target, unit count and the largest unit."""
    return {
        "task_target_mb": target_mb,
        "units": len(units),
        "max_unit_rows": max((u.rows for u in units), default=0),
        "max_unit_bytes": max((u.bytes for u in units), default=0),
    }

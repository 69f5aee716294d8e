"""Work units (corpus/units.py): row groups cut into tasks of about a target size."""

import pyarrow as pa
import pyarrow.parquet as pq

from corpus.units import RowGroup, Slice, plan_parts, plan_units, row_groups, unit_rows


def groups(*sizes: int) -> list[RowGroup]:
    return [RowGroup(rows=10, bytes=size) for size in sizes]


def test_one_large_file_is_cut_into_several_units():
    units = plan_units([("big", groups(40, 40, 40, 40, 40))], target_bytes=100)
    assert [u.slices for u in units] == [(Slice("big", 0, 2),), (Slice("big", 2, 4),), (Slice("big", 4, 5),)]
    assert [(u.rows, u.bytes) for u in units] == [(20, 80), (20, 80), (10, 40)]


def test_small_files_are_merged_into_one_unit_in_file_order():
    units = plan_units([("a", groups(10)), ("b", groups(10, 10)), ("c", groups(10))], target_bytes=100)
    assert [u.slices for u in units] == [(Slice("a", 0, 1), Slice("b", 0, 2), Slice("c", 0, 1))]


def test_a_row_group_over_the_target_is_a_unit_of_its_own():
    units = plan_units([("a", groups(30, 500, 30))], target_bytes=100)
    assert [u.slices for u in units] == [(Slice("a", 0, 1),), (Slice("a", 1, 2),), (Slice("a", 2, 3),)]


def test_empty_row_groups_and_files_make_no_unit():
    empty = [RowGroup(rows=0, bytes=0)]
    assert plan_units([("a", empty), ("b", [])], target_bytes=100) == []
    units = plan_units([("a", empty + groups(10))], target_bytes=100)
    assert [u.slices for u in units] == [(Slice("a", 1, 2),)]


def test_units_read_exactly_their_row_groups_in_order(tmp_path):
    paths = []
    for name, start in (("a", 0), ("b", 50)):
        path = tmp_path / f"{name}.parquet"
        with pq.ParquetWriter(path, pa.schema([("n", pa.int64())])) as writer:
            for first in range(start, start + 50, 10):  # five row groups of ten rows
                writer.write_table(pa.table({"n": list(range(first, first + 10))}))
        paths.append(str(path))
    size = row_groups(paths[0])[0].bytes
    assert {g.bytes for p in paths for g in row_groups(p)} == {size}
    units = plan_parts(paths, target_mb=3 * size / (1 << 20))  # three row groups a unit
    assert len(units) == 4
    read = [[row["n"] for row in unit_rows(unit, batch_rows=4)] for unit in units]
    assert [n for unit in read for n in unit] == list(range(100))
    assert [len(unit) for unit in read] == [30, 30, 30, 10]

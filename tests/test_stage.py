import logging

import pyarrow.parquet as pq
import pytest

from jobs.stage import Stage, run_parts, up_to_date


def rows(n, rejected_every=3):
    return [
        {"id": f"d{i}", "text": f"text {i}", "reject": "c4:lorem_ipsum" if i % rejected_every == 0 else None}
        for i in range(n)
    ]


def run_stage(stage, parts):
    stage.prepare()
    summaries = [
        stage.part_done(i) or stage.write_part(i, rows(n), counts={"documents": n})
        for i, n in enumerate(parts)
    ]
    return stage.commit(summaries, rows_in=sum(parts), started=0.0)


def test_parts_split_rows_into_kept_and_rejected_with_counts(tmp_path):
    manifest = run_stage(Stage(str(tmp_path), "annotated", "c1", "i1"), [10, 5])
    assert manifest["rows"] == {"in": 15, "kept": 9, "rejected": 6}
    assert manifest["rejected"] == {"c4:lorem_ipsum": 6}
    kept = pq.read_table(tmp_path / "annotated" / "kept" / "part-00000.parquet")
    assert kept.column("id").to_pylist() == ["d1", "d2", "d4", "d5", "d7", "d8"]
    assert not (tmp_path / ".annotated.partial").exists()


def test_finished_stage_is_recognized_only_with_same_config_and_input(tmp_path):
    run_stage(Stage(str(tmp_path), "annotated", "c1", "i1"), [4])
    assert Stage(str(tmp_path), "annotated", "c1", "i1").finished() is not None
    assert Stage(str(tmp_path), "annotated", "c2", "i1").finished() is None
    assert Stage(str(tmp_path), "annotated", "c1", "i2").finished() is None


def test_interrupted_stage_reuses_finished_parts(tmp_path):
    first = Stage(str(tmp_path), "annotated", "c1", "i1")
    first.prepare()
    first.write_part(0, rows(4), counts={"documents": 4}, marker="first attempt")
    again = Stage(str(tmp_path), "annotated", "c1", "i1")
    again.prepare()
    assert again.part_done(0)["marker"] == "first attempt"
    assert again.part_done(1) is None


def test_partial_output_of_another_config_is_discarded(tmp_path):
    first = Stage(str(tmp_path), "annotated", "c1", "i1")
    first.prepare()
    first.write_part(0, rows(4), counts={"documents": 4})
    other = Stage(str(tmp_path), "annotated", "c2", "i1")
    other.prepare()
    assert other.part_done(0) is None


def test_same_rows_give_byte_identical_parts(tmp_path):
    a = run_stage(Stage(str(tmp_path / "a"), "annotated", "c1", "i1"), [50])
    b = run_stage(Stage(str(tmp_path / "b"), "annotated", "c1", "i1"), [50])
    assert a["output_fingerprint"] == b["output_fingerprint"]


def test_counts_that_do_not_add_up_fail_loudly(tmp_path):
    stage = Stage(str(tmp_path), "annotated", "c1", "i1")
    stage.prepare()
    summary = stage.write_part(0, rows(6), counts={"documents": 6})
    with pytest.raises(AssertionError, match="rows in 7"):
        stage.commit([summary], rows_in=7, started=0.0)


def test_only_a_finished_stage_is_up_to_date_and_logged_as_skipped(tmp_path, caplog):
    logger = logging.getLogger("jobs.annotated")
    caplog.set_level(logging.INFO, logger="jobs.annotated")
    stage = Stage(str(tmp_path), "annotated", "c1", "i1")
    assert up_to_date(stage, logger) is None and "skipped" not in caplog.text
    manifest = run_stage(stage, [4])
    assert up_to_date(stage, logger) == manifest
    assert f"annotated: up to date, skipped ({tmp_path / 'annotated'})" in caplog.text


@pytest.mark.spark
def test_run_parts_commits_one_part_per_task_after_finish_saw_them_all(spark, tmp_path):
    stage = Stage(str(tmp_path), "annotated", "c1", "i1")
    stage.prepare()
    sizes = [3, 0, 5]

    def task(index):  # a closure, so the executors need not import this test module
        docs = ({"id": f"d{index}-{i}", "text": "t", "reject": None} for i in range(sizes[index]))
        return stage.write_part(index, docs, counts={"documents": sizes[index]})

    def finish(parts):
        assert all(stage.part_done(i) for i in range(len(sizes))), "finish ran before every part was written"
        return {"order": [p["index"] for p in parts]}

    manifest = run_parts(spark, stage, len(sizes), task, started=0.0, finish=finish)
    assert manifest["rows"] == {"in": 8, "kept": 8, "rejected": 0}
    assert manifest["order"] == [0, 1, 2] and len(manifest["parts"]) == 3
    assert up_to_date(stage, logging.getLogger(__name__)) == manifest

"""A Spark Python worker runs many tasks (spark.python.worker.reuse): the fastText models a task
uses are loaded once per worker process, not once per task (bench/fixed_costs.py)."""

import dataclasses

import fasttext
import pytest

from classifiers.langid import lid176_path, load_model
from jobs.annotated import make_annotator
from jobs.config import PipelineConfig
from jobs.documents import make_gate

PAGE_TEXT = "The quick brown fox jumps over the lazy dog, and then it runs back home again."


@pytest.fixture
def loads(monkeypatch) -> list[str]:
    """The paths fastText loads from here on, with the per-process cache emptied first."""
    seen: list[str] = []
    real = fasttext.load_model
    monkeypatch.setattr(fasttext, "load_model", lambda path: seen.append(path) or real(path))
    load_model.cache_clear()
    yield seen
    load_model.cache_clear()


def test_two_annotated_tasks_in_one_worker_load_lid_once(loads):
    annotator = make_annotator(PipelineConfig().annotated, lid176_path())
    for _ in range(2):  # each task copies the annotator with the worker's path (_annotate_unit)
        task = dataclasses.replace(annotator, lid_model=lid176_path())
        assert task({"id": "a", "text": PAGE_TEXT})["lang"] == "en"
    assert loads == [lid176_path()]


def test_two_documents_tasks_in_one_worker_load_lid_once(loads):
    gate = make_gate(PipelineConfig(), lid176_path())
    assert gate is not None and gate.prefilter is not None  # the default config prefilters
    for _ in range(2):  # each task copies the gate with the worker's path (_read_piece)
        task = dataclasses.replace(gate, lid_model=lid176_path())
        assert task.page(PAGE_TEXT) is None and task.keeps(PAGE_TEXT)
    assert loads == [lid176_path()]

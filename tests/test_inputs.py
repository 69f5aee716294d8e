"""Input files of the documents stage (corpus/inputs.py): documents as JSONL or Parquet, with a
row and a reason for every bad line, and bad files listed instead of raised. No Spark here;
tests/test_inputs_spark.py runs the same files through the stages."""

import gzip
import json
import os
import shutil
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from corpus import inputs
from corpus.documents import stable_id
from corpus.extract import Extractor
from corpus.faults import MUTATIONS
from corpus.inputs import BAD_JSON, NO_TEXT, TOO_LARGE, file_problem, input_documents, input_format
from corpus.schema import to_table

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample"
WARC = SAMPLE / "commoncrawl-2024-22.warc.gz"
GOOD = {"id": "doc-1", "text": "A sentence of text.", "url": "https://www.example.co.uk/a", "lang": "en"}
LINES = [
    json.dumps(GOOD),
    "",  # blank: skipped, not a row
    "{not json",
    "[1, 2, 3]",  # valid JSON, not an object
    json.dumps({"title": "no text here", "url": "https://example.com/b"}),
    json.dumps({"text": "   "}),
    json.dumps({"text": "second", "date": "2024-05-01", "title": "T", "extra": {"b": 1, "a": [1.5]}}),
]


def read(path: Path) -> tuple[list[dict], Counter, list, list]:
    counts, errors, bad = Counter(), [], []
    rows = list(
        input_documents(
            str(path), source="src", extractor=Extractor(), counts=counts, errors=errors, bad_files=bad
        )
    )
    return rows, counts, errors, bad


def write_jsonl(path: Path, lines: list[str]) -> Path:
    data = ("\n".join(lines) + "\n").encode()
    if path.name.endswith(".gz"):
        data = gzip.compress(data, mtime=0)
    elif path.name.endswith(".zst"):
        with pa.output_stream(str(path), compression="zstd") as f:
            f.write(data)
        return path
    path.write_bytes(data)
    return path


def test_input_format_follows_the_file_name():
    assert [input_format(p) for p in ("a.jsonl", "b.JSONL.GZ", "c.jsonl.zst", "d.parquet")] == [
        "jsonl",
        "jsonl",
        "jsonl",
        "parquet",
    ]
    assert [input_format(p) for p in ("e.warc.gz", "f.warc", "g.json.gz", "h")] == ["warc"] * 4


def test_jsonl_lines_become_documents_or_rejected_rows_with_their_reason(tmp_path):
    path = write_jsonl(tmp_path / "docs.jsonl", LINES)
    rows, counts, errors, bad = read(path)
    assert [r["reject"] for r in rows] == [None, BAD_JSON, BAD_JSON, NO_TEXT, NO_TEXT, None]
    assert counts == {"documents": 6, "input_rows": 6} and errors == [] and bad == []
    first, last = rows[0], rows[-1]
    assert (first["id"], first["text"], first["domain"]) == ("doc-1", GOOD["text"], "example.co.uk")
    assert first["extractor"] == "none" and first["warc_file"] == str(path) and first["source"] == "src"
    assert json.loads(first["metadata"]) == {"lang": "en"}  # `lang` is metadata: annotated sets its own
    assert (last["title"], last["date"]) == ("T", "2024-05-01")
    assert last["metadata"] == '{"extra": {"a": [1.5], "b": 1}}'  # keys sorted
    assert last["id"] == stable_id(f"{path}\x007")  # no `id`: the file and line number
    assert [json.loads(r["metadata"]) for r in rows[1:3]] == [{"line": 3}, {"line": 4}]
    assert rows[3]["title"] == "no text here" and rows[3]["text"] is None
    to_table(rows)  # every row fits the document schema


@pytest.mark.parametrize("name", ["docs.jsonl.gz", "docs.jsonl.zst"])
def test_compressed_jsonl_reads_as_the_plain_file(tmp_path, name):
    plain, _, _, _ = read(write_jsonl(tmp_path / "docs.jsonl", LINES))
    rows, counts, errors, bad = read(write_jsonl(tmp_path / name, LINES))
    assert errors == [] and bad == [] and counts["documents"] == len(plain)

    def same(r):
        return {k: v for k, v in r.items() if k not in ("id", "warc_file")}

    assert [same(r) for r in rows] == [same(r) for r in plain]


def test_same_file_same_rows(tmp_path):
    path = write_jsonl(tmp_path / "docs.jsonl", LINES)
    assert read(path)[0] == read(path)[0]


def test_lone_surrogate_and_nan_do_not_break_the_row(tmp_path):
    path = write_jsonl(tmp_path / "odd.jsonl", ['{"text": "a\\ud800b", "score": NaN, "title": "x\\udfffy"}'])
    (row,), _, _, _ = read(path)
    assert (row["text"], row["title"]) == ("a\ufffdb", "x\ufffdy")
    assert json.loads(row["metadata"]) == {"score": None}
    assert to_table([row]).column("text").to_pylist() == ["a\ufffdb"]


def test_line_over_the_limit_is_rejected_unread_and_the_next_line_read(tmp_path, monkeypatch):
    monkeypatch.setattr(inputs, "MAX_LINE_BYTES", 100)
    long_line = json.dumps({"text": "x" * 500})
    rows, counts, _, _ = read(write_jsonl(tmp_path / "long.jsonl", [long_line, json.dumps(GOOD)]))
    assert [r["reject"] for r in rows] == [TOO_LARGE, None]
    assert rows[1]["id"] == "doc-1" and json.loads(rows[0]["metadata"]) == {"line": 1}


def test_utf8_bom_on_the_first_line_is_not_bad_json(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(GOOD).encode() + b"\n")
    (row,), _, _, _ = read(path)
    assert row["reject"] is None and row["id"] == "doc-1"


def test_truncated_gzip_keeps_the_lines_before_and_counts_a_read_error(tmp_path):
    lines = [json.dumps({"text": f"document number {i} " * 20}) for i in range(5000)]  # 2.3 MB
    blob = gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0)
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(blob[: len(blob) // 2])
    rows, counts, errors, bad = read(path)
    assert bad == [] and counts["errors"] == 1 and 0 < len(rows) < len(lines)
    assert all(r["reject"] is None for r in rows)
    assert errors[0]["file"] == str(path) and errors[0]["offset"] == len(rows)
    assert [r["text"] for r in rows] == [json.loads(line)["text"] for line in lines[: len(rows)]]


def test_parquet_rows_become_documents(tmp_path):
    path = tmp_path / "docs.parquet"
    scores = [0.5, float("nan"), 1.0]
    pq.write_table(pa.table({"text": ["one", None, "three"], "id": [10, 11, None], "score": scores}), path)
    rows, counts, errors, bad = read(path)
    assert [r["reject"] for r in rows] == [None, NO_TEXT, None]
    assert [r["id"] for r in rows] == ["10", "11", stable_id(f"{path}\x003")]
    assert [json.loads(r["metadata"]) for r in rows] == [{"score": 0.5}, {"score": None}, {"score": 1.0}]
    assert counts == {"documents": 3, "input_rows": 3} and errors == [] and bad == []


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.warc.gz", b"", "empty file (0 bytes)"),
        ("empty.jsonl", b"", "empty file (0 bytes)"),
        ("page.warc", b"<!doctype html><html><body>hello</body></html>", "not a WARC file"),
        ("data.warc.gz", gzip.compress(b"id,url\n1,https://example.com\n" * 10), "not a WARC record"),
        ("image.warc.gz", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not a WARC file"),
        ("docs.jsonl.gz", b'{"text": "not gzipped"}\n', "not a gzip file"),
        ("docs.jsonl.zst", b'{"text": "not zstd"}\n', "not a zstd file"),
        ("docs.parquet", b'{"text": "not parquet"}', "not a Parquet file"),
        ("cut.parquet", b"PAR1" + b"\x00" * 64, "unreadable Parquet file"),
    ],
)
def test_bad_file_is_listed_with_its_reason_and_yields_nothing(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    assert reason in file_problem(str(path))
    rows, counts, errors, bad = read(path)
    assert rows == [] and errors == [] and counts == {"input_files.bad": 1}
    assert bad == [{"file": str(path), "reason": file_problem(str(path))}]


def test_parquet_without_text_column_is_a_bad_file(tmp_path):
    path = tmp_path / "no_text.parquet"
    pq.write_table(pa.table({"body": ["x"], "id": [1]}), path)
    _, _, _, bad = read(path)
    assert bad == [{"file": str(path), "reason": "Parquet file without a `text` column (columns: body, id)"}]


def test_vanished_file_is_a_bad_file_not_a_crash(tmp_path):
    _, counts, _, bad = read(tmp_path / "gone.warc.gz")
    assert counts == {"input_files.bad": 1}
    assert bad[0]["reason"] == "unreadable (FileNotFoundError: No such file or directory)"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file whatever its mode")
def test_permission_denied_is_a_bad_file(tmp_path):
    path = tmp_path / "locked.warc.gz"
    shutil.copy(WARC, path)
    path.chmod(0)
    _, _, _, bad = read(path)
    assert bad[0]["reason"] == "unreadable (PermissionError: Permission denied)"


@pytest.mark.parametrize("mutation", ["zero_bytes", "gzip_text", "png_file"])
def test_fuzz_mutations_that_are_no_warc_are_bad_files(tmp_path, mutation):
    """bench/fuzz.py's whole-file mutations: each is listed as a bad file, none crashes."""
    import random

    blob, first_fault = MUTATIONS[mutation](WARC.read_bytes(), random.Random(3))
    path = tmp_path / "fuzzed.warc.gz"
    path.write_bytes(blob)
    rows, counts, _, bad = read(path)
    assert first_fault == 0 and rows == [] and counts["input_files.bad"] == 1 and len(bad) == 1


def test_damaged_warc_is_read_not_listed_as_bad(tmp_path):
    """A WARC whose first gzip member is corrupt is still a WARC: the reader resynchronizes."""
    blob = WARC.read_bytes()
    path = tmp_path / "damaged.warc.gz"
    path.write_bytes(blob[:12] + b"\x00" * 40 + blob[52:])
    rows, counts, errors, bad = read(path)
    assert bad == [] and counts["errors"] >= 1 and errors[0]["file"] == str(path)


def read_pieces(path: Path, target_bytes: int) -> tuple[list[dict], Counter, list, int]:
    """The rows, counts, bad files and piece count of `path` read piece by piece at `target_bytes`,
    as the documents stage plans and reads them."""
    pieces = inputs.plan_pieces(str(path), target_bytes)
    if pieces[0].stop is not None and input_format(str(path)) == "jsonl":
        pieces = inputs.with_line_counts(pieces, [inputs.count_newlines(p) for p in pieces])
    rows, counts, bad = [], Counter(), []
    for piece in pieces:
        rows += input_documents(
            str(path), source="s", extractor=Extractor(), counts=counts, errors=[], bad_files=bad, piece=piece
        )
    return rows, counts, bad, len(pieces)


@pytest.mark.parametrize("target_bytes", [1, 13, 200, 5_000])
def test_jsonl_pieces_read_the_lines_one_task_reads(tmp_path, monkeypatch, target_bytes):
    """Cuts anywhere (inside a line, at a newline, in blank lines, in an over-long line) give
    the rows, ids and counts of reading the file whole."""
    monkeypatch.setattr(inputs, "MAX_LINE_BYTES", 300)
    lines = [json.dumps({"text": f"words {'x ' * (i % 60)}", "n": i}) for i in range(60)]
    lines[7:7] = ["", "", "{oops", json.dumps({"text": "y " * 400})]  # blanks, bad JSON, too long
    path = tmp_path / "docs.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + "\n".join(lines).encode())  # a BOM, no final newline
    whole = read_pieces(path, 1 << 30)
    pieces = read_pieces(path, target_bytes)
    assert whole[3] == 1 and pieces[3] > 1
    assert pieces[:3] == whole[:3] and len(whole[0]) == 62
    assert Counter(r["reject"] for r in whole[0]) == {None: 60, BAD_JSON: 1, TOO_LARGE: 1}


def test_parquet_pieces_are_runs_of_row_groups_with_the_whole_files_ids(tmp_path):
    path = tmp_path / "docs.parquet"
    pq.write_table(
        pa.table({"text": [f"doc {i} " * (i % 9 + 1) for i in range(200)]}), path, row_group_size=16
    )
    whole, pieces = read_pieces(path, 1 << 30), read_pieces(path, 600)
    assert whole[3] == 1 and pieces[3] > 3 and pieces[:3] == whole[:3]
    assert whole[0][-1]["id"] == stable_id(f"{path}\x00200")


def test_a_bad_file_cut_into_pieces_is_listed_once(tmp_path):
    path = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"body": [f"no text column {i}" for i in range(100)]}), path, row_group_size=10)
    rows, counts, bad, n = read_pieces(path, 100)
    assert n > 1 and rows == [] and counts["input_files.bad"] == 1 and len(bad) == 1

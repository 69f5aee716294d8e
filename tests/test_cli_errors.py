"""What a new user sees from `refinery sql` and a config with a YAML syntax error: one error line
and a non-zero status, never a traceback; `sql` output whole at 80 columns, as CSV or JSON Lines
for scripts. The run here is two Parquet files and a manifest, written without Spark."""

import csv
import io
import json
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from cliproc import REPO, refinery
from rich.console import Console

from corpus.schema import to_table
from jobs.cli import main
from jobs.stats import run_sql

WARC = REPO / "data" / "sample" / "commoncrawl-2024-22.warc.gz"
# Longer than an 80-column line, as crawled URLs often are
LONG_URL = (
    "https://example.com/archive/2024/05/a-rather-long-article-title-that-goes-on?utm_source=feed&page=2"
)
SCORE = 0.123456789


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A run whose documents stage kept one page (LONG_URL) and rejected another."""
    run = tmp_path / "run"
    rows = {
        "kept": [{"id": "a1", "url": LONG_URL, "lang": "en", "lang_score": SCORE}],
        "rejected": [{"id": "b2", "url": "https://example.com/x", "reject": "extract:empty"}],
    }
    for split, split_rows in rows.items():
        (run / "documents" / split).mkdir(parents=True)
        pq.write_table(to_table(split_rows), run / "documents" / split / "part-00000.parquet")
    (run / "documents" / "manifest.json").write_text(json.dumps({"stage": "documents"}))
    return run


def one_error_line(capsys) -> str:
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def test_yaml_syntax_error_names_the_file_line_and_problem(capsys, tmp_path):
    config = tmp_path / "broken.yaml"
    config.write_text("annotated:\n  gopher_quality:\n    min_words: 50\n   max_words: 3\n")
    out = tmp_path / "run"
    assert main(["run", str(config), "--input", str(WARC), "--out", str(out)]) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"error: {config}:4:4: invalid YAML: expected <block end>")
    assert not out.exists()


def test_sql_error_is_one_line_with_duckdbs_suggestion(capsys, run_dir):
    assert main(["sql", str(run_dir), "SELECT * FROM document"]) == 2
    line = one_error_line(capsys)
    assert "Table with name document does not exist" in line and 'Did you mean "documents"' in line


def test_sql_unknown_format_is_refused_naming_the_choices(capsys, run_dir):
    assert main(["sql", str(run_dir), "SELECT 1", "--format", "xml"]) == 2
    assert one_error_line(capsys) == "error: --format xml: allowed: table, csv, json"


def test_sql_csv_and_json_print_every_value_in_full(capsys, run_dir):
    query = "SELECT url, lang_score::DOUBLE AS score, reject FROM documents ORDER BY id"
    assert main(["sql", str(run_dir), query, "--format", "csv"]) == 0
    header, kept, rejected = csv.reader(io.StringIO(capsys.readouterr().out))
    # the float32 score in full, not the table's three decimals; NULL an empty cell
    assert header == ["url", "score", "reject"]
    assert kept == [LONG_URL, str(float(np.float32(SCORE))), ""]
    assert rejected == ["https://example.com/x", "", "extract:empty"]
    assert main(["sql", str(run_dir), query, "--format", "json"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["url"] for r in records] == [LONG_URL, "https://example.com/x"]
    assert records[0]["reject"] is None and records[1]["reject"] == "extract:empty"


def test_sql_piped_prints_csv_by_default(run_dir):
    done = refinery("sql", str(run_dir), "SELECT url, id FROM documents WHERE id = 'a1'")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"url,id\n{LONG_URL},a1\n"


def test_sql_table_too_wide_for_80_columns_stacks_its_rows_whole(run_dir):
    console = Console(width=80, record=True, force_terminal=False)
    run_sql(run_dir, "SELECT id, url, lang_score FROM documents WHERE id = 'a1'", console, "table")
    lines = [line.rstrip() for line in console.export_text().splitlines()]
    assert max(map(len, lines)) <= 80 and not any("…" in line for line in lines)
    # LONG_URL is wider than the line: it continues on the next, cut nowhere
    url = next(i for i, line in enumerate(lines) if line.startswith("url "))
    assert LONG_URL in (lines[url][5:].strip() + lines[url + 1].strip())
    assert "id          a1" in lines


def test_a_table_that_fits_stays_a_table(run_dir):
    console = Console(width=80, record=True, force_terminal=False)
    run_sql(run_dir, "SELECT reject, count(*) AS n FROM documents GROUP BY 1 ORDER BY 1", console, "table")
    out = console.export_text()
    assert "┃ reject        ┃ n ┃" in out and "│ extract:empty │ 1 │" in out
    assert "│ NULL          │ 1 │" in out and "None" not in out  # the kept row's reject, as SQL writes it


def test_sql_output_closed_by_its_reader_is_one_line_and_status_1(run_dir):
    done = refinery("sql", str(run_dir), "SELECT range AS n FROM range(100000)", close_stdout=True)
    assert done.returncode == 1
    assert done.stderr.strip() == "error: output cut short: its reader closed the pipe", done.stderr


def test_training_config_yaml_error_names_the_file_and_line(tmp_path):
    from training.config import load_pretrain_config

    config = tmp_path / "pretrain.yaml"
    config.write_text("steps: 10\nmodel: {d_model: 64\nseed: 1\n")
    where = re.escape(f"{config}:3:5")  # the line and column of the `:` PyYAML stopped at
    with pytest.raises(ValueError, match=rf"^{where}: invalid YAML: expected ',' or '}}'"):
        load_pretrain_config(config)

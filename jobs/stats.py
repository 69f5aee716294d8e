"""`refinery stats` and `refinery sql`: DuckDB over a run directory.

Views (only for stages that finished, i.e. have a manifest):
- `documents`, `annotated`, `deduped`, `mixed`, `decontam`: the stage's kept and rejected rows together
  (`reject IS NULL` for kept), so `SELECT reject, count(*) FROM annotated GROUP BY 1` is its funnel;
- `rejected`: every stage's rejected rows with a `stage` column;
- `kept`: the kept rows of the last finished stage;
- `shards`: one row per shard of RUN/shards/manifest.json (split, name, documents, tokens, bytes).
The record counts (WARC records by kind, read errors, bad input files) live in the manifests, not
in rows.
"""

import csv
import json
import sys
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from corpus.fs import exists, filesystem, is_file, is_remote, join
from corpus.manifest import read_json
from jobs.console import counted, natural_width

ROW_STAGES = ("documents", "annotated", "deduped", "mixed", "decontam")
SQL_FORMATS = ("table", "csv", "json")
NULL = "NULL"  # a missing value in a table
SQL_BATCH_ROWS = 10_000  # csv and json stream the result in batches: a large query never sits in memory whole
NO_EXTENSION_DOWNLOADS = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}
LENGTH_QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9, 0.99)
SHARD_ROW = pa.schema(
    [("split", pa.string()), ("name", pa.string()), ("bin", pa.string()), ("idx", pa.string())]
    + [(k, pa.int64()) for k in ("documents", "tokens", "bin_bytes", "idx_bytes")]
    + [("bin_sha256", pa.string()), ("idx_sha256", pa.string())]
)


def finished_stages(run_dir: str | Path) -> list[str]:
    return [s for s in ROW_STAGES if is_file(join(run_dir, s, "manifest.json"))]


def _sql_list(paths: list[str]) -> str:
    return "[" + ", ".join("'" + p.replace("'", "''") + "'" for p in paths) + "]"


def connect(run_dir: str | Path) -> duckdb.DuckDBPyConnection:
    """DuckDB views over the run (module docstring). A run in object storage is read through its
    fsspec filesystem, registered with DuckDB, and with extension downloads off: DuckDB would
    otherwise fetch its `httpfs` extension for `s3://` at run time."""
    run_dir = str(run_dir)
    if not exists(run_dir) or is_file(run_dir):
        raise FileNotFoundError(f"{run_dir}: no such run directory")
    stages = finished_stages(run_dir)
    if not stages:
        raise FileNotFoundError(
            f"{run_dir}: no finished stage (no */manifest.json); run `refinery run` first"
        )
    if is_remote(run_dir):
        con = duckdb.connect(config=NO_EXTENSION_DOWNLOADS)
        con.register_filesystem(filesystem(run_dir)[0])
    else:
        con = duckdb.connect()
    rejected = []
    for stage in stages:
        splits = {split: join(run_dir, stage, split, "*.parquet") for split in ("kept", "rejected")}
        con.execute(f"CREATE VIEW {stage} AS SELECT * FROM read_parquet({_sql_list(list(splits.values()))})")
        rejected.append(f"SELECT '{stage}' AS stage, * FROM read_parquet({_sql_list([splits['rejected']])})")
    con.execute("CREATE VIEW rejected AS " + " UNION ALL ".join(rejected))
    con.execute(f"CREATE VIEW kept AS SELECT * FROM {stages[-1]} WHERE reject IS NULL")
    if is_file(join(run_dir, "shards", "manifest.json")):
        splits = read_json(join(run_dir, "shards", "manifest.json"))["splits"]
        entries = [{"split": split, **entry} for split, shards in splits.items() for entry in shards]
        con.register("shards", pa.Table.from_pylist(entries, schema=SHARD_ROW))
    return con


def _cell(value: Any) -> str:
    """Counts with thousands separators, ratios to three decimals, NULL as SQL writes it (a kept
    row's `reject`, a document without a domain), not Python's `None`: a table is read, not parsed
    (`refinery sql --format csv` prints values in full)."""
    if value is None:
        return NULL
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _table(title: str, columns: list[str], rows: list[list[str]]) -> Table:
    table = Table(title=title, title_justify="left")
    for i, col in enumerate(columns):
        table.add_column(col, justify="left" if i == 0 else "right", overflow="fold")
    for row in rows:
        table.add_row(*row)
    return table


def _records(title: str, columns: list[str], rows: list[list[str]]) -> Group:
    """The rows stacked, one `column  value` block each (psql's expanded display)."""
    blocks: list[Any] = [Text(title, style="italic")] if title else []
    for i, row in enumerate(rows, 1):
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column(overflow="fold")
        for col, value in zip(columns, row, strict=True):
            grid.add_row(col, value)
        blocks += [Text(f"-[ row {i} ]-", style="dim"), grid]
    return Group(*blocks)


def print_table(console: Console, title: str, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
    """A table where it fits the console whole, else its rows stacked: at 80 columns (a pipe, a log,
    CI) eight columns of token counts, or a URL beside an id, would be squeezed and cut to `1,2…`."""
    cells = [[_cell(v) for v in row] for row in rows]
    table = _table(title, columns, cells)
    fits = natural_width(console, table).maximum <= console.width
    console.print(table if fits or not cells else _records(title, columns, cells))


def funnel_rows(run_dir: str | Path) -> list[tuple[str, int]]:
    """Records read → documents → kept at each stage, with every drop reason in between."""
    rows: list[tuple[str, int]] = []
    for stage in finished_stages(run_dir):
        manifest = read_json(join(run_dir, stage, "manifest.json"))
        counts = manifest["counts"]
        if stage == "documents":
            rows += _documents_funnel(counts, manifest["rows"]["in"])
        for reason, n in sorted(manifest["rejected"].items(), key=lambda kv: -kv[1]):
            rows.append((f"  - {reason}", -n))
        rows.append((f"kept after {stage}", manifest["rows"]["kept"]))
    return rows


def _documents_funnel(counts: dict[str, int], rows_in: int) -> list[tuple[str, int]]:
    """Input files and WARC records → documents: HTML 200 responses plus JSONL/Parquet rows."""
    input_rows = counts.get("input_rows", 0)
    unreadable = counts.get("documents.unreadable", 0)
    rows = []
    if counts.get("input_files.bad"):
        rows.append(("bad input files, skipped (files, not documents)", counts["input_files.bad"]))
    rows.append(("WARC records read", counts.get("records", 0)))
    rows.append(("  read errors (files stopped or resynced)", counts.get("errors", 0)))
    rows.append(
        (
            "  not documents (non-response, non-200, non-HTML)",
            counts.get("records", 0) - (rows_in - input_rows) - unreadable,
        )
    )
    if unreadable:
        rows.append(("  HTML 200 with unreadable body", unreadable))
    if input_rows:
        rows.append(("HTML 200 responses", rows_in - input_rows))
        rows.append(("JSONL/Parquet rows", input_rows))
    rows.append(("documents" if input_rows else "HTML 200 responses (documents)", rows_in))
    return rows


def print_stats(run_dir: str | Path, console: Console | None = None) -> None:
    run_dir = str(run_dir)
    console = console or Console()
    con = connect(run_dir)
    stages = finished_stages(run_dir)
    if "documents" in stages:
        print_documents(read_json(join(run_dir, "documents", "manifest.json")), console)
    print_table(console, "Funnel", ["step", "documents"], funnel_rows(run_dir))
    print_mixture(run_dir, console)
    if "annotated" in stages:
        langs = con.execute(
            "SELECT lang, count(*), count(*) FILTER (WHERE reject IS NULL), "
            "avg(lang_score)::DOUBLE FROM annotated GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 20"
        ).fetchall()
        print_table(
            console, "Languages (annotated, top 20)", ["lang", "documents", "kept", "mean score"], langs
        )
    domains = con.execute(
        "SELECT domain, count(*) FROM kept GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 15"
    ).fetchall()
    print_table(console, f"Top domains (kept after {stages[-1]})", ["domain", "documents"], domains)
    qs = ", ".join(f"quantile_cont(length(text), {q})::BIGINT" for q in LENGTH_QUANTILES)
    lengths = []
    for stage in stages:
        for label, where in (("kept", "reject IS NULL"), ("rejected", "reject IS NOT NULL")):
            row = con.execute(
                f"SELECT count(*), {qs} FROM {stage} WHERE {where} AND text IS NOT NULL"
            ).fetchone()
            if row[0]:
                lengths.append((f"{stage} {label}", *row))
    print_table(
        console,
        "Text length in characters",
        ["rows", "count", *(f"p{int(q * 100)}" for q in LENGTH_QUANTILES)],
        lengths,
    )


def print_documents(manifest: dict[str, Any], console: Console) -> None:
    """The documents stage's records by kind and status, its bad input files and read errors."""
    counts = manifest["counts"]
    kinds = sorted(
        ((k.removeprefix("records."), v) for k, v in counts.items() if k.startswith("records.")),
        key=lambda kv: -kv[1],
    )
    print_table(
        console, "WARC records by kind", ["kind", "records"], [*kinds, ("total", counts.get("records", 0))]
    )
    responses = sorted(
        ((k.removeprefix("response."), v) for k, v in counts.items() if k.startswith("response.")),
        key=lambda kv: -kv[1],
    )
    print_table(console, "Responses by status and content type", ["status.type", "records"], responses)
    bad_files = manifest.get("bad_files", [])  # manifests before bad files were skipped have none
    if bad_files:
        title = f"Bad input files, skipped ({len(bad_files):,})"
        print_table(console, title, ["file", "reason"], [(b["file"], b["reason"][:100]) for b in bad_files])
    if manifest["errors"]:
        rows = [(e["file"], e["offset"], e["message"][:100]) for e in manifest["errors"]]
        print_table(console, "Read errors", ["file", "offset", "error"], rows)


def print_mixture(run_dir: str | Path, console: Console) -> None:
    """The mixed stage's buckets (estimated tokens) and the shards' real token counts."""
    if is_file(join(run_dir, "mixed", "manifest.json")):
        buckets = read_json(join(run_dir, "mixed", "manifest.json"))["buckets"]
        columns = ["documents_before", "tokens_before", "factor", "copies_after", "tokens_after", "epochs"]
        print_table(
            console,
            "Mixture by bucket (estimated tokens; copies = documents x repeats)",
            ["bucket", "documents", "tokens", "factor", "copies", "tokens after", "epochs", "share"],
            [(name, *(b[c] for c in columns), b["share_after"]) for name, b in buckets.items()],
        )
    if is_file(join(run_dir, "shards", "manifest.json")):
        manifest = read_json(join(run_dir, "shards", "manifest.json"))
        print_table(
            console,
            f"Shards ({manifest['dtype']}, vocabulary {manifest['tokenizer']['vocab_size']:,})",
            ["split", "shards", "documents", "tokens"],
            [
                (
                    split,
                    len(entries),
                    sum(e["documents"] for e in entries),
                    sum(e["tokens"] for e in entries),
                )
                for split, entries in manifest["splits"].items()
            ],
        )
        if not manifest.get("buckets"):  # shards written outside the pipeline (training/testing.py)
            return
        columns = ["tokens_before", "tokens_after", "epochs", "tokens_after_estimated"]
        print_table(
            console,
            "Tokens by bucket (real; before: kept exactly, downsampled extrapolated)",
            [
                "bucket",
                "tokens before",
                "tokens after",
                epochs_label(run_dir),
                "estimated after",
                "train",
                "valid",
            ],
            [
                (name, *(b[c] for c in columns), b["train"]["tokens"], b["valid"]["tokens"])
                for name, b in manifest["buckets"].items()
            ],
        )


def epochs_label(run_dir: str | Path) -> str:
    """The heading of the shards' epochs per bucket (real tokens after / before mixing): documents
    decontam removed after mixing count before and not after, so a bucket mixed at factor 1 shows
    fewer than 1 epoch (0.868 on one crawl-sample file), which the heading says."""
    manifest = join(run_dir, "decontam", "manifest.json")
    removed = read_json(manifest)["rows"]["rejected"] if is_file(manifest) else 0
    return f"epochs (after decontam removed {counted(removed, 'document')})" if removed else "epochs"


def run_sql(run_dir: str | Path, query: str, console: Console | None = None, fmt: str = "table") -> None:
    """Print the query's result: a table (stacked where too wide), or CSV or JSON Lines with every
    value in full. A query DuckDB refuses is a one-line ValueError."""
    if fmt not in SQL_FORMATS:
        raise ValueError(f"--format {fmt}: allowed: {', '.join(SQL_FORMATS)}")
    console = console or Console()
    con = connect(run_dir)
    try:
        result = con.execute(query)
        if result.description is None:  # a statement without rows (CREATE, SET)
            return
        columns = [d[0] for d in result.description]
        if fmt == "table":
            print_table(console, "", columns, result.fetchall())
        else:
            _stream(result, columns, fmt)
    except duckdb.Error as exc:
        # DuckDB's message is good ("Did you mean "annotated"?") but spans lines and redraws the query
        message = str(exc).partition("\n\nLINE ")[0]
        raise ValueError("query: " + " ".join(message.split())) from None


def _stream(result: duckdb.DuckDBPyConnection, columns: list[str], fmt: str) -> None:
    """CSV (a header row) or JSON Lines (an object per row) on stdout, SQL_BATCH_ROWS rows at a time."""
    writer = csv.writer(sys.stdout, lineterminator="\n")
    if fmt == "csv":
        writer.writerow(columns)
    while batch := result.fetchmany(SQL_BATCH_ROWS):
        if fmt == "csv":
            writer.writerows([_csv_cell(v) for v in row] for row in batch)
        else:
            sys.stdout.writelines(
                json.dumps(dict(zip(columns, row, strict=True)), default=str, ensure_ascii=False) + "\n"
                for row in batch
            )


def _csv_cell(value: Any) -> str:
    """A CSV cell: empty for NULL, JSON for a struct or list (signals, pii), else Python's str (floats
    in full)."""
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, default=str, ensure_ascii=False)
    return str(value)

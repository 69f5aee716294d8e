"""`refinery why RUN URL_OR_ID`: what happened to one document, stage by stage.

It reads only what the stages wrote (the DuckDB views of jobs/stats.py, the manifests and
RUN/run.json) and recomputes nothing but cheap comparisons:
- documents: the WARC file and record, or the extraction reject (`extract:*`), or the annotated
  rule the documents stage decided before extraction (`url:*`, the language prefilter's
  `lang:not_allowed`) with the signal that failed it against its threshold;
- annotated: language and score, every filter signal against its configured threshold (the
  filters' `CHECKS`, corpus/filters/checks.py, with RUN/run.json's resolved config), PII counts
  with the redacted spots, the quality score, and `reject`, the first failing rule;
- deduped: the cluster, its size and the document kept for it (its URL), or the duplicates
  folded into this one;
- mixed: bucket and repeats; shards: train or valid, and which shard files hold its copies,
  derived from the shard manifest's seed and validation cut exactly as jobs/shards.py places them.

A URL fetched several times is several documents (one per WARC record): each is explained.
Only HTML 200 responses become documents, and manifests count the other records without
listing them, so a redirect or an error page is "not among the documents"; `--warc` then reads
the run's input WARC files for the URL's records (every record header: seconds for a sample,
long for a crawl).
"""

import argparse
import json
import posixpath
import re
import sys
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console, Group
from rich.padding import Padding
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from corpus.filters.c4 import C4Filter
from corpus.filters.checks import Verdict, evaluate
from corpus.filters.fineweb import FineWebFilter
from corpus.filters.gopher_quality import GopherQualityFilter
from corpus.filters.gopher_repetition import GopherRepetitionFilter
from corpus.filters.language import LanguageFilter, LanguagePrefilter
from corpus.filters.quality import QualityFilter
from corpus.filters.url import UrlFilter
from corpus.fs import is_file, join
from corpus.manifest import read_json
from corpus.pii import PLACEHOLDERS
from jobs.console import PipeConsole, counted, natural_width

# The annotated stage's steps in run order: the config section under `annotated` and its filter
# (jobs/annotated.py `make_annotator`); the quality rule comes last, after PII redaction.
STEPS = (
    ("url", UrlFilter),
    ("language", LanguageFilter),
    ("gopher_repetition", GopherRepetitionFilter),
    ("gopher_quality", GopherQualityFilter),
    ("c4", C4Filter),
    ("fineweb", FineWebFilter),
    ("quality", QualityFilter),
)
TOP_LEVEL = ("lang", "lang_score", "quality")  # signals that are columns of their own
MAX_MEMBERS = 10  # duplicates listed for a kept document
SNIPPET_CHARS = 60  # context either side of a PII placeholder
MAX_SNIPPETS = 3
_PLACEHOLDER = re.compile("|".join(re.escape(p) for p in PLACEHOLDERS.values()))


# region: reading the run


def _rows(con, stage: str, ids: list[str]) -> dict[str, dict[str, Any]]:
    """The rows of `ids` in a stage view, with the length of their text, by id."""
    result = con.execute(
        f"SELECT *, length(text) AS text_chars FROM {stage} WHERE id IN (SELECT unnest(?::VARCHAR[]))",
        [ids],
    )
    columns = [d[0] for d in result.description]
    return {row[0]: dict(zip(columns, row, strict=True)) for row in result.fetchall()}


def find_ids(con, stage: str, key: str) -> list[str]:
    """Documents whose URL, id or WARC-Record-ID is `key`, in fetch order."""
    rows = con.execute(
        f"SELECT id FROM {stage} WHERE url = ? OR id = ? OR warc_record_id = ? ORDER BY fetch_time, id",
        [key, key, key],
    ).fetchall()
    return [r[0] for r in rows]


def scan_warcs(inputs: list[str], url: str) -> list[dict[str, Any]]:
    """Every record of `url` in the WARC files: type, HTTP status and media type, file and offset.
    JSONL and Parquet inputs, and the files the documents stage listed as bad, are not WARCs."""
    from corpus.inputs import file_problem, input_format
    from corpus.warc import WarcError, open_warc, read_warc

    found = []
    for path in inputs:
        if input_format(path) != "warc" or file_problem(path) is not None:
            continue
        with open_warc(path) as stream:
            for item in read_warc(stream, max_payload_bytes=1):  # headers are what we want
                if not isinstance(item, WarcError) and item.url == url:
                    found.append(
                        {
                            "warc_file": path,
                            "offset": item.offset,
                            "type": item.rec_type,
                            "status": item.status,
                            "content_type": item.content_type,
                            "record_id": item.record_id,
                        }
                    )
    return found


# endregion
# region: explaining one document


def _status(v: Verdict) -> str:
    """pass, fail, or off (the rule is switched off by its parameter)."""
    if v.check.op == "flag" and not v.threshold:
        return "off"
    if v.check.op not in ("found", "flag") and v.threshold is None:
        return "off"
    return "fail" if v.failed else "pass"


def _threshold_params(section: str, config: dict[str, Any], manifest: dict[str, Any] | None) -> dict:
    params = dict(config.get(section) or {})
    if section == "quality" and manifest and manifest.get("quality", {}).get("threshold") is not None:
        # keep_top_fraction: the stage turned the fraction into this score threshold
        params["threshold"] = manifest["quality"]["threshold"]
    return params


def explain_annotated(
    row: dict[str, Any], config: dict[str, Any], manifest: dict[str, Any] | None
) -> dict[str, Any]:
    signals = {**(row.get("signals") or {}), **{k: row.get(k) for k in TOP_LEVEL}}
    steps = []
    for section, cls in STEPS:
        params = _threshold_params(section, config, manifest)
        enabled = params.get("enabled", True)
        # the quality step always scores; its rule exists only with a threshold
        off = None if enabled else "step disabled"
        if enabled and section == "quality" and params.get("threshold") is None:
            off = "no threshold: score only"
        checks = []
        if off is None:
            for v in evaluate(cls.CHECKS, signals, params):
                checks.append(
                    {
                        "rule": v.check.rule,
                        "signal": v.check.signal,
                        "value": v.value,
                        "op": v.check.op,
                        "param": v.check.param,
                        "threshold": v.threshold,
                        "result": _status(v),
                    }
                )
        steps.append({"step": section, "family": cls.name, "off": off, "checks": checks})
    first = next((c["rule"] for s in steps for c in s["checks"] if c["result"] == "fail"), None)
    pii = {k: v for k, v in (row.get("pii") or {}).items() if v}
    return {
        "lang": row.get("lang"),
        "lang_score": row.get("lang_score"),
        "steps": steps,
        "pii": pii,
        "pii_snippets": _snippets(row.get("text") or "") if pii else [],
        "quality": row.get("quality"),
        "reject": row.get("reject"),
        # the stored reject against the one run.json's thresholds give: a mismatch means the stage
        # ran with another config than the one run.json holds now
        "thresholds_agree": first == row.get("reject"),
    }


def _snippets(text: str) -> list[str]:
    """The redacted spots with SNIPPET_CHARS of context, placeholders close together in one snippet."""
    windows: list[list[int]] = []
    for m in _PLACEHOLDER.finditer(text):
        start, end = max(m.start() - SNIPPET_CHARS, 0), min(m.end() + SNIPPET_CHARS, len(text))
        if windows and start <= windows[-1][1]:
            windows[-1][1] = end
        elif len(windows) < MAX_SNIPPETS:
            windows.append([start, end])
        else:
            break
    return [
        ("…" if start else "") + text[start:end].replace("\n", " ") + ("…" if end < len(text) else "")
        for start, end in windows
    ]


def explain_deduped(con, row: dict[str, Any]) -> dict[str, Any]:
    keys = ("exact_hash", "cluster_id", "cluster_size", "paragraphs_removed", "reject")
    out = {k: row.get(k) for k in keys}
    if row.get("cluster_id") and row["cluster_id"] != row["id"]:
        kept = con.execute("SELECT id, url FROM deduped WHERE id = ?", [row["cluster_id"]]).fetchone()
        out["kept"] = {"id": kept[0], "url": kept[1]} if kept else None
    elif (row.get("cluster_size") or 1) > 1:
        members = con.execute(
            "SELECT id, url, reject FROM deduped WHERE cluster_id = ? AND id <> ? ORDER BY id LIMIT ?",
            [row["id"], row["id"], MAX_MEMBERS],
        ).fetchall()
        out["duplicates"] = [{"id": i, "url": u, "reject": r} for i, u, r in members]
    return out


def shard_placement(doc_id: str, repeats: int, manifest: dict[str, Any]) -> dict[str, Any]:
    """Split and shard files of a mixed document's copies: corpus/mix.py `shard_placement` with the
    shard manifest's seed, validation cut and shards."""
    from corpus import mix  # numpy and pyarrow: imported by the command, not by `refinery --help`

    shards, limit = manifest["splits"], manifest["valid_key_limit"]
    counts = {split: len(entries) for split, entries in shards.items()}
    split, indices = mix.shard_placement(manifest["seed"], doc_id, repeats, limit, counts)
    copies = 1 if split == "valid" else repeats
    return {"split": split, "copies": copies, "shards": [shards[split][i]["name"] for i in indices]}


def explain_gate(row: dict[str, Any], config: dict[str, Any]) -> list[dict[str, Any]]:
    """The failing check of a rule the documents stage decided before extraction
    (classifiers/prefilter.py), with its signal and the run's threshold; [] for any other row."""
    reject = row.get("reject") or ""
    if not row.get("signals") or not reject.startswith(("url:", "lang:")):
        return []
    if reject.startswith("url:"):
        cls, params = UrlFilter, (config.get("annotated") or {}).get("url") or {}
    else:
        cls = LanguagePrefilter
        params = {"margin": (config.get("documents") or {}).get("language_prefilter_margin")}
    return [
        {"rule": v.check.rule, "signal": v.check.signal, "value": v.value, "op": v.check.op}
        | {"param": v.check.param, "threshold": v.threshold, "result": _status(v)}
        for v in evaluate(cls.CHECKS, row["signals"], params)
        if v.failed
    ]


DOCUMENT_COLUMNS = ("warc_file", "warc_record_id", "fetch_time", "source", "title", "text_chars", "reject")


def explain(run_dir: str | Path, key: str, *, warc: bool = False) -> dict[str, Any]:
    """Everything the run recorded about the documents matching `key` (URL, id or WARC-Record-ID)."""
    from jobs.stats import connect, finished_stages  # duckdb: imported by the command only

    run_dir = str(run_dir)  # a path, or a URI (s3://…: corpus/fs.py)
    con = connect(run_dir)
    stages = finished_stages(run_dir)
    run = read_json(join(run_dir, "run.json")) if is_file(join(run_dir, "run.json")) else {}
    config = run.get("config") or {}
    if not config:
        from jobs.config import load_config

        config = load_config().model_dump(mode="json")  # no run.json: the code defaults
    ids = find_ids(con, stages[0], key)
    rows = {stage: _rows(con, stage, ids) for stage in stages} if ids else {}
    manifests = {s: read_json(join(run_dir, s, "manifest.json")) for s in stages}
    shards = join(run_dir, "shards", "manifest.json")
    shards_manifest = read_json(shards) if is_file(shards) else None
    corpus = _corpus_stage(run_dir) if "mixed" in stages else None
    documents = []
    for doc_id in ids:
        doc: dict[str, Any] = {"id": doc_id}
        fate = None
        for stage in stages:
            row = rows[stage].get(doc_id)
            if row is None:
                doc[stage] = None  # not reached: rejected before
                continue
            doc.setdefault("url", row["url"])
            if stage == "documents":
                doc[stage] = {k: row.get(k) for k in DOCUMENT_COLUMNS}
                doc[stage]["before_extraction"] = explain_gate(row, config)
            elif stage == "annotated":
                doc[stage] = explain_annotated(row, config.get("annotated", {}), manifests[stage])
            elif stage == "deduped":
                doc[stage] = explain_deduped(con, row)
            else:  # mixed and the stages after it (decontam) carry the mixture's columns on
                doc[stage] = {k: row.get(k) for k in ("bucket", "repeats", "reject")}
            if row.get("reject") and fate is None:
                fate = f"rejected at {stage}: {row['reject']}"
        final = doc.get(corpus) if corpus else None  # the rows the shards stage read
        if final and not final["reject"] and shards_manifest:
            where = doc["shards"] = shard_placement(doc_id, final["repeats"], shards_manifest)
            copies = f"{where['copies']} cop{'y' if where['copies'] == 1 else 'ies'}"
            fate = fate or f"kept: {copies} in {where['split']}"
        doc["fate"] = fate or f"kept after {stages[-1]}"
        documents.append(doc)
    out: dict[str, Any] = {"run": str(run_dir), "key": key, "stages": stages, "documents": documents}
    if warc:
        out["warc_records"] = scan_warcs(run.get("inputs") or [], key)
    if not ids:
        out["hint"] = (
            not_a_document(out["warc_records"])
            if warc
            else "not among the documents: only HTML 200 responses become documents, so the URL may "
            "have been a redirect, an error or non-HTML (the documents manifest counts those by "
            "status), or not in the crawl; `--warc` reads the run's WARC files for its records"
        )
    return out


def _corpus_stage(run_dir: str) -> str:
    """The stage whose kept rows the tokenizer and shards stages read (mixed, or decontam)."""
    from jobs.decontam import corpus_dir  # pyspark: imported by the command only

    return posixpath.basename(corpus_dir(run_dir))


def not_a_document(records: list[dict[str, Any]]) -> str:
    """Why the WARC records of a URL gave no document, from their type and HTTP status."""
    responses = [r for r in records if r["type"] == "response"]
    if not responses:
        kinds = ", ".join(sorted({r["type"] for r in records}))
        return f"no response record of this URL in the run's WARC files ({kinds or 'no record at all'})"
    reasons = []
    for r in responses:
        status = r["status"]
        if status is not None and 300 <= status < 400:
            reasons.append(f"a redirect (HTTP {status})")
        elif status != 200:
            reasons.append(f"HTTP {status if status is not None else 'status unreadable'}")
        else:
            reasons.append(
                f"HTTP 200 but {r['content_type'] or 'no content type'}, not HTML, or an unreadable body"
            )
    return f"its response is {'; '.join(reasons)}: only HTML 200 responses become documents"


# endregion
# region: printing


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, list | tuple):
        return ", ".join(Path(str(v)).name for v in value) or "(none)"
    return str(value)


def _condition(check: dict[str, Any]) -> str:
    """When the rule fails, in words: `< 50`, `listed in banned_words.txt`, ..."""
    op, threshold = check["op"], check["threshold"]
    if check["result"] == "off":
        return f"off ({check['param']})"
    if op == "flag":
        return "is true"
    if op == "found":
        return f"in {_fmt(threshold)}"
    if op == "missing":
        return "is missing"  # no language identified
    if op == "not in":
        return f"not in ({_fmt(threshold)})"
    return f"{op} {_fmt(threshold)}"


RESULT_STYLE = {"pass": "green", "fail": "bold red", "off": "dim"}
PANEL_MARGIN = 4  # columns a Panel takes: a border and a space of padding either side


def _kv(rows: list[tuple[str, Any]]) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")  # a path or URL longer than the line continues on the next
    for k, v in rows:
        table.add_row(k, v if isinstance(v, Text) else Text(_fmt(v)))
    return table


def _checks_table(annotated: dict[str, Any], *, narrow: bool) -> Table:
    """The filter checks in run order: rule, signal, value, condition, result. Narrow (80 columns: a
    pipe, a log, CI) in four columns, the signal opening the condition (`gopher_word_count < 50`),
    the reject's result `reject` rather than `fail ← reject`: only a list condition wraps, at a space."""
    columns = ["rule", "value", "fails when", "result"]
    if not narrow:
        columns.insert(1, "signal")
    table = Table(
        title="filters, in run order (thresholds: run.json)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        # narrow: no padding at the edges and one space between columns, room for a signal's name
        collapse_padding=narrow,
        pad_edge=not narrow,
        show_edge=not narrow,
    )
    for col in columns:
        # fold, never `…`: a cell too long for its column continues on the next line (at 80 columns
        # only a long condition needs to; the widest column is the first to give way)
        table.add_column(col, justify="right" if col == "value" else "left", overflow="fold")
    for step in annotated["steps"]:
        # One header row per family; its rules follow without the `family:` prefix.
        family = Text(f"{step['family']}:", style="bold")
        if step["off"]:
            table.add_row(family, *[""] * (len(columns) - 3), Text(step["off"], style="dim"), "")
            continue
        table.add_row(family)
        for check, condition in rule_rows(step["checks"]):
            result = Text(check["result"], style=RESULT_STYLE[check["result"]])
            if check["result"] == "fail" and check["rule"] == annotated["reject"]:
                result = (
                    Text("reject", style="bold red")
                    if narrow
                    else result.append(" ← reject", style="bold red")
                )
            # indented under its family; narrow, those two columns go to the condition
            rule = ("" if narrow else "  ") + check["rule"].split(":", 1)[1]
            value = _fmt(check["value"])
            if narrow:
                table.add_row(rule, value, f"{check['signal']} {condition}", result)
            else:
                table.add_row(rule, check["signal"], value, condition, result)
    return table


RESULT_ORDER = ("off", "pass", "fail")  # a row of two bounds shows the worse of their results


def rule_rows(checks: list[dict[str, Any]]) -> list[tuple[dict[str, Any], str]]:
    """Each check with its condition, two bounds of one rule on one signal in a row (Gopher's mean
    word length: `< 3 or > 10`) rather than the rule listed twice; the row fails when either does."""
    rows: list[tuple[dict[str, Any], str]] = []
    for check in checks:
        key = (check["rule"], check["signal"])
        if rows and (rows[-1][0]["rule"], rows[-1][0]["signal"]) == key:
            previous, condition = rows[-1]
            result = max(previous["result"], check["result"], key=RESULT_ORDER.index)
            rows[-1] = ({**previous, "result": result}, f"{condition} or {_condition(check)}")
        else:
            rows.append((check, _condition(check)))
    return rows


def _annotated_parts(a: dict[str, Any], narrow: bool) -> list[Any]:
    pii = ", ".join(f"{k} {v}" for k, v in a["pii"].items()) or "none found"
    rows = [
        ("language", f"{_fmt(a['lang'])} (lid.176 score {_fmt(a['lang_score'])})"),
        ("PII redacted", pii),
        ("quality", f"{_fmt(a['quality'])} (P(hq) of the stored text)"),
        ("reject", Text(a["reject"] or "none", style="red" if a["reject"] else "")),
    ]
    parts: list[Any] = [Text("\nannotated", style="bold underline"), _kv(rows)]
    for snippet in a["pii_snippets"]:
        parts.append(Padding(Text(snippet, style="italic"), (0, 0, 0, 2)))
    parts.append(_checks_table(a, narrow=narrow))
    if not a["thresholds_agree"]:
        parts.append(
            Text(
                "note: run.json's thresholds give another first failing rule than the stored reject; "
                "the stage ran with another config",
                style="yellow",
            )
        )
    return parts


def _deduped_parts(dd: dict[str, Any]) -> list[Any]:
    rows = [
        ("exact hash", dd["exact_hash"]),
        ("cluster", f"{dd['cluster_id']} ({counted(dd['cluster_size'], 'document')})"),
        ("reject", Text(dd["reject"] or "none (kept for its cluster)", style="red" if dd["reject"] else "")),
    ]
    if dd.get("paragraphs_removed") is not None:  # deduped.paragraphs on, and the document examined
        rows.insert(2, ("paragraphs removed", dd["paragraphs_removed"]))
    if dd.get("kept"):
        rows.append(("kept instead", f"{dd['kept']['url']} ({dd['kept']['id']})"))
    for m in dd.get("duplicates", []):
        rows.append(("folded in", f"{m['url']} ({m['reject']})"))
    return [Text("\ndeduped", style="bold underline"), _kv(rows)]


def _is_narrow(doc: dict[str, Any], console: Console) -> bool:
    """Whether the five-column filter table is wider than a panel on this console (about 110 columns)."""
    a = doc.get("annotated")
    if not a:
        return False
    return natural_width(console, _checks_table(a, narrow=False)).maximum > console.width - PANEL_MARGIN


def _panel(doc: dict[str, Any], stages: list[str], index: int, total: int, console: Console) -> Panel:
    narrow = _is_narrow(doc, console)
    rejected = doc["fate"].startswith("rejected")
    parts: list[Any] = [Text(doc["fate"], style="bold red" if rejected else "bold green")]
    # the URL in the body, not the title: a title longer than the panel is cut to `…`
    parts.append(_kv([("url", doc.get("url")), ("id", doc["id"])]))
    d = doc.get("documents")
    if d:
        extraction = Text(d["reject"], style="red") if d["reject"] else Text("ok")
        parts.append(Text("\ndocuments", style="bold underline"))
        parts.append(
            _kv(
                [
                    ("WARC file", d["warc_file"]),
                    ("record", d["warc_record_id"]),
                    ("fetched", d["fetch_time"]),
                    ("title", d["title"]),
                    ("text", f"{d['text_chars'] or 0:,} characters"),
                    ("extraction", extraction),
                ]
                + [
                    ("before extraction", f"{c['signal']} = {_fmt(c['value'])} {_condition(c)}")
                    for c in d.get("before_extraction") or []
                ]
            )
        )
    if doc.get("annotated"):
        parts += _annotated_parts(doc["annotated"], narrow)
    if doc.get("deduped"):
        parts += _deduped_parts(doc["deduped"])
    for stage in stages[stages.index("mixed") :] if "mixed" in stages else []:
        m = doc.get(stage)
        if m:  # mixed, and the stages after it (decontam): the mixture's columns and a reject
            parts.append(Text(f"\n{stage}", style="bold underline"))
            reject = Text(m["reject"] or "none", style="red" if m["reject"] else "")
            parts.append(_kv([("bucket", m["bucket"]), ("repeats", m["repeats"]), ("reject", reject)]))
    s = doc.get("shards")
    if s:
        parts.append(Text("\nshards", style="bold underline"))
        parts.append(_kv([("split", s["split"]), ("copies", s["copies"]), ("files", ", ".join(s["shards"]))]))
    reached = [stage for stage in stages if doc.get(stage, "") is None]
    if reached:
        parts.append(Text(f"\nnot reached: {', '.join(reached)}", style="dim"))
    # narrow: rules above and below instead of a box, two more columns for the filter table
    frame = {"box": box.HORIZONTALS, "padding": 0} if narrow else {}
    return Panel(Group(*parts), title=f"document {index} of {total}", title_align="left", **frame)


def print_explanation(result: dict[str, Any], console: Console) -> None:
    """The documents' panels, and with `--warc` the URL's WARC records. The hint of a key that matches
    no document is for the caller to report (`_why`: an error line)."""
    from jobs.stats import print_table  # duckdb: imported by the command only

    docs = result["documents"]
    if len(docs) > 1:
        console.print(f"{len(docs)} documents match {result['key']!r} (fetched more than once):")
    for i, doc in enumerate(docs, 1):
        console.print(_panel(doc, result["stages"], i, len(docs), console))
    if result.get("warc_records"):
        rows = [
            (Path(r["warc_file"]).name, r["offset"], r["type"], _fmt(r["status"]), _fmt(r["content_type"]))
            for r in result["warc_records"]
        ]
        columns = ["file", "offset", "type", "status", "content type"]
        print_table(console, "its records in the run's WARC files", columns, rows)


# endregion


def _why(args: argparse.Namespace) -> int:
    result = explain(args.run_dir, args.key, warc=args.warc)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        print_explanation(result, PipeConsole())
    if result["documents"]:
        return 0
    problem = f"{args.key}: {result['hint']}"
    if not args.json:
        raise ValueError(problem)  # jobs/cli.py prints it as the one error line, exit status 2
    # stdout holds the JSON (with the hint): the line goes to stderr, so that stdout stays parseable
    print(f"error: {problem}", file=sys.stderr)
    return 2


def add_commands(sub: argparse._SubParsersAction) -> None:
    why = sub.add_parser("why", help="what happened to one document at every stage of a run")
    why.add_argument("run_dir")
    why.add_argument("key", metavar="URL_OR_ID", help="a URL, a document id or a WARC-Record-ID")
    why.add_argument("--json", action="store_true", help="print JSON instead of tables")
    why.add_argument(
        "--warc", action="store_true", help="also list the URL's records in the run's input WARC files"
    )
    why.set_defaults(func=_why)

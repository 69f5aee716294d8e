"""`refinery report RUN`: RUN/report/index.html with PNG charts, from what the stages left behind.

The report reads the run directory only: run.json, stage manifests, the Parquet rows through the
DuckDB views of jobs/stats.py, every training `metrics.jsonl` under RUN/train and the JSON that
`refinery eval tasks --out` writes anywhere under RUN. No stage feeds it, so a stage or training
phase added later shows up by writing its usual outputs. Each section below returns its HTML, or
None when the run has not reached it; the page lists what is there, after a header of run facts
(inputs, config hash, per-stage rows and wall times). The page is one HTML file beside its PNGs:
copy the `report/` directory and it still works.
"""

import html
import json
import posixpath
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import duckdb
import matplotlib

matplotlib.use("Agg")  # no display: charts are files
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import EngFormatter  # noqa: E402

from corpus.fs import is_file, is_remote, join, list_files, make_dirs, open_input, open_output  # noqa: E402
from corpus.manifest import fingerprint, read_json  # noqa: E402
from corpus.progress import duration  # noqa: E402
from jobs.stats import NULL, ROW_STAGES, connect, epochs_label, finished_stages, funnel_rows  # noqa: E402
from jobs.train_stages import STAGES, TIMING, TRAIN  # noqa: E402
from training.significance import comparison_lines  # noqa: E402

DPI = 110
WIDTH = 6  # inches: a chart of 660 pixels, two side by side on the page
COLORS = {
    "documents": "#4c72b0",
    "annotated": "#dd8452",
    "deduped": "#55a868",
    "mixed": "#c44e52",
    "decontam": "#937860",
}
# metrics.jsonl fields that are bookkeeping, not curves (training/loop.py writes them every record)
NOT_CURVES = {"step", "tokens", "lr", "tok_per_s", "grad_norm", "elapsed_s"}
# Directories under RUN that hold no evaluation JSON: stage outputs, the report, checkpoints.
NO_EVALS = {*ROW_STAGES, "tokenizer", "shards", "report", "checkpoints", "mixture"}


class Page:
    """The report being written: where charts go and how they are referenced."""

    def __init__(self, run_dir: str):
        self.run_dir = run_dir  # a path, or a URI (s3://…: corpus/fs.py)
        self.out = join(run_dir, "report")
        make_dirs(self.out)
        self.con: duckdb.DuckDBPyConnection = connect(run_dir)
        self.stages = finished_stages(run_dir)

    def chart(self, name: str, fig: plt.Figure, caption: str) -> str:
        fig.tight_layout()
        with open_output(join(self.out, f"{name}.png")) as f:
            fig.savefig(f, format="png", dpi=DPI)
        plt.close(fig)
        alt = html.escape(caption)
        return f'<figure><img src="{name}.png" alt="{alt}"><figcaption>{alt}</figcaption></figure>'

    def manifest(self, stage: str) -> dict[str, Any] | None:
        path = join(self.run_dir, stage, "manifest.json")
        return read_json(path) if is_file(path) else None


def table(columns: list[str], rows: list[tuple]) -> str:
    def cell(v: Any) -> str:
        if v is None:
            return "–"  # not measured (a checkpoint not evaluated on a task, a stage without rows)
        text = f"{v:,}" if isinstance(v, int) else f"{v:.3f}" if isinstance(v, float) else str(v)
        return html.escape(text)

    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def funnel(page: Page) -> str | None:
    """Documents left after each stage, from the manifests."""
    points = []
    documents = page.manifest("documents")
    if documents:
        points += [
            ("WARC records", documents["counts"].get("records", 0)),
            ("HTML 200", documents["rows"]["in"]),
        ]
    points += [(f"kept: {s}", page.manifest(s)["rows"]["kept"]) for s in page.stages]
    fig, ax = plt.subplots(figsize=(WIDTH, 0.45 * len(points) + 1))
    labels, values = zip(*reversed(points), strict=True)
    ax.barh(labels, values, color="#4c72b0")
    for i, v in enumerate(values):
        ax.text(v, i, f" {v:,}", va="center")
    ax.set_xlim(0, max(values) * 1.15)  # room for the labels
    ax.set_xlabel("records / documents")
    rows = funnel_rows(page.run_dir)
    numbers = table(["step", "documents"], rows)
    return (
        page.chart("funnel", fig, "Documents left after each stage")
        + f"<details><summary>every step and drop reason</summary>{numbers}</details>"
    )


def drops(page: Page) -> str | None:
    """Rejected documents per reason, every stage."""
    rows = page.con.execute(
        "SELECT stage, reject, count(*) AS n FROM rejected GROUP BY 1, 2 ORDER BY n DESC LIMIT 30"
    ).fetchall()
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(WIDTH, 0.28 * len(rows) + 1.2))
    ax.barh(
        [r[1] for r in reversed(rows)],
        [r[2] for r in reversed(rows)],
        color=[COLORS.get(r[0], "#8172b3") for r in reversed(rows)],
    )
    ax.set_xscale("log")
    ax.set_xlabel("documents (log scale)")
    stages = [s for s in COLORS if any(r[0] == s for r in rows)]
    handles = [plt.Rectangle((0, 0), 1, 1, color=COLORS[s]) for s in stages]
    ax.legend(handles, stages, title="stage", fontsize=8, loc="lower right")
    return page.chart("drops", fig, "Rejected documents per reason, the first failing rule of each")


def languages(page: Page) -> str | None:
    if "annotated" not in page.stages:
        return None
    rows = page.con.execute(
        f"SELECT coalesce(lang, '{NULL}'), count(*), count(*) FILTER (WHERE reject IS NULL) "
        "FROM annotated GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 15"
    ).fetchall()
    # horizontal bars, the largest on top: fifteen labels side by side ran into each other (`ru(none)an`)
    fig, ax = plt.subplots(figsize=(WIDTH, 0.25 * len(rows) + 1.2))
    names = [r[0] for r in reversed(rows)]
    ax.barh(names, [r[1] for r in reversed(rows)], color="#cccccc", label="annotated")
    ax.barh(names, [r[2] for r in reversed(rows)], color="#dd8452", label="kept")
    ax.set_xscale("log")
    ax.legend(loc="lower right")
    ax.set_xlabel("documents (log scale)")
    return page.chart("languages", fig, f"Languages (fastText lid.176), top 15; {NULL}: none identified")


def lengths(page: Page) -> str | None:
    # annotated: where most documents are dropped, so kept and rejected compare there
    stage = "annotated" if "annotated" in page.stages else page.stages[-1]
    rows = page.con.execute(
        f"SELECT length(text), reject IS NULL FROM {stage} WHERE text IS NOT NULL AND length(text) > 0"
    ).fetchall()
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(WIDTH, 3.2))
    kept = [n for n, k in rows if k]
    dropped = [n for n, k in rows if not k]
    bins = _log_bins(min(n for n, _ in rows), max(n for n, _ in rows))
    ax.hist(
        [kept, dropped], bins=bins, stacked=True, label=["kept", "rejected"], color=["#55a868", "#c44e52"]
    )
    ax.set_xscale("log")
    ax.set_xlabel("characters (log scale)")
    ax.legend()
    return page.chart("lengths", fig, f"Text lengths ({stage} stage)")


def quality(page: Page) -> str | None:
    if "annotated" not in page.stages:
        return None
    rows = page.con.execute(
        "SELECT quality, reject IS NULL FROM annotated WHERE quality IS NOT NULL"
    ).fetchall()
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(WIDTH, 3.2))
    ax.hist(
        [[q for q, k in rows if k], [q for q, k in rows if not k]],
        bins=40,
        range=(0, 1),
        stacked=True,
        label=["kept", "rejected"],
        color=["#8172b3", "#cccccc"],
    )
    ax.set_yscale("log")
    ax.set_xlabel("P(high quality), fastText classifier")
    ax.set_ylabel("documents (log scale)")
    ax.legend()
    return page.chart("quality", fig, "Quality scores (annotated stage)")


def clusters(page: Page) -> str | None:
    """Duplicate clusters by size, from the deduped rows (one kept row per cluster)."""
    if "deduped" not in page.stages:
        return None
    rows = page.con.execute(
        "SELECT cluster_size, count(*) FROM deduped WHERE reject IS NULL AND cluster_size > 1 "
        "GROUP BY 1 ORDER BY 1"
    ).fetchall()
    dedup = page.manifest("deduped").get("dedup", {})
    found = dedup.get("duplicates", {})
    summary = table(
        ["clusters", "documents in them", "exact duplicates", "near duplicates"],
        [
            (
                sum(n for _, n in rows),
                sum(size * n for size, n in rows),
                found.get("exact", 0),
                found.get("near", 0),
            )
        ],
    )
    if not rows:
        return summary
    fig, ax = plt.subplots(figsize=(WIDTH, 3.2))
    ax.bar(range(len(rows)), [n for _, n in rows], color=COLORS["deduped"], width=0.6)
    ax.set_xticks(range(len(rows)), [str(size) for size, _ in rows])
    ax.set_xlim(-0.8, max(len(rows), 4) - 0.2)  # a lone bar stays a bar
    ax.set_xlabel("documents in the cluster (one kept, the others rejected)")
    ax.set_ylabel("clusters")
    if max(n for _, n in rows) > 50 * min(n for _, n in rows):
        ax.set_yscale("log")
    return page.chart("clusters", fig, "Duplicate clusters by size (exact and MinHash)") + summary


def buckets(page: Page) -> str | None:
    """Tokens per bucket before and after mixing: real counts from the shards manifest, else the
    mixed stage's estimate (UTF-8 bytes / bytes_per_token)."""
    shards = page.manifest("shards")
    if shards and shards.get("buckets"):
        source = "real tokens (shards manifest)"
        data = {name: (b["tokens_before"], b["tokens_after"]) for name, b in shards["buckets"].items()}
    elif page.manifest("mixed"):
        source = "estimated tokens (mixed manifest)"
        data = {
            name: (b["tokens_before"], b["tokens_after"])
            for name, b in page.manifest("mixed")["buckets"].items()
        }
    else:
        return None
    names = sorted(data)
    fig, ax = plt.subplots(figsize=(WIDTH, 0.5 * len(names) + 1.4))
    ys = range(len(names))
    ax.barh([y + 0.2 for y in ys], [data[n][0] for n in names], height=0.4, label="before", color="#cccccc")
    ax.barh([y - 0.2 for y in ys], [data[n][1] for n in names], height=0.4, label="after", color="#c44e52")
    ax.set_yticks(list(ys), names)
    ax.set_xlabel(source)
    ax.xaxis.set_major_formatter(EngFormatter())  # 400k, not 400000
    ax.legend(loc="upper left", bbox_to_anchor=(1, 1), fontsize=8)
    rows = [(n, data[n][0], data[n][1], data[n][1] / data[n][0] if data[n][0] else 0.0) for n in names]
    caption = f"Tokens per bucket before and after mixing ({source})"
    epochs = epochs_label(page.run_dir) if shards and shards.get("buckets") else "epochs"
    return page.chart("buckets", fig, caption) + table(["bucket", "before", "after", epochs], rows)


def learned_mixture(page: Page) -> str | None:
    """`refinery mixture fit RUN --out RUN/mixture`: its fit (predicted against measured loss) and
    the validation of the shares it chose, as jobs/mixture.py draws them."""
    path = join(page.run_dir, "mixture", "mixture.json")
    if not is_file(path):
        return None
    from jobs.mixture import figure

    report = read_json(path)
    fit, target = report["fit"], report["config"]["target"]
    caption = (
        f"Left: the {target} bits per byte of {len(report['mixtures'])} proxies against the {fit['form']} "
        f"law's leave-one-out prediction. Right: the chosen shares against the natural and uniform mixtures"
    )
    rows = [(b, v["natural"], report["shares"][b]) for b, v in report["buckets"].items()]
    return page.chart("learned_mixture", figure(report), caption) + table(
        ["bucket", "natural share", "learned share"], rows
    )


def _curves(path: str) -> dict[str, list[tuple[float, float]]]:
    """Every numeric series of a metrics.jsonl against its step, bookkeeping fields left out."""
    series: dict[str, list[tuple[float, float]]] = {}
    with open_input(path) as f:
        lines = f.read().decode("utf-8").splitlines()
    for line in lines:
        if not line.strip():
            continue
        record = json.loads(line)
        if "step" not in record:
            continue
        for key, value in record.items():
            if key not in NOT_CURVES and isinstance(value, int | float) and not isinstance(value, bool):
                series.setdefault(key, []).append((record["step"], value))
    return series


def _panel(key: str) -> str:
    """The panel a series is drawn in: a training figure beside its held-out `val_` twin (kl and
    val_kl), every loss together, per-task accuracies (`acc_<task>`, `val_acc_<task>`) together."""
    if "loss" in key:
        return "loss"
    base = key.removeprefix("val_")
    if base.startswith("acc_"):
        return "accuracy per task"
    # alignment rollouts' `correct` is held-out `val_acc`, their `rm` held-out `val_rm_score`
    return {"correct": "acc", "rm": "rm_score"}.get(base, base)


# Panel titles in words (the series keep their metrics.jsonl keys in the legend); a panel not
# listed is titled by its key with spaces for underscores.
PANEL_TITLES = {
    "loss": "loss (nats)",
    "bpb": "bits per byte (held-out)",
    "acc": "accuracy",
    "kl": "KL to the reference model (k1, per response)",
    "kl_k3": "KL to the reference model (k3, per token)",
    "zero_adv": "share of rollout groups without advantage",
    "clip_frac": "share of tokens clipped",
    "length": "response length (tokens)",
    "rm_score": "reward-model score",
    "score_mean": "reward-model score, mean",
    "score_std": "reward-model score, standard deviation",
    "prefers_longer": "share preferring the longer response",
}


def panel_title(panel: str) -> str:
    return PANEL_TITLES.get(panel, panel.replace("_", " "))


def _pipeline_order(path: PurePosixPath) -> tuple[int, str]:
    """Training phases in the order `refinery run` trains them (pretrain, sft, reward, align),
    then any other training directory by name."""
    order = list(STAGES)
    name = path.parent.name
    return (order.index(name) if name in order else len(order)), str(path)


def training_curves(page: Page) -> str | None:
    """Every metrics.jsonl under RUN/train (pretrain, sft, reward, align, ...): each series
    (losses, val_bpb, reward, KL, accuracy, ...) against the step, related ones in one panel."""
    train = join(page.run_dir, TRAIN)  # on any filesystem (jobs/train_stages.py copies into a bucket)
    parts = []
    found = [PurePosixPath(p) for p in list_files(train) if posixpath.basename(p) == "metrics.jsonl"]
    for path in sorted(found, key=_pipeline_order):
        series = _curves(join(train, str(path)))
        if not series:
            continue
        grouped: dict[str, list[str]] = {}
        for key in sorted(series):
            grouped.setdefault(_panel(key), []).append(key)
        panels = sorted(grouped.items(), key=lambda kv: (kv[0] != "loss", kv[0]))
        cols = min(len(panels), 2)
        rows = -(-len(panels) // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(WIDTH * cols, 3 * rows), squeeze=False)
        for ax, (title, keys) in zip(axes.flat, panels, strict=False):
            for key in keys:
                points = series[key]
                ax.plot(
                    [p[0] for p in points],
                    [p[1] for p in points],
                    label=key,
                    marker="." if len(points) < 50 else None,
                )
            ax.set_xlabel("step")
            ax.set_title(panel_title(title), fontsize=10)
            if len(keys) > 1 or keys[0] != title:
                ax.legend(fontsize=8)
            ax.grid(alpha=0.3)
        for ax in list(axes.flat)[len(panels) :]:
            ax.axis("off")
        phase = path.parent
        name = "train_" + "_".join(phase.parts or ("run",))
        last = {k: v[-1][1] for k, v in series.items()}
        figures = ", ".join(f"{k} {v:.4g}" for k, v in sorted(last.items()))
        source = f"{TRAIN}/{path}"
        # the phase's name above its charts, where a reader scrolling down meets it first
        parts.append(
            f"<h3>{html.escape(str(phase) if phase.parts else 'training')}</h3>"
            + page.chart(name, fig, f"Every series of {source} against the step")
            + f"<p class='note'>last values: {html.escape(figures)}</p>"
        )
    return "".join(parts) or None


def _eval_files(run_dir: str) -> list[str]:
    """JSON files under RUN in the format of `refinery eval tasks --out` (training/cli.py), as paths
    relative to RUN. In object storage only RUN/train is searched, where the eval stage writes
    (jobs/train_stages.py): listing a whole run there is a request per thousand Parquet parts."""
    if is_remote(run_dir):
        names = [f"{TRAIN}/{p}" for p in list_files(join(run_dir, TRAIN))]
    else:
        names = list_files(run_dir)
    candidates = [p for p in names if p.endswith(".json") and p != "run.json" and not _hidden(p)]
    return [p for p in candidates if _is_evaluation(join(run_dir, p))]


def _hidden(relative: str) -> bool:
    """Under a folder `_eval_files` does not search (a stage's, a checkpoint's, a marker's)."""
    return any(d in NO_EVALS or d.startswith((".", "_")) for d in relative.split("/")[:-1])


def _is_evaluation(path: str) -> bool:
    try:
        data = read_json(path)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return False
    return isinstance(data, dict) and isinstance(data.get("accuracy"), dict) and "problems" in data


def evaluations(page: Page) -> str | None:
    """Accuracy per task and checkpoint, one table per `refinery eval tasks --out` file, the
    checkpoints in the order the pipeline trains them."""
    parts = []
    for path in _eval_files(page.run_dir):
        data = read_json(join(page.run_dir, path))
        accuracy: dict[str, dict[str, float]] = data["accuracy"]
        checkpoints = sorted(accuracy, key=_phase_order)
        tasks = sorted({t for r in accuracy.values() for t in r})
        majority = data.get("majority", {})  # files written before it had no baseline
        rows = [
            (
                task,
                data["problems"].get(task, 0),
                majority.get(task),
                *(accuracy[c].get(task) for c in checkpoints),
            )
            for task in tasks
        ]
        where = html.escape(path)
        problems = f"; problems: {html.escape(str(data['data']))}" if data.get("data") else ""
        parts.append(
            f"<h3>{where}</h3><p class='note'>exact-match accuracy, greedy; majority: always the task's most "
            f"common answer; TASK+steps: the right answer with every worked step right{problems}</p>"
            + table(["task", "n", "majority", *(_short(c) for c in checkpoints)], rows)
            + _comparisons(data.get("comparisons", []))  # files written before them had none
        )
    return "".join(parts) or None


def _comparisons(found: list[dict[str, Any]]) -> str:
    """Each checkpoint against the one before it: wins, losses and the sign test's p, one line each."""
    if not found:
        return ""
    short = [c | {"earlier": _short(c["earlier"]), "later": _short(c["later"])} for c in found]
    # a task's line is indented under its pooled line; HTML would collapse the spaces
    lines = "<br>".join(
        html.escape(line).replace("  ", "&nbsp;" * 4, 1) if line.startswith("  ") else html.escape(line)
        for line in comparison_lines(short)
    )
    return (
        "<p class='note'>each checkpoint against the one before it on the same problems, pooled over "
        f"the tasks and then per task: exact one-sided McNemar (sign) test<br>{lines}</p>"
    )


def _phase_order(checkpoint: str) -> tuple[int, str]:
    """A checkpoint's place in training order: by its phase (`sft` as the eval stage names it, or the
    directory above `checkpoints/` in a path), then by name."""
    parts = Path(checkpoint).parts
    phase = parts[parts.index("checkpoints") - 1] if "checkpoints" in parts[1:] else checkpoint
    order = list(STAGES)
    return (order.index(phase) if phase in order else len(order)), checkpoint


def _short(checkpoint: str) -> str:
    """A checkpoint by its phase and step: RUN/train/sft/checkpoints/step_200 → `sft/step_200`."""
    parts = [p for p in Path(checkpoint).parts if p != "checkpoints"]
    return "/".join(parts[-2:])


def _log_bins(low: int, high: int, n: int = 40) -> list[float]:
    import math

    lo, hi = math.log10(max(low, 1)), math.log10(max(high, 2))
    return [10 ** (lo + (hi - lo) * i / n) for i in range(n + 1)]


# (title, section, wide): a wide section spans both columns of the page.
SECTIONS: tuple[tuple[str, Callable[[Page], str | None], bool], ...] = (
    ("Funnel", funnel, False),
    ("Drops per reason", drops, False),
    ("Languages", languages, False),
    ("Text lengths", lengths, False),
    ("Quality scores", quality, False),
    ("Duplicate clusters", clusters, False),
    ("Mixture", buckets, False),
    ("Learned mixture", learned_mixture, False),
    ("Training", training_curves, True),
    ("Evaluation", evaluations, True),
)

STYLE = """body{font-family:system-ui,sans-serif;max-width:1160px;margin:1.5em auto;padding:0 1em;
color:#222;font-size:14px}h1{font-size:1.5em;margin:0 0 .4em}
h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin:1.2em 0 .4em}h3{font-size:1em}
table{border-collapse:collapse;margin:.4em 0}td,th{border:1px solid #ddd;padding:1px 7px;text-align:right}
td:first-child,th:first-child{text-align:left}figure{margin:.4em 0}img{max-width:100%}
figcaption,.note{color:#666;font-size:.9em;margin:.2em 0}nav{margin:.8em 0}nav a{margin-right:1em}
.facts td{text-align:left}summary{cursor:pointer;color:#445}
main{display:grid;grid-template-columns:1fr 1fr;gap:0 2.5em}.wide{grid-column:1/-1}
header{display:flex;gap:2em;align-items:flex-start;flex-wrap:wrap}"""


def _anchor(title: str) -> str:
    return title.lower().replace(" ", "-")


def header(page: Page) -> str:
    """Run facts: inputs, config hash, seed, versions; per stage its rows, config hash and wall time."""
    run_json = join(page.run_dir, "run.json")
    run = read_json(run_json) if is_file(run_json) else {}
    facts = []
    inputs = run.get("inputs") or []
    if inputs:
        shown = ", ".join(posixpath.basename(p) for p in inputs[:4]) + (
            f", … ({len(inputs)} files)" if len(inputs) > 4 else ""
        )
        facts.append(("inputs", f"{shown} in {posixpath.dirname(inputs[0])}"))
    if run.get("source"):
        facts.append(("source", run["source"]))
    if run.get("config"):
        config = run.get("config_file") or "conf/pipeline.yaml (defaults)"
        facts.append(("config", f"{config}, resolved sha256 {fingerprint(run['config'])[:12]}"))
    if "seed" in run:
        facts.append(("seed", run["seed"]))
    versions = run.get("versions") or {}
    if versions:
        facts.append(("versions", ", ".join(f"{k} {v}" for k, v in versions.items() if v)))
    stages = []
    for name in (*page.stages, "tokenizer", "shards"):
        manifest = page.manifest(name)
        if manifest is None:
            continue
        rows = manifest.get("rows") or {}
        wall = manifest.get("wall_time_s")
        timing = join(page.run_dir, name, "timing.json")
        if wall is None and is_file(timing):  # the shards manifest is byte-identical per input: no time
            wall = read_json(timing).get("wall_time_s")
        stages.append(
            (
                name,
                rows.get("in"),
                rows.get("kept"),
                rows.get("rejected"),
                manifest.get("config_hash", "")[:12],
                None if wall is None else duration(wall),
            )
        )
    stages += _training_times(page.run_dir)
    out = "<header>"
    if facts:
        out += (
            "<table class='facts'>"
            + "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in facts)
            + "</table>"
        )
    if stages:
        out += table(["stage", "rows in", "kept", "rejected", "config hash", "wall time"], stages)
    return out + "</header>"


def _training_times(run_dir: str) -> list[tuple]:
    """Stage-table rows of the training stages `refinery run` timed (RUN/train/timing.json), in
    pipeline order: they have no rows and no manifest, only a wall time."""
    path = join(run_dir, TRAIN, TIMING)
    timings = read_json(path) if is_file(path) else {}
    timed = [name for name in STAGES if name in timings]
    return [(name, None, None, None, "", duration(timings[name]["wall_time_s"])) for name in timed]


def write_report(run_dir: str | Path) -> str | Path:
    page = Page(str(run_dir))
    body, toc = [], []
    for title, section, wide in SECTIONS:
        content = section(page)
        if content:
            anchor = _anchor(title)
            toc.append(f'<a href="#{anchor}">{html.escape(title)}</a>')
            css = " class='wide'" if wide else ""
            body.append(f'<section id="{anchor}"{css}><h2>{html.escape(title)}</h2>{content}</section>')
    remote = is_remote(page.run_dir)
    name = posixpath.basename(page.run_dir.rstrip("/")) if remote else Path(run_dir).resolve().name
    title = f"Refinery run: {html.escape(name)}"
    index = join(page.out, "index.html")
    with open_output(index) as f:
        f.write(
            f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>"
            f"<style>{STYLE}</style></head><body><h1>{title}</h1>{header(page)}"
            f"<nav>{''.join(toc)}</nav><main>{''.join(body)}</main></body></html>".encode()
        )
    return index if remote else Path(index)

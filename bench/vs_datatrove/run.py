"""Refinery against DataTrove on the same WARCs: speed, kept-document agreement, extraction F1.

    .venv/bin/python bench/vs_datatrove/run.py                       # crawl-sample, 1 and 2 workers
    .venv/bin/python bench/vs_datatrove/run.py --workers 2 --full    # also Refinery's default config
    .venv/bin/python bench/vs_datatrove/run.py --copies 3 --shortcuts on off   # 3x the pages, both ways

Run with Refinery's venv. The first run creates DataTrove's own venv in bench/vs_datatrove/.venv
(git-ignored) from requirements.txt; DataTrove is never a Refinery dependency.

- DataTrove: datatrove_pipeline.py (WarcReader, Trafilatura, LanguageFilter on the same
  lid.176.ftz, Gopher repetition and quality, C4 quality, FineWeb quality; DataTrove's
  LocalPipelineExecutor, one task per WARC, W workers).
- Refinery: `refinery run refinery.yaml --stages documents,annotated --master local[W]`, the same
  steps (url rules, PII and the quality classifier off); `--full` adds a run of the default config.
  `--shortcuts on off` runs it with the documents stage's shortcuts (language prefilter, date for
  survivors only; classifiers/prefilter.py) on, as refinery.yaml has them, and off
  (refinery-shortcuts-off.yaml), each compared with DataTrove.
- `--copies N`: the input is crawl-sample N times (`copy_crawl`), copy k > 0 under other host names
  and record IDs, so that a run is long enough to time and no copy is a URL duplicate of another.

Speed: documents are the HTML pages each pipeline sends to extraction (DataTrove's reader also
takes 404 pages and other non-200 HTML, Refinery only 200s). `doc/s/core` is documents per CPU
second of the whole process tree (driver, JVM, Python workers, extraction sandboxes), read from
/proc every POLL_S: the machine is shared, so CPU time is the fair clock; `wall doc/s/core` is
documents / wall seconds / W, for reference; `load` is the 1-minute load average before and
after the run. Agreement: Jaccard of the kept WARC-Record-IDs.
Extraction: token F1 against the ScrapingHub gold and the trafilatura-eval snippet accuracy,
from ../shared/tools/extraction_f1.py over every extracted page (kept or not).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
SHARED = REPO.parent / "shared"
VENV = HERE / ".venv"
POLL_S = 0.1
CONFIGS = {"on": "refinery.yaml", "off": "refinery-shortcuts-off.yaml"}
FOUR_LANGUAGES = ["en", "de", "fr", "es"]
TICKS = os.sysconf("SC_CLK_TCK")


def ensure_venv() -> Path:
    """DataTrove's venv, created from requirements.txt on first use. The marker is written last, so
    an install that failed halfway (no registry, no libmagic) is retried on the next run."""
    python, installed = VENV / "bin" / "python", VENV / ".installed"
    if not installed.is_file():
        if not python.is_file():
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--upgrade", "pip"], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "-r", str(HERE / "requirements.txt")], check=True
        )
        installed.touch()
    return python


def _tree_cpu(root: int, seen: dict[int, float]) -> None:
    """Update `seen` (pid → CPU seconds, user + system) for `root` and all its descendants."""
    children: dict[int, list[int]] = {}
    times: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
        pid, ppid = int(entry), int(fields[1])
        children.setdefault(ppid, []).append(pid)
        times[pid] = (int(fields[11]) + int(fields[12])) / TICKS
    stack = [root]
    while stack:
        pid = stack.pop()
        if pid in times:
            seen[pid] = max(seen.get(pid, 0.0), times[pid])
        stack += children.get(pid, [])


def measured(command: list[str], log: Path, env: dict | None = None) -> dict[str, float]:
    """Run `command`; return its wall seconds and the CPU seconds of its process tree."""
    seen: dict[int, float] = {}
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        while proc.poll() is None:
            _tree_cpu(proc.pid, seen)
            time.sleep(POLL_S)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{command[:3]}: exit status {proc.returncode}; see {log}")
    return {"wall_s": wall, "cpu_s": sum(seen.values()), "load": (load_before, os.getloadavg()[0])}


def read_jsonl(folder: Path) -> list[dict]:
    return [json.loads(line) for path in sorted(folder.glob("*.jsonl")) for line in path.open()]


def datatrove(python: Path, inputs: Path, workers: int, out: Path, lid: str, languages: list[str]) -> dict:
    command = [str(python), str(HERE / "datatrove_pipeline.py"), "--input", str(inputs), "--out", str(out)]
    command += ["--workers", str(workers), "--lid", lid, "--languages", *languages]
    figures = measured(command, out.with_suffix(".log"))
    stats = json.loads((out / "logs" / "stats.json").read_text())
    extractor = next(s for s in stats if "Trafilatura" in s["name"])
    extracted = read_jsonl(out / "extracted")
    kept = read_jsonl(out / "kept")
    return {
        **figures,
        "documents": extractor["stats"]["total"],
        "kept_ids": sorted(d["id"] for d in kept),
        "texts": [(d["metadata"].get("url"), d["id"], d["text"]) for d in extracted],
    }


def refinery(inputs: Path, workers: int, out: Path, config: str | None) -> dict:
    import duckdb

    command = [str(Path(sys.executable).parent / "refinery"), "run"] + ([config] if config else [])
    command += ["--input", str(inputs / "*.warc.gz"), "--out", str(out), "--stages", "documents,annotated"]
    figures = measured([*command, "--master", f"local[{workers}]"], out.with_suffix(".log"))
    manifest = json.loads((out / "documents" / "manifest.json").read_text())
    kept = duckdb.sql(f"SELECT warc_record_id FROM read_parquet('{out}/annotated/kept/*.parquet')").fetchall()
    return {**figures, "documents": manifest["rows"]["in"], "kept_ids": sorted(r[0] for r in kept)}


def extraction_scores(run_dir: Path) -> dict:
    """extraction_f1.py's `run` mode over RUN/documents (every extracted page, kept or rejected)."""
    tool = SHARED / "tools" / "extraction_f1.py"
    labels = SHARED / "data" / "crawl-sample" / "labels.tsv"
    result = subprocess.run(
        [sys.executable, str(tool), "run", str(run_dir), str(labels), str(SHARED / "data")],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout)


def as_run_dir(texts: list[tuple[str, str, str]], folder: Path) -> Path:
    """DataTrove's extracted pages as RUN/documents/part.parquet, the layout extraction_f1.py reads."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    (folder / "documents").mkdir(parents=True)
    url, rid, text = zip(*texts, strict=True) if texts else ((), (), ())
    table = pa.table({"url": list(url), "warc_record_id": list(rid), "text": list(text)})
    pq.write_table(table, folder / "documents" / "part-00000.parquet")
    return folder


def copy_crawl(source: Path, dest: Path, copies: int) -> Path:
    """`copies` copies of the WARCs in `source` into `dest` (reused when complete): copy 0 as it is,
    copy k with every WARC-Target-URI's host prefixed `copyk.` and every WARC-Record-ID replaced
    by a UUID derived from it and k. The HTTP headers and bodies are unchanged."""
    from urllib.parse import urlsplit, urlunsplit
    from uuid import NAMESPACE_URL, uuid5

    from warcio.archiveiterator import ArchiveIterator
    from warcio.warcwriter import WARCWriter

    done = dest / ".complete"
    if done.is_file():
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    for k in range(copies):
        for path in sorted(source.glob("*.warc.gz")):
            with open(path, "rb") as src, open(dest / f"copy{k}-{path.name}", "wb") as out:
                writer = WARCWriter(out, gzip=True)
                for record in ArchiveIterator(src):
                    headers = record.rec_headers
                    uri, rid = headers.get_header("WARC-Target-URI"), headers.get_header("WARC-Record-ID")
                    if k and uri and "://" in uri:
                        parts = urlsplit(uri)
                        headers.replace_header(
                            "WARC-Target-URI", urlunsplit(parts._replace(netloc=f"copy{k}.{parts.netloc}"))
                        )
                    if k and rid:
                        headers.replace_header(
                            "WARC-Record-ID", f"<urn:uuid:{uuid5(NAMESPACE_URL, f'{rid}#{k}')}>"
                        )
                    writer.write_record(record)
    done.touch()
    return dest


def jaccard(a: list[str], b: list[str]) -> tuple[float, int]:
    sa, sb = set(a), set(b)
    return (len(sa & sb) / len(sa | sb) if sa | sb else 1.0), len(sa & sb)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--input", default=str(SHARED / "data" / "crawl-sample"), help="folder of *.warc.gz")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--full", action="store_true", help="also run Refinery's default config")
    parser.add_argument("--out", help="keep outputs here (default: a temporary directory)")
    parser.add_argument("--copies", type=int, default=1, help="the input this many times (copy_crawl)")
    parser.add_argument(
        "--shortcuts", nargs="+", choices=("on", "off"), default=["on"], help="Refinery's documents shortcuts"
    )
    parser.add_argument("--rounds", type=int, default=1, help="every run this many times, interleaved")
    parser.add_argument(
        "--languages",
        nargs="+",
        default=["en"],
        help="allowed languages: en, or en de fr es (refinery-4lang.yaml)",
    )
    args = parser.parse_args()
    if args.languages != ["en"] and (args.languages != FOUR_LANGUAGES or args.shortcuts != ["on"]):
        parser.error(f"--languages: en, or {' '.join(FOUR_LANGUAGES)} with --shortcuts on")
    return args


def refinery_config(setting: str, languages: list[str]) -> str:
    return str(HERE / (CONFIGS[setting] if languages == ["en"] else "refinery-4lang.yaml"))


def run_round(args, python: Path, inputs: Path, lid: str, work: Path, r: int) -> list[tuple]:
    """One round: per worker count, DataTrove then Refinery with each shortcut setting."""
    rows = []
    for workers in args.workers:
        dt_out = work / f"datatrove-w{workers}-r{r}"
        dt = datatrove(python, inputs, workers, dt_out, lid, args.languages)
        rows.append(("DataTrove", workers, r, dt))
        for setting in args.shortcuts:
            name = "Refinery" if setting == "on" else "Refinery, shortcuts off"
            out = work / (f"refinery-w{workers}-r{r}" + ("" if setting == "on" else "-off"))
            rows.append(
                (name, workers, r, refinery(inputs, workers, out, refinery_config(setting, args.languages)))
            )
    return rows


def first_round_quality(rows: list[tuple], work: Path) -> dict:
    """Extraction F1 of both pipelines and the kept-set agreement, from round 0's first runs."""
    dt = next(res for name, _, r, res in rows if name == "DataTrove" and r == 0)
    ours = next(res for name, _, r, res in rows if name.startswith("Refinery") and r == 0)
    out = next(Path(p) for p in sorted(work.glob("refinery-w*-r0*")) if Path(p).is_dir())
    return {
        "DataTrove": extraction_scores(as_run_dir(dt["texts"], work / "datatrove-f1")),
        "Refinery": extraction_scores(out),
        "agreement": (jaccard(dt["kept_ids"], ours["kept_ids"]), len(dt["kept_ids"]), len(ours["kept_ids"])),
    }


def print_runs(rows: list[tuple]) -> None:
    columns = ("pipeline", "workers", "round", "documents", "wall s", "CPU s", "doc/s/core (CPU)")
    print("| " + " | ".join((*columns, "wall doc/s/core", "kept", "load")) + " |")
    print("|" + "---|" * (len(columns) + 3))
    for name, workers, r, res in rows:
        print(
            f"| {name} | {workers} | {r} | {res['documents']:,} | {res['wall_s']:.1f} | {res['cpu_s']:.1f} "
            f"| {res['documents'] / res['cpu_s']:.1f} | {res['documents'] / res['wall_s'] / workers:.1f} "
            f"| {len(res['kept_ids']):,} | {res['load'][0]:.1f}-{res['load'][1]:.1f} |"
        )


def print_ratios(rows: list[tuple], workers_list: list[int]) -> None:
    """Refinery / DataTrove documents per CPU second, per round (the DataTrove run of the same round
    and worker count) and their mean and sample standard deviation over the rounds."""
    rate = lambda res: res["documents"] / res["cpu_s"]  # noqa: E731
    for workers in workers_list:
        names = sorted({n for n, w, _, _ in rows if w == workers and n.startswith("Refinery")})
        for name in names:
            ratios = []
            for _, _, r, dt in (row for row in rows if row[0] == "DataTrove" and row[1] == workers):
                ours = next(res for n, w2, r2, res in rows if n == name and w2 == workers and r2 == r)
                ratios.append(rate(ours) / rate(dt))
            mean = statistics.mean(ratios)
            sd = statistics.stdev(ratios) if len(ratios) > 1 else 0.0
            each = ", ".join(f"{x:.2f}" for x in ratios)
            print(
                f"{workers} worker(s): {name}/DataTrove doc/s/core (CPU) {mean:.2f}x ± {sd:.2f}"
                f" (rounds: {each})"
            )


def print_quality(quality: dict) -> None:
    (score, both), n_dt, n_ours = quality["agreement"]
    print(f"kept documents: DataTrove {n_dt}, Refinery {n_ours}, both {both}, Jaccard {score:.3f}")
    print(
        "| extractor | ScrapingHub pages | precision | recall | F1 | trafilatura-eval snippets | accuracy |"
    )
    print("|---|---|---|---|---|---|---|")
    for name in ("DataTrove", "Refinery"):
        sh, te = quality[name].get("scrapinghub", {}), quality[name].get("trafilatura-eval", {})
        print(
            f"| {name} | {sh.get('n')} | {sh.get('precision', 0):.3f} | {sh.get('recall', 0):.3f} "
            f"| {sh.get('f1', 0):.3f} | {te.get('n_snippets')} | {te.get('snippet_accuracy', 0):.3f} |"
        )


def main() -> None:
    args = parse_args()
    sys.path.insert(0, str(REPO))
    from classifiers.langid import lid176_path

    python = ensure_venv()
    inputs, lid = Path(args.input), lid176_path()
    work = Path(args.out or tempfile.mkdtemp(prefix="vs_datatrove-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.copies > 1:
        inputs = copy_crawl(inputs, work / f"input-x{args.copies}", args.copies)
    rows = [row for r in range(args.rounds) for row in run_round(args, python, inputs, lid, work, r)]
    quality = first_round_quality(rows, work)
    if args.full:
        workers = max(args.workers)
        rows.append(("Refinery, default config", workers, 0, refinery(inputs, workers, work / "full", None)))

    print(f"inputs: {inputs} ({len(list(inputs.glob('*.warc.gz')))} files), languages {args.languages}")
    print(f"outputs in {work}")
    print_runs(rows)
    print_ratios(rows, args.workers)
    print_quality(quality)
    (score, both), n_dt, n_ours = quality["agreement"]
    summary = {
        "languages": args.languages,
        "rows": [
            {
                "pipeline": n,
                "workers": w,
                "round": r,
                **{k: v for k, v in res.items() if k in ("wall_s", "cpu_s", "documents", "load")},
            }
            for n, w, r, res in rows
        ],
        "quality": {k: v for k, v in quality.items() if k != "agreement"},
        "agreement": {"jaccard": score, "both": both, "datatrove": n_dt, "refinery": n_ours},
    }
    (work / "summary.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()

"""The `refinery` command line.

Each command group lives beside the code it drives and adds its subcommands with
`add_commands(sub)`, setting `func` to a function of the parsed arguments; heavy imports
(Spark, torch) happen inside those functions, so `refinery --help` stays fast.
A `FileNotFoundError` or `ValueError` becomes one red error line and exit status 2; output cut
short by its reader (`refinery why RUN URL --json | head`) one line on stderr and exit status 1.
"""

import argparse
import logging
import os
import sys

from classifiers import cli as classifier_cli
from jobs import ablate, dedup_cli, mixture, tokenizer_cli, why
from jobs.console import FittedFormatter, PipeConsole
from training import cli as training_cli
from training import synth

console = PipeConsole()
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _run(args: argparse.Namespace) -> None:
    from jobs.run import run

    if not args.input and (args.stages is None or "documents" in args.stages):
        raise ValueError("--input is required for the documents stage")
    manifests = run(
        args.config,
        args.input,
        args.out,
        master=args.master,
        stages=args.stages,
        force=args.force,
        strict=args.strict,
        input_prefix=args.input_prefix,
        input_skip=args.input_skip,
        input_limit=args.input_limit,
    )
    for name, manifest in manifests.items():
        for line in summary_lines(name, manifest):
            console.print(line, highlight=False)


def summary_lines(name: str, manifest: dict) -> list[str]:
    """What a stage did, for the end of `refinery run`: one line of its row counts or scalar results,
    then one indented line per nested result (`eval`'s accuracy per model), its deeper keys joined
    with dots, rather than nested braces wrapped over many lines."""
    rows, summary = manifest.get("rows"), manifest.get("summary") or {}
    if rows:
        return [f"{name}: {rows['in']:,} in, {rows['kept']:,} kept, {rows['rejected']:,} rejected"]
    scalars = {k: v for k, v in summary.items() if not isinstance(v, dict)}
    nested = [f"  {k}: {_pairs(_flat(v))}" for k, v in summary.items() if isinstance(v, dict)]
    if not scalars:
        return [f"{name}:", *nested] if nested else [f"{name}: done"]
    return [f"{name}: {_pairs(scalars)}", *nested]


def _flat(values: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _pairs(values: dict) -> str:
    return ", ".join(f"{k} {f'{v:.4g}' if isinstance(v, float) else v}" for k, v in values.items())


def _stats(args: argparse.Namespace) -> None:
    from jobs.stats import print_stats

    print_stats(args.run_dir, console)


def _sql(args: argparse.Namespace) -> None:
    from jobs.stats import run_sql

    # a table on a terminal; elsewhere (a pipe, a file) CSV, whose values are whole and parseable
    fmt = args.format or ("table" if console.is_terminal else "csv")
    run_sql(args.run_dir, args.query, console, fmt)


def _report(args: argparse.Namespace) -> None:
    from jobs.report import write_report

    console.print(f"report: {write_report(args.run_dir)}")


def _pii_eval(args: argparse.Namespace) -> None:
    from corpus.pii import PiiRedactor
    from corpus.pii_eval import evaluate, format_table, load_presidio

    print(format_table(evaluate(PiiRedactor(), load_presidio(args.data_dir))))


def _pii_audit(args: argparse.Namespace) -> int:
    from corpus.pii_audit import audit_shards, format_audit

    kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
    audit = audit_shards(
        args.run_dir, kinds=kinds, tokenizer_path=args.tokenizer, examples_per_kind=args.examples
    )
    print(format_audit(audit))
    return 1 if audit.found else 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run", help="run pipeline stages over WARC, JSONL or Parquet files")
    run.add_argument("config", nargs="?", help="YAML config (default: conf/pipeline.yaml)")
    run.add_argument(
        "--input",
        action="append",
        default=[],
        help="glob of WARC (or WET) files, or of documents as *.jsonl[.gz|.zst] / *.parquet, local or "
        "a URI (s3://bucket/crawl/*.warc.gz); or a path list, *.paths[.gz] (repeatable)",
    )
    run.add_argument(
        "--input-prefix", help="URI or folder the entries of a path list are relative to (s3://commoncrawl/)"
    )
    run.add_argument("--input-skip", type=int, default=0, help="path list: skip its first N entries")
    run.add_argument("--input-limit", type=int, help="path list: read N entries (after --input-skip)")
    run.add_argument("--out", required=True, help="run directory")
    run.add_argument("--master", help="Spark master URL (default: the config's, local[*])")
    run.add_argument("--stages", help="comma-separated subset of the stages (default: all)")
    run.add_argument(
        "--force", action="store_true", help="write into an --out holding another run (changed stages redone)"
    )
    run.add_argument(
        "--strict",
        action="store_true",
        help="refuse the run if an input file cannot be read (default: list it in the manifest, go on)",
    )
    run.set_defaults(func=_run)

    stats = sub.add_parser("stats", help="funnel, languages, domains and lengths of a run")
    stats.add_argument("run_dir")
    stats.set_defaults(func=_stats)

    sql = sub.add_parser("sql", help="a DuckDB query over a run's views")
    sql.add_argument("run_dir")
    sql.add_argument("query")
    sql.add_argument(
        "--format",
        help="table (the default on a terminal), csv (the default otherwise) or json (JSON Lines): "
        "csv and json print every value in full",
    )
    sql.set_defaults(func=_sql)

    report = sub.add_parser("report", help="write RUN/report/index.html with charts of the run")
    report.add_argument("run_dir")
    report.set_defaults(func=_report)

    pii = sub.add_parser("pii-eval", help="PII precision and recall on the presidio-research synthetic set")
    pii.add_argument("data_dir", nargs="?", default="../shared/data/presidio-research-synth-pii")
    pii.set_defaults(func=_pii_eval)

    audit = sub.add_parser(
        "pii-audit", help="decode every shard of a run and scan it for PII; exit status 1 if any is found"
    )
    audit.add_argument("run_dir", help="run directory (with shards/ and tokenizer/) or a shards directory")
    audit.add_argument("--kinds", default="email,ip,credit_card,phone", help="comma-separated PII kinds")
    audit.add_argument(
        "--tokenizer", help="tokenizer.json (default: tokenizer/tokenizer.json beside the shards)"
    )
    audit.add_argument("--examples", type=int, default=3, help="masked examples printed per kind")
    audit.set_defaults(func=_pii_audit)


# One entry per command group, in the order `refinery --help` lists them.
COMMAND_GROUPS = (
    add_commands,
    why.add_commands,
    dedup_cli.add_commands,
    classifier_cli.add_commands,
    tokenizer_cli.add_commands,
    training_cli.add_commands,
    ablate.add_commands,
    mixture.add_commands,
    synth.add_commands,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="refinery", description="Web crawls to corpora to models.")
    # Its own dest: `train pretrain --quiet` sets `quiet`, and a subcommand's defaults overwrite ours.
    parser.add_argument(
        "--quiet",
        dest="quiet_all",
        action="store_true",
        help="warnings only: no INFO logs, no Spark or training progress bars (for CI and batch jobs)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMAND_GROUPS:
        add(sub)
    args = parser.parse_args(argv)
    if args.quiet_all:
        # Read by jobs/spark.py (spark.ui.showConsoleProgress) and training/loop.py (the progress bar).
        os.environ["REFINERY_QUIET"] = "1"
    level = logging.WARNING if args.quiet_all else logging.INFO
    # --quiet's few lines (its warnings) fit the terminal; the INFO log stays a line per record.
    handler = logging.StreamHandler()
    handler.setFormatter((FittedFormatter if args.quiet_all else logging.Formatter)(LOG_FORMAT))
    logging.basicConfig(level=level, handlers=[handler])
    # py4j's INFO lines are its connection's life ("Closing down clientserver connection" at exit)
    logging.getLogger("py4j").setLevel(logging.WARNING)
    try:
        status = args.func(args)  # a command may return an exit status (pii-audit: 1 on findings)
    except (FileNotFoundError, ValueError) as exc:
        # soft_wrap: one line however long (rich would wrap at 80 columns when not on a terminal)
        console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        return 2
    except BrokenPipeError:
        # The reader stopped early (`| head`). Point stdout at /dev/null so that the interpreter's
        # final flush does not fail again, and say so where it can still be read.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        print("error: output cut short: its reader closed the pipe", file=sys.stderr)
        return 1  # as Python's documentation does on EPIPE (the `signal` module's note on SIGPIPE)
    return status if isinstance(status, int) else 0


if __name__ == "__main__":
    sys.exit(main())

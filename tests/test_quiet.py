"""`refinery --quiet`: one flag before the subcommand for CI and batch runs; the JVM's stderr without
its incubator warning, and warnings that fit the terminal (the whole run: tests/test_run_progress.py)."""

import io
import logging
import os

from jobs import cli
from jobs.console import FittedFormatter, fit_line
from jobs.spark import JVM_BANNER, forward_lines


def test_quiet_before_the_subcommand_sets_the_environment_the_stages_read(monkeypatch, tmp_path):
    monkeypatch.setenv("REFINERY_QUIET", "")  # restored after the test, whatever main sets
    seen = {}
    monkeypatch.setattr(cli, "_stats", lambda args: seen.update(quiet=os.environ.get("REFINERY_QUIET")))
    assert cli.main(["--quiet", "stats", str(tmp_path)]) == 0
    assert seen == {"quiet": "1"}


def test_without_quiet_the_environment_is_left_alone(monkeypatch, tmp_path):
    monkeypatch.setenv("REFINERY_QUIET", "")  # restored after the test, whatever main sets
    monkeypatch.setattr(cli, "_stats", lambda args: None)
    assert cli.main(["stats", str(tmp_path)]) == 0
    assert os.environ["REFINERY_QUIET"] == ""


def test_a_subcommands_own_quiet_flag_does_not_clash_with_the_global_one(monkeypatch):
    monkeypatch.setenv("REFINERY_QUIET", "")  # restored after the test, whatever main sets
    captured = {}
    monkeypatch.setattr("training.cli._pretrain", lambda args: captured.update(vars(args)))
    argv = ["--quiet", "train", "pretrain", "--config", "c.yaml", "--shards", "s", "--out", "o"]
    assert cli.main(argv) == 0
    assert captured["quiet_all"] is True and captured["quiet"] is False


def test_the_jvms_stderr_is_forwarded_without_exactly_the_incubator_warning():
    banner = b"WARNING: Using incubator modules: jdk.incubator.vector\n"
    error = b"26/12/07 13:00:00 ERROR Executor: Exception in task 0.0\n"
    other = b"WARNING: Using incubator modules: jdk.incubator.foreign\n"
    sink = io.BytesIO()
    forward_lines(io.BytesIO(banner + error + other + banner), sink, JVM_BANNER)
    assert sink.getvalue() == error + other


def test_a_failing_sink_does_not_stop_the_jvms_stderr_from_being_drained():
    class ClosedTerminal(io.BytesIO):
        def write(self, data: bytes) -> int:
            raise OSError("Input/output error")

    source = io.BytesIO(b"a line\n" * 1000)
    forward_lines(source, ClosedTerminal(), JVM_BANNER)
    assert source.tell() == len(source.getvalue())  # read to the end: the JVM never blocks on it


def test_a_long_warning_is_wrapped_at_spaces_to_the_terminal_width(monkeypatch):
    monkeypatch.setenv("COLUMNS", "40")
    message = "documents: 1 input file(s) unreadable, skipped (manifest: bad_files) in /a/long/path/to/crawl"
    record = logging.LogRecord("jobs.documents", logging.WARNING, __file__, 1, message, None, None)
    lines = FittedFormatter("%(levelname)s %(name)s: %(message)s").format(record).splitlines()
    assert lines == [
        "WARNING jobs.documents: documents: 1",
        "  input file(s) unreadable, skipped",
        "  (manifest: bad_files) in",
        "  /a/long/path/to/crawl",
    ]


def test_a_word_wider_than_the_terminal_stays_whole():
    url = "https://www.example.org/" + "x" * 80
    assert fit_line(f"see {url} now", 40).splitlines() == ["see", f"  {url}", "  now"]
    assert fit_line("short", 40) == "short"

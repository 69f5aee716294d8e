"""The rich console the `refinery` commands print to, how wide a table wants to be, and log lines
that fit the terminal."""

import logging
import shutil
import textwrap

import rich.console
from rich.measure import Measurement

UNBOUNDED = 10_000  # columns: wider than any table, so a measurement is not capped at the console's


class PipeConsole(rich.console.Console):
    """rich's Console, except that a reader closing the pipe early (`refinery why RUN URL | head`)
    raises BrokenPipeError for jobs/cli.py's `main` to report like any other error: rich's own
    handling exits with status 1 and says nothing."""

    def on_broken_pipe(self) -> None:
        self.quiet = True  # as rich does: nothing more is written to the closed pipe
        raise BrokenPipeError("the output pipe was closed")


def natural_width(console: rich.console.Console, renderable: rich.console.RenderableType) -> Measurement:
    """The widths a renderable needs: `minimum` with every word whole, `maximum` with every line
    whole. rich's `console.measure` caps both at the console's width, which hides a table too wide."""
    return console.measure(renderable, options=console.options.update_width(UNBOUNDED))


def counted(n: int, noun: str) -> str:
    """`1 document`, `2 documents`, `1,200 documents`: a count with its noun in the right number."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


class FittedFormatter(logging.Formatter):
    """Log lines no wider than the terminal (`refinery --quiet`): a line longer than
    `shutil.get_terminal_size()` (COLUMNS, else the terminal's, else 80) is wrapped at spaces, its
    continuation indented by two, where the terminal's own wrap would break words. A word alone
    wider than the line (a long path or URL) stays whole, so that it can be copied."""

    def format(self, record: logging.LogRecord) -> str:
        width = shutil.get_terminal_size().columns
        return "\n".join(fit_line(line, width) for line in super().format(record).splitlines())


def fit_line(line: str, width: int) -> str:
    """`line` as is if it fits in `width` columns, else wrapped at spaces into lines that do."""
    if len(line) <= width:
        return line
    return textwrap.fill(line, width, subsequent_indent="  ", break_long_words=False, break_on_hyphens=False)

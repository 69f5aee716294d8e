"""The rich console the `refinery` commands print to, and how wide a table wants to be."""

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

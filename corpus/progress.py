"""Progress as a log file reads it: how long something took, and about how long it has left.

`refinery run` prints a line at each stage's start and end and, during a long stage, one about
every `EVERY_S` seconds (jobs/run.py for the Spark stages, training/loop.py for training), so a
redirected log is never silent for long and says when the work will end.
"""

EVERY_S = 60.0  # seconds between progress lines of a running stage: "about every minute" in a log


def duration(seconds: float) -> str:
    """`36 s`, `6 min 05 s`, `1 h 02 min`: whole units, read at a glance in a log."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def estimate(elapsed: float, done: int, total: int, start: int = 0) -> str:
    """`120/200, 2 min 10 s, about 1 min 27 s left`: `done` of `total` after `elapsed` seconds, the
    rest at the pace of the units done since `start` (where a resumed run began); no estimate
    before the first of them is done."""
    text = f"{done}/{total}, {duration(elapsed)}"
    if done <= start or done > total:
        return text
    return f"{text}, about {duration(elapsed / (done - start) * (total - done))} left"

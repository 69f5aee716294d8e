"""`refinery` in a subprocess, its stdout a pipe as under `| head`, in a log or in CI."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def refinery(*argv: str, columns: int = 80, close_stdout: bool = False) -> subprocess.CompletedProcess:
    """Run `refinery ARGV` with COLUMNS=columns. close_stdout: the reader has gone before the first
    byte is written, so any write to stdout fails with EPIPE."""
    command = [sys.executable, "-m", "jobs.cli", *argv]
    env = {**os.environ, "COLUMNS": str(columns)}
    if not close_stdout:
        return subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=REPO)
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    return subprocess.CompletedProcess(command, proc.wait(timeout=120), "", stderr)

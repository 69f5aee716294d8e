"""A moto S3 server for tests (moto[s3], flask and flask-cors: dev extra): a subprocess on 127.0.0.1
and a free port, stopped by its own process id. The `s3_server` fixture (tests/conftest.py) puts its
endpoint and a unique secret key in the environment, the standard AWS way, so code under test
passes nothing."""

import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

START_TIMEOUT_S = 60  # moto imports Flask and its service models: seconds on a loaded machine
STOP_TIMEOUT_S = 10


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    secret: str  # unique per server: a test greps a run's files and logs for it

    @property
    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": self.secret,
            "AWS_DEFAULT_REGION": "us-east-1",
        }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_up(proc: subprocess.Popen, endpoint: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto server exited with status {proc.returncode} before answering")
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"moto server at {endpoint} did not answer within {START_TIMEOUT_S} s")


@contextmanager
def moto_server() -> Iterator[S3Server]:
    port = free_port()  # another process could take it before moto binds: then moto exits, and we say so
    endpoint = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_until_up(proc, endpoint)
        yield S3Server(endpoint, f"refinery-test-secret-{uuid.uuid4().hex}")
    finally:
        proc.terminate()  # this server only, by its own pid
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def clear_s3_clients() -> None:
    """Forget cached s3fs filesystems: they hold the endpoint and keys of the server they were made for."""
    from s3fs import S3FileSystem

    S3FileSystem.clear_instance_cache()


def upload(files: list[Path], uri: str) -> list[str]:
    """Copy local files into the folder `uri` (s3://bucket/folder/), creating the bucket; their URIs."""
    import fsspec

    fs, folder = fsspec.core.url_to_fs(uri)
    bucket = folder.split("/")[0]
    if not fs.exists(bucket):
        fs.mkdir(bucket)
    targets = []
    for path in files:
        fs.put_file(str(path), f"{folder.rstrip('/')}/{path.name}")
        targets.append(f"{uri.rstrip('/')}/{path.name}")
    fs.invalidate_cache()
    return targets

"""corpus/fs.py: transient errors retried and counted, path lists, names and versions of files.

A `flaky://` filesystem (the local one, failing the calls it is told to as a throttled or
dropped S3 connection does) stands in for a remote store without a server."""

import errno
import gzip
from collections import Counter
from pathlib import Path

import fsspec
import pytest
from fsspec.implementations.local import LocalFileSystem

from corpus import fs
from corpus.documents import warc_documents
from corpus.extract import Extractor
from corpus.fs import RETRIES, open_input, parent_name, read_path_list, with_retries

REPO = Path(__file__).resolve().parent.parent
WARC = REPO / "data" / "sample" / "commoncrawl-2020-34.warc.gz"  # 136 KB: three 64 KiB reads and more


class FlakyFileSystem(LocalFileSystem):
    """Local files under `flaky://`; calls (info, open, read) numbered in `FAIL_CALLS` fail."""

    protocol = "flaky"
    FAIL_CALLS: set[int] = set()
    calls = 0

    @classmethod
    def _strip_protocol(cls, path):
        return super()._strip_protocol(path.removeprefix("flaky://"))

    def tick(self) -> None:
        FlakyFileSystem.calls += 1
        if FlakyFileSystem.calls in self.FAIL_CALLS:
            if FlakyFileSystem.calls % 2:
                raise OSError(errno.EBUSY, "503 SlowDown: please reduce your request rate")
            raise ConnectionResetError(errno.ECONNRESET, "connection reset by peer")

    def info(self, path, **kwargs):
        self.tick()
        return super().info(path, **kwargs)

    def _open(self, path, mode="rb", **kwargs):
        self.tick()
        return _FlakyFile(self, super()._open(path, mode, **kwargs))


class _FlakyFile:
    def __init__(self, owner: FlakyFileSystem, file):
        self.owner, self.file = owner, file

    def read(self, n=-1):
        self.owner.tick()
        return self.file.read(n)

    def __getattr__(self, name):
        return getattr(self.file, name)


@pytest.fixture
def flaky(monkeypatch):
    fsspec.register_implementation("flaky", FlakyFileSystem, clobber=True)
    monkeypatch.setattr(fs, "FIRST_BACKOFF_S", 0.0)
    FlakyFileSystem.calls = 0
    yield FlakyFileSystem
    FlakyFileSystem.FAIL_CALLS = set()


def read_rows(path: str) -> tuple[list[dict], Counter]:
    counts: Counter = Counter()
    rows = list(warc_documents(path, source="s", extractor=Extractor(), counts=counts, errors=[]))
    return [{k: v for k, v in r.items() if k != "warc_file"} for r in rows], counts


def test_transient_errors_on_open_and_midway_reads_are_retried_and_counted(flaky):
    flaky.FAIL_CALLS = {1, 2, 5, 7}  # open twice, then two reads after the file is under way
    rows, counts = read_rows(f"flaky://{WARC}")
    expected, local_counts = read_rows(str(WARC))
    assert rows == expected and len(rows) == 16
    assert counts[RETRIES] == 4 and counts["errors"] == 0
    assert {k: v for k, v in counts.items() if k != RETRIES} == dict(local_counts)
    assert flaky.calls > 7  # the reads that failed were past the first ones


def test_a_read_that_keeps_failing_gives_up_after_the_bounded_tries(flaky):
    flaky.FAIL_CALLS = set(range(1, fs.TRIES + 1))
    counts: Counter = Counter()
    with pytest.raises(OSError, match="SlowDown"):
        open_input(f"flaky://{WARC}", counts)
    assert counts[RETRIES] == fs.TRIES - 1 and flaky.calls == fs.TRIES


def test_an_error_that_is_not_transient_is_not_retried():
    calls = []

    def denied():
        calls.append(1)
        raise PermissionError(errno.EACCES, "Access Denied")

    with pytest.raises(PermissionError):
        with_retries(denied, what="s3://b/k", sleep=lambda s: None)
    assert len(calls) == 1


def test_path_list_entries_are_joined_to_the_prefix_in_a_range(tmp_path):
    listing = tmp_path / "warc.paths.gz"
    listing.write_bytes(
        gzip.compress(b"crawl-data/a.warc.gz\n\ncrawl-data/b.warc.gz\n/crawl-data/c.warc.gz\n")
    )
    assert read_path_list(str(listing), prefix="s3://commoncrawl/") == [
        "s3://commoncrawl/crawl-data/a.warc.gz",
        "s3://commoncrawl/crawl-data/b.warc.gz",
        "s3://commoncrawl/crawl-data/c.warc.gz",
    ]
    assert read_path_list(str(listing), prefix="s3://cc", skip=1, limit=1) == ["s3://cc/crawl-data/b.warc.gz"]


def test_path_list_of_relative_paths_without_a_prefix_is_refused(tmp_path):
    listing = tmp_path / "warc.paths"
    listing.write_text("crawl-data/a.warc.gz\n")
    with pytest.raises(
        ValueError, match=r"warc.paths: 'crawl-data/a.warc.gz' is a relative path; pass --input-prefix"
    ):
        read_path_list(str(listing))


def test_path_list_that_is_not_gzip_is_a_one_line_error(tmp_path):
    listing = tmp_path / "warc.paths.gz"
    listing.write_text("crawl-data/a.warc.gz\n")
    with pytest.raises(ValueError, match=r"warc.paths.gz: unreadable path list \(BadGzipFile"):
        read_path_list(str(listing), prefix="s3://cc/")


def test_parent_name_of_local_files_and_uris(tmp_path):
    assert parent_name("s3://crawl/crawl-sample/a.warc.gz") == "crawl-sample"
    assert parent_name("s3://crawl/a.warc.gz") == "crawl"
    assert parent_name(str(WARC)) == "sample" and parent_name(f"file://{WARC}") == "sample"


def test_path_list_options_without_a_path_list_are_refused():
    from jobs.run import expand_inputs

    with pytest.raises(
        ValueError, match=r"--input-prefix, --input-skip and --input-limit apply to a path list"
    ):
        expand_inputs([str(WARC)], limit=2)


def test_local_path_list_names_files_under_the_prefix_and_a_missing_one_is_refused(tmp_path):
    from jobs.run import expand_inputs

    listing = tmp_path / "warc.paths"
    listing.write_text(f"{WARC.name}\ncommoncrawl-2019.warc.gz\nmissing.warc.gz\n")
    folder = str(WARC.parent)
    assert expand_inputs([str(listing)], prefix=folder, limit=2) == sorted(
        [str(WARC), f"{folder}/commoncrawl-2019.warc.gz"]
    )
    with pytest.raises(FileNotFoundError, match=rf"^{folder}/missing.warc.gz: no such file$"):
        expand_inputs([str(listing)], prefix=folder, skip=2)


def test_connection_failures_of_the_s3_client_libraries_are_transient():
    from aiohttp import ServerDisconnectedError
    from botocore.exceptions import EndpointConnectionError, ReadTimeoutError

    assert fs.is_transient(EndpointConnectionError(endpoint_url="http://127.0.0.1:1"))
    assert fs.is_transient(ReadTimeoutError(endpoint_url="http://127.0.0.1:1"))
    assert fs.is_transient(ServerDisconnectedError())
    assert not fs.is_transient(FileNotFoundError(errno.ENOENT, "s3://b/k"))


def test_copy_tree_copies_a_folders_files_but_a_writers_temporaries(tmp_path):
    source = tmp_path / "pretrain"
    names = ("metrics.jsonl", "checkpoints/step_000010/model.pt", "checkpoints/.step_000020.tmp/model.pt")
    for name in names:
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes(name.encode())
    assert fs.copy_tree(source, tmp_path / "copy") == ["checkpoints/step_000010/model.pt", "metrics.jsonl"]
    assert fs.list_files(tmp_path / "copy") == ["checkpoints/step_000010/model.pt", "metrics.jsonl"]
    assert (tmp_path / "copy" / "metrics.jsonl").read_bytes() == b"metrics.jsonl"
    assert fs.list_files(tmp_path / "absent") == []

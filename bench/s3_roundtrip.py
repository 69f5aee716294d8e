"""A crawl curated from a bucket into a run in a bucket, against the same crawl curated on disk.

    PYTHONPATH=$PWD python bench/s3_roundtrip.py [--config conf/pipeline.yaml] \
        [--data ../shared/data/crawl-sample] [--work /tmp/s3-roundtrip]

Starts a moto S3 server on 127.0.0.1 (tests/s3server.py), puts its endpoint and test keys in the
environment the standard AWS way (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID=testing,
AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION=us-east-1), uploads the WARCs to
s3://crawl/crawl-sample/ and runs, each a `refinery run` process of its own:

    refinery run CONFIG --input 's3://crawl/crawl-sample/*.warc.gz' --out s3://runs/r1
    refinery run CONFIG --input 'DATA/*.warc.gz' --out WORK/local
    refinery run CONFIG --input 's3://crawl/crawl-sample/*.warc.gz' --out s3://runs/r1   (rerun)
    refinery stats s3://runs/r1

then prints whether the kept document ids of deduped/ and the shards' sha256 checksums are the
same, which stages the rerun skipped, and whether the secret key appears in any object of the run
or in the logs. Exits 1 if any of these fails.
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import fsspec
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # the moto fixture the tests use

from s3server import moto_server, upload  # noqa: E402

from jobs.run import CURATION  # noqa: E402

BIN = Path(sys.executable).parent / "refinery"
REMOTE_INPUT = "s3://crawl/crawl-sample/*.warc.gz"
RUN = "s3://runs/r1"


def refinery(*args: str) -> str:
    """Run `refinery ARGS` in a process of its own; its stdout and stderr (exit 1 on failure)."""
    result = subprocess.run([str(BIN), *args], capture_output=True, text=True, cwd=REPO, env=dict(os.environ))
    log = result.stdout + result.stderr
    if result.returncode != 0:
        sys.exit(f"refinery {' '.join(args)} exited {result.returncode}:\n{log[-3000:]}")
    return log


def kept_ids(run: str) -> list[str]:
    fs, path = fsspec.core.url_to_fs(f"{run}/deduped/kept")
    fs.invalidate_cache()
    ids: list[str] = []
    for part in sorted(fs.glob(f"{path}/*.parquet")):
        with fs.open(part, "rb") as f:
            ids += pq.read_table(f, columns=["id"]).column("id").to_pylist()
    return sorted(ids)


def shard_checksums(run: str) -> list[tuple[str, str, str]]:
    with fsspec.open(f"{run}/shards/manifest.json", "rb") as f:
        splits = json.load(f)["splits"]
    return [(e["name"], e["bin_sha256"], e["idx_sha256"]) for s in sorted(splits) for e in splits[s]]


def secret_in_run(run: str, secret: bytes) -> list[str]:
    fs, path = fsspec.core.url_to_fs(run)
    fs.invalidate_cache()
    return [p for p in fs.find(path) if secret in fs.cat_file(p)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=str(REPO / "conf" / "pipeline.yaml"))
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "crawl-sample"))
    parser.add_argument("--work", default="/tmp/s3-roundtrip")
    args = parser.parse_args()
    local = str(Path(args.work) / "local")
    with moto_server() as server:
        os.environ.update(server.env)
        upload(sorted(Path(args.data).glob("*.warc.gz")), "s3://crawl/crawl-sample/")
        fsspec.filesystem("s3").mkdir("runs")
        logs = [refinery("run", args.config, "--input", REMOTE_INPUT, "--out", RUN)]
        on_disk = f"{args.data}/*.warc.gz"
        logs.append(refinery("run", args.config, "--input", on_disk, "--out", local, "--force"))
        logs.append(refinery("run", args.config, "--input", REMOTE_INPUT, "--out", RUN))
        logs.append(refinery("stats", RUN))
        ids, local_ids = kept_ids(RUN), kept_ids(local)
        sums, local_sums = shard_checksums(RUN), shard_checksums(local)
        skipped = [s for s in CURATION if f"{s}: up to date, skipped" in logs[2]]
        leaked = secret_in_run(RUN, server.secret.encode())
        leaked += [f"log {i}" for i, log in enumerate(logs) if server.secret in log]
    checks = {
        f"deduped/kept ids: {len(ids)} in the bucket, {len(local_ids)} local": bool(ids) and ids == local_ids,
        f"shards: {len(sums)} shards, sha256 of .bin and .idx equal": bool(sums) and sums == local_sums,
        f"rerun skipped {len(skipped)} of {len(CURATION)} stages": skipped == list(CURATION),
        f"secret key in {len(leaked)} objects or logs": not leaked,
        "refinery stats s3://runs/r1 printed the funnel": "Funnel" in logs[3],
    }
    for text, ok in checks.items():
        print(("ok    " if ok else "FAIL  ") + text)
    sys.exit(0 if all(checks.values()) else 1)


if __name__ == "__main__":
    main()

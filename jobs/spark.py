"""The SparkSession for a run: embedded local[*] by default, any master URL unchanged.

Locally the driver and the block manager bind to 127.0.0.1 and the UI is off: nothing listens
on a public interface. Python workers run the driver's own interpreter (PYSPARK_PYTHON), so
they see the same installed packages. Under spark-submit the session already exists and
`getOrCreate` returns it with the cluster's settings; `--master` given to spark-submit wins over the
config's default. Under `refinery --quiet` the driver JVM is started here rather than by the
builder, its stderr piped through `forward_lines` to leave out the JVM's start-up warning.
"""

import os
import posixpath
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq
from py4j.java_gateway import JavaGateway
from pyspark import SparkConf, SparkContext
from pyspark.java_gateway import launch_gateway
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema

from corpus.fs import copy_file, is_remote, open_input
from corpus.manifest import file_sha256

# spark-submit starts the Python driver with the address of its JVM in this variable.
SUBMITTED_ENV = "PYSPARK_GATEWAY_PORT"

# Groups (an exact hash, a URL, a paragraph) of more rows than this are joined to their members by
# broadcast, not by a shuffle on the key that would send them all to one task (`join_groups`): at
# most rows / LARGE_GROUP groups are broadcast, ~100 bytes each (10 MB at a billion documents).
LARGE_GROUP = 10_000

# Where the driver keeps the copies it ships (`ship`), named by their content.
SHIPPED_DIR = Path(tempfile.gettempdir()) / "refinery-shipped"

# Rows per Arrow batch that `read_parquet` hands Spark from a file in object storage.
READ_BATCH_ROWS = 1024

# Driver logging under `refinery --quiet`: warnings only, without Spark's start-up banner.
QUIET_LOG4J = Path(__file__).with_name("log4j2-quiet.properties")

# What `refinery --quiet` drops from the driver JVM's stderr, whole lines, beyond what QUIET_LOG4J
# keeps from being logged: Spark's launcher adds --add-modules=jdk.incubator.vector to every JVM it
# starts (JavaModuleOptions in the spark-launcher jar), the JVM then warns that an incubator module
# is in use, and no JVM option turns that off (-XX:-PrintWarnings and -Xlog:disable on OpenJDK 17).
JVM_BANNER = frozenset({b"WARNING: Using incubator modules: jdk.incubator.vector"})

if TYPE_CHECKING:
    from jobs.config import SparkConfig


def spark_session(cfg: "SparkConfig", master: str | None = None, app_name: str = "refinery") -> SparkSession:
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    settings = {"spark.app.name": app_name, "spark.sql.session.timeZone": "UTC"}
    # Under spark-submit its --master (or the cluster's default) is already set on the JVM; the
    # config's default must not override it. An explicit --master of ours still does.
    if master is not None or SUBMITTED_ENV not in os.environ:
        master = master or cfg.master
        settings["spark.master"] = master
        if master.startswith("local"):
            os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
            settings["spark.driver.host"] = settings["spark.driver.bindAddress"] = "127.0.0.1"
            settings["spark.ui.enabled"] = "false"
            settings["spark.driver.memory"] = cfg.driver_memory
    quiet = bool(os.environ.get("REFINERY_QUIET"))
    # Spark's console progress bar redraws itself with carriage returns: in a log file (stderr not a
    # terminal) it becomes one line per stage thousands of characters long. `refinery --quiet`: none.
    if quiet or not sys.stderr.isatty():
        settings["spark.ui.showConsoleProgress"] = "false"
    if quiet:
        # The driver JVM reads it at start-up (a session already running keeps its logging).
        settings["spark.driver.extraJavaOptions"] = f"-Dlog4j.configurationFile={QUIET_LOG4J}"
    settings.update(cfg.conf)
    conf = SparkConf().setAll(settings.items())
    # The driver JVM starts with the first SparkContext of the process and serves every later one
    # (`SparkContext._gateway`); under spark-submit it is spark-submit's, its stderr not ours.
    if quiet and SparkContext._gateway is None and SUBMITTED_ENV not in os.environ:
        SparkContext(conf=conf, gateway=_quiet_gateway(conf))
    spark = SparkSession.builder.config(conf=conf).getOrCreate()  # the context just started, if any
    spark.sparkContext.setLogLevel("WARN")
    return spark


def _quiet_gateway(conf: SparkConf) -> JavaGateway:
    """A new driver JVM with `conf` whose stderr reaches ours through `forward_lines`, less
    `JVM_BANNER`. The pipe is drained by a daemon thread for the JVM's whole life: everything else
    the JVM prints (its errors, the Python workers' stderr it relays) still comes through."""
    gateway = launch_gateway(conf, popen_kwargs={"stderr": subprocess.PIPE})
    stderr = open(2, "wb", closefd=False)  # fd 2: where the JVM would have written, had it inherited ours
    args = (gateway.proc.stderr, stderr, JVM_BANNER)
    threading.Thread(target=forward_lines, args=args, name="jvm-stderr", daemon=True).start()
    return gateway


def forward_lines(source: BinaryIO, sink: BinaryIO, drop: frozenset[bytes]) -> None:
    """Copy `source` to `sink` line by line until `source` ends, leaving out the lines in `drop`
    (compared without their line ending). A sink that fails (a closed terminal) does not end the
    copy: the writer would block on a full pipe, so its lines are read and discarded instead."""
    for line in source:
        if line.rstrip(b"\r\n") in drop:
            continue
        try:
            sink.write(line)
            sink.flush()
        except (OSError, ValueError):  # ValueError: the sink was closed
            pass


def spark_uri(path: str | Path) -> str:
    """A run-directory path as a `file://` URI for Spark's readers and writers. Our stages write
    with Python file I/O, so RUN is a POSIX path every executor sees; a bare path would resolve
    against the cluster's default file system instead (HDFS under YARN)."""
    return Path(path).resolve().as_uri()


def ship(spark: SparkSession, path: str | Path, kind: str) -> str:
    """`addFile` a copy of `path` named `KIND-SHA256[:16]SUFFIX`; return that name for `SparkFiles.get`.

    Spark serves added files by base name, refuses a second file of one name from another path,
    and ignores a second `addFile` of a path ("overwriting is not supported"): two runs'
    `model.ftz`, or a file rewritten in place, would collide or go stale on the executors, so
    the copy is named by its content. The copies sit in a shared temporary directory where
    another process may have left one truncated or altered, so an existing copy is used only
    after its content is hashed again; otherwise it is copied anew.
    """
    digest = file_sha256(path)
    name = f"{kind}-{digest[:16]}{posixpath.splitext(str(path))[1]}"
    shipped = SHIPPED_DIR / name
    if not shipped.is_file() or file_sha256(shipped) != digest:
        SHIPPED_DIR.mkdir(parents=True, exist_ok=True)
        copy_file(path, shipped)  # from any filesystem: a model in the run's bucket, a given one
    # a second addFile of the path is ignored with a warning a --quiet run would print
    if not any(posixpath.basename(added) == name for added in spark.sparkContext.listFiles):
        spark.sparkContext.addFile(str(shipped))
    return name


def read_parquet(spark: SparkSession, paths: list[str], columns: list[str]) -> DataFrame:
    """`columns` of the Parquet files `paths` (at least one). Local files go to Spark's own reader;
    files in object storage are read by the executors through corpus/fs.py, one task per file with
    pyarrow, since Spark's reader would need Hadoop's s3a connector for them."""
    assert paths, "read_parquet needs at least one file"
    if not any(is_remote(p) for p in paths):
        return spark.read.parquet(*map(spark_uri, paths)).select(*columns)
    with open_input(paths[0]) as f:
        schema = pq.ParquetFile(f).schema_arrow
    spark_schema = from_arrow_schema(pa.schema([schema.field(c) for c in columns]))

    def read(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            for index in batch.column(0).to_pylist():
                with open_input(paths[index]) as f:
                    yield from pq.ParquetFile(f).iter_batches(READ_BATCH_ROWS, columns=columns)

    return spark.range(len(paths), numPartitions=len(paths)).mapInArrow(read, spark_schema)


def join_groups(members: DataFrame, groups: DataFrame, limit: int, key: str = "exact_hash") -> DataFrame:
    """`members` (node, `key`, ...) with the columns of their group in `groups` (one row per `key`
    value, with its `size`), without sending a group's members to one task: groups of more than
    `limit` documents (at most rows / limit of them) are broadcast and joined where the members
    are; the members of the others are shuffled by `key`, at most `limit` a group."""
    large = F.broadcast(groups.where(F.col("size") > limit).drop("size"))
    small = groups.where(F.col("size") <= limit).drop("size")
    rest = members.join(large.select(key), key, "left_anti")
    return members.join(large, key).unionByName(rest.join(small, key))

"""jobs/spark.py `ship`: the one way a stage sends a file (a quality model, a tokenizer) to executors."""

from pyspark import SparkFiles

from corpus.manifest import file_sha256
from jobs import spark as spark_module
from jobs.spark import ship


def _read_on_executor(spark, name: str) -> str:
    read = spark.sparkContext.parallelize([0], 1).map(lambda _: open(SparkFiles.get(name)).read())
    return read.collect()[0]


def test_shipped_file_is_named_by_its_content_and_read_by_executors(spark, tmp_path, monkeypatch):
    monkeypatch.setattr(spark_module, "SHIPPED_DIR", tmp_path / "shipped")
    model = tmp_path / "model.ftz"
    model.write_text("test_ship: named by content\n")
    name = ship(spark, model, "quality")
    assert name == f"quality-{file_sha256(model)[:16]}.ftz"
    assert _read_on_executor(spark, name) == "test_ship: named by content\n"


def test_an_altered_copy_left_in_the_shared_directory_is_replaced(spark, tmp_path, monkeypatch):
    monkeypatch.setattr(spark_module, "SHIPPED_DIR", tmp_path / "shipped")
    tokenizer = tmp_path / "tokenizer.json"
    tokenizer.write_text('{"test_ship": "altered copy"}')
    name = ship(spark, tokenizer, "tokenizer")
    (tmp_path / "shipped" / name).write_text('{"truncat')  # another process's torn or altered copy
    assert ship(spark, tokenizer, "tokenizer") == name
    assert file_sha256(tmp_path / "shipped" / name) == file_sha256(tokenizer)

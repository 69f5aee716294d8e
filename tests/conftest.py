import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# CI clones the repo with shared/ beside it; REFINERY_SHARED_DATA points elsewhere.
SHARED_DATA = Path(os.environ.get("REFINERY_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA} (set REFINERY_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def spark():
    from jobs.config import SparkConfig
    from jobs.spark import spark_session

    session = spark_session(SparkConfig(master="local[2]", driver_memory="2g"))
    yield session
    session.stop()


@pytest.fixture(scope="session")
def text_shards(tmp_path_factory) -> Path:
    """RUN/shards (and RUN/tokenizer) from the bundled text: a 512-token BPE, ~92k train tokens."""
    from training.testing import SAMPLE_TEXT, make_text_run

    return make_text_run(SAMPLE_TEXT.read_text(), tmp_path_factory.mktemp("text_run"), vocab_size=512)


@pytest.fixture(scope="session")
def tiny_checkpoint(text_shards, tmp_path_factory) -> Path:
    """A checkpoint of conf/train/tiny.yaml trained 100 steps on `text_shards` (a few seconds)."""
    from training.checkpoint import latest_checkpoint
    from training.config import load_pretrain_config
    from training.pretrain import pretrain

    cfg = load_pretrain_config(REPO / "conf" / "train" / "tiny.yaml").model_copy(
        update={"steps": 100, "eval_every": 0, "save_every": 0}
    )
    out = tmp_path_factory.mktemp("tiny_pretrain")
    pretrain(cfg, text_shards, out, quiet=True)
    return latest_checkpoint(out)


@pytest.fixture(scope="module")
def s3_server():
    """A moto S3 server (tests/s3server.py) whose endpoint and keys are in this process's environment
    for the module's tests; a subprocess started with `os.environ` inherits them."""
    from s3server import clear_s3_clients, moto_server

    with moto_server() as server, pytest.MonkeyPatch.context() as patch:
        for key, value in server.env.items():
            patch.setenv(key, value)
        clear_s3_clients()
        yield server
    clear_s3_clients()

import pytest
from mixdata import config, synthetic_docs, write_annotated

from corpus.manifest import read_json
from corpus.tokenizer import RESERVED_TOKENS, file_hash, load

pytestmark = pytest.mark.spark
TEXTS = [
    "Write to <EMAIL> or call <PHONE> before 10:30.",
    "Grüße aus Köln: 1234567 boats, ünïcödé 🚀\n\ttabs",
    "the river runs to the sea",
]


@pytest.fixture(scope="module")
def run_dir(spark, tmp_path_factory):
    from jobs import mixed, tokenizer

    run = tmp_path_factory.mktemp("tok")
    write_annotated(run, synthetic_docs(200))
    cfg = config(tokenizer={"vocab_size": 500})
    mixed.main(spark, cfg, str(run))
    tokenizer.main(spark, cfg, str(run))
    return run


def test_manifest_records_the_file_hash_vocabulary_and_sample(run_dir):
    manifest = read_json(run_dir / "tokenizer" / "manifest.json")
    tok = load(run_dir / "tokenizer" / "tokenizer.json")
    assert manifest["sha256"] == file_hash(run_dir / "tokenizer" / "tokenizer.json")
    assert manifest["vocab_size"] == tok.get_vocab_size() <= 500
    assert manifest["eot_id"] == 0 and manifest["special_tokens"]["<EMAIL>"] == tok.token_to_id("<EMAIL>")
    assert manifest["sample"]["documents"] == 200 and manifest["sample"]["probability"] == 1.0


def test_hf_transformers_loads_it_and_encodes_identically(run_dir):
    from transformers import PreTrainedTokenizerFast

    path = run_dir / "tokenizer" / "tokenizer.json"
    hf = PreTrainedTokenizerFast(tokenizer_file=str(path))
    tok = load(path)
    for text in TEXTS:
        assert hf.encode(text, add_special_tokens=False) == tok.encode(text).ids
        assert hf.decode(hf.encode(text, add_special_tokens=False)) == text
    assert hf.convert_tokens_to_ids(list(RESERVED_TOKENS)) == list(range(8))


def test_rerun_is_skipped(spark, run_dir):
    from jobs import tokenizer

    path = run_dir / "tokenizer" / "tokenizer.json"
    before = path.stat().st_mtime_ns
    tokenizer.main(spark, config(tokenizer={"vocab_size": 500}), str(run_dir))
    assert path.stat().st_mtime_ns == before


def test_sample_is_deterministic_and_weighted_by_repeats(spark, tmp_path):
    from jobs import mixed, tokenizer

    write_annotated(tmp_path, synthetic_docs(300))
    # books copies are 3x, so at p = 0.2 they are drawn with probability 0.6, the others 0.2
    cfg = config(mixed={"repeats": {"books": 3}}, tokenizer={"vocab_size": 400, "sample_bytes": 1})
    mixed_manifest = mixed.main(spark, cfg, str(tmp_path))
    mixed_bytes = sum(b["bytes_after"] for b in mixed_manifest["buckets"].values())
    sample_bytes = int(mixed_bytes * 0.2)
    cfg = config(mixed={"repeats": {"books": 3}}, tokenizer={"vocab_size": 400, "sample_bytes": sample_bytes})
    first = tokenizer.main(spark, cfg, str(tmp_path))
    assert first["sample"]["probability"] == pytest.approx(0.2, rel=1e-3)
    assert 0.6 * sample_bytes < first["sample"]["bytes"] < 1.4 * sample_bytes
    (tmp_path / "tokenizer" / "manifest.json").unlink()
    second = tokenizer.main(spark, cfg, str(tmp_path))
    assert second["sha256"] == first["sha256"] and second["sample"] == first["sample"]


def test_cli_trains_with_a_vocabulary_override(spark, run_dir, tmp_path, capsys):
    import shutil

    from jobs.cli import main

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    (tmp_path / "c.yaml").write_text("tokenizer:\n  vocab_size: 500\n")
    assert (
        main(["tokenizer", "train", str(run), "--config", str(tmp_path / "c.yaml"), "--vocab-size", "300"])
        == 0
    )
    assert read_json(run / "tokenizer" / "manifest.json")["vocab_size_requested"] == 300
    assert "tokenizer: 300 tokens" in capsys.readouterr().out
    assert main(["tokenizer", "train", str(run), "--vocab-size", "10"]) == 2  # below 256 + special tokens

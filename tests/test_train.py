import io
import json
import logging
import re
import sys

import numpy as np
import pytest

from corpus.shards import open_split
from training import loop
from training.checkpoint import latest_checkpoint, read_meta
from training.config import load_pretrain_config
from training.pretrain import pretrain

TINY = "conf/train/tiny.yaml"
# "Well below": a unigram model cannot beat its entropy; a bigram-level model beats it by ~1 nat here.
MARGIN_NATS = 0.7


def tiny(**changes):
    return load_pretrain_config(TINY).model_copy(update=changes)


def unigram_entropy(shards) -> float:
    tokens = np.concatenate([r.tokens for r in open_split(shards, "train")])
    p = np.bincount(tokens) / tokens.size
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


@pytest.fixture(scope="module")
def trained(text_shards, tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrain")
    return out, pretrain(tiny(steps=150, eval_every=75, save_every=50), text_shards, out, quiet=True)


def test_validation_loss_falls_well_below_the_unigram_entropy(trained, text_shards):
    out, result = trained
    entropy = unigram_entropy(text_shards)
    first = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert first["step"] == 0 and first["val_loss"] > entropy  # it starts above (≈ ln 512)
    assert result["val_loss"] < entropy - MARGIN_NATS, (result["val_loss"], entropy)


def test_bits_per_byte_is_consistent_with_the_loss(trained):
    _, result = trained
    # ~2 bytes per token at a 512 vocabulary: bpb ≈ loss / (ln 2 · 2); a loose bracket catches unit slips
    assert 0.3 < result["val_bpb"] / (result["val_loss"] / np.log(2)) < 0.7


def test_run_writes_metrics_plot_and_the_newest_checkpoints(trained):
    out, result = trained
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "val_loss" in r] == [0, 75, 150]
    assert all(r["tok_per_s"] > 0 and r["lr"] > 0 for r in records if "loss" in r)
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    steps = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert steps == ["step_000100", "step_000150"]  # keep_checkpoints: 2
    meta = read_meta(latest_checkpoint(out))
    assert meta["step"] == 150 and meta["tokens"] == 150 * 16 * 64
    assert meta["config"]["model"]["vocab_size"] == 512 and meta["val_loss"] == result["val_loss"]
    assert {p.name for p in latest_checkpoint(out).iterdir()} == {
        "model.pt",
        "optim.pt",
        "rng_0.pt",
        "tokenizer.json",
        "meta.json",
    }


def test_wrong_tokenizer_is_refused(text_shards, tmp_path):
    other = tmp_path / "tokenizer.json"
    other.write_text((text_shards.parent / "tokenizer" / "tokenizer.json").read_text() + " ")
    with pytest.raises(ValueError, match="not the tokenizer"):
        pretrain(tiny(steps=1), text_shards, tmp_path / "out", tokenizer_path=other, quiet=True)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def stderr_of_a_short_run(text_shards, out, monkeypatch, caplog, stderr, quiet=False) -> str:
    """What a 10-step run writes to `stderr`, with the loop's INFO log lines as `refinery` prints them."""
    monkeypatch.setattr(sys, "stderr", stderr)
    caplog.set_level(logging.INFO, logger="training.loop")
    handler = logging.StreamHandler(stderr)  # made before the run, as jobs/cli.py's basicConfig is
    handler.setFormatter(logging.Formatter("%(message)s"))
    logging.getLogger().addHandler(handler)
    try:
        pretrain(tiny(steps=10, log_every=5, eval_every=5, save_every=0), text_shards, out, quiet=quiet)
    finally:
        logging.getLogger().removeHandler(handler)
    return stderr.getvalue()


def screen_lines(text: str) -> list[str]:
    """The lines a terminal would be left showing: colours dropped, each line from its last \\r on."""
    return [line.split("\r")[-1] for line in re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", text).split("\n")]


def test_progress_bar_on_a_terminal_shows_steps_loss_and_speed_with_log_lines_above_it(
    text_shards, tmp_path, monkeypatch, caplog
):
    monkeypatch.delenv("REFINERY_QUIET", raising=False)
    shown = screen_lines(stderr_of_a_short_run(text_shards, tmp_path, monkeypatch, caplog, Terminal()))
    assert re.fullmatch(r"━+ 10/10 loss \d+\.\d{4}  [\d,]+ tok/s 0:00:00", shown[-2].strip()), shown[-2]
    # each validation line whole, on a line of its own (not written through the bar)
    val_lines = [line for line in shown if "val loss" in line]
    assert [line.split(":")[0] for line in val_lines] == ["step 0", "step 5", "step 10"]
    assert all(re.fullmatch(r"step \d+: val loss \d+\.\d{4}, val bpb \d+\.\d{4}", line) for line in val_lines)


@pytest.mark.parametrize(
    "terminal, quiet_env, quiet",
    [(False, None, False), (True, "1", False), (True, None, True)],
    ids=["redirected", "REFINERY_QUIET", "quiet"],
)
def test_no_progress_bar_in_a_redirected_log_or_when_quiet(
    text_shards, tmp_path, monkeypatch, caplog, terminal, quiet_env, quiet
):
    if quiet_env is None:
        monkeypatch.delenv("REFINERY_QUIET", raising=False)
    else:
        monkeypatch.setenv("REFINERY_QUIET", quiet_env)
    stderr = Terminal() if terminal else io.StringIO()
    text = stderr_of_a_short_run(text_shards, tmp_path, monkeypatch, caplog, stderr, quiet=quiet)
    lines = text.splitlines()
    assert "\r" not in text and "\x1b" not in text
    assert [line.split(":")[0] for line in lines] == ["step 0", "step 5", "step 10"]


def test_a_redirected_log_gets_a_progress_line_with_step_time_left_and_loss(
    text_shards, tmp_path, monkeypatch, caplog
):
    monkeypatch.delenv("REFINERY_QUIET", raising=False)
    monkeypatch.setattr(loop, "EVERY_S", 0.0)  # a line every step rather than every minute
    out = tmp_path / "pretrain"
    lines = stderr_of_a_short_run(text_shards, out, monkeypatch, caplog, io.StringIO()).splitlines()
    beats = [line for line in lines if line.startswith("pretrain: step ")]
    assert [int(re.match(r"pretrain: step (\d+)/10", b)[1]) for b in beats] == list(range(1, 11))
    number = r"\d+ s|\d+ min \d\d s"
    assert all(
        re.fullmatch(rf"pretrain: step \d+/10, ({number}), about ({number}) left, loss (nan|\d+\.\d{{4}})", b)
        for b in beats
    ), beats
    assert "loss nan" not in beats[-1]  # the last logged train loss, once a log step passed

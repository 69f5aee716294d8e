"""Continued pretraining (training/continued.py): --init, the anneal, context extension."""

import json

import pytest
import torch
import yaml

from corpus.shards import open_split
from training.checkpoint import latest_checkpoint, load_model, read_meta
from training.config import OptimConfig, PretrainConfig, load_pretrain_config
from training.data import AnnealedWindows, PackedWindows
from training.loop import anneal_start, lr_multiplier
from training.pretrain import pretrain
from training.testing import SAMPLE_TEXT, make_text_run

TINY = "conf/train/tiny.yaml"
MAX_ABS_DIFF = 1e-4  # tests/test_export.py's bound for exported logits


def continued(init, **changes) -> PretrainConfig:
    """conf/train/tiny.yaml's loop and optimizer settings without its `model` (a continued run takes
    the checkpoint's), continued from `init`."""
    options = yaml.safe_load(open(TINY))
    options.pop("model")
    options.update({"eval_every": 0, "save_every": 0, "init": str(init)})
    return PretrainConfig.model_validate({**options, **changes})


def test_init_starts_from_the_checkpoint_weights_with_a_fresh_optimizer(
    tiny_checkpoint, text_shards, tmp_path
):
    out = tmp_path / "continued"
    pretrain(continued(tiny_checkpoint, steps=2), text_shards, out, quiet=True)
    first = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    # Step 0 validates the checkpoint's own model: the loss its last evaluation recorded.
    assert first["step"] == 0 and first["val_loss"] == pytest.approx(read_meta(tiny_checkpoint)["val_loss"])
    ckpt = latest_checkpoint(out)
    meta = read_meta(ckpt)
    assert meta["step"] == 2 and meta["config"]["init"] == str(tiny_checkpoint)
    optim = torch.load(ckpt / "optim.pt", weights_only=True)
    assert {float(s["step"]) for s in optim["state"].values()} == {2.0}  # Adam counted from zero


def test_init_weights_are_the_checkpoints(tiny_checkpoint, text_shards, tmp_path):
    from training.continued import continued_model, resolve_init

    manifest = json.loads((text_shards / "manifest.json").read_text())
    cfg = resolve_init(continued(tiny_checkpoint), tiny_checkpoint, manifest["tokenizer"]["sha256"])
    model, source = continued_model(cfg), load_model(tiny_checkpoint)
    for (name, a), (_, b) in zip(model.state_dict().items(), source.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_a_continued_run_sets_no_model_and_extend_needs_init(tiny_checkpoint, text_shards, tmp_path):
    with_model = load_pretrain_config(TINY, {"init": str(tiny_checkpoint)})  # as `--init` sets it
    with pytest.raises(ValueError, match="remove `model:`"):
        pretrain(with_model, text_shards, tmp_path / "a", quiet=True)
    extending = tmp_path / "extend.yaml"
    extending.write_text("extend:\n  context_length: 128\n")
    with pytest.raises(ValueError, match="extend .*needs init"):
        load_pretrain_config(extending)
    assert load_pretrain_config(extending, {"init": "CKPT"}).extend.context_length == 128
    with pytest.raises(ValueError, match="anneal_shards needs optim.anneal_frac"):
        PretrainConfig.model_validate({"anneal_shards": str(text_shards)})


def test_a_checkpoint_of_another_tokenizer_is_refused(tiny_checkpoint, tmp_path):
    other = make_text_run(SAMPLE_TEXT.read_text()[:60_000], tmp_path / "other", vocab_size=300)
    with pytest.raises(ValueError, match="another tokenizer"):
        pretrain(continued(tiny_checkpoint, steps=1), other, tmp_path / "out", quiet=True)


@pytest.mark.parametrize("schedule", ["cosine", "wsd"])
def test_the_anneal_decays_linearly_to_zero_from_the_schedules_value(schedule):
    plain = OptimConfig(warmup_steps=10, schedule=schedule, min_lr_ratio=0.1)
    annealed = plain.model_copy(update={"anneal_frac": 0.2})
    before = [lr_multiplier(s, 100, plain) for s in range(100)]
    after = [lr_multiplier(s, 100, annealed) for s in range(100)]
    assert anneal_start(100, annealed) == 80 and anneal_start(100, plain) == 100
    assert after[:80] == before[:80]
    assert after[80] == pytest.approx(before[80])  # continuous where it starts
    steps = [b - a for a, b in zip(after[80:], after[81:], strict=False)]
    assert steps == pytest.approx([-before[80] / 20] * 19)  # one straight line down
    assert after[-1] == pytest.approx(before[80] / 20)  # reaching 0 one step past the end


def test_annealed_windows_switch_at_the_anneals_first_step_and_resume_exactly(text_shards):
    readers = open_split(text_shards, "train")

    def batches(source, n):
        return [source.next_batch(8)[0] for _ in range(n)]

    main, anneal = PackedWindows(readers, 64, seed=0), PackedWindows(readers, 64, seed=1)
    expected = batches(PackedWindows(readers, 64, seed=0), 2) + batches(PackedWindows(readers, 64, seed=1), 3)
    mixed = AnnealedWindows(main, anneal, switch_rows=16)
    got = batches(mixed, 3)
    state = mixed.state_dict()
    resumed = AnnealedWindows(PackedWindows(readers, 64, seed=0), PackedWindows(readers, 64, seed=1), 16)
    resumed.load_state_dict(state)
    got += batches(resumed, 2)
    assert all(torch.equal(a, b) for a, b in zip(got, expected, strict=True))
    with pytest.raises(ValueError, match="anneal at row"):
        AnnealedWindows(main, anneal, switch_rows=8).load_state_dict(state)


def test_an_annealed_run_trains_on_the_anneal_shards_at_its_end(tiny_checkpoint, text_shards, tmp_path):
    cfg = continued(tiny_checkpoint, steps=4, anneal_shards=str(text_shards), optim={"anneal_frac": 0.5})
    out = tmp_path / "annealed"
    pretrain(cfg, text_shards, out, quiet=True)
    data = read_meta(latest_checkpoint(out))["data"]
    assert data["switch_rows"] == 2 * 16 and data["rows"] == 4 * 16
    assert data["anneal"]["cursor"] == 2 * 16  # the last two steps' rows came from the anneal shards


def test_a_context_extended_model_exports_to_hf_with_the_same_logits(tiny_checkpoint, text_shards, tmp_path):
    transformers = pytest.importorskip("transformers")
    from training.export import export_hf

    cfg = continued(tiny_checkpoint, steps=2, extend={"context_length": 128, "rope_theta": 40000.0})
    pretrain(cfg, text_shards, tmp_path / "long", quiet=True)
    ckpt = latest_checkpoint(tmp_path / "long")
    ours = load_model(ckpt)
    assert ours.cfg.context_length == 128 and ours.cfg.rope_theta == 40000.0
    out = export_hf(ckpt, tmp_path / "hf")
    hf = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    idx = torch.randint(0, ours.cfg.vocab_size, (2, 128), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert (hf(idx).logits - ours(idx)).abs().max().item() <= MAX_ABS_DIFF

"""corpus/yaml_config.py `differences`: the one config comparison, and its two readings (a run
directory holding another run, a checkpoint resumed with another config)."""

from corpus.yaml_config import MISSING, differences


def test_differences_pair_nested_keys_and_mark_the_side_without_the_key():
    old = {"seed": 0, "mixed": {"max_repeats": 4, "buckets": ["a"]}, "gone": 1}
    new = {"seed": 0, "mixed": {"max_repeats": 5, "buckets": ["a"], "added": True}}
    assert list(differences(old, new)) == [
        ("gone", 1, MISSING),
        ("mixed.added", MISSING, True),
        ("mixed.max_repeats", 4, 5),
    ]


def test_equal_configs_have_no_differences():
    cfg = {"a": {"b": [1, 2], "c": None}}
    assert list(differences(cfg, {"a": {"b": [1, 2], "c": None}})) == []


def test_a_checkpoint_config_change_names_the_option_and_both_values():
    from training.config import PretrainConfig
    from training.loop import _config_changes

    cfg = PretrainConfig()
    saved = cfg.model_dump(mode="json")
    saved["optim"] = {**saved["optim"], "lr": saved["optim"]["lr"] * 2}
    saved["log_every"] += 1  # how the run is watched: resumable
    assert _config_changes(saved, cfg) == [f"optim.lr: {saved['optim']['lr']!r} -> {cfg.optim.lr!r}"]


def test_an_option_newer_than_the_checkpoint_is_a_change_only_off_its_default():
    from training.config import PretrainConfig
    from training.loop import _config_changes

    cfg = PretrainConfig()
    saved = cfg.model_dump(mode="json")
    del saved["optim"]["warmup_steps"]
    assert _config_changes(saved, cfg) == []
    changed = cfg.model_copy(update={"optim": cfg.optim.model_copy(update={"warmup_steps": 7})})
    assert _config_changes(saved, changed) == ["optim.warmup_steps: None -> 7"]

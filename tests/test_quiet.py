"""`refinery --quiet`: one flag before the subcommand for CI and batch runs."""

import os

from jobs import cli


def test_quiet_before_the_subcommand_sets_the_environment_the_stages_read(monkeypatch, tmp_path):
    monkeypatch.setenv("REFINERY_QUIET", "")  # restored after the test, whatever main sets
    seen = {}
    monkeypatch.setattr(cli, "_stats", lambda args: seen.update(quiet=os.environ.get("REFINERY_QUIET")))
    assert cli.main(["--quiet", "stats", str(tmp_path)]) == 0
    assert seen == {"quiet": "1"}


def test_without_quiet_the_environment_is_left_alone(monkeypatch, tmp_path):
    monkeypatch.setenv("REFINERY_QUIET", "")  # restored after the test, whatever main sets
    monkeypatch.setattr(cli, "_stats", lambda args: None)
    assert cli.main(["stats", str(tmp_path)]) == 0
    assert os.environ["REFINERY_QUIET"] == ""


def test_a_subcommands_own_quiet_flag_does_not_clash_with_the_global_one(monkeypatch):
    monkeypatch.setenv("REFINERY_QUIET", "")  # restored after the test, whatever main sets
    captured = {}
    monkeypatch.setattr("training.cli._pretrain", lambda args: captured.update(vars(args)))
    argv = ["--quiet", "train", "pretrain", "--config", "c.yaml", "--shards", "s", "--out", "o"]
    assert cli.main(argv) == 0
    assert captured["quiet_all"] is True and captured["quiet"] is False

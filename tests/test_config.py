import pytest
import yaml

from jobs.config import DEFAULT_CONFIG, PipelineConfig, load_config


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_shipped_config_lists_every_option_with_the_code_defaults():
    """conf/pipeline.yaml is the documentation of every option: it must match the code."""
    shipped = yaml.safe_load(DEFAULT_CONFIG.read_text())
    defaults = PipelineConfig().model_dump(mode="json")
    loaded = load_config(DEFAULT_CONFIG).model_dump(mode="json")

    def keys(d, prefix=""):
        return {prefix + k for k in d} | {
            x
            for k, v in d.items()
            if isinstance(v, dict) and k not in ("conf", "min_scores")
            for x in keys(v, prefix + k + ".")
        }

    assert keys(shipped) == keys(defaults)
    assert loaded == defaults


def test_unknown_key_is_an_error_naming_key_and_file(tmp_path):
    path = write(tmp_path, "annotated:\n  gopher_quality:\n    min_wrds: 10\n")
    with pytest.raises(ValueError, match=r"c\.yaml.*\n.*annotated\.gopher_quality\.min_wrds: unknown key"):
        load_config(path)


def test_wrong_type_is_an_error_naming_key(tmp_path):
    with pytest.raises(ValueError, match=r"documents\.timeout_s"):
        load_config(write(tmp_path, "documents:\n  timeout_s: soon\n"))


def test_missing_config_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_config(tmp_path / "nope.yaml")


def test_threshold_override_reaches_the_model(tmp_path):
    cfg = load_config(
        write(tmp_path, "annotated:\n  language:\n    languages: [en, de]\n    min_score: 0.5\n")
    )
    assert cfg.annotated.language.languages == ("en", "de") and cfg.annotated.language.min_score == 0.5


def test_list_files_are_relative_to_the_config_file(tmp_path):
    (tmp_path / "mine.txt").write_text("example.org\n")
    cfg = load_config(write(tmp_path, "annotated:\n  url:\n    blocklist_files: [mine.txt]\n"))
    assert cfg.annotated.url.blocklist_files == (str(tmp_path / "mine.txt"),)


def test_full_config_enables_every_training_stage_and_its_configs_load():
    """conf/full.yaml is the one-command run: each training config it names must validate. It
    leaves out the optional stages (`rounds`)."""
    from jobs import train_stages
    from jobs.run import parse_stages

    full = load_config(DEFAULT_CONFIG.with_name("full.yaml"))
    stages = [name for name in train_stages.STAGES if name not in train_stages.OPTIONAL]
    assert parse_stages(None, full)[-len(stages) :] == stages
    for name in stages:
        assert train_stages.load_stage_config(full, name) is not None, name

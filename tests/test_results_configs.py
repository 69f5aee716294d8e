"""Every config a bench/RESULTS.md command names is in the repository and validates (issue 29).

A command is a line of a fenced block (`\\` continuations joined) or an inline code span that
starts with `refinery`. Every `*.yaml` argument must be a file of the repository (paths are
relative to its root, where the commands run); a `refinery` command's config is also loaded with
that command's own validator, so a reconstructed config with a misspelt key or a wrong type fails
here as it would on a rerun. Comments (`# ...`) are prose and are not checked.
"""

import functools
import re
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import training.config
from corpus.yaml_config import load_yaml
from jobs.config import load_config
from training.config import RewardConfig, RoundsConfig, SftConfig, load_pretrain_config

REPO = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.M | re.S)
INLINE = re.compile(r"`(refinery [^`]+)`")
YAML = re.compile(r"[\w./-]+\.ya?ml")
SEPARATORS = {";", "&&", "||", "|", "&"}


def commands(markdown: str) -> list[list[str]]:
    """The argv of every shell command in the fenced blocks and the inline `refinery ...` spans;
    comments dropped, `a && b` and `a; b` two commands."""
    lines = [line for block in FENCE.findall(markdown) for line in block.replace("\\\n", " ").splitlines()]
    lines += [span.replace("\n", " ") for span in INLINE.findall(markdown)]
    found: list[list[str]] = []
    for line in lines:
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        found.append([])
        for token in lexer:
            if token in SEPARATORS:
                found.append([])
            else:
                found[-1].append(token)
    return [argv for argv in found if argv]


def _pipeline(path: Path, argv: list[str]) -> list[Path]:
    """`refinery run CONFIG`: the pipeline config and every training-stage config it names, each
    with its stage's loader (jobs/train_stages.py), the align stage's by `_align`. Returns those
    configs: validated here, they count as named."""
    from jobs.train_stages import STAGES

    cfg = load_config(path)
    validated = []
    for stage, (_, key, load) in STAGES.items():
        named = getattr(cfg.train, key)
        if named is None:
            continue
        if stage == "align":  # its loader imports training/align.py, and so torch
            _align(Path(named), ["--method", cfg.train.align_method])
        else:
            load(cfg, named)
        validated.append(Path(named))
    return validated


def _ablate(path: Path, argv: list[str]) -> None:
    from jobs.ablate import load_ablate_config

    missing = [f for f in load_ablate_config(path).reference_files if not Path(f).is_file()]
    if missing:
        raise FileNotFoundError(f"{path}: reference_files {missing}: no such file")


def _align(path: Path, argv: list[str]) -> None:
    """`--method M` reads training/config.py's `MConfig` (DpoConfig, GrpoConfig, PpoConfig, RsConfig:
    training/align.py CONFIGS, looked up by name here because importing it imports torch)."""
    method = argv[argv.index("--method") + 1] if "--method" in argv else "(none)"
    cls = getattr(training.config, f"{method.capitalize()}Config", None)
    if not (isinstance(cls, type) and issubclass(cls, training.config.AlignConfig)):
        raise ValueError(f"--method {method}: no alignment config of that name in training/config.py")
    load_yaml(path, cls)


def _mixture_fit(path: Path, argv: list[str]) -> None:
    from jobs.mixture import load_mixture_config

    load_mixture_config(path)


def _synth_sft(path: Path, argv: list[str]) -> None:
    from training.synth import SynthSftConfig

    load_yaml(path, SynthSftConfig)


def _synth_preferences(path: Path, argv: list[str]) -> None:
    from training.preferences import SynthPreferencesConfig

    load_yaml(path, SynthPreferencesConfig)


def _synth_factuality(path: Path, argv: list[str]) -> None:
    from training.factuality import FactualityConfig

    load_yaml(path, FactualityConfig)


# `refinery` subcommand -> the validator of the config it reads, as the command loads it (`_pipeline`
# returns the further configs it validated, which count as named)
VALIDATORS: dict[tuple[str, ...], Callable[[Path, list[str]], Any]] = {
    ("run",): _pipeline,
    ("ablate",): _ablate,
    ("mixture", "fit"): _mixture_fit,
    ("dedup-eval",): lambda path, argv: load_config(path),
    ("train", "pretrain"): lambda path, argv: load_pretrain_config(
        path, {"init": argv[argv.index("--init") + 1]} if "--init" in argv else None
    ),
    ("train", "sft"): lambda path, argv: load_yaml(path, SftConfig),
    ("train", "reward"): lambda path, argv: load_yaml(path, RewardConfig),
    ("train", "align"): _align,
    ("train", "rounds"): lambda path, argv: load_yaml(path, RoundsConfig),
    ("synth", "sft"): _synth_sft,
    ("synth", "preferences"): _synth_preferences,
    ("synth", "factuality"): _synth_factuality,
}


def _validator(argv: list[str]) -> Callable[[Path, list[str]], Any] | None:
    return VALIDATORS.get(tuple(argv[1:2])) or VALIDATORS.get(tuple(argv[1:3]))


def config_problems(markdown: str, root: Path) -> tuple[list[str], set[Path]]:
    """One line per config that is missing or does not validate, and the config files named."""
    problems, named = [], set()
    for argv in commands(markdown):
        command = " ".join(argv)
        for value in (a.split("=", 1)[-1] for a in argv):
            if not YAML.fullmatch(value):
                continue
            path = root / value
            if not path.is_file():
                problems.append(f"{value}: no such file in the repository, named by `{command}`")
                continue
            named.add(path.resolve())
            if argv[0] != "refinery":
                continue
            validate = _validator(argv)
            if validate is None:
                problems.append(f"{value}: no validator known for `{' '.join(argv[:3])}`")
                continue
            try:
                further = validate(path, argv)  # the loaders return their config; `_pipeline` a list
                if isinstance(further, list):
                    named.update(p.resolve() for p in further)
            except (ValueError, FileNotFoundError) as exc:
                problems.append(f"{value}: {exc}")
    return problems, named


@functools.cache
def results_problems() -> tuple[list[str], set[Path]]:
    return config_problems((REPO / "bench" / "RESULTS.md").read_text(), REPO)


def test_every_config_results_names_exists_and_validates():
    problems, named = results_problems()
    assert not problems, "\n".join(problems)
    assert len(named) >= 30  # the parser still finds the commands (33 files when written)


def test_every_bench_config_is_named_by_a_results_command():
    _, named = results_problems()
    configs = sorted((REPO / "bench" / "configs").rglob("*.yaml"))
    unnamed = [str(p.relative_to(REPO)) for p in configs if p.resolve() not in named]
    assert not unnamed, f"configs no RESULTS command names (and so nothing validates): {unnamed}"


def test_a_missing_config_is_reported(tmp_path):
    text = "```\nrefinery train sft --config bench/configs/train/gone.yaml --init PRE --out SFT\n```\n"
    problems, _ = config_problems(text, tmp_path)
    assert len(problems) == 1 and "bench/configs/train/gone.yaml: no such file" in problems[0]


def test_a_config_with_an_unknown_key_is_reported(tmp_path):
    (tmp_path / "r.yaml").write_text("steps: 100\nlikelihood_wieght: 10\n")
    text = "Run `refinery train reward --init SFT --data PAIRS\n--config r.yaml` and then ...\n"
    problems, named = config_problems(text, tmp_path)
    assert named == {(tmp_path / "r.yaml").resolve()}
    assert len(problems) == 1 and "likelihood_wieght: unknown key" in problems[0]


def test_an_align_config_is_checked_against_its_method(tmp_path):
    # A valid PPO config is not a valid DPO config: the method picks the validator.
    (tmp_path / "p.yaml").write_text("steps: 60\ncritic_warmup: 2\n")
    ppo, _ = config_problems("```\nrefinery train align --method ppo --config p.yaml\n```\n", tmp_path)
    dpo, _ = config_problems("```\nrefinery train align --method dpo --config p.yaml\n```\n", tmp_path)
    assert ppo == [] and len(dpo) == 1 and "critic_warmup: unknown key" in dpo[0]


def test_the_training_configs_a_pipeline_config_names_are_validated_and_named(tmp_path):
    (tmp_path / "sft.yaml").write_text("steps: 300\n")
    (tmp_path / "rs.yaml").write_text("steps: 60\nrequire_correct: true\n")
    (tmp_path / "full.yaml").write_text(
        "train:\n  sft_config: sft.yaml\n  align_config: rs.yaml\n  align_method: rs\n"
    )
    text = "```\nrefinery run full.yaml --input 'W/*.warc.gz' --out RUN\n```\n"
    problems, named = config_problems(text, tmp_path)
    assert problems == []
    assert named == {(tmp_path / f).resolve() for f in ("full.yaml", "sft.yaml", "rs.yaml")}
    # a bad key in a named training config is the pipeline command's problem
    (tmp_path / "rs.yaml").write_text("steps: 60\nrequire_corect: true\n")
    problems, _ = config_problems(text, tmp_path)
    assert len(problems) == 1 and "require_corect" in problems[0]

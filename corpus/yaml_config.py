"""Config files: YAML read into a frozen pydantic model, and two resolved configs compared.

`load_yaml` is the one loader of the pipeline config (jobs/config.py), the training configs
(training/config.py) and every other YAML in conf/: a syntax error is one line,
`FILE:LINE:COLUMN: invalid YAML: ...`; a bad value or an unknown key names the file and every key
at fault. `differences` is the one comparison of a saved config with the current one, behind
both "--out holds another run" (jobs/preflight.py) and "the config differs from the
checkpoint's" (training/loop.py).
"""

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pydantic
import yaml
from pydantic import BaseModel

from corpus.fs import is_file, is_remote, local_path, open_input


def load_yaml(
    path: str | Path,
    cls: type[BaseModel],
    overrides: dict[str, Any] | None = None,
    transform: Callable[[dict[str, Any], Path], dict[str, Any]] | None = None,
) -> Any:
    """Read YAML with `yaml.safe_load` into `cls`; errors name the file and every bad key.

    `transform(raw, directory_of_the_file)` rewrites the mapping before validation (the pipeline
    config resolves its relative paths with it); `overrides` replace top-level keys after that.
    `path` may be a URI (a synth or training config in a bucket, corpus/fs.py); a file with a
    `transform` is local, since the relative paths it resolves are relative to its folder."""
    path = str(path) if is_remote(path) else Path(local_path(str(path)))
    if not is_file(path):
        raise FileNotFoundError(f"config file not found: {path}")
    with open_input(str(path)) as f:
        try:
            raw = yaml.safe_load(f) or {}
        except yaml.YAMLError as exc:
            raise ValueError(_yaml_problem(path, exc)) from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: the top level must be a mapping, not {type(raw).__name__}")
    if transform is not None:
        assert isinstance(path, Path), f"{path}: a config whose relative paths are resolved must be local"
        raw = transform(raw, path.resolve().parent)
    raw.update(overrides or {})
    try:
        return cls.model_validate(raw)
    except pydantic.ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "(top level)"
            what = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            problems.append(f"  {where}: {what}")
        raise ValueError(f"{path}: invalid config\n" + "\n".join(problems)) from None


def _yaml_problem(path: str | Path, exc: yaml.YAMLError) -> str:
    """`FILE:LINE:COLUMN: invalid YAML: problem (context)` in one line; PyYAML's message spans five."""
    mark = getattr(exc, "problem_mark", None)
    if mark is None:  # an error without a position (an undecodable byte): its message on one line
        return f"{path}: invalid YAML: " + " ".join(str(exc).split())
    context = getattr(exc, "context", None)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}"
    return f"{where}: invalid YAML: {exc.problem}" + (f" ({context})" if context else "")


MISSING = object()  # `differences`: the side of a pair that does not have the key


def differences(
    old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = ""
) -> Iterator[tuple[str, Any, Any]]:
    """`(dotted key, old value, new value)` for every key whose values differ, in key order;
    mappings on both sides are compared key by key, and a key only one side has is paired with
    `MISSING`, so each caller decides what an option added or removed since means."""
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, MISSING), new.get(key, MISSING)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            yield from differences(a, b, f"{prefix}{key}.")
        elif a is MISSING or b is MISSING or a != b:
            yield f"{prefix}{key}", a, b

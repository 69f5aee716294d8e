"""Imports point one way: jobs/ may use training/, classifiers/ and corpus/; training/ and
classifiers/ use corpus/ only; corpus/ uses none of them.

Two checks, because each misses what the other sees: importing every module of a package in a
fresh interpreter with the packages it must not use blocked catches a back arrow at module level
however it is spelled, and scanning the source catches one inside a function, which importing the
module never runs.
"""

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
USES = {
    "corpus": (),
    "classifiers": ("corpus",),
    "training": ("corpus",),
    "jobs": ("corpus", "classifiers", "training"),
}
# jobs/ is the top: nothing is blocked for it, and importing it all would only cost Spark's start.
BELOW_THE_TOP = [p for p in USES if len(USES[p]) < len(USES) - 1]

# Run in a fresh interpreter: a finder ahead of the others refuses the blocked packages, then
# every module of the package is imported (pkgutil.walk_packages imports subpackages too).
IMPORT_ALL = textwrap.dedent(
    """
    import importlib, pkgutil, sys

    package, blocked = sys.argv[1], set(sys.argv[2:])

    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in blocked:
                raise ImportError(f"{package} must not import {name}")

    sys.meta_path.insert(0, Blocker())
    root = importlib.import_module(package)
    for module in pkgutil.walk_packages(root.__path__, package + "."):
        importlib.import_module(module.name)
    """
)


def forbidden(package: str) -> list[str]:
    return [p for p in USES if p != package and p not in USES[package]]


def import_all(root: Path, package: str) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-c", IMPORT_ALL, package, *forbidden(package)]
    return subprocess.run(
        argv, cwd=root, env={**os.environ, "PYTHONPATH": str(root)}, capture_output=True, text=True
    )


def back_arrows(source: str, package: str) -> list[str]:
    """`LINE: module` for every absolute import, at any depth, of a package `package` must not use."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [f"{node.lineno}: {n}" for n in names if n.split(".")[0] in forbidden(package)]
    return found


@pytest.mark.parametrize("package", BELOW_THE_TOP)
def test_package_imports_with_the_packages_above_it_blocked(package):
    done = import_all(REPO, package)
    assert done.returncode == 0, "\n".join(done.stderr.strip().splitlines()[-6:])


@pytest.mark.parametrize("package", list(USES))
def test_no_source_imports_a_package_above_its_own(package):
    arrows = [
        f"{path.relative_to(REPO)}:{arrow}"
        for path in sorted((REPO / package).rglob("*.py"))
        for arrow in back_arrows(path.read_text(), package)
    ]
    assert not arrows, "imports pointing up: " + ", ".join(arrows)


def test_a_planted_module_level_back_arrow_fails_the_import(tmp_path):
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "__init__.py").write_text("")
    (tmp_path / "corpus" / "helper.py").write_text("import classifiers.quality\n")
    (tmp_path / "classifiers").mkdir()
    (tmp_path / "classifiers" / "__init__.py").write_text("")
    (tmp_path / "classifiers" / "quality.py").write_text("")
    done = import_all(tmp_path, "corpus")
    assert done.returncode != 0
    assert "ImportError: corpus must not import classifiers" in done.stderr


def test_a_planted_lazy_back_arrow_is_found_in_the_source():
    source = "import os\nfrom corpus import mix\n\ndef run():\n    from jobs.annotated import Annotator\n"
    assert back_arrows(source, "training") == ["5: jobs.annotated"]
    assert back_arrows(source, "jobs") == []

"""What the code imports is what pyproject.toml declares, and the installed OpenCV is one build.

A library that moved under us (supervision dropping OpenCV) broke the README's first command on
a fresh machine while the dev install, which had everything, stayed green. These checks read
the code's imports instead of trusting the dev environment.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import importlib.metadata as metadata
import re
import sys
from functools import cache
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("composeseg", "adapters", "pipelines")
OPENCV = ("opencv-python", "opencv-python-headless", "opencv-contrib-python")


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503: huggingface_hub = huggingface-hub


def _name(requirement: str) -> str:
    return _normalise(re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].strip())


def _declared() -> tuple[set[str], set[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = {_name(r) for r in project["dependencies"]}
    extras = {_name(r) for group in project["optional-dependencies"].values() for r in group}
    return base, extras


def _imports() -> list[tuple[str, str, bool]]:
    """(file, top-level module, runs at import time) for every absolute import."""
    found = []
    for top in SOURCES:
        for path in (ROOT / top).rglob("*.py"):
            tree = ast.parse(path.read_text(), str(path))
            eager = set(map(id, _import_time_statements(tree.body)))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                where = str(path.relative_to(ROOT))
                found += [(where, name.split(".")[0], id(node) in eager) for name in names]
    return found


def _import_time_statements(body: list[ast.stmt]) -> list[ast.stmt]:
    """The statements that run on import: outside functions and ``if TYPE_CHECKING:``."""
    out: list[ast.stmt] = []
    for statement in body:
        out.append(statement)
        if isinstance(statement, ast.If):
            if isinstance(statement.test, ast.Name) and statement.test.id == "TYPE_CHECKING":
                continue
            out += _import_time_statements(statement.body + statement.orelse)
        elif isinstance(statement, ast.Try):
            handlers = [s for h in statement.handlers for s in h.body]
            nested = statement.body + handlers + statement.orelse + statement.finalbody
            out += _import_time_statements(nested)
        elif isinstance(statement, (ast.With, ast.ClassDef)):
            out += _import_time_statements(statement.body)
    return out


@cache
def _owners() -> dict[str, list[str]]:
    return metadata.packages_distributions()


def _distributions(module: str) -> set[str]:
    if module in sys.stdlib_module_names or module in {"composeseg", "__future__"}:
        return set()
    owners = _owners().get(module)
    if not owners:
        pytest.fail(f"{module!r} is imported but no installed distribution provides it")
    return {_normalise(o) for o in owners}


def test_every_import_is_declared_and_module_level_ones_are_base() -> None:
    base, extras = _declared()
    problems = set()
    for path, module, eager in _imports():
        owners = _distributions(module)
        if not owners:
            continue
        if eager and not owners & base:
            problems.add(f"{path}: imports {module} at module level, not a base dependency")
        elif not owners & (base | extras):
            problems.add(f"{path}: imports {module}, declared nowhere ({sorted(owners)})")
    assert not problems, "\n".join(sorted(problems))


def _record_hash(path: Path) -> str:
    digest = hashlib.sha256(path.read_bytes()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def test_installed_opencv_builds_agree() -> None:
    """ultralytics pulls opencv-python beside our opencv-python-headless; both own ``cv2``.

    Whichever installed last provides the binary. Harmless while the versions agree; a
    mismatch would mix one build's Python files with the other's binary.
    """
    import cv2

    installed = {}
    for name in OPENCV:
        try:
            installed[name] = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
    assert "opencv-python-headless" in installed, "the declared OpenCV build is missing"
    for name, dist in installed.items():
        assert dist.version.startswith(cv2.__version__ + "."), (
            f"{name} {dist.version} is installed but cv2 reports {cv2.__version__}: two OpenCV "
            "builds of different versions share the cv2 module; pin them to one version"
        )
    # which build's binary `import cv2` loads: the one whose RECORD hash matches the file
    binary = Path(cv2.__file__).parent
    owners = []
    for name, dist in installed.items():
        for entry in dist.files or ():
            if entry.hash and re.fullmatch(r"cv2/cv2[^/]*\.(so|pyd)", str(entry)):
                on_disk = binary / Path(str(entry)).name
                if on_disk.is_file() and _record_hash(on_disk) == entry.hash.value:
                    owners.append(name)
    assert len(owners) == 1, f"cv2's binary matches {owners or 'no installed build'}"

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
PREFIX = {
    "composeseg": "composeseg",
    "adapters": "composeseg.adapters",
    "pipelines": "composeseg.pipelines",
}


ASSETS = ROOT / "composeseg" / "assets"


def _source_packages() -> set[str]:
    found = set()
    for top, name in PREFIX.items():
        for init in (ROOT / top).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT / top).parts
            found.add(".".join((name, *parts)))
    return found


def _asset_folders() -> set[str]:
    """The embedded models' folders: data packages, listed so the build ships them."""
    return {f"composeseg.assets.{d.name}" for d in ASSETS.iterdir() if d.is_dir()}


def test_pyproject_lists_every_package() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert set(config["packages"]) == _source_packages() | _asset_folders()
    assert "adapters" not in config["packages"] and "pipelines" not in config["packages"]


@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="needs the source tree")
def test_wheel_installs_subpackages_under_composeseg(tmp_path: Path) -> None:
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-v",  # setuptools' warnings are printed only verbosely
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    # setuptools warns when a folder with files is left out of `packages`: the wheel then
    # depends on behaviour setuptools is removing
    assert "would be ignored" not in build.stdout + build.stderr
    (wheel,) = tmp_path.glob("composeseg-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "composeseg/adapters/__init__.py" in names
    assert "composeseg/pipelines/cli/__init__.py" in names
    assert "composeseg/py.typed" in names
    assert not any(n.startswith(("adapters/", "pipelines/")) for n in names)
    for model in ("demo_sam", "demo_clip", "demo_grounder"):  # the embedded models ship
        assert f"composeseg/assets/{model}/config.json" in names
        assert f"composeseg/assets/{model}/model.safetensors" in names
    # every file of every embedded model, and nothing else under assets/
    shipped = {n for n in names if n.startswith("composeseg/assets/")}
    assert shipped == {p.relative_to(ROOT).as_posix() for p in ASSETS.rglob("*") if p.is_file()}
    target = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(target)
    code = "import composeseg.adapters, composeseg.pipelines.cli as c; print(c.__file__)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={"PYTHONPATH": str(target), "PATH": ""},
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith(str(target))

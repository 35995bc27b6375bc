"""The README's two fresh-machine commands are the ones CI and users run."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _first_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```(?:bash|sh)\n(.*?)```", text, re.S)
    assert block is not None, "README must open with a shell block"
    return [line for line in block.group(1).splitlines() if line and not line.startswith("#")]


def test_readme_opens_with_exactly_two_commands() -> None:
    commands = _first_commands()
    assert len(commands) == 2, commands
    main_job, tests = commands
    assert "composeseg segment" in main_job and "--sam" not in main_job  # the demo model
    assert "[dev]" in tests and "pytest" in tests


def test_ci_runs_both_readme_commands_verbatim() -> None:
    """Each command is a line of its own in .ci/run, not a comment and not a variation."""
    lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    for command in _first_commands():
        assert command in lines, f".ci/run does not run {command!r} as written"


def test_ci_runs_the_main_job_on_the_base_install_and_checks_its_outputs() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    main_job = _first_commands()[0]
    assert main_job.startswith("pip install . && ")  # no extras
    stage = script[script.index("readme_main() {") : script.index("suite() {")]
    assert main_job in stage and "PIP_CONSTRAINT" not in stage  # what a new user gets
    for promised in ("out/annotated.png", "out/predictions.json", "out/masks/000.png"):
        assert promised in stage


def test_ci_runs_every_stage_and_summarises() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    header = script[: script.index("fresh_venv() {")]
    assert "set -e" not in header  # a failing stage stops nothing
    for name in ("readme-main", "suite", "lint"):
        assert f"stage {name} " in script
    for check in ("ruff check .", "ruff format --check .", "mypy"):
        assert check in script
    assert "exit $FAILED" in script


def test_main_job_example_image_is_in_the_repo() -> None:
    main_job = _first_commands()[0]
    image = re.search(r"composeseg segment (\S+)", main_job)
    assert image is not None and (ROOT / image.group(1)).is_file()

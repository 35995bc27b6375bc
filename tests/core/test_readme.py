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


def test_ci_runs_the_readme_test_command() -> None:
    test_command = _first_commands()[1]
    assert test_command in (ROOT / ".ci" / "run").read_text()


def test_main_job_example_image_is_in_the_repo() -> None:
    main_job = _first_commands()[0]
    image = re.search(r"composeseg segment (\S+)", main_job)
    assert image is not None and (ROOT / image.group(1)).is_file()

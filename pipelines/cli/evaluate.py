"""``composeseg eval``: a group of evaluation subcommands, one module each.

Each module in :data:`EVAL_MODULES` has ``register(eval_subparsers)``; like the top-level
commands, it imports torch and models only inside its handler.
"""

from __future__ import annotations

import importlib
from typing import Any

EVAL_MODULES: tuple[str, ...] = (
    "composeseg.pipelines.cli.eval_instances",
    "composeseg.pipelines.cli.eval_points",
    "composeseg.pipelines.cli.eval_tracking",
    "composeseg.pipelines.cli.eval_proposals",
    "composeseg.pipelines.cli.eval_edges",
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("eval", help="evaluate a pipeline against ground truth")
    eval_subparsers = parser.add_subparsers(dest="eval_command", metavar="TASK")
    for name in EVAL_MODULES:
        importlib.import_module(name).register(eval_subparsers)
    parser.set_defaults(handler=lambda args: parser.print_help() or 2)

"""The ``composeseg`` command line.

Each subcommand lives in its own module with ``register(subparsers)``; the module is imported
to build the parser, so command modules import torch and models only inside their handlers.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from composeseg._version import __version__

COMMAND_MODULES: tuple[str, ...] = (
    "composeseg.pipelines.cli.segment",
    "composeseg.pipelines.cli.evaluate",
    "composeseg.pipelines.cli.everything",
    "composeseg.pipelines.cli.proposals",
    "composeseg.pipelines.cli.edges",
    "composeseg.pipelines.cli.train",
    "composeseg.pipelines.cli.track",
    "composeseg.pipelines.cli.text",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="composeseg",
        description="Segment Anything, composed: prompts, detectors, trackers, text in; masks out.",
    )
    parser.add_argument("--version", action="version", version=f"composeseg {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``composeseg`` script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except (ValueError, FileNotFoundError) as error:
        print(f"composeseg {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""The ``composeseg`` command line.

Each subcommand lives in its own module with ``register(subparsers)``; the module is imported
to build the parser, so command modules import torch and models only inside their handlers.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import re
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
    "composeseg.pipelines.cli.export",
    "composeseg.pipelines.cli.serve",
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


NUMBER_LIST_OPTIONS = ("--box", "--point")
"""Options whose value is a comma-separated list of numbers, negative ones included."""

_NUMBER_LIST = re.compile(r"-[0-9.][0-9.,eE+-]*")


def attach_negative_values(argv: Sequence[str]) -> list[str]:
    """``--box -5,0,100,100`` -> ``--box=-5,0,100,100``.

    argparse reads a value that starts with "-" as an option unless it is one plain number, so
    a box or point partly left of or above the image could not be typed; the ``=`` form is
    unambiguous.
    """
    out: list[str] = []
    tokens = list(argv)
    i = 0
    while i < len(tokens):
        token = tokens[i]
        following = tokens[i + 1] if i + 1 < len(tokens) else ""
        if token in NUMBER_LIST_OPTIONS and _NUMBER_LIST.fullmatch(following):
            out.append(f"{token}={following}")
            i += 2
            continue
        out.append(token)
        i += 1
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``composeseg`` script; returns the exit status."""
    from composeseg.extras import MissingExtraError
    from composeseg.pipelines.records import FolderInUseError

    parser = build_parser()
    args = parser.parse_args(attach_negative_values(sys.argv[1:] if argv is None else argv))
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except (ValueError, FileNotFoundError, MissingExtraError, FolderInUseError) as error:
        print(f"composeseg {args.command}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        if error.errno not in _KNOWN_OS_ERRORS:
            raise  # an unexpected failure keeps its traceback: hiding bugs is worse
        print(f"composeseg {args.command}: error: {error}", file=sys.stderr)
        return 2


_KNOWN_OS_ERRORS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENAMETOOLONG}
)
"""Failures of the machine, not of composeseg (disk full, read-only, permissions): one line."""


if __name__ == "__main__":
    sys.exit(main())

"""Optional libraries, imported on first use behind the extra that installs them.

One place turns a missing optional library into :class:`MissingExtraError`, whose message
names the ``pip install "composeseg[EXTRA]"`` line; the CLI prints it as one line (exit 2).
"""

from __future__ import annotations

import contextlib
import importlib
import io
from types import ModuleType


class MissingExtraError(ImportError):
    """An optional library is not installed; the message names the extra that brings it."""

    def __init__(self, purpose: str, package: str, extra: str) -> None:
        super().__init__(f'{purpose} needs {package}: pip install "composeseg[{extra}]"')
        self.extra = extra


def require(module: str, *, extra: str, purpose: str, package: str | None = None) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` naming ``extra``.

    Args:
        module: dotted module name, e.g. ``"pyEdgeEval.common.binary_label"``.
        extra: the ``composeseg[...]`` extra that installs it.
        purpose: what needs it, the start of the error message ("edge NMS").
        package: the distribution's name for the message (default: the module's top name).
    """
    try:
        # some optional libraries print notices on import (pyEdgeEval: a SciPy .mat notice)
        with contextlib.redirect_stdout(io.StringIO()):
            return importlib.import_module(module)
    except ImportError as error:
        raise MissingExtraError(purpose, package or module.split(".")[0], extra) from error

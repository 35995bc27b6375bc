"""A pickle that runs a command when it is loaded: what a planted model file would carry."""

from __future__ import annotations

from pathlib import Path


class Payload:
    """Unpickles into ``os.system("touch MARKER")``, so a test can see whether it ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return os.system, (f"touch {self.marker}",)

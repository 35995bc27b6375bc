"""Import every module of the installed package, in an environment without the extras.

A module-level import of an undeclared library fails here even when the developers' full
environment has it. Modules that need an extra import it lazily, so they import too.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

import composeseg

names = sorted(
    info.name
    for info in pkgutil.walk_packages(composeseg.__path__, "composeseg.")
    if not info.name.endswith("__main__")
)
failed = []
for name in names:
    try:
        importlib.import_module(name)
    except Exception as error:  # report every failure, then exit non-zero
        failed.append(f"{name}: {type(error).__name__}: {error}")
print(f"{len(names) - len(failed)}/{len(names)} modules import on the base install")
print("\n".join(failed))
sys.exit(1 if failed else 0)

"""The one progress bar of the library: tqdm with images/s (or frames/s, batches/s) and ETA.

Every long loop (pipelines, evaluation, training, video) draws its bar through
:func:`progress`, so one option name (``progress=True``) means the same everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

T = TypeVar("T")


def progress(
    iterable: Iterable[T] | None = None,
    *,
    total: int | None = None,
    desc: str | None = None,
    unit: str = "it",
    enabled: bool = True,
) -> Any:
    """A tqdm bar over ``iterable`` (or a manual one when None; call ``update``/``close``).

    ``total`` defaults to ``len(iterable)`` when it has one, so the bar shows an ETA whenever
    the length is known. Disabled bars cost nothing and print nothing.
    """
    from tqdm.auto import tqdm

    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    return tqdm(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        disable=not enabled,
        dynamic_ncols=True,
        mininterval=0.5,
    )

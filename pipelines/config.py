"""The one constructor shape of every pipeline: a frozen config object, keyword overrides.

``Pipeline(sam, <collaborators>, config=XConfig(...), progress=False, **overrides)``: options
live in the pipeline's exported config dataclass; keywords named like its fields override it
(``AutomaticMaskGenerator(sam, points_per_side=16)``), and any other keyword is an error that
lists the known ones, so a mistyped option fails loudly instead of being ignored.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

C = TypeVar("C")


def resolve_config(
    config_class: type[C], config: C | None, overrides: Mapping[str, Any], owner: str
) -> C:
    """``config`` (default: ``config_class()``) with ``overrides`` applied and validated.

    Raises:
        TypeError: ``config`` is not a ``config_class``.
        ValueError: an override that is not a field of ``config_class`` (lists the fields),
            or a value the config's own checks reject.
    """
    if config is not None and not isinstance(config, config_class):
        raise TypeError(f"{owner} config must be a {config_class.__name__}, got {config!r}")
    known = [f.name for f in dataclasses.fields(config_class)]  # type: ignore[arg-type]
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        raise ValueError(f"unknown {owner} options {unknown}; known: {known}")
    base = config if config is not None else config_class()
    return dataclasses.replace(base, **overrides)  # type: ignore[type-var]

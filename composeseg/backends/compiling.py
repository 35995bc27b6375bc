"""Opt-in ``torch.compile`` of a backend's image encoder, with an eager fallback.

``torch.compile`` can fail where it is not supported: at the call (a Python version Dynamo does
not support yet) or, since compilation is lazy, at the first forward pass (no C++ compiler for
Inductor on a CPU, no Triton for a GPU, an operator a backend cannot lower). Either way the
encoder keeps working: a warning says why and the eager encoder runs from then on.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch

from composeseg.backends.base import Backend
from composeseg.errors import first_line

_Encode = Callable[[torch.Tensor], tuple[torch.Tensor, ...]]


class CompileFallbackWarning(RuntimeWarning):
    """``compile=True`` was asked for, but ``torch.compile`` failed; the encoder runs eagerly."""


def compile_encoder(backend: Backend, **options: Any) -> bool:
    """Route ``backend.encode`` through ``torch.compile``, in place.

    Args:
        backend: the loaded model's backend; its ``encode`` is replaced on the instance.
        options: passed to ``torch.compile`` (``mode="max-autotune"``, ``dynamic=...``).

    Returns:
        Whether compilation was set up. False, with a :class:`CompileFallbackWarning`, when
        ``torch.compile`` itself raised. A failure at the first forward pass warns then and
        falls back for good; an error that the eager encoder raises too (bad input) is raised
        as it is, and compilation stays on.
    """
    eager: _Encode = backend.encode
    try:
        compiled: _Encode = torch.compile(eager, **options)
    except Exception as error:  # any failure of the optional accelerator means: run eagerly
        _warn(error)
        return False
    state: dict[str, _Encode | None] = {"compiled": compiled}

    def encode(pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        function = state["compiled"]
        if function is None:
            return eager(pixel_values)
        try:
            return function(pixel_values)
        except Exception as error:
            result = eager(pixel_values)  # raises again if the input, not compilation, is bad
            state["compiled"] = None
            _warn(error)
            return result

    # an instance attribute: this backend alone, its class and other backends are untouched
    backend.encode = encode  # type: ignore[method-assign]
    return True


def _warn(error: Exception) -> None:
    reason = first_line(error) or type(error).__name__
    warnings.warn(
        f"torch.compile is unavailable here ({type(error).__name__}: {reason[:300]}); "
        "the image encoder runs eagerly",
        CompileFallbackWarning,
        stacklevel=3,
    )

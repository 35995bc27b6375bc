"""composeseg: a composable toolkit around the Segment Anything Model.

Importing the package only defines names: torch, transformers and supervision are imported on
first use of the objects that need them (PEP 562 lazy attributes), so ``import composeseg``
stays fast and side-effect free.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from composeseg._lazy import lazy_attributes
from composeseg._version import __version__

# public name -> module that defines it
_LAZY = {
    "Prompts": "composeseg.prompts",
    "FOREGROUND": "composeseg.prompts",
    "BACKGROUND": "composeseg.prompts",
    "PADDING": "composeseg.prompts",
    "MaskPrediction": "composeseg.prediction",
    "ImageEmbedding": "composeseg.prediction",
    "Sam": "composeseg.sam",
    "load_sam": "composeseg.loading",
    "export_onnx": "composeseg.onnx_export",
    "load_image": "composeseg.image",
    "ConceptPrediction": "composeseg.concepts",
    "ConceptSam": "composeseg.concepts",
    "load_sam3": "composeseg.concepts",
}

__all__ = ["__version__", *_LAZY]

if TYPE_CHECKING:  # names for type checkers and IDEs; resolved lazily at run time
    from composeseg.concepts import ConceptPrediction, ConceptSam, load_sam3  # noqa: F401
    from composeseg.image import load_image  # noqa: F401
    from composeseg.loading import load_sam  # noqa: F401
    from composeseg.onnx_export import export_onnx  # noqa: F401
    from composeseg.prediction import ImageEmbedding, MaskPrediction  # noqa: F401
    from composeseg.prompts import BACKGROUND, FOREGROUND, PADDING, Prompts  # noqa: F401
    from composeseg.sam import Sam  # noqa: F401


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)

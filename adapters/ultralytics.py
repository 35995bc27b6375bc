"""ultralytics ``Results`` -> ``Prompts``, and a YOLO detector for the instance pipeline.

:func:`from_ultralytics` reads a result by its attributes and never imports ultralytics;
:class:`UltralyticsDetector` imports it when built. ultralytics is AGPL-3.0 licensed, unlike
this package (Apache-2.0): it is an optional extra (``pip install composeseg[ultralytics]``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from composeseg.adapters.options import PromptOptions, build_prompts, resolve_options
from composeseg.prompts import Prompts


def _numpy(value: Any) -> np.ndarray | None:
    if value is None:
        return None
    if hasattr(value, "cpu"):
        value = value.cpu().numpy()
    return np.asarray(value)


def from_ultralytics(
    result: Any, *, options: PromptOptions | None = None, **option_overrides: Any
) -> Prompts:
    """Turn one ultralytics ``Results`` (detect, segment, OBB or track) into prompts.

    Boxes come from ``result.boxes.xyxy`` (pixels of the original image); oriented boxes
    (``result.obb``) become their axis-aligned enclosing box. ``boxes.id`` (tracking) becomes
    ``tracker_id``; ``result.names`` names the classes. Segmentation masks are read at the
    original resolution (from ``masks.xy`` polygons when ``masks.data`` is in the letterboxed
    input frame) and used for ``points="mask"``.

    Args:
        result: one element of what ``YOLO(...)(image)`` / ``.track(...)`` returns.
        options, option_overrides: :class:`~composeseg.adapters.PromptOptions`.
    """
    if not hasattr(result, "orig_shape") or not hasattr(result, "boxes"):
        raise TypeError(f"expected an ultralytics Results, got {type(result).__name__}")
    height, width = (int(v) for v in result.orig_shape)
    obb = getattr(result, "obb", None)
    source = result.boxes if result.boxes is not None else obb
    names = {int(k): str(v) for k, v in (getattr(result, "names", None) or {}).items()}
    opts = resolve_options(options, option_overrides)
    if source is None:  # a classification / pose-only result: nothing to prompt
        return build_prompts(np.zeros((0, 4)), names=names or None, options=opts)
    # OBB.xyxy is the axis-aligned box enclosing the rotated corners
    xyxy = _numpy(source.xyxy)
    masks = None
    if opts.points == "mask" and getattr(result, "masks", None) is not None:
        masks = _masks(result.masks, (height, width))
    return build_prompts(
        xyxy,
        scores=_numpy(source.conf),
        class_ids=_numpy(source.cls),
        names=names or None,
        masks=masks,
        tracker_ids=_numpy(getattr(source, "id", None)),
        image_size=(height, width),
        options=opts,
        source="ultralytics Results",
    )


def _masks(masks: Any, size: tuple[int, int]) -> np.ndarray:
    data = _numpy(masks.data)
    if data is not None and tuple(data.shape[1:]) == size:
        return data > 0.5
    # masks.data lives in the letterboxed input frame; masks.xy are in original pixels
    from PIL import Image, ImageDraw

    out = np.zeros((len(masks.xy), *size), bool)
    for i, polygon in enumerate(masks.xy):
        if len(polygon) < 3:
            continue
        canvas = Image.new("1", (size[1], size[0]), 0)
        ImageDraw.Draw(canvas).polygon([tuple(p) for p in np.asarray(polygon)], fill=1)
        out[i] = np.asarray(canvas)
    return out


class UltralyticsDetector:
    """Run an ultralytics model (YOLO detect / segment / OBB) as an ``image -> Prompts`` detector.

    Args:
        weights: a ``.pt`` weights file, a model ``.yaml``, or an ultralytics ``YOLO`` object.
        conf: ultralytics' score threshold (its NMS input); ``min_score`` filters afterwards.
        iou: NMS IoU threshold.
        imgsz: inference size.
        device: ultralytics device string (``"cpu"``, ``"0"``); default: its choice.
        track: run ``model.track(persist=True)`` so detections carry tracker ids across calls.
        options, option_overrides: :class:`~composeseg.adapters.PromptOptions`.

    Raises:
        ImportError: ultralytics is not installed (names the pip extra).
    """

    def __init__(
        self,
        weights: str | os.PathLike | Any,
        *,
        conf: float = 0.25,
        iou: float = 0.7,
        imgsz: int = 640,
        device: str | None = None,
        track: bool = False,
        options: PromptOptions | None = None,
        **option_overrides: Any,
    ) -> None:
        # ultralytics makes DNS look-ups on import unless told it is offline; respect a choice
        os.environ.setdefault("YOLO_OFFLINE", "1")
        from composeseg.extras import require

        YOLO = require(
            "ultralytics", extra="ultralytics", purpose="UltralyticsDetector (AGPL-3.0 licensed)"
        ).YOLO
        if isinstance(weights, (str, os.PathLike)):
            path = Path(weights)
            if path.suffix in (".pt", ".onnx", ".engine") and not path.exists():
                raise FileNotFoundError(f"ultralytics weights not found: {path}")
            self.model = YOLO(str(weights))
        else:
            self.model = weights
        self.options = resolve_options(options, option_overrides)
        self.predict_args: dict[str, Any] = {
            "conf": conf,
            "iou": iou,
            "imgsz": imgsz,
            "verbose": False,
        }
        if device is not None:
            self.predict_args["device"] = device
        self.track = track

    @property
    def names(self) -> dict[int, str]:
        """The model's class vocabulary."""
        return {int(k): str(v) for k, v in self.model.names.items()}

    def __repr__(self) -> str:
        return f"UltralyticsDetector({type(self.model).__name__}, {len(self.names)} classes)"

    def __call__(self, image: Any) -> Prompts:
        """Detect in an ``(H, W, 3) uint8`` RGB image (or a path / PIL image)."""
        from composeseg.image import load_image

        # ultralytics reads numpy arrays as OpenCV BGR
        bgr = np.ascontiguousarray(load_image(image)[..., ::-1])
        call = self.model.track if self.track else self.model.predict
        extra = {"persist": True} if self.track else {}
        results = list(call(bgr, **self.predict_args, **extra))
        return from_ultralytics(results[0], options=self.options)

"""Options every prompt adapter shares, and the one function that applies them.

Every adapter reads its foreign result into plain columns (boxes, scores, class ids and names,
optional masks and track ids) and hands them to :func:`build_prompts`, so filtering, top-k,
padding and box -> point conversion behave identically whatever the detector.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from composeseg.detections import DETECTOR_XYXY
from composeseg.geometry import clip_boxes
from composeseg.prompts import FOREGROUND, Prompts

PointMode = Literal["center", "mask"]


@dataclass(frozen=True)
class PromptOptions:
    """How an adapter turns detections into prompts.

    Attributes:
        min_score: drop detections whose score is below this (detections without scores are
            kept).
        classes: keep only these classes, given by id (int) or name (str). A name the
            detector does not know is an error, so a typo never silently yields nothing.
        top_k: keep at most this many detections, highest score first.
        box_padding: grow each box by this many pixels on every side (clipped to the image).
        box_padding_ratio: grow each box by this fraction of its width / height on every side.
        points: add one foreground point per object: ``"center"`` (box centre) or ``"mask"``
            (the pixel deepest inside the detector's own mask; falls back to the centre where
            the detector gave no mask pixels).
        keep_boxes: with ``points``, keep the boxes as prompts too (default). With
            ``keep_boxes=False`` the objects are prompted by the point only; the detector's box
            then rides along in ``data["detector_xyxy"]``.
    """

    min_score: float = 0.0
    classes: Sequence[int | str] | None = None
    top_k: int | None = None
    box_padding: float = 0.0
    box_padding_ratio: float = 0.0
    points: PointMode | None = None
    keep_boxes: bool = True

    def __post_init__(self) -> None:
        if not np.isfinite(self.min_score):
            raise ValueError(f"min_score must be finite, got {self.min_score!r}")
        if self.top_k is not None and (isinstance(self.top_k, bool) or self.top_k < 0):
            raise ValueError(f"top_k must be an int >= 0 or None, got {self.top_k!r}")
        for name in ("box_padding", "box_padding_ratio"):
            value = getattr(self, name)
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.points not in (None, "center", "mask"):
            raise ValueError(f"points must be None, 'center' or 'mask', got {self.points!r}")
        if not self.keep_boxes and self.points is None:
            raise ValueError("keep_boxes=False needs points='center' or 'mask' to prompt with")
        if isinstance(self.classes, (str, int)):
            object.__setattr__(self, "classes", (self.classes,))
        if self.classes is not None:
            bad = [c for c in self.classes if not isinstance(c, (str, int, np.integer))]
            if bad:
                raise ValueError(f"classes must be ids (int) or names (str), got {bad[0]!r}")
            object.__setattr__(self, "classes", tuple(self.classes))


def resolve_options(options: PromptOptions | None, overrides: Mapping[str, Any]) -> PromptOptions:
    """``options`` with keyword ``overrides`` applied; an unknown keyword is a ``TypeError``."""
    base = options if options is not None else PromptOptions()
    if not overrides:
        return base
    from dataclasses import replace

    return replace(base, **overrides)


def build_prompts(
    boxes: Any,
    *,
    scores: Any = None,
    class_ids: Any = None,
    class_names: Sequence[str] | None = None,
    names: Mapping[int, str] | None = None,
    masks: np.ndarray | None = None,
    tracker_ids: Any = None,
    image_size: tuple[int, int] | None = None,
    options: PromptOptions | None = None,
    source: str = "detections",
) -> Prompts:
    """Validate detector columns, apply ``options`` and return box (and point) prompts.

    Args:
        boxes: ``(N, 4)`` xyxy, pixels of the original image.
        scores: ``(N,)`` detector scores, or None.
        class_ids: ``(N,)`` integer class ids, or None.
        class_names: ``N`` per-detection class names, or None (then looked up in ``names``).
        names: the detector's whole vocabulary ``{class_id: name}``, used to resolve class
            names and to reject unknown names in ``options.classes``.
        masks: ``(N, H, W) bool`` detector masks at the original resolution, for
            ``points="mask"``.
        tracker_ids: ``(N,)`` track ids, or None.
        image_size: ``(H, W)`` of the original image; when given, boxes are clipped to it and a
            box entirely outside it is an error.
        options: see :class:`PromptOptions`.
        source: what the columns came from, for error messages.

    Returns:
        :class:`~composeseg.Prompts` with ``boxes`` (unless ``keep_boxes=False``), optional
        ``points``, ``class_id``, ``confidence``, ``tracker_id`` and ``data["class_name"]``
        when names are known. Zero detections give an empty ``Prompts``.

    Raises:
        ValueError: NaN / infinite / inverted boxes or scores, boxes outside the image, column
            lengths that disagree, unknown class names, ``points="mask"`` without masks.
    """
    opts = options or PromptOptions()
    column = _column(boxes, np.float32, 2, "boxes", source)
    xyxy = np.zeros((0, 4), np.float32) if column is None else column.reshape(-1, 4)
    n = len(xyxy)
    conf = _column(scores, np.float32, 1, "scores", source, n)
    ids = _column(class_ids, np.float64, 1, "class_ids", source, n)
    if ids is not None:
        if not np.isfinite(ids).all() or (ids != np.round(ids)).any():
            i = int(np.argmax(~np.isfinite(ids) | (ids != np.round(ids))))
            raise ValueError(f"{source}: class_ids[{i}] = {ids[i]} is not an integer")
        ids = ids.astype(np.int64)
    tracks = _column(tracker_ids, np.int64, 1, "tracker_ids", source, n)
    label_names = _resolve_names(class_names, ids, names, n, source)
    if masks is not None:
        masks = np.asarray(masks, bool)
        if masks.ndim != 3 or len(masks) != n:
            raise ValueError(f"{source}: masks must have shape ({n}, H, W), got {masks.shape}")
    for i, box in enumerate(xyxy):
        if not np.isfinite(box).all():
            raise ValueError(f"{source}: boxes[{i}] = {box.tolist()} is not finite")
        if box[2] < box[0] or box[3] < box[1]:
            raise ValueError(f"{source}: boxes[{i}] = {box.tolist()} is inverted (need x0 <= x1)")
    if conf is not None and not np.isfinite(conf).all():
        i = int(np.argmax(~np.isfinite(conf)))
        raise ValueError(f"{source}: scores[{i}] = {conf[i]} is not finite")

    keep = np.ones(n, bool)
    if conf is not None:
        keep &= conf >= opts.min_score
    if opts.classes is not None:
        keep &= _class_filter(opts.classes, ids, label_names, names, n, source)
    order = np.flatnonzero(keep)
    if conf is not None:
        order = order[np.argsort(-conf[order], kind="stable")]
    if opts.top_k is not None:
        order = order[: opts.top_k]

    xyxy = _pad(xyxy[order], opts)
    if image_size is not None:
        xyxy = _clip(xyxy, image_size, order, source)
    degenerate = (xyxy[:, 2] <= xyxy[:, 0]) | (xyxy[:, 3] <= xyxy[:, 1])
    if degenerate.any():  # zero-area boxes cannot prompt SAM; a detector emits them rarely
        order, xyxy = order[~degenerate], xyxy[~degenerate]
    data: dict[str, np.ndarray] = {}
    if label_names is not None:
        data["class_name"] = np.asarray(label_names, dtype=object)[order].astype(str)
    points = labels = None
    if opts.points is not None:
        points = _points(xyxy, None if masks is None else masks[order], opts.points, source)
        labels = np.full((len(order), 1), FOREGROUND, np.int32)
        if not opts.keep_boxes:
            data[DETECTOR_XYXY] = xyxy
    return Prompts(
        boxes=xyxy if opts.keep_boxes else None,
        points=points,
        point_labels=labels,
        class_id=None if ids is None else ids[order],
        confidence=None if conf is None else conf[order],
        tracker_id=None if tracks is None else tracks[order],
        data=data,
    )


def _column(
    value: Any, dtype: type, ndim: int, name: str, source: str, n: int | None = None
) -> np.ndarray | None:
    if value is None:
        return None
    if hasattr(value, "detach"):  # torch tensors from detectors, on any device
        value = value.detach().float().cpu().numpy() if dtype is np.float32 else value.cpu()
    try:
        array: np.ndarray = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{source}: {name} is not numeric: {error}") from None
    if ndim == 2 and array.size == 0:
        return array.reshape(0, 4)
    if array.ndim != ndim:
        raise ValueError(f"{source}: {name} must have {ndim} dimension(s), got {array.shape}")
    if ndim == 2 and array.shape[1] != 4:
        raise ValueError(f"{source}: {name} must have shape (N, 4), got {array.shape}")
    if n is not None and len(array) != n:
        raise ValueError(f"{source}: {name} has {len(array)} entries for {n} boxes")
    return array


def _resolve_names(
    class_names: Sequence[str] | None,
    ids: np.ndarray | None,
    names: Mapping[int, str] | None,
    n: int,
    source: str,
) -> list[str] | None:
    if class_names is not None:
        listed = [str(c) for c in class_names]
        if len(listed) != n:
            raise ValueError(f"{source}: class_names has {len(listed)} entries for {n} boxes")
        return listed
    if ids is None or names is None:
        return None
    return [str(names.get(int(i), int(i))) for i in ids]


def _class_filter(
    wanted: Sequence[int | str],
    ids: np.ndarray | None,
    label_names: list[str] | None,
    names: Mapping[int, str] | None,
    n: int,
    source: str,
) -> np.ndarray:
    want_ids = {int(c) for c in wanted if not isinstance(c, str)}
    want_names = {c for c in wanted if isinstance(c, str)}
    if want_ids and ids is None:
        raise ValueError(f"{source}: classes={sorted(want_ids)} given, but no class ids")
    if want_names:
        known = set(names.values()) if names is not None else None
        if known is None and label_names is None:
            raise ValueError(f"{source}: classes={sorted(want_names)} given, but no class names")
        if known is not None:
            unknown = sorted(want_names - known)
            if unknown:
                raise ValueError(
                    f"{source}: unknown class name {unknown[0]!r}; known: {sorted(known)[:20]}"
                )
    keep = np.zeros(n, bool)
    if want_ids and ids is not None:
        keep |= np.isin(ids, list(want_ids))
    if want_names and label_names is not None:
        keep |= np.isin(np.asarray(label_names, dtype=object), list(want_names))
    return keep


def _pad(xyxy: np.ndarray, opts: PromptOptions) -> np.ndarray:
    if not (opts.box_padding or opts.box_padding_ratio):
        return xyxy
    size = np.concatenate([xyxy[:, 2:] - xyxy[:, :2]] * 2, axis=1)
    grow = opts.box_padding + opts.box_padding_ratio * size
    return (xyxy + grow * np.array([-1, -1, 1, 1], np.float32)).astype(np.float32)


def _clip(
    xyxy: np.ndarray, image_size: tuple[int, int], order: np.ndarray, source: str
) -> np.ndarray:
    height, width = image_size
    clipped = clip_boxes(xyxy, image_size)
    outside = ((clipped[:, 2] <= clipped[:, 0]) | (clipped[:, 3] <= clipped[:, 1])) & (
        (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])
    )
    if outside.any():
        i = int(np.argmax(outside))
        raise ValueError(
            f"{source}: boxes[{int(order[i])}] = {xyxy[i].tolist()} lies outside the "
            f"{width}x{height} image"
        )
    return clipped


def _points(xyxy: np.ndarray, masks: np.ndarray | None, mode: PointMode, source: str) -> np.ndarray:
    centres = ((xyxy[:, :2] + xyxy[:, 2:]) / 2)[:, None].astype(np.float32)
    if mode == "center":
        return centres
    if masks is None:
        raise ValueError(f"points='mask' needs detector masks, and {source} has none")
    from scipy import ndimage

    out = centres.copy()
    for i, mask in enumerate(masks):
        if not mask.any():
            continue
        # the pixel farthest from the mask border: inside even for rings and C shapes, where
        # the box centre (or the centroid) falls off the object
        depth = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
        y, x = np.unravel_index(int(np.argmax(depth)), depth.shape)
        out[i, 0] = (x + 0.5, y + 0.5)
    return out

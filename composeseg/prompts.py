"""Typed, columnar prompt batches: one row per object to segment.

Coordinates are pixels of the original image: boxes ``xyxy``, points ``xy``. The SAM encoding of
prompts (corner labels, padding points) is the backend's business, not the user's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

FOREGROUND = 1
"""Point label: the point lies on the object."""
BACKGROUND = 0
"""Point label: the point lies off the object."""
PADDING = -1
"""Point label: no point here; lets objects with fewer points share one ``(N, P)`` array."""

_ARRAY_FIELDS = (
    "boxes",
    "points",
    "point_labels",
    "mask_input",
    "class_id",
    "confidence",
    "tracker_id",
)


_EMPTY_SHAPES = {"boxes": (0, 4), "points": (0, 0, 2), "point_labels": (0, 0)}
"""The shape an empty list takes: no objects (``boxes=[]`` is the same as ``(0, 4)``)."""


def _as_array(name: str, value: Any, dtype: type, ndim: int) -> np.ndarray | None:
    if value is None:
        return None
    try:
        raw = np.asarray(value)
        whole = np.issubdtype(dtype, np.integer) and raw.dtype.kind not in "biu"
        raw = raw.astype(np.float64) if whole else raw.astype(dtype, copy=False)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"{name} could not be read as a {np.dtype(dtype)} array: {error}"
        ) from None
    array: np.ndarray = _exact_integers(name, raw, dtype) if whole else raw
    if array.size == 0 and array.ndim < ndim and name in _EMPTY_SHAPES:
        return np.zeros(_EMPTY_SHAPES[name], dtype)
    if array.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {array.shape}")
    return array


def _exact_integers(name: str, values: np.ndarray, dtype: type) -> np.ndarray:
    """float64 ``values`` as ``dtype`` after checking that each is a whole number it holds
    (labels 0.5 or 1.9, ``class_id`` 1.5 and ``tracker_id`` 1e20 are errors, not truncated)."""
    info = np.iinfo(dtype)
    bad = ~np.isfinite(values) | (values != np.round(values))
    bad |= (values < info.min) | (values >= float(info.max) + 1)  # 2**63 is no int64
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        where = f"[{', '.join(map(str, index))}]" if index else ""
        raise ValueError(
            f"{name}{where} = {float(values[index]):g} is not a whole number in the range of "
            f"{np.dtype(dtype)}"
        )
    return values.astype(dtype)


@dataclass(frozen=True, eq=False)
class Prompts:
    """A batch of N per-object prompts and the metadata that rides along to the masks.

    Each object may have a box, points, a mask prompt or any combination; fields that no object
    uses are ``None``. Validated on construction; never mutated.

    Attributes:
        boxes: ``(N, 4) float32`` xyxy, pixels of the original image.
        points: ``(N, P, 2) float32`` xy, pixels of the original image.
        point_labels: ``(N, P) int32``: :data:`FOREGROUND` (1), :data:`BACKGROUND` (0), or
            :data:`PADDING` (-1) for unused slots when objects have different point counts.
        mask_input: ``(N, M, M) float32`` low-resolution logits from an earlier prediction
            (``MaskPrediction.logits[:, k]``; M = 256 for the released models), to refine.
        class_id: ``(N,) int64`` class of each object (e.g. from a detector).
        confidence: ``(N,) float32`` detector score of each object.
        tracker_id: ``(N,) int64`` track identity of each object.
        data: extra per-object columns, each of length N (e.g. ``"class_name"``).
    """

    boxes: np.ndarray | None = None
    points: np.ndarray | None = None
    point_labels: np.ndarray | None = None
    mask_input: np.ndarray | None = None
    class_id: np.ndarray | None = None
    confidence: np.ndarray | None = None
    tracker_id: np.ndarray | None = None
    data: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        specs = {
            "boxes": (np.float32, 2),
            "points": (np.float32, 3),
            "point_labels": (np.int32, 2),
            "mask_input": (np.float32, 3),
            "class_id": (np.int64, 1),
            "confidence": (np.float32, 1),
            "tracker_id": (np.int64, 1),
        }
        for name, (dtype, ndim) in specs.items():
            object.__setattr__(self, name, _as_array(name, getattr(self, name), dtype, ndim))
        object.__setattr__(self, "data", {k: np.asarray(v) for k, v in self.data.items()})
        self._validate()

    def _validate(self) -> None:
        lengths = {
            name: len(value)
            for name in (*_ARRAY_FIELDS, *(f"data[{k!r}]" for k in self.data))
            if (value := self._get(name)) is not None
        }
        if len(set(lengths.values())) > 1:
            raise ValueError(f"prompt fields disagree on the number of objects: {lengths}")
        if self.boxes is not None:
            if self.boxes.shape[1:] != (4,):
                raise ValueError(f"boxes must have shape (N, 4), got {self.boxes.shape}")
            for i, box in enumerate(self.boxes):
                if not np.isfinite(box).all():
                    raise ValueError(f"boxes[{i}] = {box.tolist()} is not finite")
                if box[2] <= box[0] or box[3] <= box[1]:
                    raise ValueError(
                        f"boxes[{i}] = {box.tolist()} is inverted or empty (need x0 < x1, y0 < y1)"
                    )
        if (self.points is None) != (self.point_labels is None):
            missing = "point_labels" if self.point_labels is None else "points"
            raise ValueError(f"points and point_labels go together; {missing} is missing")
        if self.points is not None and self.point_labels is not None:
            if self.points.shape[2:] != (2,):
                raise ValueError(f"points must have shape (N, P, 2), got {self.points.shape}")
            if self.point_labels.shape != self.points.shape[:2]:
                raise ValueError(
                    f"point_labels must have shape {self.points.shape[:2]} to match points, "
                    f"got {self.point_labels.shape}"
                )
            bad = ~np.isin(self.point_labels, (FOREGROUND, BACKGROUND, PADDING))
            if bad.any():
                i, j = np.argwhere(bad)[0]
                raise ValueError(
                    f"point_labels[{i}, {j}] = {self.point_labels[i, j]}; expected 1 (foreground), "
                    "0 (background) or -1 (padding)"
                )
            valid = self.point_labels != PADDING
            finite = np.isfinite(self.points).all(axis=2)
            if (valid & ~finite).any():
                i, j = np.argwhere(valid & ~finite)[0]
                raise ValueError(f"points[{i}, {j}] = {self.points[i, j].tolist()} is not finite")
            if len(self.points) and self.boxes is None and not valid.any(axis=1).all():
                i = int(np.argmin(valid.any(axis=1)))
                raise ValueError(f"object {i} has only padding points and no box")
        if self.mask_input is not None:
            if self.mask_input.shape[1] != self.mask_input.shape[2]:
                raise ValueError(
                    f"mask_input must be square (N, M, M) logits, got {self.mask_input.shape}"
                )
            if not np.isfinite(self.mask_input).all():
                raise ValueError("mask_input contains NaN or infinite values")
        if self.confidence is not None and not np.isfinite(self.confidence).all():
            i = int(np.argmin(np.isfinite(self.confidence)))
            raise ValueError(f"confidence[{i}] = {self.confidence[i]} is not finite")

    def _get(self, name: str) -> Any:
        if name.startswith("data["):
            return self.data[name[6:-2]]
        return getattr(self, name)

    def __len__(self) -> int:
        for name in _ARRAY_FIELDS:
            value = getattr(self, name)
            if value is not None:
                return len(value)
        for value in self.data.values():
            return len(value)
        return 0

    def __getitem__(self, index: int | slice | Sequence[int] | np.ndarray) -> Prompts:
        """Select objects: an int keeps a batch of one; slices, index arrays and masks work."""
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        kwargs: dict[str, Any] = {
            name: None if (value := getattr(self, name)) is None else value[index]
            for name in _ARRAY_FIELDS
        }
        return Prompts(**kwargs, data={k: v[index] for k, v in self.data.items()})

    @property
    def is_empty(self) -> bool:
        return len(self) == 0

    @classmethod
    def concatenate(cls, batches: Sequence[Prompts]) -> Prompts:
        """Join batches end to end; point arrays with different P are padded with PADDING.

        A field present in some batches but not others is an error, except ``points``, which
        become padding-only rows where a batch has boxes but no points.
        """
        batches = [b for b in batches if len(b)]
        if not batches:
            return cls()
        kwargs: dict[str, Any] = {}
        max_points = max((b.points.shape[1] for b in batches if b.points is not None), default=0)
        for name in _ARRAY_FIELDS:
            values = [getattr(b, name) for b in batches]
            if all(v is None for v in values):
                kwargs[name] = None
                continue
            if name in ("points", "point_labels"):
                values = [_pad_points(b, name, max_points) for b in batches]
            elif any(v is None for v in values):
                raise ValueError(f"cannot concatenate: some batches have {name} and some do not")
            kwargs[name] = np.concatenate(values)
        keys = set(batches[0].data)
        if any(set(b.data) != keys for b in batches):
            raise ValueError(
                f"cannot concatenate: data keys differ {[sorted(b.data) for b in batches]}"
            )
        data = {k: np.concatenate([b.data[k] for b in batches]) for k in keys}
        return cls(**kwargs, data=data)

    def replace(self, **changes: Any) -> Prompts:
        """A copy with some fields replaced (validated again)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return Prompts(**values)

    def __repr__(self) -> str:
        present = [
            f"{name}{tuple(value.shape)}"
            for name in _ARRAY_FIELDS
            if (value := getattr(self, name)) is not None
        ]
        present += [f"data[{k!r}]" for k in self.data]
        return f"Prompts(n={len(self)}, {', '.join(present) or 'empty'})"


def _pad_points(batch: Prompts, name: str, width: int) -> np.ndarray:
    n = len(batch)
    if name == "points":
        padded = np.zeros((n, width, 2), np.float32)
        if batch.points is not None:
            padded[:, : batch.points.shape[1]] = batch.points
        return padded
    labels = np.full((n, width), PADDING, np.int32)
    if batch.point_labels is not None:
        labels[:, : batch.point_labels.shape[1]] = batch.point_labels
    return labels


def as_prompts(
    prompts: Prompts | None = None,
    *,
    boxes: Any = None,
    points: Any = None,
    point_labels: Any = None,
    mask_input: Any = None,
) -> Prompts:
    """Build :class:`Prompts` from ``Sam.segment``-style keyword arrays.

    A single object may be given without the leading N axis: a box ``(4,)``, points ``(P, 2)``
    with labels ``(P,)``, a mask input ``(M, M)``. Points without labels are an error: the
    label decides whether the point is on or off the object.
    """
    given = any(v is not None for v in (boxes, points, point_labels, mask_input))
    if prompts is not None:
        if given:
            raise ValueError("pass either a Prompts object or boxes/points/mask_input, not both")
        if not isinstance(prompts, Prompts):
            raise TypeError(f"prompts must be a composeseg.Prompts, got {type(prompts).__name__}")
        return prompts
    if points is not None and point_labels is None:
        raise ValueError("points were given without point_labels (1 = foreground, 0 = background)")
    boxes = _leading_axis(boxes, 1, "boxes")
    points = _leading_axis(points, 2, "points")
    point_labels = _leading_axis(point_labels, 1, "point_labels")
    mask_input = _leading_axis(mask_input, 2, "mask_input")
    return Prompts(boxes=boxes, points=points, point_labels=point_labels, mask_input=mask_input)


def _leading_axis(value: Any, single_ndim: int, name: str) -> np.ndarray | None:
    if value is None:
        return None
    try:
        array = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} could not be read as a numeric array: {error}") from None
    if array.size == 0:  # boxes=[]: no objects, not one object with no coordinates
        return array
    return array[None] if array.ndim == single_ndim else array


def text_prompts(
    texts: str | Sequence[str], name: str = "texts", *, unique: bool = False
) -> list[str]:
    """Check text prompts (queries, concepts, captions) and return them as a list.

    Args:
        texts: one string or a sequence of strings.
        name: the argument's name, used in error messages.
        unique: refuse a text given twice (results are indexed by text).

    Raises:
        ValueError: no texts, a blank or non-string entry, or (``unique``) a repeated one.
    """
    items = [texts] if isinstance(texts, str) else list(texts)
    if not items:
        raise ValueError(f"{name} is empty: give at least one text")
    seen: dict[str, int] = {}
    for i, text in enumerate(items):
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"{name}[{i}] is blank or not a string: {text!r}")
        if unique and text in seen:
            raise ValueError(f"{name}[{i}] {text!r} repeats {name}[{seen[text]}]")
        seen.setdefault(text, i)
    return items

"""One image's labelling work: its objects (accepted ones and pipeline proposals) and the
object being drawn (:class:`~composeseg.pipelines.app.editor.Editor`)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from composeseg import rle
from composeseg.pipelines.app.editor import Editor, mask_png

if TYPE_CHECKING:
    import supervision as sv

SOURCES = ("click", "everything", "detector", "text", "saved")
"""Where an object came from: drawn by clicks, a pipeline's proposal, or a saved record."""


@dataclass(frozen=True)
class LabelledObject:
    """An object of the image.

    Attributes:
        id: unique within the document, never reused.
        rle: the mask as a JSON COCO RLE, pixels of the original image.
        bbox: ``(x0, y0, x1, y1)`` tight box of the mask, ``x1, y1`` exclusive.
        area: mask pixels.
        class_name: the label ("" for a proposal nobody has named).
        score: SAM's predicted IoU (times a detector's score for detector proposals).
        source: one of :data:`SOURCES`.
        accepted: False for a pipeline's proposal until the user accepts it; only accepted
            objects are saved.
        png: the mask for the page (:func:`~composeseg.pipelines.app.editor.mask_png`).
    """

    id: int
    rle: dict[str, Any]
    bbox: tuple[float, float, float, float]
    area: int
    class_name: str
    score: float
    source: str
    accepted: bool
    png: str

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "class_name": self.class_name,
            "area": self.area,
            "bbox": list(self.bbox),
            "score": round(self.score, 4),
            "source": self.source,
            "accepted": self.accepted,
            "mask": self.png,
        }


class Document:
    """The objects of one ``(H, W)`` image, in the order they were made, and its editor.

    Every request on the image holds :attr:`lock`, so two tabs on one image take turns and two
    tabs on two images never share anything.
    """

    def __init__(
        self, key: str, size: tuple[int, int], lock: threading.RLock | None = None
    ) -> None:
        self.key = key
        self.size = size
        self.objects: dict[int, LabelledObject] = {}
        self.editor = Editor()
        self.dirty = False
        self.lock = lock or threading.RLock()
        self._next_id = 1

    def add(
        self,
        mask: np.ndarray | None,
        *,
        class_name: str,
        score: float,
        source: str,
        accepted: bool,
        segmentation: dict[str, Any] | None = None,
        replace_id: int | None = None,
    ) -> LabelledObject:
        """Add an object from an ``(H, W) bool`` mask (or a JSON RLE ``segmentation``);
        ``replace_id`` puts it in the place of an object being refined."""
        from composeseg.geometry import tight_boxes

        if mask is None:
            if segmentation is None:
                raise ValueError("an object needs a mask")
            mask = rle.decode(segmentation)
        if mask.shape != self.size:
            raise ValueError(f"mask of shape {mask.shape} on an image of size {self.size}")
        box = tight_boxes(mask[None])[0]
        new_id = replace_id if replace_id in self.objects else self._take_id()
        item = LabelledObject(
            id=new_id,
            rle=rle.encode_mask(mask) if segmentation is None else rle.to_json(segmentation),
            bbox=(float(box[0]), float(box[1]), float(box[2]), float(box[3])),
            area=int(np.count_nonzero(mask)),
            class_name=class_name,
            score=float(score),
            source=source,
            accepted=accepted,
            png=mask_png(mask),
        )
        self.objects[new_id] = item
        self.dirty = self.dirty or accepted or replace_id is not None
        return item

    def _take_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def get(self, object_id: int) -> LabelledObject:
        from composeseg.pipelines.app.store import NotFound

        found = self.objects.get(object_id)
        if found is None:
            raise NotFound(f"image {self.key!r} has no object {object_id}")
        return found

    def update(self, object_id: int, *, class_name: str | None, accept: bool) -> LabelledObject:
        """Rename an object and/or accept a proposal."""
        item = self.get(object_id)
        changes: dict[str, Any] = {}
        if class_name is not None:
            changes["class_name"] = class_name
        if accept:
            changes["accepted"] = True
        if changes:
            self.objects[object_id] = item = replace(item, **changes)
            self.dirty = self.dirty or item.accepted
        return item

    def delete(self, object_id: int) -> None:
        item = self.get(object_id)
        del self.objects[object_id]
        if self.editor.origin_id == object_id:
            self.editor.origin_id = None
        self.dirty = self.dirty or item.accepted

    def add_detections(self, detections: sv.Detections, source: str) -> list[LabelledObject]:
        """A pipeline's masks as proposals, replacing that pipeline's earlier proposals."""
        for old in [o for o in self.objects.values() if o.source == source and not o.accepted]:
            del self.objects[old.id]
        names = detections.data.get("class_name")
        rles = detections.data.get("rle") if detections.mask is None else None
        scores = detections.confidence
        added = []
        for i in range(len(detections)):
            added.append(
                self.add(
                    None if detections.mask is None else detections.mask[i],
                    segmentation=None if rles is None else rles[i],
                    class_name="" if names is None else str(names[i]),
                    score=1.0 if scores is None else float(scores[i]),
                    source=source,
                    accepted=False,
                )
            )
        return added

    def load_record(self, record: dict[str, Any]) -> None:
        """Take the objects of a saved COCO record (``annotations``, ``categories``)."""
        names = {c["id"]: c["name"] for c in record.get("categories", [])}
        for a in record.get("annotations", []):
            name = a.get("class_name") or names.get(a.get("category_id"), "object")
            mask = rle.decode_segmentation(a.get("segmentation"), self.size)
            score = float(a.get("score", 1.0))
            self.add(mask, class_name=str(name), score=score, source="saved", accepted=True)
        self.dirty = False

    def accepted(self) -> list[LabelledObject]:
        return [o for o in self.objects.values() if o.accepted]

    def to_json(self) -> dict[str, Any]:
        return {
            "objects": [o.to_json() for o in self.objects.values()],
            "editor": self.editor.state(),
            "dirty": self.dirty,
        }

"""What the app does, without HTTP: open images, decode prompts, run pipelines, keep objects,
save. :mod:`composeseg.pipelines.app.server` maps requests onto these methods; each returns
JSON-ready dicts.

State: one :class:`~composeseg.pipelines.app.document.Document` per image opened (objects as
RLE, the editor's history), and a bounded LRU of ``(picture, embedding)`` pairs, the only
large things. An image leaving the LRU keeps its objects and its current mask; its undo
history is dropped, and opening it again encodes it again.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from composeseg.pipelines.app.document import Document
from composeseg.pipelines.app.editor import full_mask, next_prompts, predict_step
from composeseg.pipelines.app.store import (
    MAX_PIXELS,
    ImageItem,
    ImageStore,
    NotFound,
    RecordStore,
)

if TYPE_CHECKING:
    import supervision as sv

    from composeseg.adapters.clip import ClipMatcher
    from composeseg.pipelines.text import TextSegmentation
    from composeseg.prediction import ImageEmbedding
    from composeseg.sam import Sam

CACHE_SIZE = 8
"""Images whose embedding stays in memory (a ViT-H embedding with its picture: ~10 MB)."""


@dataclass(frozen=True)
class Loaded:
    """An open image: ``rgb (H, W, 3) uint8`` and SAM's embedding of it."""

    rgb: np.ndarray
    embedding: ImageEmbedding
    encode_ms: float


class Workspace:
    """The labelling session over one folder.

    Args:
        sam: the model the clicks go to.
        source: an image folder or one image file; None: uploads only.
        out: the output folder (see :mod:`composeseg.pipelines.app.store`).
        detector: any ``image -> Prompts`` callable (:func:`composeseg.adapters.load_detector`)
            for the "detector" button, or None.
        grounder: a text grounder (:class:`~composeseg.adapters.TransformersGrounder`) and/or
        matcher: a :class:`~composeseg.adapters.ClipMatcher` for the text button (see
            :class:`~composeseg.pipelines.TextSegmentation`); neither: no text button.
        labels: class names offered from the start (saved ones are added).
        cache_size: images whose embedding is kept.
        max_pixels: the decompression-bomb guard.
        amg_options: :class:`~composeseg.pipelines.AmgConfig` fields for "segment everything"
            (default: a 16 x 16 grid, 4x faster than Meta's 32 x 32 for a button press).
        instance_options: :class:`~composeseg.pipelines.InstanceConfig` fields for the
            detector button.
    """

    def __init__(
        self,
        sam: Sam,
        source: str | Path | None,
        out: str | Path,
        *,
        detector: Callable[..., Any] | None = None,
        grounder: Any = None,
        matcher: ClipMatcher | None = None,
        labels: Iterable[str] = (),
        cache_size: int = CACHE_SIZE,
        max_pixels: int = MAX_PIXELS,
        amg_options: dict[str, Any] | None = None,
        instance_options: dict[str, Any] | None = None,
    ) -> None:
        if cache_size < 1:
            raise ValueError(f"cache_size must be >= 1, got {cache_size}")
        self.sam = sam
        self.out = Path(out)
        self.images = ImageStore(source, self.out, max_pixels)
        self.records = RecordStore(self.out, labels)
        self.detector = detector
        self.grounder, self.matcher = grounder, matcher
        self.cache_size = cache_size
        self.amg_options = {"points_per_side": 16, "output": "rle", **(amg_options or {})}
        self.instance_options = dict(instance_options or {})
        self._loaded: OrderedDict[str, Loaded] = OrderedDict()
        self._documents: dict[str, Document] = {}
        self._locks: dict[str, threading.RLock] = {}
        self._lock = threading.RLock()  # guards the two dicts above, never held while computing
        self._text: TextSegmentation | None = None
        self._warm = False

    # -- images --------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        return {
            "model": self.sam.name,
            "detector": self.detector is not None,
            "text": self.grounder is not None or self.matcher is not None,
            "labels": list(self.records.labels),
            "cache_size": self.cache_size,
        }

    def list_images(self) -> list[dict[str, Any]]:
        return [
            {"id": i.id, "name": i.key, "saved": self.records.count(i.key)}
            for i in self.images.items()
        ]

    def unsaved(self) -> list[str]:
        """Names of the images with changes not saved."""
        with self._lock:
            return [d.key for d in self._documents.values() if d.dirty]

    def upload(self, data: bytes) -> dict[str, Any]:
        item = self.images.upload(data)
        return {"id": item.id, "name": item.key}

    def picture(self, image_id: str) -> np.ndarray:
        """The ``(H, W, 3) uint8`` pixels SAM sees (loads the image when not open)."""
        item = self.images.get(image_id)
        with self._lock:
            loaded = self._loaded.get(item.id)
        return loaded.rgb if loaded is not None else self.images.load(item)

    def open(self, image_id: str) -> dict[str, Any]:
        """Encode the image unless its embedding is cached (the page shows "encoding…" while
        this runs) and return its objects, saved ones included on first open."""
        item = self.images.get(image_id)
        with self._item_lock(item.id):
            cached = item.id in self._loaded
            loaded = self._load(item)
            document = self._document(item, loaded)
            return {
                "id": item.id,
                "name": item.key,
                "width": document.size[1],
                "height": document.size[0],
                "cached": cached,
                "encode_ms": round(loaded.encode_ms, 1),
                "labels": list(self.records.labels),
                **document.to_json(),
            }

    def _item_lock(self, item_id: str) -> threading.RLock:
        """The lock of one image: every request on it holds it, so two tabs on one image take
        turns, two tabs on two images never wait for each other, and an image is encoded
        once however many requests ask for it."""
        with self._lock:
            return self._locks.setdefault(item_id, threading.RLock())

    def _document(self, item: ImageItem, loaded: Loaded) -> Document:
        with self._lock:
            document = self._documents.get(item.id)
        if document is None:
            size = (int(loaded.rgb.shape[0]), int(loaded.rgb.shape[1]))
            document = Document(item.key, size, self._item_lock(item.id))
            record = self.records.load(item.key)
            if record is not None:
                document.load_record(record)
            with self._lock:
                self._documents[item.id] = document
        return document

    def _load(self, item: ImageItem) -> Loaded:
        """The cached picture and embedding; the caller holds the image's lock."""
        with self._lock:
            loaded = self._loaded.get(item.id)
            if loaded is not None:
                self._loaded.move_to_end(item.id)
                return loaded
        rgb = self.images.load(item)
        start = time.perf_counter()
        embedding = self.sam.embed(rgb)
        loaded = Loaded(rgb, embedding, (time.perf_counter() - start) * 1000)
        self._warm_up(embedding)
        with self._lock:
            self._loaded[item.id] = loaded
            evicted = []
            while len(self._loaded) > self.cache_size:
                gone, _ = self._loaded.popitem(last=False)
                evicted += [self._documents[gone]] if gone in self._documents else []
        for document in evicted:
            # only a memory saving: skipped when a request holds that image (no lock waits on
            # another while holding its own, so two evicting loads cannot deadlock)
            if document.lock.acquire(blocking=False):
                try:
                    document.editor.compact()
                finally:
                    document.lock.release()
        return loaded

    def _warm_up(self, embedding: ImageEmbedding) -> None:
        """Run each decoder configuration once: the first call of each takes ~0.5 s on CPU
        (one-off kernel set-up), which would otherwise land on the user's first clicks."""
        if self._warm:
            return
        from composeseg.pipelines.app.editor import Step

        height, width = embedding.original_size
        step = predict_step(self.sam, embedding, ((width / 2, height / 2, 1),), None, Step())
        box = (0.0, 0.0, width / 2, height / 2)
        predict_step(self.sam, embedding, ((width / 2, height / 2, 1),), box, step)
        self._warm = True

    def _open_document(self, image_id: str) -> tuple[Document, Loaded]:
        """The open image's document and embedding (encoded again if the LRU dropped it)."""
        item = self.images.get(image_id)
        with self._lock:
            document = self._documents.get(item.id)
        if document is None:
            raise NotFound(f"image {image_id!r} is not open: POST /api/images/{image_id}/open")
        with document.lock:
            return document, self._load(item)

    # -- the object being drawn -----------------------------------------------------------

    def prompt(self, image_id: str, point: Any = None, label: Any = None, box: Any = None) -> dict:
        """Add a click (``point`` [x, y] pixels, ``label`` 1 on / 0 off) or a box, decode."""
        document, loaded = self._open_document(image_id)
        with document.lock:
            start = time.perf_counter()
            current = document.editor.current
            points, new_box = next_prompts(current, point, label, box, size=document.size)
            step = predict_step(self.sam, loaded.embedding, points, new_box, current)
            document.editor.push(step)
            return {"editor": document.editor.state(), "server_ms": _ms(start)}

    def edit(self, image_id: str, action: str, candidate: Any = None) -> dict[str, Any]:
        """``undo``, ``redo``, ``clear`` or ``select`` (a candidate index)."""
        document, loaded = self._open_document(image_id)
        with document.lock:
            editor = document.editor
            if action == "select":
                full_mask(self.sam, loaded.embedding, editor.select(candidate), candidate)
            elif action in ("undo", "redo", "clear"):
                getattr(editor, action)()
            else:
                raise ValueError(f"unknown action {action!r}")
            return {"editor": editor.state()}

    def accept(self, image_id: str, class_name: Any) -> dict[str, Any]:
        """The selected candidate becomes an object named ``class_name``; a new one begins."""
        document, loaded = self._open_document(image_id)
        name = _class_name(class_name)
        with document.lock:
            editor = document.editor
            logits = editor.current.selected_logits()
            if logits is None:
                raise ValueError("there is no mask to accept: click on an object first")
            import torch

            mask = self.sam.masks_from_logits(
                torch.from_numpy(logits[None, None]), loaded.embedding
            )
            score = float(editor.current.scores[editor.current.selected])
            item = document.add(
                mask[0, 0],
                class_name=name,
                score=score,
                source="click",
                accepted=True,
                replace_id=editor.origin_id,
            )
            self.records.add_labels([name])
            editor.reset()
            labels = list(self.records.labels)
            return {"object": item.to_json(), "labels": labels, **document.to_json()}

    # -- objects ------------------------------------------------------------------------

    def update_object(self, image_id: str, object_id: int, class_name: Any, accept: Any) -> dict:
        document, _ = self._open_document(image_id)
        name = None if class_name is None else _class_name(class_name)
        if not isinstance(accept, bool):
            raise ValueError(f"accept must be true or false, got {accept!r}")
        with document.lock:
            if name is None and accept and not document.get(object_id).class_name:
                name = "object"  # a proposal nobody named
            document.update(object_id, class_name=name, accept=accept)
            self.records.add_labels([name] if name else [])
            return {"labels": list(self.records.labels), **document.to_json()}

    def delete_object(self, image_id: str, object_id: int) -> dict[str, Any]:
        document, _ = self._open_document(image_id)
        with document.lock:
            document.delete(object_id)
            return document.to_json()

    def refine_object(self, image_id: str, object_id: int) -> dict[str, Any]:
        """Start editing an object again, from its box; accepting replaces it."""
        document, loaded = self._open_document(image_id)
        with document.lock:
            item = document.get(object_id)
            document.editor.reset(origin_id=object_id)
            _, box = next_prompts(document.editor.current, box=list(item.bbox), size=document.size)
            document.editor.push(
                predict_step(self.sam, loaded.embedding, (), box, document.editor.current)
            )
            return {"class_name": item.class_name, **document.to_json()}

    # -- pipelines ----------------------------------------------------------------------

    def run_pipeline(self, image_id: str, name: str, queries: Any = None) -> dict[str, Any]:
        """``everything``, ``detector`` or ``text`` (``queries``: a list of texts); the masks
        become proposals, replacing that pipeline's earlier ones."""
        document, loaded = self._open_document(image_id)
        start = time.perf_counter()
        detections = self._pipeline(name, queries, loaded, self.images.get(image_id).path)
        with document.lock:
            added = document.add_detections(detections, name)
            return {"added": len(added), "server_ms": _ms(start), **document.to_json()}

    def _pipeline(self, name: str, queries: Any, loaded: Loaded, path: Path) -> sv.Detections:
        rgb, embedding = loaded.rgb, loaded.embedding
        if name == "everything":
            from composeseg.pipelines.amg import AutomaticMaskGenerator

            amg = AutomaticMaskGenerator(self.sam, **self.amg_options)
            return amg.job().predict(rgb, None, embedding)
        if name == "detector":
            if self.detector is None:
                raise ValueError("no detector: start the app with --detector SPEC")
            from composeseg.pipelines.instance import InstanceSegmentation

            pipe = InstanceSegmentation(self.sam, self.detector, **self.instance_options)
            return pipe.job().predict(rgb, path, embedding)
        if name == "text":
            texts = _queries(queries)
            return self._text_pipeline().job(texts).predict(rgb, None, embedding)
        raise NotFound(f"unknown pipeline {name!r} (everything, detector, text)")

    def _text_pipeline(self) -> TextSegmentation:
        if self.grounder is None and self.matcher is None:
            raise ValueError("no text route: start the app with --grounder MODEL")
        if self._text is None:
            from composeseg.pipelines.text import TextSegmentation

            self._text = TextSegmentation(self.sam, grounder=self.grounder, matcher=self.matcher)
        return self._text

    # -- saving ---------------------------------------------------------------------------

    def save(self, image_id: str) -> dict[str, Any]:
        """Write the accepted objects (see :class:`~composeseg.pipelines.app.store.RecordStore`)."""
        import supervision as sv

        from composeseg import rle
        from composeseg.coco import single_image_payload

        item = self.images.get(image_id)
        document, _ = self._open_document(image_id)
        with document.lock:
            objects = document.accepted()
            names = np.array([o.class_name for o in objects], dtype=str)
            rles = np.empty(len(objects), dtype=object)
            rles[:] = [o.rle for o in objects]
            detections = sv.Detections(
                xyxy=np.array([o.bbox for o in objects], np.float32).reshape(-1, 4),
                confidence=np.array([o.score for o in objects], np.float32),
                class_id=np.array([self.records.category_id(n) for n in names], np.int64),
                data={
                    "class_name": names,
                    "rle": rles,
                    "source": np.array([o.source for o in objects], dtype=str),
                },
            )
            payload = single_image_payload(detections, item.key, document.size)
            masks = [rle.decode(o.rle) for o in objects]
            files = self.records.save(item.key, payload, masks)
            document.dirty = False
            return {
                "saved": len(objects),
                "files": [p.relative_to(self.out).as_posix() for p in files],
                "dirty": False,
            }


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 2)


def _class_name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        raise ValueError(
            f"class_name must be a non-empty text of at most 200 characters, got {value!r}"
        )
    return value.strip()


def _queries(value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not (isinstance(value, Sequence) and value and all(isinstance(q, str) for q in value)):
        raise ValueError(f"queries must be a text or a list of texts, got {value!r}")
    return list(value)

"""COCO-format boxes -> ``Prompts``: ground truth as oracle prompts, or a detections file.

Prompting SAM with the ground-truth boxes of a COCO dataset is the standard way to evaluate a
promptable segmenter (SAM paper §7.4 reports both detector and oracle boxes). A COCO *results*
file (a list of ``{"image_id", "category_id", "bbox", "score"}``) works the same way, with the
dataset file supplying image names and categories.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from composeseg.adapters.options import PromptOptions, build_prompts, resolve_options
from composeseg.coco import check_dataset, load_json
from composeseg.prompts import Prompts
from composeseg.rle import decode_segmentation

CocoSource = str | os.PathLike | Mapping[str, Any] | list


def _name(source: CocoSource | None, fallback: str) -> str:
    return fallback if source is None or isinstance(source, (Mapping, list)) else str(source)


class CocoBoxes:
    """Per-image box prompts from a COCO dataset or a COCO results file.

    A detector for :class:`~composeseg.pipelines.InstanceSegmentation`: it looks images up by
    file name (``detect_file``), or by image id / file name through :meth:`prompts`.

    Args:
        annotations: a COCO dataset (dict with ``images``, ``annotations``, ``categories``) or
            a results list, as a path or an already-loaded object.
        dataset: the COCO dataset the results refer to (image names, sizes, categories);
            required when ``annotations`` is a results list.
        options, option_overrides: :class:`~composeseg.adapters.PromptOptions`. Ground truth
            has no scores: every box gets confidence 1.

    Crowd annotations (``iscrowd=1``) are skipped: COCO evaluation ignores them.
    """

    def __init__(
        self,
        annotations: CocoSource,
        *,
        dataset: CocoSource | None = None,
        options: PromptOptions | None = None,
        **option_overrides: Any,
    ) -> None:
        loaded = load_json(annotations, "COCO annotation file")
        if isinstance(loaded, list):
            if dataset is None:
                raise ValueError("a COCO results list needs dataset= (image names, categories)")
            records, meta = loaded, load_json(dataset, "COCO dataset file")
        elif isinstance(loaded, Mapping) and "annotations" in loaded:
            records = loaded["annotations"]
            meta = load_json(dataset, "dataset") if dataset else loaded
        else:
            raise ValueError("expected a COCO dataset (with 'annotations') or a results list")
        if not isinstance(meta, Mapping) or "images" not in meta:
            raise ValueError("the COCO dataset has no 'images' list")
        name = _name(annotations, "the COCO annotations")
        if not isinstance(records, list):
            raise ValueError(f"{name}: 'annotations' must be a list")
        # the boxes against the dataset's images: every field this class reads, checked once
        check_dataset({**meta, "annotations": records}, name, need="bbox")
        self.options = resolve_options(options, option_overrides)
        self.images: dict[int, dict[str, Any]] = {int(im["id"]): im for im in meta["images"]}
        self.categories: dict[int, str] = {
            int(c["id"]): str(c.get("name", c["id"])) for c in meta.get("categories", [])
        }
        self._by_name: dict[str, int] = {}
        for image_id, image in self.images.items():
            name = str(image.get("file_name", image_id))
            self._by_name[name] = image_id
            self._by_name.setdefault(Path(name).name, image_id)
        self._records: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for i, record in enumerate(records):
            try:
                image_id = int(record["image_id"])
            except (KeyError, TypeError, ValueError):
                raise ValueError(f"annotation {i} has no valid image_id: {record!r}") from None
            if image_id not in self.images:
                raise ValueError(f"annotation {i}: image_id {image_id} is not in the dataset")
            if not record.get("iscrowd", 0):
                self._records[image_id].append(record)

    def __repr__(self) -> str:
        count = sum(len(v) for v in self._records.values())
        return f"CocoBoxes({len(self.images)} images, {count} boxes)"

    def image_id(self, key: int | str | os.PathLike) -> int:
        """The image id for an id or a file name (full relative name or basename)."""
        if isinstance(key, (int, np.integer)):
            if int(key) not in self.images:
                raise ValueError(f"image id {key} is not in the COCO file")
            return int(key)
        name = str(key)
        for candidate in (name, Path(name).name):
            if candidate in self._by_name:
                return self._by_name[candidate]
        raise ValueError(f"image {name!r} is not in the COCO file")

    def prompts(self, key: int | str | os.PathLike) -> Prompts:
        """Box prompts for one image (by id or file name); no boxes give an empty ``Prompts``."""
        image_id = self.image_id(key)
        image = self.images[image_id]
        records = self._records.get(image_id, [])
        size = (int(image["height"]), int(image["width"])) if "height" in image else None
        boxes = np.array([_bbox(r, i) for i, r in enumerate(records)], np.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        scores = np.array([float(r.get("score", 1.0)) for r in records], np.float32)
        masks = None
        if self.options.points == "mask" and size is not None:
            masks = (
                np.stack([decode_segmentation(r.get("segmentation"), size) for r in records])
                if records
                else None
            )
        return build_prompts(
            boxes,
            scores=scores,
            class_ids=[int(r["category_id"]) for r in records] if records else np.zeros(0),
            names=self.categories or None,
            masks=masks,
            image_size=size,
            options=self.options,
            source=f"COCO image {image_id}",
        )

    def detect_file(self, path: str | os.PathLike, image: np.ndarray | None = None) -> Prompts:
        """Detector protocol for files: the boxes of the image whose file name is ``path``."""
        return self.prompts(path)

    def __call__(self, image: Any) -> Prompts:
        if isinstance(image, (str, os.PathLike, int)):
            return self.prompts(image)
        raise TypeError(
            "CocoBoxes looks images up by file name or id; pass a path, not pixels "
            "(InstanceSegmentation does this for you when given image paths)"
        )

    def image_paths(self, image_dir: str | os.PathLike) -> list[Path]:
        """Paths of all dataset images under ``image_dir``, in image-id order."""
        root = Path(image_dir)
        return [root / str(self.images[i]["file_name"]) for i in sorted(self.images)]


def _bbox(record: Mapping[str, Any], index: int) -> list[float]:
    bbox = record.get("bbox")
    if bbox is None or len(bbox) != 4:
        raise ValueError(f"annotation {index} has no [x, y, w, h] bbox: {bbox!r}")
    return [float(v) for v in bbox]

"""Export synthetic scenes as a COCO instance-segmentation dataset.

Masks are stored as compressed RLE (pycocotools), so ``pycocotools.coco.COCO`` and
``pycocotools.mask.decode`` read them back exactly. Every file is written to a temporary
name in its final directory and then ``os.replace``-d, so a crash never leaves a truncated
PNG or JSON under the final name.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from composeseg.io import write_image, write_json
from composeseg.rle import encode_mask
from composeseg.synthetic.scenes import Scene
from composeseg.synthetic.shapes import KINDS


def coco_categories() -> list[dict[str, Any]]:
    """COCO ``categories``: ids ``1..len(KINDS)`` in ``KINDS`` order, supercategory "shape"."""
    return [{"id": i + 1, "name": k, "supercategory": "shape"} for i, k in enumerate(KINDS)]


def scenes_to_coco(
    scenes: Iterable[Scene],
    image_dir: str | os.PathLike[str],
    *,
    file_pattern: str = "{seed:08d}.png",
) -> dict[str, Any]:
    """Write each scene's image as PNG into ``image_dir`` and return a COCO dict.

    Args:
        scenes: consumed once; may be a lazy ``generate_scenes`` iterator.
        image_dir: created if missing.
        file_pattern: ``str.format`` pattern for file names; fields ``seed`` and ``index``
            (0-based position in ``scenes``). Must yield distinct names.

    Returns:
        ``{"info", "images", "annotations", "categories"}``. Images get ids ``1..M`` plus an
        extra ``seed`` key; ``file_name`` is relative to ``image_dir``. Annotations carry
        RLE ``segmentation`` (``counts`` as str), ``area`` (visible pixels), ``bbox`` (xywh,
        pixels), ``iscrowd`` 0 and the extra keys ``caption``, ``color``, ``instance_id``.

    Raises:
        ValueError: if two scenes map to the same file name.
    """
    image_dir = Path(image_dir)
    image_dir.mkdir(parents=True, exist_ok=True)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, scene in enumerate(scenes):
        file_name = file_pattern.format(seed=scene.seed, index=index)
        if file_name in seen:
            raise ValueError(f"file_pattern gives duplicate file name {file_name!r}")
        seen.add(file_name)
        write_image(image_dir / file_name, scene.image)
        image_id = index + 1
        images.append(
            {
                "id": image_id,
                "file_name": file_name,
                "height": scene.height,
                "width": scene.width,
                "seed": scene.seed,
            }
        )
        for inst in scene.instances:
            x1, y1, x2, y2 = (float(v) for v in inst.box)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": inst.category_id,
                    "segmentation": encode_mask(inst.mask),
                    "area": float(np.count_nonzero(inst.mask)),
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "iscrowd": 0,
                    "caption": inst.caption,
                    "color": inst.color,
                    "instance_id": inst.instance_id,
                }
            )
    return {
        "info": {"description": "composeseg synthetic shapes"},
        "images": images,
        "annotations": annotations,
        "categories": coco_categories(),
    }


def write_coco(
    scenes: Iterable[Scene],
    out_dir: str | os.PathLike[str],
    *,
    file_pattern: str = "{seed:08d}.png",
) -> Path:
    """Write ``out_dir/images/*.png`` and ``out_dir/annotations.json``; return the JSON path.

    ``file_name`` entries are relative to ``out_dir/images``.
    """
    out_dir = Path(out_dir)
    data = scenes_to_coco(scenes, out_dir / "images", file_pattern=file_pattern)
    json_path = out_dir / "annotations.json"
    write_json(json_path, data)
    return json_path

"""Tests for composeseg.synthetic.coco: COCO export round-trips through pycocotools."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from composeseg.synthetic import KINDS, SceneConfig, generate_scenes, scenes_to_coco, write_coco
from composeseg.synthetic.scenes import Scene

CONFIG = SceneConfig(height=96, width=128, min_objects=3, max_objects=6)


def test_write_coco_round_trips_through_pycocotools(tmp_path: Path) -> None:
    scenes = list(generate_scenes([3, 11, 42], CONFIG))
    json_path = write_coco(iter(scenes), tmp_path / "ds")
    assert json_path == tmp_path / "ds" / "annotations.json"
    assert sorted(p.name for p in (tmp_path / "ds").iterdir()) == ["annotations.json", "images"]
    assert sorted(p.name for p in (tmp_path / "ds" / "images").iterdir()) == [
        "00000003.png",
        "00000011.png",
        "00000042.png",
    ]  # and no temporary files left behind

    coco = COCO(str(json_path))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(KINDS)
    assert {c["supercategory"] for c in coco.loadCats(coco.getCatIds())} == {"shape"}
    for image_id, scene in zip(sorted(coco.getImgIds()), scenes, strict=True):
        info = coco.loadImgs(image_id)[0]
        assert (info["height"], info["width"], info["seed"]) == (96, 128, scene.seed)
        png = np.asarray(Image.open(tmp_path / "ds" / "images" / info["file_name"]))
        assert np.array_equal(png, scene.image)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=image_id))
        assert len(anns) == len(scene.instances)
        for ann, inst in zip(anns, scene.instances, strict=True):
            assert isinstance(ann["segmentation"]["counts"], str)
            assert np.array_equal(coco.annToMask(ann).astype(bool), inst.mask)
            assert ann["area"] == inst.area
            x1, y1, x2, y2 = inst.box.tolist()
            assert ann["bbox"] == [x1, y1, x2 - x1, y2 - y1]
            assert ann["bbox"] == mask_utils.toBbox(ann["segmentation"]).tolist()
            assert coco.loadCats(ann["category_id"])[0]["name"] == inst.kind
            assert (ann["caption"], ann["color"], ann["instance_id"], ann["iscrowd"]) == (
                inst.caption,
                inst.color,
                inst.instance_id,
                0,
            )
    ann_ids = [a["id"] for a in coco.dataset["annotations"]]
    assert ann_ids == list(range(1, len(ann_ids) + 1))


def test_scenes_to_coco_pattern_and_empty_scene(tmp_path: Path) -> None:
    empty = Scene(image=np.zeros((20, 30, 3), np.uint8), instances=(), seed=5)
    data = scenes_to_coco([empty], tmp_path, file_pattern="img_{index}_{seed}.png")
    assert data["images"][0]["file_name"] == "img_0_5.png"
    assert data["annotations"] == []
    assert (tmp_path / "img_0_5.png").is_file()
    json.dumps(data)  # plain JSON types only


def test_duplicate_file_names_raise(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="duplicate file name"):
        scenes_to_coco(generate_scenes([1, 1], CONFIG), tmp_path)

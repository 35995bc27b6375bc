"""COCO (RLE), YOLO-seg and Pascal VOC export, read back with pycocotools / supervision."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import supervision as sv
from PIL import Image
from pycocotools.coco import COCO

from composeseg.coco import annotations_to_detections
from composeseg.pipelines import ImageResult
from composeseg.pipelines.export import (
    to_coco,
    write_coco,
    write_pascal_voc,
    write_yolo_seg,
)

H, W = 60, 80


def result(name: str, path: Path | None = None) -> ImageResult:
    masks = np.zeros((2, H, W), bool)
    masks[0, 10:40, 10:40] = True
    masks[0, 20:30, 20:30] = False  # a hole: RLE keeps it
    masks[1, 45:58, 50:75] = True
    detections = sv.Detections(
        xyxy=np.array([[10, 10, 40, 40], [50, 45, 75, 58]], np.float32),
        mask=masks,
        confidence=np.array([0.8, 0.3], np.float32),
        class_id=np.array([17, 3]),
        data={
            "class_name": np.array(["cat", "car"]),
            "detector_score": np.array([0.9, 0.5], np.float32),
            "mask_score": np.array([0.89, 0.6], np.float32),
        },
    )
    return ImageResult(name, detections, (H, W), path)


def test_coco_round_trip_keeps_holes(tmp_path: Path) -> None:
    path = write_coco(tmp_path / "out.json", [result("a.png"), result("b.png")])
    coco = COCO(str(path))
    assert sorted(coco.getCatIds()) == [3, 17]
    assert coco.loadCats(17)[0]["name"] == "cat"
    ann = coco.loadAnns(coco.getAnnIds(imgIds=[1], catIds=[17]))[0]
    assert ann["iscrowd"] == 0 and ann["area"] == 30 * 30 - 10 * 10
    original = result("a.png").detections
    np.testing.assert_array_equal(coco.annToMask(ann).astype(bool), original.mask[0])
    payload = json.loads(path.read_text())
    back = annotations_to_detections(
        [a for a in payload["annotations"] if a["image_id"] == 1], (H, W)
    )
    np.testing.assert_array_equal(back.mask, original.mask)
    np.testing.assert_allclose(back.xyxy, original.xyxy)
    np.testing.assert_allclose(back.confidence, original.confidence)
    assert back.data["class_name"].tolist() == ["cat", "car"]
    assert to_coco([result("a.png")], image_ids={"a.png": 42})["images"][0]["id"] == 42


def test_yolo_seg_and_voc_round_trip(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(images / "a.png")
    results = [result("a.png", images / "a.png")]
    write_yolo_seg(tmp_path / "yolo", results)
    yolo = sv.DetectionDataset.from_yolo(
        str(images),
        str(tmp_path / "yolo" / "labels"),
        str(tmp_path / "yolo" / "data.yaml"),
        force_masks=True,
    )
    assert yolo.classes == ["car", "cat"]  # contiguous ids 0..C-1, ordered by original id
    _, _, back = yolo[0]
    assert sorted(back.class_id.tolist()) == [0, 1]
    original = results[0].detections
    for mask, name in zip(original.mask, ["cat", "car"], strict=True):
        j = int(np.flatnonzero(back.class_id == yolo.classes.index(name))[0])
        iou = (mask & back.mask[j]).sum() / (mask | back.mask[j]).sum()
        assert iou > 0.8  # polygons: outlines survive; YOLO-seg cannot hold holes

    write_pascal_voc(tmp_path / "voc", results)
    voc = sv.DetectionDataset.from_pascal_voc(str(images), str(tmp_path / "voc"))
    _, _, boxes = voc[0]
    names = [voc.classes[i] for i in boxes.class_id]
    assert sorted(names) == ["car", "cat"]
    np.testing.assert_allclose(np.sort(boxes.xyxy, axis=0), np.sort(original.xyxy, axis=0), atol=2)


def test_export_without_image_files(tmp_path: Path) -> None:
    write_yolo_seg(tmp_path / "yolo", [result("x.png")], classes=["cat", "car", "dog"])
    text = (tmp_path / "yolo" / "labels" / "x.txt").read_text().splitlines()
    assert sorted(line.split()[0] for line in text) == ["0", "1"]

"""Plain box arrays in every convention, normalised and letterboxed."""

from __future__ import annotations

import numpy as np
import pytest

from composeseg.adapters import Letterbox, convert_boxes, from_boxes

XYXY = np.array([[10, 20, 50, 60], [0, 0, 100, 40]], np.float32)
SIZE = (80, 100)  # (H, W)


@pytest.mark.parametrize(
    ("fmt", "boxes"),
    [
        ("xyxy", XYXY),
        ("xywh", [[10, 20, 40, 40], [0, 0, 100, 40]]),
        ("cxcywh", [[30, 40, 40, 40], [50, 20, 100, 40]]),
        ("xyxyn", [[0.1, 0.25, 0.5, 0.75], [0, 0, 1, 0.5]]),
        ("xywhn", [[0.1, 0.25, 0.4, 0.5], [0, 0, 1, 0.5]]),
        ("cxcywhn", [[0.3, 0.5, 0.4, 0.5], [0.5, 0.25, 1, 0.5]]),
    ],
)
def test_formats_agree(fmt: str, boxes: list) -> None:
    np.testing.assert_allclose(convert_boxes(boxes, fmt, SIZE), XYXY, atol=1e-4)
    p = from_boxes(boxes, format=fmt, image_size=SIZE)
    np.testing.assert_allclose(p.boxes, XYXY, atol=1e-4)


def test_single_box_and_empty() -> None:
    assert from_boxes([1, 2, 3, 4], format="xyxy").boxes.shape == (1, 4)
    assert len(from_boxes(np.zeros((0, 4)), format="xywh")) == 0
    assert len(from_boxes([], format="xyxy", scores=[])) == 0


def test_letterbox_maps_back_to_original() -> None:
    # a 480x640 (H, W) image letterboxed to 640x640: ratio 1, 80 px bands top and bottom
    letterbox = Letterbox(input_size=(640, 640))
    p = from_boxes(
        [[100, 180, 200, 280]], format="xyxy", image_size=(480, 640), letterbox=letterbox
    )
    np.testing.assert_allclose(p.boxes, [[100, 100, 200, 200]])
    # 960x1280 scaled by 0.5 into the same input: input box (288, 288, 352, 352) - pad (0, 80)
    explicit = Letterbox(input_size=(640, 640), ratio=0.5, pad=(0, 80))
    p = from_boxes(
        [[0.5, 0.5, 0.1, 0.1]], format="cxcywhn", image_size=(960, 1280), letterbox=explicit
    )
    np.testing.assert_allclose(p.boxes, [[576, 416, 704, 544]], atol=1e-3)


@pytest.mark.parametrize(
    ("letterbox", "message"),
    [
        (Letterbox(input_size=(640, 640), ratio=2.0), "does not fit"),
        (Letterbox(input_size=(640, 640), ratio=1.0, pad=(0, 200)), "does not fit"),
        (Letterbox(input_size=(640, 640), ratio=-1.0), "ratio must be a positive"),
        (Letterbox(input_size=(0, 640)), "input_size must be positive"),
    ],
)
def test_bad_letterbox(letterbox: Letterbox, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        from_boxes([[0, 0, 10, 10]], format="xyxy", image_size=(480, 640), letterbox=letterbox)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"format": "yxyx"}, "format must be one of"),
        ({"format": "xyxyn"}, "pass image_size"),
        ({"format": "xyxy", "letterbox": Letterbox((64, 64))}, "needs image_size"),
        ({"format": "xyxy", "image_size": (5, 5)}, "outside the 5x5 image"),
    ],
)
def test_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        from_boxes([[10, 10, 20, 20]], **kwargs)


def test_names_list_and_options() -> None:
    p = from_boxes(
        XYXY,
        format="xyxy",
        scores=[0.3, 0.8],
        class_ids=[1, 0],
        names=["person", "car"],
        classes=["person"],
    )
    assert p.data["class_name"].tolist() == ["person"]
    np.testing.assert_allclose(p.boxes, XYXY[1:])

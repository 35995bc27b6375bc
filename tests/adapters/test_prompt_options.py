"""Shared adapter options: filters, top-k, padding, box -> point, and bad detector columns."""

from __future__ import annotations

import numpy as np
import pytest

from composeseg.adapters import PromptOptions, build_prompts
from composeseg.prompts import Prompts

BOXES = np.array([[0, 0, 10, 10], [20, 20, 40, 30], [5, 5, 15, 25]], np.float32)
SCORES = np.array([0.9, 0.2, 0.6], np.float32)
IDS = np.array([0, 1, 0])
NAMES = {0: "cat", 1: "dog", 2: "bird"}


def prompts(**options: object) -> Prompts:
    return build_prompts(
        BOXES,
        scores=SCORES,
        class_ids=IDS,
        names=NAMES,
        image_size=(50, 50),
        options=PromptOptions(**options),  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("options", "expected_scores"),
    [
        ({}, [0.9, 0.6, 0.2]),  # sorted by score
        ({"min_score": 0.5}, [0.9, 0.6]),
        ({"top_k": 1}, [0.9]),
        ({"top_k": 0}, []),
        ({"classes": ["dog"]}, [0.2]),
        ({"classes": [0]}, [0.9, 0.6]),
        ({"classes": ["dog", 0]}, [0.9, 0.6, 0.2]),
        ({"classes": ["bird"]}, []),  # known to the detector, absent here
        ({"classes": "cat", "min_score": 0.7}, [0.9]),
    ],
)
def test_filters(options: dict, expected_scores: list[float]) -> None:
    p = prompts(**options)
    np.testing.assert_allclose(p.confidence, expected_scores)
    assert len(p.data.get("class_name", [])) == len(expected_scores)


def test_names_and_ids_ride_along() -> None:
    p = prompts()
    assert p.class_id.tolist() == [0, 0, 1]
    assert p.data["class_name"].tolist() == ["cat", "cat", "dog"]


def test_padding_is_clipped_to_image() -> None:
    p = prompts(box_padding=2.0)
    np.testing.assert_allclose(p.boxes[0], [0, 0, 12, 12])
    p = prompts(box_padding_ratio=0.5)
    np.testing.assert_allclose(p.boxes[2], [10, 15, 50, 35])  # [20,20,40,30] grown by 10, 5


def test_center_points_with_and_without_boxes() -> None:
    p = prompts(points="center")
    np.testing.assert_allclose(p.points[:, 0], [[5, 5], [10, 15], [30, 25]])
    assert p.point_labels.tolist() == [[1], [1], [1]]
    assert p.boxes is not None
    p = prompts(points="center", keep_boxes=False)
    assert p.boxes is None
    np.testing.assert_allclose(p.data["detector_xyxy"][0], [0, 0, 10, 10])


def test_mask_point_lies_inside_a_ring() -> None:
    yy, xx = np.mgrid[:40, :40]
    radius = np.hypot(yy - 20, xx - 20)
    ring = (radius > 10) & (radius < 16)  # the box centre is in the hole
    p = build_prompts([[4, 4, 36, 36]], masks=ring[None], options=PromptOptions(points="mask"))
    x, y = p.points[0, 0]
    assert ring[int(y), int(x)]
    assert not ring[20, 20]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"boxes": [[0, 0, np.nan, 5]]}, "not finite"),
        ({"boxes": [[5, 5, 1, 1]]}, "inverted"),
        ({"boxes": [[0, 0, 5, 5]], "scores": [np.nan]}, r"scores\[0\] = nan"),
        ({"boxes": [[60, 60, 70, 70]], "image_size": (50, 50)}, "outside the 50x50 image"),
        ({"boxes": [[0, 0, 5, 5]], "scores": [0.5, 0.4]}, "2 entries for 1 boxes"),
        ({"boxes": [[0, 0, 5, 5]], "class_ids": [0.5]}, "not an integer"),
        ({"boxes": [[0, 0, 5, 5, 1]]}, r"shape \(N, 4\)"),
        (
            {
                "boxes": [[0, 0, 5, 5]],
                "class_ids": [0],
                "names": NAMES,
                "options": PromptOptions(classes=["cta"]),
            },
            "unknown class name 'cta'",
        ),
        ({"boxes": [[0, 0, 5, 5]], "options": PromptOptions(points="mask")}, "needs detector"),
    ],
)
def test_bad_columns_raise_naming_the_value(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_prompts(**kwargs)


@pytest.mark.parametrize(
    "options",
    [
        {"top_k": -1},
        {"box_padding": -1},
        {"points": "corner"},
        {"keep_boxes": False},
        {"min_score": float("nan")},
        {"classes": [1.5]},
    ],
)
def test_bad_options(options: dict) -> None:
    with pytest.raises(ValueError):
        PromptOptions(**options)


def test_empty_input_gives_empty_prompts() -> None:
    p = build_prompts(
        np.zeros((0, 4)),
        scores=np.zeros(0),
        class_ids=np.zeros(0),
        names=NAMES,
        options=PromptOptions(classes=["cat"], points="center"),
    )
    assert len(p) == 0 and p.is_empty


def test_boxes_partly_outside_are_clipped() -> None:
    p = build_prompts([[-5, -5, 20, 70]], image_size=(50, 40))
    np.testing.assert_allclose(p.boxes, [[0, 0, 20, 50]])

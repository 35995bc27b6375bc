"""Big decodes report progress and can return RLE instead of a dense stack (issue 20, 12)."""

from __future__ import annotations

import numpy as np
import pytest

from composeseg import rle


@pytest.fixture
def many_boxes() -> np.ndarray:
    rng = np.random.default_rng(0)
    corners = rng.uniform(0, 60, (40, 2))
    return np.concatenate([corners, corners + rng.uniform(5, 30, (40, 2))], 1).astype(np.float32)


def test_rle_output_equals_the_dense_masks(tiny_sam: object, many_boxes: np.ndarray) -> None:
    image = np.random.default_rng(1).integers(0, 255, (96, 120, 3), np.uint8)
    embedding = tiny_sam.embed(image)  # type: ignore[attr-defined]
    dense = tiny_sam.segment(embedding, boxes=many_boxes, multimask=True)  # type: ignore[attr-defined]
    compact = tiny_sam.segment(  # type: ignore[attr-defined]
        embedding, boxes=many_boxes, multimask=True, output="rle"
    )
    assert compact.masks is None and len(compact) == 40 and compact.num_candidates == 3
    decoded = np.stack([[rle.decode(r) for r in row] for row in compact.rles])
    assert np.array_equal(decoded, dense.masks)
    np.testing.assert_array_equal(compact.mask_boxes(), dense.mask_boxes())
    a, b = dense.to_detections(), compact.to_detections()
    assert b.mask is None and len(b.data["rle"]) == 40
    np.testing.assert_array_equal(a.xyxy, b.xyxy)
    np.testing.assert_array_equal(a.confidence, b.confidence)
    assert np.array_equal(np.stack([rle.decode(r) for r in b.data["rle"]]), a.mask)


def test_points_only_rle_detections_take_the_mask_boxes(tiny_sam: object) -> None:
    image = np.zeros((50, 60, 3), np.uint8)
    points, labels = [[[20, 20]], [[40, 30]]], [[1], [1]]
    dense = tiny_sam.segment(image, points=points, point_labels=labels)  # type: ignore[attr-defined]
    compact = tiny_sam.segment(  # type: ignore[attr-defined]
        image, points=points, point_labels=labels, output="rle"
    )
    np.testing.assert_array_equal(dense.to_detections().xyxy, compact.to_detections().xyxy)


def test_progress_counts_every_object(
    tiny_sam: object, many_boxes: np.ndarray, capsys: pytest.CaptureFixture[str]
) -> None:
    tiny_sam.segment(np.zeros((96, 120, 3), np.uint8), boxes=many_boxes, progress=True)  # type: ignore[attr-defined]
    err = capsys.readouterr().err
    assert "segment" in err and "80/80" in err  # decoder chunks, then upsampling slices


def test_unknown_output_is_refused(tiny_sam: object) -> None:
    with pytest.raises(ValueError, match="output must be 'mask' or 'rle'"):
        tiny_sam.segment(np.zeros((20, 20, 3), np.uint8), boxes=[1, 1, 9, 9], output="png")  # type: ignore[attr-defined]

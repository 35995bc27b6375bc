"""composeseg.crops: tight boxes, square boxes and the masked square crops fed to CLIP."""

from __future__ import annotations

import numpy as np
import pytest

from composeseg.crops import DEFAULT_FILL, mask_crops, square_boxes
from composeseg.geometry import tight_boxes
from composeseg.prediction import MaskPrediction
from composeseg.prompts import Prompts

RED = (230, 20, 20)


def _naive_box(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    if not len(xs):
        return [0.0, 0.0, 0.0, 0.0]
    return [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def _scene(h: int = 80, w: int = 100, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# ---------------------------------------------------------------- tight_boxes


@pytest.mark.parametrize(
    ("pixels", "expected"),
    [
        ([(3, 5)], [5, 3, 6, 4]),  # one pixel (y, x) -> (x, y, x + 1, y + 1)
        ([(0, 0)], [0, 0, 1, 1]),
        ([(9, 11)], [11, 9, 12, 10]),  # the last pixel: x2, y2 = W, H
        ([(2, 1), (7, 4)], [1, 2, 5, 8]),  # two separate pixels span one box
        ([], [0, 0, 0, 0]),  # empty mask -> zeros
    ],
)
def test_tight_boxes_pixel_convention(pixels: list[tuple[int, int]], expected: list[int]) -> None:
    mask = np.zeros((1, 10, 12), bool)
    for y, x in pixels:
        mask[0, y, x] = True
    boxes = tight_boxes(mask)
    assert boxes.dtype == np.float32 and boxes.shape == (1, 4)
    assert boxes[0].tolist() == expected


def test_tight_boxes_random_masks_match_naive_and_mask_prediction() -> None:
    rng = np.random.default_rng(1)
    masks = rng.random((6, 17, 23)) > 0.97
    masks[2] = False
    boxes = tight_boxes(masks)
    np.testing.assert_array_equal(boxes, [_naive_box(m) for m in masks])
    prediction = MaskPrediction(
        masks.reshape(3, 2, 17, 23),
        np.zeros((3, 2), np.float32),
        np.zeros((3, 2, 4, 4), np.float32),
        Prompts(points=np.zeros((3, 1, 2)), point_labels=np.ones((3, 1))),
        (17, 23),
    )
    np.testing.assert_array_equal(prediction.mask_boxes(), boxes.reshape(3, 2, 4))


def test_tight_boxes_no_masks() -> None:
    boxes = tight_boxes(np.zeros((0, 5, 5), bool))
    assert boxes.shape == (0, 4) and boxes.dtype == np.float32


# ---------------------------------------------------------------- square_boxes


@pytest.mark.parametrize(
    ("box", "expand", "side"),
    [
        ([10, 20, 30, 60], 1.0, 40),  # tall: side = height
        ([10, 20, 50, 30], 1.0, 40),  # wide: side = width
        ([10, 20, 30, 60], 1.5, 60),
        ([0, 0, 8, 8], 2.0, 16),
        ([5, 5, 5, 5], 1.0, 1),  # degenerate box: at least one pixel
    ],
)
def test_square_boxes_are_centred_squares(box: list[float], expand: float, side: float) -> None:
    square = square_boxes(np.array([box]), expand)
    assert square.dtype == np.float32 and square.shape == (1, 4)
    x0, y0, x1, y1 = square[0]
    assert x1 - x0 == pytest.approx(side) and y1 - y0 == pytest.approx(side)
    assert (x0 + x1) / 2 == pytest.approx((box[0] + box[2]) / 2)
    assert (y0 + y1) / 2 == pytest.approx((box[1] + box[3]) / 2)


def test_square_boxes_per_box_expand() -> None:
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10]], np.float32)
    square = square_boxes(boxes, np.array([1.0, 3.0]))
    np.testing.assert_allclose(square[:, 2] - square[:, 0], [10, 30])


@pytest.mark.parametrize("expand", [0.0, -1.0, float("nan"), float("inf")])
def test_square_boxes_bad_expand(expand: float) -> None:
    with pytest.raises(ValueError, match="expand"):
        square_boxes(np.array([[0, 0, 4, 4]]), expand)


# ---------------------------------------------------------------- mask_crops


def test_mask_crops_shape_dtype_and_fill_outside_the_mask() -> None:
    image = _scene()
    masks = np.zeros((3, 80, 100), bool)
    masks[0, 10:30, 20:50] = True
    masks[1, 40:75, 60:90] = True  # masks[2] stays empty
    crops = mask_crops(image, masks, size=24, fill=(1, 2, 3))
    assert crops.shape == (3, 24, 24, 3) and crops.dtype == np.uint8
    assert (crops[2] == (1, 2, 3)).all()  # an empty mask gives a crop of fill
    # expand 1.5: a quarter-margin of fill all round the object
    for crop in crops[:2]:
        assert (crop[:3] == (1, 2, 3)).all() and (crop[-3:] == (1, 2, 3)).all()
        assert (crop[:, :3] == (1, 2, 3)).all() and (crop[:, -3:] == (1, 2, 3)).all()
    kept = mask_crops(image, masks[:1], size=24, blank_background=False, fill=(1, 2, 3))
    assert not (kept[0][:3] == (1, 2, 3)).all(axis=-1).all()  # the real background shows


def test_blanking_replaces_every_pixel_outside_the_mask() -> None:
    image = _scene(60, 60)
    mask = np.zeros((1, 60, 60), bool)
    mask[0, 20:40, 20:40] = True
    # expand 1 at the object's own size: the crop is the image window, pixel for pixel
    window = mask_crops(image, mask, size=20, expand=1.0, blank_background=False)[0]
    np.testing.assert_array_equal(window, image[20:40, 20:40])
    ring = np.zeros((1, 60, 60), bool)
    ring[0, 20:40, 20:40] = True
    ring[0, 25:35, 25:35] = False  # a hole: blanked too
    blank = mask_crops(image, ring, size=20, expand=1.0, fill=(9, 8, 7))[0]
    np.testing.assert_array_equal(blank[5:15, 5:15], np.full((10, 10, 3), (9, 8, 7)))
    np.testing.assert_array_equal(blank[:5], image[20:25, 20:40])


@pytest.mark.parametrize("blank", [True, False])
def test_object_at_the_border_stays_centred(blank: bool) -> None:
    image = np.zeros((60, 80, 3), np.uint8)
    image[20:40, 0:10] = RED  # touches the left edge
    image[:, 10:] = (0, 200, 0)
    mask = np.zeros((1, 60, 80), bool)
    mask[0, 20:40, 0:10] = True
    # box (0, 20, 10, 40): square side 20 * 1.5 = 30 centred on (5, 30) reaches x = -10
    crop = mask_crops(image, mask, size=30, expand=1.5, blank_background=blank)[0]
    assert (crop[:, :10] == DEFAULT_FILL).all()  # outside the image: fill, blanked or not
    assert (crop[5:25, 10:20] == RED).all()  # the object, in the middle
    assert (crop[15, 15] == RED).all()


@pytest.mark.parametrize(("size", "expand"), [(32, 1.5), (80, 2.0), (224, 1.5), (16, 1.2)])
def test_coloured_square_lands_in_the_centre(size: int, expand: float) -> None:
    image = np.full((120, 160, 3), (0, 0, 255), np.uint8)
    image[40:60, 70:90] = RED
    mask = np.zeros((1, 120, 160), bool)
    mask[0, 40:60, 70:90] = True
    crop = mask_crops(image, mask, size=size, expand=expand)[0]
    c = size // 2
    assert (crop[c - 1 : c + 1, c - 1 : c + 1] == RED).all()
    pixels = crop.astype(float)
    red = np.linalg.norm(pixels - RED, axis=-1) < np.linalg.norm(pixels - DEFAULT_FILL, axis=-1)
    ys, xs = np.nonzero(red)
    # the red block is centred to within a pixel, and symmetric under flips
    assert abs((xs.min() + xs.max()) / 2 - (size - 1) / 2) <= 0.5
    assert abs((ys.min() + ys.max()) / 2 - (size - 1) / 2) <= 0.5
    np.testing.assert_array_equal(crop, crop[:, ::-1])
    np.testing.assert_array_equal(crop, crop[::-1])
    # its side is size / expand
    assert abs((xs.max() - xs.min() + 1) - size / expand) <= 2
    assert not (crop == (0, 0, 255)).all(-1).any()  # the blue background was blanked


def test_large_object_downsampled_stays_centred_and_flat() -> None:
    image = np.zeros((600, 600, 3), np.uint8)
    image[200:400, 200:400] = RED
    image[200:400:2, 200:400] = (20, 230, 20)  # stripes: area-averaged, not aliased
    mask = np.zeros((1, 600, 600), bool)
    mask[0, 200:400, 200:400] = True
    crop = mask_crops(image, mask, size=20, expand=2.0)[0]
    inner = crop[6:14, 6:14].reshape(-1, 3).astype(int)
    assert np.ptp(inner, axis=0).max() <= 3  # one flat mixed colour
    np.testing.assert_array_equal(crop, crop[:, ::-1])


def test_explicit_boxes_and_per_mask_expand() -> None:
    image = _scene()
    masks = np.zeros((2, 80, 100), bool)
    masks[:, 30:40, 30:40] = True
    near = mask_crops(image, masks, size=10, expand=np.array([1.0, 2.0]), blank_background=False)
    np.testing.assert_array_equal(near[0], image[30:40, 30:40])
    assert not np.array_equal(near[0], near[1])
    boxes = np.array([[30, 30, 40, 40], [0, 0, 100, 80]], np.float32)
    given = mask_crops(image, masks, size=10, expand=1.0, boxes=boxes, blank_background=False)
    np.testing.assert_array_equal(given[0], near[0])
    assert not np.array_equal(given[1], near[0])


@pytest.mark.parametrize(
    ("image", "masks", "size", "message"),
    [
        (np.zeros((10, 10), np.uint8), np.zeros((1, 10, 10), bool), 8, "image must be"),
        (np.zeros((10, 10, 4), np.uint8), np.zeros((1, 10, 10), bool), 8, "image must be"),
        (np.zeros((10, 10, 3), np.float32), np.zeros((1, 10, 10), bool), 8, "image must be"),
        (np.zeros((10, 10, 3), np.uint8), np.zeros((1, 10, 11), bool), 8, r"\(N, 10, 10\)"),
        (np.zeros((10, 10, 3), np.uint8), np.zeros((10, 10), bool), 8, "masks must be"),
        (np.zeros((10, 10, 3), np.uint8), np.zeros((1, 10, 10), bool), 0, "size"),
    ],
)
def test_mask_crops_bad_input(
    image: np.ndarray, masks: np.ndarray, size: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        mask_crops(image, masks, size=size)


def test_mask_crops_no_masks() -> None:
    crops = mask_crops(_scene(), np.zeros((0, 80, 100), bool), size=12)
    assert crops.shape == (0, 12, 12, 3) and crops.dtype == np.uint8

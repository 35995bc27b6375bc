"""Training crops: the zoom crop shows one whole object enlarged, as zoomed prompting does."""

from __future__ import annotations

import numpy as np
import pytest

from composeseg.synthetic import generate_scene
from composeseg.train.config import TrainConfig
from composeseg.train.data import MIN_MASK_PIXELS, ZOOM_CROP_CONTEXT, TrainSample, augment
from composeseg.zoom import MIN_WINDOW


def two_squares() -> TrainSample:
    """A 400 x 400 image with a 20 px and a 10 px square, far apart."""
    image = np.zeros((400, 400, 3), np.uint8)
    masks = np.zeros((2, 400, 400), bool)
    masks[0, 100:120, 100:120] = True
    masks[1, 300:310, 250:260] = True
    image[masks.any(0)] = 255
    return TrainSample(image, masks, key="two-squares")


@pytest.mark.parametrize("seed", range(16))
def test_a_zoom_crop_is_a_square_window_around_one_whole_object(seed: int) -> None:
    sample = two_squares()
    crop = augment(sample, np.random.default_rng(seed), zoom=1.0)
    height, width = crop.image.shape[:2]
    assert height == width and crop.masks.shape[1:] == (height, width)
    assert (crop.masks.reshape(len(crop.masks), -1).sum(1) >= MIN_MASK_PIXELS).all()
    whole = {int(m.sum()) for m in crop.masks} & {400, 100}  # the squares' areas
    assert whole, "no object lies whole in the crop"
    low, high = ZOOM_CROP_CONTEXT
    sizes = [max(MIN_WINDOW, low * np.sqrt(a)) <= width <= high * np.sqrt(a) + 1 for a in whole]
    assert any(sizes), (width, whole)


def test_zoom_crops_are_the_share_asked_for() -> None:
    sample = two_squares()
    rng = np.random.default_rng(0)
    # ordinary crops keep >= 35 % of the image; a zoom crop here keeps at most 160² of 400²
    small = sum(augment(sample, rng, zoom=0.5).image.shape[0] <= 161 for _ in range(200))
    assert 70 <= small <= 130


def test_no_zoom_crops_draw_the_same_crops_as_before() -> None:
    scene = generate_scene(5)
    sample = TrainSample(scene.image, scene.masks(), key="scene-5")
    for seed in range(8):
        a = augment(sample, np.random.default_rng(seed))
        b = augment(sample, np.random.default_rng(seed), zoom=0.0)
        assert a.image.shape == b.image.shape and np.array_equal(a.masks, b.masks)


@pytest.mark.parametrize("share", [-0.1, 1.5])
def test_zoom_crop_share_outside_zero_to_one_is_refused(share: float) -> None:
    with pytest.raises(ValueError, match="zoom_crops must be in"):
        TrainConfig(zoom_crops=share)

"""The learned mask refiner: identity when untrained, confined to a band around each mask's
boundary, saved and loaded with a model directory, and refused where it is missing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from composeseg import load_sam
from composeseg.refiner import (
    MAX_SHIFT,
    REFINER_FILE,
    WINDOW_MARGIN,
    MaskRefiner,
    load_refiner,
    mask_windows,
    refine_logits,
    save_refiner,
)


def _planes() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two planes on a 120 x 160 image: a square mask at rows 50-60, cols 70-90, and nothing."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    guided = np.full((2, 120, 160), -8.0, np.float32)
    guided[0, 50:60, 70:90] = 8.0
    bilinear = guided.copy()
    return image, bilinear, guided


def _shifted(bias: float) -> MaskRefiner:
    refiner = MaskRefiner(width=4, dilations=(1,))
    with torch.no_grad():
        refiner.head.bias.fill_(bias)  # type: ignore[union-attr]
    return refiner.eval()


def test_an_untrained_refiner_returns_the_guided_logits() -> None:
    image, bilinear, guided = _planes()
    assert np.array_equal(refine_logits(MaskRefiner(), bilinear, guided.copy(), image, 32), guided)


def _near_and_far(inside: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixels next to the boundary of ``inside`` (on either side), and pixels more than
    MAX_SHIFT + 1 pixels (chessboard) from it."""
    import cv2

    def grown(mask: np.ndarray, radius: int) -> np.ndarray:
        square = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
        return cv2.dilate(mask.astype(np.uint8), square).astype(bool)

    near = grown(inside, 1) & grown(~inside, 1)
    return near, ~grown(near, MAX_SHIFT + 1)


def test_the_refiner_moves_each_boundary_within_its_band_only() -> None:
    image, bilinear, guided = _planes()
    guided[0, 30:100, 40:140] = 8.0  # a square large enough to have a deep inside
    out = refine_logits(_shifted(3.0), bilinear, guided.copy(), image, 32)
    window = (30 - WINDOW_MARGIN, 100 + WINDOW_MARGIN, 40 - WINDOW_MARGIN, 140 + WINDOW_MARGIN)
    assert mask_windows(bilinear, guided, WINDOW_MARGIN) == [window, None]
    near, far = _near_and_far(guided[0] > 0)
    np.testing.assert_allclose(out[0][near], guided[0][near] + 3.0, atol=1e-5)
    assert np.array_equal(out[0][far], guided[0][far])  # holes and islands are not its to make
    assert np.array_equal(out[1], guided[1])  # no pixel of that plane may be in a mask


def test_on_a_large_image_the_refiner_runs_at_its_own_scale() -> None:
    # 40 px per logit cell: the window runs shrunk 8x and its correction comes back enlarged
    image = np.random.default_rng(1).integers(0, 255, (1200, 1600, 3), dtype=np.uint8)
    guided = np.full((1, 1200, 1600), -8.0, np.float32)
    guided[0, 400:700, 500:900] = 8.0
    out = refine_logits(_shifted(3.0), guided.copy(), guided.copy(), image, 40)
    near, far = _near_and_far(guided[0] > 0)
    np.testing.assert_allclose(out[0][near], guided[0][near] + 3.0, atol=1e-4)
    assert np.array_equal(out[0][far], guided[0][far])


def test_refine_logits_refuses_mismatched_arrays() -> None:
    image, bilinear, guided = _planes()
    with pytest.raises(ValueError, match="bilinear and guided"):
        refine_logits(MaskRefiner(), bilinear[:1], guided, image, 32)
    with pytest.raises(ValueError, match="dilations"):
        MaskRefiner(dilations=())


def test_a_refiner_round_trips_through_its_file(tmp_path: Path) -> None:
    assert load_refiner(tmp_path) is None
    refiner = MaskRefiner(width=8, dilations=(1, 3))
    torch.nn.init.normal_(refiner.head.weight)
    path = save_refiner(refiner, tmp_path)
    assert path == tmp_path / REFINER_FILE and path.stat().st_mode & 0o777 == 0o644
    loaded = load_refiner(tmp_path)
    assert loaded is not None and (loaded.width, loaded.dilations) == (8, (1, 3))
    for name, tensor in refiner.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    path.write_bytes(b"not a refiner")
    with pytest.raises(ValueError, match=f"{REFINER_FILE} is not a composeseg mask refiner"):
        load_refiner(tmp_path)


def test_learned_upsampling_needs_a_refiner(tiny_sam_dir: Path) -> None:
    with pytest.raises(ValueError, match=f"needs a mask refiner.*{REFINER_FILE}"):
        load_sam(tiny_sam_dir, device="cpu", upsampling="learned")


def test_a_model_directory_with_a_refiner_loads_and_uses_it(
    tiny_sam_dir: Path, tmp_path: Path, rgb_image: np.ndarray
) -> None:
    model = tmp_path / "model"
    shutil.copytree(tiny_sam_dir, model)
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "composeseg_upsampling": "learned"}))
    save_refiner(MaskRefiner(), model)
    box = np.array([30, 20, 100, 60], np.float32)
    learned = load_sam(model, device="cpu")
    assert learned.upsampling == "learned" and learned.refiner is not None
    guided = load_sam(model, device="cpu", upsampling="guided")
    # an untrained refiner is the identity; a shifted one moves the masks
    assert np.array_equal(
        learned.segment(rgb_image, boxes=box).masks, guided.segment(rgb_image, boxes=box).masks
    )
    save_refiner(_shifted(20.0), model)
    grown = load_sam(model, device="cpu").segment(rgb_image, boxes=box).masks
    assert grown.sum() > guided.segment(rgb_image, boxes=box).masks.sum()


def test_the_bfloat16_pass_draws_the_float32_masks(monkeypatch: pytest.MonkeyPatch) -> None:
    # CPUs with native bf16 run the refiner in bfloat16: the demo's masks must not move
    import cv2

    from composeseg.evaluation.families import family_scene
    from composeseg.loading import DEMO_MODEL_DIR

    refiner = load_refiner(DEMO_MODEL_DIR)
    assert refiner is not None
    scene = family_scene("independent", 7)
    truth = scene.masks().astype(np.float32)
    # soft logits around the true boundaries, as upsampled SAM logits look
    logits = np.stack([cv2.GaussianBlur(m, (0, 0), 3.0) * 16 - 8 for m in truth])
    out = {}
    for native in (False, True):
        monkeypatch.setattr("composeseg.device.cpu_has_native_bf16", lambda native=native: native)
        out[native] = refine_logits(refiner, logits, logits.copy(), scene.image, 128)
    moved = out[False] != logits
    assert moved.any() and not np.array_equal(out[True], out[False])  # both passes ran
    assert np.abs(out[True] - out[False]).max() < 0.2
    flipped = (out[True] > 0) != (out[False] > 0)
    assert flipped.sum() <= 1e-3 * moved.sum()

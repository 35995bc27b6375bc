"""Geometry between the original image and the model's square input frame.

SAM (and SAM-HQ, SlimSAM) resize the longest side to S and pad bottom/right ("longest");
SAM 2 stretches the image to S x S ("square"). Coordinates follow the same map, and mask logits
are brought back by the inverse: upsample to S, crop the padding, resize to (H, W).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

ResizeMode = Literal["longest", "square"]

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


def build_point_grid(n_per_side: int) -> np.ndarray:
    """``(n*n, 2) float64`` xy points evenly spaced in [0, 1]^2, cell centres, row-major."""
    offset = 1 / (2 * n_per_side)
    side = np.linspace(offset, 1 - offset, n_per_side)
    xs = np.tile(side[None, :], (n_per_side, 1))
    ys = np.tile(side[:, None], (1, n_per_side))
    return np.stack([xs, ys], axis=-1).reshape(-1, 2)


def resized_shape(original_size: tuple[int, int], target: int, mode: ResizeMode) -> tuple[int, int]:
    """``(h, w)`` of the image inside the ``target`` x ``target`` model frame.

    For "longest" this is Meta's ``ResizeLongestSide.get_preprocess_shape`` (round half up).
    """
    if mode == "square":
        return target, target
    height, width = original_size
    scale = target / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def preprocess(
    image: np.ndarray,
    target: int,
    mode: ResizeMode,
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
) -> tuple[torch.Tensor, tuple[int, int]]:
    """Resize, normalise and pad an ``(H, W, 3) uint8`` RGB image.

    Returns:
        ``(1, 3, target, target) float32`` pixel values and the ``(h, w)`` of the resized image
        before padding. Resizing uses PIL bilinear with antialiasing, as Meta's code does.
    """
    height, width = image.shape[:2]
    new_h, new_w = resized_shape((height, width), target, mode)
    resized = image
    if (new_h, new_w) != (height, width):
        resized = np.asarray(
            Image.fromarray(image).resize((new_w, new_h), Image.Resampling.BILINEAR)
        )
    pixels = torch.from_numpy(np.array(resized, copy=True)).permute(2, 0, 1).float()
    pixels = (pixels - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    padded = F.pad(pixels, (0, target - new_w, 0, target - new_h))
    return padded.unsqueeze(0), (new_h, new_w)


def coords_to_input_frame(
    coords: np.ndarray, original_size: tuple[int, int], input_size: tuple[int, int]
) -> np.ndarray:
    """Map ``(..., 2)`` xy pixel coordinates of the original image into the model frame."""
    height, width = original_size
    scale = np.array([input_size[1] / width, input_size[0] / height], np.float64)
    return (coords.astype(np.float64) * scale).astype(np.float32)


def boxes_to_input_frame(
    boxes: np.ndarray, original_size: tuple[int, int], input_size: tuple[int, int]
) -> np.ndarray:
    """Map ``(N, 4)`` xyxy pixel boxes of the original image into the model frame."""
    corners = coords_to_input_frame(boxes.reshape(-1, 2, 2), original_size, input_size)
    return corners.reshape(-1, 4)


def upscale_logits(
    logits: torch.Tensor,
    target: int,
    input_size: tuple[int, int],
    original_size: tuple[int, int],
    mode: ResizeMode,
) -> torch.Tensor:
    """Bring ``(B, K, 256, 256)`` low-res logits to ``(B, K, H, W)`` float32 at original size.

    "longest": bilinear to the padded ``target`` frame, crop the padding, bilinear to (H, W)
    (Meta's ``postprocess_masks``); "square": bilinear straight to (H, W) (SAM 2).
    """
    logits = logits.float()
    if mode == "longest":
        logits = F.interpolate(logits, (target, target), mode="bilinear", align_corners=False)
        logits = logits[..., : input_size[0], : input_size[1]]
    return F.interpolate(logits, original_size, mode="bilinear", align_corners=False)


def downscale_logits(
    logits: torch.Tensor,
    target: int,
    mask_size: int,
    mode: ResizeMode,
    pad_value: float,
) -> torch.Tensor:
    """The inverse of :func:`upscale_logits`: ``(B, K, H, W)`` logits at the original size to
    ``(B, K, M, M)`` low-res logits of the model frame, area-averaged the way the image is
    resized (and, for "longest", padded with ``pad_value``) into the ``target`` frame."""
    h, w = resized_shape((logits.shape[-2], logits.shape[-1]), target, mode)
    resized = F.interpolate(logits.float(), (h, w), mode="area")
    padded = F.pad(resized, (0, target - w, 0, target - h), value=pad_value)
    return F.interpolate(padded, (mask_size, mask_size), mode="area")

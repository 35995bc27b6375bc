"""A learned mask refiner: a small CNN that corrects upsampled SAM logits from the image.

SAM draws each mask from low-resolution logits (one per 4 × 4 model pixels); the guided
filter (:mod:`composeseg.upsampling`) refits their boundary to the image's edges but cannot
move a boundary further than its window, nor tell which of two touching regions the mask
means. :class:`MaskRefiner` sees the image's pixels, the bilinear logits and the guided ones
in a window around each mask, and adds a correction to the guided logits within
:data:`MAX_SHIFT` pixels of the guided boundary. Its receptive field is 35 pixels; it has no
notion of objects beyond that. ``Sam(upsampling="learned")`` runs it
after the guided filter; a model directory carries its weights as :data:`REFINER_FILE`
(trained by ``python -m composeseg.train.refiner``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

REFINER_FILE = "mask_refiner.safetensors"
"""The refiner's weights in a model directory; :func:`composeseg.load_sam` loads them."""
WINDOW_MARGIN = 12
"""Pixels around a mask's reach that the refiner sees, as in its training crops. Pixels this far
out are rarely in a mask, so the zero padding at the window's edge costs nothing measurable
(margins of 6, 12 and 24 score within 0.0005 box mIoU on the independent validation split) and
a smaller window is faster (480 × 360: 27.4 ms per object at 24, 21.4 at 12, width 32)."""
MAX_SHIFT = 3
"""Pixels the refiner may move a guided boundary by: its correction applies within this distance
of the guided mask's boundary only. Unbounded, it cut holes along the stripes of a large striped
square (the README's first command: IoU 0.856 guided, 0.696 refined, 0.831 within 3 px); on the
independent validation split bands of 3 and 4 px score what the unbounded refiner does (box
0.748) and 2 px 0.002 less."""
MAX_CELL = 5.0
"""Largest logit cell, in image pixels, the refiner works at: it trained on scenes up to 512 px
on the long side (4 px per cell of 128 logits) and was measured on images up to 640 px (5)."""
_REACH = -2.0  # bilinear logit above which a pixel may belong to the mask
_CLAMP = 10.0  # the guided filter's logits reach ±9.2; saturated inputs stay in range


class MaskRefiner(nn.Module):
    """Residual correction of guided mask logits.

    Args:
        width: channels of the hidden layers; 16 for the demo SAM (12 k parameters): 32 scored
            0.005 box mIoU more on the independent validation split at twice the cost.
        dilations: one residual 3 × 3 convolution per entry, with that dilation.
    """

    def __init__(self, width: int = 16, dilations: Sequence[int] = (1, 2, 4, 8, 1)) -> None:
        super().__init__()
        if width < 1 or not dilations or min(dilations) < 1:
            raise ValueError(f"need width >= 1 and dilations >= 1, got {width}, {dilations}")
        self.width = int(width)
        self.dilations = tuple(int(d) for d in dilations)
        self.stem = nn.Conv2d(6, width, 3, padding=1)
        self.blocks = nn.ModuleList(
            nn.Conv2d(width, width, 3, padding=d, dilation=d) for d in self.dilations
        )
        self.head = nn.Conv2d(width, 1, 1)
        # starts as the identity: an untrained refiner returns the guided logits
        for parameter in self.head.parameters():
            nn.init.zeros_(parameter)

    def forward(
        self, image: torch.Tensor, bilinear: torch.Tensor, guided: torch.Tensor, cell: torch.Tensor
    ) -> torch.Tensor:
        """Refined logits ``(B, 1, H, W)``: the guided ones, clamped to ±10, plus
        :meth:`correction`.

        Args:
            image: ``(B, 3, H, W)`` RGB values in [0, 255], float.
            bilinear: ``(B, 1, H, W)`` bilinear-upsampled logits of the same pixels.
            guided: ``(B, 1, H, W)`` the same after the guided filter.
            cell: ``(B,)`` pixels per low-resolution logit cell (the image's long side / M).
        """
        return guided.clamp(-_CLAMP, _CLAMP) + self.correction(image, bilinear, guided, cell)

    def correction(
        self, image: torch.Tensor, bilinear: torch.Tensor, guided: torch.Tensor, cell: torch.Tensor
    ) -> torch.Tensor:
        """``(B, 1, H, W)`` what :meth:`forward` adds to the clamped guided logits (same
        arguments); apart, so a low-precision pass never rounds the guided logits themselves."""
        guided = guided.clamp(-_CLAMP, _CLAMP)
        features = torch.cat(
            [
                (image / 255.0 - 0.5) / 0.25,
                bilinear.clamp(-_CLAMP, _CLAMP) / 5.0,
                guided / 5.0,
                (cell / 4.0)[:, None, None, None].expand_as(guided),
            ],
            dim=1,
        )
        hidden = F.gelu(self.stem(features))
        for block in self.blocks:
            hidden = hidden + F.gelu(block(hidden))
        correction: torch.Tensor = self.head(hidden)
        return correction


def mask_windows(
    bilinear: np.ndarray, guided: np.ndarray, margin: int
) -> list[tuple[int, int, int, int] | None]:
    """Per plane, the ``(top, bottom, left, right)`` window the refiner sees: the bounding box
    of the pixels that are, or may be, in the mask (guided logit > 0 or bilinear > -2), grown
    by ``margin`` and clipped to the image; None for a plane with no such pixel."""
    from composeseg.upsampling import bounding_window

    return [
        bounding_window((fitted > 0) | (plain > _REACH), margin)
        for plain, fitted in zip(bilinear, guided, strict=True)
    ]


@torch.inference_mode()
def refine_logits(
    refiner: MaskRefiner,
    bilinear: np.ndarray,
    guided: np.ndarray,
    image: np.ndarray,
    mask_size: int,
) -> np.ndarray:
    """Run ``refiner`` on each mask's window; writes into ``guided`` and returns it.

    Args:
        bilinear: ``(N, H, W) float32`` bilinear-upsampled logits.
        guided: ``(N, H, W) float32`` the same after the guided filter (refined in place).
        image: ``(H, W, 3) uint8`` RGB.
        mask_size: side M of the model's ``(M, M)`` low-resolution logits.

    Returns:
        ``(N, H, W) float32`` logits, positive inside each mask; further than
        :data:`MAX_SHIFT` pixels from the guided boundary, the guided logits unchanged. A
        float32 refiner computes its correction in bfloat16 on CPUs with native bf16
        (:func:`composeseg.device.cpu_has_native_bf16`), float32 elsewhere.
    """
    if bilinear.shape != guided.shape or image.shape != (*guided.shape[1:], 3):
        raise ValueError(
            f"need (N, H, W) bilinear and guided logits and the (H, W, 3) image, got "
            f"{bilinear.shape}, {guided.shape} and {image.shape}"
        )
    import cv2

    from composeseg.device import cpu_has_native_bf16

    parameter = next(refiner.parameters())
    # bfloat16 where the CPU has it natively: a pass over app-sized windows (80-260 px) takes
    # 12 ms instead of 20, and box mIoU on the independent validation split moves by < 1e-4
    low_precision = parameter.dtype == torch.float32 and cpu_has_native_bf16()
    cell = max(image.shape[:2]) / mask_size
    # the refiner learned on cells of up to MAX_CELL pixels; on a larger image each window runs
    # shrunk to that scale and its correction is enlarged back onto the guided logits
    scale = min(1.0, MAX_CELL / cell)
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * MAX_SHIFT + 1, 2 * MAX_SHIFT + 1))
    for i, window in enumerate(mask_windows(bilinear, guided, WINDOW_MARGIN)):
        if window is None:
            continue
        top, bottom, left, right = window
        rows, cols = slice(top, bottom), slice(left, right)
        full = np.clip(guided[i, rows, cols], -_CLAMP, _CLAMP)
        views = [image[rows, cols], bilinear[i, rows, cols], full]
        if scale < 1:
            size = (max(1, round((right - left) * scale)), max(1, round((bottom - top) * scale)))
            views = [cv2.resize(v, size, interpolation=cv2.INTER_AREA) for v in views]
        pixels, plain, fitted = (np.ascontiguousarray(v, np.float32) for v in views)
        rgb, coarse, start = (
            torch.from_numpy(x).to(parameter.dtype)
            for x in (pixels.transpose(2, 0, 1)[None], plain[None, None], fitted[None, None])
        )
        steps = torch.tensor([cell * scale], dtype=parameter.dtype)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=low_precision):
            correction = refiner.correction(rgb, coarse, start, steps)[0, 0].float().numpy()
        if scale < 1:
            size = (right - left, bottom - top)
            correction = cv2.resize(correction, size, interpolation=cv2.INTER_LINEAR)
        inside = (full > 0).astype(np.uint8)
        band = cv2.dilate(inside, disc).astype(bool) & ~cv2.erode(inside, disc).astype(bool)
        guided[i, rows, cols] = np.where(band, full + correction, guided[i, rows, cols])
    return guided


def save_refiner(refiner: MaskRefiner, directory: str | os.PathLike) -> Path:
    """Write ``refiner`` as ``directory / REFINER_FILE`` (safetensors, its shape in the
    metadata), atomically; returns the path."""
    from safetensors.torch import save_file

    from composeseg.io import atomic_write

    metadata = {"width": str(refiner.width), "dilations": json.dumps(list(refiner.dilations))}
    tensors = {k: v.detach().float().cpu().contiguous() for k, v in refiner.state_dict().items()}
    path = atomic_write(
        Path(directory) / REFINER_FILE, lambda tmp: save_file(tensors, tmp, metadata=metadata)
    )
    path.chmod(0o644)  # the temporary file is private; a shipped model must be readable
    return path


def load_refiner(directory: str | os.PathLike) -> MaskRefiner | None:
    """The refiner of a model directory, float32 on the CPU, or None if it has none.

    Raises:
        ValueError: the file exists but does not hold a :class:`MaskRefiner`.
    """
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    path = Path(directory) / REFINER_FILE
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), "pt") as handle:
            metadata = handle.metadata() or {}
        refiner = MaskRefiner(int(metadata["width"]), json.loads(metadata["dilations"]))
        refiner.load_state_dict(load_file(str(path)))
    except (KeyError, ValueError, RuntimeError, OSError, SafetensorError) as error:
        raise ValueError(f"{path} is not a composeseg mask refiner: {error}") from error
    return refiner.eval()

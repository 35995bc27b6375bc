"""Edge-aware upsampling of SAM's low-resolution mask logits, with the image as the guide.

SAM predicts masks at a quarter of its input frame (256² logits for the released models, 128²
for the demo model), and Meta's post-processing upsamples them bilinearly: every boundary is
drawn from one logit per 4 × 4 model pixels, so small and thin objects come out rounded and
offset. ``Sam(upsampling="guided")`` passes the bilinear probability through a colour guided
filter (He, Sun and Tang, "Guided Image Filtering", TPAMI 2013): in every window the mask is
refitted as a linear function of the image's RGB values. Where an image edge runs through the
coarse transition band, the boundary moves onto it; where the image has no edge, the mask
keeps its bilinear shape, smoothed over the window (straight boundaries stay put, corners
round).

The window radius scales with the logit cell (the original image's long side over the logit
side), so the filter reaches as far as the bilinear blur does at any image size. Radius and
regulariser were chosen on the independent family's validation split (box prompts, demo SAM;
README "The demo model").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    from composeseg.prediction import ImageEmbedding

Upsampling = Literal["bilinear", "guided", "learned"]
UPSAMPLINGS: tuple[str, ...] = ("bilinear", "guided", "learned")
"""``"learned"``: guided, then a model directory's :class:`~composeseg.refiner.MaskRefiner`."""
IMAGE_GUIDED: tuple[str, ...] = ("guided", "learned")
"""Upsamplings that draw on the image: their embeddings keep it."""

GUIDED_CELLS = 3.0
"""Window radius in low-resolution logit cells."""
GUIDED_EPS = 1e-4
"""Regulariser of the per-window fit (guide in [0, 1]): the variance below which a window
counts as flat and keeps the bilinear mask (std 0.01, 2.5 grey levels)."""
_FLOOR = -4.0
"""Logit of p ≈ 0.018: outside the bounding box of the pixels above it (grown by the filter's
reach) nothing moves. At p = 1e-3 faint far-off responses stretched that box over most of the
image (a click's box held 740 k pixels of a 1024 × 768 image for a 21 k-pixel mask; 65 k at
0.018); box mIoU on the independent validation split moved by 1e-4, on the training
generator not at all."""
_CLIP = 1e-4  # the filtered probability leaves [0, 1] at sharp edges; logits stay finite
_HARD = 10.0  # a binary mask as logits: p = 0.99995 inside, 0.00005 outside


def check_upsampling(upsampling: str) -> Upsampling:
    """``upsampling`` itself, or ``ValueError`` naming the choices."""
    if upsampling not in UPSAMPLINGS:
        raise ValueError(f"upsampling must be one of {UPSAMPLINGS}, got {upsampling!r}")
    return upsampling  # type: ignore[return-value]


def guided_radius(
    original_size: tuple[int, int], mask_size: int, cells: float = GUIDED_CELLS
) -> int:
    """Window radius in original-image pixels: ``cells`` logit cells, at least 1.

    ``mask_size`` is the side M of the model's square ``(M, M)`` low-resolution logits.
    """
    return max(1, round(cells * max(original_size) / mask_size))


def guided_refine(
    logits: np.ndarray,
    image: np.ndarray,
    radius: int,
    eps: float = GUIDED_EPS,
    *,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Refit upsampled mask logits to the image's edges with a colour guided filter.

    Args:
        logits: ``(N, H, W) float32`` logits already upsampled to the image (bilinear).
        image: ``(H, W, 3) uint8`` RGB, the image the logits are of.
        radius: window radius in pixels (:func:`guided_radius`).
        eps: regulariser (:data:`GUIDED_EPS`).
        out: where to write the result (``logits`` itself refines in place); default a copy.

    Returns:
        ``(N, H, W) float32`` logits, positive inside each mask. Within reach of the mask
        (where the bilinear probability exceeds 0.018, grown by two radii) they are the logits
        of the filtered probability, clipped to [1e-4, 1 - 1e-4]; elsewhere the input.
    """
    if logits.ndim != 3 or image.shape != (*logits.shape[1:], 3):
        raise ValueError(
            f"guided upsampling needs (N, H, W) logits and the (H, W, 3) image, got "
            f"{logits.shape} and {image.shape}"
        )
    if radius < 1 or eps <= 0:
        raise ValueError(f"radius must be >= 1 and eps > 0, got {radius} and {eps}")
    out = np.array(logits, dtype=np.float32) if out is None else out
    reach = 2 * radius + 1  # each of the filter's two box passes spreads one radius
    for i, plane in enumerate(logits):
        window = bounding_window(plane > _FLOOR, reach)
        if window is None:
            continue
        top, bottom, left, right = window
        # sigmoid in place on a float32 copy of the window: large images, one buffer
        fitted = np.clip(plane[top:bottom, left:right], -30.0, 30.0).astype(np.float32, copy=False)
        np.exp(np.negative(fitted, out=fitted), out=fitted)
        np.reciprocal(np.add(fitted, 1.0, out=fitted), out=fitted)
        fitted = _guided_filter(image[top:bottom, left:right], fitted, radius, eps)
        np.clip(fitted, _CLIP, 1.0 - _CLIP, out=fitted)
        out[i, top:bottom, left:right] = np.log(fitted / (1.0 - fitted))
    return out


def bounding_window(region: np.ndarray, margin: int) -> tuple[int, int, int, int] | None:
    """``(top, bottom, left, right)`` of the bounding box of ``(H, W) bool`` ``region``, grown
    by ``margin`` pixels and clipped to the array; None for an empty region."""
    rows = np.flatnonzero(region.any(axis=1))
    if not len(rows):
        return None
    cols = np.flatnonzero(region.any(axis=0))
    height, width = region.shape
    return (
        max(0, int(rows[0]) - margin), min(height, int(rows[-1]) + margin + 1),
        max(0, int(cols[0]) - margin), min(width, int(cols[-1]) + margin + 1),
    )  # fmt: skip


def guided_logits(logits: np.ndarray, embedding: ImageEmbedding, mask_size: int) -> np.ndarray:
    """:func:`guided_refine` of ``(N, H, W)`` upsampled logits of ``embedding``'s image,
    in place (they are returned): callers hand over buffers they no longer need.

    Raises:
        ValueError: the embedding holds no image (made by a Sam with bilinear upsampling).
    """
    if embedding.image is None:
        raise ValueError(
            "guided upsampling needs the embedding's image: embed it with a Sam loaded "
            "with upsampling='guided'"
        )
    radius = guided_radius(embedding.original_size, mask_size)
    return guided_refine(logits, embedding.image, radius, out=logits)


def guided_masks(masks: np.ndarray, embedding: ImageEmbedding, mask_size: int) -> np.ndarray:
    """Refit ``(N, H, W) bool`` bilinear masks of ``embedding``'s image to its edges.

    For masks kept without their logits (automatic generation refines only what NMS kept): a
    binary mask starts the filter as well as the probability does (box mIoU 0.692 against 0.690
    on the independent family's validation split, with the stage-4 demo weights). Returns
    ``(N, H, W) bool``.
    """
    logits = np.where(masks, _HARD, -_HARD).astype(np.float32)
    return guided_logits(logits, embedding, mask_size) > 0


def _guided_filter(image: np.ndarray, source: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """He et al.'s colour guided filter of an ``(h, w) float32`` source by an ``(h, w, 3)
    uint8`` guide; returns ``(h, w) float32``.

    The window fits run on a grid subsampled by radius / 4 and their coefficients are
    upsampled bilinearly (He and Sun's "Fast Guided Filter", 2015): large radii on large images
    cost what small ones do, and the output keeps the full-resolution guide's edges. Full-size
    buffers are single-channel, one at a time.
    """
    import cv2

    height, width = source.shape
    step = max(1, radius // 4)
    size = (max(1, round(width / step)), max(1, round(height / step)))

    def shrink(x: np.ndarray) -> np.ndarray:
        return cv2.resize(x, size, interpolation=cv2.INTER_AREA) if step > 1 else x

    def grow(x: np.ndarray) -> np.ndarray:
        return cv2.resize(x, (width, height), interpolation=cv2.INTER_LINEAR) if step > 1 else x

    def channel(c: int) -> np.ndarray:
        # a window of the image is a strided view; OpenCV wants contiguous planes
        return np.ascontiguousarray(image[..., c], np.float32) * np.float32(1 / 255)

    guide = np.stack([shrink(channel(c)) for c in range(3)], axis=-1)
    small_source = shrink(source)
    window = 2 * max(1, round(radius / step)) + 1

    def mean(x: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(x, -1, (window, window))

    mean_i = mean(guide)
    mean_p = mean(small_source)
    cov = mean(guide * small_source[..., None]) - mean_i * mean_p[..., None]

    def var(a: int, b: int) -> np.ndarray:
        v = mean(guide[..., a] * guide[..., b]) - mean_i[..., a] * mean_i[..., b]
        return v + eps if a == b else v

    # (Σ + εI)⁻¹ cov in closed form: the symmetric 3 × 3 adjugate over the determinant
    rr, rg, rb, gg, gb, bb = var(0, 0), var(0, 1), var(0, 2), var(1, 1), var(1, 2), var(2, 2)
    inv_rr, inv_rg, inv_rb = gg * bb - gb * gb, gb * rb - rg * bb, rg * gb - gg * rb
    inv_gg, inv_gb, inv_bb = rr * bb - rb * rb, rb * rg - rr * gb, rr * gg - rg * rg
    det = rr * inv_rr + rg * inv_rg + rb * inv_rb
    c0, c1, c2 = cov[..., 0], cov[..., 1], cov[..., 2]
    slopes = [
        (inv_rr * c0 + inv_rg * c1 + inv_rb * c2) / det,
        (inv_rg * c0 + inv_gg * c1 + inv_gb * c2) / det,
        (inv_rb * c0 + inv_gb * c1 + inv_bb * c2) / det,
    ]
    offset = mean_p - sum(slope * mean_i[..., c] for c, slope in enumerate(slopes))
    result = np.asarray(grow(mean(offset)), np.float32)
    for c, slope in enumerate(slopes):
        result += grow(mean(slope)) * channel(c)
    return result

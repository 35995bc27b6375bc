"""Zoomed prompting: each object segmented in its own window, enlarged to the model's input.

SAM sees an image at S pixels on its long side (1024 for the released models, 512 for the demo
model) and predicts masks on an S/4 logit grid, so an object a few dozen pixels wide gets a
handful of logits and its boundary is mostly guessed. Cropping a window around the object and
encoding that window alone spends the whole input frame on it; the paper's automatic mask
generator does the same with its zoomed crop layers, and tiling does it for huge images.

The window is a square ``context`` (5 by default) times the object's longer side, centred on
it and clipped to the image, so the model still sees the object's surroundings. The price is
one encoder pass per object instead of one per image: worth it for small objects and a light
encoder, not for a ViT-H on hundreds of boxes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from composeseg.box_fit import check_box_fit, decode_box_fitted
from composeseg.geometry import tight_boxes
from composeseg.image import ImageSource, load_image
from composeseg.prediction import ImageEmbedding, MaskPrediction
from composeseg.prompts import PADDING, Prompts, as_prompts
from composeseg.transforms import downscale_logits, upscale_logits
from composeseg.upsampling import IMAGE_GUIDED, guided_radius, guided_refine

if TYPE_CHECKING:
    from composeseg.sam import Sam

ZOOM_CONTEXT = 5.0
"""Window side over the object's longer side. Chosen with :data:`ZOOM_GUIDED_CELLS` on the
independent family's validation split (demo SAM; README "The demo model"): 4 gives up box
quality, 6 and 8 interactive and box quality."""
ZOOM_GUIDED_CELLS = 6.0
"""Guided upsampling's window radius in a zoomed window, in logit cells (a whole image uses
:data:`composeseg.upsampling.GUIDED_CELLS`, 3). A window is a few object widths, so its logit
cells are a pixel or less; the wider reach lets the refit see the object's edge. Chosen on the
validation split with the context (3 cells: box mIoU 0.787; 5 to 7: 0.800 to 0.803)."""
MIN_WINDOW = 32
"""Smallest window side in pixels: a window of a few pixels enlarged to the model's input is
all blur, with nothing left of the surroundings."""
_OUTSIDE = -20.0  # logit given to pixels outside an object's window: certainly background
_ENCODE_BATCH = 8  # windows encoded per forward pass


def check_context(context: float, name: str = "context") -> float:
    """``context`` as a float, or ``ValueError``: a window narrower than its object, or not
    finite, is no window."""
    if not np.isfinite(context) or context < 1:
        raise ValueError(f"{name} must be a finite number >= 1, got {context!r}")
    return float(context)


def zoom_windows(
    extents: np.ndarray, image_size: tuple[int, int], context: float = ZOOM_CONTEXT
) -> np.ndarray:
    """Square windows around objects, clipped to the image.

    Args:
        extents: ``(N, 4)`` xyxy boxes, pixels of the image: what each object covers.
        image_size: ``(H, W)`` of the image.
        context: window side over the box's longer side (>= 1).

    Returns:
        ``(N, 4) int64`` xyxy windows (x1, y1 exclusive) of side ``context * max(w, h)``, at
        least :data:`MIN_WINDOW` (or the image's side, if smaller), about each box's centre;
        a window clipped at one border keeps its size by growing into the image.
    """
    check_context(context)
    extents = np.asarray(extents, np.float64).reshape(-1, 4)
    height, width = image_size
    centre = (extents[:, :2] + extents[:, 2:]) / 2
    side = np.maximum(extents[:, 2] - extents[:, 0], extents[:, 3] - extents[:, 1]) * context
    side = np.ceil(np.maximum(side, MIN_WINDOW))
    limits = np.array([width, height], np.float64)
    size = np.minimum(side[:, None], limits)  # (N, 2): window width, height
    start = np.clip(np.floor(centre - size / 2), 0, limits - size)
    return np.concatenate([start, start + size], axis=1).astype(np.int64)


@torch.inference_mode()
def segment_zoomed(
    sam: Sam,
    image: ImageSource,
    prompts: Prompts | None = None,
    *,
    boxes: Any = None,
    points: Any = None,
    point_labels: Any = None,
    extents: Any = None,
    multimask: bool = False,
    refine: bool = True,
    box_fit: bool = False,
    context: float = ZOOM_CONTEXT,
    embedding: ImageEmbedding | None = None,
) -> MaskPrediction:
    """Like :meth:`Sam.segment`, but each object is encoded and decoded in its own window.

    Args:
        sam: a loaded model.
        image: a path, PIL image or ``(H, W, 3) uint8`` RGB array (:func:`composeseg.load_image`).
        prompts, boxes, points, point_labels: as :meth:`Sam.segment`, pixels of ``image``.
            Mask inputs are refused: low-resolution logits of the whole image cannot be moved
            into a window without losing the detail the window is for.
        extents: ``(N, 4)`` xyxy boxes that each object covers, to place the windows. Default:
            the prompt box where there is one; else the union of the 3 candidate masks of a
            first pass on the whole image. The object's foreground and background points are
            always added, so every point lies inside its window.
        multimask: return SAM's 3 candidates per object.
        refine: decode once more in the window with the first mask's logits as mask prompt (single
            mask only); ``InstanceSegmentation``'s refinement, done where the detail is.
        box_fit: keep, in each window, the mask that fits its box best among SAM's four
            (:func:`composeseg.box_fit.decode_box_fitted`); single mask only.
        context: window side over the extent's longer side (:func:`zoom_windows`).
        embedding: this image's embedding, when the caller has one: used for the first pass
            and for windows that cover the whole image, instead of encoding it again.

    Returns:
        A :class:`MaskPrediction` as :meth:`Sam.segment`'s: ``masks (N, K, H, W) bool`` in the
        pixels of ``image`` (nothing outside each window), ``scores (N, K)`` predicted IoU in
        the window, and ``logits (N, K, M, M)`` resampled into the whole image's frame, so
        they can be passed back as ``mask_input`` to :meth:`Sam.segment` (coarser than the
        masks: that is the whole image's logit grid).
    """
    from composeseg.sam import fit_to_image

    rgb = load_image(image)
    size = (int(rgb.shape[0]), int(rgb.shape[1]))
    batch = fit_to_image(
        as_prompts(prompts, boxes=boxes, points=points, point_labels=point_labels), size
    )
    check_box_fit(box_fit, multimask)
    if batch.mask_input is not None:
        raise ValueError("segment_zoomed takes no mask_input: windows need prompts in pixels")
    if embedding is not None and embedding.original_size != size:
        raise ValueError(
            f"embedding is of a {embedding.original_size} image, not the {size} image given"
        )
    k = 3 if multimask else 1
    count = len(batch)
    masks = np.zeros((count, k, *size), bool)
    scores = np.zeros((count, k), np.float32)
    logits = np.zeros((count, k, sam.backend.mask_size, sam.backend.mask_size), np.float32)
    if not count:
        return MaskPrediction(masks, scores, logits, batch, size)

    def whole() -> ImageEmbedding:
        nonlocal embedding
        embedding = embedding if embedding is not None else sam.embed(rgb)
        return embedding

    windows = zoom_windows(_extents(sam, batch, extents, whole, size), size, context)
    full = np.array([0, 0, size[1], size[0]])
    for start in range(0, count, _ENCODE_BATCH):
        rows = range(start, min(start + _ENCODE_BATCH, count))
        crops = [
            None
            if (windows[i] == full).all()
            else rgb[windows[i][1] : windows[i][3], windows[i][0] : windows[i][2]]
            for i in rows
        ]
        encoded = iter(sam.embed_batch([c for c in crops if c is not None]))
        for i, crop in zip(rows, crops, strict=True):
            x0, y0, x1, y1 = windows[i]
            window_masks, scores[i] = _decode_window(
                sam,
                whole() if crop is None else next(encoded),
                rgb[y0:y1, x0:x1],
                _shifted(batch[i], windows[i][:2]),
                multimask=multimask,
                refine=refine,
                box_fit=box_fit,
            )
            masks[i, :, y0:y1, x0:x1] = window_masks > 0
            logits[i] = _to_whole_frame(sam, window_masks, windows[i], size)
    return MaskPrediction(masks, scores, logits, batch, size)


def _extents(
    sam: Sam, batch: Prompts, extents: Any, whole: Any, size: tuple[int, int]
) -> np.ndarray:
    """``(N, 4)`` boxes that each window must hold: the given extents, else a first pass's
    candidates where there is no prompt box; the prompt boxes and used points always."""
    lows, highs = [], []  # (N, 2) corners to take the min / max of
    if extents is not None:
        given = np.asarray(extents, np.float64)
        if given.shape != (len(batch), 4) or not np.isfinite(given).all():
            raise ValueError(
                f"extents must be ({len(batch)}, 4) finite xyxy boxes, got shape {given.shape}"
            )
        lows.append(given[:, :2])
        highs.append(given[:, 2:])
    elif batch.boxes is None:
        union = np.any(sam.segment(whole(), batch, multimask=True).dense(), axis=1)
        found = np.any(union.reshape(len(batch), -1), axis=1)[:, None]
        first = tight_boxes(union).astype(np.float64)
        lows.append(np.where(found, first[:, :2], np.inf))  # nothing found: the points alone
        highs.append(np.where(found, first[:, 2:], -np.inf))
    if batch.boxes is not None:
        lows.append(batch.boxes[:, :2].astype(np.float64))
        highs.append(batch.boxes[:, 2:].astype(np.float64))
    if batch.points is not None and batch.point_labels is not None:
        used = (batch.point_labels != PADDING)[..., None]
        points = batch.points.astype(np.float64)
        lows.append(np.where(used, points, np.inf).min(axis=1))
        highs.append(np.where(used, points + 1, -np.inf).max(axis=1))
    boxes = np.concatenate([np.min(lows, axis=0), np.max(highs, axis=0)], axis=1)
    return np.clip(boxes, 0, [size[1], size[0], size[1], size[0]])


def _shifted(prompts: Prompts, origin: np.ndarray) -> Prompts:
    """One object's prompts moved into its window's pixels."""
    offset = origin.astype(np.float32)
    changes: dict[str, Any] = {}
    if prompts.boxes is not None:
        changes["boxes"] = prompts.boxes - np.tile(offset, 2)
    if prompts.points is not None:
        changes["points"] = prompts.points - offset
    return prompts.replace(**changes)


def _decode_window(
    sam: Sam,
    embedding: ImageEmbedding,
    pixels: np.ndarray,
    prompts: Prompts,
    *,
    multimask: bool,
    refine: bool,
    box_fit: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """One object's decode in its window (``pixels``, ``(h, w, 3) uint8``, and ``embedding``
    of them): ``(K, h, w) float32`` logits at those pixels (refitted to them with a guided
    Sam, at :data:`ZOOM_GUIDED_CELLS`) and ``(K,)`` scores."""
    from composeseg.sam import fit_to_image

    size = (int(pixels.shape[0]), int(pixels.shape[1]))
    prompts = fit_to_image(prompts, size)
    if box_fit:  # segment_zoomed refused it with multimask
        low, iou = decode_box_fitted(sam, embedding, prompts, refine=refine)
    else:
        low, iou = sam.decode_low_res(embedding, prompts, multimask=multimask)
        if refine and not multimask:
            low, iou = sam.decode_low_res(embedding, prompts, mask_logits=low[:, 0])
    dense = upscale_logits(
        low, sam.image_size, embedding.input_size, size, sam.backend.resize_mode
    )[0]
    out = dense.cpu().numpy()
    if sam.upsampling in IMAGE_GUIDED:  # the learned refiner never saw zoomed windows
        radius = guided_radius(size, sam.backend.mask_size, ZOOM_GUIDED_CELLS)
        guided_refine(out, pixels, radius, out=out)
    return out, iou[0].float().cpu().numpy()


def _to_whole_frame(
    sam: Sam, window_logits: np.ndarray, window: np.ndarray, size: tuple[int, int]
) -> np.ndarray:
    """``(K, h, w)`` logits at a window's pixels -> ``(K, M, M)`` logits in the whole image's
    frame: pasted into the image (background elsewhere), then down into the model frame."""
    canvas = torch.full((len(window_logits), *size), _OUTSIDE)
    x0, y0, x1, y1 = (int(v) for v in window)
    canvas[:, y0:y1, x0:x1] = torch.from_numpy(window_logits)
    frame, mode, m = sam.image_size, sam.backend.resize_mode, sam.backend.mask_size
    return downscale_logits(canvas[None], frame, m, mode, _OUTSIDE)[0].numpy()

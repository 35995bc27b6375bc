"""One interface over the transformers SAM family: embed once, prompt many times."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from composeseg.backends.base import Backend, DecoderPrompts
from composeseg.box_fit import check_box_fit, decode_box_fitted
from composeseg.geometry import clip_boxes
from composeseg.image import ImageSource, load_image
from composeseg.prediction import ImageEmbedding, MaskPrediction
from composeseg.prompts import PADDING, Prompts, as_prompts
from composeseg.refiner import REFINER_FILE, MaskRefiner
from composeseg.transforms import (
    boxes_to_input_frame,
    coords_to_input_frame,
    preprocess,
    upscale_logits,
)
from composeseg.upsampling import IMAGE_GUIDED, Upsampling, check_upsampling

# Upsampled float logits are produced in slices of at most this many bytes (at least one
# object), so a 64-object prediction on a 12-megapixel photo never holds gigabytes of float32.
_UPSCALE_BYTES = 64 * 2**20


class Sam:
    """A loaded SAM-family model. Build it with :func:`composeseg.load_sam`.

    Args:
        backend: the model family's backend (holds the transformers model).
        device: where the model lives.
        dtype: the model's floating dtype (float32, or bfloat16 / float16 opt-in).
        decode_batch_size: objects per decoder call. The SAM backend shares the image-side
            work of a call across its objects, so larger calls are cheaper per object; the
            bound keeps the per-call output small (``benchmarks/bench_sam_decoder.py``).
        name: where the model came from, for messages.
        upsampling: how low-res logits become full-resolution masks. ``"bilinear"``
            (default): Meta's ``postprocess_masks``. ``"guided"``: then refitted to the image's
            edges by a colour guided filter (:mod:`composeseg.upsampling`); embeddings keep a
            reference to their image for it. ``"learned"``: guided, then corrected by
            ``refiner`` (:mod:`composeseg.refiner`).
        refiner: the model's learned mask refiner; needed by, and only used by, ``"learned"``.

    Raises:
        ValueError: ``upsampling="learned"`` without a refiner.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        device: torch.device,
        dtype: torch.dtype = torch.float32,
        decode_batch_size: int = 64,
        name: str = "",
        upsampling: Upsampling = "bilinear",
        refiner: MaskRefiner | None = None,
    ) -> None:
        if decode_batch_size < 1:
            raise ValueError(f"decode_batch_size must be >= 1, got {decode_batch_size}")
        self.backend = backend
        self.device = device
        self.dtype = dtype
        self.decode_batch_size = decode_batch_size
        self.name = name or type(backend.model).__name__
        self.upsampling = check_upsampling(upsampling)
        if self.upsampling == "learned" and refiner is None:
            raise ValueError(
                f"upsampling='learned' needs a mask refiner, and {self.name} has none: its "
                f"directory holds no {REFINER_FILE} (python -m composeseg.train.refiner makes one)"
            )
        self.refiner = refiner
        self._key = f"{backend.family}:{id(backend.model)}"

    @property
    def model(self) -> torch.nn.Module:
        """The underlying transformers model."""
        return self.backend.model

    @property
    def family(self) -> str:
        """ "sam" (also SlimSAM), "sam_hq" or "sam2"."""
        return self.backend.family

    @property
    def image_size(self) -> int:
        """Side of the square model input, in pixels (1024 for the released models)."""
        return self.backend.image_size

    def __repr__(self) -> str:
        return (
            f"Sam({self.name!r}, family={self.family!r}, device={self.device}, "
            f"dtype={self.dtype}, image_size={self.image_size}, upsampling={self.upsampling!r})"
        )

    @torch.inference_mode()
    def embed(self, image: ImageSource) -> ImageEmbedding:
        """Run the image encoder once.

        Args:
            image: a path, a PIL image, or an ``(H, W, 3) uint8`` RGB array (grayscale, RGBA,
                palette, 16-bit and EXIF-rotated inputs are normalised by
                :func:`composeseg.load_image`).

        Returns:
            An :class:`ImageEmbedding` to pass to :meth:`segment` any number of times.
        """
        return self.embed_batch([image])[0]

    @torch.inference_mode()
    def embed_batch(self, images: Sequence[ImageSource]) -> list[ImageEmbedding]:
        """Run the image encoder once on several images, in one batched forward pass.

        Every image is resized and padded into the model's square input on its own, so
        images of different sizes batch together; the embeddings equal :meth:`embed`'s one
        by one (up to float rounding of the batched matrix products, ~1e-6).

        Args:
            images: paths, PIL images or ``(H, W, 3) uint8`` RGB arrays (see :meth:`embed`).

        Returns:
            One :class:`ImageEmbedding` per image, in order, owning its ``(1, ...)`` feature
            tensors (copies, so keeping one embedding does not keep the whole batch alive).
        """
        if not len(images):
            return []
        rgbs = [load_image(image) for image in images]
        batch = [
            preprocess(
                rgb,
                self.image_size,
                self.backend.resize_mode,
                self.backend.pixel_mean,
                self.backend.pixel_std,
            )
            for rgb in rgbs
        ]
        pixels = torch.cat([pixels for pixels, _ in batch])
        features = self.backend.encode(pixels.to(self.device, self.dtype))
        return [
            ImageEmbedding(
                features=tuple(f[i : i + 1].clone() for f in features),
                original_size=(int(rgb.shape[0]), int(rgb.shape[1])),
                input_size=input_size,
                model_key=self._key,
                image=rgb if self.upsampling in IMAGE_GUIDED else None,
            )
            for i, (rgb, (_, input_size)) in enumerate(zip(rgbs, batch, strict=True))
        ]

    @torch.inference_mode()
    def segment(
        self,
        image_or_embedding: ImageSource | ImageEmbedding,
        prompts: Prompts | None = None,
        *,
        boxes: Any = None,
        points: Any = None,
        point_labels: Any = None,
        mask_input: Any = None,
        multimask: bool = False,
        box_fit: bool = False,
        output: str = "mask",
        progress: bool = False,
    ) -> MaskPrediction:
        """Predict masks for N objects; all go through the decoder in batched calls.

        Args:
            image_or_embedding: an image (see :meth:`embed`) or an embedding from it.
            prompts: a :class:`~composeseg.Prompts` batch, or use the keyword arrays:
            boxes: ``(N, 4)`` (or ``(4,)``) xyxy, pixels of the original image. Boxes partly
                outside the image are clipped to it.
            points: ``(N, P, 2)`` (or ``(P, 2)``) xy, pixels of the original image.
            point_labels: ``(N, P)`` (or ``(P,)``): 1 foreground, 0 background, -1 padding.
            mask_input: ``(N, M, M)`` (or ``(M, M)``) logits of an earlier prediction, to
                refine it (M = 256 for the released models).
            multimask: return SAM's 3 candidate masks per object instead of 1.
            box_fit: keep, for each object with a box, the one of SAM's four masks (single and
                3 candidates) whose extent fits the box best, refined once with its logits
                (:mod:`composeseg.box_fit`). Off: SAM's single mask, as Meta's predictor.
            output: ``"mask"``: dense masks; ``"rle"``: COCO RLEs, encoded slice by slice, so
                thousands of objects on a large image never form an ``(N, K, H, W)`` array.
            progress: a progress bar over the decoder's chunks and the upsampling (long calls:
                thousands of objects).

        Returns:
            A :class:`MaskPrediction` with ``masks (N, K, H, W) bool`` (``output="rle"``:
            ``masks`` None and ``rles``, N lists of K RLEs), ``scores (N, K)``,
            ``logits (N, K, M, M)`` (M = 256 for the released models); K = 3 with
            ``multimask`` else 1. No prompts give an empty prediction.

        Raises:
            ValueError: inverted, empty, NaN or out-of-image boxes; points outside the image
                or without labels; mismatched shapes. The message names the index and value.
        """
        if output not in ("mask", "rle"):
            raise ValueError(f"output must be 'mask' or 'rle', got {output!r}")
        check_box_fit(box_fit, multimask)
        embedding = self._as_embedding(image_or_embedding)
        batch = fit_to_image(
            as_prompts(
                prompts,
                boxes=boxes,
                points=points,
                point_labels=point_labels,
                mask_input=mask_input,
            ),
            embedding.original_size,
        )
        from composeseg.progress import progress as progress_bar

        # one bar for the whole call: decoder chunks, then upsampling slices, in objects
        bar = progress_bar(total=2 * len(batch), desc="segment", unit="obj", enabled=progress)
        try:
            if box_fit:
                logits, scores = decode_box_fitted(self, embedding, batch)
                bar.update(len(batch))
            else:
                logits, scores = self.decode_low_res(embedding, batch, multimask=multimask, bar=bar)
            if output == "rle":
                masks, rles = None, self.rles_from_logits(logits, embedding, bar=bar)
            else:
                masks, rles = self.masks_from_logits(logits, embedding, bar=bar), None
        finally:
            bar.close()
        return MaskPrediction(
            masks=masks,
            scores=scores.float().cpu().numpy(),
            logits=logits.float().cpu().numpy(),
            prompts=batch,
            original_size=embedding.original_size,
            rles=rles,
        )

    @torch.inference_mode()
    def decode_low_res(
        self,
        embedding: ImageEmbedding,
        prompts: Prompts,
        *,
        multimask: bool = False,
        mask_logits: torch.Tensor | None = None,
        bar: Any = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the prompt decoder only, in chunks of :attr:`decode_batch_size` objects.

        The building block for pipelines that filter candidates before paying for full
        resolution (automatic mask generation). ``prompts`` must already fit the image
        (:func:`fit_to_image`). ``mask_logits``, an ``(N, M, M)`` tensor of this model's own
        low-res logits (a refinement pass), replaces ``prompts.mask_input`` without leaving
        the device or being checked again. ``bar``, a progress bar, advances by each chunk's
        objects.

        Returns:
            ``(N, K, M, M)`` low-res logits and ``(N, K)`` predicted IoU, float32 tensors on
            :attr:`device`.
        """
        embedding = self._as_embedding(embedding)
        size = self.backend.mask_size
        if mask_logits is not None and tuple(mask_logits.shape) != (len(prompts), size, size):
            raise ValueError(
                f"mask_logits must be ({len(prompts)}, {size}, {size}), got "
                f"{tuple(mask_logits.shape)}"
            )
        if prompts.mask_input is not None and prompts.mask_input.shape[1:] != (size, size):
            raise ValueError(
                f"mask_input must be ({len(prompts)}, {size}, {size}) logits for this model, "
                f"got {prompts.mask_input.shape}"
            )
        k = 3 if multimask else 1
        logits = torch.zeros((len(prompts), k, size, size), device=self.device)
        scores = torch.zeros((len(prompts), k), device=self.device)
        for start, chunk in self._chunks(prompts, embedding, mask_logits):
            low_res, iou = self.backend.decode(embedding.features, chunk, multimask)
            if low_res.shape != (len(chunk), k, size, size) or iou.shape != (len(chunk), k):
                # a backend returning one mask for multimask would otherwise be broadcast
                raise RuntimeError(
                    f"{self.family} backend returned logits {tuple(low_res.shape)} and scores "
                    f"{tuple(iou.shape)}; expected ({len(chunk)}, {k}, {size}, {size})"
                )
            logits[start : start + len(chunk)] = low_res.float()
            scores[start : start + len(chunk)] = iou.float()
            if bar is not None:
                bar.update(len(chunk))
        return logits, scores

    @torch.inference_mode()
    def masks_from_logits(
        self, logits: torch.Tensor, embedding: ImageEmbedding, *, bar: Any = None
    ) -> np.ndarray:
        """Threshold ``(N, K, M, M)`` low-res logits at 0 at the original resolution.

        Returns:
            ``(N, K, H, W) bool``. Upsampling runs in slices so that float buffers stay small
            whatever N and the image size; ``bar`` advances by each slice's objects.
        """
        count, k = logits.shape[:2]
        height, width = embedding.original_size
        out = np.zeros((count, k, height, width), bool)
        for rows, full in self._upscaled(logits, embedding):
            if full.device.type == "cpu":  # threshold straight into the result, no bool copy
                torch.gt(full, 0, out=torch.from_numpy(out[rows]))
            else:
                out[rows] = (full > 0).cpu().numpy()
            if bar is not None:
                bar.update(len(full))
        return out

    @torch.inference_mode()
    def rles_from_logits(
        self, logits: torch.Tensor, embedding: ImageEmbedding, *, bar: Any = None
    ) -> list[list[dict[str, Any]]]:
        """Like :meth:`masks_from_logits`, but each slice is encoded to COCO RLE at once.

        Returns:
            N lists of K native RLEs (:mod:`composeseg.rle`) of ``(H, W)`` masks; memory holds
            one slice of dense masks at a time.
        """
        from composeseg import rle

        out: list[list[dict[str, Any]]] = []
        k = logits.shape[1]
        for _, full in self._upscaled(logits, embedding):
            masks = (full > 0).cpu().numpy()
            flat = rle.encode(masks.reshape(-1, *masks.shape[2:]))
            out += [flat[i : i + k] for i in range(0, len(flat), k)]
            if bar is not None:
                bar.update(len(full))
        return out

    def _upscaled(
        self, logits: torch.Tensor, embedding: ImageEmbedding
    ) -> Iterator[tuple[slice, torch.Tensor]]:
        """``(rows, (n, K, H, W) float logits)`` slices of ``logits`` at the original size."""
        count, k = logits.shape[:2]
        height, width = embedding.original_size
        step = max(1, _UPSCALE_BYTES // (k * height * width * 4))
        for i in range(0, count, step):
            full = upscale_logits(
                logits[i : i + step],
                self.image_size,
                embedding.input_size,
                embedding.original_size,
                self.backend.resize_mode,
            )
            if self.upsampling in IMAGE_GUIDED:
                full = self._guided(full, embedding)
            yield slice(i, i + len(full)), full

    def _guided(self, full: torch.Tensor, embedding: ImageEmbedding) -> torch.Tensor:
        from composeseg.upsampling import guided_logits

        n, k = full.shape[:2]
        planes = full.reshape(n * k, *full.shape[2:]).cpu().numpy()  # shares a CPU tensor
        bilinear = planes.copy() if self.upsampling == "learned" else None
        refined = guided_logits(planes, embedding, self.backend.mask_size)
        # guided_logits has refused an embedding without its image; __init__, a missing refiner
        if bilinear is not None and self.refiner is not None and embedding.image is not None:
            from composeseg.refiner import refine_logits

            refined = refine_logits(
                self.refiner, bilinear, refined, embedding.image, self.backend.mask_size
            )
        return torch.from_numpy(refined).reshape(full.shape).to(full.device)

    def _as_embedding(self, value: ImageSource | ImageEmbedding) -> ImageEmbedding:
        if not isinstance(value, ImageEmbedding):
            return self.embed(value)
        if value.model_key != self._key:
            raise ValueError(
                "this ImageEmbedding was computed by another model; embed the image with "
                f"{self!r} first"
            )
        return value

    def _chunks(
        self, batch: Prompts, embedding: ImageEmbedding, mask_logits: torch.Tensor | None = None
    ) -> Iterator[tuple[int, DecoderPrompts]]:
        size, frame = embedding.original_size, embedding.input_size
        boxes = None if batch.boxes is None else boxes_to_input_frame(batch.boxes, size, frame)
        points = None if batch.points is None else coords_to_input_frame(batch.points, size, frame)
        for start in range(0, len(batch), self.decode_batch_size):
            rows = slice(start, start + self.decode_batch_size)
            yield (
                start,
                DecoderPrompts(
                    boxes=self._tensor(boxes, rows),
                    points=self._tensor(points, rows),
                    labels=None
                    if batch.point_labels is None
                    else torch.from_numpy(batch.point_labels[rows].astype(np.int64)).to(
                        self.device
                    ),
                    masks=self._mask_prompt(batch, mask_logits, rows),
                ),
            )

    def _mask_prompt(
        self, batch: Prompts, mask_logits: torch.Tensor | None, rows: slice
    ) -> torch.Tensor | None:
        """``(C, 1, M, M)`` mask prompts of a chunk: the model's own logits (already on the
        device) when given, else the prompts' ``mask_input``."""
        if mask_logits is not None:
            return mask_logits[rows, None].to(self.dtype)
        if batch.mask_input is None:
            return None
        return self._tensor(batch.mask_input[:, None], rows)

    def _tensor(self, array: np.ndarray | None, rows: slice) -> torch.Tensor | None:
        if array is None:
            return None
        return torch.from_numpy(np.ascontiguousarray(array[rows])).to(self.device, self.dtype)


def fit_to_image(prompts: Prompts, original_size: tuple[int, int]) -> Prompts:
    """Clip boxes to the ``(H, W)`` image and reject prompts that do not touch it.

    Raises:
        ValueError: a box that lies entirely outside the image (empty after clipping), or a
            point outside ``[0, W] x [0, H]``, naming its index and value.
    """
    height, width = original_size
    if prompts.points is not None and prompts.point_labels is not None:
        used = prompts.point_labels != PADDING
        x, y = prompts.points[..., 0], prompts.points[..., 1]
        outside = used & ((x < 0) | (x > width) | (y < 0) | (y > height))
        if outside.any():
            i, j = np.argwhere(outside)[0]
            raise ValueError(
                f"points[{i}, {j}] = {prompts.points[i, j].tolist()} lies outside the "
                f"{width}x{height} image"
            )
    if prompts.boxes is None:
        return prompts
    clipped = clip_boxes(prompts.boxes, original_size)
    empty = (clipped[:, 2] <= clipped[:, 0]) | (clipped[:, 3] <= clipped[:, 1])
    if empty.any():
        i = int(np.argmax(empty))
        raise ValueError(
            f"boxes[{i}] = {prompts.boxes[i].tolist()} lies outside the {width}x{height} image"
        )
    if np.array_equal(clipped, prompts.boxes):
        return prompts
    return prompts.replace(boxes=clipped)

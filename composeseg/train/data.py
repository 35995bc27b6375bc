"""Training data: COCO-format folders and on-the-fly synthetic scenes, in SAM's input frame.

A source maps an index to a :class:`TrainSample` (an image and its instance masks in original
pixels). :func:`augment` crops it at a random scale and aspect ratio, and :func:`prepare`
applies exactly the geometry inference uses (:func:`composeseg.transforms.preprocess`: resize
the longest side to S, pad bottom/right), so the model is trained on padded, non-square frames
like the ones it will see.
"""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from composeseg.train.config import TRAIN_SEED_LIMIT, VALIDATION_SEED_START
from composeseg.transforms import IMAGENET_MEAN, IMAGENET_STD, preprocess

if TYPE_CHECKING:
    from composeseg.synthetic import SceneConfig
    from composeseg.synthetic.randomized import RandomizedConfig

MIN_MASK_PIXELS = 16
"""Instances smaller than this (after a crop) are not used as training targets."""


@dataclass(frozen=True, eq=False)
class TrainSample:
    """One image with instance masks.

    Attributes:
        image: ``(H, W, 3) uint8`` RGB.
        masks: ``(N, H, W) bool`` instance masks in pixels of ``image``.
        key: identifies the unaugmented image (cache key for frozen-encoder embeddings).
    """

    image: np.ndarray
    masks: np.ndarray
    key: str


@dataclass(frozen=True, eq=False)
class Prepared:
    """A sample in the model frame.

    Attributes:
        pixels: ``(3, S, S) float32`` normalised, padded pixels.
        masks: ``(N, S, S) bool`` masks in the padded model frame (False in the padding).
        input_size: ``(h, w)`` of the resized image inside the frame.
        key: the sample's key.
    """

    pixels: torch.Tensor
    masks: torch.Tensor
    input_size: tuple[int, int]
    key: str


class SampleSource(Protocol):
    """Anything that hands out training samples by index and a fixed validation set."""

    def train_sample(self, rng: np.random.Generator) -> TrainSample:
        """A random training sample drawn with ``rng``."""
        ...

    def validation_samples(self, count: int) -> list[TrainSample]:
        """Up to ``count`` held-out samples, the same ones on every call."""
        ...


@dataclass(frozen=True)
class SyntheticSource:
    """Scenes generated on the fly by :func:`composeseg.synthetic.generate_scene`.

    Training scenes use seeds in ``[0, TRAIN_SEED_LIMIT)`` and a random size in
    ``[min_side, max_side]`` per side (so aspect ratios and padding vary); validation scenes use
    seeds from ``VALIDATION_SEED_START`` and ``validation_config``. Seeds from
    ``EVALUATION_SEED_START`` are never used here.

    With ``randomized=p``, a share ``p`` of training scenes (and of validation scenes, every
    other one) comes from the domain-randomised family of
    :mod:`composeseg.synthetic.randomized` instead, with its own sizes and aspect ratios,
    drawn with ``randomized_config`` (default: the family's defaults).
    """

    scene_config: SceneConfig | None = None
    min_side: int = 192
    max_side: int = 352
    validation_config: SceneConfig | None = None
    randomized: float = 0.0
    randomized_config: RandomizedConfig | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.randomized <= 1.0:
            raise ValueError(f"randomized must be in [0, 1], got {self.randomized}")
        if not 16 <= self.min_side <= self.max_side:
            raise ValueError(
                f"need 16 <= min_side <= max_side, got min_side={self.min_side}, "
                f"max_side={self.max_side}"
            )

    def train_sample(self, rng: np.random.Generator) -> TrainSample:
        from composeseg.synthetic import SceneConfig

        seed = int(rng.integers(0, TRAIN_SEED_LIMIT))
        if self.randomized and rng.random() < self.randomized:
            return randomized_sample(seed, self.randomized_config)
        height, width = (int(v) for v in rng.integers(self.min_side, self.max_side + 1, size=2))
        base = self.scene_config or SceneConfig()
        return scene_sample(seed, base.replace(height=height, width=width))

    def validation_samples(self, count: int) -> list[TrainSample]:
        from composeseg.synthetic import SceneConfig

        config = self.validation_config or SceneConfig()
        return [
            randomized_sample(VALIDATION_SEED_START + i, self.randomized_config)
            if self.randomized and i % 2
            else scene_sample(VALIDATION_SEED_START + i, config)
            for i in range(count)
        ]


def scene_sample(seed: int, config: SceneConfig) -> TrainSample:
    """The generated scene of ``seed`` as a :class:`TrainSample`."""
    from composeseg.synthetic import generate_scene

    scene = generate_scene(seed, config)
    return TrainSample(
        scene.image, scene.masks(), key=f"scene-{seed}-{config.height}x{config.width}"
    )


def randomized_sample(seed: int, config: RandomizedConfig | None = None) -> TrainSample:
    """The domain-randomised scene of ``(seed, config)`` as a :class:`TrainSample`."""
    from composeseg.synthetic.randomized import generate_randomized_scene

    scene = generate_randomized_scene(seed, config)
    key = f"randomized-{seed}" if config is None else f"randomized-{seed}-{config}"
    return TrainSample(scene.image, scene.masks(), key=key)


@dataclass
class CocoSource:
    """A COCO instance-segmentation dataset (polygons or RLE), read with pycocotools.

    Crowd annotations and empty masks are skipped, as are images without instances. The last
    ``holdout`` images (by image id) are kept for validation and never trained on; with
    ``holdout=0`` validation reuses training images.
    """

    annotation_file: str | os.PathLike
    image_dir: str | os.PathLike
    holdout: int = 0
    _image_ids: list[int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        from pycocotools.coco import COCO

        path = Path(self.annotation_file)
        if not path.is_file():
            raise FileNotFoundError(f"COCO annotation file {path} does not exist")
        if not Path(self.image_dir).is_dir():
            raise FileNotFoundError(f"image directory {self.image_dir} does not exist")
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            self._coco = COCO(str(path))
        ids = sorted(
            i
            for i in self._coco.getImgIds()
            if any(not a.get("iscrowd", 0) for a in self._coco.imgToAnns.get(i, []))
        )
        if not ids:
            raise ValueError(f"{path} has no image with a non-crowd instance annotation")
        if not 0 <= self.holdout < len(ids):
            raise ValueError(
                f"holdout must be in [0, {len(ids)}) for {len(ids)} annotated images, "
                f"got {self.holdout}"
            )
        self._image_ids = ids

    def __len__(self) -> int:
        return len(self._image_ids)

    @property
    def train_ids(self) -> list[int]:
        return self._image_ids[: len(self._image_ids) - self.holdout]

    def sample(self, image_id: int) -> TrainSample:
        """Image ``image_id`` with its non-crowd, non-empty instance masks."""
        from composeseg.image import load_image

        info = self._coco.imgs[image_id]
        image = load_image(Path(self.image_dir) / info["file_name"])
        anns = [a for a in self._coco.imgToAnns.get(image_id, []) if not a.get("iscrowd", 0)]
        masks = [self._coco.annToMask(a).astype(bool) for a in anns]
        masks = [m for m in masks if m.shape == image.shape[:2] and m.any()]
        stacked = np.stack(masks) if masks else np.zeros((0, *image.shape[:2]), bool)
        return TrainSample(image, stacked, key=f"coco-{image_id}")

    def train_sample(self, rng: np.random.Generator) -> TrainSample:
        ids = self.train_ids
        return self.sample(ids[int(rng.integers(len(ids)))])

    def validation_samples(self, count: int) -> list[TrainSample]:
        ids = self._image_ids[len(self._image_ids) - self.holdout :] if self.holdout else []
        return [self.sample(i) for i in (ids or self._image_ids)[:count]]


ZOOM_CROP_CONTEXT = (3.0, 8.0)
"""Range of a zoom crop's side over its object's longer side (inference's default: 5)."""


def augment(sample: TrainSample, rng: np.random.Generator, zoom: float = 0.0) -> TrainSample:
    """Random crop: area 35–100 % of the image, aspect ratio log-uniform in [1/2, 2].

    Half of the samples are returned unchanged. Masks smaller than ``MIN_MASK_PIXELS`` after
    the crop are dropped; if none is left the sample is returned unchanged.

    With ``zoom`` > 0 that share of samples is instead a zoom crop: the square window that
    :func:`composeseg.zoom.zoom_windows` draws around one random instance, its side
    :data:`ZOOM_CROP_CONTEXT` times the object's, so the model also learns objects enlarged
    to its input as zoomed prompting shows them. ``zoom=0`` draws exactly the random numbers
    it always did, so earlier runs reproduce.
    """
    if zoom and len(sample.masks) and rng.random() < zoom:
        return _zoom_crop(sample, rng)
    if rng.random() < 0.5:
        return sample
    height, width = sample.image.shape[:2]
    area = rng.uniform(0.35, 1.0) * height * width
    aspect = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))
    crop_w = int(min(width, max(16, round(np.sqrt(area * aspect)))))
    crop_h = int(min(height, max(16, round(np.sqrt(area / aspect)))))
    y0 = int(rng.integers(0, height - crop_h + 1))
    x0 = int(rng.integers(0, width - crop_w + 1))
    return _cropped(sample, (x0, y0, x0 + crop_w, y0 + crop_h))


def _zoom_crop(sample: TrainSample, rng: np.random.Generator) -> TrainSample:
    from composeseg.geometry import tight_boxes
    from composeseg.zoom import zoom_windows

    target = int(rng.integers(len(sample.masks)))
    context = rng.uniform(*ZOOM_CROP_CONTEXT)
    extent = tight_boxes(sample.masks[target : target + 1])
    x0, y0, x1, y1 = (int(v) for v in zoom_windows(extent, sample.image.shape[:2], context)[0])
    return _cropped(sample, (x0, y0, x1, y1))


def _cropped(sample: TrainSample, window: tuple[int, int, int, int]) -> TrainSample:
    """``sample`` cut to the xyxy ``window``, without the masks it leaves too small."""
    x0, y0, x1, y1 = window
    masks = sample.masks[:, y0:y1, x0:x1]
    keep = masks.reshape(len(masks), -1).sum(1) >= MIN_MASK_PIXELS
    if not keep.any():
        return sample
    image = np.ascontiguousarray(sample.image[y0:y1, x0:x1])
    return TrainSample(image, np.ascontiguousarray(masks[keep]), sample.key)


def prepare(sample: TrainSample, image_size: int) -> Prepared:
    """Resize + pad ``sample`` into the ``image_size`` model frame, as inference does.

    Masks are resized bilinearly (antialiased) and thresholded at 0.5, then padded with False.
    """
    pixels, (h, w) = preprocess(sample.image, image_size, "longest", IMAGENET_MEAN, IMAGENET_STD)
    masks = torch.from_numpy(sample.masks).float()
    if len(masks):
        if masks.shape[1:] != (h, w):
            masks = F.interpolate(masks[None], (h, w), mode="bilinear", antialias=True)[0]
        masks = F.pad(masks, (0, image_size - w, 0, image_size - h)) > 0.5
    else:
        masks = torch.zeros((0, image_size, image_size), dtype=torch.bool)
    return Prepared(pixels[0], masks, (h, w), sample.key)

"""Concept prompts with SAM 3: an image and noun phrases in, every matching instance out.

SAM 3 (transformers ``Sam3Model``) detects and segments all instances of a short noun phrase
("yellow school bus"). :class:`ConceptSam` runs the image encoder once per image and shares
its features across every concept of the call; the concepts go through the text encoder and
the DETR-style decoder in batches.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from composeseg.device import pick_device, quiet_loading
from composeseg.image import ImageSource, load_image
from composeseg.loading import looks_like_path, read_model_type
from composeseg.prompts import text_prompts

if TYPE_CHECKING:
    import supervision as sv

MIN_TRANSFORMERS = "5.0"
"""First transformers release with ``Sam3Model`` (pip extra ``composeseg[sam3]``)."""

KNOWN_SAM3_MODELS: dict[str, str] = {"sam3": "facebook/sam3"}
"""Short names accepted by :func:`load_sam3`. The weights are gated under Meta's SAM License."""

# transformers config ``model_type`` values whose checkpoints hold the SAM 3 image detector
# (the released hub repository also carries the video tracker, which Sam3Model skips).
_SAM3_MODEL_TYPES = ("sam3", "sam3_video")

# Upsampled float masks are produced in slices of at most this many bytes (as in composeseg.sam).
_UPSCALE_BYTES = 64 * 2**20


@dataclass(frozen=True, eq=False)
class ConceptPrediction:
    """Instances found for a list of concepts in one image.

    Rows are grouped by concept (in the order of ``concepts``), highest score first within a
    concept.

    Attributes:
        masks: ``(N, H, W) bool``, pixels of the original image.
        boxes: ``(N, 4) float32`` xyxy boxes predicted by the detector, pixels of the original
            image, clipped to it.
        scores: ``(N,) float32`` in ``[0, 1]``: the query's match probability times the
            concept's presence probability (SAM 3's detection score).
        class_id: ``(N,) int64`` index into ``concepts``.
        concepts: the concept phrases of the call, in the caller's order.
    """

    masks: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    class_id: np.ndarray
    concepts: tuple[str, ...]

    def __post_init__(self) -> None:
        n = len(self.masks)
        if self.masks.ndim != 3 or self.masks.dtype != np.bool_:
            raise ValueError(
                f"masks must be (N, H, W) bool, got {self.masks.shape} {self.masks.dtype}"
            )
        expected = {"boxes": (n, 4), "scores": (n,), "class_id": (n,)}
        for name, shape in expected.items():
            value = getattr(self, name)
            if value.shape != shape:
                raise ValueError(f"{name} must have shape {shape}, got {value.shape}")
        if n and (self.class_id.min() < 0 or self.class_id.max() >= len(self.concepts)):
            raise ValueError(
                f"class_id must index the {len(self.concepts)} concepts, "
                f"got values in [{self.class_id.min()}, {self.class_id.max()}]"
            )

    def __len__(self) -> int:
        return len(self.masks)

    @property
    def original_size(self) -> tuple[int, int]:
        """``(H, W)`` of the image, in pixels."""
        return int(self.masks.shape[1]), int(self.masks.shape[2])

    def class_names(self) -> np.ndarray:
        """``(N,) str``: the concept phrase of each instance."""
        return np.array([self.concepts[i] for i in self.class_id], dtype=str).reshape(-1)

    def to_detections(self) -> sv.Detections:
        """Convert to ``supervision.Detections``.

        ``xyxy`` is the predicted box, ``confidence`` the score, ``class_id`` the concept index
        and ``data["class_name"]`` the concept phrase.
        """
        from composeseg.detections import assemble

        return assemble(
            self.masks,
            xyxy=self.boxes,
            detector_score=self.scores,
            class_id=self.class_id,
            data={"class_name": self.class_names()},
        )


class ConceptSam:
    """A loaded SAM 3 image model that segments by concept. Build it with :func:`load_sam3`.

    Args:
        model: a transformers ``Sam3Model`` in eval mode, on ``device`` in ``dtype``.
        processor: the matching ``Sam3Processor`` (image resizing and the CLIP tokenizer).
        device: where the model lives.
        dtype: the model's floating dtype.
        concepts_per_batch: concepts per decoder call. Every concept in a call runs the DETR
            encoder, decoder and pixel decoder (288 x 288 for the released model) on its own
            view of the image features, so activation memory grows linearly with this number.
        name: where the model came from, for messages.
    """

    def __init__(
        self,
        model: Any,
        processor: Any,
        *,
        device: torch.device,
        dtype: torch.dtype = torch.float32,
        concepts_per_batch: int = 8,
        name: str = "",
    ) -> None:
        if concepts_per_batch < 1:
            raise ValueError(f"concepts_per_batch must be >= 1, got {concepts_per_batch}")
        self.model = model
        self.processor = processor
        self.device = device
        self.dtype = dtype
        self.concepts_per_batch = concepts_per_batch
        self.name = name or type(model).__name__

    def __repr__(self) -> str:
        return f"ConceptSam({self.name!r}, device={self.device}, dtype={self.dtype})"

    @property
    def max_concept_tokens(self) -> int:
        """Longest concept the text encoder takes, in tokens, start and end tokens included."""
        return int(self.model.config.text_config.max_position_embeddings)

    @torch.inference_mode()
    def segment_concepts(
        self,
        image: ImageSource,
        concepts: str | Sequence[str],
        *,
        threshold: float = 0.5,
        mask_threshold: float = 0.5,
    ) -> ConceptPrediction:
        """Find every instance of each concept in one image.

        Args:
            image: a path, a PIL image, or an ``(H, W, 3) uint8`` RGB array (normalised by
                :func:`composeseg.load_image`).
            concepts: one short noun phrase or a list ("person", "red car"); no duplicates.
            threshold: keep instances whose score is above this, in ``[0, 1]``.
            mask_threshold: a pixel belongs to the mask where the upsampled mask probability is
                above this, in ``[0, 1]``.

        Returns:
            A :class:`ConceptPrediction` in the original image's pixels; empty (``N = 0``,
            shapes kept) when nothing scores above ``threshold``.

        Raises:
            ValueError: no concepts, an empty or duplicated concept, a concept longer than
                :attr:`max_concept_tokens`, or a threshold outside ``[0, 1]``.
        """
        names = tuple(text_prompts(concepts, "concepts", unique=True))
        for label, value in (("threshold", threshold), ("mask_threshold", mask_threshold)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{label} must be in [0, 1], got {value}")
        tokens = self._tokenize(names)
        rgb = load_image(image)
        size = (int(rgb.shape[0]), int(rgb.shape[1]))
        vision = self._encode_image(rgb)
        found = []
        for start in range(0, len(names), self.concepts_per_batch):
            stop = min(start + self.concepts_per_batch, len(names))
            outputs = self.model(
                vision_embeds=_repeat_batch(vision, stop - start),
                input_ids=tokens["input_ids"][start:stop],
                attention_mask=tokens["attention_mask"][start:stop],
            )
            found.append(_select(outputs, start, size, threshold, mask_threshold))
        masks, boxes, scores, class_id = (np.concatenate(part) for part in zip(*found, strict=True))
        order = np.lexsort((-scores, class_id))
        return ConceptPrediction(
            masks=masks[order],
            boxes=boxes[order],
            scores=scores[order],
            class_id=class_id[order],
            concepts=names,
        )

    def _encode_image(self, rgb: np.ndarray) -> Any:
        # load_image passes a caller's uint8 array through, read-only ones included; the
        # processor's torch.from_numpy warns on those
        rgb = rgb if rgb.flags.writeable else rgb.copy()
        encoded = self.processor.image_processor(
            images=rgb, return_tensors="pt", input_data_format="channels_last"
        )
        pixels = encoded["pixel_values"].to(self.device, self.dtype)
        return self.model.get_vision_features(pixel_values=pixels)

    def _tokenize(self, names: tuple[str, ...]) -> dict[str, torch.Tensor]:
        # The released model was trained with concepts padded to its 32 text positions.
        limit = self.max_concept_tokens
        encoded = self.processor.tokenizer(list(names), padding="max_length", max_length=limit)
        for name, ids in zip(names, encoded["input_ids"], strict=True):
            if len(ids) > limit:
                raise ValueError(
                    f"concept {name!r} is {len(ids)} tokens; SAM 3 takes at most {limit} "
                    "(use a short noun phrase)"
                )
        return {
            key: torch.tensor(encoded[key], dtype=torch.long, device=self.device)
            for key in ("input_ids", "attention_mask")
        }


def _repeat_batch(vision: Any, n: int) -> Any:
    """The single image's encoder output viewed as a batch of ``n`` (no copy)."""
    if n == 1:
        return vision
    return type(vision)(
        fpn_hidden_states=tuple(t.expand(n, *t.shape[1:]) for t in vision.fpn_hidden_states),
        fpn_position_encoding=tuple(
            t.expand(n, *t.shape[1:]) for t in vision.fpn_position_encoding
        ),
    )


def _select(
    outputs: Any,
    first_concept: int,
    size: tuple[int, int],
    threshold: float,
    mask_threshold: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Keep the queries above ``threshold``; boxes and masks in original-image pixels.

    Scores, box scaling and mask binarisation follow ``Sam3Processor``'s instance
    post-processing; masks are upsampled only for the kept queries.
    """
    scores = outputs.pred_logits.float().sigmoid()  # (C, Q)
    if outputs.presence_logits is not None:
        scores = scores * outputs.presence_logits.float().sigmoid()  # (C, 1) broadcast
    concept, query = torch.nonzero(scores > threshold, as_tuple=True)
    height, width = size
    scale = torch.tensor([width, height, width, height], dtype=torch.float32, device=scores.device)
    boxes = outputs.pred_boxes[concept, query].float() * scale  # normalised xyxy -> pixels
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
    masks = _upscale_masks(outputs.pred_masks[concept, query], size, mask_threshold)
    return (
        masks,
        boxes.cpu().numpy().astype(np.float32),
        scores[concept, query].cpu().numpy().astype(np.float32),
        (concept + first_concept).cpu().numpy().astype(np.int64),
    )


def _upscale_masks(
    logits: torch.Tensor, size: tuple[int, int], mask_threshold: float
) -> np.ndarray:
    """``(N, h, w)`` mask logits -> ``(N, H, W) bool`` (bilinear on probabilities)."""
    out = np.zeros((len(logits), *size), dtype=bool)
    step = max(1, _UPSCALE_BYTES // (4 * size[0] * size[1]))
    for start in range(0, len(logits), step):
        probs = logits[start : start + step, None].float().sigmoid()
        probs = torch.nn.functional.interpolate(
            probs, size=size, mode="bilinear", align_corners=False
        )
        out[start : start + step] = (probs[:, 0] > mask_threshold).cpu().numpy()
    return out


def load_sam3(
    source: str | os.PathLike,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    concepts_per_batch: int = 8,
) -> ConceptSam:
    """Load a SAM 3 image model and its processor.

    Args:
        source: a hub id (``"facebook/sam3"``; gated: accept the SAM License on the hub first)
            or the short name ``"sam3"``, or a local directory holding both the model and the
            processor written by ``save_pretrained``.
        device: "cuda", "mps", "cpu" or a ``torch.device``; default: cuda, then mps, then cpu.
        dtype: model dtype; default float32. ``torch.bfloat16`` halves memory;
            ``torch.float16`` on GPUs only.
        concepts_per_batch: see :class:`ConceptSam`.

    Raises:
        ImportError: the installed transformers has no ``Sam3Model``.
        FileNotFoundError: a path-like source that does not exist.
        ValueError: a source that exists but is not a SAM 3 model with its processor, or a hub
            id that cannot be loaded; the message names the source.
    """
    model_class, processor_class = _sam3_classes()
    target = pick_device(device)
    dtype = dtype or torch.float32
    if dtype == torch.float16 and target.type == "cpu":
        raise ValueError("float16 is not supported on CPU; use torch.bfloat16 or torch.float32")
    text = os.fspath(source)
    path = Path(text).expanduser()
    with quiet_loading():
        if path.is_dir():
            _check_config(path)
            model, processor = _load_pair(model_class, processor_class, path, text)
        elif path.exists():
            raise ValueError(f"{text}: pass the save_pretrained directory, not a file")
        elif looks_like_path(text):
            raise FileNotFoundError(f"model source {text!r} is not an existing directory")
        else:
            model, processor = _load_pair(
                model_class, processor_class, KNOWN_SAM3_MODELS.get(text, text), text
            )
    model = model.to(device=target, dtype=dtype).eval()
    return ConceptSam(
        model,
        processor,
        device=target,
        dtype=dtype,
        concepts_per_batch=concepts_per_batch,
        name=text,
    )


def _sam3_classes() -> tuple[Any, Any]:
    import transformers

    model_class = getattr(transformers, "Sam3Model", None)
    processor_class = getattr(transformers, "Sam3Processor", None)
    if model_class is None or processor_class is None:
        version = getattr(transformers, "__version__", "unknown")
        from composeseg.extras import MissingExtraError

        raise MissingExtraError(
            "SAM 3", f"transformers>={MIN_TRANSFORMERS} (installed: {version})", "sam3"
        )
    return model_class, processor_class


def _check_config(path: Path) -> None:
    model_type = read_model_type(path)
    if model_type not in _SAM3_MODEL_TYPES:
        hint = " (load it with composeseg.load_sam)" if "sam" in str(model_type) else ""
        raise ValueError(f"{path}: model_type {model_type!r} is not SAM 3{hint}")


def _load_pair(model_class: Any, processor_class: Any, where: str | Path, name: str) -> Any:
    """``(model, processor)`` from a directory or hub id; failures name ``name``."""
    try:
        model = model_class.from_pretrained(where)
    except Exception as error:  # safetensors' SafetensorError (corrupt file) is a bare Exception
        raise ValueError(
            f"{name}: loading {model_class.__name__} failed (for a hub id: no network, "
            f"gated repository or no such repository?): {error}"
        ) from error
    try:
        processor = processor_class.from_pretrained(where)
    except (OSError, ValueError, TypeError) as error:
        raise ValueError(
            f"{name}: loading {processor_class.__name__} failed; save the processor beside the "
            f"model (processor.save_pretrained(directory)): {error}"
        ) from error
    return model, processor

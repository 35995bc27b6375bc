"""Score masks against texts with a CLIP-style model, the way the SAM paper prepares CLIP inputs.

Each mask becomes a square crop around its box, expanded (1.5x by default; the paper uses 1 to
2x), resized to the model's input size, with the background outside the mask blanked
(:func:`composeseg.crops.mask_crops`). Crops and texts go through transformers' CLIP or SigLIP
in batches; text embeddings are cached, since the same queries come back image after image.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from composeseg.crops import DEFAULT_FILL, mask_crops
from composeseg.image import ImageSource, load_image
from composeseg.prompts import text_prompts

DEMO_CLIP = "composeseg-demo-clip"
"""Name of the embedded demo text model (a tiny CLIP trained on generated scenes)."""


class ClipMatcher:
    """``(image, masks, texts) -> (N_masks, N_texts)`` cosine similarities.

    Args:
        model_id_or_dir: a transformers CLIP or SigLIP hub id or ``save_pretrained``
            directory (model, tokenizer and image processor); None: the embedded demo model,
            which knows the generated scenes' colours, shapes and sizes only.
        expand: crop side = ``expand`` x the longer side of the mask's box.
        blank_background: fill pixels outside the mask (the model sees the object alone).
        batch_size: crops per forward pass.
        device: torch device; default cuda, then mps, then cpu.

    Raises:
        ValueError: ``expand`` < 1, ``batch_size`` < 1, or a model that is neither CLIP-like
            (``get_image_features`` / ``get_text_features``) nor loadable.
    """

    def __init__(
        self,
        model_id_or_dir: str | os.PathLike[str] | None = None,
        *,
        expand: float = 1.5,
        blank_background: bool = True,
        batch_size: int = 64,
        device: str | None = None,
    ) -> None:
        from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

        from composeseg.device import pick_device, quiet_loading
        from composeseg.loading import DEMO_CLIP_DIR

        if not expand >= 1:
            raise ValueError(f"expand must be >= 1 (the crop holds the whole box), got {expand}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        source = str(DEMO_CLIP_DIR if model_id_or_dir is None else model_id_or_dir)
        self.name = DEMO_CLIP if model_id_or_dir is None else source
        with quiet_loading():
            try:
                self.model = AutoModel.from_pretrained(source)
                self.tokenizer = AutoTokenizer.from_pretrained(source)
                self.processor = AutoImageProcessor.from_pretrained(source)
            except (OSError, ValueError) as error:
                raise ValueError(
                    f"could not load a CLIP-style model from {source}: {error}"
                ) from None
        if not hasattr(self.model, "get_image_features"):
            raise ValueError(
                f"{source} is a {type(self.model).__name__}, not a CLIP-style model "
                "(no get_image_features)"
            )
        self.device = pick_device(device)
        self.model.to(self.device).eval()
        self.expand = float(expand)
        self.blank_background = blank_background
        self.batch_size = batch_size
        self.image_size = int(self.model.config.vision_config.image_size)
        self.fill = _mean_colour(self.processor)
        # SigLIP was trained on texts padded to a fixed length; CLIP pools at the EOS token.
        self._text_padding: dict[str, Any] = (
            {"padding": "max_length", "max_length": 64}
            if self.model.config.model_type.startswith("siglip")
            else {"padding": True}
        )
        self._text_cache: dict[str, np.ndarray] = {}

    def __repr__(self) -> str:
        return f"ClipMatcher({self.name!r}, expand={self.expand}, blank={self.blank_background})"

    def __call__(
        self,
        image: ImageSource,
        masks: np.ndarray,
        texts: str | Sequence[str],
        *,
        boxes: np.ndarray | None = None,
    ) -> np.ndarray:
        """Cosine similarity of every mask's crop with every text.

        Args:
            image: path, PIL image or ``(H, W, 3) uint8`` RGB.
            masks: ``(N, H, W) bool`` in the image's pixels.
            texts: one text or a list of T texts.
            boxes: ``(N, 4)`` xyxy pixel boxes to crop around (default: tight mask boxes).

        Returns:
            ``(N, T) float32`` in [-1, 1]; higher is a better match.
        """
        texts = text_prompts(texts)
        text = self.text_embeddings(texts)
        crops = self.image_embeddings(image, masks, boxes=boxes)
        return (crops @ text.T).astype(np.float32)

    def image_embeddings(
        self, image: ImageSource, masks: np.ndarray, *, boxes: np.ndarray | None = None
    ) -> np.ndarray:
        """``(N, D) float32`` unit-length embeddings of the masks' crops."""
        import torch

        rgb = load_image(image)
        crops = mask_crops(
            rgb,
            masks,
            size=self.image_size,
            expand=self.expand,
            blank_background=self.blank_background,
            fill=self.fill,
            boxes=boxes,
        )
        out = []
        for start in range(0, len(crops), self.batch_size):
            batch = list(crops[start : start + self.batch_size])
            pixels = self.processor(images=batch, return_tensors="pt")["pixel_values"]
            with torch.inference_mode():
                features = self.model.get_image_features(pixel_values=pixels.to(self.device))
            out.append(_unit(features))
        if out:
            return np.concatenate(out)
        # SigLIP has no projection_dim: its image embedding is the vision tower's width.
        config = self.model.config
        dim = getattr(config, "projection_dim", None) or config.vision_config.hidden_size
        return np.zeros((0, int(dim)), np.float32)

    def text_embeddings(self, texts: str | Sequence[str]) -> np.ndarray:
        """``(T, D) float32`` unit-length embeddings; each distinct text is encoded once."""
        import torch

        texts = text_prompts(texts)
        new = list(dict.fromkeys(t for t in texts if t not in self._text_cache))
        if new:
            tokens = self.tokenizer(new, truncation=True, return_tensors="pt", **self._text_padding)
            with torch.inference_mode():
                features = self.model.get_text_features(**tokens.to(self.device))
            self._text_cache.update(zip(new, _unit(features), strict=True))
        return np.stack([self._text_cache[t] for t in texts])


def _unit(features: Any) -> np.ndarray:
    # transformers 5 returns a ModelOutput whose pooler_output is the projected embedding.
    tensor = features if hasattr(features, "norm") else features.pooler_output
    tensor = tensor.float()
    return (tensor / tensor.norm(dim=-1, keepdim=True).clamp_min(1e-12)).cpu().numpy()


def _mean_colour(processor: Any) -> tuple[int, int, int]:
    mean = getattr(processor, "image_mean", None)
    if mean is None or len(mean) != 3:
        return DEFAULT_FILL
    r, g, b = (round(255 * float(m)) for m in mean)
    return r, g, b

"""SAM-HQ (transformers ``SamHQModel``): SAM plus a high-quality output token.

Same input frame and prompt encoding as SAM. Two differences matter here:

- the encoder also returns the output of every global-attention ViT block
  (``intermediate_embeddings``); the mask decoder fuses the first one into its HQ mask features,
  so the embedding has to keep it;
- the decoder has one more output token, whose HQ mask is either added to SAM's mask
  (``hq_token_only=False``) or returned instead of it (``True``).
"""

from __future__ import annotations

from typing import Any

import torch

from composeseg.backends.base import Backend, DecoderPrompts, expand_batch


class SamHQBackend(Backend):
    """Runs a ``SamHQModel``.

    Args:
        model: the transformers model.
        hq_token_only: single-mask decoding returns the HQ token's mask alone instead of SAM's
            mask corrected by it. Default False, as in the authors' demo and in transformers:
            their advice (``demo/demo_hqsam.py`` in SysCV/sam-hq) is ``True`` only for images
            that contain a single object, ``False`` for multi-object images such as COCO, and
            ``False`` for all their quantitative evaluations (COCO, LVIS, DAVIS, YTVOS, UVO).
            Our prompts come one per object from detectors and trackers in cluttered scenes,
            the multi-object case.

    With ``multimask`` the decoder returns SAM's three candidate masks, each corrected by the HQ
    mask, best predicted IoU first (``SamHQModel`` sorts them; the original code keeps only the
    best): the HQ token makes one mask, so ``hq_token_only`` cannot apply there.
    """

    family = "sam_hq"
    resize_mode = "longest"
    model: Any  # a ``SamHQModel``: its config and methods are not visible through nn.Module

    def __init__(self, model: torch.nn.Module, *, hq_token_only: bool = False) -> None:
        super().__init__(model)
        self.hq_token_only = hq_token_only

    @property
    def image_size(self) -> int:
        return int(self.model.config.vision_config.image_size)

    def encode(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Returns ``(image_embeddings (1, C, h, w), first_global_block (1, h, w, D))``.

        The decoder reads only ``intermediate_embeddings[0]``; the other global blocks (three
        more in ViT-B/L/H, 12-21 MB each at 1024) are dropped rather than cached with every
        embedding. A config without global blocks gives the image embedding alone.
        """
        embeddings, intermediate = self.model.get_image_embeddings(pixel_values)
        return (embeddings, *intermediate[:1])

    def decode(
        self, features: tuple[torch.Tensor, ...], prompts: DecoderPrompts, multimask: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        (embedding,) = expand_batch(features[:1], len(prompts))
        output = self.model(
            image_embeddings=embedding,
            # kept at batch 1: the decoder adds it to the per-object features by broadcasting,
            # so its two transposed convolutions run once instead of once per object
            intermediate_embeddings=list(features[1:]),
            input_points=None if prompts.points is None else prompts.points[:, None],
            input_labels=None if prompts.labels is None else prompts.labels[:, None],
            input_boxes=None if prompts.boxes is None else prompts.boxes[:, None],
            input_masks=prompts.masks,
            multimask_output=multimask,
            # with multimask, hq_token_only=True would return one mask against three IoU scores
            hq_token_only=self.hq_token_only and not multimask,
        )
        return output.pred_masks[:, 0], output.iou_scores[:, 0]

"""SAM and SlimSAM (transformers ``SamModel``)."""

from __future__ import annotations

import torch

from composeseg.backends.base import Backend, DecoderPrompts, expand_batch
from composeseg.backends.sam_decoder import decode


class SamBackend(Backend):
    family = "sam"
    resize_mode = "longest"

    @property
    def image_size(self) -> int:
        return int(self.model.config.vision_config.image_size)

    @property
    def mask_size(self) -> int:
        # 4x the image embedding, whatever the patch (the demo presets train 8 px ones too)
        return 4 * int(self.model.config.prompt_encoder_config.image_embedding_size)

    def encode(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (self.model.get_image_embeddings(pixel_values),)

    def decode(
        self, features: tuple[torch.Tensor, ...], prompts: DecoderPrompts, multimask: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if features[0].shape[0] == 1 and not torch.is_grad_enabled():
            # transformers' forward copies the image-side tensors once per object; this path
            # shares them and is several times cheaper per object on a CPU (sam_decoder.py)
            return decode(
                self.model,
                features[0],
                boxes=prompts.boxes,
                points=prompts.points,
                labels=prompts.labels,
                masks=prompts.masks,
                multimask=multimask,
            )
        # training: one embedding per object, with grad
        (embedding,) = expand_batch(features, len(prompts))
        output = self.model(
            image_embeddings=embedding,
            input_points=None if prompts.points is None else prompts.points[:, None],
            input_labels=None if prompts.labels is None else prompts.labels[:, None],
            input_boxes=None if prompts.boxes is None else prompts.boxes[:, None],
            input_masks=prompts.masks,
            multimask_output=multimask,
        )
        return output.pred_masks[:, 0], output.iou_scores[:, 0]

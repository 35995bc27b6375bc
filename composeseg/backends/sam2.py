"""SAM 2 / SAM 2.1 on single images (transformers ``Sam2Model``).

What differs from SAM, checked against transformers' ``Sam2ImageProcessor``, ``Sam2Model`` and
Meta's ``SAM2ImagePredictor``:

- input: the image is stretched to S x S (no padding), bilinear with antialiasing, then
  normalised with the ImageNet mean/std (the processor's ``1/255`` rescale followed by
  ``IMAGENET_DEFAULT_MEAN/STD`` is the same map as our 0-255 constants);
- features: the ``(1, C, h, w)`` image embedding (h = S / 16) and two finer FPN levels,
  ``(1, C/8, 4h, 4w)`` and ``(1, C/4, 2h, 2w)``, already projected by the decoder's ``conv_s0`` /
  ``conv_s1``, which its upsampling path adds back; ``get_image_embeddings`` adds
  ``no_memory_embedding`` to the embedding, as Meta's image predictor does for a frame without
  tracking memory;
- prompts: points and box corners in pixels of the S x S frame (the prompt encoder adds 0.5
  and divides by S, like SAM's); boxes become two corner tokens plus a not-a-point token;
  label -1 is Meta's not-a-point token, which we use for padding slots, as Meta's code does
  (transformers' processor pads with -10, a zero token the model never saw in training);
- output: low-res logits are ``4h`` = S / 4 square (256 at 1024). Single-mask decoding
  falls back to the best of the three multimask outputs when the single mask is unstable
  (``dynamic_multimask_via_stability``, on in the released configs, as in Meta's code). The
  object-presence logit is ignored, as Meta's image predictor ignores it.
"""

from __future__ import annotations

from typing import Any

import torch

from composeseg.backends.base import Backend, DecoderPrompts, expand_batch


class Sam2Backend(Backend):
    family = "sam2"
    resize_mode = "square"
    model: Any  # a ``Sam2Model``: its config and methods are not visible through nn.Module

    @property
    def image_size(self) -> int:
        # the prompt encoder divides coordinates by this S, so it defines the model frame
        return int(self.model.config.prompt_encoder_config.image_size)

    def encode(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Returns ``(embedding (1, C, h, w), level0 (1, C/8, 4h, 4w), level1 (1, C/4, 2h, 2w))``.

        ``get_image_embeddings`` lists the levels finest first; the embedding is moved to the
        front, where :class:`~composeseg.ImageEmbedding` promises it.
        """
        *high_resolution, embedding = self.model.get_image_embeddings(pixel_values)
        return (embedding, *high_resolution)

    def decode(
        self, features: tuple[torch.Tensor, ...], prompts: DecoderPrompts, multimask: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        embedding, *high_resolution = expand_batch(features, len(prompts))
        output = self.model(
            # the forward wants the levels finest first; it takes the batch size from the last
            # and hands the other two to the decoder: all three carry one row per object
            image_embeddings=[*high_resolution, embedding],
            input_points=None if prompts.points is None else prompts.points[:, None],
            input_labels=None if prompts.labels is None else prompts.labels[:, None],
            input_boxes=None if prompts.boxes is None else prompts.boxes[:, None],
            input_masks=prompts.masks,
            multimask_output=multimask,
        )
        return output.pred_masks[:, 0], output.iou_scores[:, 0]

"""The torch modules that ``torch.onnx.export`` turns into composeseg's ONNX graphs.

They reuse the transformers model's own submodules (no weight is copied) and only rearrange
what transformers' forward does, so that one graph serves every prompt combination:

- prompts arrive as SAM encodes them internally: ``point_coords (N, P, 2)`` in the model
  input frame with ``point_labels (N, P)``: 1 foreground, 0 background, 2 / 3 the top-left /
  bottom-right corner of a box, -1 "not a point" (padding). Boxes, points and both are the same
  graph; the number of points P is a dynamic axis
  (:func:`composeseg.backends.onnx.sam_point_prompts` builds them);
- the mask prompt is always an input, ``mask_input (N, 1, M, M)`` gated by ``has_mask_input``
  (Meta's device: no control flow in the graph);
- the decoder computes all of its candidate masks (single-mask output and the three multimask
  outputs) once and selects with the ``multimask_output`` flag, so one graph does both;
- full-resolution masks are produced in the graph from ``orig_im_size`` by the same two-step
  bilinear map as :func:`composeseg.transforms.upscale_logits` (Meta's ``postprocess_masks``).

:class:`MetaSignatureDecoder` reproduces Meta's ``SamOnnxModel`` (``segment_anything/utils/
onnx.py``) on a transformers ``SamModel``, input for input and output for output.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from composeseg.backends.onnx import NOT_A_POINT
from composeseg.onnx_sam_decoder import sam_candidates
from composeseg.transforms import ResizeMode


def _point_table(prompt_encoder: Any) -> Tensor:
    """``(4, D)``: the label embeddings (0 bg, 1 fg, 2 / 3 box corners); SAM keeps four
    ``Embedding(1, D)``, SAM 2 one ``Embedding(4, D)``."""
    table = prompt_encoder.point_embed
    if isinstance(table, nn.Embedding):
        return table.weight
    return torch.cat([e.weight for e in table], dim=0)


def embed_points(prompt_encoder: Any, coords: Tensor, labels: Tensor, image_size: int) -> Tensor:
    """``(N, P, 2)`` model-frame xy + ``(N, P)`` int labels -> ``(N, P, D)`` sparse embeddings.

    Meta's ``PromptEncoder._embed_points`` without its padding step (the caller encodes the pad
    token): the Fourier encoding of the pixel centre, replaced by the not-a-point embedding for
    label -1, plus the label's own embedding for labels 0..3.
    """
    encoding = prompt_encoder.shared_embedding((coords + 0.5) / image_size)
    padding = (labels == NOT_A_POINT).unsqueeze(-1)
    encoding = torch.where(padding, prompt_encoder.not_a_point_embed.weight, encoding)
    known = (labels >= 0).unsqueeze(-1).to(encoding.dtype)
    return encoding + F.embedding(labels.clamp(0, 3), _point_table(prompt_encoder)) * known


def embed_masks(prompt_encoder: Any, mask_input: Tensor, has_mask_input: Tensor) -> Tensor:
    """``(N, 1, M, M)`` logits gated by ``(1,)`` has_mask_input -> ``(N, D, h, w)`` dense
    embeddings (Meta's ``SamOnnxModel._embed_masks``)."""
    has = has_mask_input.reshape(-1, 1, 1, 1).to(mask_input.dtype)
    no_mask = prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
    return has * prompt_encoder.mask_embed(mask_input) + (1 - has) * no_mask


def resized_size(orig_im_size: Tensor, image_size: int) -> Tensor:
    """``(2,) int64`` (h, w) of an (H, W) image resized so its longest side is ``image_size``:
    Meta's ``resize_longest_image_size`` (round half up), in graph ops."""
    size = orig_im_size.to(torch.float32)
    return torch.floor(size * (image_size / size.max()) + 0.5).to(torch.int64)


def upscale_in_graph(
    low_res: Tensor, orig_im_size: Tensor, image_size: int, mode: ResizeMode
) -> Tensor:
    """``(N, K, M, M)`` logits -> ``(N, K, H, W)`` float32 logits at the original size.

    The graph version of :func:`composeseg.transforms.upscale_logits`: "longest" upsamples to
    the padded S x S frame, crops the padding, resizes to (H, W); "square" resizes directly.
    """
    size = orig_im_size.to(torch.int64)
    height, width = size[0].item(), size[1].item()
    torch._check(height > 0)
    torch._check(width > 0)
    if mode == "longest":
        low_res = F.interpolate(
            low_res, (image_size, image_size), mode="bilinear", align_corners=False
        )
        resized = resized_size(size, image_size)
        rows, cols = resized[0].item(), resized[1].item()
        torch._check(rows > 0)
        torch._check(cols > 0)
        torch._check(rows <= image_size)
        torch._check(cols <= image_size)
        low_res = low_res[..., :rows, :cols]
    # unbacked SymInts from .item(): the output size is data, an ONNX Resize with sizes input
    return F.interpolate(low_res, (height, width), mode="bilinear", align_corners=False)  # type: ignore[arg-type]


class _DecoderBase(nn.Module):
    """Prompt encoding, candidate selection and upscaling shared by the family decoders."""

    def __init__(self, model: Any, image_size: int, resize_mode: ResizeMode) -> None:
        super().__init__()
        self.prompt_encoder = model.prompt_encoder
        self.mask_decoder = model.mask_decoder
        self.image_size = image_size
        self.resize_mode: ResizeMode = resize_mode
        with torch.no_grad():
            self.register_buffer("image_pe", model.get_image_wide_positional_embeddings())

    def candidates(
        self, features: tuple[Tensor, ...], sparse: Tensor, dense: Tensor
    ) -> tuple[Tensor, Tensor]:
        """``(N, 4, M, M)`` logits and ``(N, 4)`` IoU: candidate 0 is the single-mask output,
        1..3 the multimask outputs, each as the family's own forward returns it."""
        raise NotImplementedError

    def _transformer(self, tokens: Tensor, image: Tensor) -> tuple[Tensor, Tensor]:
        """``(N, T, D)`` tokens and ``(N, D, h, w)`` image -> ``(N, T, D)``, ``(N, D, h, w)``."""
        count, channels, height, width = image.shape
        pe = self.get_buffer("image_pe").expand(count, -1, -1, -1)
        queries, keys = self.mask_decoder.transformer(
            point_embeddings=tokens.unsqueeze(1),
            image_embeddings=image,
            image_positional_embeddings=pe,
            attention_similarity=None,
        )
        keys = keys[:, 0].transpose(1, 2).reshape(count, channels, height, width)
        return queries[:, 0], keys

    def _hyper(self, mask_tokens: Tensor, mlps: Any) -> Tensor:
        """``(N, K, D)`` mask tokens -> ``(N, K, D/8)`` hypernetwork outputs."""
        return torch.stack([mlp(mask_tokens[:, i]) for i, mlp in enumerate(mlps)], dim=1)

    def decode(
        self,
        features: tuple[Tensor, ...],
        point_coords: Tensor,
        point_labels: Tensor,
        mask_input: Tensor,
        has_mask_input: Tensor,
        multimask_output: Tensor,
        orig_im_size: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor]:
        sparse = embed_points(
            self.prompt_encoder, point_coords, point_labels.to(torch.int64), self.image_size
        )
        dense = embed_masks(self.prompt_encoder, mask_input, has_mask_input)
        logits, iou = self.candidates(features, sparse, dense)
        multi = multimask_output.reshape(1).to(torch.bool)
        keep = torch.cat([~multi, multi.expand(logits.shape[1] - 1)])
        low_res, scores = logits[:, keep], iou[:, keep]
        masks = upscale_in_graph(low_res, orig_im_size, self.image_size, self.resize_mode) > 0
        return masks, scores, low_res


class SamDecoder(_DecoderBase):
    """SAM / SlimSAM (``SamModel``): the decoder graph's module, with composeseg's factored
    arithmetic (:func:`composeseg.onnx_sam_decoder.sam_candidates`)."""

    def candidates(
        self, features: tuple[Tensor, ...], sparse: Tensor, dense: Tensor
    ) -> tuple[Tensor, Tensor]:
        image_pe = self.get_buffer("image_pe")
        return sam_candidates(self.mask_decoder, features[0], image_pe, sparse, dense)

    def forward(
        self,
        image_embeddings: Tensor,
        point_coords: Tensor,
        point_labels: Tensor,
        mask_input: Tensor,
        has_mask_input: Tensor,
        multimask_output: Tensor,
        orig_im_size: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor]:
        return self.decode(
            (image_embeddings,),
            point_coords,
            point_labels,
            mask_input,
            has_mask_input,
            multimask_output,
            orig_im_size,
        )


class SamHQDecoder(_DecoderBase):
    """SAM-HQ (``SamHQModel``): SAM's candidates corrected by the HQ token's mask.

    Args:
        hq_token_only: the single-mask output is the HQ mask alone instead of SAM's mask plus
            the HQ mask (:class:`~composeseg.backends.sam_hq.SamHQBackend`'s option, fixed at
            export). Multimask outputs are SAM's three masks each plus the HQ mask, best
            predicted IoU first, as ``SamHQModel`` returns them.
    """

    def __init__(
        self, model: Any, image_size: int, resize_mode: ResizeMode, *, hq_token_only: bool
    ) -> None:
        super().__init__(model, image_size, resize_mode)
        self.hq_token_only = hq_token_only

    def candidates(
        self, features: tuple[Tensor, ...], sparse: Tensor, dense: Tensor
    ) -> tuple[Tensor, Tensor]:
        decoder = self.mask_decoder
        image, intermediate = features
        count = sparse.shape[0]
        act = decoder.activation
        hq_features = decoder.encoder_conv2(
            act(decoder.encoder_norm(decoder.encoder_conv1(image)))
        ) + decoder.compress_vit_conv2(
            act(
                decoder.compress_vit_norm(
                    decoder.compress_vit_conv1(intermediate.permute(0, 3, 1, 2))
                )
            )
        )
        output = torch.cat(
            [decoder.iou_token.weight, decoder.mask_tokens.weight, decoder.hq_token.weight], dim=0
        )
        tokens = torch.cat([output.unsqueeze(0).expand(count, -1, -1), sparse], dim=1)
        image = image + dense
        queries, _ = self._transformer(tokens, image)
        # transformers' SamHQMaskDecoder upsamples the image embedding as it entered the
        # transformer, with h and w swapped (``transpose(2, 3)`` of an NCHW tensor), where
        # SysCV's MaskDecoderHQ upsamples the transformer's output. The composeseg torch backend
        # runs transformers' forward, and this graph must give the same masks.
        keys = image.transpose(2, 3).reshape(image.shape)
        up = act(decoder.upscale_layer_norm(decoder.upscale_conv1(keys)))
        up = act(decoder.upscale_conv2(up))
        up_hq = decoder.mask_conv2(act(decoder.mask_norm(decoder.mask_conv1(up)))) + hq_features
        k = decoder.num_mask_tokens - 1  # SAM's tokens; the HQ token comes after them
        hyper = self._hyper(queries[:, 1 : 1 + k], decoder.output_hypernetworks_mlps)
        masks = (hyper @ up.flatten(2)).reshape(count, k, *up.shape[2:])
        hq = (decoder.hq_mask_mlp(queries[:, 1 + k]).unsqueeze(1) @ up_hq.flatten(2)).reshape(
            count, 1, *up.shape[2:]
        )
        iou = decoder.iou_prediction_head(queries[:, 0])
        multi_iou, order = torch.sort(iou[:, 1:], dim=1, descending=True)
        multi = torch.gather(
            masks[:, 1:], 1, order[:, :, None, None].expand(-1, -1, *masks.shape[2:])
        )
        single = hq if self.hq_token_only else masks[:, :1] + hq
        return torch.cat([single, multi + hq], dim=1), torch.cat([iou[:, :1], multi_iou], dim=1)

    def forward(
        self,
        image_embeddings: Tensor,
        intermediate_embeddings: Tensor,
        point_coords: Tensor,
        point_labels: Tensor,
        mask_input: Tensor,
        has_mask_input: Tensor,
        multimask_output: Tensor,
        orig_im_size: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor]:
        return self.decode(
            (image_embeddings, intermediate_embeddings),
            point_coords,
            point_labels,
            mask_input,
            has_mask_input,
            multimask_output,
            orig_im_size,
        )


class Sam2Decoder(_DecoderBase):
    """SAM 2 (``Sam2Model``) on single images.

    The single-mask output falls back to the best multimask output when it is unstable
    (``dynamic_multimask_via_stability`` in the config, as ``Sam2MaskDecoder`` does at
    inference); the object-presence logit is not an output, as in Meta's image predictor.
    """

    def candidates(
        self, features: tuple[Tensor, ...], sparse: Tensor, dense: Tensor
    ) -> tuple[Tensor, Tensor]:
        decoder = self.mask_decoder
        image, feat_s0, feat_s1 = features
        count = sparse.shape[0]
        output = torch.cat(
            [decoder.obj_score_token.weight, decoder.iou_token.weight, decoder.mask_tokens.weight],
            dim=0,
        )
        tokens = torch.cat([output.unsqueeze(0).expand(count, -1, -1), sparse], dim=1)
        queries, keys = self._transformer(tokens, image + dense)
        act = decoder.activation
        up = act(decoder.upscale_layer_norm(decoder.upscale_conv1(keys) + feat_s1))
        up = act(decoder.upscale_conv2(up) + feat_s0)
        k = decoder.num_mask_tokens
        hyper = self._hyper(queries[:, 2 : 2 + k], decoder.output_hypernetworks_mlps)
        masks = (hyper @ up.flatten(2)).reshape(count, k, *up.shape[2:])
        iou = decoder.iou_prediction_head(queries[:, 1])
        single, single_iou = masks[:, :1], iou[:, :1]
        if decoder.dynamic_multimask_via_stability:
            best = torch.argmax(iou[:, 1:], dim=1, keepdim=True)  # (N, 1)
            best_mask = torch.gather(masks[:, 1:], 1, best[:, :, None, None].expand_as(single))
            best_iou = torch.gather(iou[:, 1:], 1, best)
            delta = decoder.dynamic_multimask_stability_delta
            flat = single.flatten(2)
            inter = (flat > delta).sum(-1).to(flat.dtype)
            union = (flat > -delta).sum(-1).to(flat.dtype)
            stability = torch.where(union > 0, inter / union.clamp(min=1), 1.0)
            stable = stability >= decoder.dynamic_multimask_stability_thresh  # (N, 1)
            single = torch.where(stable[:, :, None, None], single, best_mask)
            single_iou = torch.where(stable, single_iou, best_iou)
        return torch.cat([single, masks[:, 1:]], dim=1), torch.cat([single_iou, iou[:, 1:]], dim=1)

    def forward(
        self,
        image_embeddings: Tensor,
        high_res_feats_0: Tensor,
        high_res_feats_1: Tensor,
        point_coords: Tensor,
        point_labels: Tensor,
        mask_input: Tensor,
        has_mask_input: Tensor,
        multimask_output: Tensor,
        orig_im_size: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor]:
        return self.decode(
            (image_embeddings, high_res_feats_0, high_res_feats_1),
            point_coords,
            point_labels,
            mask_input,
            has_mask_input,
            multimask_output,
            orig_im_size,
        )


class MetaSignatureDecoder(nn.Module):
    """Meta's ``SamOnnxModel`` on a transformers ``SamModel``: same inputs, outputs and options.

    Inputs: ``image_embeddings (1, D, h, w)``, ``point_coords (1, P, 2)`` float32 xy in the
    model input frame (a box is two points labelled 2 and 3; without a box, add a (0, 0) point
    labelled -1), ``point_labels (1, P)`` float32, ``mask_input (1, 1, M, M)``,
    ``has_mask_input (1,)`` float32, ``orig_im_size (2,)`` float32 (H, W). Outputs:
    ``masks (1, K, H, W)`` float32 logits at the original size (threshold at 0),
    ``iou_predictions (1, K)``, ``low_res_masks (1, K, M, M)``; K = 4 (the single-mask output
    then the three multimask outputs), or 1 with ``return_single_mask``.

    Args:
        return_single_mask: keep one mask: the single-mask output when more than two points
            (box corners and padding included) are given, else the best multimask output
            (Meta's ``select_masks``).
        use_stability_score: replace the predicted IoU by the stability score of the low-res
            logits (thresholds 0 +- 1.0).
    """

    def __init__(
        self,
        model: Any,
        image_size: int,
        *,
        return_single_mask: bool = False,
        use_stability_score: bool = False,
    ) -> None:
        super().__init__()
        self.decoder = SamDecoder(model, image_size, "longest")
        self.image_size = image_size
        self.return_single_mask = return_single_mask
        self.use_stability_score = use_stability_score

    def forward(
        self,
        image_embeddings: Tensor,
        point_coords: Tensor,
        point_labels: Tensor,
        mask_input: Tensor,
        has_mask_input: Tensor,
        orig_im_size: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor]:
        prompt_encoder = self.decoder.prompt_encoder
        labels = point_labels.to(torch.int64)
        sparse = embed_points(prompt_encoder, point_coords, labels, self.image_size)
        dense = embed_masks(prompt_encoder, mask_input, has_mask_input)
        masks, scores = self.decoder.candidates((image_embeddings,), sparse, dense)
        if self.use_stability_score:
            flat = masks.flatten(2)
            inter = (flat > 1.0).sum(-1).to(torch.float32)
            union = (flat > -1.0).sum(-1).to(torch.float32)
            scores = inter / union
        if self.return_single_mask:
            reweight = torch.zeros_like(scores[:1])
            reweight[:, 0] = 1000.0
            num_points = point_coords.shape[1]
            best = torch.argmax(scores + (num_points - 2.5) * reweight, dim=1, keepdim=True)
            masks = torch.gather(masks, 1, best[:, :, None, None].expand(-1, -1, *masks.shape[2:]))
            scores = torch.gather(scores, 1, best)
        upscaled = upscale_in_graph(masks, orig_im_size, self.image_size, "longest")
        return upscaled, scores, masks


class SamEncoder(nn.Module):
    """``pixel_values (B, 3, S, S)`` -> ``image_embeddings (B, D, S/16, S/16)``."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: Tensor) -> Tensor:
        return self.model.get_image_embeddings(pixel_values)


class SamHQEncoder(SamEncoder):
    """Adds ``intermediate_embeddings (B, S/16, S/16, vit_dim)``, the first global ViT block's
    output, which the HQ decoder fuses."""

    def forward(self, pixel_values: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        embeddings, intermediate = self.model.get_image_embeddings(pixel_values)
        return embeddings, intermediate[0]


class Sam2Encoder(SamEncoder):
    """Adds ``high_res_feats_0 (B, D/8, S/4, S/4)`` and ``high_res_feats_1 (B, D/4, S/8, S/8)``,
    already projected by the decoder's ``conv_s0`` / ``conv_s1``; ``image_embeddings``
    includes ``no_memory_embedding`` (Meta's image predictor)."""

    def forward(self, pixel_values: Tensor) -> tuple[Tensor, Tensor, Tensor]:  # type: ignore[override]
        feat_s0, feat_s1, embeddings = self.model.get_image_embeddings(pixel_values)
        return embeddings, feat_s0, feat_s1

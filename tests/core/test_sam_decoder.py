"""The fast SAM decode path equals transformers' ``SamModel`` forward for every prompt kind.

Two models: one with the released decoder (256 wide, 8 heads, 2 layers) behind a 1-layer ViT of
width 64, and the suite's ``tiny_sam_config``. Random-init logits
are small (~1e-2 and ~1e-4), so errors are also checked relative to the logits' scale.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from composeseg.backends import sam_decoder
from composeseg.backends.sam_decoder import decode
from composeseg.configs import sam_config
from composeseg.tiny import build_model, tiny_sam_config

COUNT = 4


@pytest.fixture(scope="module", params=["vit_b_decoder", "tiny"])
def model(request: pytest.FixtureRequest) -> Any:
    if request.param == "tiny":
        config = tiny_sam_config()
    else:
        # the released decoder's widths, on a 32 x 32 embedding to keep the test fast
        config = sam_config(
            image_size=512,
            hidden_size=64,
            num_hidden_layers=1,
            num_attention_heads=1,
            global_attn_indexes=(0,),
            mlp_dim=64,
        )
    return build_model(config, seed=0).eval()


def _inputs(model: Any, kind: str, points: int = 3) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    size = model.config.prompt_encoder_config.image_size
    side = 4 * model.config.prompt_encoder_config.image_embedding_size
    boxes = torch.rand(COUNT, 2, 2, generator=generator).sort(dim=1).values.flatten(1) * size
    coords = torch.rand(COUNT, points, 2, generator=generator) * size
    labels = torch.randint(-1, 2, (COUNT, points), generator=generator)
    labels[:, 0] = 1  # every object has at least one real point
    masks = torch.randn(COUNT, 1, side, side, generator=generator)
    parts = {
        "boxes": {"boxes": boxes},
        "points": {"points": coords, "labels": labels},
        "boxes+points": {"boxes": boxes, "points": coords, "labels": labels},
        "boxes+mask": {"boxes": boxes, "masks": masks},
        "points+mask": {"points": coords, "labels": labels, "masks": masks},
        "mask": {"masks": masks},
    }
    return parts[kind]


def _reference(model: Any, embedding: torch.Tensor, inputs: dict, multimask: bool) -> Any:
    points, labels, boxes = (inputs.get(k) for k in ("points", "labels", "boxes"))
    return model(
        image_embeddings=embedding.expand(COUNT, -1, -1, -1),
        input_points=None if points is None else points[:, None],
        input_labels=None if labels is None else labels[:, None],
        input_boxes=None if boxes is None else boxes[:, None],
        input_masks=inputs.get("masks"),
        multimask_output=multimask,
    )


def _embedding(model: Any) -> torch.Tensor:
    side = model.config.prompt_encoder_config.image_embedding_size
    dim = model.config.mask_decoder_config.hidden_size
    return torch.randn(1, dim, side, side, generator=torch.Generator().manual_seed(2))


@pytest.mark.parametrize(
    ("kind", "points"),
    [
        ("boxes", 3),
        ("points", 3),
        ("boxes+points", 3),
        ("boxes+mask", 3),
        ("points+mask", 3),
        ("mask", 3),
        # 12 points: h*T > projection width, so the unfactored attention runs
        ("points", 12),
        ("points+mask", 12),
    ],
)
@pytest.mark.parametrize("multimask", [False, True])
@torch.inference_mode()
def test_matches_transformers(model: Any, kind: str, points: int, multimask: bool) -> None:
    embedding = _embedding(model)
    inputs = _inputs(model, kind, points)
    expected = _reference(model, embedding, inputs, multimask)
    logits, iou = decode(model, embedding, multimask=multimask, **inputs)
    reference = expected.pred_masks[:, 0]
    assert logits.shape == reference.shape == (COUNT, 3 if multimask else 1, *reference.shape[2:])
    error = (logits - reference).abs().max().item()
    scale = reference.abs().max().item()
    assert error < min(1e-4, 1e-4 * scale), (error, scale)
    assert (iou - expected.iou_scores[:, 0]).abs().max().item() < 1e-5
    # objects differ (least with mask prompts alone): a mix-up would exceed the tolerance
    assert (reference[1:] - reference[:-1]).abs().max().item() > 0.01 * scale


@pytest.mark.parametrize("kind", ["boxes", "points+mask"])
@torch.inference_mode()
def test_batch_equals_single(model: Any, kind: str) -> None:
    embedding = _embedding(model)
    inputs = _inputs(model, kind)
    logits, iou = decode(model, embedding, multimask=True, **inputs)
    for i in range(COUNT):
        alone = decode(
            model, embedding, multimask=True, **{k: v[i : i + 1] for k, v in inputs.items()}
        )
        torch.testing.assert_close(
            alone[0], logits[i : i + 1], rtol=0, atol=1e-6 * logits.abs().max().item()
        )
        torch.testing.assert_close(alone[1], iou[i : i + 1], rtol=0, atol=1e-7)


@pytest.mark.parametrize("kind", ["boxes+points", "points+mask"])
@torch.inference_mode()
def test_grouped_objects_match_transformers(
    model: Any, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batched-objects layout (used off CPU) agrees too."""
    monkeypatch.setattr(sam_decoder, "GROUP", COUNT)
    embedding = _embedding(model)
    inputs = _inputs(model, kind)
    expected = _reference(model, embedding, inputs, True)
    logits, iou = decode(model, embedding, multimask=True, **inputs)
    scale = expected.pred_masks.abs().max().item()
    assert (logits - expected.pred_masks[:, 0]).abs().max().item() < min(1e-4, 1e-4 * scale)
    assert (iou - expected.iou_scores[:, 0]).abs().max().item() < 1e-5


@pytest.mark.parametrize(
    ("shape", "inputs", "message"),
    [
        ((2, 32, 8, 8), {"boxes": torch.zeros(2, 4)}, "must be \\(1, D, h, w\\)"),
        ((1, 32, 8, 8), {"points": torch.zeros(2, 1, 2)}, "points need labels"),
        ((1, 32, 8, 8), {}, "at least one object"),
    ],
)
def test_rejects_bad_input(shape: tuple[int, ...], inputs: dict, message: str) -> None:
    model = build_model(tiny_sam_config(), seed=0)
    with pytest.raises(ValueError, match=message):
        decode(model, torch.zeros(shape), **inputs)

"""deepen_encoder: appended encoder blocks start as identities, then train like any other.
deepen_decoder: appended two-way blocks start close to identities.
rebuild_decoder: a new decoder width on the same encoder trunk."""

from __future__ import annotations

import pytest
import torch
from transformers import SamModel

from composeseg.configs import validate_sam_config
from composeseg.loading import load_sam
from composeseg.tiny import build_model, tiny_sam_config
from composeseg.train.grow import deepen_decoder, deepen_encoder, rebuild_decoder
from composeseg.train.model import decode, encode


@pytest.fixture(scope="module")
def small() -> SamModel:
    model = build_model(tiny_sam_config(128), seed=3)
    with torch.no_grad():  # non-zero positional tables, so identity is not trivially met
        for layer in model.vision_encoder.layers:
            layer.attn.rel_pos_h.normal_()
            layer.attn.rel_pos_w.normal_()
    return model.eval()


def test_deeper_encoder_computes_the_same_embeddings(small: SamModel) -> None:
    deeper = deepen_encoder(small, 2)
    old = small.config.vision_config.num_hidden_layers
    assert deeper.config.vision_config.num_hidden_layers == old + 2
    assert deeper.config.vision_config.global_attn_indexes[-1] == old + 1
    validate_sam_config(deeper.config)
    assert len(small.vision_encoder.layers) == old  # the input model is untouched
    pixels = torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = small.vision_encoder(pixels).last_hidden_state
        got = deeper.vision_encoder(pixels).last_hidden_state
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_new_blocks_are_trainable_and_seeded(small: SamModel) -> None:
    one, two, other = (deepen_encoder(small, 1, seed=s) for s in (0, 0, 1))
    new = len(small.vision_encoder.layers)
    qkv = [m.vision_encoder.layers[new].attn.qkv.weight for m in (one, two, other)]
    assert torch.equal(qkv[0], qkv[1]) and not torch.equal(qkv[0], qkv[2])
    assert qkv[0].std() > 0.01  # PyTorch's default init, not transformers' tiny normal
    one.train()
    loss = encode(one, torch.randn(1, 3, 128, 128)).square().mean()
    loss.backward()
    block = one.vision_encoder.layers[new]
    # zero output projections still receive gradient, so the block leaves identity at step 1
    assert block.mlp.lin2.weight.grad is not None and block.mlp.lin2.weight.grad.abs().sum() > 0
    assert block.attn.proj.weight.grad is not None and block.attn.proj.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("layers", [0, -1])
def test_bad_layer_counts(small: SamModel, layers: int) -> None:
    with pytest.raises(ValueError, match=f"layers must be >= 1, got {layers}"):
        deepen_encoder(small, layers)


def _box_logits(model: SamModel, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    pixels = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        embeddings = encode(model, pixels)
        box = torch.tensor([[50.0, 60.0, 150.0, 145.0]]) * size / 256
        return decode(model, embeddings, boxes=box)


def test_deeper_decoder_starts_close_to_the_model() -> None:
    # the packaged demo SAM: trained norms and logits of a real scale, unlike a fresh tiny model
    trained = load_sam(device="cpu").model.float().eval()
    deeper = deepen_decoder(trained, 2, seed=4)
    old = trained.config.mask_decoder_config.num_hidden_layers
    assert deeper.config.mask_decoder_config.num_hidden_layers == old + 2
    validate_sam_config(deeper.config)
    assert len(trained.mask_decoder.transformer.layers) == old  # the input model is untouched
    for block in deeper.mask_decoder.transformer.layers[old:]:
        assert block.mlp.lin1.weight.std() > 0.01  # PyTorch's default init
    size = trained.config.vision_config.image_size
    (want, want_iou), (got, got_iou) = _box_logits(trained, size), _box_logits(deeper, size)
    # measured 1.0 %; a block whose MLP or attention output starts non-zero moves them 5-8 %
    assert (got - want).abs().mean() < 0.025 * want.abs().mean()
    assert ((got > 0) != (want > 0)).float().mean() < 0.002
    torch.testing.assert_close(got_iou, want_iou, rtol=0.01, atol=0.01)


def test_deeper_decoder_blocks_learn(small: SamModel) -> None:
    deeper = deepen_decoder(small, 1).train()
    embeddings = encode(deeper, torch.randn(1, 3, 128, 128)).detach()
    logits, _ = decode(deeper, embeddings, boxes=torch.tensor([[10.0, 20.0, 70.0, 90.0]]))
    logits.square().mean().backward()
    block = deeper.mask_decoder.transformer.layers[-1]
    for weight in (block.mlp.lin2.weight, block.cross_attn_token_to_image.out_proj.weight):
        assert weight.grad is not None and weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="layers must be >= 1, got 0"):
        deepen_decoder(small, 0)


def test_rebuilt_decoder_keeps_the_trunk_at_a_new_width(small: SamModel) -> None:
    wide = rebuild_decoder(small, 64, seed=1)
    validate_sam_config(wide.config)
    assert wide.config.mask_decoder_config.hidden_size == 64
    assert wide.config.prompt_encoder_config.hidden_size == 64
    assert small.config.mask_decoder_config.hidden_size == 32  # the input model is untouched
    old, new = small.state_dict(), wide.state_dict()
    trunk = [k for k in old if k.startswith("vision_encoder.") and ".neck." not in k]
    assert trunk and all(torch.equal(new[k], old[k].float()) for k in trunk)
    pixels = torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        embeddings = encode(wide, pixels)
        logits, iou = decode(wide, embeddings, boxes=torch.tensor([[10.0, 20.0, 70.0, 90.0]]))
    assert embeddings.shape == (1, 64, 8, 8)
    assert logits.shape == (1, 1, 32, 32) and iou.shape == (1, 1)
    # a fresh decoder gets PyTorch's default init, as a model trained from scratch does
    assert wide.mask_decoder.iou_prediction_head.proj_in.weight.std() > 0.01


def test_rebuilt_decoder_is_seeded(small: SamModel) -> None:
    one, two, other = (rebuild_decoder(small, 64, seed=s) for s in (0, 0, 1))
    key = "mask_decoder.transformer.layers.0.self_attn.q_proj.weight"
    weights = [m.state_dict()[key] for m in (one, two, other)]
    assert torch.equal(weights[0], weights[1]) and not torch.equal(weights[0], weights[2])


@pytest.mark.parametrize(
    ("width", "message"),
    [(4, "width must be an int >= 8"), (36, "multiple of 8"), (24, "cross-attention width")],
)
def test_bad_decoder_widths(small: SamModel, width: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rebuild_decoder(small, width)

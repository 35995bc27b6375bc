"""The memory-lean image-encoder layers against transformers' own, and the encoder options of
``load_sam`` (attention, compile, dtype)."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers.models.sam.modeling_sam import SamVisionLayer

from composeseg import load_sam
from composeseg.backends import compiling
from composeseg.backends.attention import LeanVisionLayer, rel_pos_table, use_lean_attention
from composeseg.configs import sam_config
from composeseg.device import preferred_dtype
from composeseg.tiny import build_model, tiny_sam2_config, tiny_sam_hq_config


def _perturb_rel_pos(model: torch.nn.Module, seed: int = 0) -> None:
    """transformers initialises the relative positions to zero; give them values to test."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "rel_pos" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)


def _tiny(image_size: int = 160, window_size: int = 4, attn: str = "sdpa") -> Any:
    """A small SamModel whose 10 x 10 token grid needs padding to 12 x 12 for its windows."""
    config = sam_config(
        image_size=image_size,
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=2,
        window_size=window_size,
        global_attn_indexes=(1,),
        mlp_dim=64,
        output_channels=32,
        decoder_hidden_size=32,
        decoder_mlp_dim=64,
        mask_input_channels=8,
        iou_head_hidden_dim=32,
    )
    config._attn_implementation = attn
    config.vision_config._attn_implementation = attn
    model = build_model(config, seed=0)
    _perturb_rel_pos(model)
    return model


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("window_size", [4, 5, 0])
def test_lean_encoder_equals_transformers(attn: str, window_size: int) -> None:
    reference = _tiny(window_size=window_size, attn=attn)
    lean = copy.deepcopy(reference)
    assert use_lean_attention(lean) == 3
    assert use_lean_attention(lean) == 3  # idempotent
    pixels = torch.randn(2, 3, 160, 160, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        expected = reference.get_image_embeddings(pixels)
        got = lean.get_image_embeddings(pixels)
    torch.testing.assert_close(got, expected, atol=2e-5, rtol=1e-5)


def test_lean_layers_at_vit_b_token_shapes() -> None:
    """A 64 x 64 token grid (1024² input) with 64-wide heads: the global layer, and a 14-token
    windowed one padded to 70 x 70, as in ViT-B/L/H; small chunks force many of them."""
    config: Any = sam_config(hidden_size=128, num_attention_heads=2).vision_config
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    x = torch.randn(1, 64, 64, 128)
    for window in (0, 14):
        layer = SamVisionLayer(config, window_size=window).eval()
        with torch.no_grad():
            for parameter in layer.parameters():
                parameter.normal_(0.0, 0.05)
        _perturb_rel_pos(layer)
        lean = LeanVisionLayer(copy.deepcopy(layer), chunk_bytes=2**20)
        with torch.inference_mode():
            torch.testing.assert_close(lean(x), layer(x), atol=2e-5, rtol=1e-5)


def test_no_chunk_forms_the_full_attention_map(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _tiny(window_size=0)
    # a query row's bias: 2 heads x 10 queries x 100 keys, float32; the budget holds two rows
    use_lean_attention(model, chunk_bytes=2 * (2 * 10 * 100) * 4)
    masks: list[tuple[int, ...]] = []
    sdpa = F.scaled_dot_product_attention

    def recording(*args: Any, **kwargs: Any) -> torch.Tensor:
        if kwargs.get("attn_mask") is not None:
            masks.append(tuple(kwargs["attn_mask"].shape))
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", recording)
    with torch.inference_mode():
        model.get_image_embeddings(torch.randn(2, 3, 160, 160))
    # 3 global layers x 2 images x 5 chunks of 2 query rows (20 of the 100 queries each)
    assert masks == [(1, 2, 20, 100)] * 30


def test_chunk_sizes_do_not_change_the_result() -> None:
    model = _tiny(window_size=4)
    pixels = torch.randn(3, 3, 160, 160, generator=torch.Generator().manual_seed(2))
    outputs = []
    for chunk_bytes in (1, 5000, 2**30):  # one row of one group, a few windows, everything
        lean = copy.deepcopy(model)
        use_lean_attention(lean, chunk_bytes=chunk_bytes)
        with torch.inference_mode():
            outputs.append(lean.get_image_embeddings(pixels))
    for output in outputs[1:]:
        torch.testing.assert_close(output, outputs[0], atol=1e-5, rtol=1e-5)


def test_gradients_equal_transformers() -> None:
    reference = _tiny(window_size=4).train()
    lean = copy.deepcopy(reference)
    use_lean_attention(lean, chunk_bytes=4000)
    pixels = torch.randn(1, 3, 160, 160, generator=torch.Generator().manual_seed(3))
    grads = []
    for model in (reference, lean):
        model.zero_grad()
        model.vision_encoder(pixels).last_hidden_state.square().mean().backward()
        grads.append({n: p.grad for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    assert any("rel_pos_h" in name for name in grads[1])
    for name, expected in grads[0].items():
        torch.testing.assert_close(grads[1][name], expected, atol=1e-6, rtol=1e-4, msg=name)


def test_parameters_and_state_dict_are_shared_not_copied(tmp_path: Path) -> None:
    model = _tiny()
    before = {name: p.data_ptr() for name, p in model.state_dict().items()}
    use_lean_attention(model)
    after = {name: p.data_ptr() for name, p in model.state_dict().items()}
    assert after == before  # same keys, same storage
    model.save_pretrained(tmp_path)
    sam = load_sam(tmp_path, device="cpu")
    reference = load_sam(tmp_path, device="cpu", attention="transformers")
    assert isinstance(sam.model.vision_encoder.layers[0], LeanVisionLayer)
    assert not isinstance(reference.model.vision_encoder.layers[0], LeanVisionLayer)
    image = np.random.default_rng(0).integers(0, 255, (120, 200, 3), dtype=np.uint8)
    torch.testing.assert_close(
        sam.embed(image).features[0], reference.embed(image).features[0], atol=2e-5, rtol=1e-5
    )


def test_sam_hq_keeps_its_intermediate_embedding(tmp_path: Path) -> None:
    model = build_model(tiny_sam_hq_config(), seed=0)
    _perturb_rel_pos(model)
    model.save_pretrained(tmp_path)
    lean = load_sam(tmp_path, device="cpu")
    reference = load_sam(tmp_path, device="cpu", attention="transformers")
    assert use_lean_attention(lean.model) == 2
    pixels = torch.randn(1, 3, 128, 128)
    with torch.inference_mode():
        got, expected = lean.backend.encode(pixels), reference.backend.encode(pixels)
    assert len(got) == len(expected) == 2  # embedding and the first global block's output
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-5)


def test_sam2_hiera_is_left_alone(tmp_path: Path) -> None:
    build_model(tiny_sam2_config(), seed=0).save_pretrained(tmp_path)
    sam = load_sam(tmp_path, device="cpu")
    assert use_lean_attention(sam.model) == 0
    assert sam.embed(np.zeros((64, 64, 3), np.uint8)).features[0].shape == (1, 32, 8, 8)


def test_unknown_attention_is_refused(tiny_sam_dir: Path) -> None:
    with pytest.raises(ValueError, match="attention must be 'lean' or 'transformers'"):
        load_sam(tiny_sam_dir, device="cpu", attention="flash")  # type: ignore[arg-type]


def test_rel_pos_table_resizes_like_meta() -> None:
    rel_pos = torch.randn(7, 3)  # trained for 4 tokens
    table = rel_pos_table(4, rel_pos)
    assert table.shape == (4, 4, 3)
    torch.testing.assert_close(table[2, 0], rel_pos[2 - 0 + 3])
    assert rel_pos_table(6, rel_pos).shape == (6, 6, 3)  # 11 offsets interpolated from 7


def test_bfloat16_lean_encoder_runs_close_to_float32(tiny_sam_dir: Path) -> None:
    image = np.random.default_rng(1).integers(0, 255, (100, 100, 3), dtype=np.uint8)
    full = load_sam(tiny_sam_dir, device="cpu").embed(image).features[0]
    half = load_sam(tiny_sam_dir, device="cpu", dtype=torch.bfloat16).embed(image).features[0]
    assert half.dtype == torch.bfloat16
    assert (half.float() - full).abs().max() < 0.1 * full.abs().max()


def test_compile_falls_back_when_torch_compile_raises(
    tiny_sam_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unavailable(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("Dynamo is not supported on this Python")

    monkeypatch.setattr(torch, "compile", unavailable)
    with pytest.warns(compiling.CompileFallbackWarning, match="Dynamo is not supported"):
        sam = load_sam(tiny_sam_dir, device="cpu", compile=True)
    image = np.zeros((40, 60, 3), np.uint8)
    reference = load_sam(tiny_sam_dir, device="cpu").embed(image).features[0]
    torch.testing.assert_close(sam.embed(image).features[0], reference)


def test_compile_falls_back_when_the_first_call_fails(
    tiny_sam_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []

    def lazily_broken(function: Any, **options: Any) -> Any:
        def compiled(pixels: torch.Tensor) -> Any:
            calls.append(1)
            raise RuntimeError("backend='inductor' raised: no C++ compiler")

        return compiled

    monkeypatch.setattr(torch, "compile", lazily_broken)
    sam = load_sam(tiny_sam_dir, device="cpu", compile=True)
    image = np.zeros((40, 60, 3), np.uint8)
    with pytest.warns(compiling.CompileFallbackWarning, match="no C\\+\\+ compiler"):
        first = sam.embed(image)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second = sam.embed(image)  # eager from now on: no second try, no second warning
    assert len(calls) == 1
    torch.testing.assert_close(first.features[0], second.features[0])


def test_compile_does_not_hide_a_bad_input(
    tiny_sam_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch, "compile", lambda function, **options: function)
    sam = load_sam(tiny_sam_dir, device="cpu", compile=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="Input image size"):
            sam.backend.encode(torch.zeros(1, 3, 64, 64))


def test_preferred_dtype(monkeypatch: pytest.MonkeyPatch) -> None:
    from composeseg import device

    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: False)
    assert preferred_dtype("cpu") == torch.float32
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: True)
    assert preferred_dtype("cpu") == torch.bfloat16
    assert isinstance(device.cpu_has_native_bf16(), bool)


def test_cpu_global_layers_attend_in_cache_sized_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Eager CPU inference on a 64 x 64 grid: per head, blocks of query rows whose scores stay
    within CPU_BLOCK_BYTES; the result equals transformers' layer (checked above too)."""
    from composeseg.backends.attention import CPU_BLOCK_BYTES

    config: Any = sam_config(hidden_size=128, num_attention_heads=2).vision_config
    config._attn_implementation = "eager"
    layer = SamVisionLayer(config, window_size=0).eval()
    _perturb_rel_pos(layer)
    lean = LeanVisionLayer(copy.deepcopy(layer))
    shapes: list[tuple[int, ...]] = []
    softmax = torch.softmax

    def recording(x: torch.Tensor, dim: int) -> torch.Tensor:
        shapes.append(tuple(x.shape))
        return softmax(x, dim)

    monkeypatch.setattr(torch, "softmax", recording)
    x = torch.randn(1, 64, 64, 128)
    with torch.inference_mode():
        got = lean(x)
    monkeypatch.setattr(torch, "softmax", softmax)
    with torch.inference_mode():
        torch.testing.assert_close(got, layer(x), atol=2e-5, rtol=1e-5)
    assert shapes and all(rows * keys * 4 <= CPU_BLOCK_BYTES for rows, keys in shapes)
    assert sum(rows for rows, _ in shapes) == 2 * 4096  # every query of both heads, once

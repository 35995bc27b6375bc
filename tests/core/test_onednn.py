"""The fused oneDNN linear layers of CPU inference, and their fallbacks."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from transformers.models.sam.modeling_sam import SamVisionLayer

from composeseg.backends import onednn
from composeseg.backends.attention import LeanVisionLayer
from composeseg.tiny import tiny_sam_config


def _layer(hidden_act: str = "gelu", window: int = 4) -> SamVisionLayer:
    config: Any = tiny_sam_config().vision_config
    config.hidden_act = hidden_act
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    layer = SamVisionLayer(config, window_size=window).eval()
    with torch.no_grad():
        for parameter in layer.parameters():
            parameter.normal_(0.0, 0.1)
    return layer


@pytest.mark.parametrize("gelu", [False, True])
def test_fused_linear_equals_eager(gelu: bool) -> None:
    layer = nn.Linear(48, 40)
    x = torch.randn(2, 7, 9, 48)
    expected = F.linear(x, layer.weight, layer.bias)
    expected = F.gelu(expected) if gelu else expected
    with torch.inference_mode():
        assert onednn.fused_linear_available(x) == torch.backends.mkldnn.is_available()
        torch.testing.assert_close(onednn.linear(x, layer, gelu=gelu), expected)
    assert not onednn.fused_linear_available(x)  # grad enabled: autograd needs F.linear


def test_a_failing_operator_falls_back_for_good(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def broken(*args: object) -> torch.Tensor:
        calls.append(args)
        raise RuntimeError("operator changed")

    monkeypatch.setattr(onednn, "_usable", True)
    monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", broken, raising=False)
    layer, x = nn.Linear(8, 4), torch.randn(3, 8)
    with torch.inference_mode():
        torch.testing.assert_close(onednn.linear(x, layer), layer(x))
        torch.testing.assert_close(onednn.linear(x, layer), layer(x))
    assert len(calls) == 1 and onednn._usable is False


@pytest.mark.parametrize("hidden_act", ["gelu", "relu"])
def test_lean_layer_fuses_only_an_exact_gelu_mlp(hidden_act: str) -> None:
    layer = _layer(hidden_act)
    lean = LeanVisionLayer(copy.deepcopy(layer))
    assert lean._exact_gelu_mlp == (hidden_act == "gelu")
    x = torch.randn(1, 10, 10, layer.layer_norm1.normalized_shape[0])
    with torch.inference_mode():
        torch.testing.assert_close(lean(x), layer(x), atol=2e-5, rtol=1e-5)

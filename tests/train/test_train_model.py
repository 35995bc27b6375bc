"""init_for_training: the two transformers init defaults that break training from scratch."""

from __future__ import annotations

import pytest
import torch
from transformers import SamModel

from composeseg.tiny import build_model, tiny_sam_config, tiny_sam_hq_config
from composeseg.train.model import (
    build_model_for_training,
    check_trainable,
    freeze_fourier_matrix,
    init_for_training,
    model_preset,
)


@pytest.fixture(scope="module")
def fresh() -> SamModel:
    """A ``SamModel`` with transformers' own init, then ``init_for_training``."""
    torch.manual_seed(0)
    raw = SamModel(tiny_sam_config())
    assert raw.shared_image_embedding.positional_embedding.std() > 4  # std = hidden / 2 = 16
    return init_for_training(raw, seed=3)


def test_fourier_matrix_is_standard_normal_shared_and_frozen(fresh: SamModel) -> None:
    matrix = fresh.shared_image_embedding.positional_embedding
    prompt_matrix = fresh.prompt_encoder.shared_embedding.positional_embedding
    assert 0.6 < matrix.std().item() < 1.5
    assert torch.equal(matrix, prompt_matrix)
    assert not matrix.requires_grad and not prompt_matrix.requires_grad


def test_weights_follow_pytorch_defaults_not_transformers_tiny_std(fresh: SamModel) -> None:
    layers = [m for m in fresh.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    assert len(layers) > 20
    for layer in layers:  # Kaiming-uniform(a=sqrt(5)): std = 1 / sqrt(3 * fan_in)
        expected = (3 * layer.weight[0].numel()) ** -0.5
        assert 0.7 * expected < layer.weight.std().item() < 1.3 * expected
    for token in (fresh.mask_decoder.mask_tokens, fresh.prompt_encoder.point_embed[1]):
        assert 0.5 < token.weight.std().item() < 1.6  # N(0, 1), not N(0, 0.02)


def test_image_embeddings_depend_on_the_image(fresh: SamModel) -> None:
    with torch.no_grad():
        a = fresh.vision_encoder(torch.randn(1, 3, 128, 128)).last_hidden_state
        b = fresh.vision_encoder(torch.randn(1, 3, 128, 128)).last_hidden_state
    assert (a - b).abs().mean() > 1e-2


def test_same_seed_same_weights_and_global_rng_untouched() -> None:
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = build_model_for_training(tiny_sam_config(), seed=5)
    after = torch.rand(1)
    b = build_model_for_training(tiny_sam_config(), seed=5)
    assert torch.equal(before, after)
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), name


def test_freeze_fourier_matrix_on_a_loaded_model() -> None:
    model = build_model(tiny_sam_config(), seed=0)
    assert model.shared_image_embedding.positional_embedding.requires_grad
    freeze_fourier_matrix(model)
    assert not model.shared_image_embedding.positional_embedding.requires_grad


def test_only_sam_models_are_trainable() -> None:
    with pytest.raises(TypeError, match="SamHQModel"):
        check_trainable(build_model(tiny_sam_hq_config(), seed=0))


def test_demo_preset_fits_the_size_budget() -> None:
    config = model_preset("demo")
    assert config.vision_config.image_size == 256
    model = SamModel(config)
    assert sum(p.numel() for p in model.parameters()) * 2 < 8 * 2**20  # float16 bytes
    with pytest.raises(ValueError, match="unknown model preset"):
        model_preset("huge")


def test_a_finer_patch_preset_has_four_times_the_tokens() -> None:
    config = model_preset("demo", patch_size=8)
    model = build_model_for_training(config)
    embedding = model.vision_encoder(torch.zeros(1, 3, 256, 256)).last_hidden_state
    assert tuple(embedding.shape) == (1, 64, 32, 32)  # 256 px / 8 (16 px patches: 16 x 16)
    assert config.prompt_encoder_config.image_embedding_size == 32
    with pytest.raises(ValueError, match="does not divide"):
        model_preset("demo", patch_size=24)
    with pytest.raises(ValueError, match="patch_size must be"):
        model_preset("demo", patch_size=0)

"""No loader runs a pickle from a user's file (issue 20, items 1-3).

Each case plants a pickle whose unpickling calls ``os.system`` where a loader reads weights,
and asserts a one-line ``ValueError`` that names the file and that the payload never ran.
ultralytics' ``.pt`` detectors are the documented exception (the README's safety section).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from payloads import Payload

from composeseg import load_sam


def test_payload_is_live(tmp_path: Path) -> None:
    """The payload does run when unpickled without protection: the other tests can fail."""
    marker = tmp_path / "ran"
    torch.save(Payload(marker), tmp_path / "x.pt")
    torch.load(tmp_path / "x.pt", weights_only=False)
    assert marker.exists()


def test_meta_checkpoint_with_a_payload(tmp_path: Path) -> None:
    marker, path = tmp_path / "ran", tmp_path / "sam_vit_b.pth"
    torch.save({"image_encoder.patch_embed.proj.weight": Payload(marker)}, path)
    with pytest.raises(ValueError, match="sam_vit_b.pth"):
        load_sam(path, device="cpu")
    assert not marker.exists()


def test_model_directory_with_a_pickled_bin(tiny_sam_dir: Path, tmp_path: Path) -> None:
    marker, model = tmp_path / "ran", tmp_path / "model"
    model.mkdir()
    shutil.copy(tiny_sam_dir / "config.json", model / "config.json")
    torch.save({"vision_encoder.neck.conv1.weight": Payload(marker)}, model / "pytorch_model.bin")
    with pytest.raises(ValueError, match=r"pytorch_model\.bin.*refused") as caught:
        load_sam(model, device="cpu")
    assert "\n" not in str(caught.value)
    assert not marker.exists()


def test_model_directory_with_truncated_safetensors(tiny_sam_dir: Path, tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(tiny_sam_dir, model)
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ValueError, match=r"model\.safetensors.*refused") as caught:
        load_sam(model, device="cpu")
    assert "\n" not in str(caught.value)


def test_clip_examples_refuse_object_arrays(tmp_path: Path) -> None:
    from composeseg.train.clip_data import ClipExamples

    marker, path = tmp_path / "ran", tmp_path / "examples.npz"
    objects = np.array([Payload(marker)], dtype=object)
    np.savez(path, crops=objects, color=objects, kind=objects, size=objects)
    with pytest.raises(ValueError, match="allow_pickle"):
        ClipExamples.load(path)
    assert not marker.exists()

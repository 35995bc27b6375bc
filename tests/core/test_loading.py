from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from composeseg import load_sam, loading


def test_save_pretrained_directory_loads(tiny_sam_dir: Path) -> None:
    sam = load_sam(tiny_sam_dir, device="cpu")
    assert sam.family == "sam" and sam.device.type == "cpu" and sam.dtype == torch.float32
    assert sam.name == str(tiny_sam_dir)
    assert sam.image_size == 128


def test_bfloat16_is_opt_in_and_float16_needs_a_gpu(tiny_sam_dir: Path) -> None:
    sam = load_sam(tiny_sam_dir, device="cpu", dtype=torch.bfloat16)
    assert next(sam.model.parameters()).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="float16 is not supported on CPU"):
        load_sam(tiny_sam_dir, device="cpu", dtype=torch.float16)


@pytest.mark.parametrize("source", ["./no/such/dir", "/no/such/sam_vit_b.pth", "weights.pth"])
def test_missing_paths_raise_file_not_found(source: str) -> None:
    with pytest.raises(FileNotFoundError, match="not an existing file or directory"):
        load_sam(source)


def test_directories_that_are_not_sam_models(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no config.json"):
        load_sam(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match="model_type 'bert' is not a supported SAM family"):
        load_sam(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a valid transformers config"):
        load_sam(tmp_path)


def test_single_weight_file_points_to_its_directory(tmp_path: Path) -> None:
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"")
    with pytest.raises(ValueError, match="pass the directory"):
        load_sam(weights)


def test_missing_demo_model_says_what_to_do(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(loading, "DEMO_MODEL_DIR", tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="embedded demo model is missing"):
        load_sam()


def _hub_cache_with(repo_id: str, model_dir: Path, cache: Path) -> None:
    """Lay out ``model_dir`` as huggingface_hub's cache would hold ``repo_id``."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    for file in model_dir.iterdir():
        (snapshot / file.name).write_bytes(file.read_bytes())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)


def test_hub_ids_load_through_from_pretrained(tiny_sam_dir: Path, tmp_path: Path) -> None:
    """The hub path is real code: resolve ids from an offline cache, in a fresh process."""
    _hub_cache_with("facebook/sam-vit-base", tiny_sam_dir, tmp_path / "hub")
    script = textwrap.dedent(
        """
        from composeseg import load_sam
        for source in ("facebook/sam-vit-base", "sam-vit-base"):
            print(source, load_sam(source, device="cpu").family)
        try:
            load_sam("facebook/not-cached")
        except ValueError as error:
            print("error:", error)
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub")}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:2] == ["facebook/sam-vit-base sam", "sam-vit-base sam"]
    assert "'facebook/not-cached' is not a local file or directory" in lines[2]


def test_import_is_light() -> None:
    """``import composeseg`` defines names only: no torch, transformers or supervision."""
    code = (
        "import sys, composeseg, composeseg.adapters, composeseg.pipelines; "
        "heavy = [m for m in ('torch', 'transformers', 'supervision', 'cv2') if m in sys.modules]; "
        "print(heavy)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"

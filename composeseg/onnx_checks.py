"""The checks an ONNX export passes before :func:`composeseg.export_onnx` keeps it.

Generated scenes (:mod:`composeseg.synthetic`) go through the export and its reference with the
same prompts, through the :class:`~composeseg.Sam` API both times, so preprocessing, prompt
encoding and mask upscaling are part of what is compared.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from composeseg.sam import Sam


def _scene_prompts(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A generated scene's image and its objects' boxes and box centres."""
    from composeseg.synthetic.scenes import SceneConfig, generate_scene

    scene = generate_scene(seed, SceneConfig(height=240, width=320, min_objects=3))
    boxes = scene.boxes()
    centres = ((boxes[:, :2] + boxes[:, 2:]) / 2)[:, None]
    return scene.image, boxes, centres


def check_against_torch(reference: Sam, directory: Path, *, seeds: Any) -> dict[str, float]:
    """ONNX Runtime against torch on generated scenes: boxes and points, single and
    multimask, through the :class:`~composeseg.Sam` API.

    Returns:
        ``max_logit_diff`` and ``max_score_diff`` (largest absolute differences of the low-res
        logits and predicted IoU) and ``mask_iou`` (mean IoU of the masks).
    """
    from composeseg.backends.onnx import load_onnx_sam

    onnx_sam = load_onnx_sam(directory, device="cpu")
    logit_diff = score_diff = 0.0
    ious = []
    for seed in seeds:
        image, boxes, centres = _scene_prompts(seed)
        torch_embedding, onnx_embedding = reference.embed(image), onnx_sam.embed(image)
        labels = np.ones(centres.shape[:2], np.int64)
        prompts: list[dict[str, Any]] = [
            {"boxes": boxes},
            {"points": centres, "point_labels": labels},
        ]
        for prompt in prompts:
            for multimask in (False, True):
                ours = onnx_sam.segment(onnx_embedding, multimask=multimask, **prompt)
                ref = reference.segment(torch_embedding, multimask=multimask, **prompt)
                logit_diff = max(logit_diff, float(np.abs(ours.logits - ref.logits).max()))
                score_diff = max(score_diff, float(np.abs(ours.scores - ref.scores).max()))
                ious.append(mean_mask_iou(ours.dense(), ref.dense()))
    return {
        "max_logit_diff": logit_diff,
        "max_score_diff": score_diff,
        "mask_iou": float(np.mean(ious)),
    }


def compare_precision(fp32_dir: Path, reduced_dir: Path, *, seeds: Any) -> float:
    """Mean mask IoU of a reduced-precision export against its fp32 export: each generated
    scene's objects prompted by their boxes, single-mask output."""
    from composeseg.backends.onnx import load_onnx_sam

    full, reduced = load_onnx_sam(fp32_dir, device="cpu"), load_onnx_sam(reduced_dir, device="cpu")
    ious = []
    for seed in seeds:
        image, boxes, _ = _scene_prompts(seed)
        ious.append(
            mean_mask_iou(
                full.segment(image, boxes=boxes).dense(),
                reduced.segment(image, boxes=boxes).dense(),
            )
        )
    return float(np.mean(ious))


def mean_mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Mean IoU of ``(N, K, H, W)`` bool masks with their counterparts (two empty masks: 1)."""
    from composeseg.geometry import paired_mask_iou

    h, w = a.shape[-2:]
    return float(paired_mask_iou(a.reshape(-1, h, w), b.reshape(-1, h, w)).mean())

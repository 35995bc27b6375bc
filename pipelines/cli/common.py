"""Options and output writing shared by the CLI commands."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from composeseg.upsampling import UPSAMPLINGS

if TYPE_CHECKING:
    import supervision as sv

    from composeseg.sam import Sam

DTYPES = ("float32", "bfloat16", "float16")


def add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sam",
        metavar="SOURCE",
        default=None,
        help="hub id, save_pretrained directory or Meta .pth checkpoint "
        "(default: the embedded demo model)",
    )
    parser.add_argument("--device", default=None, help="cuda, mps or cpu (default: best available)")
    parser.add_argument("--dtype", choices=DTYPES, default="float32", help="model dtype")
    parser.add_argument(
        "--upsampling",
        choices=UPSAMPLINGS,
        default=None,
        help="low-res logits to masks: bilinear (Meta's), guided (refitted to the image's "
        "edges; composeseg.upsampling) or learned (guided, then corrected by the model "
        "directory's mask refiner; composeseg.refiner). Default: the model's own (the demo "
        "model: learned), else bilinear",
    )


def add_zoom_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--zoom",
        type=_zoom_factor,
        default=None,
        metavar="CONTEXT",
        help="segment each object in its own window, CONTEXT times its box (5 suits the demo "
        "model), enlarged to the model's input: better masks for small objects, one encoder "
        "pass per object (composeseg.zoom). Default: one pass for the whole image",
    )


def _zoom_factor(text: str) -> float:
    # the bound is zoom.check_context's; argparse reports its failure as a usage error (exit 2)
    from composeseg.zoom import check_context

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    try:
        return check_context(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 1, got {text}") from None


def load_model(args: argparse.Namespace) -> Sam:
    import torch

    from composeseg.loading import load_sam

    return load_sam(
        args.sam,
        device=args.device,
        dtype=getattr(torch, args.dtype),
        upsampling=args.upsampling,
    )


def write_results(
    out_dir: Path, image: np.ndarray, detections: sv.Detections, image_name: str
) -> dict[str, Path]:
    """Write ``annotated.png``, ``masks/NNN.png`` and ``predictions.json`` (COCO, RLE masks).

    Every file is written atomically, ``predictions.json`` last; returns the paths by role.
    Detections whose masks are kept as RLE (``mask`` None, ``data["rle"]``) get
    ``predictions.json`` alone. A rerun into the same folder leaves what an uninterrupted run
    leaves: a killed run's temporaries and masks numbered beyond this result are removed.
    """
    from composeseg.coco import single_image_payload
    from composeseg.io import remove_temporaries, write_image, write_json
    from composeseg.pipelines.visualize import annotate

    out_dir.mkdir(parents=True, exist_ok=True)
    # this command's own files only: OUTDIR may hold other things (even be ".")
    remove_temporaries(out_dir, recursive=False)
    remove_temporaries(out_dir / "masks", recursive=False)
    paths: dict[str, Path] = {}
    count = 0
    if detections.mask is not None or "rle" not in detections.data:
        paths["annotated"] = write_image(out_dir / "annotated.png", annotate(image, detections))
        masks = detections.mask if detections.mask is not None else np.zeros((0, 1, 1), bool)
        count = len(masks)
        for i, mask in enumerate(masks):
            write_image(out_dir / "masks" / f"{i:03d}.png", mask)
    for old in (out_dir / "masks").glob("[0-9][0-9][0-9].png"):
        if int(old.stem) >= count:  # an earlier run's extra objects
            old.unlink()
    payload = single_image_payload(detections, image_name, image.shape[:2])
    paths["predictions"] = write_json(out_dir / "predictions.json", payload)
    return paths

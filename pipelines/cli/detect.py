"""``composeseg segment --detector SPEC IMAGE_OR_DIR``: detector boxes -> SAM masks."""

from __future__ import annotations

import argparse
import json

from composeseg.pipelines.cli.common import write_results


def run_detector(args: argparse.Namespace) -> int:
    """Segment one image or every image of a directory; resumable per image.

    Writes ``OUTDIR/annotated.png``, ``masks/`` and ``predictions.json`` for one image, or one
    such folder per image (``OUTDIR/<stem>/``) plus ``OUTDIR/instances.json`` (COCO, RLE) for
    a directory. Images whose folder already has ``predictions.json`` are not recomputed.
    """
    from composeseg.coco import annotations_to_detections
    from composeseg.image import load_image
    from composeseg.pipelines.cli.detector_options import build_pipeline
    from composeseg.pipelines.detections import ImageResult
    from composeseg.pipelines.export import write_coco
    from composeseg.pipelines.instance import list_images

    if args.detector is None:
        raise ValueError(f"{args.image} is a directory: give --detector SPEC")
    if args.box or args.point:
        raise ValueError("--box / --point cannot be combined with --detector")
    if not args.image.exists():
        raise FileNotFoundError(f"image not found: {args.image}")
    single = not args.image.is_dir()
    paths = list_images(args.image)
    if not paths:
        raise ValueError(f"no images ({', '.join(('.jpg', '.png', '...'))}) in {args.image}")
    pipe = build_pipeline(args, args.detector)
    results = []
    for path in paths:
        out_dir = args.output if single else args.output / path.stem
        done = out_dir / "predictions.json"
        if done.exists() and not single:
            payload = json.loads(done.read_text())
            info = payload["images"][0]
            size = (int(info["height"]), int(info["width"]))
            detections = annotations_to_detections(payload["annotations"], size)
            results.append(ImageResult(path.name, detections, size, path))
            print(f"{path.name}: done before, skipped")
            continue
        image = load_image(path)
        detections = pipe.segment(image, pipe.detect(image, path))
        write_results(out_dir, image, detections, path.name)
        results.append(ImageResult(path.name, detections, image.shape[:2], path))
        print(f"{path.name}: {len(detections)} object(s)")
    if not single:
        write_coco(args.output / "instances.json", results)
        print(f"{len(results)} image(s) -> {args.output / 'instances.json'}")
    return 0

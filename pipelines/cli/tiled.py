"""``--tile``: huge images on the command line (``segment --detector``, ``everything``,
``proposals``): the tiled pipelines, the image read lazily, masks written as COCO RLE and, for
a GeoTIFF, as GeoJSON polygons in its CRS."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def overlap_value(text: str) -> float:
    """``--overlap``: pixels (``256``) or a fraction of the tile (``0.2``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    return int(value) if value >= 1 and value == int(value) else value


def add_tile_options(parser: argparse.ArgumentParser, *, everything: bool) -> None:
    """--tile, --overlap, --upscale, --large-image, --geojson."""
    group = parser.add_argument_group(
        "huge images",
        "--tile N segments the image tile by tile at full resolution (a tiled TIFF is read "
        "lazily); masks are written as RLE in OUTDIR/predictions.json",
    )
    what = "SAM's crops" if everything else "the detector's tiles"
    group.add_argument(
        "--tile",
        type=int,
        default=None,
        metavar="N",
        help=f"side of {what} in pixels" + (" (0: the model's input side)" if everything else ""),
    )
    group.add_argument(
        "--overlap",
        type=overlap_value,
        default=0.2,
        metavar="PX|FRACTION",
        help="overlap of neighbouring tiles: pixels (256) or a fraction of the tile (0.2; default)",
    )
    group.add_argument(
        "--upscale",
        action="store_true",
        help="allow crops smaller than the model's input (they are enlarged)",
    )
    group.add_argument(
        "--large-image",
        action="store_true",
        help="open images above Pillow's 89 MP decompression-bomb limit on purpose",
    )
    group.add_argument(
        "--geojson",
        type=Path,
        default=None,
        metavar="PATH",
        help="also write the masks as GeoJSON polygons in the raster's CRS (a GeoTIFF; extra "
        "[geo])",
    )


def tiled_instance(args: argparse.Namespace, progress: bool = True) -> Any:
    """The :class:`~composeseg.pipelines.tiled.TiledInstanceSegmentation` of the options."""
    from composeseg.pipelines.cli.common import load_model
    from composeseg.pipelines.cli.detector_options import build_detector, mask_options
    from composeseg.pipelines.tiled import TiledInstanceSegmentation

    return TiledInstanceSegmentation(
        load_model(args),
        build_detector(args, args.detector),
        tile=args.tile,
        overlap=args.overlap,
        upscale=args.upscale,
        large_image=args.large_image,
        refine=not args.no_refine,
        progress=progress,
        **mask_options(args),
    )


def tiled_generator(args: argparse.Namespace, proposals: bool, progress: bool = True) -> Any:
    """The :class:`~composeseg.pipelines.tiled_everything.TiledMaskGenerator` of the options."""
    from composeseg.pipelines.cli.common import load_model
    from composeseg.pipelines.tiled_everything import TiledMaskGenerator

    options: dict[str, Any] = {
        "tile": args.tile or None,
        "overlap": args.overlap,
        "upscale": args.upscale,
        "large_image": args.large_image,
        "points_per_side": args.points_per_side,
        "points_per_batch": args.points_per_batch,
        "progress": progress,
    }
    if proposals:
        return TiledMaskGenerator.proposals(
            load_model(args),
            box_nms_thresh=args.box_nms_thresh,
            max_masks=args.max_masks,
            **options,
        )
    from composeseg.pipelines.cli.everything import _OPTIONS

    amg = {name: getattr(args, name) for name in _OPTIONS if name != "crop_n_layers"}
    if args.crop_n_layers:
        raise ValueError("--crop-n-layers cannot be combined with --tile: the tiles are the crops")
    return TiledMaskGenerator(load_model(args), **amg, **options)


def run_tiled(args: argparse.Namespace, pipe: Any) -> int:
    """Run a tiled pipeline on one image: ``OUTDIR/predictions.json`` (COCO, RLE) and, with
    ``--geojson``, polygons in the raster's CRS."""
    from composeseg.coco import single_image_payload
    from composeseg.io import write_json
    from composeseg.raster import open_raster

    if args.geojson is not None:
        from composeseg.pipelines.geo import open_georaster

        raster: Any = open_georaster(args.image, large_image=args.large_image)
        if raster.crs is None:
            raster.close()
            raise ValueError(
                f"{args.image} has no coordinate reference system: --geojson needs a "
                "georeferenced raster (drop --geojson for COCO RLE output)"
            )
    else:
        raster = open_raster(args.image, large_image=args.large_image)
    try:
        from composeseg.pipelines.tiled import TiledInstanceSegmentation

        if isinstance(pipe, TiledInstanceSegmentation):
            detections = pipe.segment_raster(raster, args.image)  # file detectors want the path
        else:
            detections = pipe.generate(raster)
        size = (raster.height, raster.width)
        payload = single_image_payload(detections, args.image.name, size)
        args.output.mkdir(parents=True, exist_ok=True)
        written = [write_json(args.output / "predictions.json", payload)]
        if args.geojson is not None:
            from composeseg.pipelines.geo import write_geojson

            written.append(write_geojson(args.geojson, detections, raster))
    finally:
        raster.close()
    print(
        f"{args.image.name} ({raster.width}x{raster.height}): {len(detections)} mask(s) -> "
        + ", ".join(str(p) for p in written)
    )
    return 0

"""Tiled detection and segmentation: seams, merging, crops, lazy rasters, bad input, geo."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from composeseg import rle
from composeseg.geometry import tight_boxes
from composeseg.pipelines.tiling import MaskPatch, TileGrid, merge_across_tiles, plan_crops
from composeseg.prompts import Prompts
from composeseg.raster import ArrayRaster, open_raster
from composeseg.synthetic.large import SimulatedTileDetector

BACKGROUND = (60, 70, 80)


@pytest.fixture(scope="module")
def demo_sam() -> Any:
    from composeseg import load_sam

    return load_sam(None, device="cpu")


def scene(height: int, width: int, shapes: list[tuple[str, tuple[int, ...], tuple[int, ...]]]):
    """A flat image with filled shapes: ("rect", (x0, y0, x1, y1), rgb) or ("ellipse",
    (cx, cy, ax, ay), rgb); returns the image and the ``(N, H, W)`` masks."""
    import cv2

    image = np.empty((height, width, 3), np.uint8)
    image[:] = BACKGROUND
    masks = []
    for kind, geometry, color in shapes:
        mask = np.zeros((height, width), np.uint8)
        if kind == "rect":
            x0, y0, x1, y1 = geometry
            mask[y0:y1, x0:x1] = 1
        else:
            cx, cy, ax, ay = geometry
            cv2.ellipse(mask, (cx, cy), (ax, ay), 0, 0, 360, 1, -1)
        image[mask > 0] = color
        masks.append(mask > 0)
    return image, np.stack(masks) if masks else np.zeros((0, height, width), bool)


def exact_detector() -> SimulatedTileDetector:
    return SimulatedTileDetector(np.array(BACKGROUND), input_size=4096, jitter=0.0, drop=0.0)


# ---- building blocks (no model) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "offset", "shape"),
    [((7, 9), (2, 1), (3, 4)), ((5, 5), (0, 0), (5, 5)), ((6, 4), (0, 0), (6, 4)),
     ((4, 8), (3, 0), (4, 5))],
)  # fmt: skip
def test_paste_equals_encoding_the_whole_mask(size, offset, shape) -> None:
    rng = np.random.default_rng(0)
    for fill in (0.0, 0.5, 1.0):
        patch = rng.random(shape) < fill
        whole = np.zeros(size, bool)
        whole[offset[1] : offset[1] + shape[0], offset[0] : offset[0] + shape[1]] = patch
        pasted = rle.paste(patch, offset, size)
        assert pasted["counts"] == rle.encode(whole[None])[0]["counts"]
        x0, y0 = 1, 1
        window = rle.decode_window(pasted, (x0, y0, size[1], size[0]))
        np.testing.assert_array_equal(window, whole[y0:, x0:])
    with pytest.raises(ValueError, match="does not fit"):
        rle.paste(np.ones((3, 3), bool), (8, 0), (5, 9))


def test_tile_grid() -> None:
    grid = TileGrid.build((1000, 1300), 512, 0.25)
    assert grid.overlap == 128
    assert grid.boxes[:, 2].max() == 1300 and grid.boxes[:, 3].max() == 1000  # flush
    assert ((grid.boxes[:, 2:] - grid.boxes[:, :2]) == 512).all()  # all tiles whole
    assert TileGrid.build((300, 200), 512, 64).boxes.tolist() == [[0, 0, 200, 300]]
    strip = TileGrid.build((1, 5000), 512, 64)  # a 1-pixel-wide strip
    assert (strip.boxes[:, 3] == 1).all() and strip.boxes[-1, 2] == 5000


@pytest.mark.parametrize(
    ("tile", "overlap", "message"),
    [(512, 512, "smaller than the tile"), (512, 0.999999, "smaller than the tile"),
     (512, -1, ">= 0"), (1, 0, "tile must be"), (512, 10.5, "fraction")],
)  # fmt: skip
def test_bad_tiles(tile: int, overlap: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TileGrid.build((100, 100), tile, overlap)


def merge(boxes: list[list[float]], tiles: list[int], grid: TileGrid) -> list[list[int]]:
    from composeseg.pipelines.tiling import box_pair_iou, clipped_box_overlap

    b = np.array(boxes, np.float64)
    return merge_across_tiles(
        b,
        np.array(tiles),
        np.linspace(1, 0.5, len(b)),
        grid,
        agreement=clipped_box_overlap(b),
        duplicate=lambda i, j: box_pair_iou(b[i], b[j]),
        join_threshold=0.5,
        nms_threshold=0.5,
        margin=2,
    )


def test_merge_across_tiles() -> None:
    grid = TileGrid.build((100, 100), 60, 20)  # tiles at 0 and 40 on each axis
    assert [g.tolist() for g in grid.boxes] == [[0, 0, 60, 60], [40, 0, 100, 60],
                                                [0, 40, 60, 100], [40, 40, 100, 100]]  # fmt: skip
    # seen whole by two tiles: a duplicate, the better view stays
    assert merge([[45, 5, 55, 15], [45, 5, 55, 15]], [0, 1], grid) == [[0]]
    # cut by the seam in both tiles: one object from the two parts
    assert merge([[30, 5, 60, 20], [40, 5, 80, 20]], [0, 1], grid) == [[0, 1]]
    # across the four-tile corner
    corner = [[30, 30, 60, 60], [40, 30, 75, 60], [30, 40, 60, 75], [40, 40, 75, 75]]
    assert merge(corner, [0, 1, 2, 3], grid) == [[0, 1, 2, 3]]
    # whole in tile 0, cut in tile 1: the whole view
    assert merge([[30, 5, 55, 20], [40, 5, 55, 20]], [0, 1], grid) == [[0]]
    # two neighbours in the overlap stay two
    assert sorted(merge([[42, 5, 48, 15], [50, 5, 56, 15], [42, 5, 48, 15], [50, 5, 56, 15]],
                        [0, 0, 1, 1], grid)) == [[0], [1]]  # fmt: skip
    assert merge([], [], grid) == []


def test_plan_crops_share_windows() -> None:
    boxes = np.array([[10, 10, 30, 30], [60, 40, 80, 70], [900, 900, 920, 915], [0, 300, 700, 900]])
    plans = plan_crops(boxes, (1000, 1000), 256)
    owners = sorted(int(i) for _, members in plans for i in members)
    assert owners == [0, 1, 2, 3]  # each object in exactly one window
    for window, members in plans:
        for i in members:
            assert (boxes[i, :2] >= window[:2]).all() and (boxes[i, 2:] <= window[2:]).all()
    assert any(set(members.tolist()) == {0, 1} for _, members in plans)  # neighbours share
    big = next(w for w, m in plans if 3 in m)
    assert big[2] - big[0] > 256  # too big for a window: one of its own


def test_mask_patch_round_trip() -> None:
    mask = np.zeros((40, 50), bool)
    mask[5:9, 10:30] = True
    patch = MaskPatch.from_mask(mask, (100, 200))
    assert patch.box.tolist() == [110, 205, 130, 209] and patch.area == 80
    whole = np.zeros((300, 400), bool)
    whole[205:209, 110:130] = True
    assert patch.to_image_rle((300, 400))["counts"] == rle.encode(whole[None])[0]["counts"]
    assert MaskPatch.from_mask(np.zeros((4, 4), bool)).area == 0


# ---- rasters ----------------------------------------------------------------------------


def test_tiff_is_read_lazily_and_exactly(tmp_path: Path) -> None:
    import tifffile

    image = np.random.default_rng(0).integers(0, 255, (300, 500, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "a.tif", image, tile=(128, 128), photometric="rgb")
    raster = open_raster(tmp_path / "a.tif")
    assert "TiffRaster" in repr(raster) and (raster.height, raster.width) == (300, 500)
    for window in [(0, 0, 500, 300), (127, 1, 129, 300), (499, 299, 500, 300)]:
        x0, y0, x1, y1 = window
        np.testing.assert_array_equal(raster.read(window), image[y0:y1, x0:x1])
    with pytest.raises(ValueError, match="outside"):
        raster.read((0, 0, 501, 10))
    raster.close()
    data = (tmp_path / "a.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated"):
        open_raster(tmp_path / "cut.tif")


def test_pixel_limit_needs_an_explicit_option(tmp_path: Path, monkeypatch) -> None:
    import tifffile

    from composeseg.image import load_image

    image = np.zeros((100, 120, 3), np.uint8)
    tifffile.imwrite(tmp_path / "a.tif", image, tile=(64, 64), photometric="rgb")
    Image.fromarray(image).save(tmp_path / "a.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    for name in ("a.tif", "a.png"):
        with pytest.raises(ValueError, match="large_image=True"):
            open_raster(tmp_path / name)
        raster = open_raster(tmp_path / name, large_image=True)
        assert (raster.height, raster.width) == (100, 120)  # never downscaled
    assert Image.MAX_IMAGE_PIXELS == 1000  # the limit is back
    with pytest.raises(ValueError, match="large-image"):
        load_image(tmp_path / "a.png")  # 12 kP > 2 x 1 kP: Pillow's bomb error, explained


# ---- detector -> SAM, tiled -------------------------------------------------------------

# 256 px tiles, 64 px overlap: tiles start at 0, 192 and 256 on each axis
SHAPES = [
    ("ellipse", (224, 90, 50, 30), (230, 40, 40)),  # across a seam, whole in no tile
    ("rect", (170, 170, 280, 280), (40, 200, 60)),  # across four tiles' corner, ditto
    ("ellipse", (80, 420, 20, 14), (240, 220, 40)),  # inside one tile
]


def untiled_rles(sam: Any, image: np.ndarray, detector: Any) -> list[bytes]:
    from composeseg.pipelines import InstanceSegmentation

    found = InstanceSegmentation(sam, detector)(image)
    return sorted(rle.encode_mask(m)["counts"] for m in found.mask)


def test_objects_across_seams_give_the_untiled_masks(demo_sam: Any) -> None:
    from composeseg.pipelines import TiledInstanceSegmentation

    image, truth = scene(512, 512, SHAPES)  # the demo model's input: untiled is exact
    detector = exact_detector()
    tiled = TiledInstanceSegmentation(demo_sam, detector, tile=256, overlap=64)
    assert len(TileGrid.build((512, 512), 256, 64)) == 9
    found = tiled(image)
    assert len(found) == 3 and found.mask is None  # one mask per object, as RLE
    expected = tight_boxes(truth)
    np.testing.assert_array_equal(found.xyxy[np.argsort(found.xyxy[:, 0])],
                                  expected[np.argsort(expected[:, 0])])  # fmt: skip
    assert sorted(r["counts"] for r in found.data["rle"]) == untiled_rles(demo_sam, image, detector)
    # a tile larger than the image is the untiled pipeline
    whole = TiledInstanceSegmentation(demo_sam, detector, tile=1024)(image)
    assert sorted(r["counts"] for r in whole.data["rle"]) == untiled_rles(demo_sam, image, detector)
    dense = TiledInstanceSegmentation(demo_sam, detector, tile=256, overlap=64, output="mask")
    masks = dense(image).mask
    iou = (masks[:, None] & truth[None]).sum((2, 3)) / (masks[:, None] | truth[None]).sum((2, 3))
    assert (iou.max(axis=0) > 0.8).all()


def test_crops_of_a_larger_image_are_pasted_exactly(demo_sam: Any) -> None:
    from composeseg.pipelines import InstanceSegmentation, TiledInstanceSegmentation

    shapes = [
        ("ellipse", (600, 300, 30, 22), (230, 40, 40)),
        ("rect", (40, 40, 90, 70), (240, 220, 40)),
    ]
    image, _ = scene(700, 900, shapes)
    found = TiledInstanceSegmentation(demo_sam, exact_detector(), tile=300, overlap=100)(image)
    assert len(found) == 2
    for k in range(2):  # each equals SAM run on its crop alone, pasted back
        x0, y0, x1, y1 = (int(v) for v in found.data["crop_box"][k])
        assert (x1 - x0, y1 - y0) == (512, 512)
        box = found.xyxy[k] - np.array([x0, y0, x0, y0], np.float32)
        alone = InstanceSegmentation(demo_sam).segment(
            image[y0:y1, x0:x1], Prompts(boxes=box[None])
        )
        whole = np.zeros(image.shape[:2], bool)
        whole[y0:y1, x0:x1] = alone.mask[0]
        assert found.data["rle"][k]["counts"] == rle.encode_mask(whole)["counts"]


def test_empty_tiles_and_strips(demo_sam: Any) -> None:
    from composeseg.pipelines import TiledInstanceSegmentation, TiledMaskGenerator

    blank = np.full((600, 700, 3), BACKGROUND, np.uint8)
    pipe = TiledInstanceSegmentation(demo_sam, exact_detector(), tile=256, overlap=32)
    assert len(pipe(blank)) == 0
    calls = []
    generator = TiledMaskGenerator(demo_sam, points_per_side=4)
    generator.generator.sam = _CountingSam(demo_sam, calls)  # type: ignore[assignment]
    assert len(generator(blank)) == 0 and calls == []  # blank tiles are never encoded
    strip = np.full((1, 1500, 3), BACKGROUND, np.uint8)
    strip[0, 700:760] = (230, 40, 40)
    found = pipe(strip)
    assert len(found) == 1 and found.xyxy[0].tolist() == [700, 0, 760, 1]


class _CountingSam:
    def __init__(self, sam: Any, calls: list[int]) -> None:
        self._sam, self._calls = sam, calls

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sam, name)

    def embed(self, image: Any) -> Any:
        self._calls.append(1)
        return self._sam.embed(image)


@pytest.mark.parametrize(
    ("options", "message"),
    [({"crop_size": 256}, "smaller than the model's 512 px input"),
     ({"tile": 256, "overlap": 256}, "smaller than the tile"),
     ({"merge_overlap": 2.0}, "merge_overlap"), ({"output": "png"}, "output")],
)  # fmt: skip
def test_bad_options(demo_sam: Any, options: dict[str, Any], message: str) -> None:
    from composeseg.pipelines import TiledInstanceSegmentation, TiledMaskGenerator

    with pytest.raises(ValueError, match=message):
        TiledInstanceSegmentation(demo_sam, exact_detector(), **options)
    TiledInstanceSegmentation(demo_sam, exact_detector(), crop_size=256, upscale=True)
    with pytest.raises(ValueError, match="input"):
        TiledMaskGenerator(demo_sam, tile=256)
    with pytest.raises(ValueError, match="crop_n_layers"):
        TiledMaskGenerator(demo_sam, crop_n_layers=1)
    with pytest.raises(ValueError, match="box prompts"):
        TiledInstanceSegmentation(
            demo_sam, lambda rgb: Prompts(points=[[[1, 1]]], point_labels=[[1]])
        )(np.zeros((64, 64, 3), np.uint8))


# ---- segment everything, tiled ----------------------------------------------------------


def test_everything_merges_a_mask_across_the_seam(demo_sam: Any) -> None:
    from composeseg.pipelines import TiledMaskGenerator

    # tiles [0, 512) and [448, 960): the ellipse spans 400..560, whole in neither
    image, truth = scene(512, 960, [("ellipse", (480, 256, 80, 50), (230, 40, 40))])
    generator = TiledMaskGenerator(
        demo_sam, overlap=64, points_per_side=6, pred_iou_thresh=0.5, stability_score_thresh=0.8
    )
    found = generator(ArrayRaster(image))
    masks = np.stack([rle.decode(r) for r in found.data["rle"]])
    iou = (masks & truth[0]).sum((1, 2)) / (masks | truth[0]).sum((1, 2))
    assert (iou > 0.9).sum() == 1  # the object crossing the seam is one mask
    flat = masks.reshape(len(masks), -1).astype(np.float32)
    inter = flat @ flat.T
    pair = inter / (flat.sum(1)[:, None] + flat.sum(1)[None] - inter)
    assert (pair[~np.eye(len(masks), dtype=bool)] <= 0.7).all()  # no duplicates
    proposals = TiledMaskGenerator.proposals(demo_sam, overlap=64, points_per_side=4, max_masks=5)
    ranked = proposals(image)
    assert 0 < len(ranked) <= 5 and np.all(np.diff(ranked.confidence) <= 1e-6)


# ---- command line and GeoTIFF -----------------------------------------------------------


def test_cli_segment_tiled_with_geojson(tmp_path: Path, capsys) -> None:
    rasterio = pytest.importorskip("rasterio")
    from rasterio.transform import from_origin

    from composeseg.pipelines.cli import main

    image, _ = scene(400, 600, [("rect", (280, 100, 330, 160), (230, 40, 40))])
    profile = {"driver": "GTiff", "height": 400, "width": 600, "count": 3, "dtype": "uint8"}
    where = {"crs": "EPSG:32633", "transform": from_origin(500000, 4000000, 0.5, 0.5)}
    with rasterio.open(tmp_path / "geo.tif", "w", **where, **profile) as out:
        out.write(np.moveaxis(image, -1, 0))
    with rasterio.open(tmp_path / "plain.tif", "w", **profile) as out:
        out.write(np.moveaxis(image, -1, 0))
    coco = {"images": [{"id": i, "file_name": name, "height": 400, "width": 600}
                       for i, name in enumerate(("geo.tif", "plain.tif"), 1)],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [280, 100, 50, 60]}],
            "categories": [{"id": 1, "name": "roof"}]}  # fmt: skip
    (tmp_path / "boxes.json").write_text(json.dumps(coco))
    argv = ["segment", str(tmp_path / "geo.tif"), "--detector", str(tmp_path / "boxes.json"),
            "--tile", "256", "--overlap", "64", "-o", str(tmp_path / "out"),
            "--geojson", str(tmp_path / "out.geojson")]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    predictions = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert len(predictions["annotations"]) == 1
    collection = json.loads((tmp_path / "out.geojson").read_text())
    assert collection["crs"]["properties"]["name"] == "EPSG:32633"
    ring = np.array(collection["features"][0]["geometry"]["coordinates"][0][0])
    # pixel (280..330, 100..160) -> x 500140..500165, y 3999950..3999920
    assert ring[:, 0].min() >= 500139 and ring[:, 0].max() <= 500166
    assert ring[:, 1].min() >= 3999919 and ring[:, 1].max() <= 3999951
    argv[1] = str(tmp_path / "plain.tif")
    assert main(argv) == 2
    assert "no coordinate reference system" in capsys.readouterr().err
    argv = ["segment", str(tmp_path / "geo.tif"), "--tile", "256", "-o", str(tmp_path / "o2")]
    assert main(argv) == 2
    assert "give --detector" in capsys.readouterr().err

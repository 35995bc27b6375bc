"""GeoTIFF in, GeoJSON out: the tiled pipelines for segment-geospatial users (extra ``[geo]``).

- :func:`open_georaster`: a GeoTIFF (any raster GDAL reads) as a
  :class:`~composeseg.raster.Raster` through rasterio's windowed reads, with its coordinate
  system (``crs``) and pixel -> map ``transform``.
- :func:`mask_geometries` / :func:`write_geojson`: masks (RLE of the image, or dense) as
  polygons in the raster's CRS, one GeoJSON feature per object with its scores and class.
  Each mask is decoded in its box only, so a mask of a 20,000 x 20,000 raster stays small.

rasterio is imported when used, through :func:`composeseg.extras.require`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from composeseg.extras import require
from composeseg.io import write_json
from composeseg.raster import check_pixel_limit, check_window
from composeseg.rle import decode_window

if TYPE_CHECKING:
    import supervision as sv


def _rasterio() -> Any:
    return require("rasterio", extra="geo", purpose="GeoTIFF input and GeoJSON output")


class GeoRaster:
    """A raster file read by windows through rasterio (GDAL).

    Attributes:
        height, width: pixels.
        crs: the coordinate reference system (a ``rasterio.crs.CRS``), None when the file
            has none.
        transform: the ``affine.Affine`` from pixel (col, row) to map coordinates.
        name: the path.
    """

    def __init__(self, path: str | os.PathLike, *, large_image: bool = False) -> None:
        rasterio = _rasterio()
        self.name = str(path)
        if not Path(path).is_file():
            raise FileNotFoundError(f"raster file not found: {path}")
        try:
            self._dataset = rasterio.open(path)
        except rasterio.errors.RasterioIOError as error:
            raise ValueError(f"{path} is not a readable raster ({error})") from None
        self.height, self.width = int(self._dataset.height), int(self._dataset.width)
        check_pixel_limit(self.name, self.height, self.width, large_image)
        if self._dataset.count not in (1, 3, 4):
            raise ValueError(
                f"{path} has {self._dataset.count} bands; expected 1 (grey), 3 (RGB) or 4 (RGBA)"
            )
        self.crs = self._dataset.crs
        self.transform = self._dataset.transform

    def __repr__(self) -> str:
        return f"GeoRaster({self.name!r}, {self.width}x{self.height}, crs={self.crs})"

    def read(self, window: tuple[int, int, int, int]) -> np.ndarray:
        """``(h, w, 3) uint8`` RGB of an xyxy pixel window (see :func:`composeseg.load_image`
        for how grey, alpha and 16-bit bands are normalised)."""
        from rasterio.windows import Window

        from composeseg.image import load_image

        x0, y0, x1, y1 = check_window(window, (self.height, self.width))
        try:
            bands = self._dataset.read(window=Window(x0, y0, x1 - x0, y1 - y0))
        except Exception as error:  # rasterio raises RasterioIOError and CPLE_* types
            raise ValueError(f"{self.name}: window {window} cannot be read ({error})") from None
        pixels = np.moveaxis(bands, 0, -1)
        return load_image(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)

    def close(self) -> None:
        self._dataset.close()


def open_georaster(path: str | os.PathLike, *, large_image: bool = False) -> GeoRaster:
    """A :class:`GeoRaster` (needs ``pip install "composeseg[geo]"``)."""
    return GeoRaster(path, large_image=large_image)


def mask_geometries(
    detections: sv.Detections, transform: Any, image_size: tuple[int, int]
) -> list[dict[str, Any]]:
    """One GeoJSON ``MultiPolygon`` per object, in the coordinates ``transform`` maps pixels
    to (pixel edges, so a one-pixel mask is a square of one pixel's extent).

    Masks come from ``detections.mask`` or, when that is None, ``data["rle"]``; each is
    decoded inside its box only (the box grown by one pixel, inclusive or exclusive max).
    """
    features = require("rasterio.features", extra="geo", purpose="GeoJSON output")
    from rasterio.transform import Affine

    height, width = image_size
    rles = detections.data.get("rle") if detections.mask is None else None
    out = []
    for i in range(len(detections)):
        x0, y0, x1, y1 = (int(v) for v in np.floor(detections.xyxy[i]))
        window = (max(x0 - 1, 0), max(y0 - 1, 0), min(x1 + 2, width), min(y1 + 2, height))
        if window[2] <= window[0] or window[3] <= window[1]:
            out.append({"type": "MultiPolygon", "coordinates": []})
            continue
        if detections.mask is not None:
            mask = np.asarray(detections.mask[i])[window[1] : window[3], window[0] : window[2]]
        elif rles is not None:
            mask = decode_window(rles[i], window)
        else:
            raise ValueError("detections have neither masks nor data['rle']")
        shifted = transform @ Affine.translation(window[0], window[1])
        polygons = [
            shape["coordinates"]
            for shape, value in features.shapes(
                mask.astype(np.uint8), mask=mask, transform=shifted, connectivity=8
            )
            if value == 1
        ]
        out.append({"type": "MultiPolygon", "coordinates": polygons})
    return out


def write_geojson(
    path: str | os.PathLike,
    detections: sv.Detections,
    raster: GeoRaster,
) -> Path:
    """Write the objects as a GeoJSON ``FeatureCollection`` in the raster's CRS (atomic).

    Properties: ``score`` (confidence), ``class_id``, ``class_name``, ``detector_score``,
    ``mask_score`` where known, and ``area_px`` (mask pixels). The CRS is named in the
    collection's ``crs`` member (as GDAL writes GeoJSON outside WGS 84).

    Raises:
        ValueError: the raster has no CRS (map coordinates would be meaningless).
    """
    if raster.crs is None:
        raise ValueError(
            f"{raster.name} has no coordinate reference system: polygons cannot be placed on a "
            "map; georeference it (e.g. gdal_edit.py -a_srs) or write COCO RLE instead"
        )
    size = (raster.height, raster.width)
    geometries = mask_geometries(detections, raster.transform, size)
    features = []
    for i, geometry in enumerate(geometries):
        properties: dict[str, Any] = {"id": i}
        if detections.confidence is not None:
            properties["score"] = float(detections.confidence[i])
        if detections.class_id is not None:
            properties["class_id"] = int(detections.class_id[i])
        for key in ("class_name", "detector_score", "mask_score"):
            if key in detections.data:
                value = detections.data[key][i]
                properties[key] = str(value) if key == "class_name" else float(value)
        features.append({"type": "Feature", "properties": properties, "geometry": geometry})
    collection = {
        "type": "FeatureCollection",
        "crs": {"type": "name", "properties": {"name": raster.crs.to_string()}},
        "features": features,
    }
    return write_json(path, collection)


def read_geojson(path: str | os.PathLike) -> dict[str, Any]:
    """The collection :func:`write_geojson` wrote, as a dict."""
    result: dict[str, Any] = json.loads(Path(path).read_text())
    return result

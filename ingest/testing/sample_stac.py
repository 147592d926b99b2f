"""The JSON documents of the sample archives: STAC items, collections and ``labels.geojson``.

Pure functions from a patch's facts to the dicts the MLHub archive generator wrote. Shapes follow
the recorded real data: the source item is ``mlhub-recorded/bigearthnet_v1_source_item.json`` key
for key (with archive-relative hrefs and links, as in the recorded real archive's items); the label
item follows the shape documented in ``mlhub-api.md``. Documents are serialised like the recorded
archive's ``stac.json`` files: ``json.dumps(indent=4, sort_keys=True)``, no trailing newline (that
reproduces them byte for byte).

The real geometry bug is reproduced on purpose: the third vertex of every real footprint is the
lower-right corner transformed with easting and northing swapped (it matches the recorded items to
the last digit), so polygons and bboxes stretch towards the Indian Ocean. Consumers must take
georeferencing from the GeoTIFF tags, never from STAC geometry.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from pyproj import Transformer

from ingest.nomenclature import CLASSES_43, LABELS_COLLECTION, SOURCE_COLLECTION

FlagStyle = Literal["string", "bool"]
JSON = dict[str, Any]

STAC_VERSION: Final = "1.0.0-beta.2"
#: Side of a patch in metres (120 px at 10 m).
PATCH_METRES: Final = 1200
DESCRIPTION: Final = "BigEarthNet v1.0"
LICENSE: Final = "CDLA-Permissive-1.0"
SCI_DOI: Final = "10.14279/depositonce-10149"
SCI_CITATION: Final = (
    'G. Sumbul, M. Charfuelan, B. Demir, V. Markl, "BigEarthNet: A Large-Scale Benchmark Archive'
    ' for Remote Sensing Image Understanding", IEEE International Geoscience and Remote Sensing'
    " Symposium, pp. 5901-5904, Yokohama, Japan, 2019."
)
PROVIDERS: Final = (
    {"url": "http://bigearth.net", "name": "BigEarthNet", "roles": ["processor", "licensor"]},
)
ASSET_TYPE: Final = "image/tiff; application=geotiff; profile=cloud-optimized"

#: ``eo:bands`` of the recorded source item: band -> (common_name, description), in its order.
EO_BANDS: Final[Mapping[str, tuple[str, str]]] = {
    "B01": ("Coastal Aerosol", "Coastal Aerosol"),
    "B02": ("Blue", "Blue"),
    "B03": ("Green", "Green"),
    "B04": ("Red", "Red"),
    "B05": ("Vegetation Red Edge", "Vegetation Red Edge (704.1nm)"),
    "B06": ("Vegetation Red Edge", "Vegetation Red Edge (740.1nm)"),
    "B07": ("Vegetation Red Edge", "Vegetation Red Edge (782.8nm)"),
    "B08": ("NIR", "NIR"),
    "B8A": ("Narrow NIR", "Narrow NIR"),
    "B09": ("Water Vapour", "Water Vapour"),
    "B10": ("SWIR - Cirrus", "SWIR - Cirrus"),
    "B11": ("SWIR", "SWIR (1613.7nm)"),
    "B12": ("SWIR", "SWIR (2202.4nm)"),
}


@dataclass(frozen=True)
class PatchFacts:
    """What the JSON documents of one patch are made from (no pixels)."""

    name: str
    """BigEarthNet v1 patch name."""
    epsg: int
    """WGS 84 / UTM code of the patch (326zz)."""
    ulx: float
    """Easting of the upper-left corner, metres."""
    uly: float
    """Northing of the upper-left corner, metres."""
    datetime: str
    """Acquisition time, ``YYYY-MM-DDThh:mm:ssZ``."""
    labels: tuple[str, ...]
    """43-class names, canonical order."""
    snow: bool
    cloud: bool


def dumps(document: JSON) -> bytes:
    """Serialise like the real archive generator (byte-identical on the recorded files)."""
    return json.dumps(document, indent=4, sort_keys=True).encode("utf-8")


def source_item_id(patch: str) -> str:
    return f"{SOURCE_COLLECTION}_{patch}"


def label_item_id(patch: str) -> str:
    return f"{LABELS_COLLECTION}_{patch}"


@functools.lru_cache(maxsize=64)
def _to_lonlat(epsg: int) -> Transformer:
    return Transformer.from_crs(epsg, 4326, always_xy=True)


def _corners(facts: PatchFacts) -> tuple[float, float, float, float]:
    return facts.ulx, facts.uly, facts.ulx + PATCH_METRES, facts.uly - PATCH_METRES


def footprint(facts: PatchFacts) -> list[list[float]]:
    """The true footprint ring in lon/lat: UL, UR, LR, LL, UL (the real generator's order)."""
    ulx, uly, lrx, lry = _corners(facts)
    xs, ys = _to_lonlat(facts.epsg).transform([ulx, lrx, lrx, ulx], [uly, uly, lry, lry])
    ring = [[float(x), float(y)] for x, y in zip(xs, ys, strict=True)]
    return [*ring, ring[0]]


def buggy_footprint(facts: PatchFacts) -> list[list[float]]:
    """The footprint as the real STAC items have it: the LR vertex with x and y swapped."""
    ring = footprint(facts)
    _, _, lrx, lry = _corners(facts)
    x, y = _to_lonlat(facts.epsg).transform(lry, lrx)
    ring[2] = [float(x), float(y)]
    return ring


def bbox_of(ring: Sequence[Sequence[float]]) -> list[float]:
    lons = [p[0] for p in ring]
    lats = [p[1] for p in ring]
    return [min(lons), min(lats), max(lons), max(lats)]


def _flag(value: bool, style: FlagStyle) -> bool | str:
    return value if style == "bool" else ("true" if value else "false")


def _eo_band(band: str) -> JSON:
    common_name, description = EO_BANDS[band]
    return {"common_name": common_name, "description": description, "name": band}


_ARCHIVE_LINKS: Final = (
    {"rel": "collection", "href": "../collection.json"},
    {"rel": "parent", "href": "../collection.json"},
)


def source_item(facts: PatchFacts, bands: Iterable[str]) -> JSON:
    """The source item of a patch whose band files are ``<band>.tif`` beside its ``stac.json``."""
    ring = buggy_footprint(facts)
    assets = {
        band: {
            "description": None,
            "eo:bands": [_eo_band(band)],
            "href": f"{band}.tif",
            "roles": [],
            "title": f"{facts.name}_{band}",
            "type": ASSET_TYPE,
        }
        for band in bands
    }
    return {
        "assets": assets,
        "bbox": bbox_of(ring),
        "collection": SOURCE_COLLECTION,
        "geometry": {"coordinates": [ring], "type": "Polygon"},
        "id": source_item_id(facts.name),
        "links": [dict(link) for link in _ARCHIVE_LINKS],
        "properties": {
            "constellation": "Sentinel-2",
            "datetime": facts.datetime,
            # The API listed all 13 Sentinel-2 bands, B10 included, whatever the assets hold.
            "eo:bands": [_eo_band(band) for band in EO_BANDS],
            "gsd": 30,
            "instruments": ["MSI"],
            "platform": "Sentinel-2",
            "validation:attemptedExtensions": ["eo"],
            "validation:errors": [],
        },
        "stac_extensions": ["eo"],
        "stac_version": STAC_VERSION,
        "type": "Feature",
    }


def label_item(facts: PatchFacts, flags: FlagStyle) -> JSON:
    """The label item of a patch, with its one relative ``source`` link."""
    ring = buggy_footprint(facts)
    source_href = f"../../{SOURCE_COLLECTION}/{source_item_id(facts.name)}/stac.json"
    return {
        "assets": {
            "labels": {
                "href": "labels.geojson",
                "title": "Land Type Classes",
                "type": "application/geo+json",
            }
        },
        "bbox": bbox_of(ring),
        "collection": LABELS_COLLECTION,
        "geometry": {"coordinates": [ring], "type": "Polygon"},
        "id": label_item_id(facts.name),
        "links": [*(dict(link) for link in _ARCHIVE_LINKS), {"rel": "source", "href": source_href}],
        "properties": {
            "cloud_and_shadow": _flag(facts.cloud, flags),
            "datetime": facts.datetime,
            "label:classes": [
                {"name": "labels", "classes": list(CLASSES_43)},
                {"name": "seasonal_snow", "classes": [False, True]},
                {"name": "cloud_and_shadow", "classes": [False, True]},
            ],
            "label:description": "BigEarthNet v1.0 multi-label land cover (CORINE Land Cover 2018)",
            "label:properties": ["labels", "cloud_and_shadow", "seasonal_snow"],
            "label:tasks": ["classification"],
            "label:type": "vector",
            "labels": list(facts.labels),
            "seasonal_snow": _flag(facts.snow, flags),
        },
        "stac_extensions": ["label"],
        "stac_version": STAC_VERSION,
        "type": "Feature",
    }


def labels_geojson(facts: PatchFacts, flags: FlagStyle) -> JSON:
    """The label asset: one Feature with the true footprint and the patch's labels and flags."""
    feature = {
        "geometry": {"coordinates": [footprint(facts)], "type": "Polygon"},
        "properties": {
            "cloud_and_shadow": _flag(facts.cloud, flags),
            "labels": list(facts.labels),
            "seasonal_snow": _flag(facts.snow, flags),
        },
        "type": "Feature",
    }
    return {"features": [feature], "type": "FeatureCollection"}


@dataclass(frozen=True)
class Extent:
    """Union of the items' bboxes and time span."""

    bbox: tuple[float, float, float, float]
    start: str
    end: str


def extent_of(facts: Iterable[PatchFacts]) -> Extent:
    """The extent of the items of these patches, in one pass (the buggy bboxes included)."""
    lows, highs = [math.inf, math.inf], [-math.inf, -math.inf]
    start: str | None = None
    end: str | None = None
    for one in facts:
        west, south, east, north = bbox_of(buggy_footprint(one))
        lows = [min(lows[0], west), min(lows[1], south)]
        highs = [max(highs[0], east), max(highs[1], north)]
        # ISO-8601 with a fixed "Z" suffix sorts chronologically as text.
        start = one.datetime if start is None else min(start, one.datetime)
        end = one.datetime if end is None else max(end, one.datetime)
    if start is None or end is None:
        raise ValueError("a collection needs at least one item")
    return Extent((lows[0], lows[1], highs[0], highs[1]), start, end)


def collection(collection_id: str, item_ids: Iterable[str], extent: Extent) -> JSON:
    """The archive's ``collection.json``: links only ``rel: item``, one per item, in archive order.

    The spatial extent is the union of the item bboxes, hence inflated by the geometry bug just
    like the real v1 collection's. No title: the real collections had none.
    """
    extensions = ["label", "scientific"] if collection_id == LABELS_COLLECTION else ["scientific"]
    return {
        "description": DESCRIPTION,
        "extent": {
            "spatial": {"bbox": [list(extent.bbox)]},
            "temporal": {"interval": [[extent.start, extent.end]]},
        },
        "id": collection_id,
        "license": LICENSE,
        "links": [{"href": f"{item_id}/stac.json", "rel": "item"} for item_id in item_ids],
        "providers": [dict(p) for p in PROVIDERS],
        "sci:citation": SCI_CITATION,
        "sci:doi": SCI_DOI,
        "stac_extensions": extensions,
        "stac_version": STAC_VERSION,
        "type": "Collection",
    }

"""The real BigEarthNet files the test kit builds from, and the geography of patch names.

Everything is read from installed packages, never from outside the project:

- :func:`real_v2_files` — the real v2 (reBEN) TIFFs packaged in
  ``ingest/testing/data/bigearthnet-v2`` (one S2 patch, one S1 patch, one reference map;
  provenance and licences in its ``SOURCES.md``);
- :func:`metadata_resources`, :func:`read_metadata` — the two official v2 metadata parquets;
- :func:`example_s1_patches` — the six real v1 S1 patches of the ``bigearthnet-common`` wheel,
  and :func:`official_s1_of`, the official S1–S2 table of that wheel;
- :func:`tile_origin`, :func:`mgrs_tile` — the UTM zone and upper-left corner of a Sentinel-2
  tile from its MGRS id, and back.
"""

from __future__ import annotations

import bz2
import functools
import importlib.resources
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib.resources.abc import Traversable
from typing import Any, Final

import pyarrow as pa
import pyarrow.parquet as pq
from pyproj import Transformer

from ingest.testing.samples import example_files

__all__ = [
    "METADATA_FILES",
    "RealS1Patch",
    "data_root",
    "example_s1_patches",
    "metadata_resources",
    "mgrs_tile",
    "official_s1_of",
    "read_metadata",
    "real_v2_files",
    "tile_origin",
]

#: The official metadata files: all patches without, then with snow, cloud or shadow.
METADATA_FILES: Final = (
    "metadata.parquet",
    "metadata_for_patches_with_snow_cloud_or_shadow.parquet",
)
_S1_EXAMPLE: Final = "BigEarthNet-S1-Example.tar.bz2"
_S1_S2_TABLE: Final = "s1_s2_name_country_season.csv.bz2"

# MGRS letters: 100 km columns (8 per zone set), rows (20, cycling every 2,000 km), 8° bands.
_COLUMNS: Final = "ABCDEFGHJKLMNPQRSTUVWXYZ"
_ROWS: Final = "ABCDEFGHJKLMNPQRSTUV"
_BANDS: Final = "CDEFGHJKLMNPQRSTUVWX"
_SQUARE: Final = 100_000
_ROW_CYCLE: Final = 2_000_000
#: Upper-left x of the Sentinel-2 tiles in a 100 km column, as the real tiles have it
#: (e.g. ``T29SND`` starts at 499980); the other columns start on the MGRS line.
_S2_TILE_X: Final = {400_000: 399_960, 500_000: 499_980}


def data_root() -> Traversable:
    """``ingest/testing/data/bigearthnet-v2`` of the installed package."""
    return importlib.resources.files("ingest.testing") / "data" / "bigearthnet-v2"


def real_v2_files() -> dict[str, bytes]:
    """Every real v2 TIFF, by its path inside the real archives (``BigEarthNet-S2/<tile>/…``)."""
    found: dict[str, bytes] = {}

    def walk(node: Traversable, prefix: str) -> None:
        for child in sorted(node.iterdir(), key=lambda c: c.name):
            path = f"{prefix}{child.name}"
            if child.is_dir():
                walk(child, f"{path}/")
            elif child.name.endswith(".tif"):
                found[path] = child.read_bytes()

    walk(data_root(), "")
    return found


def metadata_resources() -> tuple[Traversable, Traversable]:
    """The two official parquets (``metadata.parquet``, then the snow/cloud/shadow one)."""
    root = data_root()
    return root / METADATA_FILES[0], root / METADATA_FILES[1]


def read_metadata(columns: Iterable[str] | None = None) -> pa.Table:
    """Both official parquets as one table (549,488 rows, the official order and schema)."""
    tables = []
    for resource in metadata_resources():
        with resource.open("rb") as raw:
            tables.append(pq.read_table(raw, columns=None if columns is None else list(columns)))
    return pa.concat_tables(tables)


@dataclass(frozen=True)
class RealS1Patch:
    """One of the six real v1 S1 example patches of the ``bigearthnet-common`` wheel."""

    name: str
    files: dict[str, bytes] = field(repr=False)
    """``VV``/``VH``/``labels_metadata`` -> original bytes, in the example tarball's order."""

    @property
    def metadata(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.files["labels_metadata"])
        return document

    @property
    def s2_name(self) -> str:
        """The v1 S2 patch it belongs to (its JSON's ``corresponding_s2_patch``)."""
        return str(self.metadata["corresponding_s2_patch"])


def example_s1_patches() -> list[RealS1Patch]:
    """The six real S1 example patches, in the example tarball's order."""
    return [RealS1Patch(name, dict(files)) for name, files in example_files(_S1_EXAMPLE)]


def official_s1_of(s2_names: Iterable[str]) -> dict[str, str]:
    """S2 name -> S1 name for the given v1 names, from the wheel's official S1–S2 table."""
    wanted = set(s2_names)
    return {s2: s1 for s1, s2 in _table_rows() if s2 in wanted}


def _table_rows() -> Iterator[tuple[str, str]]:
    resource = importlib.resources.files(_PACKAGE_COMMON) / _S1_S2_TABLE
    with resource.open("rb") as raw, bz2.open(raw, "rt", encoding="ascii") as text:
        for line in text:
            s1, s2, *_ = line.strip().split(",")
            yield s1, s2


_PACKAGE_COMMON: Final = "bigearthnet_common"


# --- MGRS tiles -----------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _to_utm(epsg: int) -> Transformer:
    return Transformer.from_crs(4326, epsg, always_xy=True)


@functools.lru_cache(maxsize=64)
def _to_lonlat(epsg: int) -> Transformer:
    return Transformer.from_crs(epsg, 4326, always_xy=True)


def tile_origin(tile: str) -> tuple[int, int, int]:
    """``(epsg, x0, y0)`` of a northern Sentinel-2 tile such as ``33UUP`` (or ``T33UUP``).

    ``(x0, y0)`` is the upper-left corner of the tile's 100 km MGRS square (x as the real S2 tiles
    have it), so patch ``<h>_<v>`` of the tile has its upper-left corner at
    ``(x0 + 1200 h, y0 − 1200 v)`` — checked on the real patches of T33UUP, T29UPU, T29SND, T35VPK.
    """
    tile = tile.removeprefix("T")
    zone, band, column, row = int(tile[:2]), tile[2], tile[3], tile[4]
    if len(tile) != 5 or band not in _BANDS[10:] or column not in _COLUMNS or row not in _ROWS:
        raise ValueError(f"not a northern-hemisphere MGRS tile id: {tile!r}")
    epsg = 32600 + zone
    column_index = _COLUMNS.index(column) - 8 * ((zone - 1) % 3)
    if not 0 <= column_index < 8:
        raise ValueError(f"column {column!r} is not used in UTM zone {zone}")
    easting = (column_index + 1) * _SQUARE
    # The band's southern edge, where the zone is widest (lowest northing): squares reaching
    # above it belong to the band.
    lat_min = -80 + 8 * _BANDS.index(band)
    _, band_bottom = _to_utm(epsg).transform(6 * zone - 183 + 3, lat_min)
    offset = _ROWS.index(row) - (5 if zone % 2 == 0 else 0)
    northing = (offset % 20) * _SQUARE
    while northing + _SQUARE <= band_bottom:
        northing += _ROW_CYCLE
    return epsg, _S2_TILE_X.get(easting, easting), northing + _SQUARE


def mgrs_tile(epsg: int, x0: float, y0: float) -> str:
    """The MGRS id (``33UUP``) of the Sentinel-2 tile whose upper-left corner is ``(x0, y0)``."""
    zone = epsg - 32600
    if not 1 <= zone <= 60:
        raise ValueError(f"epsg must be WGS 84 / UTM north (32601-32660), got {epsg}")
    easting = round(x0 / _SQUARE) * _SQUARE
    column = _COLUMNS[8 * ((zone - 1) % 3) + easting // _SQUARE - 1]
    bottom = round(y0 / _SQUARE) * _SQUARE - _SQUARE
    row = _ROWS[(bottom // _SQUARE + (5 if zone % 2 == 0 else 0)) % 20]
    _, lat = _to_lonlat(epsg).transform(easting + _SQUARE / 2, bottom + _SQUARE / 2)
    band = _BANDS[min(int((lat + 80) // 8), len(_BANDS) - 1)]
    return f"{zone:02d}{band}{column}{row}"

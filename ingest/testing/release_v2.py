"""reBEN v2.0 samples: ``BigEarthNet-S2.tar.zst``, ``BigEarthNet-S1.tar.zst``,
``Reference_Maps.tar.zst`` and the two metadata parquets, made as the real ones are.

Archives: GNU tar (uid/gid 0, mtime 2024-01-01, regular files only, no directory entries, every
name over 100 characters so a ``././@LongLink`` header precedes each member) of a lexically
sorted file list, one zstd frame at level 6. Layout:
``BigEarthNet-S2/<tile>/<patch_id>/<patch_id>_B01.tif`` … ``_B8A.tif``;
``BigEarthNet-S1/<first 5 fields of s1_name>/<s1_name>/<s1_name>_VH.tif, _VV.tif``;
``Reference_Maps/<tile>/<patch_id>/<patch_id>_reference_map.tif``.

**Real sample** — nine patches, all named and labelled by the official metadata:

==================================  ==========================  ==================  ============
patch (v2 id suffix)                S2                          S1 (``s1=True``)    map
==================================  ==========================  ==================  ============
``T33UUP_75_43``                    real v2 file bytes          built               built
the six v1 example patches          real v1 pixels, v2 encoding real (wheel, v1=v2)  built
``T33UUP_26_57``                    built                       built               real bytes
``T33UUP_70_48``                    built                       real bytes          built
==================================  ==========================  ==================  ============

The six example patches are found through the metadata's ``s2v1_name`` (their v2 ids differ,
e.g. ``T93020`` became ``T093019``); their TIFFs are re-encoded as v2 does (v1 plus
``GDAL_NODATA`` "0"). ``…_26_57`` and ``…_70_48`` get built S2 partners so that the real map and
the real S1 patch are in the sample (every archive holds the same patch set, as the real ones do).
Built files are synthetic data in the real format on the patch's own 10 m grid. ``DIR/originals/``
holds every member with real content. Metadata: the official rows of exactly these patches, in
the official order, schema and split into the two files.

**Synthetic sample** (``patches=N``) — N real patch ids drawn from the official metadata
(deterministic for the seed), synthetic pixels on the grid of the id's tile; the metadata files
are the full official parquets, copied as they are (549,488 rows).
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import tifffile

from ingest.nomenclature import BAND_SLOT, BANDS
from ingest.testing.archive_writer import Member
from ingest.testing.release_data import (
    example_s1_patches,
    metadata_resources,
    read_metadata,
    real_v2_files,
    tile_origin,
)
from ingest.testing.release_parts import (
    BuildOptions,
    ReleaseSample,
    Role,
    archive_name,
    finish,
    metadata_names,
    order,
    synthetic_reference_map,
    synthetic_s1_pixels,
    v2_member,
    write_archive,
)
from ingest.testing.release_tiffs import encode_reference_map, encode_s1_band, encode_v2_band
from ingest.testing.samples import real_patches
from ingest.testing.synthetic import synthetic_pixels

__all__ = ["map_path", "s1_path", "s2_path", "write_reben_v2"]

_POLARISATIONS: Final = ("VH", "VV")  # lexical order, as in the real archive
_PATCHES_SEED: Final = 0x2E
#: Seed of the built pixels of a real sample (the 26_57 and 70_48 S2 patches, built S1 and maps).
_REAL_SAMPLE_SEED: Final = 2024

Files = list[tuple[str, bytes]]


def _tile_folder(patch_id: str) -> str:
    return patch_id.rsplit("_", 2)[0]


def s2_path(patch_id: str, band: str) -> str:
    return f"BigEarthNet-S2/{_tile_folder(patch_id)}/{patch_id}/{patch_id}_{band}.tif"


def s1_path(s1_name: str, polarisation: str) -> str:
    folder = "_".join(s1_name.split("_")[:5])
    return f"BigEarthNet-S1/{folder}/{s1_name}/{s1_name}_{polarisation}.tif"


def map_path(patch_id: str) -> str:
    return f"Reference_Maps/{_tile_folder(patch_id)}/{patch_id}/{patch_id}_reference_map.tif"


@dataclass(frozen=True)
class _Patch:
    """One patch of the sample: its metadata row and how to make each of its files."""

    row: dict[str, Any]
    s2: Callable[[], Files]
    s1: Callable[[], Files]
    reference_map: Callable[[], Files]

    @property
    def id(self) -> str:
        return str(self.row["patch_id"])

    @property
    def s1_name(self) -> str:
        return str(self.row["s1_name"])


def _grid(patch_id: str) -> tuple[int, float, float]:
    """(epsg, ulx, uly) of a v2 patch from its id: tile origin plus 1200 m per h and v."""
    *_, tile, h, v = patch_id.split("_")
    epsg, x0, y0 = tile_origin(tile)
    return epsg, float(x0 + 1200 * int(h)), float(y0 - 1200 * int(v))


def _built_s2(seed: int, index: int, row: dict[str, Any], grid: tuple[int, float, float]) -> Files:
    snow, cloud = bool(row["contains_seasonal_snow"]), bool(row["contains_cloud_or_shadow"])
    pixels = synthetic_pixels(seed, index, BANDS, snow=snow, cloud=cloud)
    return _encode_s2(str(row["patch_id"]), pixels, grid)


def _encode_s2(
    patch_id: str, pixels: dict[str, np.ndarray], grid: tuple[int, float, float]
) -> Files:
    epsg, x, y = grid
    return [
        (
            s2_path(patch_id, band),
            encode_v2_band(pixels[band], epsg=epsg, x_ul=x, y_ul=y, gsd=BAND_SLOT[band][0].gsd),
        )
        for band in BANDS
    ]


def _built_s1(seed: int, index: int, s1_name: str, grid: tuple[int, float, float]) -> Files:
    pixels = synthetic_s1_pixels(seed, index)
    epsg, x, y = grid
    return [
        (s1_path(s1_name, pol), encode_s1_band(pixels[pol], epsg=epsg, x_ul=x, y_ul=y))
        for pol in _POLARISATIONS
    ]


def _built_map(seed: int, index: int, row: dict[str, Any], grid: tuple[int, float, float]) -> Files:
    pixels = synthetic_reference_map(seed, index, list(row["labels"]))
    epsg, x, y = grid
    data = encode_reference_map(pixels, epsg=epsg, x_ul=x, y_ul=y)
    return [(map_path(str(row["patch_id"])), data)]


# --- real -------------------------------------------------------------------------------------


def _real_plan() -> tuple[list[_Patch], set[str]]:
    """The nine patches of the real sample and the archive paths whose content is real."""
    files = real_v2_files()
    v1_pixels = {p.name: p for p in real_patches()}
    wheel_s1 = {p.name: p for p in example_s1_patches()}
    real_s2_ids = {path.split("/")[2] for path in files if path.startswith("BigEarthNet-S2/")}
    real_map_ids = {path.split("/")[2] for path in files if path.startswith("Reference_Maps/")}
    real_s1 = {path.split("/")[2] for path in files if path.startswith("BigEarthNet-S1/")}
    table = read_metadata()
    wanted = pc.or_(
        pc.or_(
            pc.is_in(table["patch_id"], pa.array(sorted(real_s2_ids | real_map_ids))),
            pc.is_in(table["s2v1_name"], pa.array(sorted(v1_pixels))),
        ),
        pc.is_in(table["s1_name"], pa.array(sorted(real_s1))),
    )
    rows = table.filter(wanted).to_pylist()
    real_paths: set[str] = set()
    plan = []
    for index, row in enumerate(rows):
        pid, s1_name, v1 = row["patch_id"], row["s1_name"], row["s2v1_name"]
        grid = _grid(pid)
        s2_paths = tuple(s2_path(pid, band) for band in BANDS)
        s1_paths = tuple(s1_path(s1_name, pol) for pol in _POLARISATIONS)
        s2: Callable[[], Files]
        if pid in real_s2_ids:
            s2 = partial(_stored, s2_paths, files)
        elif v1 in v1_pixels:
            corner = v1_pixels[v1].metadata["coordinates"]  # the real pixels' own grid
            grid = (grid[0], float(corner["ulx"]), float(corner["uly"]))
            s2 = partial(_reencoded_s2, pid, v1_pixels[v1].bands, grid)
        else:
            s2 = partial(_built_s2, _REAL_SAMPLE_SEED, index, row, grid)
        if pid in real_s2_ids or v1 in v1_pixels:
            real_paths.update(s2_paths)
        s1: Callable[[], Files]
        if s1_name in real_s1:
            s1 = partial(_stored, s1_paths, files)
        elif s1_name in wheel_s1:
            wheel = {
                path: wheel_s1[s1_name].files[pol]
                for path, pol in zip(s1_paths, _POLARISATIONS, strict=True)
            }
            s1 = partial(_stored, s1_paths, wheel)
        else:
            s1 = partial(_built_s1, _REAL_SAMPLE_SEED, index, s1_name, grid)
        if s1_name in real_s1 or s1_name in wheel_s1:
            real_paths.update(s1_paths)
        reference_map: Callable[[], Files]
        if pid in real_map_ids:
            reference_map = partial(_stored, (map_path(pid),), files)
            real_paths.add(map_path(pid))
        else:
            reference_map = partial(_built_map, _REAL_SAMPLE_SEED, index, row, grid)
        plan.append(_Patch(row, s2, s1, reference_map))
    return plan, real_paths


def _stored(paths: Sequence[str], store: Mapping[str, bytes]) -> Files:
    return [(path, store[path]) for path in paths]


def _reencoded_s2(
    patch_id: str, bands: Mapping[str, bytes], grid: tuple[int, float, float]
) -> Files:
    """Real v1 band files re-encoded as v2 does (same pixels, plus the nodata tag)."""
    pixels = {band: tifffile.imread(io.BytesIO(data)) for band, data in bands.items()}
    return _encode_s2(patch_id, pixels, grid)


def _write_real_metadata(
    directory: Path, options: BuildOptions, ids: Sequence[str]
) -> tuple[Path, ...]:
    """The official rows of exactly ``ids``, each in the file it officially sits in."""
    written = []
    for resource, name in zip(metadata_resources(), metadata_names(options.names), strict=True):
        with resource.open("rb") as raw:
            table = pq.read_table(raw)
        table = table.filter(pc.is_in(table["patch_id"], pa.array(sorted(ids))))
        target = directory / name
        pq.write_table(table, target, compression="zstd")
        written.append(target)
    return tuple(written)


# --- synthetic --------------------------------------------------------------------------------


_PLAN_COLUMNS: Final = (
    "patch_id",
    "labels",
    "s1_name",
    "contains_seasonal_snow",
    "contains_cloud_or_shadow",
)


def _synthetic_plan(options: BuildOptions) -> list[_Patch]:
    table = read_metadata(_PLAN_COLUMNS)
    if not 1 <= options.patches <= table.num_rows:
        raise ValueError(f"patches must be between 1 and {table.num_rows}, got {options.patches}")
    chosen = np.random.default_rng([options.seed, _PATCHES_SEED]).choice(
        table.num_rows, options.patches, replace=False
    )
    rows = table.take(pa.array(chosen)).to_pylist()
    seed = options.seed
    plan = []
    for index, row in zip((int(i) for i in chosen), rows, strict=True):
        # Pixels are seeded by the patch's row in the official metadata: the same patch gets the
        # same pixels whatever N is.
        grid = _grid(row["patch_id"])
        plan.append(
            _Patch(
                row,
                partial(_built_s2, seed, index, row, grid),
                partial(_built_s1, seed, index, row["s1_name"], grid),
                partial(_built_map, seed, index, row, grid),
            )
        )
    return plan


def _copy_metadata(directory: Path, options: BuildOptions) -> tuple[Path, ...]:
    written = []
    for resource, name in zip(metadata_resources(), metadata_names(options.names), strict=True):
        target = directory / name
        with resource.open("rb") as src, target.open("wb") as dst:
            shutil.copyfileobj(src, dst)
        written.append(target)
    return tuple(written)


# --- the archives -----------------------------------------------------------------------------


def _members(
    patches: Iterable[_Patch],
    files: Callable[[_Patch], Files],
    real_paths: set[str],
    originals: Path | None,
) -> Iterator[Member]:
    for patch in patches:
        for path, data in files(patch):
            if originals is not None and path in real_paths:
                target = originals / path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            yield v2_member(path, data)


def write_reben_v2(directory: Path, options: BuildOptions) -> ReleaseSample:
    if options.real:
        plan, real_paths = _real_plan()
    else:
        plan, real_paths = _synthetic_plan(options), set()
    # The archives come from a sorted file list: S2 and maps in patch-path order, S1 in S1 order.
    s2_order = sorted(plan, key=lambda p: s2_path(p.id, "B01"))
    s1_sorted = sorted(plan, key=lambda p: s1_path(p.s1_name, "VH"))
    originals = directory / "originals" if options.real else None
    if originals is not None:
        originals.mkdir(parents=True, exist_ok=True)

    def archive(
        role: Role, patches: Sequence[_Patch], files: Callable[[_Patch], Files]
    ) -> tuple[Path, ...]:
        name = archive_name("reben-v2", role, options.compression, options.names)
        return write_archive(
            directory / name,
            _members(patches, files, real_paths, originals),
            compression=options.compression,
            parts=options.parts,
        )

    s2 = archive("s2", s2_order, lambda p: p.s2())
    s1: tuple[Path, ...] = ()
    if options.s1:
        positions = order(len(s1_sorted), options.s1_order, options.seed, 0x51)
        s1 = archive("s1", [s1_sorted[i] for i in positions], lambda p: p.s1())
    maps: tuple[Path, ...] = ()
    if options.reference_maps:
        positions = order(len(s2_order), options.maps_order, options.seed, 0x3A9)
        maps = archive(
            "reference_maps", [s2_order[i] for i in positions], lambda p: p.reference_map()
        )
    if options.real:
        metadata = _write_real_metadata(directory, options, [p.id for p in plan])
    else:
        metadata = _copy_metadata(directory, options)
    return finish(
        directory,
        "reben-v2",
        s2=s2,
        s1=s1,
        reference_maps=maps,
        metadata=metadata,
        patches=tuple(p.id for p in s2_order),
        s1_of={p.id: p.s1_name for p in plan},
        originals=originals,
    )

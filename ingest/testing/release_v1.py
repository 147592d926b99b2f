"""Zenodo v1.0 samples: ``BigEarthNet-S2-v1.0.tar.gz`` and ``BigEarthNet-S1-v1.0.tar.gz``.

Layout as on Zenodo (record 12687186): top folder ``BigEarthNet-v1.0/`` (S1:
``BigEarthNet-S1-v1.0/``), directory entries present, one folder per patch with its band TIFFs and
``<patch>_labels_metadata.json``; a patch's members are contiguous, their order inside the patch
is not fixed (real: the wheel's order; synthetic: shuffled per patch).

- real: the six example patches of ``bigearthnet-common`` — every file's bytes real (TIFFs and
  JSON), S1 too; ``s1_of`` from each S1 JSON's ``corresponding_s2_patch``.
- synthetic: :func:`~ingest.testing.synthetic.synthetic_facts` patches, pixels from
  :func:`~ingest.testing.synthetic.synthetic_pixels`, JSON in the real format; S1 float32 dB
  patches named ``S1x_IW_GRDH_1SDV_<time>_<MGRS tile>_<h>_<v>``, in S1-name order by default.
"""

from __future__ import annotations

import datetime as dt
import json
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Final

import numpy as np

from ingest.nomenclature import BAND_SLOT, BANDS
from ingest.testing.archive_writer import Member, dir_member, file_member
from ingest.testing.geotiff import encode_band
from ingest.testing.release_data import example_s1_patches, mgrs_tile
from ingest.testing.release_parts import (
    BuildOptions,
    ReleaseSample,
    archive_name,
    finish,
    order,
    synthetic_s1_pixels,
    write_archive,
    write_originals,
)
from ingest.testing.release_tiffs import encode_s1_band
from ingest.testing.sample_stac import PATCH_METRES, PatchFacts
from ingest.testing.samples import example_files
from ingest.testing.synthetic import synthetic_facts, synthetic_pixels

__all__ = ["S1_TOP", "S2_TOP", "write_zenodo_v1"]

S2_TOP: Final = "BigEarthNet-v1.0"
S1_TOP: Final = "BigEarthNet-S1-v1.0"
_S2_EXAMPLE: Final = "BigEarthNet-S2-Example.tar.bz2"
#: The projection WKT of the real JSON files, for any northern UTM zone.
_WKT: Final = (
    'PROJCS["WGS 84 / UTM zone {zone}N",GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",'
    '6378137,298.257223563,AUTHORITY["EPSG","7030"]],AUTHORITY["EPSG","6326"]],PRIMEM["Greenwich",'
    '0,AUTHORITY["EPSG","8901"]],UNIT["degree",0.0174532925199433,AUTHORITY["EPSG","9122"]],'
    'AXIS["Latitude",NORTH],AXIS["Longitude",EAST],AUTHORITY["EPSG","4326"]],'
    'PROJECTION["Transverse_Mercator"],PARAMETER["latitude_of_origin",0],'
    'PARAMETER["central_meridian",{meridian}],PARAMETER["scale_factor",0.9996],'
    'PARAMETER["false_easting",500000],PARAMETER["false_northing",0],UNIT["metre",1,'
    'AUTHORITY["EPSG","9001"]],AXIS["Easting",EAST],AXIS["Northing",NORTH],'
    'AUTHORITY["EPSG","{epsg}"]]'
)


@dataclass(frozen=True)
class _Patch:
    """A patch folder on its way into an archive; its files are made only when written."""

    name: str
    files: Callable[[], list[tuple[str, bytes]]]
    """(file name in the patch folder, bytes), in archive order."""


def write_zenodo_v1(directory: Path, options: BuildOptions) -> ReleaseSample:
    if options.real:
        s2, s1, s1_of = _real_patches(options)
    else:
        s2, s1, s1_of = _synthetic_patches(options)
    s2_paths = write_archive(
        directory / archive_name("zenodo-v1", "s2", options.compression, options.names),
        _members(S2_TOP, s2),
        compression=options.compression,
        parts=options.parts,
    )
    s1_paths: tuple[Path, ...] = ()
    if options.s1:
        s1 = [s1[i] for i in order(len(s1), options.s1_order, options.seed, 0x51)]
        s1_paths = write_archive(
            directory / archive_name("zenodo-v1", "s1", options.compression, options.names),
            _members(S1_TOP, s1),
            compression=options.compression,
            parts=options.parts,
        )
    originals = None
    if options.real:
        everything = [(S2_TOP, p) for p in s2] + [(S1_TOP, p) for p in s1 if options.s1]
        originals = write_originals(
            directory,
            (
                (f"{top}/{patch.name}/{name}", data)
                for top, patch in everything
                for name, data in patch.files()
            ),
        )
    return finish(
        directory,
        "zenodo-v1",
        s2=s2_paths,
        s1=s1_paths,
        patches=tuple(p.name for p in s2),
        s1_of=s1_of,
        originals=originals,
    )


def _members(top: str, patches: Sequence[_Patch]) -> Iterator[Member]:
    yield dir_member(top)
    for patch in patches:
        yield dir_member(f"{top}/{patch.name}")
        for name, data in patch.files():
            yield file_member(f"{top}/{patch.name}/{name}", data)


def _named_files(patch: str, files: Iterable[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """(kind, bytes) of a real patch -> (file name in its folder, bytes), order kept."""
    return [(_file_name(patch, kind), data) for kind, data in files]


def _file_name(patch: str, kind: str) -> str:
    return f"{patch}_{kind}.{'json' if kind == 'labels_metadata' else 'tif'}"


# --- real -------------------------------------------------------------------------------------


def _real_patches(options: BuildOptions) -> tuple[list[_Patch], list[_Patch], dict[str, str]]:
    s2 = [
        _Patch(name, partial(_named_files, name, files))
        for name, files in example_files(_S2_EXAMPLE)
    ]
    s1 = []
    s1_of = {}
    for real in example_s1_patches():
        s1_of[real.s2_name] = real.name
        s1.append(_Patch(real.name, partial(_named_files, real.name, tuple(real.files.items()))))
    return s2, s1, s1_of


# --- synthetic --------------------------------------------------------------------------------


def _synthetic_patches(options: BuildOptions) -> tuple[list[_Patch], list[_Patch], dict[str, str]]:
    seed = options.seed
    facts = synthetic_facts(options.patches, seed)
    s2 = [_Patch(f.name, partial(_synthetic_s2_files, seed, i, f)) for i, f in enumerate(facts)]
    s1_names = [_s1_name(seed, f) for f in facts]
    s1 = [
        _Patch(s1_names[i], partial(_synthetic_s1_files, seed, i, facts[i], s1_names[i]))
        for i in sorted(range(len(facts)), key=s1_names.__getitem__)  # S1-name order
    ]
    return s2, s1, {f.name: s1 for f, s1 in zip(facts, s1_names, strict=True)}


def _hv(name: str) -> tuple[int, int]:
    *_, h, v = name.split("_")
    return int(h), int(v)


def _tile(facts: PatchFacts) -> str:
    h, v = _hv(facts.name)
    return mgrs_tile(facts.epsg, facts.ulx - PATCH_METRES * h, facts.uly + PATCH_METRES * v)


def _prefix_rng(seed: int, prefix: str) -> np.random.Generator:
    """Facts shared by the patches of one acquisition: drawn from the acquisition's name."""
    return np.random.default_rng([seed, zlib.crc32(prefix.encode())])


def _synthetic_s2_files(seed: int, index: int, facts: PatchFacts) -> list[tuple[str, bytes]]:
    pixels = synthetic_pixels(seed, index, BANDS, snow=facts.snow, cloud=facts.cloud)
    files = [
        (
            _file_name(facts.name, band),
            encode_band(
                pixels[band],
                epsg=facts.epsg,
                x_ul=facts.ulx,
                y_ul=facts.uly,
                gsd=BAND_SLOT[band][0].gsd,
            ),
        )
        for band in BANDS
    ]
    files.append((_file_name(facts.name, "labels_metadata"), _s2_json(seed, facts)))
    shuffle = np.random.default_rng([seed, index, 0xF11E]).permutation(len(files))
    return [files[int(i)] for i in shuffle]  # the order inside a patch folder is not fixed


def _coordinates(facts: PatchFacts, bottom: str) -> dict[str, int]:
    ulx, uly = round(facts.ulx), round(facts.uly)
    return {"ulx": ulx, "uly": uly, "lrx": ulx + PATCH_METRES, bottom: uly - PATCH_METRES}


def _projection(epsg: int) -> str:
    zone = epsg - 32600
    return _WKT.format(zone=zone, meridian=6 * zone - 183, epsg=epsg)


def _s2_json(seed: int, facts: PatchFacts) -> bytes:
    sat, _, name_time, *_ = facts.name.split("_")
    rng = _prefix_rng(seed, facts.name.rsplit("_", 2)[0])
    when = dt.datetime.strptime(facts.datetime, "%Y-%m-%dT%H:%M:%SZ")
    processed = when + dt.timedelta(seconds=int(rng.integers(60, 7200)))
    tile_source = (
        f"{sat}_MSIL1C_{name_time}_N0205_R{int(rng.integers(1, 144)):03d}_T{_tile(facts)}_"
        f"{processed:%Y%m%dT%H%M%S}.SAFE"
    )
    document: dict[str, Any] = {
        "labels": list(facts.labels),
        "coordinates": _coordinates(facts, "lry"),
        "projection": _projection(facts.epsg),
        "tile_source": tile_source,
        "acquisition_date": f"{when:%Y-%m-%d %H:%M:%S}",
    }
    return json.dumps(document).encode()


def _s1_scene(seed: int, facts: PatchFacts) -> tuple[str, dt.datetime, str]:
    """(satellite, start, scene_source) of the S1 scene paired with the patch's acquisition."""
    rng = _prefix_rng(seed, "S1" + facts.name.rsplit("_", 2)[0])
    day = dt.datetime.strptime(facts.datetime[:10], "%Y-%m-%d") + dt.timedelta(
        days=int(rng.integers(-1, 2))
    )
    # Sentinel-1 passes over Europe at dawn (ascending ~04:30–06:50) or dusk (~16:40–17:30).
    minutes = int(rng.integers(270, 410)) if rng.random() < 0.5 else int(rng.integers(1000, 1050))
    start = day + dt.timedelta(minutes=minutes, seconds=int(rng.integers(60)))
    sat = "AB"[int(rng.integers(2))]
    stop = start + dt.timedelta(seconds=25)
    scene = (
        f"S1{sat}_IW_GRDH_1SDV_{start:%Y%m%dT%H%M%S}_{stop:%Y%m%dT%H%M%S}_"
        f"{int(rng.integers(1, 30000)):06d}_{int(rng.integers(1 << 24)):06X}_"
        f"{int(rng.integers(1 << 16)):04X}"
    )
    return sat, start, scene


def _s1_name(seed: int, facts: PatchFacts) -> str:
    sat, start, _ = _s1_scene(seed, facts)
    h, v = _hv(facts.name)
    return f"S1{sat}_IW_GRDH_1SDV_{start:%Y%m%dT%H%M%S}_{_tile(facts)}_{h}_{v}"


def _synthetic_s1_files(
    seed: int, index: int, facts: PatchFacts, name: str
) -> list[tuple[str, bytes]]:
    pixels = synthetic_s1_pixels(seed, index)
    _, start, scene = _s1_scene(seed, facts)
    document: dict[str, Any] = {
        "labels": list(facts.labels),
        "coordinates": _coordinates(facts, "lly"),  # sic: the real S1 files say lly
        "projection": _projection(facts.epsg),
        "corresponding_s2_patch": facts.name,
        "scene_source": scene,
        "acquisition_time": f"{start:%Y-%m-%dT%H:%M:%S}",
    }
    files = [
        (
            f"{name}_{band}.tif",
            encode_s1_band(pixels[band], epsg=facts.epsg, x_ul=facts.ulx, y_ul=facts.uly),
        )
        for band in ("VV", "VH")
    ]
    files.append((f"{name}_labels_metadata.json", json.dumps(document).encode()))
    shuffle = np.random.default_rng([seed, index, 0x51F]).permutation(len(files))
    return [files[int(i)] for i in shuffle]

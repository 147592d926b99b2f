"""Synthetic BigEarthNet v1 patches: names, georeferencing, labels, flags and pixels.

Structurally faithful and deterministic for ``(patches, seed)``. Patches are grouped into
acquisitions ("tiles") the way the real ones are: one Sentinel-2 tile on one date, with an MGRS-like
origin in a European UTM zone, and patch ``<h>_<v>`` at ``(x0 + 1200 h, y0 − 1200 v)`` — the
relation the six real example patches obey. ≈ 12 % of the names carry the real 5-digit time bug
(the hour lost its leading zero; a third of those tiles also have a name time that disagrees with
the acquisition time, like the real ``T94161`` for 09:41:56). Label counts follow the real skew.

Pixels are drawn per patch from their own generator seeded with ``(seed, index)``, so the archive
writer can make them one patch at a time, in any order, in constant memory.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import numpy as np

from ingest.nomenclature import BAND_SLOT, CLASSES_43
from ingest.testing.sample_stac import PATCH_METRES, PatchFacts

__all__ = ["synthetic_facts", "synthetic_pixels"]

#: Grid positions per tile: h and v run over 0–90.
_GRID: Final = 91
#: Share of real v1 names with the 5-digit time (69,866 of 590,326).
_BUGGY_NAME_SHARE: Final = 0.118
#: Real shares: 61,707 snowy and 9,280 cloudy patches of 590,326 (the lists are disjoint).
_SNOW: Final = 0.105
_CLOUD: Final = 0.016
_FIRST_DAY: Final = dt.date(2017, 6, 1)
_DAYS: Final = (dt.date(2018, 5, 31) - _FIRST_DAY).days + 1
#: MGRS tile columns seen in the real data (x of a tile's upper-left corner).
_TILE_X0: Final = (300000, 399960, 499980, 600000)
#: Northings of tile upper-left corners per UTM zone, covering the ten BigEarthNet countries.
_ZONE_Y0: Final[Mapping[int, tuple[int, int]]] = {
    29: (4200000, 6200000),  # Portugal, Ireland
    30: (5800000, 6100000),  # Ireland's east coast
    31: (5600000, 5800000),  # Belgium, Luxembourg
    32: (5200000, 5600000),  # Switzerland, Luxembourg, Austria
    33: (5200000, 5500000),  # Austria
    34: (4700000, 7600000),  # Serbia, Kosovo, Lithuania, Finland
    35: (6100000, 7600000),  # Lithuania, Finland
    36: (6800000, 7400000),  # eastern Finland
}
#: Approximate number of real patches per class (BigEarthNet paper): forest, arable land and
#: pastures are common, port areas and burnt areas rare. Canonical class order.
_CLASS_COUNTS: Final = (
    10784, 69872, 12895, 3384, 509, 979, 4618, 959, 1174, 1786, 5353, 196695, 13589, 3793, 9567,
    4754, 12538, 103554, 7022, 107786, 147095, 30674, 150944, 211703, 217119, 12835, 5890, 11241,
    173506, 1536, 4885, 3277, 328, 6236, 23207, 1562, 424, 1003, 10572, 83811, 1498, 1086, 81612,
)  # fmt: skip
_CLASS_P: Final = np.asarray(_CLASS_COUNTS, dtype=float) / sum(_CLASS_COUNTS)
#: How many labels a patch has (1–5).
_LABEL_COUNT_P: Final = (0.18, 0.3, 0.27, 0.16, 0.09)

# Pixel model: per band a typical L2A reflectance (×10⁴) over vegetation and how strongly the
# band follows the vegetation field (red and blue drop, NIR rises), as in the real patches.
_BAND_MEAN: Final[Mapping[str, float]] = {
    "B01": 420, "B02": 480, "B03": 720, "B04": 620, "B05": 1150, "B06": 2300, "B07": 2750,
    "B08": 2900, "B8A": 3000, "B09": 3000, "B10": 18, "B11": 1700, "B12": 950,
}  # fmt: skip
_BAND_VEG: Final[Mapping[str, float]] = {
    "B01": -0.15, "B02": -0.3, "B03": -0.25, "B04": -0.45, "B05": -0.15, "B06": 0.25, "B07": 0.3,
    "B08": 0.35, "B8A": 0.35, "B09": 0.3, "B10": 0.0, "B11": -0.2, "B12": -0.35,
}  # fmt: skip
#: Relative strength of the smooth fields and of the pixel noise, tuned so that the gzip ratio of
#: a synthetic archive matches the real sample's.
_VEG_GAIN: Final = 0.6
_TEXTURE_GAIN: Final = 0.18
_NOISE: Final = 0.09


@dataclass(frozen=True)
class _Tile:
    """One acquisition: a tile seen on one date."""

    prefix: str  # "S2A_MSIL2A_20170613T101031"
    when: str  # acquisition time as STAC writes it
    epsg: int
    x0: int
    y0: int


def synthetic_facts(patches: int, seed: int = 0) -> list[PatchFacts]:
    """The facts of ``patches`` synthetic patches, in archive (filesystem-like, shuffled) order."""
    if patches < 1:
        raise ValueError(f"patches must be at least 1, got {patches}")
    rng = np.random.default_rng([seed, 0x5EED])
    n_tiles = min(patches, max(math.ceil(patches / 2000), min(36, 4 + patches // 60)))
    # Skewed tile sizes, capped at 3× the mean so that no tile runs out of its 91×91 positions.
    weights = np.minimum(rng.dirichlet(np.full(n_tiles, 2.0)), 3.0 / n_tiles)
    tile_of = rng.choice(n_tiles, size=patches, p=weights / weights.sum())
    sizes = np.bincount(tile_of, minlength=n_tiles)
    assert sizes.max() <= _GRID * _GRID, "a tile cannot hold more than 91×91 patches"
    tiles = _tiles(rng, _buggy_tiles(rng, sizes))

    facts: list[PatchFacts] = []
    for t, tile in enumerate(tiles):
        cells = rng.choice(_GRID * _GRID, size=int(sizes[t]), replace=False)
        for cell in cells:
            v, h = divmod(int(cell), _GRID)
            snow, cloud = _flags(rng)
            facts.append(
                PatchFacts(
                    name=f"{tile.prefix}_{h}_{v}",
                    epsg=tile.epsg,
                    ulx=float(tile.x0 + PATCH_METRES * h),
                    uly=float(tile.y0 - PATCH_METRES * v),
                    datetime=tile.when,
                    labels=_labels(rng),
                    snow=snow,
                    cloud=cloud,
                )
            )
    # Real archives list item folders in filesystem order, which interleaves tiles.
    return [facts[i] for i in rng.permutation(len(facts))]


def _buggy_tiles(rng: np.random.Generator, sizes: np.ndarray) -> list[bool]:
    """Pick whole tiles for the 5-digit time bug until ≈ 12 % of the patches carry it."""
    target = _BUGGY_NAME_SHARE * int(sizes.sum())
    buggy = [False] * len(sizes)
    total = 0
    for t in rng.permutation(len(sizes)):
        if total >= 0.85 * target:
            break
        if sizes[t] and total + sizes[t] <= 1.15 * target:
            buggy[t] = True
            total += int(sizes[t])
    if not any(buggy) and len(sizes) > 1:
        # Small samples keep the quirk too: the smallest non-empty tile gets it.
        nonempty = [t for t in range(len(sizes)) if sizes[t]]
        buggy[min(nonempty, key=lambda t: int(sizes[t]))] = True
    return buggy


def _tiles(rng: np.random.Generator, buggy: list[bool]) -> list[_Tile]:
    tiles: list[_Tile] = []
    seen: set[str] = set()
    while len(tiles) < len(buggy):
        is_buggy = buggy[len(tiles)]
        day = _FIRST_DAY + dt.timedelta(days=int(rng.integers(_DAYS)))
        # Sentinel-2 passes over Europe between ≈ 09:30 and 11:55 UTC.
        hour = 9 if is_buggy else int(rng.integers(9, 12))
        minute, second = int(rng.integers(60)), int(rng.integers(60))
        name_time = f"{hour:02d}{minute:02d}{second:02d}"
        if is_buggy:
            # About a third of the buggy tiles also name a time that is not the acquisition time.
            name_second = second + 5 if len(tiles) % 3 == 0 else second
            name_time = f"{hour}{minute:02d}{name_second:02d}"
        prefix = f"S2{'AB'[int(rng.integers(2))]}_MSIL2A_{day:%Y%m%d}T{name_time}"
        zone = int(rng.integers(29, 37))
        low, high = _ZONE_Y0[zone]
        y0 = int(rng.integers(low // 100000, high // 100000 + 1)) * 100000 + int(
            rng.choice([0, 20, 40])
        )
        tile = _Tile(
            prefix=prefix,
            when=f"{day:%Y-%m-%d}T{hour:02d}:{minute:02d}:{second:02d}Z",
            epsg=32600 + zone,
            x0=int(rng.choice(_TILE_X0)),
            y0=y0,
        )
        if prefix not in seen:  # distinct acquisitions keep every patch name unique
            seen.add(prefix)
            tiles.append(tile)
    return tiles


def _flags(rng: np.random.Generator) -> tuple[bool, bool]:
    """(snow, cloud), never both: the real lists are disjoint."""
    u = float(rng.random())
    return u < _SNOW, _SNOW <= u < _SNOW + _CLOUD


def _labels(rng: np.random.Generator) -> tuple[str, ...]:
    count = int(rng.choice(len(_LABEL_COUNT_P), p=_LABEL_COUNT_P)) + 1
    picked = rng.choice(len(CLASSES_43), size=count, replace=False, p=_CLASS_P)
    return tuple(CLASSES_43[i] for i in sorted(int(i) for i in picked))  # canonical order


@functools.lru_cache(maxsize=32)
def _upsampler(size: int, nodes: int) -> np.ndarray:
    """(size × nodes) bilinear interpolation weights from a coarse grid to ``size`` pixels."""
    x = np.linspace(0.0, nodes - 1.0, size)
    weights = np.stack([np.interp(x, np.arange(nodes), np.eye(nodes)[j]) for j in range(nodes)], 1)
    weights.flags.writeable = False  # cached and shared between calls
    return weights


def _smooth(coarse: np.ndarray, size: int) -> np.ndarray:
    up = _upsampler(size, coarse.shape[0])
    smooth: np.ndarray = up @ coarse @ up.T  # separable bilinear upsampling, no per-pixel Python
    return smooth


def synthetic_pixels(
    seed: int, index: int, bands: tuple[str, ...], *, snow: bool, cloud: bool
) -> dict[str, np.ndarray]:
    """The uint16 pixels of each band of synthetic patch ``index``, at the band's own resolution.

    A smooth vegetation field and a finer texture, shared by all bands (so bands correlate as in
    real images), scaled per band, plus per-pixel noise; snow brightens all but the SWIR bands, a
    cloud adds a bright blob. Values mostly 0–5000, higher under snow and clouds.
    """
    rng = np.random.default_rng([seed, index])
    brightness = float(rng.lognormal(0.0, 0.3))
    vegetation = rng.standard_normal((int(rng.integers(4, 9)),) * 2)
    texture = rng.standard_normal((int(rng.integers(12, 25)),) * 2)
    snow_cover = rng.standard_normal((5, 5)) + 1.0
    cloud_at = rng.uniform(0.2, 0.8, 2)
    out: dict[str, np.ndarray] = {}
    # One array per resolution, bands stacked on axis 0: a few numpy calls per group, not per band.
    for size, group in _by_size(bands).items():
        mean = brightness * np.array([_BAND_MEAN[b] for b in group])[:, None, None]
        veg_gain = _VEG_GAIN * np.array([_BAND_VEG[b] for b in group])[:, None, None]
        value = mean * (
            1.0 + veg_gain * _smooth(vegetation, size) + _TEXTURE_GAIN * _smooth(texture, size)
        )
        value += rng.standard_normal((len(group), size, size)) * (_NOISE * mean)
        if snow:
            bright = np.array([b not in ("B10", "B11", "B12") for b in group])[:, None, None]
            value += bright * (4000.0 * np.clip(_smooth(snow_cover, size), 0.0, 1.5))
        if cloud:
            yy, xx = np.mgrid[0:size, 0:size] / size
            value += 7000.0 * np.exp(-((yy - cloud_at[0]) ** 2 + (xx - cloud_at[1]) ** 2) / 0.05)
        pixels = np.clip(np.rint(value), 1, 65535).astype(np.uint16)
        out.update(zip(group, pixels, strict=True))
    return out


def _by_size(bands: tuple[str, ...]) -> dict[int, list[str]]:
    """Bands grouped by patch width in pixels (B10, not in BigEarthNet, is a 60 m band)."""
    groups: dict[int, list[str]] = {}
    for band in bands:
        groups.setdefault(20 if band == "B10" else BAND_SLOT[band][0].size, []).append(band)
    return groups

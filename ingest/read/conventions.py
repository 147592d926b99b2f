"""Model-ready samples: what ConfigILM and torchgeo each feed a model, made from a store's arrays.

A :class:`Convention` is a value (which bands in which order, at which size, resampled how,
normalised with which statistics, labels in which order and dtype); :func:`convention` builds
one from the user's words and checks them against the store; :class:`ModelReady` applies it to
batches of the store's native arrays, resampling each band straight into its channel of the
batch's ``image`` (:mod:`ingest.read.resample`).

``configilm`` (ConfigILM 0.7.1, ``BENv2DataSet`` + its DataModule's normalization):

- bands: a ``STANDARD_BANDS`` name or number (``"S2"``, ``"ALL"``, ``"RGB"``, ``10`` …) or a
  list of band names, in that order;
- resampling: ``F.interpolate`` per band, nearest / bilinear / bicubic, ``align_corners=True``;
- normalize: the published mean and std of ``"{size}_{interpolation}"``;
- label: 19 classes in lexicographic order, float32 (ConfigILM returns float64: same values).

``torchgeo`` (torchgeo 0.8.1, ``BigEarthNetV2``; ``BigEarthNet`` on v1 stores):

- bands: ``"s1"``, ``"s2"`` (key ``image``) or ``"all"`` (``image_s1`` and ``image_s2``); S2 in
  the order B01 … B08, B8A, B09, B11, B12, S1 as **VH, VV** (its files sorted by name);
- resampling: GDAL's bilinear (half-pixel) to 120 x 120 through rasterio, rounded to integers
  (``out_dtype="int32"``), then float32; S1 dB values rounded to integers too;
- normalize: its DataModule's min/max (mean = min, std = max - min), applied by position as
  torchgeo does (its table is ordered VV, VH, its images VH, VV);
- label: 19 classes in canonical order (or 43 on v1 stores with ``num_classes=43``), int64;
- mask (v2 stores with reference maps): the map as 19-class ordinals by its CLC table,
  (1, 120, 120) int64; codes outside the table and the nodata value 0 are kept as they are, so
  0 means both "no data" and "Urban fabric", as in torchgeo.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import numpy as np

from ..errors import UsageError
from ..nomenclature import BAND_SLOT, CLASSES_19, CLASSES_43
from .resample import INTERPOLATIONS, Axis, gdal_axis, resize_into, torch_axis

__all__ = [
    "CONFIGILM_LABELS",
    "CONVENTIONS",
    "TORCHGEO_CLC",
    "Convention",
    "ModelReady",
    "Statistics",
    "configilm_bands",
    "convention",
]

CONVENTIONS = ("configilm", "torchgeo")
#: ConfigILM's 19-class order: the names sorted (``NEW_LABELS``).
CONFIGILM_LABELS: tuple[str, ...] = tuple(sorted(CLASSES_19))
#: torchgeo ``BigEarthNetV2.clc_codes``: CLC 2018 code -> 19-class ordinal (canonical order).
TORCHGEO_CLC: dict[int, int] = {
    111: 0, 112: 0, 121: 1, 211: 2, 212: 2, 213: 2, 221: 3, 222: 3, 223: 3, 231: 4, 241: 3,
    242: 5, 243: 6, 244: 7, 311: 8, 312: 9, 313: 10, 321: 11, 322: 12, 323: 12, 324: 13,
    331: 14, 333: 11, 411: 15, 412: 15, 421: 16, 422: 16, 511: 17, 512: 17, 521: 18, 522: 18,
    523: 18,
}  # fmt: skip
#: torchgeo's S2 order (``sort_sentinel2_bands``) and S1 order (file names sorted).
_TORCHGEO_S2 = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
_TORCHGEO_S1 = ("VH", "VV")
#: torchgeo ``BigEarthNetDataModule`` mins and maxs, (VV, VH, B01 … B12) by position.
_TORCHGEO_MIN: tuple[float, ...] = (-48.0, -42.0, *([1.0] * 12))
_TORCHGEO_MAX: tuple[float, ...] = (
    6.0, 16.0, 9859.0, 12872.0, 13163.0, 14445.0, 12477.0, 12563.0, 12289.0, 15596.0, 12183.0,
    9458.0, 5897.0, 5544.0,
)  # fmt: skip
_S1_ROWS = {"VV": 0, "VH": 1}


@cache
def _configilm() -> dict[str, Any]:
    """ConfigILM 0.7.1's band combinations and published statistics (copied, with provenance)."""
    text = resources.files(__package__).joinpath("data/configilm_0.7.1.json").read_text()
    data: dict[str, Any] = json.loads(text)
    return data


def configilm_bands(bands: str | int | Sequence[str]) -> tuple[str, ...]:
    """ConfigILM's ``resolve_band_combi``: a name or number of ``STANDARD_BANDS``, one band
    name, or a list of band names."""
    standard = _configilm()["standard_bands"]
    if isinstance(bands, int | str) and not isinstance(bands, bool) and str(bands) in standard:
        return tuple(standard[str(bands)])
    if not isinstance(bands, str | list | tuple):
        raise UsageError(f"unknown band combination {bands!r} (one of {', '.join(standard)}, "
                         "or a list of band names)")  # fmt: skip
    names = [bands] if isinstance(bands, str) else list(bands)
    known = [*_S1_ROWS, *BAND_SLOT]
    for name in names:
        if name not in known:
            combos = ", ".join(standard)
            raise UsageError(f"unknown band or band combination {name!r} (bands: "
                             f"{', '.join(known)}; combinations: {combos})")  # fmt: skip
    if not names:
        raise UsageError("no bands given")
    return tuple(names)


@dataclass(frozen=True)
class Statistics:
    """Per-band mean and standard deviation, by band name."""

    mean: Mapping[str, float]
    std: Mapping[str, float]
    source: str
    """Where they come from (for messages)."""

    def of(self, bands: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        missing = [b for b in bands if b not in self.mean or b not in self.std]
        if missing:
            raise UsageError(f"{self.source} has no statistics for band {missing[0]}")
        bad = [b for b in bands if not (np.isfinite(self.mean[b]) and self.std[b] > 0)]
        if bad:
            band = bad[0]
            raise UsageError(
                f"{self.source}: band {band} has mean {self.mean[band]} and std "
                f"{self.std[band]} (a finite mean and a positive std are needed)"
            )
        return (np.array([self.mean[b] for b in bands], np.float32),
                np.array([self.std[b] for b in bands], np.float32))  # fmt: skip


@dataclass(frozen=True)
class Convention:
    """What a model-ready sample is (see the module docstring)."""

    name: str
    images: tuple[tuple[str, tuple[str, ...]], ...]
    """Output key -> band names in channel order (``(("image", ("B01", …)),)``)."""
    size: int
    interpolation: str
    """``nearest``, ``bilinear``, ``bicubic`` (torch's), or ``gdal`` (torchgeo)."""
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    """Per channel over all images in order, or None (no normalization)."""
    label: str
    """``labels19`` or ``labels`` (the store array the label comes from)."""
    label_order: tuple[int, ...]
    """Column of the store array for each label position."""
    label_dtype: str
    mask: bool

    @property
    def bands(self) -> tuple[str, ...]:
        return tuple(b for _, names in self.images for b in names)

    @property
    def classes(self) -> tuple[str, ...]:
        names = CLASSES_19 if self.label == "labels19" else CLASSES_43
        return tuple(names[i] for i in self.label_order)


def convention(
    name: str,
    arrays: Mapping[str, tuple[str, ...] | None],
    *,
    bands: str | int | Sequence[str] | None = None,
    interpolation: str | None = None,
    size: int = 120,
    normalize: bool | Statistics = False,
    num_classes: int = 19,
) -> Convention:
    """The convention ``name`` for a store whose per-pixel arrays are ``arrays`` (name -> band
    names), checked: bands the store lacks, unknown names and unsupported options are a
    one-line :class:`UsageError`."""
    if name not in CONVENTIONS:
        raise UsageError(f"unknown convention {name!r} (one of {', '.join(CONVENTIONS)})")
    if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= 4096:
        raise UsageError(f"size must be a number of pixels from 1 to 4096, not {size!r}")
    if num_classes not in (19, 43):
        raise UsageError(f"num_classes is 19 or 43, not {num_classes!r}")
    if num_classes == 43 and "labels" not in arrays:
        raise UsageError("this store has the 19 classes only (43 are in v1 stores)")
    label = "labels" if num_classes == 43 else "labels19"
    if name == "configilm":
        if num_classes != 19:
            raise UsageError("ConfigILM's labels are the 19 classes (num_classes=19)")
        mode = interpolation or "nearest"
        if mode not in INTERPOLATIONS:
            raise UsageError(f"unknown interpolation {mode!r} (one of {', '.join(INTERPOLATIONS)})")
        names = configilm_bands("S2" if bands is None else bands)
        images: tuple[tuple[str, tuple[str, ...]], ...] = (("image", names),)
        order = tuple(CLASSES_19.index(c) for c in CONFIGILM_LABELS)
        mean, std = _configilm_normalization(names, size, mode, normalize)
        result = Convention(name, images, size, mode, mean, std, label, order, "float32", False)
    else:
        if interpolation not in (None, "bilinear"):
            raise UsageError(
                "torchgeo resamples with GDAL's bilinear only (interpolation='bilinear')"
            )
        if size != 120:
            raise UsageError("torchgeo's samples are 120 x 120 (size=120)")
        key = "s2" if bands is None else bands
        images = {
            "s1": (("image", _TORCHGEO_S1),),
            "s2": (("image", _TORCHGEO_S2),),
            "all": (("image_s1", _TORCHGEO_S1), ("image_s2", _TORCHGEO_S2)),
        }.get(key if isinstance(key, str) else "", ())
        if not images:
            raise UsageError(f"torchgeo's bands are 's1', 's2' or 'all', not {bands!r}")
        count = sum(len(b) for _, b in images)
        mean, std = _torchgeo_normalization(key, count, normalize)  # type: ignore[arg-type]
        order = tuple(range(num_classes))
        mask = "reference_map" in arrays
        result = Convention(name, images, 120, "gdal", mean, std, label, order, "int64", mask)
    _check_store(result, arrays)
    return result


def _configilm_normalization(
    names: tuple[str, ...], size: int, mode: str, normalize: bool | Statistics
) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
    if normalize is False:
        return None, None
    if isinstance(normalize, Statistics):
        means, stds = normalize.of(names)
        return tuple(means.tolist()), tuple(stds.tolist())
    key = f"{size}_{mode}"
    published = _configilm()
    if key not in published["means"]:
        sizes = sorted({k.split("_")[0] for k in published["means"] if k[0].isdigit()})
        raise UsageError(
            f"ConfigILM publishes statistics for sizes {', '.join(sizes)} only, not {size}; "
            f"use normalize='store' after `ingest stats --size {size}`"
        )
    mean = tuple(float(published["means"][key][b]) for b in names)
    std = tuple(float(published["stds"][key][b]) for b in names)
    return mean, std


def _torchgeo_normalization(
    key: str, count: int, normalize: bool | Statistics
) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
    if normalize is False:
        return None, None
    if isinstance(normalize, Statistics):
        names = {"s1": _TORCHGEO_S1, "s2": _TORCHGEO_S2}.get(key, _TORCHGEO_S1 + _TORCHGEO_S2)
        means, stds = normalize.of(names)
        return tuple(means.tolist()), tuple(stds.tolist())
    lo = {"s1": slice(0, 2), "s2": slice(2, 14)}.get(key, slice(0, 14))
    mins, maxs = _TORCHGEO_MIN[lo], _TORCHGEO_MAX[lo]
    assert len(mins) == count
    return tuple(mins), tuple(b - a for a, b in zip(mins, maxs, strict=True))


def _check_store(conv: Convention, arrays: Mapping[str, tuple[str, ...] | None]) -> None:
    have = {b for names in arrays.values() for b in (names or ())}
    missing = [b for b in conv.bands if b not in have]
    if missing:
        what = "Sentinel-1" if missing[0] in _S1_ROWS else "Sentinel-2"
        raise UsageError(f"the store has no {what} band {missing[0]} (it has "
                         f"{', '.join(sorted(have))})")  # fmt: skip
    if conv.label not in arrays:
        raise UsageError(f"the store has no {conv.label}")


# --- applying a convention to batches of native arrays -------------------------------------------


@dataclass(frozen=True)
class _Group:
    key: str
    array: str
    rows: np.ndarray
    channels: np.ndarray
    mean: np.ndarray
    std: np.ndarray


@dataclass(frozen=True)
class _Band:
    key: str  # output key
    channel: int
    array: str  # store array
    row: int


class ModelReady:
    """Turns batches of native arrays (``bands_10m`` (B, 4, 120, 120) …, ``labels19``) into the
    convention's ``image`` (B, C, size, size) float32, ``label`` and ``mask``; each band resampled
    (and normalised) straight into its channel. Pure numpy and numba: torch is never imported."""

    def __init__(self, conv: Convention, arrays: Mapping[str, tuple[str, ...] | None]) -> None:
        self.convention = conv
        self.bands: list[_Band] = []
        for key, names in conv.images:
            for channel, name in enumerate(names):
                array = next(a for a, bs in arrays.items() if bs and name in bs)
                self.bands.append(_Band(key, channel, array, arrays[array].index(name)))  # type: ignore[union-attr]
        self.arrays = sorted({b.array for b in self.bands})
        """The band arrays it reads (and only the rows of ``bands`` from them)."""
        self._axes: dict[int, Axis] = {}
        mean = np.zeros(len(self.bands), np.float32) if conv.mean is None else conv.mean
        std = np.ones(len(self.bands), np.float32) if conv.std is None else conv.std
        groups: dict[tuple[str, str], list[int]] = {}
        for k, b in enumerate(self.bands):
            groups.setdefault((b.key, b.array), []).append(k)
        self._groups = [_Group(key, array, np.array([self.bands[k].row for k in ks], np.int64),
                               np.array([self.bands[k].channel for k in ks], np.int64),
                               np.array([mean[k] for k in ks], np.float32),
                               np.array([std[k] for k in ks], np.float32))
                        for (key, array), ks in groups.items()]  # fmt: skip
        """The bands by output key and store array: one kernel call each per run of samples."""
        lut = np.arange(1 << 16, dtype=np.int64)
        for code, ordinal in TORCHGEO_CLC.items():
            lut[code] = ordinal
        self._lut = lut
        self._label_order = np.asarray(conv.label_order, np.intp)

    def _axis(self, size_in: int) -> Axis:
        axis = self._axes.get(size_in)
        if axis is None:
            size, mode = self.convention.size, self.convention.interpolation
            axis = gdal_axis(size_in, size) if mode == "gdal" else torch_axis(size_in, size, mode)
            self._axes[size_in] = axis
        return axis

    def empty(self, count: int, *, label: bool = True) -> dict[str, np.ndarray]:
        """Uninitialised model-ready arrays for ``count`` samples (without ``label`` when the
        label is made apart, from the small tables)."""
        conv, size = self.convention, self.convention.size
        out = {
            key: np.empty((count, len(names), size, size), np.float32) for key, names in conv.images
        }
        if label:
            out["label"] = np.empty((count, len(conv.label_order)), conv.label_dtype)
        if conv.mask:
            out["mask"] = np.empty((count, 1, 120, 120), np.int64)
        return out

    def apply(self, native: Mapping[str, np.ndarray], out: dict[str, np.ndarray]) -> None:
        """Fill ``out`` (from :meth:`empty`) from one batch of native arrays, row for row."""
        self.apply_pixels(native, out, 0)
        out["label"][...] = self.label(native)

    def apply_pixels(
        self, native: Mapping[str, np.ndarray], out: dict[str, np.ndarray], at: int
    ) -> None:
        """Resample the bands (and map the reference map) of the native rows into rows
        ``at, at + 1, …`` of ``out``."""
        n = len(next(iter(native.values())))
        for group in self._groups:
            src = native[group.array]
            axis = self._axis(src.shape[-1])
            resize_into(src, out[group.key][at : at + n], axis, axis, group.mean, group.std,
                        rows=group.rows, channels=group.channels)  # fmt: skip
        if self.convention.mask:
            np.take(self._lut, native["reference_map"], out=out["mask"][at : at + n, 0])

    def label(self, tables: Mapping[str, np.ndarray]) -> np.ndarray:
        """The label vectors of a batch from its store label array (``labels19`` or ``labels``)."""
        values = tables[self.convention.label][:, self._label_order]
        return values.astype(self.convention.label_dtype)

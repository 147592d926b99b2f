"""Building blocks of the release samples (:mod:`ingest.testing.releases`): file names, tar members,
archive files (compressed, split into parts, checksummed) and the synthetic S1 and reference-map
pixels.
"""

from __future__ import annotations

import hashlib
import itertools
import string
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

import numpy as np

from ingest.nomenclature import CLASSES_19
from ingest.testing.archive_writer import ArchiveWriter, Compression, Member
from ingest.testing.synthetic import _smooth

__all__ = [
    "V2_MTIME",
    "BuildOptions",
    "Layout",
    "Names",
    "Order",
    "ReleaseSample",
    "Role",
    "archive_name",
    "finish",
    "metadata_names",
    "order",
    "split_parts",
    "synthetic_reference_map",
    "synthetic_s1_pixels",
    "v2_member",
    "write_archive",
    "write_md5sums",
    "write_originals",
]

Layout = Literal["zenodo-v1", "reben-v2"]
Role = Literal["s2", "s1", "reference_maps"]
Names = Literal["official", "renamed"]
Order = Literal["archive", "reversed", "shuffled"]

#: Member mtime of the reBEN v2 archives: 2024-01-01T00:00:00Z.
V2_MTIME: Final = 1704067200

_STEMS: Final[dict[tuple[Layout, Role], str]] = {
    ("zenodo-v1", "s2"): "BigEarthNet-S2-v1.0",
    ("zenodo-v1", "s1"): "BigEarthNet-S1-v1.0",
    ("reben-v2", "s2"): "BigEarthNet-S2",
    ("reben-v2", "s1"): "BigEarthNet-S1",
    ("reben-v2", "reference_maps"): "Reference_Maps",
}
_SUFFIXES: Final[dict[Compression, str]] = {"gzip": ".tar.gz", "zstd": ".tar.zst", "none": ".tar"}
_OFFICIAL_METADATA: Final = (
    "metadata.parquet",
    "metadata_for_patches_with_snow_cloud_or_shadow.parquet",
)
_RENAMED_METADATA: Final = ("sample-metadata.parquet", "sample-metadata-snow-cloud-shadow.parquet")
_COPY_CHUNK: Final = 1 << 20


def archive_name(layout: Layout, role: Role, compression: Compression, names: Names) -> str:
    """``BigEarthNet-S2-v1.0.tar.gz``, ``BigEarthNet-S2.tar.zst``, … (or ``sample-s2.tar.zst``)."""
    stem = _STEMS[layout, role] if names == "official" else f"sample-{role.replace('_', '-')}"
    return stem + _SUFFIXES[compression]


def metadata_names(names: Names) -> tuple[str, str]:
    """The two metadata files: without, then with seasonal snow, cloud or shadow."""
    return _OFFICIAL_METADATA if names == "official" else _RENAMED_METADATA


def v2_member(name: str, data: bytes) -> Member:
    """A regular file as GNU tar wrote the reBEN archives (uid/gid 0, numeric, mtime 2024-01-01)."""
    info = tarfile.TarInfo(name)
    info.type = tarfile.REGTYPE
    info.size = len(data)
    info.mode = 0o644
    info.mtime = V2_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info, data


def order(count: int, how: Order, seed: int, salt: int) -> list[int]:
    """Positions in ``range(count)`` in the order asked (``"shuffled"`` never equals identity)."""
    if how == "archive":
        return list(range(count))
    if how == "reversed":
        return list(range(count))[::-1]
    if how != "shuffled":
        raise ValueError(f"order must be archive, reversed or shuffled, got {how!r}")
    positions = [int(i) for i in np.random.default_rng([seed, salt]).permutation(count)]
    if count > 1 and positions == sorted(positions):
        positions = positions[1:] + positions[:1]
    return positions


def write_archive(
    path: Path, members: Iterable[Member], *, compression: Compression, parts: int = 1
) -> tuple[Path, ...]:
    """Stream ``members`` into ``path`` (written as ``.partial``, renamed when complete), then
    split it into ``parts``; returns the file(s) written."""
    partial = path.with_name(path.name + ".partial")
    try:
        with ArchiveWriter(partial, compression=compression) as out:
            for info, data in members:
                out.add(info, data)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(path)
    return split_parts(path, parts)


def _part_suffixes() -> Iterable[str]:
    """``aa``, ``ab``, … ``zz``: the suffixes of GNU ``split`` (and of torchgeo's mirror)."""
    for first, second in itertools.product(string.ascii_lowercase, repeat=2):
        yield first + second


def split_parts(path: Path, parts: int) -> tuple[Path, ...]:
    """Cut ``path`` into ``parts`` files ``<name>aa``, ``<name>ab``, … of equal size (the last
    one shorter) and delete it; ``parts=1`` leaves it whole."""
    if not 1 <= parts <= 26 * 26:
        raise ValueError(f"parts must be between 1 and 676, got {parts}")
    if parts == 1:
        return (path,)
    size = path.stat().st_size
    if size < parts:
        raise ValueError(f"{path.name} has {size} bytes, too few for {parts} parts")
    step = -(-size // parts)
    written: list[Path] = []
    with path.open("rb") as whole:
        for suffix, start in zip(_part_suffixes(), range(0, size, step), strict=False):
            part = path.with_name(path.name + suffix)
            with part.open("wb") as out:
                left = min(step, size - start)
                while left:
                    chunk = whole.read(min(_COPY_CHUNK, left))
                    out.write(chunk)
                    left -= len(chunk)
            written.append(part)
    path.unlink()
    return tuple(written)


def write_md5sums(directory: Path, files: Sequence[Path]) -> Path:
    """``DIR/MD5SUMS`` in ``md5sum`` format (``<hex>  <name>``), names relative to ``directory``."""
    lines = []
    for file in files:
        with file.open("rb") as raw:
            digest = hashlib.file_digest(raw, "md5").hexdigest()
        lines.append(f"{digest}  {file.relative_to(directory).as_posix()}\n")
    target = directory / "MD5SUMS"
    target.write_text("".join(lines), encoding="ascii")
    return target


# --- synthetic pixels ---------------------------------------------------------------------


def synthetic_s1_pixels(seed: int, index: int) -> dict[str, np.ndarray]:
    """VV and VH of synthetic S1 patch ``index``: float32 backscatter in dB, 120 × 120.

    A smooth land-cover field (VV ≈ −11 dB, VH ≈ −18 dB over fields and forest) under
    multiplicative speckle (gamma, 4.4 looks, as GRDH), clipped to the real ranges: VV −25…7,
    VH −37…−6. Noisy float32 compresses about as badly as the real patches do.
    """
    rng = np.random.default_rng([seed, index, 0x51])
    field = _smooth(rng.standard_normal((int(rng.integers(4, 9)),) * 2), 120)
    looks = 4.4
    out: dict[str, np.ndarray] = {}
    for band, mean, low, high in (("VV", -11.0, -25.0, 7.0), ("VH", -18.0, -37.0, -6.0)):
        linear = 10.0 ** ((mean + 2.5 * field) / 10.0)
        linear = linear * rng.gamma(looks, 1.0 / looks, (120, 120))
        db = 10.0 * np.log10(np.maximum(linear, 1e-6))
        out[band] = np.clip(db, low, high).astype(np.float32)
    return out


#: One CLC 2018 Level-3 code per 19-class name (canonical order), for maps that agree with the
#: patch's labels like the real one does (its labels: arable, pastures, broad-leaved and mixed
#: forest; its codes: 211, 231, 311, 313).
_CLC_OF_19: Final = (112, 121, 211, 222, 231, 242, 243, 244, 311, 312, 313, 321, 322, 324, 331,
                     411, 421, 512, 523)  # fmt: skip
#: Codes without a 19-class label (roads, artificial areas ...), sometimes present in real maps.
_CLC_UNLABELLED: Final = (122, 133, 142)


def synthetic_reference_map(seed: int, index: int, labels: Sequence[str]) -> np.ndarray:
    """A uint16 120 × 120 map of CLC codes: one region per label (codes from the labels), region
    borders following a smooth field; sometimes a small patch of an unlabelled code."""
    rng = np.random.default_rng([seed, index, 0xC1C])
    codes = [_CLC_OF_19[CLASSES_19.index(label)] for label in labels] or [211]
    centres = rng.uniform(0, 120, (len(codes), 2))
    yy, xx = np.mgrid[0:120, 0:120].astype(float)
    wobble = 25.0 * _smooth(rng.standard_normal((6, 6)), 120)
    distance = np.stack(
        [
            np.hypot(yy - cy, xx - cx) + wobble * (k % 2 * 2 - 1)
            for k, (cy, cx) in enumerate(centres)
        ]
    )
    out: np.ndarray = np.asarray(codes, dtype=np.uint16)[np.argmin(distance, axis=0)]
    if rng.random() < 0.2:
        y, x = (int(v) for v in rng.integers(0, 110, 2))
        out[y : y + 10, x : x + 10] = int(rng.choice(_CLC_UNLABELLED))
    return out


# --- the sample as a whole ------------------------------------------------------------------


@dataclass(frozen=True)
class ReleaseSample:
    """What :func:`ingest.testing.releases.write_release_sample` wrote."""

    layout: Layout
    s2: tuple[Path, ...]
    """The S2 archive, as its parts in order (one path unless split)."""
    s1: tuple[Path, ...]
    """The S1 archive (parts), empty unless built."""
    reference_maps: tuple[Path, ...]
    """v2 only: the reference-map archive (parts), empty unless built."""
    metadata: tuple[Path, ...]
    """v2: the two metadata parquets (without, then with snow/cloud/shadow); v1: empty."""
    patches: tuple[str, ...]
    """S2 patch ids (v1 names, v2 ids) in S2-archive order."""
    s1_of: Mapping[str, str] = field(repr=False)
    """S2 patch id -> its S1 patch name (the official pairing), whether or not S1 was built."""
    originals: Path | None
    """Real samples: ``DIR/originals/`` holding every archived file whose content is real, at its
    in-archive path (for rasterio comparisons); None for synthetic samples."""
    md5sums: Path
    """``DIR/MD5SUMS`` (``md5sum`` format) of every archive part and metadata file written."""


@dataclass(frozen=True)
class BuildOptions:
    """The options of :func:`~ingest.testing.releases.write_release_sample`, validated."""

    real: bool
    patches: int
    seed: int
    compression: Compression
    parts: int
    s1: bool
    reference_maps: bool
    s1_order: Order
    maps_order: Order
    names: Names


def write_originals(directory: Path, files: Iterable[tuple[str, bytes]]) -> Path:
    """Write ``(in-archive path, bytes)`` under ``DIR/originals/``; returns that folder."""
    root = directory / "originals"
    for name, data in files:
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    root.mkdir(parents=True, exist_ok=True)
    return root


def finish(
    directory: Path,
    layout: Layout,
    *,
    s2: tuple[Path, ...],
    s1: tuple[Path, ...] = (),
    reference_maps: tuple[Path, ...] = (),
    metadata: tuple[Path, ...] = (),
    patches: tuple[str, ...],
    s1_of: Mapping[str, str],
    originals: Path | None,
) -> ReleaseSample:
    """Checksum everything written and describe the sample."""
    md5sums = write_md5sums(directory, [*s2, *s1, *reference_maps, *metadata])
    return ReleaseSample(
        layout, s2, s1, reference_maps, metadata, patches, s1_of, originals, md5sums
    )

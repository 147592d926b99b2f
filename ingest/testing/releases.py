"""Samples of the BigEarthNet distributions users hold today, for tests, demos and benchmarks.

:func:`write_release_sample` writes, into one directory, the files of

- ``zenodo-v1`` — Zenodo's v1.0 archives ``BigEarthNet-S2-v1.0.tar.gz`` and optionally
  ``BigEarthNet-S1-v1.0.tar.gz`` (:mod:`ingest.testing.release_v1` says exactly what is in them);
- ``reben-v2`` — reBEN v2.0: ``BigEarthNet-S2.tar.zst``, optionally ``BigEarthNet-S1.tar.zst`` and
  ``Reference_Maps.tar.zst``, and the two metadata parquets (:mod:`ingest.testing.release_v2`);

either from real data (``real=True``: the real files packaged with the project and the
``bigearthnet-common`` wheel) or ``patches=N`` synthetic patches, built in constant memory.
Other wrappings users hold: ``compression`` ``"gzip"``/``"zstd"``/``"none"``, ``parts=K``
(split like torchgeo's mirror: ``<name>aa``, ``<name>ab``, …), ``names="renamed"`` (file names
that say nothing, ``sample-s2.tar.zst`` …). ``DIR/MD5SUMS`` lists every file written, as
``md5sum`` does. Nothing here prints.
"""

from __future__ import annotations

from pathlib import Path
from typing import get_args

from ingest.testing.archive_writer import Compression
from ingest.testing.release_parts import BuildOptions, Layout, Names, Order, ReleaseSample
from ingest.testing.release_v1 import write_zenodo_v1
from ingest.testing.release_v2 import write_reben_v2

__all__ = ["Compression", "Layout", "Names", "Order", "ReleaseSample", "write_release_sample"]

_DEFAULT_COMPRESSION: dict[Layout, Compression] = {"zenodo-v1": "gzip", "reben-v2": "zstd"}


def write_release_sample(
    directory: Path,
    *,
    layout: Layout,
    real: bool = False,
    patches: int = 0,
    seed: int = 0,
    compression: Compression | None = None,
    parts: int = 1,
    s1: bool = False,
    reference_maps: bool = False,
    s1_order: Order = "archive",
    maps_order: Order = "archive",
    names: Names = "official",
) -> ReleaseSample:
    """Write a sample of one distribution into ``directory`` (created if needed).

    Exactly one of ``real=True`` and ``patches=N`` (N ≥ 1). ``compression`` defaults to the
    layout's own (v1 gzip, v2 zstd). ``s1_order``/``maps_order`` put the S1 and reference-map
    archives' patches in their real order (``"archive"``: S1 by S1 name, maps as S2), reversed
    or shuffled (seeded). Deterministic for its arguments. Raises ValueError on bad options.
    """
    if layout not in get_args(Layout):
        raise ValueError(f"layout must be zenodo-v1 or reben-v2, got {layout!r}")
    if real == (patches > 0) or patches < 0:
        raise ValueError("give either real=True or patches=N (N >= 1), not both")
    if reference_maps and layout != "reben-v2":
        raise ValueError("reference maps exist only in reben-v2")
    for label, value, allowed in (
        ("s1_order", s1_order, Order),
        ("maps_order", maps_order, Order),
        ("names", names, Names),
    ):
        if value not in get_args(allowed):
            raise ValueError(
                f"{label} must be one of {', '.join(get_args(allowed))}, got {value!r}"
            )
    chosen = _DEFAULT_COMPRESSION[layout] if compression is None else compression
    if chosen not in get_args(Compression):
        raise ValueError(f"compression must be gzip, zstd or none, got {chosen!r}")
    if not 1 <= parts <= 676:
        raise ValueError(f"parts must be between 1 and 676, got {parts}")
    options = BuildOptions(
        real=real,
        patches=patches,
        seed=seed,
        compression=chosen,
        parts=parts,
        s1=s1,
        reference_maps=reference_maps,
        s1_order=s1_order,
        maps_order=maps_order,
        names=names,
    )
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    if layout == "zenodo-v1":
        return write_zenodo_v1(target, options)
    return write_reben_v2(target, options)

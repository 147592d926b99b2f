"""The official BigEarthNet files on Zenodo, by release: names, records, sizes and md5 sums.

``ingest run --dataset bigearthnet-v2`` streams these files from Zenodo (or a mirror with the same
URL scheme: ``--zenodo-url`` / ``INGEST_ZENODO_URL``) and checks each md5 as its bytes stream by;
``ingest download --dataset ...`` fetches them. The sums are the published ones
(``shared/reference/bigearthnet.md``); ``--md5sums FILE`` (``md5sum`` format) replaces the sum of
each file it names, for a mirror that repackaged them or the test kit's samples.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

from ..errors import UsageError

ZENODO_URL: Final = "https://zenodo.org"
ZENODO_URL_ENV: Final = "INGEST_ZENODO_URL"
DATASETS: Final = ("bigearthnet-v1", "bigearthnet-v2")
#: The layout of each release's official files.
DATASET_LAYOUTS: Final = {"bigearthnet-v1": "zenodo-v1", "bigearthnet-v2": "reben-v2"}
#: What ``--with`` may add to Sentinel-2, per release.
MODALITIES: Final = {"bigearthnet-v1": ("s1",), "bigearthnet-v2": ("s1", "reference-maps")}


@dataclass(frozen=True)
class OfficialFile:
    """One published file."""

    name: str
    record: str
    md5: str
    role: str
    """Its role in the store's ``sources``: ``s2``, ``s1``, ``reference_maps`` or ``metadata``."""
    size: int | None = None

    def url(self, base: str) -> str:
        return f"{base.rstrip('/')}/records/{self.record}/files/{self.name}"


_V1: Final = "12687186"
_V2: Final = "10891137"
FILES: Final[Mapping[str, tuple[OfficialFile, ...]]] = {
    "bigearthnet-v1": (
        OfficialFile("BigEarthNet-S2-v1.0.tar.gz", _V1, "5a64e9ce38deb036a435a7b59494924c", "s2"),
        OfficialFile("BigEarthNet-S1-v1.0.tar.gz", _V1, "94ced73440dea8c7b9645ee738c5a172", "s1"),
    ),
    "bigearthnet-v2": (
        OfficialFile("BigEarthNet-S2.tar.zst", _V2, "2245ed2d1a93f6ce637d839bc856396e", "s2",
                     63_251_710_377),
        OfficialFile("BigEarthNet-S1.tar.zst", _V2, "a55eaa2cdf6a917e296bd6601ec1e348", "s1",
                     54_439_153_171),
        OfficialFile("Reference_Maps.tar.zst", _V2, "95d85a222fa983faddcac51a19f28917",
                     "reference_maps", 282_391_301),
        OfficialFile("metadata.parquet", _V2, "55687065e77b6d0b0f1ff604a6e7b49c", "metadata",
                     3_616_349),
        OfficialFile("metadata_for_patches_with_snow_cloud_or_shadow.parquet", _V2,
                     "fe31856f4986d446c9468b59d6387c91", "metadata", 710_162),
    ),
}  # fmt: skip

_MD5_LINE: Final = re.compile(r"^(?P<md5>[0-9a-fA-F]{32}) [ *](?P<name>.+)$")


def zenodo_url(option: str | None = None) -> str:
    """The base URL: the option, else ``INGEST_ZENODO_URL``, else Zenodo."""
    url = option or os.environ.get(ZENODO_URL_ENV) or ZENODO_URL
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"--zenodo-url {url!r}: expected an http(s) URL")
    return url


def files_of(
    dataset: str, modalities: Iterable[str] = (), md5sums: Mapping[str, str] | None = None
) -> tuple[OfficialFile, ...]:
    """The files a run of ``dataset`` with ``modalities`` reads (S2 and metadata always)."""
    if dataset not in FILES:
        raise UsageError(f"unknown dataset {dataset!r} (expected {' or '.join(DATASETS)})")
    wanted = set(modalities)
    unknown = sorted(wanted - set(MODALITIES[dataset]))
    if unknown:
        raise UsageError(
            f"--with {unknown[0]}: {dataset} has {', '.join(MODALITIES[dataset])} besides S2"
        )
    roles = {"s2", "metadata", *(m.replace("-", "_") for m in wanted)}
    chosen = tuple(f for f in FILES[dataset] if f.role in roles)
    overrides = md5sums or {}
    return tuple(replace(f, md5=overrides[f.name]) if f.name in overrides else f for f in chosen)


def read_md5sums(path: str | Path) -> dict[str, str]:
    """``md5sum`` output (``<md5>  <name>`` per line) as name → md5; paths reduced to names."""
    sums: dict[str, str] = {}
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--md5sums {path}: cannot read it ({exc})") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        match = _MD5_LINE.match(line.strip())
        if match is None:
            raise UsageError(f"--md5sums {path}: line {number} is not '<md5>  <file name>'")
        sums[Path(match["name"]).name] = match["md5"].lower()
    return sums

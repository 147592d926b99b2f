"""Sample MLHub archives of BigEarthNet v1: the six real example patches, or N synthetic ones.

Radiant MLHub is gone, so tests, benchmarks and the demo build the two collection archives
(``bigearthnet_v1_labels.tar.gz`` and ``bigearthnet_v1_source.tar.gz``) in the layout MLHub served:
top folder ``{collection}/``, ``collection.json`` linking every item, then one folder per item
holding its files sorted by name (see ``mlhub-api.md``, "Layout inside a collection archive").

- :func:`write_real_sample` packs the six real patches shipped in the ``bigearthnet-common`` wheel,
  band files copied byte for byte, flags from the official snow and cloud lists.
- :func:`write_synthetic_sample` packs N synthetic patches (:mod:`ingest.testing.synthetic`) that
  the ingest cannot tell apart structurally from real ones, in constant memory.
- :func:`rewrite_archive` streams an archive through an edit function, for bad-input tests.

Nothing here prints: the ``ingest sample`` command calls these functions and reports itself.
"""

from __future__ import annotations

import bz2
import functools
import importlib.resources
import io
import json
import re
import tarfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
import tifffile

from ingest.nomenclature import BAND_SLOT, BANDS, LABELS_COLLECTION, SOURCE_COLLECTION
from ingest.testing import sample_stac as stac
from ingest.testing.archive_writer import ArchiveWriter, rewrite_archive
from ingest.testing.geotiff import Layout, encode_band
from ingest.testing.sample_stac import FlagStyle, PatchFacts
from ingest.testing.synthetic import synthetic_facts, synthetic_pixels

__all__ = [
    "FlagStyle",
    "LabelOrder",
    "PatchFacts",
    "RealPatch",
    "SampleArchives",
    "SampleOptions",
    "example_files",
    "real_patches",
    "rewrite_archive",
    "synthetic_facts",
    "write_real_sample",
    "write_synthetic_sample",
]

LabelOrder = Literal["same", "reversed", "shuffled"]

_PACKAGE: Final = "bigearthnet_common"
_EXAMPLE: Final = "BigEarthNet-S2-Example.tar.bz2"
_SNOW_LIST: Final = "patches_with_seasonal_snow.csv.bz2"
_CLOUD_LIST: Final = "patches_with_cloud_and_shadow.csv.bz2"
#: ``.../<patch>/<patch>_<B01|…|labels_metadata>.<tif|json>`` inside the example tarball.
_EXAMPLE_MEMBER: Final = re.compile(
    r"^[^/]+/(?P<patch>[^/]+)/(?P=patch)_(?P<kind>\w+)\.(tif|json)$"
)
#: The EPSG code closing a WKT1 projection: ``..., AUTHORITY["EPSG","32629"]]``.
_WKT_EPSG: Final = re.compile(r'AUTHORITY\["EPSG","(\d+)"\]\]\s*$')
#: B10 is not in BigEarthNet (L2A drops it); with ``extra_b10`` it is a 60 m, 20 × 20 band.
_B10: Final = "B10"


@dataclass(frozen=True)
class SampleArchives:
    """The two archives of a sample, as MLHub named them."""

    labels: Path
    """``DIR/bigearthnet_v1_labels.tar.gz``."""
    source: Path
    """``DIR/bigearthnet_v1_source.tar.gz``."""
    patches: tuple[str, ...]
    """Patch names in the source archive's item order."""


@dataclass(frozen=True)
class SampleOptions:
    """Variations on the archives, for tests of everything a reader must cope with."""

    flags: FlagStyle = "string"
    """``cloud_and_shadow`` / ``seasonal_snow`` as ``"true"``/``"false"`` or JSON booleans."""
    label_order: LabelOrder = "same"
    """Order of the label items relative to the source items (``"shuffled"`` uses the seed)."""
    band_layout: Layout = "stripped"
    """``"stripped"`` is the real files' layout; ``"cog"`` tiled + deflate; ``"bigendian"``."""
    extra_b10: bool = False
    """Also put a ``B10.tif`` (60 m, 20 × 20) and a ``B10`` asset in each source item."""
    compresslevel: int = 6
    """gzip level 0–9 (mapped onto isal's four levels, see ``archive_writer.isal_level``)."""


@dataclass(frozen=True)
class RealPatch:
    """One of the six real example patches of the ``bigearthnet-common`` wheel."""

    name: str
    bands: dict[str, bytes] = field(repr=False)
    """Band (``B01`` … ``B12``, ``B8A``) -> the original GeoTIFF file bytes."""
    metadata: dict[str, Any] = field(repr=False)
    """The patch's ``_labels_metadata.json``."""
    snow: bool
    """Listed in the official seasonal-snow list."""
    cloud: bool
    """Listed in the official cloud-and-shadow list."""


@dataclass(frozen=True)
class _Patch:
    """A patch on its way into the archives; pixels are made only when the item is written."""

    facts: PatchFacts
    band_files: Callable[[], dict[str, bytes]]


# --- the real example patches ---------------------------------------------------------------


def _example_files() -> tuple[tuple[str, tuple[tuple[str, bytes], ...]], ...]:
    return example_files(_EXAMPLE)


@functools.lru_cache(maxsize=2)
def example_files(example: str) -> tuple[tuple[str, tuple[tuple[str, bytes], ...]], ...]:
    """(patch, ((kind, bytes), …)) of one of the wheel's example tarballs, both in its order.

    ``example`` is ``BigEarthNet-S2-Example.tar.bz2`` (kinds ``B01`` … ``labels_metadata``) or
    ``BigEarthNet-S1-Example.tar.bz2`` (``VV``, ``VH``, ``labels_metadata``); read without
    extracting, the JSON as its original bytes.
    """
    found: dict[str, dict[str, bytes]] = {}
    resource = importlib.resources.files(_PACKAGE) / example
    with resource.open("rb") as raw, tarfile.open(fileobj=raw, mode="r|bz2") as tar:
        for info in tar:
            match = _EXAMPLE_MEMBER.match(info.name)
            if info.isfile() and match:
                extracted = tar.extractfile(info)
                assert extracted is not None  # a regular file always has content
                found.setdefault(match["patch"], {})[match["kind"]] = extracted.read()
    return tuple((patch, tuple(files.items())) for patch, files in found.items())


def _official_list(resource: str) -> frozenset[str]:
    """Patch names of one of the wheel's lists (one per line, no header, CRLF)."""
    text = bz2.decompress((importlib.resources.files(_PACKAGE) / resource).read_bytes())
    return frozenset(text.decode("ascii").split())


@functools.lru_cache(maxsize=1)
def _real_flags() -> dict[str, tuple[bool, bool]]:
    """(snow, cloud) of each example patch; the 70,000-name lists are not kept in memory."""
    names = [name for name, _ in _example_files()]
    snowy = _official_list(_SNOW_LIST).intersection(names)
    cloudy = _official_list(_CLOUD_LIST).intersection(names)
    return {name: (name in snowy, name in cloudy) for name in names}


def real_patches() -> list[RealPatch]:
    """The six real example patches, in the example tarball's order (fresh objects each call)."""
    flags = _real_flags()
    patches = []
    for name, files in _example_files():
        by_kind = dict(files)
        patches.append(
            RealPatch(
                name=name,
                bands={band: by_kind[band] for band in BANDS},
                metadata=json.loads(by_kind["labels_metadata"]),
                snow=flags[name][0],
                cloud=flags[name][1],
            )
        )
    return patches


def _real_facts(patch: RealPatch) -> PatchFacts:
    meta = patch.metadata
    epsg = _WKT_EPSG.search(meta["projection"])
    if epsg is None:
        raise ValueError(f"{patch.name}: no EPSG code at the end of the projection WKT")
    # "2017-06-13 10:10:31" -> "2017-06-13T10:10:31Z"; the metadata wins over the name's time.
    when = meta["acquisition_date"].replace(" ", "T") + "Z"
    return PatchFacts(
        name=patch.name,
        epsg=int(epsg[1]),
        ulx=float(meta["coordinates"]["ulx"]),
        uly=float(meta["coordinates"]["uly"]),
        datetime=when,
        labels=tuple(meta["labels"]),
        snow=patch.snow,
        cloud=patch.cloud,
    )


def _gsd(band: str) -> float:
    return 60.0 if band == _B10 else BAND_SLOT[band][0].gsd


def _real_band_files(
    patch: RealPatch, facts: PatchFacts, options: SampleOptions
) -> dict[str, bytes]:
    files = dict(patch.bands)
    if options.band_layout != "stripped":
        files = {
            band: _encode(tifffile.imread(io.BytesIO(data)), facts, band, options.band_layout)
            for band, data in files.items()
        }
    if options.extra_b10:
        # A stand-in cirrus band: B09 scaled down to the low values B10 has over land.
        b09 = tifffile.imread(io.BytesIO(patch.bands["B09"]))
        files[_B10] = _encode((b09 // 64).astype(np.uint16), facts, _B10, options.band_layout)
    return files


def _encode(pixels: np.ndarray, facts: PatchFacts, band: str, layout: Layout) -> bytes:
    return encode_band(
        pixels, epsg=facts.epsg, x_ul=facts.ulx, y_ul=facts.uly, gsd=_gsd(band), layout=layout
    )


def write_real_sample(directory: Path, options: SampleOptions = SampleOptions()) -> SampleArchives:
    """Write both archives of the six real example patches into ``directory``."""
    patches = []
    for real in real_patches():
        facts = _real_facts(real)
        patches.append(_Patch(facts, functools.partial(_real_band_files, real, facts, options)))
    return _write_archives(Path(directory), patches, options, seed=0)


# --- synthetic patches ------------------------------------------------------------------------


def write_synthetic_sample(
    directory: Path, patches: int, seed: int = 0, options: SampleOptions = SampleOptions()
) -> SampleArchives:
    """Write both archives of ``patches`` synthetic patches into ``directory``.

    Deterministic for ``(patches, seed, options)``. Pixels are made one patch at a time as the
    item is written; only the patches' facts (≈ 1.5 KB each) are held for the whole run.
    """
    bands = _bands(options)
    planned = [
        _Patch(facts, functools.partial(_synthetic_band_files, seed, index, facts, bands, options))
        for index, facts in enumerate(synthetic_facts(patches, seed))
    ]
    return _write_archives(Path(directory), planned, options, seed=seed)


def _synthetic_band_files(
    seed: int, index: int, facts: PatchFacts, bands: tuple[str, ...], options: SampleOptions
) -> dict[str, bytes]:
    pixels = synthetic_pixels(seed, index, bands, snow=facts.snow, cloud=facts.cloud)
    return {band: _encode(pixels[band], facts, band, options.band_layout) for band in bands}


# --- the two archives ---------------------------------------------------------------------------


def _bands(options: SampleOptions) -> tuple[str, ...]:
    return tuple(sorted((*BANDS, _B10))) if options.extra_b10 else BANDS


def _label_order(count: int, order: LabelOrder, seed: int) -> list[int]:
    """Positions of the source items in label-archive order."""
    if order == "same":
        return list(range(count))
    if order == "reversed":
        return list(range(count))[::-1]
    positions = [int(i) for i in np.random.default_rng([seed, 0x1ABE1]).permutation(count)]
    if count > 1 and positions == sorted(positions):
        positions = positions[1:] + positions[:1]  # "shuffled" must really differ from "same"
    return positions


def _write_archives(
    directory: Path, patches: Sequence[_Patch], options: SampleOptions, *, seed: int
) -> SampleArchives:
    directory.mkdir(parents=True, exist_ok=True)
    extent = stac.extent_of(p.facts for p in patches)
    source = directory / f"{SOURCE_COLLECTION}.tar.gz"
    labels = directory / f"{LABELS_COLLECTION}.tar.gz"
    _write_collection(source, SOURCE_COLLECTION, patches, _source_files(options), extent, options)
    in_label_order = [patches[i] for i in _label_order(len(patches), options.label_order, seed)]
    _write_collection(
        labels, LABELS_COLLECTION, in_label_order, _label_files(options), extent, options
    )
    return SampleArchives(
        labels=labels, source=source, patches=tuple(p.facts.name for p in patches)
    )


ItemFiles = Callable[[_Patch], dict[str, bytes]]


def _source_files(options: SampleOptions) -> ItemFiles:
    bands = _bands(options)

    def files(patch: _Patch) -> dict[str, bytes]:
        made = {f"{band}.tif": data for band, data in patch.band_files().items()}
        made["stac.json"] = stac.dumps(stac.source_item(patch.facts, bands))
        return made

    return files


def _label_files(options: SampleOptions) -> ItemFiles:
    def files(patch: _Patch) -> dict[str, bytes]:
        return {
            "labels.geojson": stac.dumps(stac.labels_geojson(patch.facts, options.flags)),
            "stac.json": stac.dumps(stac.label_item(patch.facts, options.flags)),
        }

    return files


def _item_id(collection_id: str, patch: str) -> str:
    if collection_id == SOURCE_COLLECTION:
        return stac.source_item_id(patch)
    return stac.label_item_id(patch)


def _write_collection(
    path: Path,
    collection_id: str,
    patches: Sequence[_Patch],
    item_files: ItemFiles,
    extent: stac.Extent,
    options: SampleOptions,
) -> None:
    """Stream one archive: top folder, ``collection.json``, then each item folder, files sorted.

    Written under a temporary name and renamed at the end, so a failed build leaves no archive
    that looks complete (and no temporary file).
    """
    item_ids = [_item_id(collection_id, p.facts.name) for p in patches]
    partial = path.with_name(path.name + ".partial")
    try:
        with ArchiveWriter(partial, compresslevel=options.compresslevel) as out:
            out.add_dir(collection_id)
            document = stac.collection(collection_id, item_ids, extent)
            out.add_file(f"{collection_id}/collection.json", stac.dumps(document))
            items = zip(item_ids, _item_members(patches, item_files), strict=True)
            for item_id, members in items:
                out.add_dir(f"{collection_id}/{item_id}")
                for name in sorted(members):
                    out.add_file(f"{collection_id}/{item_id}/{name}", members[name])
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(path)


def _item_members(patches: Sequence[_Patch], item_files: ItemFiles) -> Iterator[dict[str, bytes]]:
    # A generator: only one item's files are alive at a time.
    for patch in patches:
        yield item_files(patch)

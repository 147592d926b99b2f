"""Partner archives: Sentinel-1 and the reference maps, each patch paired with its S2 patch.

- v1 S1 (``BigEarthNet-S1-v1.0.tar.gz``): ``BigEarthNet-S1-v1.0/<s1>/<s1>_VV.tif, _VH.tif,
  _labels_metadata.json``; the pair is the JSON's ``corresponding_s2_patch``, and the official
  S1–S2 table of ``bigearthnet-common`` must agree with it.
- v2 S1 (``BigEarthNet-S1.tar.zst``): ``BigEarthNet-S1/<first 5 fields>/<s1>/<s1>_VH.tif, _VV.tif``
  without JSON; the pair is the metadata row whose ``s1_name`` is the patch's name.
- v2 reference maps (``Reference_Maps.tar.zst``): ``Reference_Maps/<tile>/<patch_id>/
  <patch_id>_reference_map.tif``, named after their S2 patch; a map must lie on its patch's 10 m
  grid.

Pairing always comes from the official sources, never from rewriting names. A :class:`Partner`
pickles (its pairing and decoding are module-level functions or picklable objects): its archive is
streamed by a process of its own (:mod:`ingest.layouts.partner_stream`).
"""

from __future__ import annotations

from array import array as packed
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import numpy as np
import pyarrow as pa

from ..archive.members import ArchiveItem, parse_json
from ..decode.partners import Georef, decode_reference_map, decode_s1
from ..errors import InputDataError
from ..sources.inputs import InputSpec
from .rules import LABELS_FILE, PatchFolderRule
from .tables import official_s1

S1_V1_TOP: Final = "BigEarthNet-S1-v1.0"
S1_V2_TOP: Final = "BigEarthNet-S1"
MAPS_TOP: Final = "Reference_Maps"


@dataclass(frozen=True)
class Partner:
    """One partner modality of a run: where it comes from and how a patch finds its S2 patch."""

    role: str
    """``s1`` or ``reference_maps`` (the store's ``sources`` role)."""
    array: str
    """``bands_s1`` or ``reference_map``."""
    label: str
    """For messages: ``Sentinel-1 patch`` or ``reference map``."""
    spec: InputSpec
    rule: PatchFolderRule
    pair: Callable[[ArchiveItem], str | None]
    """The item's S2 patch id, None when no S2 patch is paired with it; InputDataError when the
    item's own pairing is wrong."""
    decode: Callable[[ArchiveItem, np.ndarray], Georef]
    shape: tuple[int, ...]
    dtype: str
    same_grid: bool
    """The partner must have its S2 patch's georeferencing (reference maps)."""


def _pair_v1(item: ArchiveItem) -> str | None:
    """A v1 S1 patch's S2 patch: its JSON's ``corresponding_s2_patch``, checked against the
    official S1-S2 table."""
    data = item.files.get(LABELS_FILE)
    member = item.member(LABELS_FILE)
    if data is None:
        raise InputDataError(item.folder, f"S1 patch folder has no {item.prefix}{LABELS_FILE}")
    s2 = parse_json(data, member).get("corresponding_s2_patch")
    if not isinstance(s2, str) or not s2:
        raise InputDataError(member, "no corresponding_s2_patch")
    (official,) = official_s1([s2])
    if official and official != item.item_id:
        raise InputDataError(
            member,
            f"pairs {item.item_id} with {s2}, but the official S1-S2 table pairs {s2} with "
            f"{official}",
        )
    return s2


def s1_v1(spec: InputSpec) -> Partner:
    """Zenodo v1.0 Sentinel-1: paired by the JSON's ``corresponding_s2_patch``."""
    return Partner("s1", "bands_s1", "Sentinel-1 patch", spec, PatchFolderRule(S1_V1_TOP),
                   _pair_v1, decode_s1, (2, 120, 120), "float32", same_grid=False)  # fmt: skip


class _PairByS1Name:
    """reBEN's pairing: the metadata row whose ``s1_name`` is the item's name gives its S2 id.
    Picklable (a partner stream runs in a process of its own): the lookup table is built where
    it is first used."""

    def __init__(self, s1_names: pa.ChunkedArray, patch_ids: pa.ChunkedArray) -> None:
        self.s1_names = s1_names
        self.patch_ids = patch_ids
        self._table: tuple[pa.Array, packed[int], packed[int]] | None = None

    def __getstate__(self) -> dict[str, object]:
        return {"s1_names": self.s1_names, "patch_ids": self.patch_ids, "_table": None}

    def _lookup(self) -> tuple[pa.Array, packed[int], packed[int]]:
        # The names' hashes, sorted, in a packed array searched with bisect: ~2 µs a name, 4.4
        # MB. (A dict of the 549,488 names would hold ~100 MB; numpy's searchsorted measured
        # ~190 µs a call in the reader thread, which lets the GIL go to the decompression thread
        # and waits.) str hashes differ between processes: built in the process that pairs.
        if self._table is None:
            chunks = self.s1_names.chunks
            names = pa.concat_arrays(chunks) if chunks else pa.array([], pa.string())
            hashes = np.fromiter((hash(n) for n in names.to_pylist()), dtype=np.int64,
                                 count=len(names))  # fmt: skip
            order = np.argsort(hashes, kind="stable")
            self._table = (names, packed("q", hashes[order].tobytes()),
                           packed("q", order.astype(np.int64).tobytes()))  # fmt: skip
        return self._table

    def __call__(self, item: ArchiveItem) -> str | None:
        names, sorted_hashes, rows = self._lookup()
        wanted = hash(item.item_id)
        at = bisect_left(sorted_hashes, wanted)
        while at < len(sorted_hashes) and sorted_hashes[at] == wanted:
            row = rows[at]
            if names[row].as_py() == item.item_id:
                return str(self.patch_ids[row].as_py())
            at += 1
        return None


def s1_v2(spec: InputSpec, s1_names: pa.ChunkedArray, patch_ids: pa.ChunkedArray) -> Partner:
    """reBEN Sentinel-1: paired through the metadata's ``s1_name`` column."""
    return Partner("s1", "bands_s1", "Sentinel-1 patch", spec, PatchFolderRule(S1_V2_TOP, 1),
                   _PairByS1Name(s1_names, patch_ids), decode_s1, (2, 120, 120), "float32",
                   same_grid=False)  # fmt: skip


def _own_id(item: ArchiveItem) -> str | None:
    return item.item_id


def reference_maps(spec: InputSpec) -> Partner:
    """reBEN reference maps: named after their S2 patch."""
    return Partner("reference_maps", "reference_map", "reference map", spec,
                   PatchFolderRule(MAPS_TOP, 1), _own_id,
                   decode_reference_map, (120, 120), "uint16", same_grid=True)  # fmt: skip

"""The ``reben-v2`` layout: BigEarthNet v2.0 (reBEN), ``BigEarthNet-S2.tar.zst`` plus the official
metadata parquet files.

``BigEarthNet-S2/<tile>/<patch_id>/<patch_id>_B01.tif …`` (GNU tar, sorted, no directory entries).
The metadata (:mod:`ingest.layouts.metadata`) is read first into the label index: 19-class labels,
the two flags, split, country, ``s2v1_name`` (the store's ``patch_id_v1``) and ``s1_name``. The
acquisition time is the one in the patch id. There are no 43-class labels in v2.
"""

from __future__ import annotations

import io
import re
from contextlib import AbstractContextManager
from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..archive.members import ArchiveItem
from ..errors import InputDataError
from ..nomenclature import CLASSES_19
from ..sources.inputs import InputSpec, InputStream, open_input
from .base import Inputs, Sink
from .feeds import Feed, open_archive_feed
from .labels import LabelIndex
from .metadata import Metadata, read_metadata
from .partners import Partner, reference_maps, s1_v2
from .rules import PatchFolderRule

TOP: Final = "BigEarthNet-S2"
#: ``S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_75_43``: the acquisition time is its third field.
_PATCH_TIME: Final = re.compile(r"^S2[AB]_MSIL2A_(?P<time>\d{8}T\d{6})_")
#: Largest metadata file read into memory when given as a URL (the official ones: 3.6 MB).
_METADATA_BYTES: Final = 256 << 20


def _read_limited(stream: InputStream, name: str, limit: int, sink: Sink) -> bytes:
    """The whole of ``stream``, at most ``limit`` bytes counted over every read (a read over
    HTTP returns what has arrived, so no single read says how large the file is)."""
    pieces: list[bytes] = []
    size = 0
    while chunk := stream.read(min(1 << 20, limit + 1 - size)):  # a short read is not the end
        size += len(chunk)
        if size > limit:
            raise InputDataError(name, f"metadata larger than {limit:,} bytes")
        pieces.append(chunk)
    stream.drain()  # to b"": the md5, if any, is checked there
    sink.add_sources(stream.records())
    return b"".join(pieces)


def patch_times(patch_ids: pa.ChunkedArray) -> np.ndarray:
    """Seconds since the epoch of the acquisition time in each v2 patch id (its third field).

    Vectorised with Arrow: ``datetime.strptime`` per id cost 7.5 s for the 549,488 rows.
    """
    found = pc.extract_regex(patch_ids, _PATCH_TIME.pattern)
    if found.null_count:
        bad = patch_ids.filter(pc.is_null(found))[0].as_py()
        raise InputDataError(bad, "not a BigEarthNet v2 patch id (no acquisition time)")
    try:
        parsed = pc.strptime(pc.struct_field(found, "time"), format="%Y%m%dT%H%M%S", unit="s")
    except pa.ArrowInvalid as exc:
        raise InputDataError("metadata", f"a patch id has an invalid time ({exc})") from None
    return np.asarray(parsed.cast(pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64)


#: The two official metadata files and the patches each describes in the full release.
MAIN_METADATA: Final = ("metadata.parquet", 480_038)
FLAGGED_METADATA: Final = ("metadata_for_patches_with_snow_cloud_or_shadow.parquet", 69_450)


def missing_file_hint(metadata: Metadata) -> str | None:
    """What is missing when the metadata given looks like one of the two official files alone:
    no row with snow, cloud or shadow (the second file missing), or only such rows (the first)."""
    if not len(metadata):
        return None
    flagged = metadata.cloud_and_shadow | metadata.seasonal_snow
    if flagged.any() and not flagged.all():
        return None
    name, count = FLAGGED_METADATA if not flagged.any() else MAIN_METADATA
    which = "no patch with" if not flagged.any() else "only patches with"
    return (
        f"the metadata given has {which} snow, cloud or shadow: is {name} missing? The "
        f"patches it describes ({count:,} in the full release) are left out as source without "
        "labels"
    )


class RebenV2:
    name = "reben-v2"
    dataset = "bigearthnet-v2"

    def __init__(self, inputs: Inputs) -> None:
        self.inputs = inputs
        self.metadata: Metadata | None = None
        self.unlabelled_hint: str | None = None
        """Set when one of the two metadata files seems missing: the patches it describes come
        out as source without labels (the run warns with their count at the end)."""

    def _metadata_sources(self, sink: Sink) -> list[io.BytesIO]:
        """Each metadata file's bytes (a few MB), streamed like any input: counted, hashed,
        md5-checked when official, from a path or a URL."""
        return [io.BytesIO(self._fetch(spec, sink)) for spec in self.inputs.metadata]

    def _fetch(self, spec: InputSpec, sink: Sink) -> bytes:
        i = self.inputs
        with open_input(spec, policy=i.policy, warn=i.warn, endpoint=i.endpoint) as stream:
            return _read_limited(stream, spec.name, _METADATA_BYTES, sink)

    def read_labels(self, sink: Sink) -> LabelIndex:
        names = [s.name for s in self.inputs.metadata]
        metadata = read_metadata(self._metadata_sources(sink), names=names)
        self.metadata = metadata
        self.unlabelled_hint = missing_file_hint(metadata)
        if self.unlabelled_hint is not None:
            self.inputs.warn(f"--metadata: {self.unlabelled_hint}")
        index = LabelIndex(CLASSES_19, self.inputs.selection)
        patches = metadata.id_list
        times = patch_times(metadata.patch_ids)
        index.extend(
            patches,
            metadata.masks,
            metadata.cloud_and_shadow,
            metadata.seasonal_snow,
            times,
            metadata.codes("split"),
        )
        return index

    @property
    def source_spec(self) -> InputSpec:
        return self.inputs.s2

    def source_feed(self, index: LabelIndex, sink: Sink) -> AbstractContextManager[Feed]:
        i = self.inputs
        return open_archive_feed(i.s2, PatchFolderRule(TOP, depth=1), endpoint=i.endpoint,
                                 policy=i.policy, warn=i.warn, ignored=sink.ignored_members,
                                 reader=sink.reader(i.s2))  # fmt: skip

    def join(self, item: ArchiveItem, index: LabelIndex) -> tuple[str, int | None]:
        return item.item_id, index.rows.get(item.item_id)

    def capacity(self, index: LabelIndex) -> int:
        limit = self.inputs.selection.limit
        count = index.selected_count
        return count if limit is None else min(limit, count)

    def coordinates(
        self, index: LabelIndex, rows: list[int], patch_ids: list[str]
    ) -> dict[str, np.ndarray]:
        assert self.metadata is not None
        return {
            "split": self.metadata.column("split", rows),
            "country": self.metadata.column("country", rows),
            "patch_id_v1": self.metadata.column("s2v1_name", rows),
        }

    def partners(self) -> tuple[Partner, ...]:
        i = self.inputs
        found: list[Partner] = []
        if i.s1 is not None:
            assert self.metadata is not None, "read_labels first"
            found.append(s1_v2(i.s1, self.metadata.strings["s1_name"], self.metadata.patch_ids))
        if i.reference_maps is not None:
            found.append(reference_maps(i.reference_maps))
        return tuple(found)

    def title(self, collections: dict[str, Any]) -> dict[str, Any]:
        return {
            "title": "BigEarthNet v2.0 (reBEN)",
            "license": "CDLA-Permissive-1.0",
            "citation": _CITATION_V2,
        }


_CITATION_V2: Final = (
    "K. N. Clasen, L. Hackel, T. Burgert, G. Sumbul, B. Demir, V. Markl, reBEN: Refined "
    "BigEarthNet Dataset for Remote Sensing Image Analysis, IEEE IGARSS 2025."
)

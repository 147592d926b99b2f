"""reBEN (BigEarthNet v2.0) metadata: the official parquet files → one row per patch.

``metadata.parquet`` (480,038 rows) and ``metadata_for_patches_with_snow_cloud_or_shadow.parquet``
(69,450 rows) together describe the 549,488 patches: ``patch_id``, ``labels`` (19-class names),
``split``, ``country``, ``s1_name``, ``s2v1_name`` and the two flags. They are read with pyarrow,
only these columns, one row group at a time; the label lists become 19-bit masks without a
Python loop per row (the names are matched against the nomenclature with ``pyarrow.compute``).
What is kept per row: a mask, two flags, and the string columns as Arrow arrays (about 60 MB
for all rows, against some 250 MB as Python strings).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import InputDataError
from ..nomenclature import CLASSES_19

#: The columns the ingest reads; any other column is left unread.
COLUMNS: Final = (
    "patch_id",
    "labels",
    "split",
    "country",
    "s1_name",
    "s2v1_name",
    "contains_seasonal_snow",
    "contains_cloud_or_shadow",
)
#: String columns kept per row, by the store coordinate they become.
STRING_COLUMNS: Final = {"split": "split", "country": "country", "s2v1_name": "patch_id_v1",
                         "s1_name": "s1_patch_id"}  # fmt: skip
SPLITS: Final = ("train", "validation", "test")


@dataclass(frozen=True)
class Metadata:
    """All rows of the metadata files, in file order (first file first)."""

    patch_ids: pa.ChunkedArray
    masks: np.ndarray
    """uint32: bit i set when the patch has 19-class label i."""
    seasonal_snow: np.ndarray
    cloud_and_shadow: np.ndarray
    strings: dict[str, pa.ChunkedArray]
    """``split``, ``country``, ``s2v1_name``, ``s1_name``."""
    files: tuple[str, ...]
    id_list: list[str]
    """``patch_ids`` as Python strings (what the label index keys on)."""

    def __len__(self) -> int:
        return len(self.patch_ids)

    def column(self, name: str, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        """The string column ``name`` at ``rows``, as an object array of str."""
        taken = self.strings[name].take(pa.array(np.asarray(rows, dtype=np.int64)))
        return np.asarray(taken.to_pylist(), dtype=object)

    def codes(self, name: str) -> np.ndarray:
        """The string column ``name`` for every row, as an object array holding one str object
        per distinct value (``split``: 3 strings, not 549,488)."""
        encoded = self.strings[name].combine_chunks().dictionary_encode()
        values = np.empty(len(encoded.dictionary), dtype=object)
        values[:] = encoded.dictionary.to_pylist()  # the columns have no nulls (read_metadata)
        indices = np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
        return np.take(values, indices)


def read_metadata(
    paths: Sequence[str | Path | BinaryIO], names: Sequence[str] | None = None
) -> Metadata:
    """Read and check the metadata files; an InputDataError names the file and what is wrong.

    Checks: each file is parquet, has every column of :data:`COLUMNS` with its type, has no null,
    names only known 19-class labels and splits; no patch appears twice (across files too).
    """
    if not paths:
        raise InputDataError("--metadata", "reben-v2 needs the metadata parquet file(s)")
    ids: list[pa.Array] = []
    masks: list[np.ndarray] = []
    snow: list[np.ndarray] = []
    cloud: list[np.ndarray] = []
    strings: dict[str, list[pa.Array]] = {name: [] for name in STRING_COLUMNS}
    labels = [str(p) for p in paths] if names is None else list(names)
    for path, name in zip(paths, labels, strict=True):
        for batch in _batches(path, name):
            batch = _compact(batch, name)
            _check_valid(batch, name)
            _check_nulls(batch, name)
            ids.append(batch.column("patch_id"))
            masks.append(_label_masks(batch.column("labels"), batch.column("patch_id"), name))
            snow.append(batch.column("contains_seasonal_snow").to_numpy(zero_copy_only=False))
            cloud.append(batch.column("contains_cloud_or_shadow").to_numpy(zero_copy_only=False))
            _check_splits(batch, name)
            for column in STRING_COLUMNS:
                strings[column].append(batch.column(column))
    patch_ids = pa.chunked_array(ids, type=pa.string())
    id_list: list[str] = patch_ids.to_pylist()
    _check_unique(id_list, labels)
    # Decoding the row groups leaves ~150 MB free in Arrow's allocator, which keeps it: give it back
    # (the process's peak memory is what the run is held to).
    pa.default_memory_pool().release_unused()
    return Metadata(
        patch_ids=patch_ids,
        masks=np.concatenate(masks) if masks else np.zeros(0, np.uint32),
        seasonal_snow=np.concatenate(snow).astype(bool) if snow else np.zeros(0, bool),
        cloud_and_shadow=np.concatenate(cloud).astype(bool) if cloud else np.zeros(0, bool),
        strings={k: pa.chunked_array(v, type=pa.string()) for k, v in strings.items()},
        files=tuple(labels),
        id_list=id_list,
    )


def _batches(path: str | Path | BinaryIO, name: str) -> Iterator[pa.RecordBatch]:
    try:
        handle = pq.ParquetFile(path)
    except FileNotFoundError:
        raise InputDataError(name, "no such metadata file") from None
    except (pa.ArrowException, OSError) as exc:
        raise InputDataError(name, f"not a parquet file ({_first_line(exc)})") from None
    schema = handle.schema_arrow
    missing = [c for c in COLUMNS if c not in schema.names]
    if missing:
        raise InputDataError(
            name,
            f"metadata lacks the column {missing[0]!r} (has {', '.join(schema.names)})",
        )
    for column, kind in _TYPES.items():
        got = schema.field(column).type
        if not kind(got):
            raise InputDataError(name, f"metadata column {column!r} has type {got}")
    rows = 0
    try:
        # Arrow's threads decode the columns side by side: the labels are the run's serial
        # start, and 0.8-1.0 s -> 0.5-0.6 s on 2 cores (the official files, 549,488 rows)
        for batch in handle.iter_batches(batch_size=65536, columns=list(COLUMNS),
                                         use_threads=True):  # fmt: skip
            rows += batch.num_rows
            yield batch
    except (pa.ArrowException, OSError) as exc:  # any of Arrow's errors, for damaged pages
        raise InputDataError(name, f"unreadable parquet ({_first_line(exc)})") from None
    declared = handle.metadata.num_rows
    if rows != declared:  # a damaged footer can make whole row groups read as empty
        raise InputDataError(name, f"unreadable parquet ({rows:,} rows of the {declared:,} it "
                             "declares)")  # fmt: skip


def _compact(batch: pa.RecordBatch, name: str) -> pa.RecordBatch:
    """A copy of the batch's columns that owns only its own bytes (a batch read from parquet
    shares buffers with the whole decoded row group, which would stay alive with it). Large
    strings and lists (as polars writes them) become the plain ones of the official files."""
    columns = []
    for column in batch.columns:
        kind = column.type
        try:
            if pa.types.is_large_list(kind):
                columns.append(column.cast(pa.list_(pa.string())))
            elif pa.types.is_large_string(kind):
                columns.append(column.cast(pa.string()))
            else:
                columns.append(pa.concat_arrays([column]))
        except pa.ArrowException as exc:
            raise InputDataError(name, f"unreadable parquet ({_first_line(exc)})") from None
    return pa.RecordBatch.from_arrays(columns, names=batch.schema.names)


def _is_string(t: pa.DataType) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t))


def _is_string_list(t: pa.DataType) -> bool:
    return bool((pa.types.is_list(t) or pa.types.is_large_list(t)) and _is_string(t.value_type))


_TYPES: Final = {
    "patch_id": _is_string,
    "labels": _is_string_list,
    "split": _is_string,
    "country": _is_string,
    "s1_name": _is_string,
    "s2v1_name": _is_string,
    "contains_seasonal_snow": pa.types.is_boolean,
    "contains_cloud_or_shadow": pa.types.is_boolean,
}


def _check_valid(batch: pa.RecordBatch, name: str) -> None:
    """Arrow's full validation: offsets inside their buffers and strings valid UTF-8 (parquet
    pages are not checked when read; a damaged one would fail later, outside Arrow)."""
    try:
        batch.validate(full=True)
    except pa.ArrowException as exc:
        raise InputDataError(name, f"unreadable parquet ({_first_line(exc)})") from None


def _check_nulls(batch: pa.RecordBatch, name: str) -> None:
    for column in COLUMNS:
        nulls = batch.column(column).null_count
        if nulls:
            raise InputDataError(name, f"metadata column {column!r} has {nulls} empty value(s)")


def _label_masks(labels: pa.Array, patch_ids: pa.Array, name: str) -> np.ndarray:
    """uint32 19-bit masks of a batch's label lists; an unknown name is an error."""
    flat = labels.flatten()
    index = pc.index_in(flat, value_set=pa.array(CLASSES_19))
    if index.null_count:
        position = int(pc.index(pc.is_null(index), True).as_py())
        offsets = labels.offsets.to_numpy()
        row = int(np.searchsorted(offsets, position, side="right") - 1)
        raise InputDataError(
            name,
            f"patch {patch_ids[row].as_py()}: unknown 19-class name {flat[position].as_py()!r}",
        )
    bits = np.left_shift(np.uint32(1), index.to_numpy(zero_copy_only=False).astype(np.uint32))
    offsets = labels.offsets.to_numpy()
    lengths = np.diff(offsets)
    row_of = np.repeat(np.arange(len(labels)), lengths)
    masks = np.zeros(len(labels), dtype=np.uint32)
    np.bitwise_or.at(masks, row_of, bits)
    return masks


def _check_splits(batch: pa.RecordBatch, name: str) -> None:
    splits = batch.column("split")
    bad = pc.invert(pc.is_in(splits, value_set=pa.array(SPLITS)))
    if pc.any(bad).as_py():
        value = splits.filter(bad)[0].as_py()
        raise InputDataError(name, f"unknown split {value!r} (expected train, validation or test)")


def _check_unique(patch_ids: list[str], paths: Sequence[str]) -> None:
    """No patch twice. A set of the Python strings, which the label index needs anyway: Arrow's
    ``count_distinct`` over the batches took 0.44 s of a run's start (0.12 s this way)."""
    if len(set(patch_ids)) == len(patch_ids):
        return
    seen: set[str] = set()
    for twice in patch_ids:
        if twice in seen:
            break
        seen.add(twice)
    where = ", ".join(str(p) for p in paths)
    raise InputDataError(where, f"patch {twice} has two metadata rows")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]

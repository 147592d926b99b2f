"""Damaged and hostile stores (issue 19, findings 10-12): every reader — ``SampleDataset`` (one
sample, many, epochs), ``SampleStore`` and ``open_store``'s backend — refuses a missing shard of
a complete store, any shard index entry the writer would not write and any corrupt chunk with a
``StoreError`` naming the shard, within bounded memory, keeps nothing in use after an error, and
keeps as many shard files open as a window needs."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import google_crc32c
import numpy as np
import pytest
import zarr

from ingest.errors import StoreError
from ingest.read import SampleDataset, open_store
from ingest.read.reading import IncompleteStoreWarning
from ingest.read.samples import SampleStore, Take
from ingest.store.location import StoreLocation
from ingest.testing.s3 import S3Server

from ..conftest import WrittenStore, write_v2_store
from .conftest import upload

N, SHARD = 10, 4
ARRAYS = ("bands_10m", "bands_20m", "bands_60m", "bands_s1", "reference_map")
U64 = 2**64


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> WrittenStore:
    return write_v2_store(tmp_path_factory.mktemp("hostile") / "reben.zarr", N, SHARD)


@pytest.fixture
def copy(pristine: WrittenStore, tmp_path: Path) -> Path:
    path = tmp_path / "copy.zarr"
    shutil.copytree(pristine.path, path)
    return path


def shard_path(store: Path, name: str, shard: int) -> Path:
    ndim = 3 if name == "reference_map" else 4
    return store.joinpath(name, "c", str(shard), *["0"] * (ndim - 1))


def set_entry(path: Path, entry: int, offset: int, nbytes: int, length: int = SHARD) -> None:
    """Rewrite one (offset, nbytes) pair of a shard's index, its CRC32C made to match."""
    data = bytearray(path.read_bytes())
    start = len(data) - (16 * length + 4)
    index = np.frombuffer(bytes(data[start:-4]), dtype="<u8").copy().reshape(length, 2)
    index[entry] = (offset % U64, nbytes % U64)
    table = index.tobytes()
    data[start:] = table + google_crc32c.value(table).to_bytes(4, "little")
    path.write_bytes(bytes(data))


def entry_of(path: Path, entry: int, length: int = SHARD) -> tuple[int, int]:
    data = path.read_bytes()
    index = np.frombuffer(data[-(16 * length + 4) : -4], dtype="<u8").reshape(length, 2)
    return int(index[entry, 0]), int(index[entry, 1])


def refused(read: Callable[[], Any], pattern: str, way: str) -> None:
    """``read`` raises a StoreError matching ``pattern`` (any other exception propagates)."""
    with pytest.raises(StoreError) as caught:
        read()
    assert re.search(pattern, str(caught.value)), (way, str(caught.value))


# every way of reading sample 5 (shard 1) of ``name``, each expected to fail the same way
def readers(path: Path, name: str) -> dict[str, Callable[[], Any]]:
    def dataset_item() -> Any:
        return SampleDataset(path, modalities=[name])[5]

    def dataset_items() -> Any:
        store = SampleStore.open(path)
        return store.samples(np.arange(N), [Take(store.arrays[name])])

    def epoch() -> Any:
        return [b[name] for b in SampleDataset(path, modalities=[name]).batches(3, window=2)]

    def xarray_whole() -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", IncompleteStoreWarning)
            return open_store(path)[name].values

    def xarray_one() -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", IncompleteStoreWarning)
            return open_store(path)[name].isel(sample=5).values

    return {"item": dataset_item, "items": dataset_items, "epoch": epoch,
            "xarray": xarray_whole, "xarray-one": xarray_one}  # fmt: skip


# --- finding 10: a missing shard --------------------------------------------------------------


@pytest.mark.parametrize("name", ["bands_10m", "reference_map"])
def test_a_shard_missing_from_a_complete_store_is_a_store_error(copy: Path, name: str) -> None:
    shard_path(copy, name, 1).unlink()
    for way, read in readers(copy, name).items():
        refused(read, rf"{name}/c/1/0.*missing from a store marked complete", way)


def test_a_shard_not_written_yet_reads_as_fill_while_the_store_is_unfinished(
    copy: Path, pristine: WrittenStore
) -> None:
    shard_path(copy, "bands_s1", 1).unlink()
    zarr.open_group(copy, mode="r+").attrs["complete"] = False  # as the writer has it until done
    expected = pristine.pixels["bands_s1"].copy()
    expected[4:8] = 0
    assert np.array_equal(np.asarray(zarr.open_array(copy, path="bands_s1")[...]), expected)
    with pytest.warns(IncompleteStoreWarning):
        data = SampleDataset(copy, modalities=["s1"])
    assert np.array_equal(data[5]["bands_s1"], expected[5])
    batches = list(data.batches(3, shuffle=False))
    assert np.array_equal(np.concatenate([b["bands_s1"] for b in batches]), expected)
    with pytest.warns(IncompleteStoreWarning):
        assert np.array_equal(open_store(copy)["bands_s1"].values, expected)


# --- finding 11: index entries ----------------------------------------------------------------


def hostile_entries(path: Path) -> dict[str, tuple[int, int]]:
    offset, nbytes = entry_of(path, 1)
    size = path.stat().st_size
    return {
        "offset 2**63": (2**63, nbytes),
        "offset 2**64-1 alone": (U64 - 1, nbytes),
        "length 2**32": (offset, 2**32),
        "length 2**45": (offset, 2**45),
        "negative length": (offset, -5),
        "length 0": (offset, 0),
        "offset + length overflows": (U64 - 10, 100),
        "beyond the file": (size - 10, nbytes),
        "into the index": (size - 16 * SHARD - 4 - nbytes + 8, nbytes),
        "larger than a chunk can be": (0, 4 * 120 * 120 * 2 + 17),
    }


@pytest.mark.parametrize(
    "case", ["offset 2**63", "offset 2**64-1 alone", "length 2**32", "length 2**45",
             "negative length", "length 0", "offset + length overflows", "beyond the file",
             "into the index", "larger than a chunk can be"],
)  # fmt: skip
def test_a_bad_index_entry_is_a_store_error_naming_the_shard(copy: Path, case: str) -> None:
    shard = shard_path(copy, "bands_10m", 1)
    set_entry(shard, 1, *hostile_entries(shard)[case])  # sample 5
    for way, read in readers(copy, "bands_10m").items():
        # reading a few samples by range, the index comes without the shard's size: an entry
        # beyond it comes back short, or decodes as a corrupt chunk
        ranged = "|shard is shorter|corrupt chunk" if way == "xarray-one" else ""
        refused(read, rf"bands_10m/c/1/0/0/0: (corrupt shard index{ranged})", way)
    store = SampleStore.open(copy)
    with pytest.raises(StoreError):
        store.sample(5, [Take(store.arrays["bands_10m"])])
    with pytest.raises(StoreError):
        store.samples(np.array([1, 2, 6]), [Take(store.arrays["bands_10m"])])
    files = store._state().files
    assert getattr(files, "in_use", 0) == 0  # nothing left counted in use
    assert np.array_equal(store.sample(9, [Take(store.arrays["bands_10m"])])["bands_10m"],
                          np.asarray(zarr.open_array(copy, path="bands_10m")[9]))  # fmt: skip


def test_an_absent_pair_reads_as_fill_like_zarr(copy: Path) -> None:
    shard = shard_path(copy, "bands_60m", 1)
    set_entry(shard, 1, U64 - 1, U64 - 1)
    expected = np.asarray(zarr.open_array(copy, path="bands_60m")[...])
    assert int(expected[5].max()) == 0 and int(expected[4].max()) > 0
    for way, read in readers(copy, "bands_60m").items():
        got = read()
        if way in ("items", "xarray"):
            got = got["bands_60m"] if isinstance(got, dict) else got
            assert np.array_equal(got, expected), way
        elif way == "epoch":
            assert np.array_equal(np.sort(np.concatenate(got), axis=0),
                                  np.sort(expected, axis=0)), way  # fmt: skip
        else:
            got = got["bands_60m"] if isinstance(got, dict) else got
            assert np.array_equal(got, expected[5]), way


@pytest.mark.parametrize("part", ["payload", "cbytes", "nbytes", "blocksize", "truncated"])
def test_a_corrupt_chunk_is_a_store_error_naming_the_shard(copy: Path, part: str) -> None:
    shard = shard_path(copy, "bands_20m", 1)
    offset, nbytes = entry_of(shard, 1)
    data = bytearray(shard.read_bytes())
    chunk = data[offset : offset + nbytes]
    if part == "payload":  # the zstd frame's magic (its literals carry no checksum)
        chunk[24:28] = b"\xa5" * 4
    elif part == "cbytes":
        chunk[12:16] = (nbytes + 4096).to_bytes(4, "little")
    elif part == "nbytes":
        chunk[4:8] = (2**31 - 1).to_bytes(4, "little")
    elif part == "blocksize":
        chunk[8:12] = (2**31 - 1).to_bytes(4, "little")
    data[offset : offset + nbytes] = chunk
    shard.write_bytes(bytes(data))
    if part == "truncated":
        set_entry(shard, 1, offset, nbytes - 9)
    for way, read in readers(copy, "bands_20m").items():
        refused(read, r"bands_20m/c/1/0/0/0: corrupt chunk", way)


def test_a_truncated_shard_is_a_store_error(copy: Path) -> None:
    shard = shard_path(copy, "bands_10m", 2)
    shard.write_bytes(shard.read_bytes()[:-100])
    for way, read in readers(copy, "bands_10m").items():
        if way.endswith("one") or way == "item":
            continue  # sample 5 is in shard 1
        refused(read, r"bands_10m/c/2/0/0/0: shard", way)


HOSTILE_RSS = """
import json, resource, sys, warnings
import numpy as np
from ingest.errors import StoreError
from ingest.read import SampleDataset, open_store
from ingest.read.samples import SampleStore, Take

path, cases = sys.argv[1], json.loads(sys.argv[2])
warnings.simplefilter("ignore")
def peak(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
def read_all(where):
    store = SampleStore.open(where)
    takes = [Take(a) for a in store.arrays.values()]
    for i in range(store.size):
        store.sample(i, takes)
    store.samples(np.arange(store.size), takes)
    for _ in SampleDataset(where).batches(4):
        pass
    open_store(where)["bands_10m"].values
read_all(path + "/clean.zarr")
clean = peak()
for case in cases:
    try:
        read_all(path + "/" + case)
    except StoreError:
        pass
print(json.dumps({"clean": clean, "hostile": peak()}))
"""


def test_peak_memory_under_any_hostile_entry_stays_within_256_mib_of_a_clean_read(
    pristine: WrittenStore, tmp_path: Path
) -> None:
    shutil.copytree(pristine.path, tmp_path / "clean.zarr")
    names = []
    entries = hostile_entries(shard_path(pristine.path, "bands_10m", 1))
    for k, entry in enumerate(entries.values()):
        name = f"case{k}.zarr"
        shutil.copytree(pristine.path, tmp_path / name)
        set_entry(shard_path(tmp_path / name, "bands_10m", 1), 1, *entry)
        names.append(name)
    result = subprocess.run([sys.executable, "-c", HOSTILE_RSS, str(tmp_path), json.dumps(names)],
                            capture_output=True, text=True, check=False, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    peaks = json.loads(result.stdout)
    assert peaks["hostile"] - peaks["clean"] < 256 * 2**20, peaks


# --- finding 12: the open-file cache ----------------------------------------------------------


@pytest.fixture(scope="module")
def one_per_shard(tmp_path_factory: pytest.TempPathFactory) -> WrittenStore:
    """30 samples in shards of 1: 150 shard files over the five arrays."""
    return write_v2_store(tmp_path_factory.mktemp("s1") / "ones.zarr", 30, 1)


def expected_epoch(store: WrittenStore, batches: list[dict[str, Any]]) -> None:
    index = np.concatenate([b["index"] for b in batches])
    assert sorted(index.tolist()) == list(range(30))
    for name, values in store.pixels.items():
        assert np.array_equal(np.concatenate([b[name] for b in batches]), values[index]), name


@pytest.mark.parametrize("window", [22, 13, 30])
def test_an_epoch_may_hold_more_files_than_the_cache_keeps(
    one_per_shard: WrittenStore, window: int
) -> None:
    data = SampleDataset(one_per_shard.path)
    expected_epoch(one_per_shard, list(data.batches(10, window=window, seed=window)))
    files = data.store._state().files
    assert files.in_use == 0 and files.open_files <= 64  # type: ignore[attr-defined]


def test_beyond_the_files_a_window_holds_chunks_are_read_alone(
    one_per_shard: WrittenStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ingest.read import files

    monkeypatch.setattr(files, "MAX_HELD", 7)
    monkeypatch.setattr(files, "MAX_OPEN", 5)
    data = SampleDataset(one_per_shard.path)
    expected_epoch(one_per_shard, list(data.batches(10, window=30, prefetch=0)))
    local = data.store._state().files
    assert local.in_use == 0 and local.open_files <= 5  # type: ignore[attr-defined]


def test_an_error_mid_epoch_leaves_nothing_in_use_and_reading_goes_on(
    one_per_shard: WrittenStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = SampleDataset(one_per_shard.path)
    calls = {"n": 0}
    advise = os.posix_fadvise

    def failing(fd: int, offset: int, length: int, advice: int) -> None:
        calls["n"] += 1
        if calls["n"] == 40:  # in the middle of the second window's files
            raise OSError(9, "Bad file descriptor")
        advise(fd, offset, length, advice)

    monkeypatch.setattr(os, "posix_fadvise", failing)
    with pytest.raises(StoreError, match=r"ones\.zarr/.*/c/\d+/0.*Bad file descriptor"):
        for _ in data.batches(10, window=13):
            pass
    files = data.store._state().files
    assert files.in_use == 0  # type: ignore[attr-defined]
    monkeypatch.setattr(os, "posix_fadvise", advise)
    expected_epoch(one_per_shard, list(data.batches(10, window=22, seed=3)))
    assert files.in_use == 0  # type: ignore[attr-defined]


def test_a_corrupt_chunk_mid_epoch_then_reading_goes_on(
    one_per_shard: WrittenStore, tmp_path: Path
) -> None:
    path = tmp_path / "ones.zarr"
    shutil.copytree(one_per_shard.path, path)
    shard = shard_path(path, "bands_20m", 17)
    data = bytearray(shard.read_bytes())
    data[24:28] = b"\x5a" * 4  # the first chunk's zstd frame magic
    shard.write_bytes(bytes(data))
    dataset = SampleDataset(path)
    with pytest.raises(StoreError, match=r"bands_20m/c/17/0/0/0: corrupt chunk"):
        list(dataset.batches(10, window=13))
    files = dataset.store._state().files
    assert files.in_use == 0  # type: ignore[attr-defined]
    good = SampleDataset(path, modalities=["bands_10m", "bands_s1"])
    batches = list(good.batches(10, window=22))
    index = np.concatenate([b["index"] for b in batches])
    assert np.array_equal(np.concatenate([b["bands_s1"] for b in batches]),
                          one_per_shard.pixels["bands_s1"][index])  # fmt: skip
    assert np.array_equal(dataset[16]["bands_20m"], one_per_shard.pixels["bands_20m"][16])


@pytest.mark.parametrize("case", ["beyond the file", "length 2**32", "into the index"])
def test_on_object_storage_a_bad_entry_is_a_store_error_too(
    copy: Path, s3: S3Server, case: str
) -> None:
    """There only the index is fetched (no size): an entry beyond the object comes back short."""
    shard = shard_path(copy, "bands_10m", 1)
    set_entry(shard, 1, *hostile_entries(shard)[case])
    url = upload(s3, copy, f"hostile-{case.replace(' ', '-').replace('*', '')}.zarr")
    store = SampleStore.open(StoreLocation(url, s3.storage_options))
    takes = [Take(store.arrays["bands_10m"])]
    for way, read in {
        "sample": lambda: store.sample(5, takes),
        "samples": lambda: store.samples(np.array([4, 5, 9]), takes),
    }.items():
        refused(
            read, r"bands_10m/c/1/0/0/0: (corrupt shard index|shard is shorter|corrupt chunk)", way
        )
    assert np.array_equal(store.sample(9, takes)["bands_10m"],
                          np.asarray(zarr.open_array(copy, path="bands_10m")[9]))  # fmt: skip

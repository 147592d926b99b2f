"""Fuzzing the store readers: seeded, structure-aware mutations of the shard files of a small
store written by the project's own writer, read by every reader (``SampleStore`` one by one and
in bulk, ``SampleDataset.batches``, ``open_store``'s ``ShardedBands`` whole and by range).

Each case mutates one shard file of one array — an index entry (with its CRC32C made to match,
so that the entry rule itself is exercised), raw index bytes, a chunk's blosc header or payload,
the file's length, or the file's existence — and then every reader must either read exactly
what zarr-python reads from the same bytes, or raise ``StoreError``; never another exception,
never other values, within a time bound, and the process's peak memory stays within 256 MiB of
what it was. A store marked complete with a missing shard must raise (zarr-python reads fill).

``FUZZ_CASES`` (default 200, a few seconds) sets the number of cases; ``FUZZ_SEED`` the first
seed. Every failure names its seed and mutation, and replays alone with ``FUZZ_SEED=<seed>
FUZZ_CASES=1``.
"""

from __future__ import annotations

import os
import resource
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import google_crc32c
import numpy as np
import pytest
import zarr

from ingest.errors import StoreError
from ingest.read import SampleDataset
from ingest.read.reading import ShardedBands
from ingest.read.samples import SampleStore, Take

from ..conftest import WrittenStore, write_v2_store

CASES = int(os.environ.get("FUZZ_CASES", "200"))
FIRST = int(os.environ.get("FUZZ_SEED", "0"))
N, SHARD = 8, 4
ARRAYS = ("bands_10m", "bands_20m", "bands_60m", "bands_s1", "reference_map")
U64 = 2**64
#: Seconds one case may take (all its reads); a hang or a runaway loop fails it.
CASE_SECONDS = 10.0
RSS_SLACK = 256 * 2**20


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> WrittenStore:
    return write_v2_store(tmp_path_factory.mktemp("fuzz") / "fuzz.zarr", N, SHARD)


def shard_path(store: Path, name: str, shard: int) -> Path:
    ndim = 3 if name == "reference_map" else 4
    return store.joinpath(name, "c", str(shard), *["0"] * (ndim - 1))


# --- mutations -------------------------------------------------------------------------------

INTERESTING = [0, 1, 2, 7, 16, 24, 100, 2**16, 2**31 - 1, 2**31, 2**32, 2**32 + 1, 2**45, 2**62,
               2**63 - 1, 2**63, U64 - 2, U64 - 1]  # fmt: skip


def _index(data: bytearray) -> tuple[int, np.ndarray]:
    start = len(data) - (16 * SHARD + 4)
    return start, np.frombuffer(bytes(data[start:-4]), dtype="<u8").copy().reshape(SHARD, 2)


def _store_index(data: bytearray, start: int, index: np.ndarray) -> None:
    table = index.astype("<u8").tobytes()
    data[start:] = table + google_crc32c.value(table).to_bytes(4, "little")


def _value(rng: np.random.Generator, data: bytearray, near: int) -> int:
    """An offset or length worth trying: special values, values around the file's and the
    chunk's sizes, or small random shifts of ``near``."""
    kind = rng.integers(5)
    if kind == 0:
        return INTERESTING[int(rng.integers(len(INTERESTING)))]
    if kind == 1:
        return len(data) + int(rng.integers(-80, 8))
    if kind == 2:
        return (near + int(rng.integers(-40, 40))) % U64
    if kind == 3:
        return (-int(rng.integers(1, 2**20))) % U64  # "negative"
    return int(rng.integers(0, len(data) + 1))


def mutate(rng: np.random.Generator, data: bytearray) -> tuple[str, bytearray | None]:
    """One structure-aware mutation of a shard's bytes; None: delete the file."""
    kind = int(rng.integers(10))
    start, index = _index(data)
    entry = int(rng.integers(SHARD))
    offset, nbytes = (int(v) for v in index[entry])
    if kind <= 2:  # one entry's offset and/or length, CRC32C recomputed
        which = int(rng.integers(3))
        if which != 1:
            index[entry, 0] = _value(rng, data, offset)
        if which != 0:
            index[entry, 1] = _value(rng, data, nbytes)
        _store_index(data, start, index)
        return f"entry {entry} := {tuple(int(v) for v in index[entry])}", data
    if kind == 3:  # entries copied, swapped or marked absent (CRC32C recomputed)
        other = int(rng.integers(SHARD))
        choice = int(rng.integers(3))
        if choice == 0:
            index[entry] = index[other]
        elif choice == 1:
            index[[entry, other]] = index[[other, entry]]
        else:
            index[entry] = (U64 - 1, U64 - 1)
        _store_index(data, start, index)
        return f"entries {entry}/{other} rearranged ({choice})", data
    if kind == 4:  # raw index bytes (the CRC32C should catch it)
        at = start + int(rng.integers(len(data) - start))
        data[at] ^= 1 << int(rng.integers(8))
        return f"index byte {at - start} flipped", data
    if kind in (5, 6) and offset < U64 - 1:  # a chunk's blosc header field or payload bytes
        chunk = slice(offset, offset + nbytes)
        if kind == 5:
            field = int(rng.choice([0, 1, 2, 3, 4, 8, 12, 16, 20]))
            width = 1 if field < 4 else 4
            value = int(rng.choice([0, 1, 255, 2**31 - 1, nbytes, nbytes + 16, 43200, 2**24]))
            data[offset + field : offset + field + width] = (value % (1 << 8 * width)).to_bytes(
                width, "little"
            )
            return f"chunk {entry} header byte {field} := {value}", data
        for _ in range(int(rng.integers(1, 9))):
            at = int(rng.integers(chunk.start, chunk.stop))
            data[at] = int(rng.integers(256))
        return f"chunk {entry} payload bytes changed", data
    if kind == 7:  # truncated anywhere
        cut = int(rng.integers(len(data)))
        return f"truncated to {cut} bytes", data[:cut]
    if kind == 8:  # bytes appended (the index is no longer at the end)
        return "bytes appended", data + bytearray(rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8).tobytes())  # fmt: skip
    return "file deleted", None


# --- readers ---------------------------------------------------------------------------------


@dataclass
class Outcome:
    values: np.ndarray | None
    error: BaseException | None


def attempt(read: Callable[[], np.ndarray]) -> Outcome:
    try:
        return Outcome(read(), None)
    except Exception as error:
        return Outcome(None, error)


def readers(path: Path, name: str, shard: int, seed: int) -> dict[str, Callable[[], np.ndarray]]:
    rows = np.arange(shard * SHARD, (shard + 1) * SHARD)

    def bulk() -> np.ndarray:
        store = SampleStore.open(path)
        return store.samples(np.arange(N), [Take(store.arrays[name])])[name]

    def one_by_one() -> np.ndarray:
        store = SampleStore.open(path)
        takes = [Take(store.arrays[name])]
        return np.stack([store.sample(int(i), takes)[name] for i in rows[::-1]])[::-1]

    def epoch() -> np.ndarray:
        data = SampleDataset(path, modalities=[name])
        batches = list(data.batches(3, seed=seed, window=1 + seed % 2, prefetch=seed % 2))
        index = np.concatenate([b["index"] for b in batches])
        out = np.empty((N, *batches[0][name].shape[1:]), batches[0][name].dtype)
        out[index] = np.concatenate([b[name] for b in batches])
        return out

    def xarray_whole() -> np.ndarray:
        return ShardedBands(zarr.open_array(path, path=name, mode="r")).samples(np.arange(N))

    def xarray_ranged() -> np.ndarray:
        array = zarr.open_array(path, path=name, mode="r")
        return np.stack([ShardedBands(array).samples(np.array([i]))[0] for i in rows])

    return {"bulk": bulk, "one_by_one": one_by_one, "epoch": epoch,
            "xarray_whole": xarray_whole, "xarray_ranged": xarray_ranged}  # fmt: skip


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def test_mutated_shards_read_as_zarr_python_reads_them_or_raise_store_error(
    written: WrittenStore,
) -> None:
    path = written.path
    warnings.simplefilter("ignore")  # the dataset's own warnings are not under test here
    before = peak_rss()
    failures: list[str] = []
    outcomes: dict[str, int] = {"read": 0, "refused": 0}
    for seed in range(FIRST, FIRST + CASES):
        rng = np.random.default_rng(seed)
        name = ARRAYS[int(rng.integers(len(ARRAYS)))]
        shard = int(rng.integers(N // SHARD))
        file = shard_path(path, name, shard)
        original = file.read_bytes()
        what, mutated = mutate(rng, bytearray(original))
        if mutated is None:
            file.unlink()
        else:
            file.write_bytes(bytes(mutated))
        case = f"seed {seed}: {name} shard {shard}, {what}"
        try:
            started = time.perf_counter()
            rows = slice(shard * SHARD, (shard + 1) * SHARD)
            reference = attempt(lambda: np.asarray(zarr.open_array(path, path=name, mode="r")[rows]))  # noqa: B023  # fmt: skip
            for way, read in readers(path, name, shard, seed).items():
                got = attempt(read)
                if got.error is not None:
                    if not isinstance(got.error, StoreError):
                        failures.append(f"{case}: {way} raised {got.error!r}")
                    elif mutated is not None and str(file.relative_to(path)) not in str(got.error):
                        failures.append(f"{case}: {way}: {got.error} does not name the shard")
                    outcomes["refused"] += 1
                    continue
                outcomes["read"] += 1
                values = got.values
                assert values is not None
                mine = values[rows] if len(values) == N else values
                if mutated is None:
                    failures.append(f"{case}: {way} read a missing shard of a complete store")
                elif reference.error is not None:
                    failures.append(f"{case}: {way} read values where zarr-python raised "
                                    f"{reference.error!r}")  # fmt: skip
                elif not np.array_equal(
                    mine, np.asarray(reference.values), equal_nan=mine.dtype.kind == "f"
                ):
                    failures.append(f"{case}: {way} read other values than zarr-python")
                elif len(values) == N:
                    others = np.ones(N, bool)
                    others[rows] = False
                    if not np.array_equal(values[others], written.pixels[name][others]):
                        failures.append(f"{case}: {way} changed the other shard's samples")
            if time.perf_counter() - started > CASE_SECONDS:
                failures.append(f"{case}: took {time.perf_counter() - started:.1f} s")
        finally:
            file.write_bytes(original)
    assert not failures, "\n".join(failures[:30])
    assert peak_rss() - before < RSS_SLACK, (before, peak_rss())
    if CASES >= 100:  # the mutations reach both outcomes
        assert outcomes["read"] > 0 and outcomes["refused"] > 0, outcomes

"""The byte-range access under every reader: the open-file cache holds whatever is in use (any
number of files) and closes only unused ones beyond its size; short ranges are refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ingest.errors import StoreError
from ingest.read.files import MAX_OPEN, LocalFiles


@pytest.fixture
def shards(tmp_path: Path) -> Path:
    for k in range(3 * MAX_OPEN):
        (tmp_path / f"s{k}").write_bytes(bytes([k % 256]) * (k + 10))
    return tmp_path


def test_more_files_in_use_than_the_cache_keeps_all_stay_open(shards: Path) -> None:
    files = LocalFiles(str(shards))
    held = {}
    for k in range(2 * MAX_OPEN + 5):
        fd = files.acquire(f"s{k}")
        assert fd is not None
        held[k] = fd
    for k, fd in held.items():  # every descriptor handed out is still open and still its file
        assert os.fstat(fd).st_size == k + 10
        assert os.pread(fd, 1, 0) == bytes([k % 256])
    assert files.in_use == len(held) == files.open_files
    for k in held:
        files.release(f"s{k}")
    assert files.in_use == 0 and files.open_files == MAX_OPEN
    again = files.acquire("s0")  # closed as least recently used: opened anew
    assert again is not None and os.pread(again, 1, 0) == b"\0"
    files.release("s0")
    files.close()
    assert files.open_files == 0


def test_advise_and_reads_leave_nothing_in_use_after_errors(shards: Path) -> None:
    files = LocalFiles(str(shards))
    with pytest.raises(StoreError, match=r"s404: shard vanished"):
        files.advise([("s1", 0, 5), ("s2", 0, 5), ("s404", 0, 5)])
    assert files.in_use == 0
    with pytest.raises(StoreError, match=r"s3: shard is shorter than its index says"):
        files.fetch([("s3", 0, 5), ("s3", 10, 14)])
    assert files.in_use == 0
    assert files.fetch([("s4", 2, 6), ("s404", 0, 1)]) == [b"\4" * 4, None]
    assert files.tails(["s5", "s404"], 100) == [(b"\5" * 15, 15), None]
    held = files.advise([("s6", 0, 5), ("s7", 0, 5), ("s6", 5, 9)])
    assert sorted(held) == ["s6", "s7"] and files.in_use == 2
    for key in held:
        files.release(key)
    assert files.in_use == 0


def test_a_dropped_reader_closes_its_files(small_shards: Path) -> None:
    """Readers made and dropped without close() (one per DataLoader epoch, per fuzz case …)
    leaked a descriptor each until the process ran out of them."""
    import gc

    import numpy as np

    from ingest.read.samples import SampleStore, Take

    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    first = SampleStore.open(small_shards)
    first.samples(np.arange(40), [Take(first.arrays["bands_10m"])])
    del first
    gc.collect()
    before = open_fds()
    for _ in range(50):
        store = SampleStore.open(small_shards)
        store.samples(np.arange(40), [Take(store.arrays["bands_10m"])])  # 3 shard files
        del store
    gc.collect()
    assert open_fds() <= before

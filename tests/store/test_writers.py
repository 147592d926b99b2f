"""The shard writers' processes: what each does when it starts (:func:`init_child`)."""

from __future__ import annotations

import platform
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ingest.errors import StoreError
from ingest.processes import shared_memory_free
from ingest.store import writers
from ingest.store.location import StoreLocation

#: A writer's work in miniature: the store's codec (blosc zstd, bitshuffle) on 320 samples' 10 m
#: bands, after a warm-up; prints the page faults it took.
_ENCODE = textwrap.dedent(
    """
    import resource, sys
    import numpy as np
    from numcodecs import Blosc
    from ingest.processes import init_child, keep_freed_memory
    if sys.argv[1] == "keep":
        keep_freed_memory()
    elif sys.argv[1] == "child":
        init_child()
    codec = Blosc(cname="zstd", clevel=3, shuffle=Blosc.BITSHUFFLE)
    block = np.random.default_rng(0).integers(0, 4000, (64, 4, 120, 120), dtype=np.uint16)
    for _ in range(3):
        [codec.encode(b) for b in block]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        [codec.encode(b) for b in block]
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    """
)


def _faults(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", _ENCODE, mode], capture_output=True, text=True,
                          timeout=120, check=True)  # fmt: skip
    return int(done.stdout)


def test_a_writer_process_reuses_the_memory_its_codec_frees() -> None:
    """glibc gave zstd's workspace back to the kernel after every chunk and faulted it in again
    (16 page faults per chunk here; 250,000 in a 10,000-patch run); a writer keeps it."""
    plain, kept, child = _faults("plain"), _faults("keep"), _faults("child")
    if (
        platform.libc_ver()[0] != "glibc"
    ):  # pragma: no cover - mallopt is glibc's; elsewhere a no-op
        assert kept <= plain and child <= plain
        return
    assert plain >= 320 * 4, plain  # the waste this guards against is still there to be seen
    assert kept <= plain // 20 and child <= plain // 20, (plain, kept, child)


def test_too_little_shared_memory_is_one_error_before_anything_is_mapped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A container's /dev/shm is 64 MiB unless given more; the 4 batch buffers of 2 writers need
    164 MB, and filling one past its end killed the run (SIGBUS) without a word."""
    monkeypatch.setattr(writers, "shared_memory_free", lambda: 64 << 20)
    pool = writers.start_pool(2)
    processes = list(pool._processes.values())
    with pytest.raises(StoreError) as caught:
        writers.PoolWriter(StoreLocation.of(tmp_path / "s.zarr"), 256, 2, pool)
    message = str(caught.value)
    assert message.startswith("/dev/shm: the writers' batch buffers need 163.84 MB of shared "
                              "memory but it has 67.11 MB free")  # fmt: skip
    assert "--shm-size" in message and "--workers 0" in message
    assert not any(p.is_alive() for p in processes)  # the pool it was given is shut down
    monkeypatch.setattr(writers, "shared_memory_free", lambda: None)  # (not Linux: no check)
    writers.PoolWriter(StoreLocation.of(tmp_path / "s.zarr"), 256, 1).abort()


def test_shared_memory_free_is_the_file_systems(tmp_path: Path) -> None:
    free = shared_memory_free(str(tmp_path))
    assert free is not None and free > 0
    assert shared_memory_free(str(tmp_path / "missing")) is None

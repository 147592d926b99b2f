"""The hand-written shard encoder against zarr-python's own writer, byte for byte."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from zarr.codecs import BloscCodec, ZstdCodec

from ingest.store.shards import ShardEncoder, write_block, write_flushed
from ingest.store.zarrstore import BAND_CODEC


def _array(
    path: Path, inner: tuple[int, ...], shard: int, dtype: str = "uint16", **kwargs: object
) -> zarr.Array:  # type: ignore[type-arg]
    return zarr.create_array(
        str(path), shape=(3 * shard, *inner), chunks=(1, *inner), shards=(shard, *inner),
        dtype=dtype, config={"write_empty_chunks": True}, **kwargs,  # type: ignore[arg-type]
    )  # fmt: skip


@pytest.mark.parametrize("inner", [(4, 120, 120), (6, 60, 60), (2, 20, 20)])
@pytest.mark.parametrize("count", [16, 5, 1])
def test_identical_to_zarr_python(tmp_path: Path, inner: tuple[int, ...], count: int) -> None:
    rng = np.random.default_rng(count)
    block = rng.normal(1500, 400, (count, *inner)).clip(0, 65535).astype(np.uint16)
    by_zarr = _array(tmp_path / "zarr.zarr", inner, 16, compressors=BAND_CODEC)
    by_zarr[16 : 16 + count] = block
    ours = _array(tmp_path / "ours.zarr", inner, 16, compressors=BAND_CODEC)
    assert ShardEncoder.for_array(ours) is not None
    write_block(ours, 16, block)
    reference = (tmp_path / "zarr.zarr" / "c" / "1" / "0" / "0" / "0").read_bytes()
    assert (tmp_path / "ours.zarr" / "c" / "1" / "0" / "0" / "0").read_bytes() == reference
    np.testing.assert_array_equal(ours[16 : 16 + count], block)
    assert not ours[16 + count : 32].any()


@pytest.mark.parametrize("count", [16, 5, 1])
def test_s1_float32_identical_to_zarr_python(tmp_path: Path, count: int) -> None:
    """``bands_s1``: float32 backscatter in dB (negative, with a NaN and an exact 0.0)."""
    rng = np.random.default_rng(count)
    block = rng.normal(-12.0, 5.0, (count, 2, 120, 120)).astype(np.float32)
    block[0, 1, 3, 4], block[-1, 0, 0, 0] = np.nan, 0.0
    by_zarr = _array(tmp_path / "zarr.zarr", (2, 120, 120), 16, "float32", compressors=BAND_CODEC)
    by_zarr[16 : 16 + count] = block
    ours = _array(tmp_path / "ours.zarr", (2, 120, 120), 16, "float32", compressors=BAND_CODEC)
    encoder = ShardEncoder.for_array(ours)
    assert encoder is not None and encoder.dtype == np.float32 and encoder.blosc._typesize == 4  # type: ignore[attr-defined]
    write_block(ours, 16, block)
    reference = (tmp_path / "zarr.zarr" / "c" / "1" / "0" / "0" / "0").read_bytes()
    assert (tmp_path / "ours.zarr" / "c" / "1" / "0" / "0" / "0").read_bytes() == reference
    np.testing.assert_array_equal(ours[16 : 16 + count], block)  # NaN == NaN here
    assert ours.dtype == np.float32 and not ours[16 + count : 32].any()


@pytest.mark.parametrize("count", [16, 5, 1])
def test_reference_map_3d_identical_to_zarr_python(tmp_path: Path, count: int) -> None:
    """``reference_map``: (sample, y, x) uint16 CLC codes, no band dimension."""
    rng = np.random.default_rng(count)
    codes = np.array([0, 111, 112, 211, 311, 312, 512, 523], dtype=np.uint16)
    block = codes[rng.integers(0, len(codes), (count, 120, 120))]
    by_zarr = _array(tmp_path / "zarr.zarr", (120, 120), 16, compressors=BAND_CODEC)
    by_zarr[16 : 16 + count] = block
    ours = _array(tmp_path / "ours.zarr", (120, 120), 16, compressors=BAND_CODEC)
    assert ShardEncoder.for_array(ours) is not None
    write_block(ours, 16, block)
    reference = (tmp_path / "zarr.zarr" / "c" / "1" / "0" / "0").read_bytes()
    assert (tmp_path / "ours.zarr" / "c" / "1" / "0" / "0").read_bytes() == reference
    np.testing.assert_array_equal(ours[16 : 16 + count], block)


def test_other_dtypes_fall_back_to_zarr(tmp_path: Path) -> None:
    block = np.linspace(-30, 5, 4 * 2 * 20 * 20).reshape(4, 2, 20, 20)
    array = _array(tmp_path / "f8.zarr", (2, 20, 20), 4, "float64", compressors=BAND_CODEC)
    assert ShardEncoder.for_array(array) is None
    write_block(array, 4, block)
    np.testing.assert_array_equal(array[4:8], block)


def test_other_layouts_fall_back_to_zarr(tmp_path: Path) -> None:
    block = np.arange(8 * 2 * 20 * 20, dtype=np.uint16).reshape(8, 2, 20, 20)
    for name, kwargs in {
        "zstd": {"compressors": ZstdCodec(level=3)},
        "lz4": {"compressors": BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")},
    }.items():
        array = _array(tmp_path / f"{name}.zarr", (2, 20, 20), 8, **kwargs)
        if name == "zstd":
            assert ShardEncoder.for_array(array) is None
        write_block(array, 8, block)
        np.testing.assert_array_equal(array[8:16], block)
    plain = zarr.create_array(
        str(tmp_path / "plain.zarr"), shape=(16, 2, 20, 20), chunks=(8, 2, 20, 20), dtype="uint16"
    )
    assert ShardEncoder.for_array(plain) is None


def test_block_larger_than_a_shard_is_refused(tmp_path: Path) -> None:
    encoder = ShardEncoder.for_array(
        _array(tmp_path / "a.zarr", (2, 20, 20), 4, compressors=BAND_CODEC)
    )
    assert encoder is not None
    with pytest.raises(ValueError, match="5 samples do not fit a shard of 4"):
        encoder.encode(np.zeros((5, 2, 20, 20), np.uint16))


def test_a_local_shard_file_is_replaced_whole_and_leaves_nothing_behind(tmp_path: Path) -> None:
    target = tmp_path / "c" / "0" / "0"
    write_flushed(target, b"old shard")
    write_flushed(target, memoryview(np.arange(1000, dtype="<u2")))
    assert target.read_bytes() == np.arange(1000, dtype="<u2").tobytes()
    assert sorted(p.name for p in target.parent.iterdir()) == ["0"]  # no .partial left


def test_a_failed_shard_write_keeps_the_old_file_and_removes_its_partial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk in the middle of a shard: the file under its name is the old one, whole."""
    target = tmp_path / "shard"
    write_flushed(target, b"old shard")
    real_write, calls = os.write, []

    def full(descriptor: int, data: Any) -> int:
        if calls:
            raise OSError(errno.ENOSPC, "No space left on device")
        calls.append(1)
        return real_write(descriptor, bytes(data)[:3])  # a short write first

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(OSError, match="No space left"):
        write_flushed(target, b"new shard, longer")
    monkeypatch.undo()
    assert target.read_bytes() == b"old shard"
    assert [p.name for p in tmp_path.iterdir()] == ["shard"]


def test_short_writes_are_continued(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, bytes(data)[:7]))
    write_flushed(tmp_path / "shard", bytes(range(256)) * 10)
    monkeypatch.undo()
    assert (tmp_path / "shard").read_bytes() == bytes(range(256)) * 10

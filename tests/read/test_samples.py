"""The fast sample reader: the same values as zarr-python for every per-pixel array (uint16 and
float32, 3-D and 4-D, written by the ingest's encoder or by zarr-python), band subsets, absent
shards, other layouts, each shard index read once and checked, local and on loopback S3."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

from ingest.errors import StoreError
from ingest.read.samples import SampleStore, Take, shard_length
from ingest.store.location import StoreLocation
from ingest.testing.s3 import S3Server

from .conftest import consolidate, upload

PICKS = [59, 3, 17, 17, 40, 0, 15, 16, 47, 48]  # unsorted, repeated, shard edges, all four shards


def full(path: Path | str, name: str, **options: object) -> np.ndarray:
    return np.asarray(zarr.open_array(path, path=name, mode="r", **options)[...])


@pytest.mark.parametrize("fixture", ["real_store", "small_shards", "v2_shaped"])
def test_every_sample_of_every_array_matches_zarr_python(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    path: Path = request.getfixturevalue(fixture)
    store = SampleStore.open(path)
    expected = {name: full(path, name) for name in store.arrays}
    assert set(store.arrays) >= {"bands_10m", "bands_20m", "bands_60m"}
    takes = [Take(a) for a in store.arrays.values()]
    for i in range(store.size):
        sample = store.sample(i, takes)
        assert set(sample) == set(expected)
        for name, values in sample.items():
            assert values.dtype == expected[name].dtype and np.array_equal(
                values, expected[name][i]
            )
    positions = np.array([p % store.size for p in PICKS])
    stacked = store.samples(positions, takes)
    for name, values in stacked.items():
        assert np.array_equal(values, expected[name][positions]), name
    everything = store.samples(np.arange(store.size)[::-1], takes)
    for name, values in everything.items():
        assert np.array_equal(values, expected[name][::-1]), name


def test_the_v2_arrays_are_read_the_fast_way(v2_shaped: Path) -> None:
    store = SampleStore.open(v2_shaped)
    assert sorted(store.arrays) == ["bands_10m", "bands_20m", "bands_60m", "bands_s1", "reference_map"]  # fmt: skip
    assert {a.length for a in store.arrays.values()} == {16}
    s1, maps = store.arrays["bands_s1"], store.arrays["reference_map"]
    assert (s1.dtype, s1.bands, s1.sample_shape) == ("<f4", ("VV", "VH"), (2, 120, 120))
    assert (maps.dtype, maps.bands, maps.sample_shape) == ("<u2", None, (120, 120))
    assert store.tables == ("labels19", "patch_id")
    group = zarr.open_group(v2_shaped, mode="r")
    assert np.array_equal(store.table("labels19"), group["labels19"][...])
    assert store.table("patch_id").tolist() == np.asarray(group["patch_id"][...]).tolist()


def test_band_subsets(v2_shaped: Path) -> None:
    store = SampleStore.open(v2_shaped)
    takes = [Take(store.arrays["bands_10m"], (2, 1, 0)), Take(store.arrays["bands_s1"], (1,)),
             Take(store.arrays["bands_20m"], (3,))]  # fmt: skip
    b10, s1, b20 = (
        full(v2_shaped, "bands_10m"),
        full(v2_shaped, "bands_s1"),
        full(v2_shaped, "bands_20m"),
    )
    one = store.sample(33, takes)
    assert np.array_equal(one["bands_10m"], b10[33][[2, 1, 0]])
    assert np.array_equal(one["bands_s1"], s1[33][[1]]) and one["bands_s1"].shape == (1, 120, 120)
    assert np.array_equal(one["bands_20m"], b20[33][[3]])
    many = store.samples(np.array(PICKS), takes)
    assert np.array_equal(many["bands_10m"], b10[PICKS][:, [2, 1, 0]])
    assert np.array_equal(many["bands_s1"], s1[PICKS][:, [1]])


def test_each_shard_index_is_read_once(small_shards: Path) -> None:
    store = SampleStore.open(small_shards)
    takes = [Take(store.arrays[n]) for n in ("bands_10m", "bands_60m")]
    for i in range(16):  # the whole first shard, sample by sample
        store.sample(i, takes)
    assert store.requests == 2 * 16 + 2  # one range per array and sample, one index per array
    store.samples(np.arange(16, 60), takes)  # the other three shards: an index each, then
    assert store.requests == 2 * 16 + 2 + 2 * 3 + 2 * 44  # locally one read per chunk
    store.samples(np.arange(0, 60), takes)
    assert store.requests == 2 * 16 + 2 + 2 * 3 + 2 * 44 + 2 * 60  # no index read again


def test_a_corrupt_shard_index_is_refused(small_shards: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.zarr"
    shutil.copytree(small_shards, copy)
    shard = copy / "bands_20m" / "c" / "1" / "0" / "0" / "0"
    data = bytearray(shard.read_bytes())
    data[-10] ^= 0xFF  # inside the index, before its checksum
    shard.write_bytes(bytes(data))
    store = SampleStore.open(copy)
    takes = [Take(store.arrays["bands_20m"])]
    assert np.array_equal(store.sample(3, takes)["bands_20m"], full(small_shards, "bands_20m")[3])
    with pytest.raises(StoreError, match=r"bands_20m/c/1/0/0/0: shard index checksum mismatch"):
        store.sample(20, takes)


def test_a_missing_shard_reads_as_the_fill_value_like_zarr_only_while_unfinished(
    small_shards: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "copy.zarr"
    shutil.copytree(small_shards, copy)
    (copy / "bands_60m" / "c" / "2" / "0" / "0" / "0").unlink()
    takes = [Take(SampleStore.open(copy).arrays["bands_60m"])]
    with pytest.raises(StoreError, match=r"bands_60m/c/2/0/0/0: shard missing from a store marked"):
        SampleStore.open(copy).samples(np.arange(60), takes)
    zarr.open_group(copy, mode="r+").attrs["complete"] = False  # as while the ingest runs
    store = SampleStore.open(copy)
    expected = full(copy, "bands_60m")
    assert int(expected[32:48].max()) == 0 and int(expected[:32].max()) > 0
    assert np.array_equal(store.samples(np.arange(60), takes)["bands_60m"], expected)
    assert np.array_equal(store.sample(40, takes)["bands_60m"], expected[40])


def test_other_layouts_are_read_through_zarr(small_shards: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.zarr"
    shutil.copytree(small_shards, copy)
    group = zarr.open_group(copy, mode="r+")
    other = group.create_array(
        "cloud_mask", shape=(60, 30, 30), chunks=(7, 30, 30), dtype="uint8",
        dimension_names=["sample", "y", "x"],
    )  # fmt: skip
    other[...] = np.random.default_rng(1).integers(0, 3, (60, 30, 30), dtype=np.uint8)
    consolidate(copy)
    store = SampleStore.open(copy)
    assert store.arrays["cloud_mask"].length is None
    assert shard_length(zarr.open_array(copy, path="cloud_mask")) is None
    assert shard_length(zarr.open_array(copy, path="bands_60m")) == 16
    takes = [Take(store.arrays["cloud_mask"]), Take(store.arrays["bands_60m"])]
    expected = full(copy, "cloud_mask")
    assert np.array_equal(store.sample(45, takes)["cloud_mask"], expected[45])
    assert np.array_equal(store.samples(np.array(PICKS), takes)["cloud_mask"], expected[PICKS])


def test_pickles_without_its_caches(small_shards: Path) -> None:
    store = SampleStore.open(small_shards)
    takes = [Take(a) for a in store.arrays.values()]
    before = store.sample(21, takes)
    store.table("labels")
    copy = pickle.loads(pickle.dumps(store))
    assert len(pickle.dumps(store)) < 10_000  # metadata only: no indexes, tables or files
    after = copy.sample(21, takes)
    assert all(np.array_equal(before[n], after[n]) for n in before)
    assert copy.requests == 3 + 3  # its own indexes (read again), then one range per array


def test_not_an_ingest_store(tmp_path: Path, small_shards: Path) -> None:
    with pytest.raises(StoreError, match=r"missing\.zarr: not a Zarr v3 store"):
        SampleStore.open(tmp_path / "missing.zarr")
    copy = tmp_path / "copy.zarr"
    shutil.copytree(small_shards, copy)
    del zarr.open_group(copy, mode="r+")["patch_id"]
    consolidate(copy)
    with pytest.raises(StoreError, match="no patch_id array"):
        SampleStore.open(copy)


def test_a_store_on_s3_reads_the_same_values_in_few_requests(v2_shaped: Path, s3: S3Server) -> None:
    url = upload(s3, v2_shaped, "samples.zarr")
    store = SampleStore.open(StoreLocation(url, s3.storage_options))
    local = SampleStore.open(v2_shaped)
    takes = [Take(a) for a in store.arrays.values()]
    assert [t.array for t in takes] == list(local.arrays.values())
    expected = {name: full(v2_shaped, name) for name in store.arrays}
    first = store.sample(5, takes)
    assert store.requests == 5 + 5  # 5 shard indexes (one batch), then 5 ranges (one batch)
    for name, values in first.items():
        assert np.array_equal(values, expected[name][5])
    for i in range(6, 16):
        store.sample(i, takes)
    assert store.requests == 10 + 5 * 10  # indexes cached: one range per array
    many = store.samples(np.array(PICKS), takes)
    for name, values in many.items():
        assert np.array_equal(values, expected[name][PICKS]), name
    assert store.table("patch_id").tolist() == local.table("patch_id").tolist()


def test_a_written_v2_store_reads_what_went_into_it(v2_store: Any) -> None:
    """The reBEN-like store the v2 writer makes (S1, reference maps, shards of 4)."""
    store = SampleStore.open(v2_store.path)
    assert set(store.arrays) == set(v2_store.pixels)
    assert all(a.length is not None for a in store.arrays.values())  # all read the fast way
    takes = [Take(a) for a in store.arrays.values()]
    for i in range(store.size):
        for name, values in store.sample(i, takes).items():
            assert np.array_equal(values, v2_store.pixels[name][i]), (name, i)
    order = np.arange(store.size)[::-1]
    for name, values in store.samples(order, takes).items():
        assert np.array_equal(values, v2_store.pixels[name][order]), name


def test_the_zstd_chunk_decoder_equals_blosc_and_leaves_the_rest_to_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from numcodecs import blosc

    from ingest.read import decoding

    rng = np.random.default_rng(4)
    smooth = (rng.normal(1500, 40, (4, 120, 120)).cumsum(axis=2) % 4000).astype(np.uint16)
    cases = [  # (values, compressor, shuffle, blocksize, fast path expected)
        (smooth, "zstd", blosc.BITSHUFFLE, 0, True),
        (rng.normal(-15, 5, (2, 120, 120)).astype(np.float32), "zstd", blosc.BITSHUFFLE, 0, True),
        (smooth[:2, :20, :20], "zstd", blosc.SHUFFLE, 0, True),
        (smooth[0, :40, :40], "zstd", blosc.NOSHUFFLE, 0, True),
        (rng.integers(0, 2**16, (4, 64, 64)).astype(np.uint16), "zstd", blosc.NOSHUFFLE, 0, False),
        (smooth, "zstd", blosc.BITSHUFFLE, 1 << 14, False),  # several blocks
        (smooth, "lz4", blosc.BITSHUFFLE, 0, False),
        (smooth[:1, :2, :2], "zstd", blosc.BITSHUFFLE, 0, False),  # tiny: stored as it is
    ]
    calls: list[int] = []
    zstandard_decompress = decoding.zstandard.ZstdDecompressor.decompress

    def counting(self: Any, data: Any, **options: Any) -> bytes:
        calls.append(1)
        return zstandard_decompress(self, data, **options)  # type: ignore[no-any-return]

    monkeypatch.setattr(decoding.zstandard.ZstdDecompressor, "decompress", counting)
    decoder = decoding.Decoder()
    for values, cname, shuffle, blocksize, fast in cases:
        chunk = blosc.compress(values.tobytes(), cname.encode(), 3, shuffle, blocksize)
        for source in (chunk, memoryview(bytearray(b"xx" + chunk))[2:]):
            calls.clear()
            out = np.empty_like(values)
            decoder.decode(source, out)
            assert np.array_equal(out, values), (cname, shuffle, blocksize)
            assert bool(calls) is fast, (cname, shuffle, blocksize)
    chunk = bytearray(blosc.compress(smooth.tobytes(), b"zstd", 3, blosc.BITSHUFFLE))
    chunk[40:48] = b"\xff" * 8  # corrupt zstd data: blosc itself reports it
    with pytest.raises(RuntimeError):
        decoder.decode(bytes(chunk), np.empty_like(smooth))
    with pytest.raises((RuntimeError, ValueError)):  # a destination of another size
        decoder.decode(blosc.compress(smooth.tobytes(), b"zstd", 3, 2), np.empty(10, np.uint16))

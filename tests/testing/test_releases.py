"""Release samples (``ingest.testing.releases``), read back with tarfile, zstandard, tifffile and
pyarrow: layouts, member order, tar headers, real bytes, metadata, wrappings."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import tarfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import tifffile
import zstandard
from isal import igzip

from ingest.nomenclature import BANDS
from ingest.testing.release_data import (
    example_s1_patches,
    metadata_resources,
    official_s1_of,
    real_v2_files,
)
from ingest.testing.releases import ReleaseSample, write_release_sample
from ingest.testing.samples import example_files, real_patches

V2_MTIME = 1704067200  # 2024-01-01T00:00:00Z
BAND_FILES = [f"_{b}.tif" for b in sorted(BANDS)]  # B01 … B09, B11, B12, B8A


def raw_tar(parts: Sequence[Path]) -> bytes:
    """The tar stream of an archive given as its parts, decompressed by its suffix."""
    data = b"".join(p.read_bytes() for p in parts)
    name = parts[0].name
    if ".tar.zst" in name:
        return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    if ".tar.gz" in name:
        return igzip.decompress(data)  # type: ignore[no-any-return]
    return data


def members(parts: Sequence[Path]) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    with tarfile.open(fileobj=io.BytesIO(raw_tar(parts)), mode="r:") as tar:
        return [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar]  # type: ignore[union-attr]


def headers(tar: bytes) -> list[tuple[str, bytes, int, int, int, bytes]]:
    """(name field, type flag, uid, gid, mtime, magic) of every 512-byte header, in order."""
    found, at = [], 0
    while at + 512 <= len(tar) and tar[at : at + 512] != b"\0" * 512:
        block = tar[at : at + 512]
        size = int(block[124:136].strip(b"\0 ") or b"0", 8)
        found.append(
            (
                block[:100].rstrip(b"\0").decode(),
                block[156:157],
                int(block[108:116].strip(b"\0 ") or b"0", 8),
                int(block[116:124].strip(b"\0 ") or b"0", 8),
                int(block[136:148].strip(b"\0 ") or b"0", 8),
                block[257:265],
            )
        )
        at += 512 + -(-size // 512) * 512
    return found


def check_md5sums(sample: ReleaseSample, directory: Path) -> None:
    listed = dict(reversed(line.split("  ", 1)) for line in sample.md5sums.read_text().splitlines())
    files = [*sample.s2, *sample.s1, *sample.reference_maps, *sample.metadata]
    assert sorted(listed) == sorted(f.name for f in files)
    for file in files:
        assert listed[file.name] == hashlib.md5(file.read_bytes()).hexdigest()
    assert {p.name for p in directory.iterdir() if p.is_file()} == {*listed, "MD5SUMS"}


# --- zenodo-v1 --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def v1_real(tmp_path_factory: pytest.TempPathFactory) -> ReleaseSample:
    return write_release_sample(
        tmp_path_factory.mktemp("v1-real"), layout="zenodo-v1", real=True, s1=True
    )


def test_v1_real_s2_archive_is_zenodos_layout_with_the_wheels_bytes(v1_real: ReleaseSample) -> None:
    assert [p.name for p in v1_real.s2] == ["BigEarthNet-S2-v1.0.tar.gz"]
    found = members(v1_real.s2)
    expected: list[tuple[str, bytes | None]] = [("BigEarthNet-v1.0", None)]
    for patch, files in example_files("BigEarthNet-S2-Example.tar.bz2"):
        expected.append((f"BigEarthNet-v1.0/{patch}", None))
        for kind, data in files:
            ext = "json" if kind == "labels_metadata" else "tif"
            expected.append((f"BigEarthNet-v1.0/{patch}/{patch}_{kind}.{ext}", data))
    assert [(m.name, data) for m, data in found] == expected
    assert [m.isdir() for m, _ in found] == [data is None for _, data in expected]
    assert len(found) == 1 + 6 * 14
    assert v1_real.patches == tuple(p.name for p in real_patches())
    assert headers(raw_tar(v1_real.s2))[0][5] == b"ustar  \0"  # GNU tar


def test_v1_real_s1_archive_and_pairing(v1_real: ReleaseSample) -> None:
    assert [p.name for p in v1_real.s1] == ["BigEarthNet-S1-v1.0.tar.gz"]
    found = members(v1_real.s1)
    assert found[0][0].name == "BigEarthNet-S1-v1.0" and found[0][0].isdir()
    wheel = {p.name: p for p in example_s1_patches()}
    files = [(m.name, data) for m, data in found if m.isfile()]
    assert len(files) == 18
    for name, data in files:
        _, s1, file = name.split("/")
        kind = file.removeprefix(f"{s1}_").split(".")[0]
        assert data == wheel[s1].files[kind]
    pairs = {
        s2: json.loads(wheel[s1].files["labels_metadata"])["corresponding_s2_patch"]
        for s2, s1 in v1_real.s1_of.items()
    }
    assert all(s2 == corresponding for s2, corresponding in pairs.items())
    assert dict(v1_real.s1_of) == official_s1_of(v1_real.patches)
    assert set(v1_real.s1_of) == set(v1_real.patches)


def test_v1_real_originals_hold_every_file_at_its_archive_path(v1_real: ReleaseSample) -> None:
    assert v1_real.originals is not None
    for part in (v1_real.s2, v1_real.s1):
        for info, data in members(part):
            if data is not None:
                assert (v1_real.originals / info.name).read_bytes() == data
    assert sum(1 for p in v1_real.originals.rglob("*") if p.is_file()) == 6 * 13 + 6 * 3
    check_md5sums(v1_real, v1_real.s2[0].parent)


@pytest.fixture(scope="module")
def v1_synthetic(tmp_path_factory: pytest.TempPathFactory) -> ReleaseSample:
    return write_release_sample(
        tmp_path_factory.mktemp("v1-syn"), layout="zenodo-v1", patches=15, seed=3, s1=True
    )


def test_v1_synthetic_json_and_tiffs_are_in_the_real_format(v1_synthetic: ReleaseSample) -> None:
    found = members(v1_synthetic.s2)
    real_json = real_patches()[0].metadata
    b02 = set()
    for info, data in found:
        if info.name.endswith("_labels_metadata.json"):
            document = json.loads(data)  # type: ignore[arg-type]
            assert list(document) == list(real_json)
            assert list(document["coordinates"]) == ["ulx", "uly", "lrx", "lry"]
            assert document["coordinates"]["ulx"] + 1200 == document["coordinates"]["lrx"]
            assert document["projection"].startswith('PROJCS["WGS 84 / UTM zone ')
            assert (
                document["tile_source"].endswith(".SAFE") and "_MSIL1C_" in document["tile_source"]
            )
            assert (
                len(document["acquisition_date"]) == 19 and document["acquisition_date"][10] == " "
            )
            assert json.dumps(document).encode() == data
        elif info.name.endswith("_B02.tif"):
            b02.add(hashlib.md5(data).digest())  # type: ignore[arg-type]
            with tifffile.TiffFile(io.BytesIO(data)) as tif:  # type: ignore[arg-type]
                assert tif.pages[0].rowsperstrip == 34 and tif.pages[0].dtype == np.uint16
    assert len(b02) == 15  # never copies of one file
    # A patch's files are contiguous, right after its folder entry.
    folders = [m.name for m, _ in found if m.isdir()][1:]
    assert [f.split("/")[1] for f in folders] == list(v1_synthetic.patches)


def test_v1_synthetic_s1_is_float32_db_in_s1_name_order(v1_synthetic: ReleaseSample) -> None:
    found = members(v1_synthetic.s1)
    folders = [m.name.split("/")[1] for m, _ in found[1:] if m.isdir()]
    assert found[0][0].name == "BigEarthNet-S1-v1.0"
    assert folders == sorted(v1_synthetic.s1_of.values())
    assert folders != [v1_synthetic.s1_of[p] for p in v1_synthetic.patches]
    for info, data in found:
        assert data is None or info.name.split("/")[1] in info.name.split("/")[2]
        if info.name.endswith(".tif"):
            with tifffile.TiffFile(io.BytesIO(data)) as tif:  # type: ignore[arg-type]
                page = tif.pages[0]
                pixels = page.asarray()
                assert (page.dtype, page.shape, page.rowsperstrip) == (np.float32, (120, 120), 17)
                assert len(data) == 58024  # type: ignore[arg-type]
            low, high = (-25, 7) if info.name.endswith("_VV.tif") else (-37, -6)
            assert low <= pixels.min() < pixels.max() <= high
        elif info.name.endswith(".json"):
            document = json.loads(data)  # type: ignore[arg-type]
            assert list(document) == [
                "labels",
                "coordinates",
                "projection",
                "corresponding_s2_patch",
                "scene_source",
                "acquisition_time",
            ]
            assert list(document["coordinates"]) == ["ulx", "uly", "lrx", "lly"]
            s1 = info.name.split("/")[1]
            assert v1_synthetic.s1_of[document["corresponding_s2_patch"]] == s1
            assert s1.split("_")[-2:] == document["corresponding_s2_patch"].split("_")[-2:]


# --- reben-v2 ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def v2_real(tmp_path_factory: pytest.TempPathFactory) -> ReleaseSample:
    return write_release_sample(
        tmp_path_factory.mktemp("v2-real"),
        layout="reben-v2",
        real=True,
        s1=True,
        reference_maps=True,
    )


def test_v2_archives_are_gnu_tars_as_the_real_ones(v2_real: ReleaseSample) -> None:
    for parts in (v2_real.s2, v2_real.s1, v2_real.reference_maps):
        data = parts[0].read_bytes()
        assert zstandard.get_frame_parameters(data).has_checksum
        decompressor = zstandard.ZstdDecompressor().decompressobj()
        tar = decompressor.decompress(data)
        assert decompressor.eof and decompressor.unused_data == b""  # exactly one frame
        found = headers(tar)
        assert len(found) % 2 == 0
        for long_name, member in zip(found[::2], found[1::2], strict=True):
            assert long_name[:2] == ("././@LongLink", b"L")
            _, kind, uid, gid, mtime, magic = member
            assert (kind, uid, gid, mtime, magic) == (b"0", 0, 0, V2_MTIME, b"ustar  \0")
        names = [m.name for m, _ in members(parts)]
        assert all(len(n) > 100 for n in names)
        assert names == sorted(names) or parts is v2_real.s1
        assert all(m.isfile() for m, _ in members(parts))  # no directory entries


def test_v2_real_s2_layout_ids_and_bytes(v2_real: ReleaseSample) -> None:
    found = members(v2_real.s2)
    assert len(v2_real.patches) == 9 and len(found) == 9 * 12
    for k, patch in enumerate(v2_real.patches):
        tile = patch.rsplit("_", 2)[0]
        assert [m.name for m, _ in found[12 * k : 12 * k + 12]] == [
            f"BigEarthNet-S2/{tile}/{patch}/{patch}{b}" for b in BAND_FILES
        ]
    by_name = {m.name: data for m, data in found}
    real = real_v2_files()
    for path, data in real.items():
        if path.startswith("BigEarthNet-S2/"):
            assert by_name[path] == data  # the real v2 patch, byte for byte
    # The six v1 examples under their v2 ids (T93020 became T093019), with their real pixels.
    v2_ids = {
        p.rsplit("_", 2)[0].split("_")[2] + "_" + "_".join(p.split("_")[-2:])
        for p in v2_real.patches
    }
    assert "20170924T093019_69_24" in v2_ids
    assert "S2B_MSIL2A_20170924T093019_N9999_R136_T35VPK_69_24" in v2_real.patches
    example = {p.name: p for p in real_patches()}["S2B_MSIL2A_20170924T93020_69_24"]
    for band in BANDS:
        data = by_name[
            f"BigEarthNet-S2/S2B_MSIL2A_20170924T093019_N9999_R136_T35VPK/S2B_MSIL2A_20170924T093019_N9999_R136_T35VPK_69_24/S2B_MSIL2A_20170924T093019_N9999_R136_T35VPK_69_24_{band}.tif"
        ]
        np.testing.assert_array_equal(
            tifffile.imread(io.BytesIO(data)), tifffile.imread(io.BytesIO(example.bands[band]))
        )
        # v1 sizes plus the GDAL_NODATA entry; the 10 m bands' strip counts became SHORTs.
        assert len(data) == {29192: 29196, 7560: 7572, 1160: 1172}[len(example.bands[band])]
    assert v2_real.originals is not None
    assert sum(1 for p in v2_real.originals.rglob("*.tif")) == 7 * 12 + 7 * 2 + 1


def test_v2_real_s1_and_maps(v2_real: ReleaseSample) -> None:
    s1 = members(v2_real.s1)
    names = [m.name for m, _ in s1]
    assert names == sorted(names)
    s1_names = [n.split("/")[2] for n in names[::2]]
    assert [n.rsplit("_", 1)[1] for n in names] == ["VH.tif", "VV.tif"] * 9
    assert s1_names != [v2_real.s1_of[p] for p in v2_real.patches]  # S1 order is not S2 order
    assert sorted(s1_names) == sorted(v2_real.s1_of.values())
    by_name = {m.name: data for m, data in s1}
    real = real_v2_files()
    wheel = {p.name: p for p in example_s1_patches()}
    assert v2_real.originals is not None
    for name, data in by_name.items():
        s1_name = name.split("/")[2]
        folder = name.split("/")[1]
        assert folder == "_".join(s1_name.split("_")[:5])
        if name in real:
            assert data == real[name]
        elif s1_name in wheel:
            assert data == wheel[s1_name].files[name.rsplit("_", 1)[1][:2]]
        else:
            assert not (v2_real.originals / name).exists()
            continue
        assert (v2_real.originals / name).read_bytes() == data
    maps = members(v2_real.reference_maps)
    assert [m.name.split("/")[2] for m, _ in maps] == list(v2_real.patches)
    for info, data in maps:
        if info.name in real:
            assert data == real[info.name]
        pixels = tifffile.imread(io.BytesIO(data))  # type: ignore[arg-type]
        assert pixels.dtype == np.uint16 and pixels.shape == (120, 120) and pixels.min() > 100


def test_v2_real_metadata_keeps_the_official_schema_and_split(v2_real: ReleaseSample) -> None:
    official = []
    for resource in metadata_resources():
        with resource.open("rb") as raw:
            official.append(pq.read_table(raw))
    ours = [pq.read_table(p) for p in v2_real.metadata]
    assert [p.name for p in v2_real.metadata] == [
        "metadata.parquet",
        "metadata_for_patches_with_snow_cloud_or_shadow.parquet",
    ]
    for table, reference in zip(ours, official, strict=True):
        assert table.schema.equals(reference.schema)
    assert sorted(ours[0]["patch_id"].to_pylist() + ours[1]["patch_id"].to_pylist()) == sorted(
        v2_real.patches
    )
    assert ours[1]["patch_id"].to_pylist() == [
        "S2B_MSIL2A_20180204T094159_N9999_R036_T35VPK_57_38"
    ]  # the snowy one
    assert ours[1]["contains_seasonal_snow"].to_pylist() == [True]
    rows = {r["patch_id"]: r for t in ours for r in t.to_pylist()}
    assert {rows[p]["s1_name"] for p in v2_real.patches} == set(v2_real.s1_of.values())
    check_md5sums(v2_real, v2_real.s2[0].parent)


@pytest.fixture(scope="module")
def v2_synthetic(tmp_path_factory: pytest.TempPathFactory) -> ReleaseSample:
    return write_release_sample(
        tmp_path_factory.mktemp("v2-syn"),
        layout="reben-v2",
        patches=40,
        seed=7,
        s1=True,
        reference_maps=True,
    )


def test_v2_synthetic_uses_real_ids_and_the_full_metadata(v2_synthetic: ReleaseSample) -> None:
    digests = [hashlib.md5(p.read_bytes()).hexdigest() for p in v2_synthetic.metadata]
    assert digests == ["55687065e77b6d0b0f1ff604a6e7b49c", "fe31856f4986d446c9468b59d6387c91"]
    rows = {
        r["patch_id"]: r
        for p in v2_synthetic.metadata
        for r in pq.read_table(p, columns=["patch_id", "s1_name"]).to_pylist()
    }
    assert len(rows) == 549_488
    assert all(rows[p]["s1_name"] == v2_synthetic.s1_of[p] for p in v2_synthetic.patches)
    assert (
        list(v2_synthetic.patches) == sorted(v2_synthetic.patches)
        and len(set(v2_synthetic.patches)) == 40
    )
    s2 = members(v2_synthetic.s2)
    for info, data in s2[::12]:
        pid = info.name.split("/")[2]
        h, v = (int(n) for n in pid.split("_")[-2:])
        with tifffile.TiffFile(io.BytesIO(data)) as tif:  # type: ignore[arg-type]
            keys = tif.pages[0].tags[34735].value
            x, y = tif.pages[0].tags[33922].value[3:5]
        zone = int(pid.split("_")[5][1:3])
        assert keys[-5] == 32600 + zone
        assert (x % 100_000 in (0, 99_960, 99_980)) or (
            (x - 1200 * h) % 100_000 in (0, 99_960, 99_980)
        )
        assert (y + 1200 * v) % 100_000 == 0
    s1 = [m.name.split("/")[2] for m, _ in members(v2_synthetic.s1)][::2]
    assert s1 == sorted(v2_synthetic.s1_of.values())
    maps = [m.name.split("/")[2] for m, _ in members(v2_synthetic.reference_maps)]
    assert maps == list(v2_synthetic.patches)
    assert v2_synthetic.originals is None


def test_v2_orders_and_determinism(tmp_path: Path, v2_synthetic: ReleaseSample) -> None:
    sample = write_release_sample(
        tmp_path, layout="reben-v2", patches=40, seed=7, s1=True, reference_maps=True,
        s1_order="reversed", maps_order="shuffled",
    )  # fmt: skip
    assert sample.s2[0].read_bytes() == v2_synthetic.s2[0].read_bytes()  # deterministic
    s1 = [m.name.split("/")[2] for m, _ in members(sample.s1)][::2]
    assert s1 == sorted(sample.s1_of.values(), reverse=True)
    maps = [m.name.split("/")[2] for m, _ in members(sample.reference_maps)]
    assert sorted(maps) == list(sample.patches) and maps != list(sample.patches)


@pytest.mark.parametrize(
    ("compression", "suffix"), [("gzip", ".tar.gz"), ("none", ".tar"), ("zstd", ".tar.zst")]
)
def test_wrappings_split_parts_concatenate_to_the_whole(
    tmp_path: Path, compression: str, suffix: str
) -> None:
    whole = write_release_sample(
        tmp_path / "whole", layout="zenodo-v1", patches=6, compression=compression
    )  # type: ignore[arg-type]
    split = write_release_sample(
        tmp_path / "split", layout="zenodo-v1", patches=6, compression=compression, parts=3
    )  # type: ignore[arg-type]
    assert [p.name for p in split.s2] == [
        f"BigEarthNet-S2-v1.0{suffix}{s}" for s in ("aa", "ab", "ac")
    ]
    assert b"".join(p.read_bytes() for p in split.s2) == whole.s2[0].read_bytes()
    assert not (tmp_path / "split" / f"BigEarthNet-S2-v1.0{suffix}").exists()
    sizes = [p.stat().st_size for p in split.s2]
    assert sizes[0] == sizes[1] >= sizes[2] > 0
    assert members(split.s2) and [m.name for m, _ in members(split.s2)] == [
        m.name for m, _ in members(whole.s2)
    ]
    check_md5sums(split, tmp_path / "split")


def test_renamed_files(tmp_path: Path) -> None:
    sample = write_release_sample(
        tmp_path,
        layout="reben-v2",
        real=True,
        s1=True,
        reference_maps=True,
        names="renamed",
        compression="gzip",
    )
    assert [p.name for p in (*sample.s2, *sample.s1, *sample.reference_maps, *sample.metadata)] == [
        "sample-s2.tar.gz", "sample-s1.tar.gz", "sample-reference-maps.tar.gz",
        "sample-metadata.parquet", "sample-metadata-snow-cloud-shadow.parquet",
    ]  # fmt: skip
    assert headers(raw_tar(sample.s2))[0][:2] == ("././@LongLink", b"L")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"layout": "zenodo-v1"}, "either real=True or patches=N"),
        ({"layout": "zenodo-v1", "real": True, "patches": 3}, "either real=True or patches=N"),
        ({"layout": "zenodo-v1", "real": True, "reference_maps": True}, "only in reben-v2"),
        ({"layout": "zenodo-v2", "real": True}, "layout must be"),
        ({"layout": "reben-v2", "real": True, "compression": "bz2"}, "compression must be"),
        ({"layout": "reben-v2", "real": True, "s1_order": "sorted"}, "s1_order must be"),
        ({"layout": "reben-v2", "real": True, "parts": 0}, "parts must be"),
        ({"layout": "reben-v2", "patches": 549_489}, "patches must be between 1 and 549488"),
    ],
)
def test_bad_options_are_refused(tmp_path: Path, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        write_release_sample(tmp_path, **kwargs)  # type: ignore[arg-type]


# --- size and memory --------------------------------------------------------------------------

_BUILD = """
import json, resource, sys
from pathlib import Path
from ingest.testing.releases import write_release_sample
sample = write_release_sample(Path(sys.argv[1]), layout="reben-v2", patches=int(sys.argv[2]), seed=1)
print(json.dumps({"rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "bytes": sample.s2[0].stat().st_size}))
"""


def build_in_subprocess(directory: Path, patches: int) -> dict[str, int]:
    done = subprocess.run(
        [sys.executable, "-c", _BUILD, str(directory), str(patches)],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, int] = json.loads(done.stdout)
    return result


def test_synthetic_v2_compresses_plausibly_in_constant_memory(tmp_path: Path) -> None:
    small = build_in_subprocess(tmp_path / "n2000", 2000)
    big = build_in_subprocess(tmp_path / "n8000", 8000)
    tar_bytes = 0
    with (tmp_path / "n2000" / "BigEarthNet-S2.tar.zst").open("rb") as raw:
        reader = zstandard.ZstdDecompressor().stream_reader(raw)
        while chunk := reader.read(1 << 20):
            tar_bytes += len(chunk)
    ratio = tar_bytes / small["bytes"]
    print(f"N=2000 S2 tar {tar_bytes:,} B -> zstd {small['bytes']:,} B, ratio {ratio:.2f}; "
          f"peak RSS N=2000 {small['rss_kb'] / 1024:.0f} MiB, N=8000 {big['rss_kb'] / 1024:.0f} MiB")  # fmt: skip
    # Real: S2 ≈ 102 GB of tar in 63.25 GB (1.6); the real patches of the sample give ≈ 1.3.
    assert 1.15 < ratio < 1.8
    assert tar_bytes > 2000 * 12 * 1172
    assert big["bytes"] > 3.5 * small["bytes"]
    assert big["rss_kb"] - small["rss_kb"] < 40 * 1024  # four times the patches, flat memory

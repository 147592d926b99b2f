"""decode_geotiff against rasterio and tifffile on the real files, other layouts, and bad input."""

from __future__ import annotations

import functools
import io
import random
import struct
import sys
import tarfile
from importlib.resources import files
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pytest
import rasterio
import tifffile
from rasterio.transform import Affine

from ingest.decode import geotiff as decode
from ingest.decode.geotiff import Raster, decode_geotiff
from ingest.errors import InputDataError
from ingest.testing.geotiff import Layout, encode_band
from tests.decode.tiffs import DOUBLE, Tiff, band

B02 = "S2A_MSIL2A_20170613T101031_87_48_B02.tif"
B01 = "S2A_MSIL2A_20170613T101031_87_48_B01.tif"


@functools.cache
def real_bands() -> dict[str, bytes]:
    """Every band file of the six real example patches, by file name."""
    archive = files("bigearthnet_common").joinpath("BigEarthNet-S2-Example.tar.bz2").read_bytes()
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:bz2") as tar:
        return {
            PurePosixPath(member.name).name: tar.extractfile(member).read()  # type: ignore[union-attr]
            for member in tar.getmembers()
            if member.name.endswith(".tif")
        }


def reencode(member: str, layout: Layout) -> bytes:
    """A real band's pixels and georeferencing, as read by tifffile, in another layout."""
    page = tifffile.TiffFile(io.BytesIO(real_bands()[member])).pages.first
    scale, tiepoint = page.tags[33550].value, page.tags[33922].value
    epsg = page.tags[34735].value[27]  # ProjectedCSType, the 7th key of every real directory
    return encode_band(
        page.asarray(), epsg=epsg, x_ul=tiepoint[3], y_ul=tiepoint[4], gsd=scale[0], layout=layout
    )


def assert_matches_rasterio(raster: Raster, data: bytes, path: Path) -> None:
    path.write_bytes(data)
    with rasterio.open(path) as src:
        np.testing.assert_array_equal(raster.pixels, src.read(1))
        assert raster.epsg == src.crs.to_epsg()
        assert (raster.x_ul, raster.y_ul) == (src.transform.c, src.transform.f)
        assert raster.pixel_size == (src.transform.a, -src.transform.e)


def assert_well_formed(raster: Raster) -> None:
    pixels = raster.pixels
    assert pixels.ndim == 2
    assert pixels.dtype == np.uint16
    assert pixels.dtype.isnative
    assert pixels.flags.c_contiguous
    assert not pixels.flags.writeable
    assert type(raster.epsg) is int
    assert all(type(v) is float for v in (raster.x_ul, raster.y_ul, *raster.pixel_size))


@pytest.mark.parametrize("member", sorted(real_bands()))
def test_real_file_matches_rasterio_and_tifffile(member: str, tmp_path: Path) -> None:
    data = real_bands()[member]
    raster = decode_geotiff(data, member)
    assert_well_formed(raster)
    np.testing.assert_array_equal(raster.pixels, tifffile.imread(io.BytesIO(data)))
    assert_matches_rasterio(raster, data, tmp_path / member)


@pytest.mark.parametrize("layout", ["cog", "bigendian"])
@pytest.mark.parametrize("member", sorted(real_bands()))
def test_other_layouts_match_rasterio(member: str, layout: Layout, tmp_path: Path) -> None:
    data = reencode(member, layout)
    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        page = tif.pages.first
        if layout == "cog":
            assert page.is_tiled
            assert page.compression == tifffile.COMPRESSION.ADOBE_DEFLATE
        else:
            assert tif.byteorder == ">"
            assert not page.is_tiled
    raster = decode_geotiff(data, member)
    assert_well_formed(raster)
    np.testing.assert_array_equal(raster.pixels, decode_geotiff(real_bands()[member], "").pixels)
    assert_matches_rasterio(raster, data, tmp_path / member)


@pytest.mark.parametrize(
    ("layout", "fallback"), [("stripped", False), ("bigendian", False), ("cog", True)]
)
def test_only_non_stripped_files_go_through_tifffile(
    layout: Layout, fallback: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    general = decode.decode_with_tifffile

    def spy(buf: bytes | memoryview, name: str, *wanted: Any) -> Raster:
        calls.append(name)
        return general(buf, name, *wanted)

    monkeypatch.setattr(decode, "decode_with_tifffile", spy)
    decode_geotiff(reencode(B02, layout), B02)
    assert calls == ([B02] if fallback else [])


def test_memoryview_input_gives_pixels_that_do_not_alias_it() -> None:
    data = real_bands()[B02]
    buffer = bytearray(b"junk" + data)
    raster = decode_geotiff(memoryview(buffer)[4:], B02)
    buffer[4:] = bytes(len(data))
    np.testing.assert_array_equal(raster.pixels, decode_geotiff(data, B02).pixels)
    assert_well_formed(raster)


def patched(data: bytes, tag: int, values: tuple[int, ...]) -> bytes:
    """``data`` with the out-of-line values of a LONG or SHORT tag replaced (same count)."""
    entry = tifffile.TiffFile(io.BytesIO(data)).pages.first.tags[tag]
    code = {3: "H", 4: "I"}[entry.dtype]
    new = struct.pack(f"<{len(values)}{code}", *values)
    return data[: entry.valueoffset] + new + data[entry.valueoffset + len(new) :]


def test_scattered_strips_are_gathered(tmp_path: Path) -> None:
    data = real_bands()[B02]
    page = tifffile.TiffFile(io.BytesIO(data)).pages.first
    offsets, counts = page.dataoffsets, page.databytecounts
    head = data[: offsets[0]]
    strips = [data[o : o + c] for o, c in zip(offsets, counts, strict=True)]
    # Write the strips in reverse order and point StripOffsets at their new places.
    moved, at = {}, len(head)
    for i in reversed(range(len(strips))):
        moved[i], at = at, at + len(strips[i])
    scattered = patched(head + b"".join(reversed(strips)), 273, tuple(moved[i] for i in range(4)))
    raster = decode_geotiff(scattered, B02)
    np.testing.assert_array_equal(raster.pixels, decode_geotiff(data, B02).pixels)
    assert_matches_rasterio(raster, scattered, tmp_path / "scattered.tif")


def test_pixel_is_point_moves_the_corner_by_half_a_pixel(tmp_path: Path) -> None:
    data = real_bands()[B01]
    geokeys = tifffile.TiffFile(io.BytesIO(data)).pages.first.tags[34735].value
    assert geokeys[8:12] == (1025, 0, 1, 1)
    point = patched(data, 34735, (*geokeys[:11], 2, *geokeys[12:]))
    area, raster = decode_geotiff(data, B01), decode_geotiff(point, B01)
    assert (raster.x_ul, raster.y_ul) == (area.x_ul - 30, area.y_ul + 30)
    assert_matches_rasterio(raster, point, tmp_path / "point.tif")


def geotiff_with_tifffile(pixels: np.ndarray, **options: Any) -> bytes:
    """A GeoTIFF in EPSG:32633, corner (400000, 5000000), 60 m pixels, of any dtype or layout."""
    geokeys = (1, 1, 0, 2, 1024, 0, 1, 1, 3072, 0, 1, 32633)
    extratags = [
        (33550, "d", 3, (60.0, 60.0, 0.0), True),
        (33922, "d", 6, (0.0, 0.0, 0.0, 400_000.0, 5_000_000.0, 0.0), True),
        (34735, "H", len(geokeys), geokeys, True),
    ]
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, pixels, metadata=None, extratags=extratags, **options)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "options", [{"bigtiff": True}, {"rowsperstrip": 1}, {"compression": "zlib", "predictor": 2}]
)
def test_other_tifffile_layouts_decode(options: dict[str, Any]) -> None:
    pixels = np.arange(400, dtype=np.uint16).reshape(20, 20)
    raster = decode_geotiff(geotiff_with_tifffile(pixels, **options), "band.tif")
    np.testing.assert_array_equal(raster.pixels, pixels)
    assert (raster.epsg, raster.x_ul, raster.y_ul, raster.pixel_size) == (
        32633,
        400_000.0,
        5_000_000.0,
        (60.0, 60.0),
    )


@pytest.mark.parametrize("compress", ["none", "deflate", "packbits"])
def test_gdal_written_files_decode(compress: str, tmp_path: Path) -> None:
    path = tmp_path / "gdal.tif"
    pixels = np.arange(3600, dtype=np.uint16).reshape(60, 60)
    profile = {"driver": "GTiff", "width": 60, "height": 60, "count": 1, "dtype": "uint16"}
    transform = Affine(20.0, 0.0, 399_960.0, 0.0, -20.0, 5_000_040.0)
    with rasterio.open(
        path, "w", **profile, crs="EPSG:32633", transform=transform, compress=compress
    ) as dst:
        dst.write(pixels, 1)
    raster = decode_geotiff(path.read_bytes(), "gdal.tif")
    np.testing.assert_array_equal(raster.pixels, pixels)
    assert (raster.epsg, raster.x_ul, raster.y_ul, raster.pixel_size) == (
        32633,
        399_960.0,
        5_000_040.0,
        (20.0, 20.0),
    )


def user_defined_crs() -> bytes:
    data = real_bands()[B01]
    geokeys = tifffile.TiffFile(io.BytesIO(data)).pages.first.tags[34735].value
    return patched(data, 34735, (*geokeys[:27], 32767, *geokeys[28:]))


def geokeys_past_the_end() -> bytes:
    data = real_bands()[B01]
    entry = tifffile.TiffFile(io.BytesIO(data)).pages.first.tags[34735].offset
    return data[: entry + 8] + struct.pack("<I", 2000) + data[entry + 12 :]


ERRORS: dict[str, tuple[Any, str]] = {
    "html": (lambda: b"<!DOCTYPE html><html><body>Access denied</body></html>", "not a TIFF file (starts with b'<!DO')"),
    "empty": (lambda: b"", "not a TIFF file (no bytes)"),
    "cut in a strip": (lambda: real_bands()[B02][:20_000], "truncated TIFF: strip 2 ends at byte 24872 of 20000"),
    "cut in the IFD": (lambda: real_bands()[B02][:100], "truncated TIFF: IFD ends at byte 194 of 100"),
    "cut before the strips": (lambda: real_bands()[B01][:300], "truncated TIFF: strip 0 ends at byte 1160 of 300"),
    "geokeys past the end": (geokeys_past_the_end, "truncated TIFF: tag 34735 ends at byte 2064 of 1160"),
    "int16": (lambda: geotiff_with_tifffile(np.zeros((20, 20), np.int16)), "dtype int16, expected uint16"),
    "float32": (lambda: geotiff_with_tifffile(np.zeros((20, 20), np.float32)), "dtype float32, expected uint16"),
    "uint8": (lambda: geotiff_with_tifffile(np.zeros((20, 20), np.uint8)), "dtype uint8, expected uint16"),
    "rgb": (lambda: geotiff_with_tifffile(np.zeros((20, 20, 3), np.uint16), photometric="rgb"), "unsupported TIFF: shape (20, 20, 3), expected 2-D"),
    "no geo tags": (lambda: tifffile_plain(np.zeros((20, 20), np.uint16)), "no GeoTIFF georeferencing (ModelTiepoint missing)"),
    "user-defined crs": (user_defined_crs, "GeoKeys hold a user-defined CRS (32767), not an EPSG code"),
    "cut cog": (lambda: reencode(B02, "cog")[:5_000], "cannot decode TIFF (compression ADOBE_DEFLATE): Error -5 while decompressing data: incomplete or truncated stream"),
}  # fmt: skip


def tifffile_plain(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, pixels, metadata=None)
    return buffer.getvalue()


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_bad_input_is_an_input_data_error_naming_the_member(case: str) -> None:
    make, problem = ERRORS[case]
    member = "BigEarthNet-v1.0/S2A_MSIL2A_20170613T101031_87_48/band.tif"
    with pytest.raises(InputDataError) as caught:
        decode_geotiff(make(), member)
    assert caught.value.culprit == member
    assert caught.value.problem == problem
    assert "\n" not in str(caught.value)


def test_every_truncation_of_a_real_file_is_an_input_data_error() -> None:
    data = real_bands()[B01]
    for end in range(len(data)):
        with pytest.raises(InputDataError) as caught:
            decode_geotiff(data[:end], B01)
        assert caught.value.culprit == B01


def test_corrupt_headers_never_raise_anything_else() -> None:
    rng = random.Random(0)
    sources = [
        real_bands()[B02],
        real_bands()[B01],
        reencode(B01, "cog"),
        reencode(B01, "bigendian"),
    ]
    decoded, rejected = 0, []
    for _ in range(3_000):
        data = bytearray(rng.choice(sources))
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(min(len(data), 700))] = rng.randrange(256)
        try:
            decode_geotiff(bytes(data), "member.tif")
            decoded += 1
        except InputDataError as exc:
            rejected.append(exc)
    assert decoded > 300
    assert len(rejected) > 300
    assert {exc.culprit for exc in rejected} == {"member.tif"}
    assert not [exc for exc in rejected if "\n" in str(exc)]


@pytest.mark.skipif(sys.byteorder != "little", reason="the check assumes a little-endian host")
def test_fast_path_returns_a_view_of_bytes_input() -> None:
    data = real_bands()[B02]
    assert np.shares_memory(decode_geotiff(data, B02).pixels, np.frombuffer(data, np.uint8))


def _fresh(data: bytes, name: str) -> Raster:
    decode._RECENT.clear()
    return decode_geotiff(data, name)


def _same(a: Raster, b: Raster) -> None:
    np.testing.assert_array_equal(a.pixels, b.pixels)
    assert (a.pixels.dtype, a.pixels.flags.writeable) == (b.pixels.dtype, b.pixels.flags.writeable)
    assert (a.epsg, a.x_ul, a.y_ul, a.pixel_size) == (b.epsg, b.x_ul, b.y_ul, b.pixel_size)


@pytest.mark.parametrize("layout", ["real", "bigendian"])
def test_a_repeated_header_decodes_as_a_fresh_parse(layout: str) -> None:
    """Band files after the first of their size reuse its parse when their header bytes are the
    same: pixels of their own, georeferencing and errors as a fresh parse gives them."""
    bands = real_bands()
    if layout == "bigendian":
        bands = {m: reencode(m, "bigendian") for m in sorted(bands)[:24]}
    decode._RECENT.clear()
    for member in sorted(bands):  # the patches' bands, in archive order
        _same(decode_geotiff(bands[member], member), _fresh(bands[member], member))
    data = bands[sorted(bands)[0]]
    first = decode_geotiff(data, "a.tif")
    # Same size, same header, other pixels: the pixels of the new file.
    other = bytearray(data)
    other[-2:] = b"\x12\x34"
    _same(decode_geotiff(bytes(other), "b.tif"), _fresh(bytes(other), "b.tif"))
    # Same size, the tiepoint moved: a different header, parsed afresh.
    decode_geotiff(data, "a.tif")
    tiepoint = tifffile.TiffFile(io.BytesIO(data)).pages.first.tags[33922]
    at = tiepoint.valueoffset + 24  # the x of (i, j, k, x, y, z)
    bo = "<" if data[:2] == b"II" else ">"
    x = struct.pack(bo + "d", struct.unpack_from(bo + "d", data, at)[0] + 120.0)
    moved = data[:at] + x + data[at + 8 :]
    assert decode_geotiff(moved, "c.tif").x_ul != first.x_ul
    _same(decode_geotiff(moved, "c.tif"), _fresh(moved, "c.tif"))
    # A damaged header after a good one of the same size is still an error.
    decode_geotiff(data, "a.tif")
    broken = bytearray(data)
    broken[8:10] = b"\xff\xff"
    with pytest.raises(InputDataError):
        decode_geotiff(bytes(broken), "d.tif")


def _scale_inside_tiepoint(x_ul: float) -> bytes:
    """A file whose ModelPixelScale entry points into its ModelTiepoint values (x, y, z): two
    tags read the same bytes, so a moved tiepoint changes the pixel size too."""
    data = bytearray(Tiff(band(0), x_ul=x_ul).encode())
    (count,) = struct.unpack_from("<H", data, 8)
    entries = {struct.unpack_from("<H", data, 10 + 12 * k)[0]: 10 + 12 * k for k in range(count)}
    (tiepoint,) = struct.unpack_from("<I", data, entries[33922] + 8)
    struct.pack_into("<I", data, entries[33550] + 8, tiepoint + 24)
    return bytes(data)


def test_a_moved_tiepoint_reuses_the_parse_only_when_nothing_else_reads_its_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The next patch's band of the same size differs from the last one only in its tiepoint: its
    parse is the last one's, moved (3 of a patch's 12 bands). Not when another tag's values share
    those bytes (a crafted file): then it is parsed afresh."""
    parses: list[str] = []
    fast = decode._decode_fast
    monkeypatch.setattr(decode, "_decode_fast", lambda buf, bo, name, *a: parses.append(name)
                        or fast(buf, bo, name, *a))  # fmt: skip
    decode._RECENT.clear()
    a, b = Tiff(band(1), x_ul=500_000.0).encode(), Tiff(band(2), x_ul=501_200.0).encode()
    assert len(a) == len(b)
    decode_geotiff(a, "a.tif")
    moved = decode_geotiff(b, "b.tif")
    assert parses == ["a.tif"]
    assert (moved.x_ul, moved.y_ul, moved.pixel_size) == (501_200.0, 5_000_000.0, (10.0, 10.0))
    _same(moved, _fresh(b, "b.tif"))
    parses.clear()
    decode._RECENT.clear()
    c, d = _scale_inside_tiepoint(500_000.0), _scale_inside_tiepoint(501_200.0)
    assert decode_geotiff(c, "c.tif").pixel_size == (500_000.0, 5_000_000.0)
    shared = decode_geotiff(d, "d.tif")
    assert parses == ["c.tif", "d.tif"]
    assert shared.pixel_size == (501_200.0, 5_000_000.0)
    _same(shared, _fresh(d, "d.tif"))


def _tiepoint_over_the_header(width: int) -> bytes:
    """A crafted file with entries of tags 0 and 1 (no TIFF tag has those numbers) and its
    ModelTiepoint values at byte 0: over the header and the IFD's first entries."""
    extra = {0: (DOUBLE, [1.0, 2.0]), 1: (DOUBLE, [3.0, 4.0])}
    data = bytearray(Tiff(band(0), extra=extra, width=width).encode())
    (count,) = struct.unpack_from("<H", data, 8)
    entries = {struct.unpack_from("<H", data, 10 + 12 * k)[0]: 10 + 12 * k for k in range(count)}
    struct.pack_into("<I", data, entries[33922] + 8, 0)
    return bytes(data)


def _outcome(data: bytes, name: str) -> Raster | str:
    try:
        return decode_geotiff(data, name)
    except InputDataError as error:
        return error.problem


def test_a_tiepoint_over_the_header_never_reuses_a_parse() -> None:
    """Entries numbered like the reserved ranges must not hide the header and the IFD from the
    overlap check: the width, in the tiepoint's bytes here, then changes the parse."""
    decode._RECENT.clear()
    first = _outcome(_tiepoint_over_the_header(120), "a.tif")
    assert isinstance(first, Raster)
    other = _tiepoint_over_the_header(60)
    seen = _outcome(other, "b.tif")
    decode._RECENT.clear()
    fresh = _outcome(other, "b.tif")
    if isinstance(fresh, Raster):
        assert isinstance(seen, Raster)
        _same(seen, fresh)
    else:
        assert seen == fresh

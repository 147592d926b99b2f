"""Crafted band files (issue 19, findings 1–3): negative and float strip offsets, overlapping
strips with an absurd declared size, Deflate bombs on the fast path and on the tifffile path.
Each is an InputDataError naming the member, decided before anything large is allocated."""

from __future__ import annotations

import lzma
import subprocess
import sys
import tracemalloc
import zlib
from collections.abc import Callable

import numpy as np
import pytest

from ingest.archive.members import ArchiveItem
from ingest.decode.geotiff import decode_geotiff
from ingest.decode.partners import decode_reference_map, decode_s1
from ingest.errors import InputDataError
from tests.decode.tiffs import FLOAT, LONG, SHORT, SLONG, Tiff, band

SHAPE = (120, 120)


def peak_of(action: Callable[[], object]) -> tuple[BaseException | None, int]:
    tracemalloc.start()
    caught: BaseException | None = None
    try:
        action()
    except BaseException as exc:
        caught = exc
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return caught, peak


def decode_partner(data: bytes, dtype: str | np.dtype[np.generic]) -> np.ndarray:
    """Decode ``data`` as the ingest does: an S1 band (float32) or a reference map (uint16), both
    120 × 120. The members are named ``c/p/VV.tif`` and ``c/p/reference_map.tif``."""
    if np.dtype(dtype) == np.float32:
        s1 = np.empty((2, *SHAPE), np.float32)
        decode_s1(ArchiveItem("c", "p", {"VV.tif": data, "VH.tif": data}), s1)
        return s1[0]
    out = np.empty(SHAPE, np.uint16)
    decode_reference_map(ArchiveItem("c", "p", {"reference_map.tif": data}), out)
    return out


# --- finding 1: signed strip offsets -----------------------------------------------------------


@pytest.mark.parametrize("dtype", ["u2", "f4"])
@pytest.mark.parametrize("shift", [-32, -8])
def test_a_negative_strip_offset_is_refused_never_read_before_the_buffer(
    dtype: str, shift: int
) -> None:
    """Before: an SLONG offset of -32 decoded into the bytes object's own header (process memory
    written into the store)."""
    pixels = band(1, dtype=dtype)
    data = Tiff(pixels, offsets_type=SLONG, edit_offsets=lambda offsets: [shift]).encode()
    with pytest.raises(InputDataError, match=r"^c/p/(VV|reference_map)\.tif: "):
        decode_partner(data, pixels.dtype)


def test_float_strip_offsets_are_refused() -> None:
    pixels = band(2)
    data = Tiff(pixels, offsets_type=FLOAT, edit_offsets=lambda o: [-32.5]).encode()
    with pytest.raises(InputDataError, match=r"^c/p/reference_map\.tif: "):
        decode_partner(data, np.uint16)


def test_signed_offsets_that_are_right_still_decode_through_tifffile() -> None:
    pixels = band(3)
    data = Tiff(pixels, offsets_type=SLONG).encode()
    assert np.array_equal(decode_partner(data, np.uint16), pixels)


def test_an_offset_of_minus_a_billion_does_not_kill_the_process() -> None:
    """Before: SIGSEGV. In a child process, so that the old behaviour fails this test only."""
    code = (
        "import numpy as np\n"
        "from tests.decode.tiffs import Tiff, band, SLONG\n"
        "from tests.decode.test_hostile_geotiff import decode_partner\n"
        "from ingest.errors import InputDataError\n"
        "data = Tiff(band(4), offsets_type=SLONG, edit_offsets=lambda o: [-1_000_000_000])"
        ".encode()\n"
        "try:\n"
        "    decode_partner(data, np.uint16)\n"
        "except InputDataError as exc:\n"
        "    print('refused:', exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert done.stdout.startswith("refused: c/p/reference_map.tif: "), done.stdout


# --- finding 2: overlapping strips, declared size ----------------------------------------------


def overlapping(height: int, width: int) -> bytes:
    """``height`` strips of one row, all pointing at the same few bytes: a small file declaring
    ``height * width`` pixels."""
    row = bytes(2 * width)
    return Tiff(band(5), rows=1, height=height, width=width, strips=[row],
                edit_offsets=lambda o: o * height,
                edit_counts=lambda c: c * height).encode()  # fmt: skip


def test_overlapping_strips_of_a_huge_declared_image_allocate_nothing() -> None:
    """Before: a 128 KiB file allocated 1 GiB (larger ones raised numpy's MemoryError)."""
    data = overlapping(16_384, 32_768)
    assert len(data) < 200_000
    caught, peak = peak_of(lambda: decode_partner(data, np.uint16))
    assert isinstance(caught, InputDataError), caught
    assert str(caught) == "c/p/reference_map.tif: shape (16384, 32768), expected (120, 120)"
    assert peak < 4 << 20
    caught, peak = peak_of(lambda: decode_geotiff(data, "B01.tif"))  # no shape: MAX_PIXELS
    assert isinstance(caught, InputDataError), caught
    assert "(16384, 32768) is too large" in str(caught)
    assert peak < 4 << 20


def test_overlapping_strips_beyond_memory_are_an_input_error_too() -> None:
    """Before: numpy's _ArrayMemoryError, which --on-error skip could not skip."""
    data = overlapping(65_535, 4_000_000)
    with pytest.raises(InputDataError, match="expected"):
        decode_partner(data, np.uint16)


def test_the_declared_size_is_checked_before_decoding() -> None:
    pixels = band(6, (60, 60))
    data = Tiff(pixels).encode()
    with pytest.raises(InputDataError, match=r"^B05\.tif: shape \(60, 60\), expected \(120, 120\)"):
        decode_geotiff(data, "B05.tif", np.uint16, SHAPE)
    with pytest.raises(InputDataError, match=r"^c/p/reference_map\.tif: shape \(60, 60\)"):
        decode_partner(data, np.uint16)
    assert np.array_equal(decode_geotiff(data, "B05.tif", np.uint16, (60, 60)).pixels, pixels)


def test_more_strips_than_the_image_has_go_to_tifffile() -> None:
    pixels = band(7)
    extra_strip = [*Tiff(pixels, rows=40).stored_strips(), bytes(10)]
    data = Tiff(pixels, rows=40, strips=extra_strip).encode()
    assert np.array_equal(decode_partner(data, np.uint16), pixels)


def test_a_tag_of_millions_of_values_is_refused() -> None:
    """A GeoKeyDirectory of 4 million SHORTs (8 MB) would become 4 million Python ints."""
    pixels = band(8)
    keys = [1, 1, 0, 1, 3072, 0, 1, 32633] + [0] * 4_000_000
    data = Tiff(pixels, extra={34735: (SHORT, keys)}).encode()
    caught, peak = peak_of(lambda: decode_partner(data, np.uint16))
    assert isinstance(caught, InputDataError), caught
    assert peak < 4 << 20


# --- finding 3: Deflate bombs ------------------------------------------------------------------


def bomb(size: int, codec: str = "zlib") -> bytes:
    """``size`` zero bytes, compressed."""
    if codec == "lzma":
        return lzma.compress(bytes(size), preset=0)
    compressor = zlib.compressobj(9)
    chunk = bytes(1 << 20)
    out = [compressor.compress(chunk) for _ in range(size >> 20)]
    return b"".join([*out, compressor.flush()])


@pytest.fixture(scope="module")
def bomb_256m() -> bytes:
    return bomb(256 << 20)


@pytest.mark.parametrize("predictor", [1, 2])
def test_a_deflate_bomb_in_a_reference_map_stops_at_the_image_size(
    bomb_256m: bytes, predictor: int
) -> None:
    """Before: a strip inflating to 2 GiB drove a run to 4.5 GiB of RSS, and succeeded. Here
    256 MiB, with the peak measured: the inflater stops one byte past the 28,800 of the map."""
    data = Tiff(band(9), deflate=True, predictor=predictor, strips=[bomb_256m]).encode()
    for decode in (lambda: decode_partner(data, np.uint16), lambda: decode_geotiff(data, "m")):
        caught, peak = peak_of(decode)
        assert isinstance(caught, InputDataError), caught
        assert "Deflate strip 0 inflates beyond its 28,800 bytes" in str(caught)
        assert peak < 2 << 20


def test_deflate_strips_that_together_exceed_the_image_are_refused() -> None:
    pixels = band(10)
    (whole,) = Tiff(pixels, deflate=True).stored_strips()
    data = Tiff(pixels, rows=60, deflate=True, strips=[whole, whole]).encode()  # 2 × the image
    with pytest.raises(InputDataError, match=r"^c/p/reference_map\.tif: .*inflates beyond"):
        decode_partner(data, np.uint16)


def test_a_truncated_deflate_strip_is_corrupt() -> None:
    pixels = band(11)
    (strip,) = Tiff(pixels, deflate=True).stored_strips()
    data = Tiff(pixels, deflate=True, strips=[strip[:-40]]).encode()
    with pytest.raises(InputDataError, match="corrupt Deflate strip"):
        decode_geotiff(data, "map.tif", np.uint16, SHAPE)


@pytest.mark.parametrize("codec", ["zlib", "lzma"])
def test_a_bomb_on_the_tifffile_path_is_bounded_too(bomb_256m: bytes, codec: str) -> None:
    """Float32 Deflate (and any LZMA) goes through tifffile, whose decoders inflate without a
    bound when imagecodecs is absent: each segment is measured first, bounded."""
    pixels = band(12, dtype="f4")
    payload = bomb_256m if codec == "zlib" else bomb(64 << 20, "lzma")
    extra = {} if codec == "zlib" else {259: (SHORT, [34925])}
    data = Tiff(pixels, deflate=True, strips=[payload], extra=extra).encode()
    caught, peak = peak_of(lambda: decode_partner(data, np.float32))
    assert isinstance(caught, InputDataError), caught
    assert str(caught).startswith("c/p/VV.tif: ")
    assert "inflates beyond its 57,600 bytes" in str(caught)
    assert peak < 4 << 20


def test_valid_files_on_the_tifffile_path_still_decode() -> None:
    pixels = band(13, dtype="f4")
    for extra in ({}, {259: (SHORT, [34925])}):
        strips = None
        if extra:
            strips = [lzma.compress(pixels.astype("<f4").tobytes())]
        data = Tiff(pixels, deflate=True, strips=strips, extra=extra).encode()
        assert np.array_equal(decode_partner(data, np.float32), pixels)


def test_a_huge_tile_on_the_tifffile_path_is_refused() -> None:
    """Tiles larger than the image (here 65,536 × 65,536) would make tifffile allocate one."""
    pixels = band(14)
    data = Tiff(pixels, extra={322: (LONG, [65536]), 323: (LONG, [65536]),
                               324: (LONG, [0]), 325: (LONG, [100])}).encode()  # fmt: skip
    caught, peak = peak_of(lambda: decode_partner(data, np.uint16))
    assert isinstance(caught, InputDataError), caught
    assert peak < 4 << 20

"""Fuzzing the GeoTIFF decoder (:mod:`ingest.decode.geotiff`) against tifffile, then rasterio.

Seeds: Sentinel-2 uint16 bands as the real files are laid out (120, 60 and 20 px), big-endian
and tiled Deflate ones (the tifffile path), Sentinel-1 float32 bands, reference maps (uint16,
Deflate, with and without the horizontal predictor) and LZMA / float Deflate files (the tifffile
path's bounded inflaters). Mutations go where the decoder looks: an IFD entry's tag, type, count
and value or offset, the arrays those offsets point at, the header's IFD offset, the pixel data,
and the file's length. Each case either decodes to what tifffile (or, where tifffile fails,
rasterio) reads, pixels and georeferencing, or is an InputDataError naming the member.
"""

from __future__ import annotations

import io
import lzma
import random
import struct
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pytest
import rasterio
import tifffile
from rasterio.io import MemoryFile

from ingest.decode.geotiff import Raster, decode_geotiff
from ingest.errors import InputDataError
from ingest.testing.geotiff import encode_band
from tests.decode.tiffs import SHORT, Tiff, band
from tests.fuzz.kit import (
    Outcomes,
    bounded,
    choose,
    describe,
    flip_bits,
    interesting_int,
    put_int,
    truncate_or_extend,
)

pytestmark = pytest.mark.usefixtures("traced")

TAGS = (256, 257, 258, 259, 273, 277, 278, 279, 284, 317, 322, 323, 324, 325, 339, 33550, 33922,
        34735)  # fmt: skip
TYPES = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 16, 0, 99)


@dataclass(frozen=True)
class Seed:
    label: str
    data: bytes
    dtype: npt.DTypeLike
    shape: tuple[int, int]


def seeds(rng: random.Random) -> list[Seed]:
    out = []
    for size, gsd in ((120, 10.0), (60, 20.0), (20, 60.0)):
        pixels = band(rng.randrange(1000), (size, size))
        for layout in ("stripped", "cog", "bigendian"):
            data = encode_band(pixels, epsg=32633, x_ul=500_000.0, y_ul=5_000_040.0, gsd=gsd,
                               layout=layout)  # type: ignore[arg-type]  # fmt: skip
            out.append(Seed(f"s2-{layout}-{size}", data, np.uint16, (size, size)))
    s1 = band(rng.randrange(1000), dtype="f4")
    for bo in "<>":
        for rows in (None, 34, 1):
            out.append(Seed(f"s1-{bo}-{rows}", Tiff(s1, bo=bo, rows=rows).encode(), np.float32,
                            (120, 120)))  # fmt: skip
    maps = band(rng.randrange(1000))
    for predictor in (1, 2):
        for rows in (None, 17):
            data = Tiff(maps, deflate=True, predictor=predictor, rows=rows).encode()
            out.append(Seed(f"map-p{predictor}-{rows}", data, np.uint16, (120, 120)))
    out.append(Seed("s1-deflate", Tiff(s1, deflate=True).encode(), np.float32, (120, 120)))
    lz = [lzma.compress(s1.astype("<f4").tobytes())]
    out.append(Seed("s1-lzma", Tiff(s1, deflate=True, strips=lz, extra={259: (SHORT, [34925])})
                    .encode(), np.float32, (120, 120)))  # fmt: skip
    return out


def entries(data: bytes) -> tuple[str, list[int]]:
    """The byte order and the offsets of the first IFD's 12-byte entries (none if unparsable)."""
    bo = {b"II": "<", b"MM": ">"}.get(data[:2], "<")
    try:
        (ifd,) = struct.unpack_from(bo + "I", data, 4)
        (count,) = struct.unpack_from(bo + "H", data, ifd)
    except struct.error:
        return bo, []
    return bo, [ifd + 2 + 12 * i for i in range(count) if ifd + 14 + 12 * i <= len(data)]


def mutate(seed: Seed, rng: random.Random) -> bytes:
    data = bytearray(seed.data)
    bo, spots = entries(seed.data)
    order = "little" if bo == "<" else "big"
    for _ in range(rng.randint(1, 2)):
        kind = choose(rng, [(3, "value"), (1.5, "count"), (1, "type"), (0.7, "tag"),
                            (1.5, "array"), (1, "pixels"), (0.5, "header"), (1, "shape")])  # fmt: skip
        if not spots or kind == "header":
            put_int(data, 4, 4, interesting_int(rng, [len(data), 8]), order)
            continue
        at = rng.choice(spots)
        if kind == "value":
            size = rng.choice((2, 4))
            put_int(data, at + 8, size, interesting_int(rng, [len(data), 0, 120, 60, 20]), order)
        elif kind == "count":
            put_int(data, at + 4, 4, interesting_int(rng, [1, 2, 4, 6, 120]), order)
        elif kind == "type":
            put_int(data, at + 2, 2, rng.choice(TYPES), order)
        elif kind == "tag":
            put_int(data, at, 2, rng.choice(TAGS), order)
        elif kind == "array":  # the out-of-line values the entry points at (offsets, counts, geo)
            (pointer,) = struct.unpack_from(bo + "I", data, at + 8)
            flip_bits(data, rng, pointer, pointer + 64)
        elif kind == "pixels":
            flip_bits(data, rng, len(data) // 2, len(data))
        elif kind == "shape":
            return truncate_or_extend(bytes(data), rng)
    return bytes(data)


def geokeys(directory: object) -> dict[int, int]:
    """The GeoKeys stored in the directory itself (tifffile's own reading of all the keys gives
    up on an unrelated bad citation), version 1 only, as the GeoTIFF specification has it."""
    values = [int(v) for v in np.asarray(directory).ravel()]
    assert values[0] == 1, values[:4]
    keys = {}
    for i in range(values[3]):
        key, location, _, value = values[4 + 4 * i : 8 + 4 * i]
        if location == 0:
            keys.setdefault(key, value)
    return keys


def reference(data: bytes, dtype: np.dtype[np.generic]) -> tuple[np.ndarray, tuple[float, ...]]:
    """Pixels and (epsg, x_ul, y_ul, sx, sy) as tifffile reads them, else rasterio."""
    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            page = tif.pages.first
            pixels = page.asarray(maxworkers=1)
            if pixels.ndim == 3 and pixels.shape[-1] == 1:  # one sample, as RGB or palette
                pixels = pixels[..., 0]
            scale = page.tags["ModelPixelScaleTag"].value
            tie = page.tags["ModelTiepointTag"].value
            keys = geokeys(page.tags["GeoKeyDirectoryTag"].value)
            epsg = keys.get(3072) or keys.get(2048)
            is_point = keys.get(1025, 1) == 2
            x, y = tie[3] - tie[0] * scale[0], tie[4] + tie[1] * scale[1]
            if is_point:
                x, y = x - scale[0] / 2, y + scale[1] / 2
            geo = (float(int(epsg)), float(x), float(y), float(scale[0]), float(scale[1]))
            assert pixels.dtype == dtype, pixels.dtype
            return pixels, geo
    except Exception:
        pass
    with MemoryFile(data) as memory, memory.open() as src:
        pixels = src.read(1)
        transform = src.transform
        geo = (float(src.crs.to_epsg()), transform.c, transform.f, transform.a, -transform.e)
        assert pixels.dtype == dtype, pixels.dtype
        return pixels, geo


def test_fuzz_geotiff_decoder(fuzz_cases: int, fuzz_rng: random.Random, outcomes: Outcomes) -> None:
    chosen = seeds(fuzz_rng)
    for case in range(fuzz_cases):
        seed = fuzz_rng.choice(chosen)
        data = mutate(seed, fuzz_rng)
        what = f"case {case} ({seed.label}, {len(data)} bytes)"
        raster, error = bounded(
            lambda: decode_geotiff(data, "B02.tif", seed.dtype, seed.shape),  # noqa: B023
            what, outcomes,
        )  # fmt: skip
        if error is not None:
            assert isinstance(error, InputDataError), f"{what}: {describe(error)}"
            assert str(error).startswith("B02.tif: "), f"{what}: {error}"
            outcomes.add("refused")
            continue
        assert isinstance(raster, Raster)
        try:
            pixels, geo = reference(data, np.dtype(seed.dtype))
        except Exception as exc:
            raise AssertionError(f"{what}: decoded, but no independent reader reads it: "
                                 f"{describe(exc)}") from exc  # fmt: skip
        assert raster.pixels.shape == seed.shape and pixels.shape == seed.shape, what
        np.testing.assert_array_equal(raster.pixels, pixels, err_msg=what)
        ours = (float(raster.epsg), raster.x_ul, raster.y_ul, *raster.pixel_size)
        np.testing.assert_allclose(ours, geo, rtol=0, atol=1e-6, err_msg=what)
        outcomes.add(f"decoded {seed.label.split('-')[0]}")
    assert outcomes.counts["refused"] and sum(outcomes.counts.values()) > outcomes.counts["refused"]


__all__ = ["rasterio"]

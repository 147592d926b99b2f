"""The decompressed stream under every archive: zstd frames (several, skippable, cut short) and the
bound on what one piece of hostile input can make the reader hold."""

from __future__ import annotations

import io
import os

import pytest
import zstandard

from ingest.errors import InputDataError
from ingest.sources import decompress
from ingest.sources.decompress import open_decompressed


def zstd_of_zeros(size: int) -> bytes:
    """One zstd frame of ``size`` zero bytes (compressed ~32,000 to 1), made in 1 MiB pieces."""
    compressor = zstandard.ZstdCompressor(level=3).compressobj()
    zeros = bytes(1 << 20)
    parts = [compressor.compress(zeros) for _ in range(size >> 20)]
    return b"".join(parts) + compressor.flush()


def skippable(payload: bytes) -> bytes:
    return (0x184D2A53).to_bytes(4, "little") + len(payload).to_bytes(4, "little") + payload


def test_a_zstd_bomb_comes_out_in_bounded_pieces() -> None:
    bomb = zstd_of_zeros(256 << 20)
    assert len(bomb) < 64 << 10  # 256 MiB from a few KB
    pieces = decompress._decompress_frames(io.BytesIO(bomb), "bomb.tar.zst")
    sizes = [len(p) for p in pieces]
    # zstandard's decompressobj returned the whole 256 MiB from the first call (measured)
    assert max(sizes) <= decompress._OUTPUT
    assert sum(sizes) == 256 << 20


def test_frames_and_skippable_frames_read_as_one_stream() -> None:
    one, two = os.urandom(3 << 20), b"tar" * 100_000
    data = (
        skippable(b"seekable index")
        + zstandard.ZstdCompressor().compress(one)
        + skippable(b"")
        + zstandard.ZstdCompressor(level=9).compress(two)
    )
    with open_decompressed(io.BytesIO(data), "two.tar.zst") as stream:
        assert stream.read() == one + two


@pytest.mark.parametrize("keep", [0.5, 0.999])
def test_a_frame_cut_short_is_an_error_naming_the_archive(keep: float) -> None:
    data = zstandard.ZstdCompressor().compress(os.urandom(3 << 20))
    cut = data[: int(len(data) * keep)]
    with (
        open_decompressed(io.BytesIO(cut), "cut.tar.zst") as stream,
        pytest.raises(InputDataError) as caught,
    ):
        stream.read()
    assert caught.value.culprit == "cut.tar.zst"
    assert "truncated or corrupt" in str(caught.value)


def test_a_skippable_frame_cut_short_is_an_error() -> None:
    data = zstandard.ZstdCompressor().compress(b"x" * 1000) + skippable(b"y" * 100)[:50]
    stream = open_decompressed(io.BytesIO(data), "cut.tar.zst")
    with stream, pytest.raises(InputDataError, match="frame ends early"):
        stream.read()

"""Bands brought to one size the way each reference pipeline does it, batch-wise, into given arrays.

The two pipelines people compare against resample differently, and a model trained on one and
fed the other sees a shifted input (up to ~270 DN on an upsampled 20 m band of a real patch):

- ConfigILM's ``stack_and_interpolate``: ``torch.nn.functional.interpolate`` on each band as
  float32, ``align_corners=True`` for bilinear and bicubic (:func:`torch_axis`).
- torchgeo's ``BigEarthNetV2``: rasterio ``read(out_shape=..., resampling=bilinear,
  out_dtype="int32")``, i.e. GDAL's half-pixel bilinear, rounded to integers (:func:`gdal_axis`).

Resampling is separable: an :class:`Axis` holds, for every output row (or column), the input
rows it reads and their weights. The kernels run a row pass then a column pass, in float32 with
torch's own order of operations, so that the values are torch's to the bit on the x86-64 CPU
build (which fuses ``a * b + c`` into FMA: it computes ``t0 * w0 + t1 * w1`` as
``fma(t0, w0, t1 * w1)`` and goes on with ``acc = fma(t_k, w_k, acc)`` for more taps, and
computes the cubic coefficients with fused steps; all measured against torch 2.13 in
``tests/read/test_resample.py``). Two known exceptions, both within 1e-3 for values of up to
20,000: bicubic rows and columns whose taps are clamped at the border (torch rounds them
differently, by a few ulps), and outputs of 64 x 64 or less, where torch switches to a
vectorised separable kernel. A torch build without FMA differs by an ulp or two.

Why compiled (numba) and not numpy: gathering and weighting with numpy's fancy indexing took
4.8 ms per 12-band sample (temporaries of the whole batch), torch's own ``interpolate`` 0.04 ms
per band; the fused loops here take well under 0.1 ms per sample, without importing torch
(which stays optional) and releasing the GIL (``nogil``), so a batch can be resampled on the
epoch's reading thread while the training thread runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["INTERPOLATIONS", "Axis", "gdal_axis", "resize_into", "torch_axis"]

#: The interpolation modes of ConfigILM (``upsample_mode``).
INTERPOLATIONS = ("nearest", "bilinear", "bicubic")

_F32 = np.float32
_A = _F32(-0.75)  # torch's cubic convolution coefficient


@dataclass(frozen=True)
class Axis:
    """How one axis of ``size_in`` pixels becomes ``size_out``: for each output position the
    ``taps`` input positions it reads and their weights."""

    kind: str
    """``identity`` (same size), ``nearest``, ``linear`` or ``cubic`` (torch's arithmetic), or
    ``gdal`` (half-pixel bilinear in float64, rounded)."""
    size_in: int
    index: np.ndarray
    """(size_out, taps) int64."""
    weight: np.ndarray
    """(size_out, taps) float32 (float64 for ``gdal``)."""

    @property
    def size_out(self) -> int:
        return int(self.index.shape[0])


def torch_axis(size_in: int, size_out: int, mode: str) -> Axis:
    """``torch.nn.functional.interpolate(mode=mode, align_corners=True)`` for bilinear and
    bicubic (ConfigILM's choice), plain ``nearest`` otherwise, along one axis."""
    if mode not in INTERPOLATIONS:
        raise ValueError(f"unknown interpolation {mode!r} (one of {', '.join(INTERPOLATIONS)})")
    out = np.arange(size_out)
    if size_in == size_out:  # torch copies the band as it is in all three modes
        return Axis(
            "identity", size_in, out[:, None].astype(np.int64), np.ones((size_out, 1), _F32)
        )
    if mode == "nearest":
        # torch: 2x exactly is a shift, otherwise floor(i * (float) in / out), clamped
        if size_out == 2 * size_in:
            index = out >> 1
        else:
            scale = _F32(size_in) / _F32(size_out)
            index = np.minimum(np.floor(out.astype(_F32) * scale).astype(np.int64), size_in - 1)
        return Axis(
            "nearest", size_in, index[:, None].astype(np.int64), np.ones((size_out, 1), _F32)
        )
    scale = _F32(size_in - 1) / _F32(size_out - 1) if size_out > 1 else _F32(0)
    real = out.astype(_F32) * scale
    if mode == "bilinear":
        i0 = real.astype(np.int64)  # truncation, as torch does
        i1 = i0 + (i0 < size_in - 1)
        lam1 = np.clip(real - i0.astype(_F32), _F32(0), _F32(1)).astype(_F32)
        weight = np.stack([_F32(1) - lam1, lam1], axis=1).astype(_F32)
        return Axis("linear", size_in, np.stack([i0, i1], axis=1), weight)
    i0 = np.minimum(np.floor(real).astype(np.int64), size_in - 1)
    t = np.clip(real - i0.astype(_F32), _F32(0), _F32(1)).astype(_F32)
    weight = np.stack(
        [_cubic2(t + _F32(1)), _cubic1(t), _cubic1(_F32(1) - t), _cubic2((_F32(1) - t) + _F32(1))],
        axis=1,
    ).astype(_F32)
    index = np.clip(i0[:, None] - 1 + np.arange(4), 0, size_in - 1).astype(np.int64)
    return Axis("cubic", size_in, index, weight)


def _fma(a: Any, b: Any, c: Any) -> np.ndarray:
    """float32 fused multiply-add (the product is exact in float64)."""
    product = np.asarray(a, np.float64) * np.asarray(b, np.float64)
    return np.asarray(product + np.asarray(c, np.float64), dtype=_F32)


def _cubic1(x: np.ndarray) -> np.ndarray:
    """torch's ``cubic_convolution1``, ``((A + 2) * x - (A + 3)) * x * x + 1`` (not fused)."""
    return np.asarray(((_A + _F32(2)) * x - (_A + _F32(3))) * x * x + _F32(1), dtype=_F32)


def _cubic2(x: np.ndarray) -> np.ndarray:
    """torch's ``cubic_convolution2``, ``((A * x - 5A) * x + 8A) * x - 4A``, as the x86-64 build
    computes it: the first two steps fused."""
    return np.asarray(
        _fma(_fma(_A, x, -(_F32(5) * _A)), x, _F32(8) * _A) * x - _F32(4) * _A, dtype=_F32
    )


def gdal_axis(size_in: int, size_out: int) -> Axis:
    """GDAL's bilinear resampling of a whole band to ``size_out`` (rasterio ``read(out_shape=...,
    resampling=Resampling.bilinear)``): half-pixel centres, source positions outside the band
    clamped to its edge; computed in float64."""
    out = np.arange(size_out, dtype=np.float64)
    real = (out + 0.5) * (size_in / size_out) - 0.5
    real = np.clip(real, 0.0, size_in - 1)
    i0 = np.floor(real).astype(np.int64)
    i1 = np.minimum(i0 + 1, size_in - 1)
    lam1 = real - i0
    weight = np.stack([1.0 - lam1, lam1], axis=1)
    return Axis("gdal", size_in, np.stack([i0, i1], axis=1), weight)


# --- the kernels --------------------------------------------------------------------------------


def resize_into(
    src: np.ndarray,
    dst: np.ndarray,
    y: Axis,
    x: Axis,
    mean: np.ndarray | None = None,
    std: np.ndarray | None = None,
    *,
    rows: Sequence[int] | np.ndarray | None = None,
    channels: Sequence[int] | np.ndarray | None = None,
) -> None:
    """Resample bands of ``src`` (batch, bands, h, w), any real dtype, into channels of ``dst``
    (batch, channels, size_y, size_x) float32, then ``(v - mean) / std`` per band in float32
    (torchvision's ``Normalize``; ``mean``/``std`` by position in ``rows``). ``rows`` are the
    bands of ``src`` to take (default all), ``channels`` the channels of ``dst`` they go to
    (default 0, 1, …). ``gdal`` axes round to integers first (rasterio's ``out_dtype="int32"``).
    Both arrays are used in place when C-contiguous (copied otherwise)."""
    rows = np.arange(src.shape[1]) if rows is None else np.asarray(rows, np.int64)
    channels = np.arange(len(rows)) if channels is None else np.asarray(channels, np.int64)
    if src.ndim != 4 or dst.ndim != 4 or src.shape[0] != dst.shape[0] or len(rows) != len(channels):
        raise ValueError(f"cannot resample {src.shape} into {dst.shape}")
    if (src.shape[2], src.shape[3]) != (y.size_in, x.size_in) or dst.shape[2:] != (
        y.size_out,
        x.size_out,
    ):
        raise ValueError(f"axes for {y.size_in}x{x.size_in} -> {y.size_out}x{x.size_out}, got "
                         f"{src.shape[2:]} -> {dst.shape[2:]}")  # fmt: skip
    if dst.dtype != _F32:
        raise ValueError(f"resampled bands are float32, not {dst.dtype}")
    # the kernels do not check bounds: every index they use is checked here or made by an Axis
    if len(rows) and (rows.min() < 0 or rows.max() >= src.shape[1]):
        raise ValueError(f"rows {rows.tolist()} outside the {src.shape[1]} bands")
    if len(channels) and (channels.min() < 0 or channels.max() >= dst.shape[1]):
        raise ValueError(f"channels {channels.tolist()} outside the {dst.shape[1]} channels")
    m = np.zeros(len(rows), _F32) if mean is None else np.ascontiguousarray(mean, _F32)
    s = np.ones(len(rows), _F32) if std is None else np.ascontiguousarray(std, _F32)
    if len(m) != len(rows) or len(s) != len(rows):
        raise ValueError(f"{len(rows)} bands, {len(m)} means, {len(s)} stds")
    # (v - 0) / 1 is v exactly, so "no normalization" is the same loop
    target = dst if dst.flags.c_contiguous else np.ascontiguousarray(dst)
    source = np.ascontiguousarray(src)
    kernel = _kernels()[_kind(y, x)]
    kernel(source, rows, target, channels, y.index, y.weight, x.index, x.weight, m, s)
    if target is not dst:
        dst[...] = target


def _kind(y: Axis, x: Axis) -> str:
    if y.kind == "gdal" and x.kind == "gdal":
        return "gdal"
    if "gdal" in (y.kind, x.kind):
        raise ValueError(f"cannot combine a {y.kind} axis with a {x.kind} one")
    if y.kind == x.kind == "identity":
        return "copy"
    return "taps"


_KERNELS: dict[str, Callable[..., None]] = {}


def _kernels() -> dict[str, Callable[..., None]]:
    """Compiled on first use (numba caches them on disk beside this module, or in
    ``NUMBA_CACHE_DIR``), so importing ``ingest`` never pays for it."""
    if not _KERNELS:
        _KERNELS.update(_compile())
    return _KERNELS


def _compile() -> dict[str, Callable[..., None]]:
    """One kernel per kind; each fills channel ``ch`` of every sample of ``dst`` from band ``row``
    of ``src``, normalised as it writes. The resampling kernels work on transposed copies so that
    every inner loop runs over contiguous memory without gathers (which LLVM then vectorises;
    gathering made them 3 to 5 times slower): the band transposed (``t``: x, y), the x pass
    writes ``u`` (x_out, y) from rows of ``t``, ``u`` transposed into ``v`` (y, x_out), the y pass
    writes the output rows from rows of ``v``. The arithmetic, and its order, is torch's (or
    GDAL's, in float64, for ``gdal``); transposing moves values without changing them."""
    from numba import njit

    jit = njit(nogil=True, cache=True, fastmath=False, error_model="numpy", boundscheck=False)

    @jit
    def copy(src, rows, dst, chans, iy, wy, ix, wx, ms, ss):  # type: ignore[no-untyped-def]
        for k in range(rows.shape[0]):
            row, ch, m, s = rows[k], chans[k], ms[k], ss[k]
            for b in range(src.shape[0]):
                for i in range(src.shape[2]):
                    line, out = src[b, row, i], dst[b, ch, i]
                    for j in range(src.shape[3]):
                        out[j] = (np.float32(line[j]) - m) / s

    @jit
    def transpose(a, out):  # type: ignore[no-untyped-def]
        # out[c, r] = a[r, c], converted to out's dtype
        for r in range(a.shape[0]):
            for c in range(a.shape[1]):
                out[c, r] = a[r, c]

    @jit
    def combine(rows, index, weight, out, m, s):  # type: ignore[no-untyped-def]
        # out[j] = (torch's weighted sum of rows index[j, :] - m) / s; the sum is
        # fma(r0, w0, r1 * w1), then fma(rk, wk, acc); (x - 0) / 1 is x exactly
        taps = index.shape[1]
        for j in range(index.shape[0]):
            o = out[j]
            r0, w0 = rows[index[j, 0]], weight[j, 0]
            if taps == 1:
                for k in range(o.shape[0]):
                    o[k] = (r0[k] * w0 - m) / s
                continue
            r1, w1, v0 = rows[index[j, 1]], weight[j, 1], np.float64(w0)
            if taps == 2:
                for k in range(o.shape[0]):
                    o[k] = (np.float32(np.float64(r0[k]) * v0 + np.float64(r1[k] * w1)) - m) / s
                continue
            for k in range(o.shape[0]):
                o[k] = np.float32(np.float64(r0[k]) * v0 + np.float64(r1[k] * w1))
            for t in range(2, taps):
                rt, vt = rows[index[j, t]], np.float64(weight[j, t])
                for k in range(o.shape[0]):
                    o[k] = np.float32(np.float64(rt[k]) * vt + np.float64(o[k]))
            for k in range(o.shape[0]):
                o[k] = (o[k] - m) / s

    @jit
    def taps(src, rows, dst, chans, iy, wy, ix, wx, ms, ss):  # type: ignore[no-untyped-def]
        h, w, n = src.shape[2], src.shape[3], ix.shape[0]
        t = np.empty((w, h), np.float32)
        u = np.empty((n, h), np.float32)
        v = np.empty((h, n), np.float32)
        for k in range(rows.shape[0]):
            row, ch, m, s = rows[k], chans[k], ms[k], ss[k]
            for b in range(src.shape[0]):
                transpose(src[b, row], t)
                combine(t, ix, wx, u, np.float32(0), np.float32(1))
                transpose(u, v)
                combine(v, iy, wy, dst[b, ch], m, s)

    @jit
    def gdal(src, rows, dst, chans, iy, wy, ix, wx, ms, ss):  # type: ignore[no-untyped-def]
        h, w, n = src.shape[2], src.shape[3], ix.shape[0]
        t = np.empty((w, h), np.float64)
        u = np.empty((n, h), np.float64)
        v = np.empty((h, n), np.float64)
        for k in range(rows.shape[0]):
            row, ch, m, s = rows[k], chans[k], ms[k], ss[k]
            for b in range(src.shape[0]):
                transpose(src[b, row], t)
                for j in range(n):
                    a0, a1, w0, w1 = t[ix[j, 0]], t[ix[j, 1]], wx[j, 0], wx[j, 1]
                    for r in range(h):
                        u[j, r] = a0[r] * w0 + a1[r] * w1
                transpose(u, v)
                out = dst[b, ch]
                for i in range(iy.shape[0]):
                    r0, r1, w0, w1 = v[iy[i, 0]], v[iy[i, 1]], wy[i, 0], wy[i, 1]
                    o = out[i]
                    for j in range(n):
                        x = r0[j] * w0 + r1[j] * w1
                        # GDAL's float to integer: to nearest, halves away from zero
                        x = np.floor(x + 0.5) if x >= 0 else np.ceil(x - 0.5)
                        o[j] = (np.float32(x) - m) / s

    return {"copy": copy, "taps": taps, "gdal": gdal}

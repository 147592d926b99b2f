"""The fuzz suite's helpers: per-case bounds on time and memory, and structure-aware mutations
(see :mod:`tests.fuzz.conftest` for the fixtures)."""

from __future__ import annotations

import random
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

SECONDS = 5.0
PEAK_BYTES = 64 << 20
INTERESTING_INTS = (0, 1, 2, 7, 8, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000,
                    0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)  # fmt: skip
INTERESTING_BYTES = (0x00, 0x01, 0x20, 0x2D, 0x2B, 0x30, 0x37, 0x38, 0x7F, 0x80, 0xFF)

T = TypeVar("T")


@dataclass
class Outcomes:
    """What the cases came to, by kind (``decoded``, ``refused``, ...), for the report line."""

    counts: Counter[str] = field(default_factory=Counter)
    peak: int = 0
    slowest: float = 0.0

    def add(self, kind: str) -> None:
        self.counts[kind] += 1

    def line(self) -> str:
        parts = ", ".join(f"{k} {n}" for k, n in sorted(self.counts.items()))
        return f"{parts}; peak {self.peak / 2**20:.1f} MiB, slowest {self.slowest:.2f} s"


def bounded(
    action: Callable[[], T], what: str, outcomes: Outcomes, *, trace: bool = True
) -> tuple[T | None, BaseException | None]:
    """Run one case: (its result, None) or (None, the exception it raised), checking the time
    and the peak of Python allocations during the case (an AssertionError naming the case when
    exceeded). The peak is tracemalloc's, reset per case: start tracing once for a whole test
    (the ``traced`` fixture), since CPython 3.11 can crash when tracemalloc stops while another
    thread (Arrow's I/O threads, the decompression threads) allocates. ``trace`` False measures
    time only (Arrow's allocations are not Python's: the caller bounds Arrow's pool)."""
    measure = trace and tracemalloc.is_tracing()
    base = 0
    if measure:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
    started = time.perf_counter()
    result: T | None = None
    error: BaseException | None = None
    try:
        result = action()
    except Exception as exc:  # judged by the caller: only the project's error is allowed
        error = exc
    elapsed = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1] - base if measure else 0
    outcomes.peak = max(outcomes.peak, peak)
    outcomes.slowest = max(outcomes.slowest, elapsed)
    assert elapsed < SECONDS, f"{what}: took {elapsed:.1f} s"
    assert peak < PEAK_BYTES, f"{what}: allocated {peak / 2**20:.0f} MiB"
    return result, error


# --- mutations --------------------------------------------------------------------------------


def flip_bits(data: bytearray, rng: random.Random, start: int = 0, end: int | None = None) -> None:
    end = len(data) if end is None else min(end, len(data))
    if end <= start:
        return
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(start, end)
        data[at] ^= 1 << rng.randrange(8)


def set_bytes(data: bytearray, rng: random.Random, start: int = 0, end: int | None = None) -> None:
    end = len(data) if end is None else min(end, len(data))
    if end <= start:
        return
    for _ in range(rng.randint(1, 3)):
        data[rng.randrange(start, end)] = rng.choice(INTERESTING_BYTES)


def put_int(data: bytearray, at: int, size: int, value: int, order: str) -> None:
    """Write ``value`` (wrapped to ``size`` bytes) at ``at`` if it fits."""
    if at >= 0 and at + size <= len(data):
        data[at : at + size] = (value % (1 << (8 * size))).to_bytes(size, order)  # type: ignore[arg-type]


def interesting_int(rng: random.Random, near: Sequence[int] = ()) -> int:
    """An edge value, or one next to a size that matters (the data's length, an offset)."""
    if near and rng.random() < 0.5:
        return rng.choice(near) + rng.choice((-33, -32, -2, -1, 0, 1, 2, 511, 512, 513))
    value = rng.choice(INTERESTING_INTS)
    return -value if rng.random() < 0.2 else value


def truncate_or_extend(data: bytes, rng: random.Random) -> bytes:
    roll = rng.random()
    if roll < 0.6:
        return data[: rng.randrange(len(data) + 1)]
    if roll < 0.8:
        at = rng.randrange(len(data) + 1)
        piece = data[at : at + rng.randint(1, 1024)]
        return data[:at] + piece + data[at:]  # a slice repeated
    return data + rng.randbytes(rng.randint(1, 1024))


def choose(rng: random.Random, weighted: Sequence[tuple[float, T]]) -> T:
    total = sum(w for w, _ in weighted)
    roll = rng.random() * total
    for weight, item in weighted:
        roll -= weight
        if roll < 0:
            return item
    return weighted[-1][1]


def describe(error: BaseException | None) -> str:
    return "" if error is None else f"{type(error).__name__}: {str(error)[:300]}"

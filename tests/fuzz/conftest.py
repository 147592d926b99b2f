"""The fuzz suite's fixtures: how many cases (``FUZZ_CASES``, small by default so that
``make test`` stays quick; ``make fuzz`` asks for thousands) and the seed (``FUZZ_SEED``).

Every fuzz test asserts, case by case: the project's reader either gives what an independent
reader gives (tarfile, tifffile/rasterio, json, pyarrow) or raises the project's error
(:class:`~ingest.errors.InputDataError`), within :data:`tests.fuzz.kit.SECONDS` and
:data:`tests.fuzz.kit.PEAK_BYTES` (tracemalloc; Arrow's pool too where Arrow reads).
"""

from __future__ import annotations

import os
import random
import tracemalloc
from collections.abc import Iterator

import pytest

from tests.fuzz.kit import Outcomes

#: Cases per fuzz test unless FUZZ_CASES says otherwise (the CI-sized run of `make test`).
DEFAULT_CASES = 150


@pytest.fixture
def fuzz_cases() -> int:
    """How many cases each fuzz test runs: ``FUZZ_CASES`` (default 150)."""
    return int(os.environ.get("FUZZ_CASES", DEFAULT_CASES))


@pytest.fixture
def fuzz_rng(request: pytest.FixtureRequest) -> random.Random:
    """A generator seeded by ``FUZZ_SEED`` (default 0) and the test's name: runs repeat exactly."""
    seed = os.environ.get("FUZZ_SEED", "0")
    return random.Random(f"{seed}:{request.node.nodeid}")


@pytest.fixture
def outcomes(request: pytest.FixtureRequest) -> Iterator[Outcomes]:
    """Counts of the cases' outcomes, printed after the test (``pytest -s`` shows them)."""
    found = Outcomes()
    yield found
    print(f"\n{request.node.name}: {found.line()}")


@pytest.fixture(scope="module")
def traced() -> Iterator[None]:
    """tracemalloc on for a whole fuzz module, so that cases only reset its peak (starting and
    stopping it per case raced with other threads' allocations: CPython 3.11 crashed)."""
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    yield
    if started:
        tracemalloc.stop()

"""Shared fixtures: sample archives built by the test kit, and a helper to run the ingest."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ingest.config import RunConfig, RunReport
from ingest.pipeline import run
from ingest.store.location import StoreLocation
from ingest.testing.archive_writer import iter_members
from ingest.testing.emulator import Emulator
from ingest.testing.faults import Faults
from ingest.testing.samples import (
    SampleArchives,
    SampleOptions,
    real_patches,
    write_real_sample,
    write_synthetic_sample,
)


@pytest.fixture(autouse=True)
def _no_mlhub_profile(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Tests never see the developer's MLHub key, profile or root URL."""
    for name in ("MLHUB_API_KEY", "MLHUB_PROFILE", "MLHUB_ROOT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLHUB_HOME", str(tmp_path_factory.mktemp("mlhub-home")))


@pytest.fixture(scope="session", autouse=True)
def _tables_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The official tables' cache (and every ingest subprocess's) lives in the session's
    temporary folder, never in the developer's ~/.cache."""
    folder = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("INGEST_CACHE_DIR", str(folder))
        yield folder


@pytest.fixture(scope="session")
def real_sample(tmp_path_factory: pytest.TempPathFactory) -> SampleArchives:
    return write_real_sample(tmp_path_factory.mktemp("real"))


@pytest.fixture(scope="session")
def real_by_name() -> dict[str, Any]:
    return {p.name: p for p in real_patches()}


@pytest.fixture(scope="session")
def synthetic_sample(tmp_path_factory: pytest.TempPathFactory) -> SampleArchives:
    return write_synthetic_sample(tmp_path_factory.mktemp("synthetic"), 60, seed=7)


#: The API key the tests' emulators require.
EMULATOR_KEY = "test-emulator-key-0123456789"


@pytest.fixture(scope="module", params=["real", "synthetic"])
def served(
    request: pytest.FixtureRequest, real_sample: SampleArchives, synthetic_sample: SampleArchives
) -> Iterator[tuple[SampleArchives, Emulator]]:
    """The real and the synthetic sample, each served by one emulator for the whole module (a
    module may override ``synthetic_sample``); tests take it through their module's ``mlhub``."""
    archives = real_sample if request.param == "real" else synthetic_sample
    with Emulator(archives.labels.parent, api_key=EMULATOR_KEY) as emulator:
        yield archives, emulator


@pytest.fixture
def mlhub(
    served: tuple[SampleArchives, Emulator], monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[SampleArchives, Emulator]]:
    """The module's served sample with earlier tests' requests and faults forgotten and
    MLHUB_ROOT_URL pointing at it; afterwards, the emulator must have logged no server error."""
    archives, emulator = served
    emulator.requests.clear()
    emulator.set_faults(Faults())
    monkeypatch.setenv("MLHUB_ROOT_URL", emulator.root_url)
    yield archives, emulator
    assert emulator.errors == []


@pytest.fixture(scope="module")
def real_store(real_sample: SampleArchives, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 6 real patches ingested, once per module."""
    path = tmp_path_factory.mktemp("store") / "real.zarr"
    ingest_local(real_sample, path)
    return path


@pytest.fixture(scope="module")
def small_shards(
    synthetic_sample: SampleArchives, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """60 synthetic patches in shards of 16: three full shards and a partial one of 12."""
    path = tmp_path_factory.mktemp("store") / "syn.zarr"
    ingest_local(synthetic_sample, path, shard_size=16)
    return path


def sample_with(tmp: Path, options: SampleOptions, patches: int | None = None) -> SampleArchives:
    """A real (patches=None) or synthetic sample with non-default options."""
    if patches is None:
        return write_real_sample(tmp, options)
    return write_synthetic_sample(tmp, patches, seed=3, options=options)


def ingest_local(
    archives: SampleArchives, store: str | Path | StoreLocation, **options: Any
) -> RunReport:
    """Run the ingest from local archive files (in-process writer unless ``workers`` is given);
    ``progress``, ``warn`` and ``note`` go to :func:`ingest.pipeline.run`, the rest to the config."""
    options.setdefault("workers", 0)
    hooks = {k: options.pop(k) for k in ("progress", "warn", "note") if k in options}
    config = RunConfig(
        store=store,
        labels_archive=str(archives.labels),
        source_archive=str(archives.source),
        **options,
    )
    return run(config, **hooks)


def item_documents(archive: Path) -> Iterator[dict[str, Any]]:
    """Every item's stac.json in an archive, in archive order (an independent reading)."""
    for info, data in iter_members(archive):
        if data is not None and info.name.endswith("/stac.json"):
            yield json.loads(data)

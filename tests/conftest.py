"""Shared fixtures: sample archives built by the test kit, and a helper to run the ingest."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ingest.config import RunConfig, RunReport
from ingest.pipeline import run
from ingest.store import zarrstore as store
from ingest.store.location import StoreLocation
from ingest.store.zarrstore import SampleTable
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


# --- contract v2 stores written directly through ingest.store (no ingest route yet) ------------

V2_COUNTRIES = ("Austria", "Belgium", "Finland", "Ireland", "Kosovo", "Lithuania", "Portugal")


@dataclass(frozen=True)
class WrittenStore:
    """A store written by :func:`write_v2_store` and exactly what went into it."""

    path: Path
    table: SampleTable
    pixels: dict[str, np.ndarray]
    """Per-pixel array name -> (n, ...) values as written."""


def write_v2_store(
    path: Path,
    n: int = 10,
    shard: int = 4,
    *,
    s1: bool = True,
    reference_maps: bool = True,
    seed: int = 0,
) -> WrittenStore:
    """A complete ``bigearthnet-v2`` (reBEN) store of ``n`` synthetic patches in shards of
    ``shard``: labels19 only, the metadata's split/country/patch_id_v1, and ``bands_s1`` (with
    ``s1_patch_id``) and ``reference_map`` when asked, written with create/write_shard/finish."""
    rng = np.random.default_rng(seed)
    patch_ids = [f"S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_{i // 9:02d}_{i % 9:02d}" for i in range(n)]  # fmt: skip
    pixels: dict[str, np.ndarray] = {
        "bands_10m": rng.integers(0, 10_000, (n, 4, 120, 120), dtype=np.uint16),
        "bands_20m": rng.integers(0, 10_000, (n, 6, 60, 60), dtype=np.uint16),
        "bands_60m": rng.integers(0, 10_000, (n, 2, 20, 20), dtype=np.uint16),
    }
    optional = {
        "split": np.array([("train", "validation", "test", "train")[i % 4] for i in range(n)], dtype=object),
        "country": np.array([V2_COUNTRIES[i % len(V2_COUNTRIES)] for i in range(n)], dtype=object),
        "patch_id_v1": np.array([f"S2A_MSIL2A_20170613T101031_{i // 9}_{i % 9}" for i in range(n)], dtype=object),
    }  # fmt: skip
    if s1:
        pixels["bands_s1"] = rng.normal(-14.0, 6.0, (n, 2, 120, 120)).astype(np.float32)
        optional["s1_patch_id"] = np.array(
            [f"S1A_IW_GRDH_1SDV_20170613T165043_33UUP_{i // 9}_{i % 9}" for i in range(n)],
            dtype=object,
        )
    if reference_maps:
        codes = np.array([0, 112, 211, 231, 311, 312, 512], dtype=np.uint16)
        pixels["reference_map"] = codes[rng.integers(0, len(codes), (n, 120, 120))]
    labels19 = rng.random((n, 19)) < 0.2
    labels19[np.arange(n), rng.integers(0, 19, n)] = True  # every patch has a class
    labels19[:, 0] = np.arange(n) % 2 == 0  # "Urban fabric": every other patch
    table = SampleTable(
        patch_id=patch_ids,
        time=np.full(n, 1497348631, dtype=np.int64),
        labels19=labels19,
        cloud_and_shadow=np.zeros(n, dtype=bool),
        seasonal_snow=np.arange(n) % 5 == 1,
        epsg=np.full(n, 32633, dtype=np.int32),
        x_ul=np.arange(n, dtype=np.float64) * 1200 + 400_000,
        y_ul=np.full(n, 5_340_000.0),
        optional=optional,
    )
    store.create(path, capacity=n + shard, shard=shard, dataset=store.DATASET_V2, layout="reben-v2",
                 s1=s1, reference_maps=reference_maps, attrs={"ingest_version": "test", "created": "2024-01-01T00:00:00+00:00"})  # fmt: skip
    for index, start in enumerate(range(0, n, shard)):
        part = slice(start, start + shard)
        record = store.ShardRecord(index, tuple(patch_ids[part]))
        store.write_shard(path, start, {k: v[part] for k, v in pixels.items()}, record)
    roles = [
        "s2",
        "metadata",
        *(["s1"] if s1 else []),
        *(["reference_maps"] if reference_maps else []),
    ]
    store.finish(path, table, {
        "title": "BigEarthNet v2.0 (reBEN)", "license": "CDLA-Permissive-1.0", "citation": "K. Clasen et al.",
        "sources": [{"role": r, "location": f"/data/{r}.tar.zst", "bytes": 1, "sha256": "0" * 64} for r in roles],
        "counts": {"samples": n, "labels_without_source": 0, "source_without_labels": 0, "skipped": 0},
        "skipped": [],
    })  # fmt: skip
    store.mark_complete(path)
    return WrittenStore(path, table, pixels)


@pytest.fixture(scope="module")
def v2_store(tmp_path_factory: pytest.TempPathFactory) -> WrittenStore:
    """10 reBEN-like patches with S1 and reference maps, shards of 4 (the last one of 2)."""
    return write_v2_store(tmp_path_factory.mktemp("v2") / "reben.zarr")

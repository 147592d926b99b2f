"""``ingest run --via items``: the label items from the items API and only the selected source
items' bands, fetched in parallel, give the store the archive route gives for the same selection.

Identity is checked with :func:`store_differences` ignoring three root attributes, each asserted
separately: ``created`` (a time), ``options`` (which differ in ``via`` alone, by definition) and
``sources`` (the archive route records the archives it read, the items route the items URL and
the bytes of the responses it received: different bytes by design, so their sizes and hashes
cannot match; their other fields are checked here).
"""

from __future__ import annotations

import itertools
import random
import tarfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

from ingest.catalog import items_feed
from ingest.config import RunConfig, RunReport
from ingest.errors import AuthError, StoreError, UsageError
from ingest.layouts.labels import Selection
from ingest.pipeline import run
from ingest.sources.download import RetryPolicy
from ingest.sources.endpoint import Endpoint
from ingest.store import zarrstore as store
from ingest.store.verify import check
from ingest.testing.archive_writer import Member, iter_members
from ingest.testing.compare import store_differences
from ingest.testing.emulator import Emulator
from ingest.testing.faults import Faults
from ingest.testing.samples import (
    SampleArchives,
    SampleOptions,
    rewrite_archive,
    write_synthetic_sample,
)

from ..conftest import EMULATOR_KEY, ingest_local, item_documents

KEY = EMULATOR_KEY
ENDPOINT = Endpoint(api_key=KEY)
FAST = RetryPolicy(backoff=0.01, read_timeout=10)
LABELS, SOURCE = "bigearthnet_v1_labels", "bigearthnet_v1_source"
SOURCE_ITEMS = f"/mlhub/v1/collections/{SOURCE}/items/"
IGNORED = frozenset({"created", "sources", "options"})

SELECTIONS = {
    "all": Selection(),
    "forest-no-snow": Selection(("Coniferous forest", "Mixed forest", "Pastures"), None, False),
    "limited": Selection(("Non-irrigated arable land", "Pastures", "Coniferous forest"), limit=2),
}


@pytest.fixture(scope="module")
def synthetic_sample(tmp_path_factory: pytest.TempPathFactory) -> SampleArchives:
    """Smaller than the shared synthetic sample: the emulator serves an asset by decompressing its
    archive up to it, again for every request that goes back, and parallel downloads go back."""
    return write_synthetic_sample(tmp_path_factory.mktemp("items"), 24, seed=7)


def ingest_items(path: Path, warn: Any = None, **options: Any) -> RunReport:
    options.setdefault("workers", 0)
    options.setdefault("retry", FAST)
    return run(RunConfig(store=path, endpoint=ENDPOINT, via="items", **options), warn=warn)


def attrs(path: Path) -> dict[str, Any]:
    return dict(zarr.open_group(str(path), mode="r").attrs)


def assert_same_store(archive_route: Path, items_route: Path) -> None:
    assert check(items_route) == []
    assert store_differences(archive_route, items_route, ignore_attrs=IGNORED) == []
    assert attrs(items_route)["options"] == {**attrs(archive_route)["options"], "via": "items"}
    assert attrs(archive_route)["options"]["via"] == "archive"


def selected_source_ids(archives: SampleArchives, selection: Selection) -> list[str]:
    """Source item ids of the selected label items, in label order (an independent reading)."""
    from ingest.catalog.browse import item_matches

    return [
        doc["id"].replace(LABELS, SOURCE)
        for doc in item_documents(archives.labels)
        if item_matches(doc, selection)
    ]


def band_bytes(archives: SampleArchives, source_ids: list[str]) -> int:
    wanted = {f"{SOURCE}/{i}/" for i in source_ids}
    return sum(
        len(data)
        for info, data in iter_members(archives.source)
        if data is not None and info.name.rsplit("/", 1)[0] + "/" in wanted
        and info.name.endswith(".tif") and not info.name.endswith("B10.tif")
    )  # fmt: skip


@pytest.mark.parametrize("name", SELECTIONS)
def test_items_route_and_archive_route_give_the_same_store(
    mlhub: tuple[SampleArchives, Emulator], tmp_path: Path, name: str
) -> None:
    archives, emulator = mlhub
    selection = SELECTIONS[name]
    expected = selected_source_ids(archives, selection)
    assert expected  # the selection keeps something
    local = ingest_local(archives, tmp_path / "archive.zarr", selection=selection)
    report = ingest_items(tmp_path / "items.zarr", selection=selection)
    assert_same_store(tmp_path / "archive.zarr", tmp_path / "items.zarr")
    written = expected if selection.limit is None else expected[: selection.limit]
    assert report.samples == local.samples == len(written)
    group = zarr.open_group(str(tmp_path / "items.zarr"), mode="r")
    assert group["patch_id"][:].tolist() == [i.removeprefix(f"{SOURCE}_") for i in written]

    # Only the selected source items were asked for (one more than --limit, to see it reached),
    # their 12 bands each, and no archive at all.
    asked = expected if selection.limit is None else expected[: selection.limit + 1]
    paths = [r.path for r in emulator.requests]
    requested = [p.removeprefix(SOURCE_ITEMS) for p in paths if p.startswith(SOURCE_ITEMS)]
    assert sorted(requested) == sorted(asked)  # requested in parallel: in any order
    assert sum(p.startswith(f"/mlhub/v1/download/{SOURCE}/") for p in paths) == 12 * len(asked)
    assert not any(p.startswith(("/mlhub/v1/archive/", "/blob/mlhub/archives/")) for p in paths)
    assert report.source_read_to_end == local.source_read_to_end

    labels_record, source_record = attrs(tmp_path / "items.zarr")["sources"]
    root = emulator.root_url
    assert labels_record["location"] == f"{root}collections/{LABELS}/items"
    assert source_record["location"] == f"{root}collections/{SOURCE}/items"
    assert (labels_record["kind"], source_record["kind"]) == ("items", "items")
    assert labels_record["items"] == len(archives.patches)
    assert source_record["items"] == len(asked)
    assert source_record["bytes"] > band_bytes(archives, asked)
    assert len(source_record["sha256"]) == 64 and len(labels_record["sha256"]) == 64


def test_records_are_repeatable_and_never_hold_the_key(
    real_sample: SampleArchives, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Emulator(real_sample.labels.parent, api_key=KEY) as emulator:
        root = emulator.root_url
        monkeypatch.setenv("MLHUB_ROOT_URL", root)
        ingest_items(tmp_path / "a.zarr")
        ingest_items(tmp_path / "b.zarr")
    assert store_differences(tmp_path / "a.zarr", tmp_path / "b.zarr", same_location=True) == []
    metadata = "".join(p.read_text() for p in (tmp_path / "a.zarr").rglob("zarr.json"))
    assert KEY not in metadata
    assert f"{root}collections/bigearthnet_v1_source/items" in metadata


def test_samples_follow_the_label_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archives = write_synthetic_sample(
        tmp_path / "a", 12, seed=4, options=SampleOptions(label_order="reversed")
    )
    with Emulator(archives.labels.parent, api_key=KEY) as emulator:
        monkeypatch.setenv("MLHUB_ROOT_URL", emulator.root_url)
        ingest_items(tmp_path / "items.zarr")
    ingest_local(archives, tmp_path / "archive.zarr")
    items_route = zarr.open_group(str(tmp_path / "items.zarr"), mode="r")
    archive_route = zarr.open_group(str(tmp_path / "archive.zarr"), mode="r")
    assert items_route["patch_id"][:].tolist() == list(reversed(archives.patches))
    assert archive_route["patch_id"][:].tolist() == list(archives.patches)
    assert np.array_equal(items_route["bands_10m"][:], archive_route["bands_10m"][:][::-1])
    assert np.array_equal(items_route["labels"][:], archive_route["labels"][:][::-1])


def test_extra_assets_are_not_downloaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archives = write_synthetic_sample(
        tmp_path / "a", 5, seed=2, options=SampleOptions(extra_b10=True)
    )
    with Emulator(archives.labels.parent, api_key=KEY) as emulator:
        monkeypatch.setenv("MLHUB_ROOT_URL", emulator.root_url)
        report = ingest_items(tmp_path / "items.zarr")
        assert not any(r.path.endswith("/B10.tif") for r in emulator.requests)
    local = ingest_local(archives, tmp_path / "archive.zarr")
    assert (report.ignored_files, local.ignored_files) == ({}, {"B10.tif": 5})
    differences = store_differences(
        tmp_path / "archive.zarr", tmp_path / "items.zarr", ignore_attrs=IGNORED
    )
    assert differences == [
        "attribute report: "
        + repr(attrs(tmp_path / "archive.zarr")["report"])
        + " != "
        + repr(attrs(tmp_path / "items.zarr")["report"])
    ]


def test_a_missing_source_item_is_a_label_without_source(
    synthetic_sample: SampleArchives, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gone = synthetic_sample.patches[7]
    served = tmp_path / "served"
    served.mkdir()
    (served / f"{LABELS}.tar.gz").write_bytes(synthetic_sample.labels.read_bytes())
    folder = f"{SOURCE}_{gone}"

    def drop_the_item(info: tarfile.TarInfo, data: bytes | None) -> list[Member]:
        return [] if info.name.split("/")[1:2] == [folder] else [(info, data)]

    rewrite_archive(synthetic_sample.source, served / f"{SOURCE}.tar.gz", drop_the_item)
    archives = SampleArchives(served / f"{LABELS}.tar.gz", served / f"{SOURCE}.tar.gz", ())
    with Emulator(served, api_key=KEY) as emulator:
        monkeypatch.setenv("MLHUB_ROOT_URL", emulator.root_url)
        report = ingest_items(tmp_path / "items.zarr")
        assert f"{SOURCE_ITEMS}{SOURCE}_{gone}" in [
            r.path for r in emulator.requests if r.status == 404
        ]
    local = ingest_local(archives, tmp_path / "archive.zarr")
    assert report.labels_without_source == local.labels_without_source == 1
    assert report.examples == local.examples == {"labels_without_source": [gone]}
    assert_same_store(tmp_path / "archive.zarr", tmp_path / "items.zarr")


def test_network_faults_during_band_downloads(
    mlhub: tuple[SampleArchives, Emulator], tmp_path: Path
) -> None:
    archives, emulator = mlhub
    ingest_local(archives, tmp_path / "archive.zarr")
    emulator.set_faults(Faults(reset_after=700, reset_times=5, unavailable=3, retry_after=0))
    warnings: list[str] = []
    ingest_items(tmp_path / "items.zarr", warn=warnings.append)
    assert_same_store(tmp_path / "archive.zarr", tmp_path / "items.zarr")
    assert sum("resuming at byte 700" in w for w in warnings) == 5
    assert [r.status for r in emulator.requests[:3]] == [503, 503, 503]


def test_downloads_run_in_parallel_and_yield_in_label_order(
    mlhub: tuple[SampleArchives, Emulator], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archives, _ = mlhub
    lock = threading.Lock()
    active, peak = [0], [0]
    fetch = items_feed.ItemsSourceFeed._fetch
    delays = itertools.cycle(random.Random(3).sample([0.0, 0.005, 0.01, 0.02, 0.03], 5))

    def slow_fetch(self: items_feed.ItemsSourceFeed, patch: str) -> Any:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
            delay = next(delays)
        time.sleep(delay)  # items finish out of order
        try:
            return fetch(self, patch)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(items_feed.ItemsSourceFeed, "_fetch", slow_fetch)
    ingest_items(tmp_path / "items.zarr")
    assert 1 < peak[0] <= min(items_feed.CONCURRENCY, len(archives.patches))
    group = zarr.open_group(str(tmp_path / "items.zarr"), mode="r")
    assert group["patch_id"][:].tolist() == list(archives.patches)  # label order = source order
    assert not [t for t in threading.enumerate() if t.name.startswith("ingest-items")]


def test_resume_refuses_another_via_and_finishes_an_items_store(
    synthetic_sample: SampleArchives, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Emulator(synthetic_sample.labels.parent, api_key=KEY) as emulator:
        monkeypatch.setenv("MLHUB_ROOT_URL", emulator.root_url)
        real_write, written = store.write_shard, []

        def crash_after_two(
            path: str, start: int, bands: Any, record: store.ShardRecord, *rest: Any
        ) -> int:
            if len(written) == 2:
                raise OSError("disk on fire")
            written.append(start)
            return real_write(path, start, bands, record, *rest)

        monkeypatch.setattr(store, "write_shard", crash_after_two)
        with pytest.raises(StoreError, match="writing failed: disk on fire"):
            ingest_items(tmp_path / "s.zarr", shard_size=4)
        monkeypatch.setattr(store, "write_shard", real_write)
        with pytest.raises(UsageError, match="--resume with different options: via is 'items' in"):
            ingest_local(synthetic_sample, tmp_path / "s.zarr", shard_size=4, resume=True)
        ingest_items(tmp_path / "s.zarr", shard_size=4, resume=True)
    ingest_local(synthetic_sample, tmp_path / "reference.zarr", shard_size=4)
    assert_same_store(tmp_path / "reference.zarr", tmp_path / "s.zarr")


def test_via_items_takes_no_archives_and_needs_a_key(
    mlhub: tuple[SampleArchives, Emulator], tmp_path: Path
) -> None:
    archives, emulator = mlhub
    with pytest.raises(UsageError, match="--via items reads the items API"):
        RunConfig(store=tmp_path / "s.zarr", via="items", labels_archive=str(archives.labels))
    with pytest.raises(AuthError, match="no MLHub API key"):
        run(RunConfig(store=tmp_path / "s.zarr", via="items", workers=0))
    assert RunConfig(store=tmp_path, via="items").recorded_options()["via"] == "items"
    assert emulator.requests == []

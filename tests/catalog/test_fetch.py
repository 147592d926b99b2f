"""Downloads like the notebook's (``ingest.catalog.fetch``) against the emulator: one item's assets and its
source items', and whole archives that resume after a broken connection or an interrupted run."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

import pytest

from ingest.catalog.fetch import download_archive, download_item, file_name
from ingest.errors import AuthError, NetworkError, NotFoundError, UsageError
from ingest.sources.download import RetryPolicy
from ingest.sources.endpoint import Endpoint
from ingest.testing.archive_writer import iter_members
from ingest.testing.emulator import Emulator
from ingest.testing.faults import Faults
from ingest.testing.samples import SampleArchives

from ..conftest import EMULATOR_KEY, item_documents

KEY = EMULATOR_KEY
ENDPOINT = Endpoint(api_key=KEY)
FAST = RetryPolicy(backoff=0.01, read_timeout=10)
LABELS, SOURCE = "bigearthnet_v1_labels", "bigearthnet_v1_source"
ARCHIVE_PATH = "/mlhub/v1/archive/"


@dataclass(frozen=True)
class Served:
    archives: SampleArchives
    emulator: Emulator

    def archive(self, collection: str) -> Path:
        return self.archives.labels if collection == LABELS else self.archives.source

    def blob_gets(self) -> list[tuple[str, int]]:
        """(Range header or "", status) of every GET of an archive blob."""
        return [
            (r.headers.get("Range", ""), r.status)
            for r in self.emulator.requests
            if r.method == "GET" and r.path.startswith("/blob/mlhub/archives/")
        ]


@pytest.fixture
def mlhub(mlhub: tuple[SampleArchives, Emulator]) -> Served:
    return Served(*mlhub)


def members(archive: Path) -> dict[str, bytes]:
    """Every file of an archive by member name (``collection/item/file``)."""
    return {info.name: data for info, data in iter_members(archive) if data is not None}


def files_under(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()
    }


# --- one item ------------------------------------------------------------------------------------


def test_download_item_with_sources_gives_the_archive_members(
    mlhub: Served, tmp_path: Path
) -> None:
    labels, source = members(mlhub.archives.labels), members(mlhub.archives.source)
    documents = list(item_documents(mlhub.archives.labels))
    for label in (documents[0], documents[-1]):
        seen: list[dict[str, object]] = []
        paths = download_item(LABELS, label["id"], out_dir=tmp_path, sources=True,
                              endpoint=ENDPOINT, on_item=seen.append)  # fmt: skip
        source_id = label["id"].replace(LABELS, SOURCE)
        assert [item["id"] for item in seen] == [label["id"], source_id]
        expected = {
            f"{label['id']}/labels.geojson": labels[f"{LABELS}/{label['id']}/labels.geojson"]
        }
        expected |= {
            f"{source_id}/{name.rsplit('/', 1)[1]}": data
            for name, data in source.items()
            if name.startswith(f"{SOURCE}/{source_id}/") and not name.endswith("stac.json")
        }
        assert len(expected) == 13  # the labels and 12 bands
        assert {str(p.relative_to(tmp_path)): p.read_bytes() for p in paths} == expected
    assert len(files_under(tmp_path)) == 26  # nothing else written: no .partial left over


def test_download_item_picks_assets_like_the_notebook_rgb(mlhub: Served, tmp_path: Path) -> None:
    label = next(item_documents(mlhub.archives.labels))
    source_id = label["id"].replace(LABELS, SOURCE)
    paths = download_item(LABELS, label["id"], assets=["labels", "B02", "B03", "B04"],
                          out_dir=tmp_path, sources=True, endpoint=ENDPOINT)  # fmt: skip
    assert [str(p.relative_to(tmp_path)) for p in paths] == [
        f"{label['id']}/labels.geojson",
        f"{source_id}/B02.tif",
        f"{source_id}/B03.tif",
        f"{source_id}/B04.tif",
    ]
    source = members(mlhub.archives.source)
    assert paths[1].read_bytes() == source[f"{SOURCE}/{source_id}/B02.tif"]
    # Each asset href was followed through its redirect to the blob; names are the blob's.
    asset_gets = [r for r in mlhub.emulator.requests if r.path.startswith("/mlhub/v1/download/")]
    assert [(r.path.rsplit("/", 1)[1], r.status) for r in asset_gets] == [
        ("labels.geojson", 303), ("B02.tif", 303), ("B03.tif", 303), ("B04.tif", 303)
    ]  # fmt: skip


def test_download_source_item_directly(mlhub: Served, tmp_path: Path) -> None:
    document = list(item_documents(mlhub.archives.source))[-1]
    paths = download_item(SOURCE, document["id"], out_dir=tmp_path, endpoint=ENDPOINT)
    source = members(mlhub.archives.source)
    assert sorted(p.name for p in paths) == sorted(a["href"] for a in document["assets"].values())
    for path in paths:
        assert path.read_bytes() == source[f"{SOURCE}/{document['id']}/{path.name}"]


def test_unknown_asset_is_refused_before_any_download(mlhub: Served, tmp_path: Path) -> None:
    label = next(item_documents(mlhub.archives.labels))
    with pytest.raises(UsageError, match=r"^no asset 'B02' in item '[^']+' \(assets: labels\)$"):
        download_item(LABELS, label["id"], assets=["labels", "B02"], out_dir=tmp_path,
                      endpoint=ENDPOINT)  # fmt: skip
    assert list(tmp_path.iterdir()) == []


def test_unknown_item(mlhub: Served, tmp_path: Path) -> None:
    with pytest.raises(
        NotFoundError, match=r"^item 'nope' of collection 'bigearthnet_v1_labels' does not exist$"
    ):
        download_item(LABELS, "nope", out_dir=tmp_path, endpoint=ENDPOINT)


def test_asset_download_survives_a_reset(mlhub: Served, tmp_path: Path) -> None:
    document = next(item_documents(mlhub.archives.source))
    mlhub.emulator.set_faults(Faults(reset_after=1000, reset_times=2))
    warnings: list[str] = []
    paths = download_item(SOURCE, document["id"], assets=["B02"], out_dir=tmp_path,
                          endpoint=ENDPOINT, policy=FAST, warn=warnings.append)  # fmt: skip
    assert (
        paths[0].read_bytes()
        == members(mlhub.archives.source)[f"{SOURCE}/{document['id']}/B02.tif"]
    )
    assert sum("resuming at byte 1,000" in w for w in warnings) == 1


def test_file_name_is_the_last_segment_of_the_final_url() -> None:
    assert file_name("http://h/blob/mlhub/archives/bigearthnet_v1_labels.tar.gz?key=x") == (
        "bigearthnet_v1_labels.tar.gz"
    )
    assert file_name("https://h/a/B%2001.tif") == "B 01.tif"
    for bad in ("http://h/a/", "http://h/a/..", "http://h/a/x%2Fy"):
        with pytest.raises(NetworkError, match="the URL names no file"):
            file_name(bad)


# --- whole archives ------------------------------------------------------------------------------


@pytest.mark.parametrize("collection", [LABELS, SOURCE])
def test_download_archive_is_the_archive(mlhub: Served, tmp_path: Path, collection: str) -> None:
    progress: list[tuple[int, int]] = []
    path = download_archive(collection, out_dir=tmp_path, endpoint=ENDPOINT,
                            progress=lambda done, total: progress.append((done, total)))  # fmt: skip
    expected = mlhub.archive(collection).read_bytes()
    assert path == tmp_path / f"{collection}.tar.gz"
    assert path.read_bytes() == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    size = len(expected)
    assert progress[0] == (0, size) and progress[-1] == (size, size)
    # Written piece by piece, never more than 1 MiB at a time.
    steps = [b[0] - a[0] for a, b in itertools.pairwise(progress)]
    assert max(steps) <= 1 << 20
    api = [
        (r.method, r.path, r.status)
        for r in mlhub.emulator.requests
        if r.path.startswith(ARCHIVE_PATH)
    ]
    assert api == [
        ("HEAD", ARCHIVE_PATH + collection, 303),
        ("GET", ARCHIVE_PATH + collection, 303),
    ]
    assert mlhub.blob_gets() == [("", 200)]


def test_a_reset_mid_body_resumes_to_an_identical_file(mlhub: Served, tmp_path: Path) -> None:
    mlhub.emulator.set_faults(Faults(reset_after=5000))
    warnings: list[str] = []
    path = download_archive(SOURCE, out_dir=tmp_path, endpoint=ENDPOINT, policy=FAST,
                            warn=warnings.append)  # fmt: skip
    assert path.read_bytes() == mlhub.archives.source.read_bytes()
    assert mlhub.blob_gets() == [("", 200), ("bytes=5000-", 206)]
    assert warnings == [
        "archive 'bigearthnet_v1_source': connection reset by peer; resuming at byte 5,000"
    ]


def _interrupted(mlhub: Served, out: Path) -> int:
    """A download that gives up after three broken bodies of 1,000 bytes: 3,000 bytes kept."""
    mlhub.emulator.set_faults(Faults(reset_after=1000, reset_times=-1))
    with pytest.raises(NetworkError, match="giving up after 2 resumes at byte 3,000"):
        download_archive(SOURCE, out_dir=out, endpoint=ENDPOINT,
                         policy=RetryPolicy(max_resumes=2, backoff=0.001))  # fmt: skip
    partial = out / f"{SOURCE}.tar.gz.partial"
    assert partial.read_bytes() == mlhub.archives.source.read_bytes()[:3000]
    assert not (out / f"{SOURCE}.tar.gz").exists()  # a truncated file never looks complete
    state = json.loads((out / f"{SOURCE}.tar.gz.partial.json").read_text())
    assert state["size"] == mlhub.archives.source.stat().st_size
    mlhub.emulator.requests.clear()
    mlhub.emulator.set_faults(Faults())
    return partial.stat().st_size


def test_an_interrupted_download_continues_on_the_next_run(mlhub: Served, tmp_path: Path) -> None:
    have = _interrupted(mlhub, tmp_path)
    notes: list[str] = []
    progress: list[tuple[int, int]] = []
    path = download_archive(SOURCE, out_dir=tmp_path, endpoint=ENDPOINT, warn=notes.append,
                            progress=lambda done, total: progress.append((done, total)))  # fmt: skip
    assert path.read_bytes() == mlhub.archives.source.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    assert mlhub.blob_gets() == [(f"bytes={have}-", 206)]
    resumed = [r for r in mlhub.emulator.requests if r.headers.get("Range")]
    assert all(r.headers["If-Range"] for r in resumed)  # never spliced onto another archive
    assert progress[0] == (have, len(path.read_bytes()))
    assert notes == [
        f"{tmp_path / SOURCE}.tar.gz.partial: continuing at byte 3,000 of {path.stat().st_size:,}"
    ]


def test_continuing_from_a_server_that_ignores_range(mlhub: Served, tmp_path: Path) -> None:
    _interrupted(mlhub, tmp_path)
    mlhub.emulator.set_faults(Faults(ignore_range=True))
    path = download_archive(SOURCE, out_dir=tmp_path, endpoint=ENDPOINT)
    assert path.read_bytes() == mlhub.archives.source.read_bytes()
    assert mlhub.blob_gets() == [("bytes=3000-", 200)]


def test_continuing_then_broken_again(mlhub: Served, tmp_path: Path) -> None:
    _interrupted(mlhub, tmp_path)
    mlhub.emulator.set_faults(Faults(reset_after=2000, reset_times=2))
    path = download_archive(SOURCE, out_dir=tmp_path, endpoint=ENDPOINT, policy=FAST)
    assert path.read_bytes() == mlhub.archives.source.read_bytes()
    assert mlhub.blob_gets() == [("bytes=3000-", 206), ("bytes=5000-", 206), ("bytes=7000-", 206)]


def test_overwrite_starts_over(mlhub: Served, tmp_path: Path) -> None:
    _interrupted(mlhub, tmp_path)
    path = download_archive(SOURCE, out_dir=tmp_path, endpoint=ENDPOINT, overwrite=True)
    assert path.read_bytes() == mlhub.archives.source.read_bytes()
    assert mlhub.blob_gets() == [("", 200)]


def test_a_complete_file_is_not_downloaded_again(mlhub: Served, tmp_path: Path) -> None:
    download_archive(LABELS, out_dir=tmp_path, endpoint=ENDPOINT)
    mlhub.emulator.requests.clear()
    notes: list[str] = []
    path = download_archive(LABELS, out_dir=tmp_path, endpoint=ENDPOINT, warn=notes.append)
    assert path.read_bytes() == mlhub.archives.labels.read_bytes()
    assert [r.method for r in mlhub.emulator.requests] == ["HEAD", "HEAD"]  # API, then blob
    assert notes == [
        f"{path}: already downloaded ({path.stat().st_size:,} bytes, the server's size)"
    ]


def test_an_archive_changed_on_the_server_starts_over(mlhub: Served, tmp_path: Path) -> None:
    _interrupted(mlhub, tmp_path)
    state = tmp_path / f"{SOURCE}.tar.gz.partial.json"
    state.write_text(json.dumps({"size": mlhub.archives.source.stat().st_size, "etag": '"old"'}))
    notes: list[str] = []
    path = download_archive(SOURCE, out_dir=tmp_path, endpoint=ENDPOINT, warn=notes.append)
    assert path.read_bytes() == mlhub.archives.source.read_bytes()
    assert mlhub.blob_gets() == [("", 200)]
    assert "the archive changed on the server since this download began; starting over" in notes[0]


def test_a_file_left_by_radiant_mlhub_is_continued(mlhub: Served, tmp_path: Path) -> None:
    data = mlhub.archives.source.read_bytes()
    (tmp_path / f"{SOURCE}.tar.gz").write_bytes(data[:7777])  # the client writes in place
    path = download_archive(SOURCE, out_dir=tmp_path, endpoint=ENDPOINT)
    assert path.read_bytes() == data
    assert mlhub.blob_gets() == [("bytes=7777-", 206)]


def test_a_larger_file_is_refused(mlhub: Served, tmp_path: Path) -> None:
    target = tmp_path / f"{LABELS}.tar.gz"
    target.write_bytes(mlhub.archives.labels.read_bytes() + b"junk")
    with pytest.raises(UsageError, match="use --overwrite to download it again"):
        download_archive(LABELS, out_dir=tmp_path, endpoint=ENDPOINT)
    assert download_archive(LABELS, out_dir=tmp_path, endpoint=ENDPOINT, overwrite=True) == target
    assert target.read_bytes() == mlhub.archives.labels.read_bytes()


def test_missing_archive_may_still_be_generating(mlhub: Served, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError) as raised:
        download_archive("bigearthnet_v1_source_v2", out_dir=tmp_path, endpoint=ENDPOINT)
    assert str(raised.value) == (
        "archive 'bigearthnet_v1_source_v2' does not exist (it may still be generating)"
    )
    assert list(tmp_path.iterdir()) == []


def test_rejected_key(mlhub: Served, tmp_path: Path) -> None:
    wrong = "wrong-key-2468"
    with pytest.raises(AuthError) as raised:
        download_archive(LABELS, out_dir=tmp_path, endpoint=Endpoint(api_key=wrong))
    assert (
        str(raised.value)
        == "the MLHub API key was rejected (401) for archive 'bigearthnet_v1_labels'"
    )


def test_memory_stays_bounded(
    synthetic_sample: SampleArchives, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The emulator runs in its own process here, so that only the download's allocations count."""
    size = synthetic_sample.source.stat().st_size
    assert size > 6 << 20
    server = subprocess.Popen(
        [sys.executable, "-m", "ingest", "serve", str(synthetic_sample.source.parent),
         "--port", "0", "--api-key", KEY],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert server.stdout is not None
    try:
        line = server.stdout.readline().strip()
        assert line.startswith("MLHUB_ROOT_URL=http://127.0.0.1:")
        monkeypatch.setenv("MLHUB_ROOT_URL", line.split("=", 1)[1])
        tracemalloc.start()
        try:
            path = download_archive(SOURCE, out_dir=tmp_path, endpoint=ENDPOINT)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    finally:
        server.terminate()
        server.wait(timeout=30)
        server.stdout.close()
    assert path.read_bytes() == synthetic_sample.source.read_bytes()
    assert peak < 4 << 20  # a 1 MiB piece and the buffers around it, for an 8 MB archive

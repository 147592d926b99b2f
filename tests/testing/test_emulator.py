"""The MLHub emulator against the real ``radiant_mlhub`` 0.4.1 client and plain HTTP.

The client is the acceptance test: if it lists, pages, fetches and downloads unchanged, the
emulator speaks MLHub. Plain ``requests`` and raw sockets then pin the details the client relies
on without checking (ranges, redirects, pagination, errors) and every injected fault.
Everything runs on loopback against archives built by the test kit.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import radiant_mlhub
import requests
from radiant_mlhub import client
from radiant_mlhub.client.datasets import _download
from radiant_mlhub.exceptions import AuthenticationError, EntityDoesNotExist

from ingest.errors import InputDataError, UsageError
from ingest.testing.emulator import Emulator, serve_forever
from ingest.testing.samples import SampleArchives

from .conftest import (
    KEY,
    LABELS,
    SOURCE,
    blob_url,
    get,
    item_asset_url,
    item_ids,
    member_bytes,
    port_of,
)

ANON = "__anonymous__"


# -- the real client -------------------------------------------------------------------------------


def test_client_lists_and_gets_collections(mlhub: Emulator) -> None:
    assert [c["id"] for c in client.list_collections()] == [LABELS, SOURCE]
    collection = client.get_collection(SOURCE)
    links = {link["rel"]: link["href"] for link in collection["links"]}
    assert links == {
        "items": f"{mlhub.root_url}collections/{SOURCE}/items",
        "parent": mlhub.root_url,
        "root": mlhub.root_url,
        "self": f"{mlhub.root_url}collections/{SOURCE}",
    }
    with pytest.raises(EntityDoesNotExist):
        client.get_collection("no_collection")


def test_client_reads_collections_anonymously_but_not_items(
    mlhub: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLHUB_API_KEY")
    monkeypatch.setenv("MLHUB_PROFILE", ANON)  # the client's own "no key" profile
    assert client.get_collection(LABELS)["id"] == LABELS
    with pytest.raises(AuthenticationError, match="No API key provided"):
        list(client.list_collection_items(LABELS))


def test_client_pages_items(mlhub_big: Emulator, synthetic: SampleArchives) -> None:
    expected = item_ids(synthetic.source)
    assert len(expected) == 25
    assert [i["id"] for i in client.list_collection_items(SOURCE, limit=3)] == expected[:3]
    mlhub_big.requests.clear()
    paged = [i["id"] for i in client.list_collection_items(SOURCE, page_size=2, limit=5)]
    assert paged == expected[:5]
    assert [r.query["limit"][-1] for r in mlhub_big.requests] == ["2", "2", "2"]
    everything = client.list_collection_items(LABELS, limit=None)  # type: ignore[arg-type]
    every = [i["id"] for i in everything]
    assert every == item_ids(synthetic.labels)


def test_client_gets_an_item_whose_source_link_resolves(
    mlhub: Emulator, real: SampleArchives
) -> None:
    patch = real.patches[0]
    item = client.get_collection_item(LABELS, f"{LABELS}_{patch}")
    (source,) = [link["href"] for link in item["links"] if link["rel"] == "source"]
    assert source == f"{mlhub.root_url}collections/{SOURCE}/items/{SOURCE}_{patch}"
    resolved = requests.get(source, params={"key": KEY})
    assert resolved.status_code == 200
    assert resolved.json()["id"] == f"{SOURCE}_{patch}"
    with pytest.raises(EntityDoesNotExist):
        client.get_collection_item(LABELS, "no_item")


def test_client_gets_archive_info(mlhub: Emulator, real: SampleArchives) -> None:
    info = client.get_archive_info(LABELS)
    assert info == {
        "collection": LABELS,
        "dataset": "bigearthnet_v1",
        "size": real.labels.stat().st_size,
        "types": ["labels"],
    }
    assert client.get_archive_info(SOURCE)["types"] == ["source_imagery"]


def test_client_downloads_and_resumes_an_archive(
    mlhub: Emulator, real: SampleArchives, tmp_path: Path
) -> None:
    path = client.download_archive(LABELS, tmp_path)
    assert path.name == "bigearthnet_v1_labels.tar.gz"
    assert path.read_bytes() == real.labels.read_bytes()
    size = path.stat().st_size
    with path.open("r+b") as handle:
        handle.truncate(size // 2)
    mlhub.requests.clear()
    assert client.download_archive(LABELS, tmp_path, if_exists="resume") == path
    assert path.read_bytes() == real.labels.read_bytes()
    # The client asks for one byte past the end; the emulator clamps it like Azure did.
    assert mlhub.requests[-1].headers["Range"] == f"bytes={size // 2}-{size}"
    assert mlhub.requests[-1].status == 206


# The client's progress bar adds a rounded chunk size per range and overshoots on small chunks.
@pytest.mark.filterwarnings("ignore:clamping frac:tqdm.TqdmWarning")
def test_client_downloads_in_many_ranges(
    mlhub: Emulator, real: SampleArchives, tmp_path: Path
) -> None:
    # The client's own range splitter with 100 kB chunks instead of 5 MB, so the sample's
    # source archive takes several ranges fetched by its thread pool.
    path = _download(mlhub.archive_url(SOURCE), tmp_path, chunk_size=100_000)
    assert path.read_bytes() == real.source.read_bytes()
    statuses = {r.status for r in mlhub.requests if r.method == "GET"}
    assert statuses == {206}
    assert len([r for r in mlhub.requests if r.method == "GET"]) > 5


def test_client_download_of_a_missing_archive(mlhub: Emulator, tmp_path: Path) -> None:
    with pytest.raises(EntityDoesNotExist, match="may still be generating"):
        client.download_archive("bigearthnet_v2_source", tmp_path)


def test_client_with_a_wrong_key(mlhub: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLHUB_API_KEY", "not-the-key")
    with pytest.raises(AuthenticationError):
        client.list_collections()
    with pytest.raises(AuthenticationError):
        client.get_archive_info(LABELS)


def test_client_models(mlhub: Emulator, real: SampleArchives) -> None:
    collection = radiant_mlhub.Collection.fetch(LABELS)
    assert collection.id == LABELS
    assert collection.archive_size == real.labels.stat().st_size
    dataset = radiant_mlhub.Dataset.fetch("bigearthnet_v1")
    assert [c.id for c in dataset.collections.source_imagery] == [SOURCE]
    assert [c.id for c in dataset.collections.labels] == [LABELS]
    assert dataset.total_archive_size == real.labels.stat().st_size + real.source.stat().st_size


# -- protocol details ------------------------------------------------------------------------------


def test_archive_redirect_and_blob_head(mlhub: Emulator, real: SampleArchives) -> None:
    redirect = requests.head(mlhub.archive_url(LABELS), params={"key": KEY})
    assert redirect.status_code == 303
    assert redirect.headers["Content-Length"] == "0"
    location = redirect.headers["Location"]
    assert urlsplit(location).path == "/blob/mlhub/archives/bigearthnet_v1_labels.tar.gz"
    assert (
        requests.get(
            mlhub.archive_url(LABELS), params={"key": KEY}, allow_redirects=False
        ).status_code
        == 303
    )
    head = requests.head(location)  # the blob needs no key
    assert head.status_code == 200
    assert head.headers["Content-Length"] == str(real.labels.stat().st_size)
    assert head.headers["Accept-Ranges"] == "bytes"
    assert head.headers["Content-Type"] == "application/x-tar"
    assert head.headers["ETag"].startswith('"')
    assert head.headers["Date"].count("GMT") == 1  # one Date header, not two
    missing = requests.head(mlhub.archive_url("no_archive"), params={"key": KEY})
    assert missing.status_code == 404
    assert missing.headers["Content-Type"] == "application/json"
    body = requests.get(mlhub.archive_url("no_archive"), params={"key": KEY}).json()
    assert body == {"detail": "Archive no_archive does not exist"}


@pytest.mark.parametrize(
    ("range_header", "first", "last"),
    [
        ("bytes=0-99", 0, 99),
        ("bytes=100-{size}", 100, None),  # past the end, as the client asks: clamped
        ("bytes=0-{size}", 0, None),  # the recorded exchange: bytes 0-(size-1)/size
        ("bytes=-100", -100, None),  # suffix range
        ("bytes=200-", 200, None),
    ],
)
def test_blob_ranges(
    mlhub: Emulator, real: SampleArchives, range_header: str, first: int, last: int | None
) -> None:
    data = real.labels.read_bytes()
    size = len(data)
    response = requests.get(
        blob_url(mlhub, LABELS), headers={"Range": range_header.format(size=size)}
    )
    start = first % size
    end = size - 1 if last is None else last
    assert response.status_code == 206
    assert response.headers["Content-Range"] == f"bytes {start}-{end}/{size}"
    assert response.headers["Content-Length"] == str(end - start + 1)
    assert response.content == data[start : end + 1]


def test_blob_unsatisfiable_range_and_if_range(mlhub: Emulator, real: SampleArchives) -> None:
    url = blob_url(mlhub, LABELS)
    size = real.labels.stat().st_size
    beyond = requests.get(url, headers={"Range": f"bytes={size}-"})
    assert beyond.status_code == 416
    assert beyond.headers["Content-Range"] == f"bytes */{size}"
    etag = requests.head(url).headers["ETag"]
    fresh = requests.get(url, headers={"Range": "bytes=10-19", "If-Range": etag})
    assert (fresh.status_code, len(fresh.content)) == (206, 10)
    stale = requests.get(url, headers={"Range": "bytes=10-19", "If-Range": '"stale"'})
    assert stale.status_code == 200
    assert stale.content == real.labels.read_bytes()


def test_items_pages(mlhub_big: Emulator, synthetic: SampleArchives) -> None:
    expected = item_ids(synthetic.source)
    first = get(mlhub_big, f"collections/{SOURCE}/items").json()
    assert first["type"] == "FeatureCollection"
    assert first["context"] == {"limit": 10, "matched": 25, "returned": 10}
    (next_link,) = [link["href"] for link in first["links"] if link["rel"] == "next"]
    assert next_link == f"{mlhub_big.root_url}collections/{SOURCE}/items?token=next:{expected[9]}"
    # As the client sends it: its key and limit again on top of the link's own parameters.
    items_url = f"{mlhub_big.root_url}collections/{SOURCE}/items"
    url = f"{items_url}?key={KEY}&limit=20&key={KEY}&token=next:{expected[9]}"
    last = requests.get(url, params={"limit": 20}).json()
    assert [f["id"] for f in last["features"]] == expected[10:]
    assert last["context"] == {"limit": 20, "matched": 25, "returned": 15}
    assert [link for link in last["links"] if link["rel"] == "next"] == []
    limited = get(mlhub_big, f"collections/{SOURCE}/items", limit=5).json()
    (next_link,) = [link["href"] for link in limited["links"] if link["rel"] == "next"]
    assert next_link.endswith(f"?token=next:{expected[4]}&limit=5")
    assert get(mlhub_big, f"collections/{SOURCE}/items", token="next:nope").status_code == 400
    assert get(mlhub_big, f"collections/{SOURCE}/items", limit=0).status_code == 400


def test_item_links_and_assets_are_absolute(mlhub: Emulator, real: SampleArchives) -> None:
    patch = real.patches[1]
    item = get(mlhub, f"collections/{SOURCE}/items/{SOURCE}_{patch}").json()
    assert {link["rel"] for link in item["links"]} == {"self", "parent", "collection", "root"}
    for link in item["links"]:
        assert link["href"].startswith(mlhub.root_url)
    hrefs = {key: asset["href"] for key, asset in item["assets"].items()}
    assert hrefs["B01"] == f"{mlhub.root_url}download/{SOURCE}/{SOURCE}_{patch}/B01.tif"
    assert len(hrefs) == 12


def test_asset_downloads_match_the_archive_members(mlhub: Emulator, real: SampleArchives) -> None:
    patch = real.patches[2]
    for collection_id, archive in ((SOURCE, real.source), (LABELS, real.labels)):
        item = get(mlhub, f"collections/{collection_id}/items/{collection_id}_{patch}").json()
        for asset in item["assets"].values():
            response = requests.get(asset["href"], params={"key": KEY})
            assert response.status_code == 200
            name = asset["href"].rsplit("/", 1)[1]
            expected = member_bytes(archive, f"{collection_id}/{collection_id}_{patch}/{name}")
            assert response.content == expected
            assert response.headers["Content-Type"] == asset["type"]
    tif = requests.get(
        item_asset_url(mlhub, real, "B02"), params={"key": KEY}, headers={"Range": "bytes=0-3"}
    )
    assert (tif.status_code, tif.content) == (206, b"II*\x00")
    missing = get(mlhub, f"download/{SOURCE}/{SOURCE}_{patch}/B99.tif")
    assert missing.status_code == 404


def test_keys_errors_and_datasets(mlhub: Emulator) -> None:
    root = mlhub.root_url
    assert requests.get(f"{root}collections").status_code == 200  # anonymous
    missing = requests.get(f"{root}collections/{LABELS}/items")
    assert (missing.status_code, missing.json()) == (
        401,
        {"detail": "Must provide API key or Bearer token to access this route."},
    )
    wrong = requests.get(f"{root}collections", params={"key": "nope"})
    assert (wrong.status_code, wrong.json()) == (
        401,
        {"detail": "Could not identify user from API key or Authentication header."},
    )
    unknown = get(mlhub, "collections/no_collection/items/item_id")
    assert unknown.json() == {"detail": "Collection no_collection does not exist."}
    assert unknown.headers["Content-Type"] == "application/json"
    assert get(mlhub, "nowhere").json() == {"detail": "Not Found"}
    assert requests.post(f"{root}collections", params={"key": KEY}).status_code == 405
    datasets = get(mlhub, "datasets").json()
    assert [d["id"] for d in datasets] == ["bigearthnet_v1"]
    assert get(mlhub, "datasets/bigearthnet_v1").json()["collections"] == [
        {"id": SOURCE, "types": ["source_imagery"]},
        {"id": LABELS, "types": ["labels"]},
    ]
    assert get(mlhub, "datasets/nope").json() == {"detail": "Dataset with id 'nope' not found"}


def test_requests_are_logged_with_the_key_redacted(mlhub: Emulator) -> None:
    get(mlhub, f"collections/{LABELS}/items", limit=1)
    record = mlhub.requests[-1]
    assert (record.method, record.path, record.status) == (
        "GET",
        f"/mlhub/v1/collections/{LABELS}/items",
        200,
    )
    assert record.query == {"key": ["REDACTED"], "limit": ["1"]}
    assert KEY not in repr(mlhub.requests)


# -- life cycle and bad input ---------------------------------------------------------------------


def test_life_cycle_without_a_key(real: SampleArchives) -> None:
    emulator = Emulator(real.labels.parent)
    with pytest.raises(RuntimeError, match="not started"):
        _ = emulator.root_url
    with emulator:
        items = requests.get(f"{emulator.root_url}collections/{LABELS}/items")  # no key needed
        assert items.status_code == 200
        with (
            pytest.raises(OSError, match="in use"),
            Emulator(real.labels.parent, port=port_of(emulator)),
        ):
            pass
    emulator.stop()  # a second stop is harmless
    assert emulator.errors == []


def test_unreadable_archives_are_refused(tmp_path: Path) -> None:
    (tmp_path / "bigearthnet_v1_labels.tar.gz").write_bytes(b"not a gzip file")
    with pytest.raises(ValueError, match=r"bigearthnet_v1_labels\.tar\.gz: not a readable"):
        Emulator(tmp_path).start()
    with pytest.raises(InputDataError, match="cannot serve its archives"):
        serve_forever(tmp_path, port=0)


def test_serve_forever_on_a_busy_port(real: SampleArchives) -> None:
    with Emulator(real.labels.parent) as emulator, pytest.raises(UsageError, match="cannot listen"):
        serve_forever(real.labels.parent, port=port_of(emulator))


# -- serving from the command line -----------------------------------------------------------------


def test_serve_forever_stops_cleanly_on_ctrl_c(real: SampleArchives) -> None:
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from ingest.testing.emulator import serve_forever\n"
        "serve_forever(Path(sys.argv[1]), port=0, api_key='k',"
        " on_ready=lambda url: print(url, flush=True))\n"
    )
    command = [sys.executable, "-c", script, str(real.labels.parent)]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        assert process.stdout is not None
        root_url = process.stdout.readline().strip()
        try:
            assert root_url.startswith("http://127.0.0.1:")
            assert root_url.endswith("/mlhub/v1/")
            info = requests.get(f"{root_url}archive/{LABELS}/info", params={"key": "k"})
            assert info.status_code == 200
        finally:
            process.send_signal(signal.SIGINT)
            out, err = process.communicate(timeout=10)
    assert (process.returncode, out, err) == (0, "", "")

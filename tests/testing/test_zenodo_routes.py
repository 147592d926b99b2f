"""The emulator's Zenodo routes (``ingest.testing.zenodo_routes``) over release samples, with
plain HTTP: redirects, HEAD, ranges, ETags, the record document, faults, and coexistence with the
MLHub archives in one directory."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from ingest.testing.emulator import Emulator, Faults
from ingest.testing.releases import ReleaseSample, write_release_sample
from ingest.testing.samples import write_synthetic_sample
from ingest.testing.zenodo_routes import RECORD_V1, RECORD_V2, is_record_file, zenodo_files

from .conftest import raw_get

S2 = "BigEarthNet-S2.tar.zst"


@pytest.fixture(scope="module")
def v2(tmp_path_factory: pytest.TempPathFactory) -> ReleaseSample:
    return write_release_sample(
        tmp_path_factory.mktemp("zenodo-v2"), layout="reben-v2", real=True, s1=True
    )


@pytest.fixture
def zenodo(v2: ReleaseSample) -> Iterator[Emulator]:
    with Emulator(v2.s2[0].parent) as emulator:
        yield emulator
        assert emulator.errors == []


def test_download_url_redirects_to_a_blob_that_honours_head(
    zenodo: Emulator, v2: ReleaseSample
) -> None:
    url = zenodo.zenodo_url(RECORD_V2, S2)
    assert url.endswith(f"/records/10891137/files/{S2}?download=1")
    for method in (requests.head, requests.get):
        answer = method(url, allow_redirects=False)
        assert answer.status_code == 302
        assert answer.headers["Location"] == f"{zenodo.base_url}/blob/zenodo/10891137/{S2}"
        assert "Content-Type" not in answer.headers
    head = requests.head(url, allow_redirects=True)
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["Content-Length"]) == v2.s2[0].stat().st_size
    assert head.headers["ETag"] == f'"{hashlib.md5(v2.s2[0].read_bytes()).hexdigest()}"'
    assert head.headers["Accept-Ranges"] == "bytes"
    assert requests.get(url).content == v2.s2[0].read_bytes()


def test_ranges_and_if_range(zenodo: Emulator, v2: ReleaseSample) -> None:
    url = zenodo.zenodo_url(RECORD_V2, S2)
    whole = v2.s2[0].read_bytes()
    etag = requests.head(url, allow_redirects=True).headers["ETag"]
    part = requests.get(url, headers={"Range": "bytes=100-1099"})
    assert part.status_code == 206
    assert part.headers["Content-Range"] == f"bytes 100-1099/{len(whole)}"
    assert part.content == whole[100:1100]
    assert (
        requests.get(url, headers={"Range": "bytes=100-", "If-Range": etag}).content == whole[100:]
    )
    stale = requests.get(url, headers={"Range": "bytes=100-", "If-Range": '"0000"'})
    assert stale.status_code == 200 and stale.content == whole
    beyond = requests.get(url, headers={"Range": f"bytes={len(whole)}-"})
    assert beyond.status_code == 416 and beyond.headers["Content-Range"] == f"bytes */{len(whole)}"
    assert requests.get(url, headers={"If-None-Match": etag}).status_code == 304


def test_record_document_lists_files_with_md5(zenodo: Emulator, v2: ReleaseSample) -> None:
    record = requests.get(f"{zenodo.base_url}/api/records/{RECORD_V2}").json()
    assert record["id"] == 10891137
    listed = {f["key"]: f for f in record["files"]}
    files = [*v2.s2, *v2.s1, *v2.metadata]
    assert sorted(listed) == sorted(p.name for p in files)
    for path in files:
        entry = listed[path.name]
        assert entry["size"] == path.stat().st_size
        assert entry["checksum"] == f"md5:{hashlib.md5(path.read_bytes()).hexdigest()}"
        content = requests.get(entry["links"]["content"])
        assert content.content == path.read_bytes()
    assert requests.get(f"{zenodo.base_url}/api/records/1").status_code == 404
    assert requests.get(zenodo.zenodo_url(RECORD_V1, S2)).status_code == 404  # wrong record
    assert set(zenodo.zenodo_urls()) == {f"{RECORD_V2}/{p.name}" for p in files}


def test_faults_apply_to_zenodo_blobs(zenodo: Emulator, v2: ReleaseSample) -> None:
    url = zenodo.zenodo_url(RECORD_V2, S2)
    blob = requests.head(url).headers["Location"]
    zenodo.set_faults(Faults(unavailable=1, status=429, retry_after=3))
    refused = requests.get(url)
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "3"
    zenodo.set_faults(Faults(reset_after=50_000))
    status, fields, body, error = raw_get(blob)
    assert status == 200 and fields["Content-Length"] == str(v2.s2[0].stat().st_size)
    assert body == v2.s2[0].read_bytes()[:50_000]
    assert isinstance(error, ConnectionResetError)
    zenodo.set_faults(Faults(ignore_range=True))
    ignored = requests.get(blob, headers={"Range": "bytes=0-9"})
    assert ignored.status_code == 200 and len(ignored.content) == v2.s2[0].stat().st_size


def test_one_directory_serves_mlhub_archives_zenodo_files_and_other_records(tmp_path: Path) -> None:
    write_synthetic_sample(tmp_path, 3)
    v1 = write_release_sample(tmp_path, layout="zenodo-v1", patches=3, s1=True, parts=2)
    other = tmp_path / "zenodo" / "424242"
    other.mkdir(parents=True)
    shutil.copy(v1.s1[0], other / "anything.bin")
    assert is_record_file("BigEarthNet-S2-v1.0.tar.gzab") and not is_record_file(
        "bigearthnet_v1_source.tar.gz"
    )
    assert sorted(zenodo_files(tmp_path)) == [
        (RECORD_V1, "BigEarthNet-S1-v1.0.tar.gzaa"), (RECORD_V1, "BigEarthNet-S1-v1.0.tar.gzab"),
        (RECORD_V1, "BigEarthNet-S2-v1.0.tar.gzaa"), (RECORD_V1, "BigEarthNet-S2-v1.0.tar.gzab"),
        ("424242", "anything.bin"),
    ]  # fmt: skip
    with Emulator(tmp_path) as emulator:
        collections = requests.get(f"{emulator.root_url}collections").json()["collections"]
        assert [c["id"] for c in collections] == ["bigearthnet_v1_labels", "bigearthnet_v1_source"]
        parts = b"".join(
            requests.get(emulator.zenodo_url(RECORD_V1, p.name)).content for p in v1.s2
        )
        assert parts == b"".join(p.read_bytes() for p in v1.s2)
        assert (
            requests.get(emulator.zenodo_url("424242", "anything.bin")).content
            == v1.s1[0].read_bytes()
        )
        assert emulator.errors == []

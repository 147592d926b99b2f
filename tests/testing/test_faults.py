"""The emulator's injected faults (``ingest.testing.faults``), seen from plain HTTP, raw sockets
and the real ``radiant_mlhub`` client: resets, unavailability, ignored ranges, wrong lengths,
trickling."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests
from radiant_mlhub import client

from ingest.testing.emulator import Emulator, Faults
from ingest.testing.samples import SampleArchives

from .conftest import KEY, LABELS, SOURCE, blob_url, get, item_asset_url, raw_get


def test_reset_after_n_bytes(mlhub: Emulator, real: SampleArchives) -> None:
    url = blob_url(mlhub, SOURCE)
    mlhub.set_faults(Faults(reset_after=100_000))
    status, headers, body, error = raw_get(url)
    assert status == 200
    assert headers["Content-Length"] == str(real.source.stat().st_size)
    assert len(body) == 100_000
    assert body == real.source.read_bytes()[:100_000]
    assert isinstance(error, ConnectionResetError)  # a real RST, not a clean close
    assert requests.get(url).content == real.source.read_bytes()  # reset_times=1: spent


def test_reset_every_time_breaks_requests(mlhub: Emulator) -> None:
    url = blob_url(mlhub, LABELS)
    mlhub.set_faults(Faults(reset_after=0, reset_times=-1))
    for _ in range(2):
        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            requests.get(url, headers={"Range": "bytes=0-999"})
    mlhub.set_faults(Faults())
    assert len(requests.get(url, headers={"Range": "bytes=0-999"}).content) == 1000


def test_the_real_client_does_not_survive_a_reset(mlhub: Emulator, tmp_path: Path) -> None:
    mlhub.set_faults(Faults(reset_after=1000))
    with pytest.raises(requests.exceptions.RequestException):
        client.download_archive(SOURCE, tmp_path)


@pytest.mark.parametrize("status", [503, 429])
def test_unavailable_for_the_first_requests(mlhub: Emulator, status: int) -> None:
    mlhub.set_faults(Faults(unavailable=2, status=status, retry_after=7))
    for _ in range(2):
        refused = get(mlhub, "collections")
        assert refused.status_code == status
        assert refused.headers["Retry-After"] == "7"
        assert "detail" in refused.json()
    assert get(mlhub, "collections").status_code == 200
    assert [r.status for r in mlhub.requests[-3:]] == [status, status, 200]


def test_ignore_range(mlhub: Emulator, real: SampleArchives) -> None:
    url = blob_url(mlhub, LABELS)
    mlhub.set_faults(Faults(ignore_range=True))
    response = requests.get(url, headers={"Range": "bytes=0-9"})
    assert response.status_code == 200
    assert "Content-Range" not in response.headers
    assert response.content == real.labels.read_bytes()


def test_wrong_length(mlhub: Emulator, real: SampleArchives) -> None:
    url = blob_url(mlhub, LABELS)
    size = real.labels.stat().st_size
    mlhub.set_faults(Faults(wrong_length=True))
    status, headers, body, error = raw_get(url)
    assert int(headers["Content-Length"]) > size
    assert (status, body, error) == (200, real.labels.read_bytes(), None)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.get(url)


def test_trickle(mlhub: Emulator, real: SampleArchives) -> None:
    url = blob_url(mlhub, LABELS)
    size = real.labels.stat().st_size
    mlhub.set_faults(Faults(trickle=size / 0.4))  # about 0.4 s for the whole body
    started = time.monotonic()
    assert requests.get(url).content == real.labels.read_bytes()
    assert time.monotonic() - started >= 0.3


def test_faults_apply_to_assets(mlhub: Emulator, real: SampleArchives) -> None:
    mlhub.set_faults(Faults(reset_after=10))
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.get(item_asset_url(mlhub, real, "B02"), params={"key": KEY})


def test_faults_leave_the_server_silent(mlhub: Emulator, capfd: pytest.CaptureFixture[str]) -> None:
    url = blob_url(mlhub, SOURCE)
    mlhub.set_faults(Faults(reset_after=5000, reset_times=-1))
    for _ in range(3):
        assert raw_get(url)[3] is not None
    mlhub.set_faults(Faults())
    assert requests.get(url).status_code == 200
    assert capfd.readouterr() == ("", "")

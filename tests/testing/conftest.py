"""Fixtures and independent helpers shared by the emulator and fault tests: sample archives
served by an emulator on loopback, and plain HTTP and tar readings to check it against."""

from __future__ import annotations

import json
import socket
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from ingest.testing.emulator import Emulator
from ingest.testing.samples import SampleArchives, write_real_sample, write_synthetic_sample

KEY = "emulator-test-key"
LABELS, SOURCE = "bigearthnet_v1_labels", "bigearthnet_v1_source"


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> SampleArchives:
    return write_real_sample(tmp_path_factory.mktemp("emulator-real"))


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> SampleArchives:
    return write_synthetic_sample(tmp_path_factory.mktemp("emulator-synthetic"), 25, seed=5)


def _serve(
    archives: SampleArchives, monkeypatch: pytest.MonkeyPatch, tmp: Path
) -> Iterator[Emulator]:
    with Emulator(archives.labels.parent, api_key=KEY) as emulator:
        monkeypatch.setenv("MLHUB_ROOT_URL", emulator.root_url)
        monkeypatch.setenv("MLHUB_API_KEY", KEY)
        monkeypatch.setenv("MLHUB_HOME", str(tmp / "mlhub-home"))
        yield emulator
        assert emulator.errors == []


@pytest.fixture
def mlhub(
    real: SampleArchives, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Emulator]:
    yield from _serve(real, monkeypatch, tmp_path)


@pytest.fixture
def mlhub_big(
    synthetic: SampleArchives, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Emulator]:
    yield from _serve(synthetic, monkeypatch, tmp_path)


def item_ids(archive: Path) -> list[str]:
    """Item ids in archive order, read independently of the emulator."""
    with tarfile.open(archive, "r:gz") as tar:
        return [
            json.loads(tar.extractfile(m).read())["id"]  # type: ignore[union-attr]
            for m in tar
            if m.name.endswith("/stac.json")
        ]


def member_bytes(archive: Path, name: str) -> bytes:
    with tarfile.open(archive, "r:gz") as tar:
        return tar.extractfile(name).read()  # type: ignore[union-attr]


def blob_url(emulator: Emulator, collection_id: str) -> str:
    response = requests.head(emulator.archive_url(collection_id), params={"key": KEY})
    assert response.status_code == 303
    return str(response.headers["Location"])


def get(emulator: Emulator, path: str, **params: Any) -> requests.Response:
    return requests.get(emulator.root_url + path, params={"key": KEY, **params})


def raw_get(url: str) -> tuple[int, dict[str, str], bytes, OSError | None]:
    """GET over a bare socket: the exact body bytes received, and the error that ended it."""
    parts = urlsplit(url)
    request = f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n"
    received, error = bytearray(), None
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(request.encode())
        while True:
            try:
                chunk = sock.recv(1 << 16)
            except OSError as exc:
                error = exc
                break
            if not chunk:
                break
            received += chunk
    head, _, body = bytes(received).partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    fields = dict(line.split(": ", 1) for line in header_lines)
    return int(status_line.split()[1]), fields, body, error


def item_asset_url(emulator: Emulator, archives: SampleArchives, band: str) -> str:
    patch = archives.patches[0]
    return f"{emulator.root_url}download/{SOURCE}/{SOURCE}_{patch}/{band}.tif"


def port_of(emulator: Emulator) -> int:
    port = urlsplit(emulator.root_url).port
    assert port is not None
    return port

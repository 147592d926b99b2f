"""The main job through the MLHub archive endpoint (the emulator on loopback), and what the network
does to it: resets, throttling, servers that ignore Range, short bodies, bad keys, missing archives."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner

from ingest.cli import main
from ingest.config import RunConfig, RunReport
from ingest.errors import AuthError, NetworkError, NotFoundError
from ingest.pipeline import run
from ingest.sources.download import ResumableBody, RetryPolicy
from ingest.sources.endpoint import Endpoint
from ingest.store.verify import check
from ingest.testing.compare import store_differences
from ingest.testing.emulator import Emulator
from ingest.testing.faults import Faults
from ingest.testing.samples import SampleArchives

from ..conftest import ingest_local

KEY = "s3cr3t-test-key-0123456789"
FAST_RETRY = RetryPolicy(backoff=0.01, read_timeout=10)


@pytest.fixture
def emulator(real_sample: SampleArchives, monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    with Emulator(real_sample.labels.parent, api_key=KEY) as emu:
        monkeypatch.setenv("MLHUB_ROOT_URL", emu.root_url)
        yield emu
        assert emu.errors == []


@pytest.fixture(scope="module")
def local_store(real_sample: SampleArchives, tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("local") / "local.zarr"
    ingest_local(real_sample, store)
    return store


def ingest_endpoint(store: Path, api_key: str | None = KEY, **options: Any) -> RunReport:
    options.setdefault("workers", 0)
    options.setdefault("retry", FAST_RETRY)
    return run(RunConfig(store=store, endpoint=Endpoint(api_key=api_key), **options))


def _all_metadata(store: Path) -> str:
    return "".join(p.read_text() for p in store.rglob("zarr.json"))


def test_endpoint_and_local_routes_give_identical_stores(
    emulator: Emulator, local_store: Path, tmp_path: Path
) -> None:
    report = ingest_endpoint(tmp_path / "s.zarr")
    assert report.samples == 6
    assert check(tmp_path / "s.zarr") == []
    assert store_differences(local_store, tmp_path / "s.zarr") == []
    archive_gets = [r for r in emulator.requests if r.path.startswith("/mlhub/v1/archive/")]
    assert [(r.method, r.path, r.status) for r in archive_gets] == [
        ("GET", "/mlhub/v1/archive/bigearthnet_v1_labels", 303),
        ("GET", "/mlhub/v1/archive/bigearthnet_v1_source", 303),
    ]


def test_the_key_is_never_stored(emulator: Emulator, tmp_path: Path) -> None:
    ingest_endpoint(tmp_path / "s.zarr")
    metadata = _all_metadata(tmp_path / "s.zarr")
    assert KEY not in metadata
    assert f"{emulator.root_url}archive/bigearthnet_v1_source" in metadata


def test_key_from_the_environment_and_from_a_profile(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLHUB_API_KEY", KEY)
    assert ingest_endpoint(tmp_path / "env.zarr", api_key=None).samples == 6
    monkeypatch.delenv("MLHUB_API_KEY")
    home = tmp_path / "mlhub"
    home.mkdir()
    (home / "profiles").write_text(f"[default]\napi_key = wrong\n\n[work]\napi_key = {KEY}\n")
    monkeypatch.setenv("MLHUB_HOME", str(home))
    config = RunConfig(store=tmp_path / "p.zarr", workers=0, endpoint=Endpoint(profile="work"))
    assert run(config).samples == 6


def test_rejected_key_is_one_message_without_the_key(emulator: Emulator, tmp_path: Path) -> None:
    wrong = "wrong-key-987654321"
    with pytest.raises(AuthError) as raised:
        ingest_endpoint(tmp_path / "s.zarr", api_key=wrong)
    assert (
        str(raised.value)
        == "the MLHub API key was rejected (401) for archive 'bigearthnet_v1_labels'"
    )
    assert wrong not in str(raised.value)
    assert sum(r.status == 401 for r in emulator.requests) == 1  # no retry storm


def test_missing_key(emulator: Emulator, tmp_path: Path) -> None:
    with pytest.raises(AuthError, match="no MLHub API key: pass --api-key, set MLHUB_API_KEY"):
        ingest_endpoint(tmp_path / "s.zarr", api_key=None)


def test_missing_archive_may_still_be_generating(emulator: Emulator, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError) as raised:
        ingest_endpoint(tmp_path / "s.zarr", source_collection="bigearthnet_v1_source_v2")
    assert str(raised.value) == (
        "archive 'bigearthnet_v1_source_v2' does not exist (it may still be generating)"
    )


def test_cli_network_errors_exit_4_on_one_line(emulator: Emulator, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["run", str(tmp_path / "s.zarr"), "--api-key", "bad-key-42"])
    assert result.exit_code == 4
    assert result.stderr == (
        "error: the MLHub API key was rejected (401) for archive 'bigearthnet_v1_labels'\n"
    )
    assert "bad-key-42" not in result.output


def _random_cuts(size: int, count: int, seed: int) -> tuple[int, ...]:
    """Bytes sent by each response before its reset, so the cuts land at random archive offsets."""
    positions = sorted(random.Random(seed).sample(range(1, size - 1), count))
    return tuple(b - a for a, b in zip([0, *positions], positions, strict=False))


def test_twenty_resets_at_random_offsets(
    emulator: Emulator, real_sample: SampleArchives, local_store: Path, tmp_path: Path
) -> None:
    cuts = _random_cuts(real_sample.source.stat().st_size, 20, seed=2026)
    emulator.set_faults(Faults(reset_at=cuts))
    warnings: list[str] = []
    config = RunConfig(
        store=tmp_path / "s.zarr", workers=0, retry=FAST_RETRY, endpoint=Endpoint(api_key=KEY)
    )
    run(config, warn=warnings.append)
    assert store_differences(local_store, tmp_path / "s.zarr") == []
    resumed = [r for r in emulator.requests if "Range" in r.headers]
    assert len(resumed) == 20
    assert all(r.status == 206 and "If-Range" in r.headers for r in resumed)
    assert sum("resuming at byte" in w for w in warnings) == 20


@pytest.mark.parametrize("status", [429, 503])
def test_throttling_honours_retry_after(
    emulator: Emulator, real_sample: SampleArchives, status: int
) -> None:
    emulator.set_faults(Faults(unavailable=2, status=status, retry_after=3))
    sleeps: list[float] = []
    session = requests.Session()
    session.params = {"key": KEY}  # type: ignore[assignment]
    with session:
        body = ResumableBody(
            session, emulator.archive_url("bigearthnet_v1_source"), what="source",
            policy=RetryPolicy(backoff=0.01), sleep=sleeps.append,
        )  # fmt: skip
        data = b"".join(iter(lambda: body.read(1 << 16), b""))
        body.close()
    assert sleeps == [3.0, 3.0]
    assert [r.status for r in emulator.requests[:3]] == [status, status, 303]
    assert data == real_sample.source.read_bytes()


def test_throttled_run_completes(emulator: Emulator, local_store: Path, tmp_path: Path) -> None:
    emulator.set_faults(Faults(unavailable=1, status=503, retry_after=0))
    ingest_endpoint(tmp_path / "s.zarr")
    assert store_differences(local_store, tmp_path / "s.zarr") == []


def test_server_ignoring_range_is_handled(
    emulator: Emulator, real_sample: SampleArchives, local_store: Path, tmp_path: Path
) -> None:
    # Every answer is the full body, so each cut is an absolute offset that must lie past the last.
    cuts = sorted(random.Random(1).sample(range(1, real_sample.source.stat().st_size), 3))
    emulator.set_faults(Faults(ignore_range=True, reset_at=tuple(cuts)))
    warnings: list[str] = []
    config = RunConfig(
        store=tmp_path / "s.zarr", workers=0, retry=FAST_RETRY, endpoint=Endpoint(api_key=KEY)
    )
    run(config, warn=warnings.append)
    assert store_differences(local_store, tmp_path / "s.zarr") == []
    assert sum("the server ignored Range" in w for w in warnings) == 3


def test_body_shorter_than_its_length_is_an_error(emulator: Emulator, tmp_path: Path) -> None:
    emulator.set_faults(Faults(wrong_length=True))
    with pytest.raises(NetworkError, match="shorter than its Content-Length"):
        ingest_endpoint(tmp_path / "s.zarr")
    assert not (tmp_path / "s.zarr").exists() or check(tmp_path / "s.zarr") != []


def test_gives_up_after_bounded_retries(emulator: Emulator, tmp_path: Path) -> None:
    emulator.set_faults(Faults(reset_after=0, reset_times=-1))
    with pytest.raises(
        NetworkError, match=r"giving up after 3 retries at byte 0: connection reset by peer$"
    ):
        ingest_endpoint(tmp_path / "s.zarr", retry=RetryPolicy(attempts=3, backoff=0.01))


def test_gives_up_after_bounded_resumes(emulator: Emulator, tmp_path: Path) -> None:
    emulator.set_faults(Faults(reset_after=500, reset_times=-1))
    with pytest.raises(
        NetworkError, match=r"giving up after 5 resumes at byte 3,000: connection reset by peer$"
    ):
        ingest_endpoint(tmp_path / "s.zarr", retry=RetryPolicy(max_resumes=5, backoff=0.01))

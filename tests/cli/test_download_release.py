"""``ingest download --dataset``: a release's official files from the emulator's Zenodo routes
(loopback only), resumable, each md5-checked."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from ingest.catalog.release import download_release
from ingest.cli import main
from ingest.errors import NetworkError
from ingest.sources.download import RetryPolicy
from ingest.sources.official import read_md5sums
from ingest.testing.emulator import Emulator
from ingest.testing.faults import Faults
from ingest.testing.releases import ReleaseSample, write_release_sample

S2 = "BigEarthNet-S2.tar.zst"
NAMES = [S2, "metadata.parquet", "metadata_for_patches_with_snow_cloud_or_shadow.parquet"]


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> ReleaseSample:
    return write_release_sample(
        tmp_path_factory.mktemp("release"), layout="reben-v2", patches=8, seed=3, s1=True
    )


@pytest.fixture
def zenodo(release: ReleaseSample) -> Iterator[Emulator]:
    with Emulator(release.md5sums.parent) as emulator:
        yield emulator


def download(
    zenodo: Emulator, release: ReleaseSample, out: Path, *extra: str
) -> tuple[int, str, str]:
    args = ["download", "--dataset", "bigearthnet-v2", "-o", str(out), "--zenodo-url",
            zenodo.base_url, "--md5sums", str(release.md5sums), "--no-progress", *extra]  # fmt: skip
    result = CliRunner().invoke(main, args)
    return result.exit_code, result.stdout, result.stderr


def test_downloads_equal_the_served_files(
    zenodo: Emulator, release: ReleaseSample, tmp_path: Path
) -> None:
    code, out, err = download(zenodo, release, tmp_path, "--with", "s1")
    assert code == 0, err
    names = [S2, "BigEarthNet-S1.tar.zst", *NAMES[1:]]
    assert [line.split(" (")[0] for line in out.splitlines()] == [str(tmp_path / n) for n in names]
    assert all(line.endswith(", md5 ok)") for line in out.splitlines())
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)
    for name in names:
        assert (tmp_path / name).read_bytes() == (release.md5sums.parent / name).read_bytes()
    gets = [r.path for r in zenodo.requests if r.method == "GET"]
    assert all(p.startswith(("/records/10891137/files/", "/blob/zenodo/")) for p in gets)


def test_a_complete_download_is_not_fetched_again(
    zenodo: Emulator, release: ReleaseSample, tmp_path: Path
) -> None:
    assert download(zenodo, release, tmp_path)[0] == 0
    zenodo.requests.clear()
    code, _, err = download(zenodo, release, tmp_path)
    assert code == 0, err
    assert not [r for r in zenodo.requests if r.method == "GET"]
    assert err.count("already downloaded") == 3


def test_an_md5_mismatch_fails_naming_the_file(
    zenodo: Emulator, release: ReleaseSample, tmp_path: Path
) -> None:
    sums = read_md5sums(release.md5sums)
    wrong = tmp_path / "MD5SUMS"
    wrong.write_text("".join(f"{'0' * 32 if n == S2 else m}  {n}\n" for n, m in sums.items()))
    out = tmp_path / "out"
    args = ["download", "--dataset", "bigearthnet-v2", "-o", str(out), "--zenodo-url",
            zenodo.base_url, "--md5sums", str(wrong), "--no-progress"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 3
    bad = out / f"{S2}.bad"
    assert result.stderr == (
        f"error: {S2}: md5 {sums[S2]} differs from the expected {'0' * 32}: the file is damaged "
        f"or not the official one (kept as {bad})\n"
    )
    assert sorted(p.name for p in out.iterdir()) == [bad.name]  # nothing under the official name
    assert bad.read_bytes() == release.s2[0].read_bytes()


def test_the_published_sums_apply_without_md5sums(
    zenodo: Emulator, release: ReleaseSample, tmp_path: Path
) -> None:
    args = ["download", "--dataset", "bigearthnet-v2", "-o", str(tmp_path), "--zenodo-url",
            zenodo.base_url, "--no-progress"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 3  # a synthetic S2 archive is not the official one
    assert result.stderr.startswith(f"error: {S2}: md5 ")
    assert "differs from the expected 2245ed2d1a93f6ce637d839bc856396e" in result.stderr


def test_a_broken_body_is_resumed_in_the_same_run(
    zenodo: Emulator, release: ReleaseSample, tmp_path: Path
) -> None:
    zenodo.set_faults(Faults(reset_after=4000, reset_times=1))
    code, _, err = download(zenodo, release, tmp_path)
    assert code == 0, err
    assert f"{S2}: connection reset by peer; resuming at byte 4,000" in err
    assert (tmp_path / S2).read_bytes() == release.s2[0].read_bytes()


def test_an_interrupted_download_continues_on_the_next_run(
    zenodo: Emulator, release: ReleaseSample, tmp_path: Path
) -> None:
    zenodo.set_faults(Faults(reset_after=3000, reset_times=-1))
    with pytest.raises(NetworkError, match="giving up after 1 resumes at byte 6,000"):
        download_release("bigearthnet-v2", tmp_path, base_url=zenodo.base_url,
                         md5sums=read_md5sums(release.md5sums),
                         policy=RetryPolicy(max_resumes=1, backoff=0.001))  # fmt: skip
    partial = tmp_path / f"{S2}.partial"
    assert partial.read_bytes() == release.s2[0].read_bytes()[:6000]
    zenodo.set_faults(Faults())
    zenodo.requests.clear()
    code, _, err = download(zenodo, release, tmp_path)
    assert code == 0, err
    assert f"{partial}: continuing at byte 6,000" in err
    ranged = [r for r in zenodo.requests if r.path == f"/blob/zenodo/10891137/{S2}"]
    assert [(r.method, r.headers.get("Range")) for r in ranged] == [
        ("HEAD", None),
        ("GET", "bytes=6000-"),
    ]
    assert ranged[1].headers["If-Range"]  # never spliced onto another file
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(NAMES)
    assert (tmp_path / S2).read_bytes() == release.s2[0].read_bytes()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["download"], "give COLLECTION (an MLHub collection) or --dataset"),
        (["download", "c", "--dataset", "bigearthnet-v1"], "give COLLECTION or --dataset, not both"),
        (["download", "c", "--md5sums", "x"], "--md5sums goes with --dataset"),
        (["download", "--dataset", "bigearthnet-v1", "--with", "reference-maps"],
         "--with reference-maps: bigearthnet-v1 has s1 besides S2"),
        (["download", "--dataset", "bigearthnet-v1", "--zenodo-url", "ftp://x"],
         "--zenodo-url 'ftp://x': expected an http(s) URL"),
    ],
)  # fmt: skip
def test_usage_errors(args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert result.stderr == f"error: {message}\n"

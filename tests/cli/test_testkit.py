"""The test kit's commands as a user runs them: ``ingest sample`` and ``ingest serve``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from ingest.cli import main
from ingest.store.verify import check
from ingest.testing.archive_writer import iter_members


def test_sample_real(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["sample", str(tmp_path), "--real"])
    assert result.exit_code == 0, result.stderr
    labels, source = (
        tmp_path / "bigearthnet_v1_labels.tar.gz",
        tmp_path / "bigearthnet_v1_source.tar.gz",
    )
    assert result.stdout == f"{labels}\n{source}\n6 patches\n"
    names = [i.name for i, _ in iter_members(source)]
    assert names[:2] == ["bigearthnet_v1_source", "bigearthnet_v1_source/collection.json"]
    assert sum(n.endswith("/stac.json") for n in names) == 6


def test_sample_synthetic_with_options(tmp_path: Path) -> None:
    args = ["sample", str(tmp_path), "--patches", "12", "--seed", "4", "--flags", "bool",
            "--label-order", "reversed", "--band-layout", "cog", "--extra-b10"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.stderr
    labels = [
        json.loads(d)
        for i, d in iter_members(tmp_path / "bigearthnet_v1_labels.tar.gz")
        if i.name.endswith("stac.json") and d
    ]
    sources = [
        json.loads(d)
        for i, d in iter_members(tmp_path / "bigearthnet_v1_source.tar.gz")
        if i.name.endswith("stac.json") and d
    ]
    assert len(labels) == len(sources) == 12
    assert all(isinstance(d["properties"]["seasonal_snow"], bool) for d in labels)
    patch = lambda d: d["id"].split("_", 3)[3]  # noqa: E731
    assert [patch(d) for d in labels] == [patch(d) for d in reversed(sources)]
    assert all("B10" in d["assets"] for d in sources)


@pytest.mark.parametrize("args", [[], ["--real", "--patches", "3"]])
def test_sample_needs_exactly_one_kind(tmp_path: Path, args: list[str]) -> None:
    result = CliRunner().invoke(main, ["sample", str(tmp_path), *args])
    assert result.exit_code == 2
    assert result.stderr == "error: give exactly one of --real and --patches N\n"


def test_serve_then_run_through_it(real_sample: object, tmp_path: Path) -> None:
    """`ingest serve` in one process, `ingest run` against its MLHUB_ROOT_URL in another."""
    folder = tmp_path / "archives"
    CliRunner().invoke(main, ["sample", str(folder), "--real"])
    ingest = [sys.executable, "-m", "ingest"]
    server = subprocess.Popen([*ingest, "serve", str(folder), "--port", "0", "--api-key", "k3y"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert server.stdout is not None
        line = server.stdout.readline().strip()
        assert line.startswith("MLHUB_ROOT_URL=http://127.0.0.1:")
        root = line.split("=", 1)[1]
        assert root.endswith("/mlhub/v1/")
        with urllib.request.urlopen(f"{root}collections") as response:
            ids = sorted(c["id"] for c in json.load(response)["collections"])
        assert ids == ["bigearthnet_v1_labels", "bigearthnet_v1_source"]
        env = {**os.environ, "MLHUB_ROOT_URL": root, "MLHUB_API_KEY": "k3y"}
        done = subprocess.run([*ingest, "run", str(tmp_path / "s.zarr"), "--no-progress"],
                              env=env, capture_output=True, text=True, check=False)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert check(tmp_path / "s.zarr") == []
    finally:
        server.send_signal(signal.SIGINT)
        _, err = server.communicate(timeout=30)
    assert server.returncode == 0
    assert "k3y" not in err


def test_sample_reben_v2_real_prints_what_it_wrote(tmp_path: Path) -> None:
    args = ["sample", str(tmp_path), "--layout", "reben-v2", "--real", "--s1", "--reference-maps"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.stderr
    names = ["BigEarthNet-S2.tar.zst", "BigEarthNet-S1.tar.zst", "Reference_Maps.tar.zst",
             "metadata.parquet", "metadata_for_patches_with_snow_cloud_or_shadow.parquet",
             "MD5SUMS"]  # fmt: skip
    lines = result.stdout.splitlines()
    assert lines[:-1] == [str(tmp_path / n) for n in names]
    assert lines[-1].endswith(" patches")
    assert all((tmp_path / n).is_file() for n in names)
    listed = [line.split("  ")[1] for line in (tmp_path / "MD5SUMS").read_text().splitlines()]
    assert sorted(listed) == sorted(names[:-1])


def test_sample_zenodo_v1_synthetic_in_parts(tmp_path: Path) -> None:
    args = ["sample", str(tmp_path), "--layout", "zenodo-v1", "--patches", "5", "--seed", "2",
            "--compression", "none", "--parts", "2", "--s1", "--s1-order", "shuffled"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines == [
        *(str(tmp_path / f"BigEarthNet-S{k}-v1.0.tar{p}") for k in (2, 1) for p in ("aa", "ab")),
        str(tmp_path / "MD5SUMS"),
        "5 patches",
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--layout", "reben-v2", "--flags", "bool"],
         "--flags is for the MLHub archives, not with --layout"),
        (["--layout", "zenodo-v1", "--extra-b10"],
         "--extra-b10 is for the MLHub archives, not with --layout"),
        (["--layout", "zenodo-v1", "--reference-maps"],
         "--reference-maps exists only with --layout reben-v2"),
        (["--s1"], "--s1 needs --layout zenodo-v1 or reben-v2"),
        (["--compression", "zstd"], "--compression needs --layout zenodo-v1 or reben-v2"),
    ],
)  # fmt: skip
def test_sample_refuses_options_of_the_other_kind(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = CliRunner().invoke(main, ["sample", str(tmp_path), "--patches", "2", *args])
    assert result.exit_code == 2
    assert result.stderr == f"error: {message}\n"
    assert not any(tmp_path.iterdir())


def test_serve_prints_each_zenodo_url(tmp_path: Path) -> None:
    folder = tmp_path / "release"
    CliRunner().invoke(main, ["sample", str(folder), "--layout", "reben-v2", "--patches", "3"])
    ingest = [sys.executable, "-m", "ingest"]
    server = subprocess.Popen([*ingest, "serve", str(folder), "--port", "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert server.stdout is not None
        assert server.stdout.readline().startswith("MLHUB_ROOT_URL=http://127.0.0.1:")
        urls = [server.stdout.readline().strip() for _ in range(3)]
        names = ["BigEarthNet-S2.tar.zst", "metadata.parquet",
                 "metadata_for_patches_with_snow_cloud_or_shadow.parquet"]  # fmt: skip
        assert [u.split("/files/")[1] for u in urls] == [f"{n}?download=1" for n in names]
        assert all("/records/10891137/files/" in u for u in urls)
        with urllib.request.urlopen(urls[1]) as response:
            assert response.read() == (folder / names[1]).read_bytes()
    finally:
        server.send_signal(signal.SIGINT)
        server.communicate(timeout=30)
    assert server.returncode == 0

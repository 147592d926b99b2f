"""The notebook's operations as commands: ``ingest collections``, ``items``, ``download-item``,
``download`` and ``run --via items``, against the emulator; the key never appears in any output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import zarr
from click.testing import CliRunner

from ingest.cli import main
from ingest.testing.archive_writer import iter_members
from ingest.testing.compare import store_differences
from ingest.testing.emulator import Emulator
from ingest.testing.samples import SampleArchives

from ..conftest import EMULATOR_KEY, item_documents

KEY = EMULATOR_KEY
LABELS, SOURCE = "bigearthnet_v1_labels", "bigearthnet_v1_source"


@pytest.fixture
def mlhub(
    mlhub: tuple[SampleArchives, Emulator], monkeypatch: pytest.MonkeyPatch
) -> tuple[SampleArchives, Emulator]:
    monkeypatch.setenv("MLHUB_API_KEY", KEY)  # as the notebook configured it
    return mlhub


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    assert KEY not in result.stdout + result.stderr
    return result.exit_code, result.stdout, result.stderr


def test_collections(mlhub: tuple[SampleArchives, Emulator]) -> None:
    code, out, err = invoke("collections", "--filter", "BigEarthNet")
    assert (code, err) == (0, "")
    blocks = out.strip().split("\n\n")
    assert [block.splitlines()[0] for block in blocks] == [
        f"ID:       {LABELS}",
        f"ID:       {SOURCE}",
    ]
    assert "License:  CDLA-Permissive-1.0\nCitation: G. Sumbul, M. Charfuelan" in blocks[0]
    assert blocks[0].endswith("STAC Extensions: label, scientific")
    assert blocks[1].endswith("STAC Extensions: scientific")
    code, out, _ = invoke("collections", "--filter", "_source", "--json")
    assert code == 0
    (line,) = out.splitlines()
    assert json.loads(line)["id"] == SOURCE
    assert invoke("collections", "--filter", "landcovernet") == (0, "", "")


def test_items_with_a_filter(mlhub: tuple[SampleArchives, Emulator]) -> None:
    archives = mlhub[0]
    classes = ["Coniferous forest", "Pastures"]
    expected = [
        doc["id"]
        for doc in item_documents(archives.labels)
        if any(c in doc["properties"]["labels"] for c in classes)
        and doc["properties"]["seasonal_snow"] == "false"
    ][:3]
    code, out, err = invoke(
        "items", LABELS, "--classes", classes[0], "--classes", classes[1], "--no-seasonal-snow",
        "--max-items", "3",
    )  # fmt: skip
    assert (code, err) == (0, "")
    assert [line[4:] for line in out.splitlines() if line.startswith("ID: ")] == expected
    assert out.count("  Seasonal snow: no\n") == len(expected)
    assert out.count("    labels: application/geo+json\n") == len(expected)
    code, out, _ = invoke("items", LABELS, "--classes", classes[0], "--classes", classes[1],
                          "--no-seasonal-snow", "--max-items", "3", "--json")  # fmt: skip
    assert [json.loads(line)["id"] for line in out.splitlines()] == expected


def test_items_max_items_one_reads_only_the_pages_it_needs(
    mlhub: tuple[SampleArchives, Emulator],
) -> None:
    archives, emulator = mlhub
    documents = list(item_documents(archives.labels))
    first: dict[str, int] = {}
    for position, document in enumerate(documents):
        for label in document["properties"]["labels"]:
            first.setdefault(label, position)
    name = max(first, key=lambda label: first[label])  # the class found last
    position = first[name]
    assert position >= 2
    code, out, _ = invoke(
        "items", LABELS, "--classes", name, "--max-items", "1", "--page-size", "1", "--json"
    )
    assert code == 0
    assert [json.loads(line)["id"] for line in out.splitlines()] == [documents[position]["id"]]
    pages = [r for r in emulator.requests if r.path == f"/mlhub/v1/collections/{LABELS}/items"]
    assert len(pages) == position + 1  # one item a page: the pages up to the match, no more


def test_download_item_with_its_sources(
    mlhub: tuple[SampleArchives, Emulator], tmp_path: Path
) -> None:
    archives, _ = mlhub
    label = list(item_documents(archives.labels))[-1]
    source_id = label["id"].replace(LABELS, SOURCE)
    code, out, err = invoke(
        "download-item", LABELS, label["id"], "--sources", "-o", str(tmp_path),
        "--asset", "labels", "--asset", "B02", "--asset", "B03", "--asset", "B04",
    )  # fmt: skip
    assert (code, err) == (0, "")
    assert f"ID: {label['id']}\n" in out and f"ID: {source_id}\n  Platform: Sentinel-2\n" in out
    assert "    B02: image/tiff; application=geotiff; profile=cloud-optimized  bands: Blue\n" in out
    downloaded = [
        line.removeprefix("Downloaded to ")
        for line in out.splitlines()
        if line.startswith("Downloaded to ")
    ]
    assert downloaded == [
        str(tmp_path / label["id"] / "labels.geojson"),
        *(str(tmp_path / source_id / f"{band}.tif") for band in ("B02", "B03", "B04")),
    ]
    members = {info.name: data for info, data in iter_members(archives.source) if data is not None}
    assert Path(downloaded[2]).read_bytes() == members[f"{SOURCE}/{source_id}/B03.tif"]


def test_download_item_errors(mlhub: tuple[SampleArchives, Emulator], tmp_path: Path) -> None:
    code, _, err = invoke("download-item", LABELS, "nope", "-o", str(tmp_path))
    assert (code, err) == (4, f"error: item 'nope' of collection '{LABELS}' does not exist\n")
    label = next(item_documents(mlhub[0].labels))
    code, _, err = invoke(
        "download-item", LABELS, label["id"], "--asset", "B02", "-o", str(tmp_path)
    )
    assert code == 2 and err.startswith("error: no asset 'B02' in item")


def test_download_and_continue(mlhub: tuple[SampleArchives, Emulator], tmp_path: Path) -> None:
    archives, emulator = mlhub
    data = archives.source.read_bytes()
    (tmp_path / f"{SOURCE}.tar.gz.partial").write_bytes(data[:4096])
    code, out, err = invoke("download", SOURCE, "-o", str(tmp_path), "--progress")
    assert code == 0, err
    target = tmp_path / f"{SOURCE}.tar.gz"
    assert out.startswith(f"{target} (")
    assert target.read_bytes() == data
    assert f"note: {target}.partial: continuing at byte 4,096 of {len(data):,}\n" in err
    assert SOURCE in err  # the progress bar's label (only the label when not a terminal)
    blob = [r for r in emulator.requests if r.path.startswith("/blob/")]
    assert [r.headers.get("Range") for r in blob if r.method == "GET"] == ["bytes=4096-"]


def test_download_missing_archive_and_bad_key(
    mlhub: tuple[SampleArchives, Emulator], tmp_path: Path
) -> None:
    code, out, err = invoke("download", "bigearthnet_v2_source", "-o", str(tmp_path))
    assert (code, out) == (4, "")
    assert (
        err
        == "error: archive 'bigearthnet_v2_source' does not exist (it may still be generating)\n"
    )
    code, _, err = invoke("download", LABELS, "-o", str(tmp_path), "--api-key", "bad-key-777")
    assert (code, err) == (
        4,
        f"error: the MLHub API key was rejected (401) for archive '{LABELS}'\n",
    )
    code, _, err = invoke("items", LABELS, "--api-key", "bad-key-777")
    assert code == 4 and "bad-key-777" not in err
    assert list(tmp_path.iterdir()) == []


def test_run_via_items(mlhub: tuple[SampleArchives, Emulator], tmp_path: Path) -> None:
    archives, emulator = mlhub
    args = [
        "--classes",
        "Coniferous forest",
        "--classes",
        "Pastures",
        "--limit",
        "2",
        "--workers",
        "0",
    ]
    code, out, err = invoke("run", str(tmp_path / "items.zarr"), "--via", "items", *args)
    assert code == 0, err
    assert "samples written:" in out
    local = ["--labels-archive", str(archives.labels), "--source-archive", str(archives.source)]
    assert invoke("run", str(tmp_path / "archive.zarr"), *local, *args)[0] == 0
    ignore = frozenset({"created", "sources", "options"})
    assert (
        store_differences(tmp_path / "archive.zarr", tmp_path / "items.zarr", ignore_attrs=ignore)
        == []
    )
    assert (
        zarr.open_group(str(tmp_path / "items.zarr"), mode="r").attrs["options"]["via"] == "items"
    )
    assert not any(r.path.startswith("/mlhub/v1/archive/") for r in emulator.requests)


def test_run_via_items_refuses_archives(
    mlhub: tuple[SampleArchives, Emulator], tmp_path: Path
) -> None:
    archives, _ = mlhub
    code, _, err = invoke("run", str(tmp_path / "s.zarr"), "--via", "items",
                          "--labels-archive", str(archives.labels))  # fmt: skip
    assert code == 2
    assert err == ("error: --via items reads the items API: it takes no --labels-archive or "
                   "--source-archive\n")  # fmt: skip


def test_help_lists_the_new_commands() -> None:
    code, out, _ = invoke("--help")
    assert code == 0
    for command in ("collections", "items", "download-item", "download"):
        assert f"  {command} " in out
    code, out, _ = invoke("run", "--help")
    assert "--via [archive|items]" in out

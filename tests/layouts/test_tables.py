"""The official tables (country, season, split) read from the bigearthnet-common wheel."""

from __future__ import annotations

import bz2
import importlib.resources
from collections import Counter
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ingest.layouts import tables
from ingest.layouts.tables import SPLIT_FILES, official_tables

#: The six real example patches, in the example tarball's order, and their rows in the tables.
REAL = {
    "S2A_MSIL2A_20171221T112501_56_35": ("Portugal", "Winter", "train"),
    "S2A_MSIL2A_20170617T113321_36_85": ("Ireland", "Summer", "train"),
    "S2B_MSIL2A_20170924T93020_69_24": ("Finland", "Fall", "train"),
    "S2B_MSIL2A_20180204T94161_57_38": ("Finland", "Winter", ""),  # seasonal snow: in no split
    "S2A_MSIL2A_20170613T101031_87_48": ("Austria", "Summer", "test"),
    "S2A_MSIL2A_20170617T113321_4_55": ("Ireland", "Summer", "train"),
}


@pytest.fixture(scope="module")
def every_patch() -> list[str]:
    """All 590,326 v1 patch names, from the country/season table (read here independently)."""
    resource = importlib.resources.files("bigearthnet_common") / "s1_s2_name_country_season.csv.bz2"
    rows = bz2.decompress(resource.read_bytes()).decode("ascii").splitlines()
    assert rows[0] == "s1_name,s2_name,country,season"
    return [row.split(",")[1] for row in rows[1:]]


def test_the_real_patches(real_by_name: dict[str, Any]) -> None:
    assert set(real_by_name) == set(REAL)
    unknown = [
        "S2A_MSIL2A_20170101T000000_1_1",
        "S2B_MSIL2A_20170924T93020_69_",  # a prefix of a real name
        "S2B_MSIL2A_20170924T93020_69_240",  # a real name extended
        "S2B_MSIL2A_20170924T93020_69_24" * 3,  # longer than any name in the tables
    ]
    names = [*REAL, *unknown, *REAL][::-1]  # unknown, repeated, reordered
    tables = official_tables(names)
    assert set(tables) == {"country", "season", "split"}
    for column in tables.values():
        assert column.dtype == object and len(column) == len(names)
    for i, name in enumerate(names):
        row = (tables["country"][i], tables["season"][i], tables["split"][i])
        assert row == REAL.get(name, ("", "", "")), name
    snowy = [name for name, patch in real_by_name.items() if patch.snow]
    assert [REAL[name][2] for name in snowy] == [""]  # the official lists agree with each other


def test_every_patch_and_the_published_split_sizes(every_patch: list[str]) -> None:
    assert len(every_patch) == 590_326
    tables = official_tables(every_patch)
    assert Counter(tables["split"].tolist()) == {
        "train": 269_695, "validation": 123_723, "test": 125_866, "": 70_987 + 55,
    }  # fmt: skip
    assert Counter(tables["season"].tolist()) == {
        "Spring": 189_276, "Fall": 155_381, "Summer": 128_836, "Winter": 116_833,
    }  # fmt: skip
    assert len(set(tables["country"].tolist())) == 10 and "" not in tables["country"]
    assert Counter(tables["country"].tolist())["Finland"] == 233_030


def test_no_ids_and_the_split_names() -> None:
    tables = official_tables([])
    assert all(len(v) == 0 for v in tables.values())
    assert all(v.dtype == object for v in tables.values())
    assert tuple(SPLIT_FILES) == ("train", "validation", "test")
    assert SPLIT_FILES["validation"] == "val.csv.bz2"  # the wheel's name; the store's is validation


def test_preload_reads_the_tables_once_in_the_background() -> None:
    tables._read_tables.cache_clear()
    tables.preload()  # a lookup while the thread reads waits for it rather than reading again
    looked_up = official_tables(["S2A_MSIL2A_20170613T101031_0_45"])
    assert tables._read_tables.cache_info().misses == 1
    assert looked_up["country"].tolist() != [""]


def _fresh(monkeypatch: pytest.MonkeyPatch, folder: Path) -> tables._Tables:
    monkeypatch.setenv("INGEST_CACHE_DIR", str(folder))
    tables._read_tables.cache_clear()
    return tables._read_tables()


def _same(a: tables._Tables, b: tables._Tables) -> bool:
    return all(
        getattr(a, f).dtype == getattr(b, f).dtype and np.array_equal(getattr(a, f), getattr(b, f))
        for f in ("names", "country", "season", "split", "countries", "seasons", "splits")
    )


def test_the_cache_gives_the_tables_read_from_the_wheel(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    parsed = tables._parse_tables()
    first = _fresh(monkeypatch, tmp_path)
    assert tables.cache_file() == tmp_path / f"tables-3-{version('bigearthnet-common')}.npz"
    assert tables.cache_file().is_file()
    written = tables.cache_file().stat().st_mtime_ns
    second = _fresh(monkeypatch, tmp_path)  # from the cache file
    assert tables.cache_file().stat().st_mtime_ns == written
    assert _same(parsed, first) and _same(parsed, second)
    assert [p.name for p in tmp_path.iterdir()] == [tables.cache_file().name]  # no leftovers


@pytest.mark.parametrize(
    "damage",
    [
        lambda path: path.write_bytes(path.read_bytes()[:5000]),
        lambda path: path.write_bytes(b"not a zip"),
        lambda path: np.savez(path, names=np.array([b"a"])),  # a field missing
        lambda path: np.savez(  # codes pointing past the values
            path,
            names=np.array([b"a"]),
            country=np.array([9], np.uint8),
            season=np.array([0], np.uint8),
            split=np.array([0], np.uint8),
            countries=np.array(["x"]),
            seasons=np.array(["y"]),
            splits=np.array([""]),
        ),
    ],
)
def test_a_damaged_cache_is_rebuilt(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, damage: Callable[[Path], object]
) -> None:
    good = _fresh(monkeypatch, tmp_path)
    damage(tables.cache_file())
    assert tables._load(tables.cache_file()) is None
    assert _same(_fresh(monkeypatch, tmp_path), good)
    assert tables._load(tables.cache_file()) is not None  # written again


def test_an_unwritable_cache_folder_is_left_alone(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder would be")
    looked_up = _fresh(monkeypatch, blocker / "cache")
    assert len(looked_up.names) == 590_326
    assert blocker.read_text() == "a file where the cache folder would be"

"""The official tables (country, season, split) read from the bigearthnet-common wheel."""

from __future__ import annotations

import bz2
import importlib.resources
from collections import Counter
from typing import Any

import pytest

from ingest.tables import SPLIT_FILES, official_tables

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
    from ingest import tables

    tables._read_tables.cache_clear()
    tables.preload()  # a lookup while the thread reads waits for it rather than reading again
    looked_up = official_tables(["S2A_MSIL2A_20170613T101031_0_45"])
    assert tables._read_tables.cache_info().misses == 1
    assert looked_up["country"].tolist() != [""]

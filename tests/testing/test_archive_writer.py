"""The archive writer of the test kit: compression levels and rewriting archives member by member
(the tool the bad-input and fault tests use to damage real archives)."""

from __future__ import annotations

import tarfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest.testing.archive_writer import (
    Member,
    dir_member,
    file_member,
    isal_level,
    iter_members,
    rewrite_archive,
    symlink_member,
)
from ingest.testing.samples import (
    SampleArchives,
    SampleOptions,
    write_real_sample,
    write_synthetic_sample,
)

SOURCE, LABELS = "bigearthnet_v1_source", "bigearthnet_v1_labels"


def members(archive: Path) -> list[Member]:
    return list(iter_members(archive))


def files(archive: Path) -> dict[str, bytes]:
    return {info.name: data for info, data in iter_members(archive) if data is not None}


def test_compresslevel_maps_onto_isal(tmp_path: Path) -> None:
    assert [isal_level(level) for level in (0, 1, 6, 9)] == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="between 0 and 9"):
        write_synthetic_sample(tmp_path, 2, options=SampleOptions(compresslevel=10))
    assert list(tmp_path.iterdir()) == []  # no partial archive left behind
    fast = write_real_sample(tmp_path / "fast", SampleOptions(compresslevel=1))
    best = write_real_sample(tmp_path / "best", SampleOptions(compresslevel=9))
    assert files(fast.source) == files(best.source)
    assert best.source.stat().st_size < fast.source.stat().st_size


def test_rewrite_drops_and_replaces_members(real: SampleArchives, tmp_path: Path) -> None:
    first = f"{SOURCE}/{SOURCE}_{real.patches[0]}"

    def edit(info: tarfile.TarInfo, data: bytes | None) -> list[Member]:
        if info.name == f"{first}/B03.tif":
            return []
        if info.name == f"{first}/B02.tif":
            assert data is not None
            return [(info, data[:100])]  # a truncated band
        return [(info, data)]

    out = files(rewrite_archive(real.source, tmp_path / "edited.tar.gz", edit))
    original = files(real.source)
    assert f"{first}/B03.tif" not in out
    assert out[f"{first}/B02.tif"] == original[f"{first}/B02.tif"][:100]
    assert {n: d for n, d in out.items() if not n.startswith(first + "/B0")} == {
        n: d for n, d in original.items() if not n.startswith(first + "/B0")
    }


def test_rewrite_duplicates_an_item_and_adds_hostile_members(
    real: SampleArchives, tmp_path: Path
) -> None:
    first = f"{LABELS}/{LABELS}_{real.patches[0]}"
    copies: list[Member] = []

    def edit(info: tarfile.TarInfo, data: bytes | None) -> list[Member]:
        if info.name.startswith(first):
            copies.append((info, data))
        return [(info, data)]

    hostile = [
        file_member("../evil", b"x"),
        symlink_member(f"{LABELS}/link", "/etc/passwd"),
        dir_member(f"{LABELS}/extra"),
    ]

    def appended() -> Iterator[Member]:
        yield from copies  # filled by edit() by the time the members are appended
        yield from hostile

    out = members(rewrite_archive(real.labels, tmp_path / "dup.tar.gz", edit, append=appended()))
    names = Counter(info.name for info, _ in out)
    assert names[f"{first}/stac.json"] == names[f"{first}/labels.geojson"] == 2
    by_name = {info.name: info for info, _ in out}
    assert by_name["../evil"].isfile()
    assert by_name[f"{LABELS}/link"].issym()
    assert by_name[f"{LABELS}/link"].linkname == "/etc/passwd"
    assert by_name[f"{LABELS}/extra"].isdir()
    with pytest.raises(ValueError, match="over its source"):
        rewrite_archive(real.labels, real.labels, lambda info, data: [(info, data)])

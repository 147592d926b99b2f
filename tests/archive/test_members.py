"""Archive members: streaming, grouping into items, refusing unsafe or damaged input."""

from __future__ import annotations

import io
import posixpath
import random
import tarfile
from pathlib import Path

import pytest

from ingest.archive.members import (
    ArchiveItem,
    BadItem,
    CollectionDoc,
    IgnoredMembers,
    Limits,
    iter_archive,
    member_parts,
)
from ingest.errors import InputDataError
from ingest.layouts.mlhub_layout import CollectionRule
from ingest.testing.archive_writer import (
    Member,
    file_member,
    iter_members,
    rewrite_archive,
    symlink_member,
)
from ingest.testing.samples import SampleArchives

SOURCE = "bigearthnet_v1_source"


def read_everything(
    path: Path, collection: str = SOURCE, **kwargs: object
) -> tuple[list[ArchiveItem | BadItem], list[str]]:
    ignored = IgnoredMembers()
    with path.open("rb") as f:
        objs = list(
            iter_archive(
                f, CollectionRule(collection), culprit=str(path), ignored=ignored, **kwargs
            )
        )  # type: ignore[arg-type]
    warnings = [
        f"{name!r}: ignored ({reason})"
        for reason, names in ignored.examples.items()
        for name in names
    ]
    return [o for o in objs if not isinstance(o, CollectionDoc)], warnings


def read_all(
    path: Path, collection: str = SOURCE, **kwargs: object
) -> tuple[list[ArchiveItem], list[str]]:
    items, warnings = read_everything(path, collection, **kwargs)
    assert all(isinstance(i, ArchiveItem) for i in items)
    return [i for i in items if isinstance(i, ArchiveItem)], warnings


@pytest.mark.parametrize(
    ("name", "parts"),
    [
        ("bigearthnet_v1_source/collection.json", ("collection.json",)),
        ("bigearthnet_v1_source/item/B01.tif", ("item", "B01.tif")),
        ("./bigearthnet_v1_source/item/B01.tif", ("item", "B01.tif")),
        ("/bigearthnet_v1_source/item/B01.tif", None),
        ("bigearthnet_v1_source/../etc/passwd", None),
        ("bigearthnet_v1_source/item/../../x", None),
        ("other/item/B01.tif", None),
        ("bigearthnet_v1_source", None),
        ("bigearthnet_v1_source\\item\\B01.tif", None),
    ],
)
def test_member_parts(name: str, parts: tuple[str, ...] | None) -> None:
    assert member_parts(name, SOURCE) == parts


def _member_parts_with_normpath(name: str, collection: str) -> tuple[str, ...] | None:
    """member_parts as first written, normpath check included: the reference for the fast one."""
    if name.startswith("/") or "\\" in name:
        return None
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts or len(parts) < 2 or parts[0] != collection:
        return None
    if posixpath.normpath(name).split("/")[0] != collection:
        return None
    return parts[1:]


def test_member_parts_agrees_with_the_normpath_check() -> None:
    pieces = ["c", "x", "B01.tif", ".", "..", "", "/", "//", "\\", "c.", ".c"]
    rng = random.Random(0)
    names = {"/".join(rng.choice(pieces) for _ in range(rng.randint(1, 6))) for _ in range(20_000)}
    for name in names:
        assert member_parts(name, "c") == _member_parts_with_normpath(name, "c"), name


def test_groups_items_in_archive_order(real_sample: SampleArchives) -> None:
    items, warnings = read_all(real_sample.source)
    assert [i.item_id.removeprefix("bigearthnet_v1_source_") for i in items] == list(
        real_sample.patches
    )
    assert sorted(items[0].files) == sorted([*(f"B{n}.tif" for n in
        ("01", "02", "03", "04", "05", "06", "07", "08", "09", "11", "12", "8A")), "stac.json"])  # fmt: skip
    assert warnings == []


def test_plain_tar_is_read_too(real_sample: SampleArchives, tmp_path: Path) -> None:
    import gzip

    plain = tmp_path / "source.tar"
    plain.write_bytes(gzip.decompress(real_sample.source.read_bytes()))
    items, _ = read_all(plain)
    assert len(items) == 6


def _edited(src: Path, dst: Path, edit: object, append: tuple[Member, ...] = ()) -> Path:
    return rewrite_archive(src, dst, edit, append=append)  # type: ignore[arg-type]


def test_unsafe_members_are_ignored_with_a_warning(
    real_sample: SampleArchives, tmp_path: Path
) -> None:
    hostile = _edited(
        real_sample.source, tmp_path / "hostile.tar.gz", lambda i, d: [(i, d)],
        append=(
            file_member("bigearthnet_v1_source/../../evil.sh", b"rm -rf /"),
            file_member("/etc/cron.d/evil", b"* * * * * root evil"),
            file_member("elsewhere/item/B01.tif", b"x"),
            symlink_member("bigearthnet_v1_source/link/B01.tif", "/etc/passwd"),
            file_member("bigearthnet_v1_source/a/b/c.tif", b"deep"),
        ),
    )  # fmt: skip
    items, warnings = read_all(hostile)
    assert len(items) == 6
    assert warnings == [
        "'bigearthnet_v1_source/../../evil.sh': ignored (outside the bigearthnet_v1_source/ folder)",
        "'/etc/cron.d/evil': ignored (outside the bigearthnet_v1_source/ folder)",
        "'elsewhere/item/B01.tif': ignored (outside the bigearthnet_v1_source/ folder)",
        "'bigearthnet_v1_source/link/B01.tif': ignored (symbolic link, not a regular file)",
        "'bigearthnet_v1_source/a/b/c.tif': ignored (not an item file)",
    ]
    assert not (tmp_path.parent / "evil.sh").exists()


def test_truncated_gzip_is_an_error(real_sample: SampleArchives, tmp_path: Path) -> None:
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(real_sample.source.read_bytes()[: real_sample.source.stat().st_size // 2])
    with pytest.raises(InputDataError, match=r"cut\.tar\.gz: archive is truncated"):
        read_all(cut)


def test_corrupt_gzip_is_an_error(real_sample: SampleArchives, tmp_path: Path) -> None:
    data = bytearray(real_sample.source.read_bytes())
    data[5000:5100] = b"\x00" * 100
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(bytes(data))
    with pytest.raises(
        InputDataError, match=r"bad\.tar\.gz: archive is (truncated or corrupt|truncated)"
    ):
        read_all(bad)


def test_archive_without_items_is_an_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty.tar"
    with tarfile.open(empty, "w") as tar:
        info = tarfile.TarInfo(f"{SOURCE}/collection.json")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"{}"))
    with pytest.raises(InputDataError, match="archive holds no items under bigearthnet_v1_source/"):
        read_all(empty)


def test_item_twice_is_a_bad_item(real_sample: SampleArchives, tmp_path: Path) -> None:
    first = real_sample.patches[0]
    again = [(i, d) for i, d in iter_members(real_sample.source) if first in i.name]
    twice = _edited(
        real_sample.source, tmp_path / "twice.tar.gz", lambda i, d: [(i, d)], append=tuple(again)
    )
    items, _ = read_everything(twice)
    assert [type(i).__name__ for i in items] == ["ArchiveItem"] * 6 + ["BadItem"]
    bad = items[-1]
    assert isinstance(bad, BadItem)
    assert (
        str(bad.error)
        == f"bigearthnet_v1_source/bigearthnet_v1_source_{first}: item appears twice in the archive"
    )


def test_member_size_limit(real_sample: SampleArchives) -> None:
    items, _ = read_everything(real_sample.source, limits=Limits(asset_bytes=1000))
    assert all(isinstance(i, BadItem) for i in items)
    bad = items[0]
    assert isinstance(bad, BadItem)
    assert str(bad.error) == (
        f"bigearthnet_v1_source/bigearthnet_v1_source_{real_sample.patches[0]}/B01.tif: "
        "member of 1,160 bytes exceeds the limit of 1,000"
    )


def test_collection_document(real_sample: SampleArchives) -> None:
    with real_sample.labels.open("rb") as f:
        first = next(
            iter_archive(
                f, CollectionRule("bigearthnet_v1_labels"), culprit="x", ignored=IgnoredMembers()
            )
        )
    assert isinstance(first, CollectionDoc)
    assert first.document["license"] == "CDLA-Permissive-1.0"
    assert first.document["links"] == []  # the per-item links are dropped (see parse_collection)


def test_collection_document_drops_item_links() -> None:
    from ingest.archive.members import parse_collection

    document = parse_collection(
        b'{"id": "c", "license": "L", "links": [{"href": "a/stac.json", "rel": "item"},'
        b' {"rel": "self", "href": "x"}, {"href": "b/stac.json", "rel": "item"}],'
        b' "providers": [{"name": "BigEarthNet", "roles": ["licensor"]}]}',
        "c/collection.json",
    )
    assert document == {
        "id": "c",
        "license": "L",
        "links": [{"rel": "self", "href": "x"}],
        "providers": [{"name": "BigEarthNet", "roles": ["licensor"]}],
    }
    with pytest.raises(InputDataError, match=r"^c/collection.json: invalid JSON"):
        parse_collection(b"{oops", "c/collection.json")

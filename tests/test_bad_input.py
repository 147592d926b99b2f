"""Bad input, case by case, built from the real sample: a one-line error naming the culprit, exit 3
and no complete store — or, with ``--on-error skip``, the item left out and listed."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
import zarr
from click.testing import CliRunner

from ingest.cli import main
from ingest.store.verify import check
from ingest.testing.archive_writer import Member, iter_members, rewrite_archive
from ingest.testing.geotiff import encode_band
from ingest.testing.samples import SampleArchives

Edit = Callable[[str, bytes], bytes | None]
"""(file name inside the item folder, bytes) -> new bytes, or None to drop the member."""


@dataclass(frozen=True)
class Case:
    archive: str  # "labels" or "source"
    edit: Edit | None  # applied to the members of the third patch's item
    culprit: str  # member or folder named in the message, relative to the item folder ("" = folder)
    problem: str
    duplicate: bool = False


def _json_edit(change: Callable[[dict[str, Any]], None]) -> Edit:
    def edit(file: str, data: bytes) -> bytes:
        if file != "stac.json":
            return data
        doc = json.loads(data)
        change(doc)
        return json.dumps(doc).encode()

    return edit


def _band_edit(band: str, make: Callable[[bytes], bytes | None]) -> Edit:
    return lambda file, data: make(data) if file == f"{band}.tif" else data


def _uint8_tiff(data: bytes) -> bytes:
    out = io.BytesIO()
    tifffile.imwrite(out, np.zeros((60, 60), np.uint8))
    return out.getvalue()


CASES = {
    "label-invalid-json": Case("labels", lambda f, d: b'{"type": "Feature", ' if f == "stac.json" else d,
                               "stac.json", "invalid JSON: Expecting property name enclosed in double quotes"),
    "label-without-labels": Case("labels", _json_edit(lambda d: d["properties"].pop("labels")),
                                 "stac.json", "properties: 'labels' is a required property"),
    "label-unknown-class": Case("labels", _json_edit(lambda d: d["properties"]["labels"].append("Atlantis")),
                                "stac.json", "unknown class name 'Atlantis'"),
    "label-bad-flag": Case("labels", _json_edit(lambda d: d["properties"].update(seasonal_snow="yes")),
                           "stac.json", "properties.seasonal_snow: 'yes' is neither a boolean nor 'true'/'false'"),
    "label-twice": Case("labels", None, "", "item appears twice in the archive", duplicate=True),
    "source-invalid-json": Case("source", lambda f, d: b"\x00garbage" if f == "stac.json" else d,
                                "stac.json", "invalid JSON"),
    "source-missing-band": Case("source", _band_edit("B05", lambda d: None), "", "missing band B05"),
    "band-not-a-tiff": Case("source", _band_edit("B02", lambda d: b"<!DOCTYPE html><p>oops</p>"),
                            "B02.tif", "not a TIFF file (starts with b'<!DO')"),
    "band-corrupt": Case("source", _band_edit("B03", lambda d: d[: len(d) // 2]),
                         "B03.tif", "truncated TIFF"),
    "band-wrong-shape": Case("source", _band_edit("B05", lambda d: encode_band(
        np.zeros((61, 61), np.uint16), epsg=32633, x_ul=0, y_ul=0, gsd=20.0)),
        "B05.tif", "shape (61, 61), expected (60, 60)"),
    "band-wrong-dtype": Case("source", _band_edit("B06", _uint8_tiff), "B06.tif", "dtype uint8, expected uint16"),
    "source-twice": Case("source", None, "", "item appears twice in the archive", duplicate=True),
}  # fmt: skip


def _apply(archives: SampleArchives, case: Case, tmp: Path) -> tuple[SampleArchives, str]:
    patch = archives.patches[2]
    collection = f"bigearthnet_v1_{case.archive}"
    folder = f"{collection}/{collection}_{patch}"
    src = archives.labels if case.archive == "labels" else archives.source
    dst = tmp / src.name

    def edit(info: tarfile.TarInfo, data: bytes | None) -> list[Member]:
        if case.edit is None or data is None or not info.name.startswith(folder + "/"):
            return [(info, data)]
        new = case.edit(info.name.rsplit("/", 1)[1], data)
        return [] if new is None else [(info, new)]

    again = (
        tuple((i, d) for i, d in iter_members(src) if i.name.startswith(folder))
        if case.duplicate
        else ()
    )
    rewrite_archive(src, dst, edit, append=again)
    other = archives.source if case.archive == "labels" else archives.labels
    labels, source = (dst, other) if case.archive == "labels" else (other, dst)
    culprit = f"{folder}/{case.culprit}" if case.culprit else folder
    return SampleArchives(labels, source, archives.patches), culprit


def _run(archives: SampleArchives, store: Path, *extra: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, [
        "run", str(store), "--labels-archive", str(archives.labels),
        "--source-archive", str(archives.source), "--workers", "0", *extra,
    ])  # fmt: skip
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_item_stops_the_run(name: str, real_sample: SampleArchives, tmp_path: Path) -> None:
    archives, culprit = _apply(real_sample, CASES[name], tmp_path)
    code, _, err = _run(archives, tmp_path / "s.zarr")
    assert code == 3
    assert err.startswith(f"error: {culprit}: ")
    assert CASES[name].problem in err
    assert err.count("\n") == 1
    assert "Traceback" not in err
    assert _not_complete(tmp_path / "s.zarr")


def _not_complete(path: Path) -> bool:
    """Labels are read before the store is created: a bad label item leaves no store at all."""
    return not path.exists() or zarr.open_group(str(path), mode="r").attrs["complete"] is False


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_item_is_skipped_and_listed(
    name: str, real_sample: SampleArchives, tmp_path: Path
) -> None:
    case = CASES[name]
    archives, culprit = _apply(real_sample, case, tmp_path)
    code, out, err = _run(archives, tmp_path / "s.zarr", "--on-error", "skip")
    assert code == 0, err
    item = culprit.split("/")[1]
    group = zarr.open_group(str(tmp_path / "s.zarr"), mode="r")
    [skipped] = group.attrs["skipped"]
    assert skipped["item"] == item
    assert skipped["reason"].startswith(f"{culprit}: ")
    assert case.problem in skipped["reason"]
    assert group.attrs["counts"]["skipped"] == 1
    patch = real_sample.patches[2]
    stored = np.asarray(group["patch_id"][:]).tolist()
    if case.duplicate:  # the first occurrence is good and kept
        assert stored == list(real_sample.patches)
    else:
        assert stored == [p for p in real_sample.patches if p != patch]
    assert f"skipped {item}:" in out
    assert f"warning: skipped {item}:" in err
    assert check(tmp_path / "s.zarr") == []


def test_unskippable_archive_damage(real_sample: SampleArchives, tmp_path: Path) -> None:
    """Damage to the archive itself stops the run even under --on-error skip."""
    data = real_sample.source.read_bytes()
    cases = {
        "truncated.tar.gz": (data[: len(data) // 3], "archive is truncated or corrupt"),
        "html.tar.gz": (
            b"<html><body>502 Bad Gateway</body></html>",
            "not a tar, tar.gz or tar.zst archive",
        ),
    }
    empty = io.BytesIO()
    with tarfile.open(fileobj=empty, mode="w") as tar:
        folder = tarfile.TarInfo("bigearthnet_v1_source")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
    cases["empty.tar"] = (
        empty.getvalue(),
        "archive holds no items under bigearthnet_v1_source/",
    )
    for name, (content, message) in cases.items():
        bad = tmp_path / name
        bad.write_bytes(content)
        archives = SampleArchives(real_sample.labels, bad, real_sample.patches)
        code, _, err = _run(archives, tmp_path / f"{name}.zarr", "--on-error", "skip")
        assert code == 3, name
        assert err == f"error: {bad}: {message}" + err[len(f"error: {bad}: {message}") :]
        assert err.count("\n") == 1 and message in err
        assert _not_complete(tmp_path / f"{name}.zarr")

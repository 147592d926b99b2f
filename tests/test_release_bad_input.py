"""Bad input of the Zenodo v1 and reBEN v2 archives: one line naming the culprit, exit 3 (input
data), no traceback, and never a store marked complete."""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zarr
from click.testing import CliRunner

from ingest.cli import main
from ingest.testing.archive_writer import file_member, rewrite_archive
from ingest.testing.emulator import Emulator
from ingest.testing.releases import ReleaseSample, write_release_sample


@pytest.fixture(scope="module")
def v1(tmp_path_factory: pytest.TempPathFactory) -> ReleaseSample:
    return write_release_sample(tmp_path_factory.mktemp("v1"), layout="zenodo-v1", real=True)


@pytest.fixture(scope="module")
def v2(tmp_path_factory: pytest.TempPathFactory) -> ReleaseSample:
    return write_release_sample(tmp_path_factory.mktemp("v2"), layout="reben-v2", real=True)


def ingest(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["run", *args, "--workers", "0"])
    return result.exit_code, result.output


def v2_args(store: Path, s2: Path, metadata: tuple[Path, ...]) -> list[str]:
    out = [str(store), "--source-archive", str(s2)]
    for m in metadata:
        out += ["--metadata", str(m)]
    return out


def assert_refused(code: int, output: str, *expected: str, store: Path) -> None:
    assert code == 3, output
    lines = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in output, output
    for text in expected:
        assert text in lines[0], lines[0]
    if (store / "zarr.json").exists():
        assert zarr.open_group(str(store), mode="r").attrs["complete"] is False


@pytest.mark.parametrize("cut", ["truncated", "corrupt"])
def test_damaged_zstd_is_refused(cut: str, v2: ReleaseSample, tmp_path: Path) -> None:
    data = v2.s2[0].read_bytes()
    if cut == "truncated":
        damaged = data[: len(data) * 2 // 3]
    else:
        middle = len(data) // 2
        damaged = (
            data[:middle]
            + bytes(b ^ 0x5A for b in data[middle : middle + 64])
            + data[middle + 64 :]
        )
    path = tmp_path / "BigEarthNet-S2.tar.zst"
    path.write_bytes(damaged)
    store = tmp_path / "s.zarr"
    code, out = ingest(*v2_args(store, path, v2.metadata), "--layout", "reben-v2")
    assert_refused(code, out, str(path), "truncated or corrupt", store=store)


def test_an_archive_of_unknown_layout_says_what_each_layout_starts_with(tmp_path: Path) -> None:
    path = tmp_path / "other.tar"
    with tarfile.open(path, "w") as tar:
        tar.add(__file__, arcname="photos/holiday.jpg")
    store = tmp_path / "s.zarr"
    code, out = ingest(str(store), "--source-archive", str(path))
    assert_refused(code, out, "unknown layout", "'photos/holiday.jpg'", "zenodo-v1 with "
                   "BigEarthNet-v1.0/", "reben-v2 with BigEarthNet-S2/", store=store)  # fmt: skip
    assert not store.exists()


def test_an_s1_archive_given_as_s2_is_named(tmp_path: Path) -> None:
    sample = write_release_sample(tmp_path, layout="reben-v2", real=True, s1=True)
    code, out = ingest(*v2_args(tmp_path / "s.zarr", sample.s1[0], sample.metadata))
    assert_refused(code, out, "Sentinel-1 archive of v2.0", store=tmp_path / "s.zarr")


def test_metadata_that_is_not_parquet(v2: ReleaseSample, tmp_path: Path) -> None:
    bad = tmp_path / "metadata.parquet"
    bad.write_text("patch_id,labels\n")
    store = tmp_path / "s.zarr"
    code, out = ingest(*v2_args(store, v2.s2[0], (bad,)))
    assert_refused(code, out, str(bad), "not a parquet file", store=store)


def _rewrite_metadata(src: Path, dst: Path, change: object) -> Path:
    table = pq.read_table(src)
    assert callable(change)
    pq.write_table(change(table), dst)
    return dst


def test_metadata_lacking_a_column(v2: ReleaseSample, tmp_path: Path) -> None:
    bad = _rewrite_metadata(v2.metadata[0], tmp_path / "m.parquet",
                            lambda t: t.drop_columns(["split"]))  # fmt: skip
    store = tmp_path / "s.zarr"
    code, out = ingest(*v2_args(store, v2.s2[0], (bad, *v2.metadata[1:])))
    assert_refused(code, out, str(bad), "lacks the column 'split'", store=store)


def test_metadata_naming_an_unknown_class(v2: ReleaseSample, tmp_path: Path) -> None:
    def rename(table: pa.Table) -> pa.Table:
        rows = table.to_pylist()
        rows[0]["labels"] = [*rows[0]["labels"], "Moon dust"]
        return pa.Table.from_pylist(rows, schema=table.schema)

    bad = _rewrite_metadata(v2.metadata[0], tmp_path / "m.parquet", rename)
    store = tmp_path / "s.zarr"
    code, out = ingest(*v2_args(store, v2.s2[0], (bad, *v2.metadata[1:])))
    assert_refused(code, out, str(bad), "unknown 19-class name 'Moon dust'", store=store)


def test_patches_without_rows_and_rows_without_patches_are_counted(
    v2: ReleaseSample, tmp_path: Path
) -> None:
    first = pq.read_table(v2.metadata[0])
    dropped = first.slice(0, 1)["patch_id"][0].as_py()
    kept = _rewrite_metadata(v2.metadata[0], tmp_path / "m.parquet", lambda t: t.slice(1))
    extra = first.slice(0, 1).to_pylist()
    extra[0]["patch_id"] = "S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_99_99"
    spare = tmp_path / "extra.parquet"
    pq.write_table(pa.Table.from_pylist(extra, schema=first.schema), spare)
    store = tmp_path / "s.zarr"
    code, out = ingest(*v2_args(store, v2.s2[0], (kept, *v2.metadata[1:], spare)))
    assert code == 0, out
    counts = zarr.open_group(str(store), mode="r").attrs["counts"]
    assert counts["source_without_labels"] == 1 and counts["labels_without_source"] == 1
    assert counts["samples"] == len(v2.patches) - 1
    assert dropped in out  # named among the examples of the summary


def test_a_v1_patch_folder_without_its_json(v1: ReleaseSample, tmp_path: Path) -> None:
    victim = v1.patches[2]
    bad = rewrite_archive(
        v1.s2[0], tmp_path / "BigEarthNet-S2-v1.0.tar.gz",
        lambda info, data: [] if info.name.endswith(f"{victim}_labels_metadata.json")
        else [(info, data)],
    )  # fmt: skip
    store = tmp_path / "s.zarr"
    code, out = ingest(str(store), "--source-archive", str(bad))
    assert_refused(code, out, f"BigEarthNet-v1.0/{victim}", "has no", "labels_metadata.json",
                   store=store)  # fmt: skip
    code, out = ingest(str(tmp_path / "k.zarr"), "--source-archive", str(bad), "--on-error", "skip")
    assert code == 0, out
    group = zarr.open_group(str(tmp_path / "k.zarr"), mode="r")
    assert victim not in group["patch_id"][:].tolist()
    assert [s["item"] for s in group.attrs["skipped"]] == [victim]


def test_a_v1_patch_twice(v1: ReleaseSample, tmp_path: Path) -> None:
    victim = v1.patches[1]
    again = []

    def keep(
        info: tarfile.TarInfo, data: bytes | None
    ) -> list[tuple[tarfile.TarInfo, bytes | None]]:
        if info.isfile() and f"/{victim}/" in info.name and data is not None:
            again.append(file_member(info.name, data))
        return [(info, data)]

    plain = tmp_path / "plain.tar.gz"
    rewrite_archive(v1.s2[0], plain, keep)
    bad = rewrite_archive(plain, tmp_path / "BigEarthNet-S2-v1.0.tar.gz",
                          lambda info, data: [(info, data)], append=again)  # fmt: skip
    store = tmp_path / "s.zarr"
    code, out = ingest(str(store), "--source-archive", str(bad))
    assert_refused(code, out, victim, "appears twice", store=store)


def test_an_official_file_whose_md5_differs_fails_the_run(
    v2: ReleaseSample, tmp_path: Path
) -> None:
    served = tmp_path / "served"
    served.mkdir()
    for path in (*v2.s2, *v2.metadata):
        shutil.copy(path, served / path.name)
    store = tmp_path / "s.zarr"
    with Emulator(served) as emulator:
        code, out = ingest(str(store), "--dataset", "bigearthnet-v2", "--zenodo-url",
                           emulator.base_url)  # fmt: skip
    # The sample is not the official file: its md5 differs from the published one.
    assert_refused(code, out, "md5", "differs from the official", store=store)

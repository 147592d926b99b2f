"""The reBEN metadata reader's own checks (:mod:`ingest.layouts.metadata`); the fuzz suite compares
it with pyarrow on damaged files."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ingest.errors import InputDataError
from ingest.layouts.metadata import read_metadata

ID = "S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_{}_43"


def parquet(*numbers: int) -> io.BytesIO:
    """A metadata file of the official columns, one row per patch number."""
    ids = [ID.format(n) for n in numbers]
    table = pa.table({
        "patch_id": ids,
        "labels": [["Urban fabric", "Arable land"]] * len(ids),
        "split": ["train"] * len(ids),
        "country": ["Austria"] * len(ids),
        "s1_name": [f"S1A_IW_GRDH_1SDV_20170613T165043_33UUP_{n}_43" for n in numbers],
        "s2v1_name": [f"S2A_MSIL2A_20170613T101031_{n}_43" for n in numbers],
        "contains_seasonal_snow": [False] * len(ids),
        "contains_cloud_or_shadow": [n % 2 == 0 for n in numbers],
    })  # fmt: skip
    out = io.BytesIO()
    pq.write_table(table, out, row_group_size=3)
    out.seek(0)
    return out


def test_rows_in_file_order_with_the_ids_as_strings() -> None:
    metadata = read_metadata([parquet(1, 2, 3, 4, 5), parquet(7, 6)], names=["a", "b"])
    expected = [ID.format(n) for n in (1, 2, 3, 4, 5, 7, 6)]
    assert metadata.id_list == expected
    assert metadata.patch_ids.to_pylist() == expected
    assert metadata.cloud_and_shadow.tolist() == [n % 2 == 0 for n in (1, 2, 3, 4, 5, 7, 6)]
    assert metadata.masks.tolist() == [(1 << 0) | (1 << 2)] * 7  # Urban fabric, Arable land


@pytest.mark.parametrize(
    ("files", "twice"),
    [([(1, 2, 3, 4, 2)], 2), ([(1, 2, 3), (4, 3)], 3), ([(5, 6), (7,), (6, 5)], 6)],
    ids=["within-a-file", "across-files", "first-repeat-named"],
)
def test_a_patch_twice_names_it_and_the_files(files: list[tuple[int, ...]], twice: int) -> None:
    names = [f"m{i}.parquet" for i in range(len(files))]
    with pytest.raises(InputDataError) as caught:
        read_metadata([parquet(*numbers) for numbers in files], names=names)
    assert caught.value.culprit == ", ".join(names)
    assert caught.value.problem == f"patch {ID.format(twice)} has two metadata rows"

"""Fuzzing the reBEN metadata reader (:func:`ingest.layouts.metadata.read_metadata`) against
pyarrow and an independent check of every row.

Seeds are slices of the official metadata written with several encodings (snappy, zstd, none;
dictionary or plain; small row groups). Mutations change the table (a column's type, nulls, an
unknown class or split, a repeated patch or class, a missing column) or the file's bytes (flips in
the footer, page headers and data; cuts). Each case is either read as pyarrow reads the same file,
every check holding (masks, flags, strings, unique ids), or is an InputDataError naming the file;
Arrow's pool never grows beyond :data:`ARROW_PEAK` over the run.
"""

from __future__ import annotations

import io
import random

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ingest.errors import InputDataError
from ingest.layouts.metadata import COLUMNS, SPLITS, Metadata, read_metadata
from ingest.nomenclature import CLASSES_19
from ingest.testing.release_data import read_metadata as official_metadata
from tests.fuzz.kit import Outcomes, bounded, choose, describe, flip_bits, truncate_or_extend

NAME = "metadata.parquet"
ARROW_PEAK = 256 << 20


def seed_files(rng: random.Random) -> list[bytes]:
    table = official_metadata()
    out = []
    for i in range(6):
        start = rng.randrange(table.num_rows - 400)
        part = table.slice(start, rng.choice((1, 40, 300)))
        sink = io.BytesIO()
        pq.write_table(part, sink, compression=("snappy", "zstd", "none")[i % 3],
                       use_dictionary=i % 2 == 0, row_group_size=rng.choice((7, 100, 1000)))  # fmt: skip
        out.append(sink.getvalue())
    return out


def mutate_table(data: bytes, rng: random.Random) -> bytes:
    table = pq.read_table(io.BytesIO(data))
    column = rng.choice(table.column_names)
    i = table.column_names.index(column)
    values = table.column(column).to_pylist()
    row = rng.randrange(len(values))
    action = choose(rng, [(1, "null"), (1, "type"), (1.5, "value"), (0.5, "drop"),
                          (0.5, "large"), (1, "repeat")])  # fmt: skip
    if action == "null":
        values[row] = None
        table = table.set_column(i, column, pa.array(values, table.schema.field(i).type))
    elif action == "type":
        table = table.set_column(i, column, pa.array([str(v) for v in values]))
    elif action == "value":
        if column == "labels":
            values[row] = [*values[row], rng.choice(("Urban fabric", "Pastures", "Marine waters"))]
        elif column in ("contains_seasonal_snow", "contains_cloud_or_shadow"):
            values[row] = not values[row]
        else:
            values[row] = rng.choice(("", "train", "TEST", "x" * 200, "\u00e9", values[0]))
        table = table.set_column(i, column, pa.array(values, table.schema.field(i).type))
    elif action == "drop":
        table = table.drop_columns([column])
    elif action == "large":
        kind = table.schema.field(i).type
        wider = pa.large_list(pa.large_string()) if pa.types.is_list(kind) else pa.large_string()
        if pa.types.is_list(kind) or pa.types.is_string(kind):
            table = table.set_column(i, column, table.column(column).cast(wider))
    elif action == "repeat" and len(values) > 1:
        table = pa.concat_tables([table, table.slice(row, 1)])
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def mutate(data: bytes, rng: random.Random) -> bytes:
    roll = rng.random()
    if roll < 0.35:
        return mutate_table(data, rng)
    raw = bytearray(data)
    if roll < 0.6:
        flip_bits(raw, rng, max(0, len(raw) - 600))  # the footer: schema, offsets, sizes
    elif roll < 0.85:
        flip_bits(raw, rng, 4, len(raw) - 8)  # page headers and data
    else:
        return truncate_or_extend(data, rng)
    return bytes(raw)


def independent(data: bytes) -> pa.Table:
    """The file as pyarrow reads it, then every check read_metadata promises, row by row."""
    table = pq.read_table(io.BytesIO(data), columns=list(COLUMNS))
    rows = table.to_pylist()
    ids = [r["patch_id"] for r in rows]
    assert len(set(ids)) == len(ids), "a patch twice"
    for r in rows:
        assert all(r[c] is not None for c in COLUMNS), "a null"
        assert all(n in CLASSES_19 for n in r["labels"]), "an unknown class"
        assert r["split"] in SPLITS, "an unknown split"
    return table


def same(metadata: Metadata, table: pa.Table) -> None:
    rows = table.to_pylist()
    assert metadata.patch_ids.to_pylist() == [r["patch_id"] for r in rows]
    masks = [sum(1 << CLASSES_19.index(n) for n in set(r["labels"])) for r in rows]
    assert metadata.masks.tolist() == masks
    assert metadata.seasonal_snow.tolist() == [r["contains_seasonal_snow"] for r in rows]
    assert metadata.cloud_and_shadow.tolist() == [r["contains_cloud_or_shadow"] for r in rows]
    for column in ("split", "country", "s1_name", "s2v1_name"):
        assert metadata.strings[column].to_pylist() == [r[column] for r in rows], column


def test_fuzz_metadata_parquet(
    fuzz_cases: int, fuzz_rng: random.Random, outcomes: Outcomes
) -> None:
    seeds = seed_files(fuzz_rng)
    pool = pa.default_memory_pool()
    baseline = pool.max_memory() or 0
    cases = max(1, fuzz_cases // 3)  # each case reads a whole file twice: a third as many
    for case in range(cases):
        data = mutate(fuzz_rng.choice(seeds), fuzz_rng)
        what = f"case {case} ({len(data)} bytes)"
        metadata, error = bounded(
            lambda: read_metadata([io.BytesIO(data)], names=[NAME]),  # noqa: B023
            what, outcomes, trace=False,
        )  # fmt: skip
        grown = (pool.max_memory() or 0) - baseline
        outcomes.peak = max(outcomes.peak, grown)  # Arrow's pool: tracemalloc does not see it
        assert grown < ARROW_PEAK, f"{what}: Arrow's pool grew by {grown:,} bytes"
        if error is not None:
            assert isinstance(error, InputDataError), f"{what}: {describe(error)}"
            assert error.culprit == NAME, f"{what}: {error}"
            outcomes.add("refused")
            continue
        assert isinstance(metadata, Metadata)
        try:
            table = independent(data)
        except Exception as exc:
            message = f"{what}: read, but pyarrow and the checks say {describe(exc)}"
            raise AssertionError(message) from exc
        same(metadata, table)
        outcomes.add("read")
    assert outcomes.counts["refused"] and outcomes.counts["read"]
    assert np.isfinite(cases)

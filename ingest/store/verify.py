"""Readers' guarantee: check a store against the contract (``schemas/store-contract-v1.json``).

:func:`check` returns the list of problems (empty when the store is good): format, dimensions,
dtypes, chunk and shard layout, dimension coordinates, counts, the 19-class derivation, and
``complete`` being true.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import zarr

from .. import schemas
from ..nomenclature import labels19_of
from .location import StoreLocation, Where

NOT_COMPLETE = "store is not complete (attribute 'complete' is not true)"
_DTYPES = {"string": ("str", "<U", "StringDType", "object"), "bool": ("bool",)}


def check(where: Where) -> list[str]:
    """Problems of the store at ``where`` (first the structural ones); empty means it is valid."""
    path = StoreLocation.of(where)
    contract = schemas.load(schemas.STORE_CONTRACT)
    if not path.exists("zarr.json"):
        return [f"{path}: not a Zarr v3 store (no zarr.json)"]
    meta = json.loads(path.read_text("zarr.json"))
    problems: list[str] = []
    if meta.get("zarr_format") != contract["zarr_format"] or meta.get("node_type") != "group":
        return [f"{path}: root is not a Zarr format 3 group"]
    if "consolidated_metadata" not in meta:
        problems.append("consolidated metadata missing")
    else:
        problems += _check_consolidated(path, meta["consolidated_metadata"].get("metadata", {}))
    # Check the arrays' own metadata, not the consolidated copy readers may also use.
    group = path.open_group(mode="r", use_consolidated=False)
    attrs: dict[str, Any] = dict(group.attrs)
    options = attrs.get("options")
    labels_only = isinstance(options, dict) and options.get("labels_only") is True
    omitted = set(contract["labels_only_omits"]) if labels_only else set()
    arrays = {name: node for name, node in group.members() if isinstance(node, zarr.Array)}
    sizes: dict[str, int] = {}
    expected = {**contract["data_variables"], **contract["coordinates"]}
    for name, spec in expected.items():
        if name in omitted:
            continue
        if name not in arrays:
            problems.append(f"{name}: missing")
            continue
        problems += _check_array(name, arrays[name], spec, contract, sizes)
    for name, spec in contract["optional_coordinates"].items():
        if name in arrays:
            problems += _check_array(name, arrays[name], spec, contract, sizes)
    for dim, names in contract["dimension_coordinates"].items():
        if dim in omitted:
            continue
        if dim not in arrays:
            problems.append(f"{dim}: dimension coordinate missing")
        elif np.asarray(arrays[dim][:]).tolist() != names:
            problems.append(f"{dim}: names differ from the contract's")
    problems += _check_shards(arrays, contract, omitted)
    problems += _check_shard_files(path, arrays, contract, omitted)
    problems += _check_attrs(attrs, contract, sizes.get("sample"))
    if not problems:
        problems += _check_values(arrays)
    return problems


def _check_consolidated(path: StoreLocation, consolidated: dict[str, Any]) -> list[str]:
    """The consolidated copy must say what each array's own zarr.json says."""
    problems = []
    on_disk = path.children_with("zarr.json")
    for name in sorted(on_disk | set(consolidated)):
        if name not in consolidated or name not in on_disk:
            problems.append(f"{name}: consolidated metadata is stale (array added or removed)")
        elif json.loads(path.read_text(name, "zarr.json")) != consolidated[name]:
            problems.append(f"{name}: consolidated metadata differs from the array's own")
    return problems


def _check_array(
    name: str,
    array: zarr.Array[Any],
    spec: dict[str, Any],
    contract: dict[str, Any],
    sizes: dict[str, int],
) -> list[str]:
    problems = []
    dims = list(array.metadata.dimension_names or ())  # type: ignore[union-attr]
    if dims != spec["dims"]:
        return [f"{name}: dimensions {dims}, expected {spec['dims']}"]
    dtype = str(array.dtype)
    allowed = _DTYPES.get(spec["dtype"], (spec["dtype"],))
    if not any(dtype.startswith(a) or a in dtype for a in allowed):
        problems.append(f"{name}: dtype {dtype}, expected {spec['dtype']}")
    for dim, size in zip(dims, array.shape, strict=True):
        fixed = contract["dimensions"].get(dim)
        if fixed is not None and size != fixed:
            problems.append(f"{name}: dimension {dim} has size {size}, expected {fixed}")
        seen = sizes.setdefault(dim, size)
        if seen != size:
            problems.append(f"{name}: dimension {dim} has size {size}, other arrays {seen}")
    if (
        spec.get("layout") == "large"
        or name in contract["coordinates"]
        or name in contract["optional_coordinates"]
    ):
        if array.shards is not None:
            problems.append(f"{name}: must not be sharded")
        if array.chunks[0] < contract["min_large_chunk"]:
            problems.append(f"{name}: chunk of {array.chunks[0]} along sample, expected >= 65536")
    for key, value in spec.get("attributes", {}).items():
        if array.attrs.get(key) != value:
            problems.append(
                f"{name}: attribute {key} is {array.attrs.get(key)!r}, expected {value!r}"
            )
    return problems


def _check_shards(
    arrays: dict[str, zarr.Array[Any]], contract: dict[str, Any], omitted: set[str]
) -> list[str]:
    problems = []
    shard_lengths = set()
    for name, spec in contract["data_variables"].items():
        if spec["layout"] != "sharded" or name in omitted or name not in arrays:
            continue
        array = arrays[name]
        inner = (1, *array.shape[1:])
        if array.chunks != inner:
            problems.append(f"{name}: inner chunk {array.chunks}, expected {inner}")
        if array.shards is None or array.shards[1:] != array.shape[1:]:
            problems.append(
                f"{name}: shards {array.shards}, expected (S, {', '.join(map(str, inner[1:]))})"
            )
        else:
            shard_lengths.add(array.shards[0])
    if len(shard_lengths) > 1:
        problems.append(f"band arrays use different shard lengths {sorted(shard_lengths)}")
    return problems


def _check_shard_files(
    path: StoreLocation,
    arrays: dict[str, zarr.Array[Any]],
    contract: dict[str, Any],
    omitted: set[str],
) -> list[str]:
    """Every shard the band arrays cover must be stored: a missing one would read as zeros.
    (One listing per array, not one request per shard: on object storage that is thousands.)"""
    problems = []
    for name, spec in contract["data_variables"].items():
        if spec["layout"] != "sharded" or name in omitted or name not in arrays:
            continue
        array = arrays[name]
        length = array.shards[0] if array.shards else array.chunks[0]
        count = -(-array.shape[0] // length)
        held = path.objects(name, "c") if path.exists(name, "c") else set()
        missing = [k for k in range(count) if f"{k}/0/0/0" not in held]
        if missing:
            problems.append(
                f"{name}: {len(missing)} of {count} shards missing, first shard {missing[0]}"
            )
    return problems


def _check_attrs(attrs: dict[str, Any], contract: dict[str, Any], samples: int | None) -> list[str]:
    problems = [f"attribute {k!r} missing" for k in contract["root_attributes"] if k not in attrs]
    counts = attrs.get("counts")
    if isinstance(counts, dict):
        problems += [f"counts.{k} missing" for k in contract["counts"] if k not in counts]
        if samples is not None and counts.get("samples") != samples:
            problems.append(f"counts.samples is {counts.get('samples')}, the arrays hold {samples}")
        skipped = attrs.get("skipped")
        if isinstance(skipped, list) and counts.get("skipped") != len(skipped):
            problems.append(
                f"counts.skipped is {counts.get('skipped')}, skipped lists {len(skipped)}"
            )
    if attrs.get("complete") is not True:
        problems.append(NOT_COMPLETE)
    return problems


def _check_values(arrays: dict[str, zarr.Array[Any]]) -> list[str]:
    labels = np.asarray(arrays["labels"][:])
    if not np.array_equal(np.asarray(arrays["labels19"][:]), labels19_of(labels)):
        return ["labels19 is not the official 19-class mapping of labels"]
    return []

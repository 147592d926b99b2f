"""Readers' guarantee: check a store against its contract (``schemas/store-contract-v2.json``, or
``store-contract-v1.json`` for the stores written before v2).

:func:`check` returns the list of problems (empty when the store is good): format, dimensions,
dtypes, chunk and shard layout, dimension coordinates, which arrays the store's dataset has (v1:
43-class ``labels``; v2: none of them; ``bands_s1`` with ``s1_patch_id``, ``reference_map`` only
in v2), counts, ``dataset``/``layout``/``sources`` attributes, the 19-class derivation (v1), and
``complete`` being true.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zarr

from .. import schemas
from ..nomenclature import labels19_of
from .location import StoreLocation, Where

NOT_COMPLETE = "store is not complete (attribute 'complete' is not true)"
#: A store of no sample is complete only with a note saying why (``report.empty``).
EMPTY_WITHOUT_NOTE = "the store holds no sample and no note says why (report.empty)"
_DTYPES = {"string": ("str", "<U", "StringDType", "object"), "bool": ("bool",)}
#: A contract v1 store is a v2 store of this dataset.
_V1_DATASET = "bigearthnet-v1"


@dataclass
class _Expected:
    """What a store of one dataset holds, by the contract: array name -> its spec."""

    required: dict[str, dict[str, Any]] = field(default_factory=dict)
    optional: dict[str, dict[str, Any]] = field(default_factory=dict)
    forbidden: set[str] = field(default_factory=set)
    """Contract arrays (and dimension coordinates) the dataset never has."""
    paired: dict[str, str] = field(default_factory=dict)
    """Optional coordinate -> the array it is present with, and only with."""


def contract_of(attrs: dict[str, Any]) -> dict[str, Any] | None:
    """The contract document a store's root attributes name (v1 without ``contract_version``);
    None for a version this tool does not know."""
    version = attrs.get("contract_version", 1)
    if not isinstance(version, int) or isinstance(version, bool):
        return None
    return (
        schemas.load(schemas.STORE_CONTRACTS[version])
        if version in schemas.STORE_CONTRACTS
        else None
    )


def check(where: Where) -> list[str]:
    """Problems of the store at ``where`` (first the structural ones); empty means it is valid."""
    path = StoreLocation.of(where)
    if not path.exists("zarr.json"):
        return [f"{path}: not a Zarr v3 store (no zarr.json)"]
    meta = json.loads(path.read_text("zarr.json"))
    if meta.get("zarr_format") != 3 or meta.get("node_type") != "group":
        return [f"{path}: root is not a Zarr format 3 group"]
    # Check the arrays' own metadata, not the consolidated copy readers may also use.
    group = path.open_group(mode="r", use_consolidated=False)
    attrs: dict[str, Any] = dict(group.attrs)
    contract = contract_of(attrs)
    if contract is None:
        known = ", ".join(map(str, schemas.STORE_CONTRACTS))
        return [f"contract_version {attrs.get('contract_version')!r} is not one of {known}"]
    problems: list[str] = []
    if "consolidated_metadata" not in meta:
        problems.append("consolidated metadata missing")
    else:
        problems += _check_consolidated(path, meta["consolidated_metadata"].get("metadata", {}))
    datasets = contract.get("datasets")
    dataset = attrs.get("dataset") if datasets else _V1_DATASET
    if datasets and dataset not in datasets:
        problems.append(
            f"attribute 'dataset' is {dataset!r}, expected one of {', '.join(datasets)}"
        )
        return problems
    assert isinstance(dataset, str)
    options = attrs.get("options")
    labels_only = isinstance(options, dict) and options.get("labels_only") is True
    omitted = set(contract["labels_only_omits"]) if labels_only else set()
    arrays = {name: node for name, node in group.members() if isinstance(node, zarr.Array)}
    expected = _expected(contract, dataset, omitted)
    sizes: dict[str, int] = {}
    for name, spec in expected.required.items():
        if name not in arrays:
            problems.append(f"{name}: missing")
        else:
            problems += _check_array(name, arrays[name], spec, contract, sizes)
    for name, spec in expected.optional.items():
        if name in arrays:
            problems += _check_array(name, arrays[name], spec, contract, sizes)
    for name, partner in expected.paired.items():
        if (name in arrays) != (partner in arrays):
            problems.append(
                f"{name}: present without {partner}"
                if name in arrays
                else f"{name}: missing ({partner} is present)"
            )
    problems += [
        f"{name}: not part of a {dataset} store"
        for name in sorted(expected.forbidden & set(arrays))
    ]
    present = {n: s for n, s in {**expected.required, **expected.optional}.items() if n in arrays}
    along = {**expected.required, **present}  # what the store has or should have
    for dim, names in contract["dimension_coordinates"].items():
        if dim in omitted or dim in expected.forbidden:
            continue
        users = [n for n, spec in along.items() if dim in spec["dims"]]
        if dim not in arrays:
            if users:
                problems.append(f"{dim}: dimension coordinate missing")
        elif not users:
            problems.append(f"{dim}: dimension coordinate without an array along it")
        elif np.asarray(arrays[dim][:]).tolist() != names:
            problems.append(f"{dim}: names differ from the contract's")
    sharded = {n: s for n, s in present.items() if s.get("layout") == "sharded"}
    problems += _check_shards(arrays, sharded)
    problems += _check_shard_files(path, arrays, sharded)
    problems += _check_attrs(attrs, contract, dataset, sizes.get("sample"))
    if not problems and dataset == _V1_DATASET and "labels" in arrays:
        problems += _check_values(arrays)
    return problems


def _expected(contract: dict[str, Any], dataset: str, omitted: set[str]) -> _Expected:
    """Sort the contract's arrays for one dataset (entries without ``datasets`` are in all)."""
    expected = _Expected()
    sections = [
        (contract["data_variables"], True),
        (contract["coordinates"], True),
        (contract["optional_coordinates"], False),
    ]
    for section, required in sections:
        for name, spec in section.items():
            if dataset not in spec.get("datasets", [dataset]):
                expected.forbidden.add(name)
            elif name in omitted:
                continue
            elif required and spec.get("required", True):
                expected.required[name] = spec
            else:
                expected.optional[name] = spec
                if "present_with" in spec:
                    expected.paired[name] = spec["present_with"]
    # A dimension coordinate belongs to the dataset when some array of it runs along the dim.
    for dim in contract["dimension_coordinates"]:
        users = [n for section, _ in sections for n, spec in section.items() if dim in spec["dims"]]
        if users and all(n in expected.forbidden for n in users):
            expected.forbidden.add(dim)
    return expected


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
    arrays: dict[str, zarr.Array[Any]], sharded: dict[str, dict[str, Any]]
) -> list[str]:
    """The per-pixel arrays present: inner chunk one sample, shards of S samples, one S."""
    problems = []
    shard_lengths = set()
    for name in sharded:
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
        problems.append(f"per-pixel arrays use different shard lengths {sorted(shard_lengths)}")
    return problems


def _check_shard_files(
    path: StoreLocation, arrays: dict[str, zarr.Array[Any]], sharded: dict[str, dict[str, Any]]
) -> list[str]:
    """Every shard the per-pixel arrays cover must be stored: a missing one would read as zeros.
    (One listing per array, not one request per shard: on object storage that is thousands.)"""
    problems = []
    for name in sharded:
        array = arrays[name]
        length = array.shards[0] if array.shards else array.chunks[0]
        count = -(-array.shape[0] // length)
        held = path.objects(name, "c") if path.exists(name, "c") else set()
        rest = "/0" * (array.ndim - 1)
        missing = [k for k in range(count) if f"{k}{rest}" not in held]
        if missing:
            problems.append(
                f"{name}: {len(missing)} of {count} shards missing, first shard {missing[0]}"
            )
    return problems


def _check_attrs(
    attrs: dict[str, Any], contract: dict[str, Any], dataset: str, samples: int | None
) -> list[str]:
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
    if "datasets" in contract:
        layouts = contract["datasets"][dataset]["layouts"]
        if "layout" in attrs and attrs["layout"] not in layouts:
            problems.append(
                f"attribute 'layout' is {attrs['layout']!r}, not a distribution of {dataset} "
                f"({', '.join(layouts)})"
            )
        problems += _check_sources(attrs.get("sources"), contract)
    report = attrs.get("report")
    if (
        samples == 0
        and "counts" in attrs
        and not (isinstance(report, dict) and report.get("empty"))
    ):
        problems.append(EMPTY_WITHOUT_NOTE)
    if attrs.get("complete") is not True:
        problems.append(NOT_COMPLETE)
    return problems


def _check_sources(sources: Any, contract: dict[str, Any]) -> list[str]:
    """Contract v2: each input read is recorded with its role, size and checksum."""
    if sources is None:
        return []  # reported as a missing attribute
    if not isinstance(sources, list):
        return [f"attribute 'sources' is a {type(sources).__name__}, expected a list"]
    roles = contract["source_roles"]
    problems = []
    for i, entry in enumerate(sources):
        if not isinstance(entry, dict):
            problems.append(f"sources[{i}] is a {type(entry).__name__}, expected an object")
            continue
        missing = [k for k in contract["source_fields"] if k not in entry]
        if missing:
            problems.append(f"sources[{i}]: {', '.join(missing)} missing")
        elif entry["role"] not in roles:
            problems.append(
                f"sources[{i}]: role {entry['role']!r} is not one of {', '.join(roles)}"
            )
    return problems


def _check_values(arrays: dict[str, zarr.Array[Any]]) -> list[str]:
    labels = np.asarray(arrays["labels"][:])
    if not np.array_equal(np.asarray(arrays["labels19"][:]), labels19_of(labels)):
        return ["labels19 is not the official 19-class mapping of labels"]
    return []

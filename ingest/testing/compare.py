"""Compare two stores value for value: "identical" as the tests of resume, worker counts and
routes (endpoint vs local archive) mean it."""

from __future__ import annotations

from typing import Any

import numpy as np
import zarr

from ..store.location import StoreLocation, Where

#: Root attributes that legitimately differ between two runs producing the same data.
VOLATILE_ATTRS = frozenset({"created"})


def _layout(array: zarr.Array[Any]) -> tuple[Any, ...]:
    return (
        array.shape,
        str(array.dtype),
        array.chunks,
        array.shards,
        tuple(array.metadata.dimension_names or ()),  # type: ignore[union-attr]
        dict(array.attrs),
    )


def _comparable_sources(sources: Any) -> Any:
    """Sources without their location (a path and a URL name the same bytes)."""
    if not isinstance(sources, list):
        return sources
    return [{k: v for k, v in s.items() if k not in ("location", "kind")} for s in sources]


def store_differences(
    a: Where,
    b: Where,
    *,
    ignore_attrs: frozenset[str] = VOLATILE_ATTRS,
    same_location: bool = False,
) -> list[str]:
    """What differs between the stores ``a`` and ``b`` (empty when they hold the same data).

    Compares every array's layout, attributes and values, and the root attributes except
    ``ignore_attrs``; source locations are compared only with ``same_location``. A store on object
    storage is given as a :class:`~ingest.store.location.StoreLocation`.
    """
    ga = StoreLocation.of(a).open_group(mode="r")
    gb = StoreLocation.of(b).open_group(mode="r")
    diffs: list[str] = []
    attrs_a = {k: v for k, v in ga.attrs.items() if k not in ignore_attrs}
    attrs_b = {k: v for k, v in gb.attrs.items() if k not in ignore_attrs}
    if not same_location:
        for attrs in (attrs_a, attrs_b):
            attrs["sources"] = _comparable_sources(attrs.get("sources"))
    for key in sorted(set(attrs_a) | set(attrs_b)):
        if attrs_a.get(key) != attrs_b.get(key):
            diffs.append(f"attribute {key}: {attrs_a.get(key)!r} != {attrs_b.get(key)!r}")
    arrays_a = {n: x for n, x in ga.members() if isinstance(x, zarr.Array)}
    arrays_b = {n: x for n, x in gb.members() if isinstance(x, zarr.Array)}
    for name in sorted(set(arrays_a) ^ set(arrays_b)):
        diffs.append(f"array {name} only in {'a' if name in arrays_a else 'b'}")
    for name in sorted(set(arrays_a) & set(arrays_b)):
        xa, xb = arrays_a[name], arrays_b[name]
        if _layout(xa) != _layout(xb):
            diffs.append(f"array {name}: layout {_layout(xa)} != {_layout(xb)}")
        elif not np.array_equal(np.asarray(xa[...]), np.asarray(xb[...])):
            diffs.append(f"array {name}: values differ")
    return diffs

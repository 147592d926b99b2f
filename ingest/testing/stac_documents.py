"""The JSON documents the emulated MLHub API serves, made from the archives' own documents.

Pure functions. Inside an archive every link and asset href is relative (``../collection.json``,
``../../bigearthnet_v1_source/<item>/stac.json``, ``B01.tif``); the API served them absolute
(``{root}collections/bigearthnet_v1_source/items/<item>``, a download URL per asset), which is
what these functions rewrite. Shapes follow the recorded v1-new responses in
``mlhub-recorded/`` (collection links ``items``/``parent``/``root``/``self``; item pages with
``context`` and a ``token=next:<id>`` link, absent on the last page).
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from werkzeug.datastructures import MultiDict

__all__ = [
    "PageQuery",
    "archive_info",
    "asset_type",
    "collection",
    "collection_list",
    "dataset",
    "item",
    "items_page",
    "landing",
    "parse_page_query",
]

JSON = dict[str, Any]
_JSON, _GEOJSON = "application/json", "application/geo+json"

#: ``mlhub-recorded/bigearthnet_v1_dataset_2020.json`` without its collections, which are listed
#: from the archives actually served (so ``Dataset.collections`` never points at a 404).
_BIGEARTHNET_V1: Mapping[str, str] = {
    "citation": (
        'G. Sumbul, M. Charfuelan, B. Demir, V. Markl, "BigEarthNet: A Large-Scale Benchmark'
        ' Archive for Remote Sensing Image Understanding", IEEE International Geoscience and'
        " Remote Sensing Symposium, pp. 5901-5904, Yokohama, Japan, 2019."
    ),
    "doi": "10.14279/depositonce-10149",
    "id": "bigearthnet_v1",
    "registry": "https://registry.mlhub.earth/10.14279/depositonce-10149",
    "title": "BigEarthNet",
}
_DATASET_ORDER = ("bigearthnet_v1_source", "bigearthnet_v1_labels")  # the recorded order


def _link(rel: str, href: str, media_type: str = _JSON) -> JSON:
    return {"rel": rel, "type": media_type, "href": href}


def landing(root: str) -> JSON:
    """A minimal STAC API landing page at the root."""
    return {
        "type": "Catalog",
        "id": "mlhub",
        "stac_version": "1.0.0",
        "description": "Radiant MLHub API (emulated)",
        "links": [_link("self", root), _link("root", root), _link("data", f"{root}collections")],
    }


def collection(document: JSON, root: str) -> JSON:
    """The collection as ``GET collections/{id}`` served it: the archive's links replaced."""
    cid = str(document["id"])
    url = f"{root}collections/{quote(cid)}"
    links = [
        _link("items", f"{url}/items", _GEOJSON),
        _link("parent", root),
        _link("root", root),
        _link("self", url),
    ]
    rest = {key: value for key, value in document.items() if key not in ("id", "links")}
    return {"id": cid, "links": links, **rest}


def collection_list(collections: Sequence[JSON], root: str) -> JSON:
    return {
        "collections": list(collections),
        "links": [_link("root", root), _link("self", f"{root}collections")],
    }


def item(document: JSON, cid: str, root: str) -> JSON:
    """The item as ``GET collections/{cid}/items/{iid}`` served it: links and hrefs absolute."""
    iid = str(document["id"])
    collection_url = f"{root}collections/{quote(cid)}"
    own = {
        "self": (f"{collection_url}/items/{quote(iid)}", _GEOJSON),
        "parent": (collection_url, _JSON),
        "collection": (collection_url, _JSON),
        "root": (root, _JSON),
    }
    links = [
        {**link, "href": _absolute_link(str(link.get("href", "")), cid, iid, root)}
        for link in document.get("links", [])
        if link.get("rel") not in own
    ]
    links += [_link(rel, href, media_type) for rel, (href, media_type) in own.items()]
    assets = {
        key: {**asset, "href": _absolute_asset(str(asset.get("href", "")), cid, iid, root)}
        for key, asset in document.get("assets", {}).items()
    }
    return {**document, "links": links, "assets": assets}


def _absolute_link(href: str, cid: str, iid: str, root: str) -> str:
    """``../../<coll>/<item>/stac.json`` → the item URL; ``../collection.json`` → collection URL."""
    if "://" in href:
        return href
    parts = posixpath.normpath(posixpath.join(cid, iid, href)).split("/")
    if len(parts) == 3 and parts[2] == "stac.json":
        return f"{root}collections/{quote(parts[0])}/items/{quote(parts[1])}"
    if len(parts) == 2 and parts[1] == "collection.json":
        return f"{root}collections/{quote(parts[0])}"
    return href


def _absolute_asset(href: str, cid: str, iid: str, root: str) -> str:
    """A file beside ``stac.json`` gets its download URL; anything else is left alone."""
    if "/" in href or not href:
        return href
    return f"{root}download/{quote(cid)}/{quote(iid)}/{quote(href)}"


def asset_type(document: JSON, file_name: str) -> str:
    """The media type the item declares for the asset stored as ``file_name``."""
    for asset in document.get("assets", {}).values():
        if asset.get("href") == file_name and asset.get("type"):
            return str(asset["type"])
    return "application/octet-stream"


@dataclass(frozen=True)
class PageQuery:
    """What a request for a page of items asks for."""

    limit: int
    after: str | None
    """The id of the last item of the previous page (from ``token=next:<id>``)."""
    explicit_limit: bool
    """Whether the request named a limit, which the next link then repeats."""


def parse_page_query(args: MultiDict[str, str], *, default: int, maximum: int) -> PageQuery:
    """Read ``limit`` and ``token``; the client repeats parameters, so the last value wins.

    Raises ValueError for a limit outside 1..maximum or a token that is not ``next:<id>``.
    """
    limits = args.getlist("limit")
    limit = int(limits[-1]) if limits else default
    if not 1 <= limit <= maximum:
        raise ValueError(f"limit must be between 1 and {maximum}")
    tokens = args.getlist("token")
    after = None
    if tokens:
        if not tokens[-1].startswith("next:"):
            raise ValueError("token must be next:<item id>")
        after = tokens[-1].removeprefix("next:")
    return PageQuery(limit=limit, after=after, explicit_limit=bool(limits))


def items_page(
    features: Sequence[JSON],
    *,
    matched: int,
    query: PageQuery,
    items_url: str,
    root: str,
    next_after: str | None,
) -> JSON:
    """A v1-new page of items: ``context`` counts, and a next link unless this is the last page."""
    links = [_link("self", items_url, _GEOJSON), _link("root", root)]
    if next_after is not None:
        params = {"token": f"next:{next_after}"}
        if query.explicit_limit:
            params["limit"] = str(query.limit)
        links.append(_link("next", f"{items_url}?{urlencode(params, safe=':')}", _GEOJSON))
    return {
        "type": "FeatureCollection",
        "features": list(features),
        "links": links,
        "context": {"limit": query.limit, "matched": matched, "returned": len(features)},
    }


def archive_info(cid: str, size: int, *, labels: bool) -> JSON:
    """``GET archive/{id}/info``; the dataset id is the collection id minus its last part."""
    return {
        "collection": cid,
        "dataset": cid.rsplit("_", 1)[0],
        "size": size,
        "types": ["labels"] if labels else ["source_imagery"],
    }


def dataset(collections: Mapping[str, bool]) -> JSON | None:
    """The bigearthnet_v1 dataset over the served collections (id → is labels), or None."""
    members = [cid for cid in collections if cid.startswith("bigearthnet_v1_")]
    if not members:
        return None
    members.sort(key=lambda cid: (*_DATASET_ORDER, cid).index(cid))
    listed = [
        {"id": cid, "types": ["labels"] if collections[cid] else ["source_imagery"]}
        for cid in members
    ]
    return {**_BIGEARTHNET_V1, "collections": listed}

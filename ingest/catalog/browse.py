"""Browsing an MLHub-compatible API the way the BigEarthNet notebook did: list collections, find
items matching the notebook's ``filter_item``, and summarise what was found.

Every call goes through radiant-mlhub's own session (``Endpoint.session()``), so the API key is
resolved like the notebook's (``--api-key``, ``MLHUB_API_KEY``, ``--profile``/``MLHUB_PROFILE``,
the profiles file) and travels as ``?key=`` on every request. The key never reaches a message: a
401 becomes :class:`~ingest.errors.AuthError` without radiant-mlhub's text (which quotes the key),
and URLs are passed through :func:`~ingest.sources.download.redact` before they are shown.

Items are found lazily: :func:`find_items` is a generator that requests the next page only when
the matches so far are fewer than asked for, and none once ``max_items`` matches are out.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import quote, urljoin

import requests
from radiant_mlhub.exceptions import AuthenticationError

from ..errors import AuthError, NetworkError, NotFoundError
from ..layouts.labels import Selection
from ..layouts.mlhub import as_flag
from ..sources.download import RetryPolicy, http_error, redact
from ..sources.endpoint import DEFAULT_POLICY, Endpoint

JSON = dict[str, Any]
_RETRY_STATUS = frozenset({429, 502, 503, 504})
_TRANSPORT_ERRORS = (requests.ConnectionError, requests.Timeout, OSError)


# --- requests with the tool's error handling ---------------------------------------------------


def api_request(
    session: requests.Session,
    url: str,
    *,
    what: str,
    policy: RetryPolicy = DEFAULT_POLICY,
    method: str = "GET",
    params: Mapping[str, Any] | None = None,
    missing: str | None = None,
    sleep: Callable[[float], Any] = time.sleep,
) -> requests.Response:
    """One request (redirects followed, body read), as the tool's errors.

    401 is an :class:`AuthError` that never quotes the key; 404 a :class:`NotFoundError` saying
    ``missing`` (default: "{what} does not exist"); 429/5xx and broken connections are retried
    ``policy.attempts`` times, honouring ``Retry-After``; anything else is a
    :class:`NetworkError`.
    """
    failures = 0
    timeout = (policy.connect_timeout, policy.read_timeout)
    while True:
        try:
            response = session.request(
                method, url, params=dict(params or {}), timeout=timeout, allow_redirects=True
            )
            response.raise_for_status()  # radiant-mlhub's session did; a plain one does not
            return response
        except AuthenticationError:
            # radiant-mlhub puts the key itself into this message: never show it.
            raise AuthError(f"the MLHub API key was rejected (401) for {what}") from None
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else 0
            if status == 404:
                raise NotFoundError(missing or f"{what} does not exist") from None
            if status not in _RETRY_STATUS or exc.response is None:
                raise http_error(status, exc.response, what) from None
            reason, retry_after = f"HTTP {status}", exc.response.headers.get("Retry-After")
        except _TRANSPORT_ERRORS as exc:
            reason, retry_after = _reason(exc), None
        failures += 1
        if failures > policy.attempts:
            raise NetworkError(f"{what}: giving up after {policy.attempts} retries: {reason}")
        sleep(policy.wait(failures, retry_after))


def json_object(response: requests.Response, what: str) -> JSON:
    """The response's body as a JSON object, or a :class:`NetworkError` saying it is not one."""
    try:
        document = response.json()
    except (ValueError, UnicodeDecodeError):
        raise NetworkError(f"{what}: the server did not answer JSON") from None
    if not isinstance(document, dict):
        raise NetworkError(f"{what}: the server answered JSON that is not an object")
    return document


def get_document(
    session: requests.Session, url: str, *, what: str, policy: RetryPolicy = DEFAULT_POLICY
) -> tuple[JSON, requests.Response]:
    """GET a JSON document (relative to the API root or absolute) and the response it came in."""
    response = api_request(session, url, what=what, policy=policy)
    return json_object(response, what), response


def item_path(collection: str, item_id: str) -> str:
    """The API path of one item, relative to the root."""
    return f"collections/{quote(collection)}/items/{quote(item_id)}"


def next_link(page: Mapping[str, Any]) -> str | None:
    """The ``rel: next`` href of a page of items, if any."""
    for link in page.get("links") or ():
        if isinstance(link, dict) and link.get("rel") == "next" and link.get("href"):
            return str(link["href"])
    return None


def iter_pages(
    session: requests.Session,
    collection: str,
    *,
    page_size: int | None = None,
    policy: RetryPolicy = DEFAULT_POLICY,
) -> Iterator[tuple[JSON, bytes]]:
    """The pages of ``collections/{collection}/items``, each with the body it came in.

    Follows ``links[rel=next]`` (absolute hrefs) and re-sends ``limit`` on every page, as
    radiant-mlhub's ``paginate`` does. Ends without a next link (v1-new) or at an empty page
    (v1-old); a page is requested only when the consumer asks for it.
    """
    what = f"the items of collection {collection!r}"
    params = {} if page_size is None else {"limit": page_size}
    url: str | None = f"collections/{quote(collection)}/items"
    while url is not None:
        response = api_request(
            session,
            url,
            what=what,
            policy=policy,
            params=params,
            missing=f"collection {collection!r} does not exist",
        )
        page = json_object(response, what)
        features = page.get("features")
        if not isinstance(features, list):
            raise NetworkError(f"{what}: a page without a 'features' list")
        yield page, response.content
        link = next_link(page) if features else None
        url = None if link is None else urljoin(response.url, link)  # absolute stays absolute


# --- the notebook's operations -----------------------------------------------------------------


def collection_matches(collection: Mapping[str, Any], text: str) -> bool:
    """The notebook's ``ben_filter``: ``text`` in the id, title or description, any case;
    a missing or null title or description matches nothing."""
    needle = text.lower()
    return any(
        needle in str(collection.get(key) or "").lower() for key in ("id", "title", "description")
    )


def list_collections(
    filter: str | None = None,
    *,
    endpoint: Endpoint = Endpoint(),  # noqa: B008 - frozen, hence a safe default
    policy: RetryPolicy = DEFAULT_POLICY,
) -> list[JSON]:
    """Every collection of the API (``GET collections``), or those matching ``filter``."""
    with endpoint.session() as session:
        document, _ = get_document(
            session, "collections", what="the collection list", policy=policy
        )
    collections = [c for c in document.get("collections") or () if isinstance(c, dict)]
    return [c for c in collections if filter is None or collection_matches(c, filter)]


def get_item(
    collection: str,
    item_id: str,
    *,
    endpoint: Endpoint = Endpoint(),  # noqa: B008
    policy: RetryPolicy = DEFAULT_POLICY,
) -> JSON:
    """One item (``GET collections/{collection}/items/{item_id}``)."""
    with endpoint.session() as session:
        document, _ = get_document(
            session, item_path(collection, item_id), what=_item_what(collection, item_id),
            policy=policy,
        )  # fmt: skip
    return document


def flag(value: Any) -> bool:
    """A flag as the notebook compares it, whether the API sent a boolean or "true"/"false";
    missing (or anything else) is False, like the notebook's ``.get(..., 'false')``."""
    return as_flag(value) if isinstance(value, bool | str) else False


def item_matches(item: Mapping[str, Any], selection: Selection) -> bool:
    """The notebook's ``filter_item``: any of ``selection.classes`` among the item's labels (no
    classes: no filter); each flag, when set, equal to the item's."""
    props = item.get("properties") or {}
    labels = props.get("labels") or []
    if selection.classes and not any(label in selection.classes for label in labels):
        return False
    cloud = flag(props.get("cloud_and_shadow"))
    if selection.cloud_and_shadow is not None and cloud != selection.cloud_and_shadow:
        return False
    return selection.seasonal_snow is None or (
        flag(props.get("seasonal_snow")) == selection.seasonal_snow
    )


def find_items(
    collection: str,
    selection: Selection = Selection(),  # noqa: B008 - frozen
    *,
    max_items: int | None = None,
    page_size: int | None = None,
    endpoint: Endpoint = Endpoint(),  # noqa: B008
    policy: RetryPolicy = DEFAULT_POLICY,
) -> Iterator[JSON]:
    """Yield the items of ``collection`` that :func:`item_matches` ``selection``, in API order.

    A generator, like the notebook's ``get_items``: pages are requested lazily and none after the
    ``max_items``-th match (default ``selection.limit``; None: no cap). ``page_size`` is sent as
    ``limit`` (None: the server's default page size).
    """
    cap = selection.limit if max_items is None else max_items
    if cap is not None and cap <= 0:
        return
    found = 0
    with endpoint.session() as session:
        for page, _ in iter_pages(session, collection, page_size=page_size, policy=policy):
            for item in page["features"]:
                if isinstance(item, dict) and item_matches(item, selection):
                    yield item
                    found += 1
                    if cap is not None and found >= cap:
                        return  # before asking for another page


# --- summaries, as the notebook printed them -------------------------------------------------


def collection_summary(collection: Mapping[str, Any]) -> JSON:
    """What the notebook printed of a collection: id, license, citation, STAC extensions."""
    return {
        "id": str(collection.get("id", "")),
        "title": collection.get("title"),
        "license": collection.get("license"),
        "citation": collection.get("sci:citation"),
        "stac_extensions": [str(e) for e in collection.get("stac_extensions") or ()],
    }


def _summary_flag(value: Any) -> bool | None:
    return as_flag(value) if isinstance(value, bool) or value in ("true", "false") else None


def item_summary(item: Mapping[str, Any]) -> JSON:
    """What the notebook printed of an item: id, platform, and per asset its key, title, media
    type and band common names; for label items also the labels and flags."""
    props = item.get("properties") or {}
    assets = item.get("assets") or {}
    labels = props.get("labels")
    return {
        "id": str(item.get("id", "")),
        "collection": item.get("collection"),
        "datetime": props.get("datetime"),
        "platform": props.get("platform"),
        "labels": [str(x) for x in labels] if isinstance(labels, list) else None,
        "cloud_and_shadow": _summary_flag(props.get("cloud_and_shadow")),
        "seasonal_snow": _summary_flag(props.get("seasonal_snow")),
        "assets": [
            {
                "key": str(key),
                "title": asset.get("title"),
                "type": asset.get("type"),
                "bands": [
                    str(band.get("common_name"))
                    for band in asset.get("eo:bands") or ()
                    if isinstance(band, dict)
                ],
            }
            for key, asset in assets.items()
            if isinstance(asset, dict)
        ],
        "sources": [
            str(link.get("href"))
            for link in item.get("links") or ()
            if isinstance(link, dict) and link.get("rel") == "source"
        ],
    }


def describe_collection(summary: Mapping[str, Any]) -> str:
    """A :func:`collection_summary` as the notebook printed it."""
    extensions = ", ".join(summary["stac_extensions"]) or "none"
    return (
        f"ID:       {summary['id']}\n"
        f"License:  {summary['license'] or 'N/A'}\n"
        f"Citation: {summary['citation'] or 'N/A'}\n"
        f"STAC Extensions: {extensions}\n"
    )


def describe_item(summary: Mapping[str, Any]) -> str:
    """An :func:`item_summary` as lines of text (id first, then indented facts)."""
    lines = [f"ID: {summary['id']}"]
    for label, key in (("Platform", "platform"), ("Datetime", "datetime")):
        if summary.get(key):
            lines.append(f"  {label}: {summary[key]}")
    if summary.get("labels") is not None:
        lines.append(f"  Labels: {'; '.join(summary['labels'])}")
    flags = (("Cloud and shadow", "cloud_and_shadow"), ("Seasonal snow", "seasonal_snow"))
    for label, key in flags:
        if summary.get(key) is not None:
            lines.append(f"  {label}: {'yes' if summary[key] else 'no'}")
    lines.append(f"  Assets ({len(summary['assets'])}):")
    for asset in summary["assets"]:
        bands = f"  bands: {', '.join(asset['bands'])}" if asset["bands"] else ""
        lines.append(f"    {asset['key']}: {asset['type'] or 'unknown type'}{bands}")
    lines += [f"  Source: {redact(href)}" for href in summary.get("sources", ())]
    return "\n".join(lines) + "\n"


def to_json_line(document: Mapping[str, Any]) -> str:
    """One document on one line (``--json``)."""
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False)


def _item_what(collection: str, item_id: str) -> str:
    return f"item {item_id!r} of collection {collection!r}"


def _reason(exc: BaseException) -> str:
    """A one-line cause without the key (requests quotes whole URLs, key included)."""
    text = redact(str(exc)).strip() or type(exc).__name__
    return text.splitlines()[0][:200]

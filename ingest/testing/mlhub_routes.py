"""The HTTP side of the MLHub emulator: a WSGI application speaking the v1-new API and a blob store.

Routes (``{root}`` is ``/mlhub/v1/``; every one of them wants ``?key=`` when a key is set, except
that the collection list and single collections also answer anonymously, as the real API did)::

    GET       {root}collections                         {"collections": [...], "links": [...]}
    GET       {root}collections/{cid}                   STAC Collection, links made absolute
    GET       {root}collections/{cid}/items             FeatureCollection page (limit, token)
    GET       {root}collections/{cid}/items/{iid}       STAC Item, links and asset hrefs absolute
    GET|HEAD  {root}archive/{cid}                       303 → /blob/mlhub/archives/{cid}.tar.gz
    GET       {root}archive/{cid}/info                  {"collection","dataset","size","types"}
    GET|HEAD  {root}download/{cid}/{iid}/{file}         303 → /blob/mlhub/assets/{cid}/{iid}/{file}
    GET       {root}datasets, {root}datasets/{id}       the bigearthnet_v1 dataset
    GET|HEAD  /blob/mlhub/archives/{cid}.tar.gz         the archive file, ranges, ETag, no key
    GET|HEAD  /blob/mlhub/assets/{cid}/{iid}/{file}     one archive member, same behaviour

Errors are compact ``{"detail": ...}`` JSON like stac-fastapi's. Documents come from
:mod:`ingest.testing.stac_documents`; blob answers and faults from
:mod:`ingest.testing.blob_store`.
"""

from __future__ import annotations

import hmac
import io
from collections.abc import Callable, Mapping
from typing import BinaryIO, cast
from urllib.parse import quote

from werkzeug.exceptions import HTTPException
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.routing import Map, RequestRedirect, Rule
from werkzeug.wrappers import Request, Response

from ingest.testing import stac_documents as docs
from ingest.testing.archive_index import ArchiveIndex, MemberReader, asset_etag
from ingest.testing.blob_store import (
    RoutesApp,
    blob_response,
    error_response,
    json_response,
    unavailable_response,
)
from ingest.testing.faults import FaultState

__all__ = ["API_PATH", "MlhubApp", "error_response", "json_response"]

API_PATH = "/mlhub/v1/"
_ARCHIVE_BLOBS = "blob/mlhub/archives/"
_ASSET_BLOBS = "blob/mlhub/assets/"
_MISSING_KEY = "Must provide API key or Bearer token to access this route."
_WRONG_KEY = "Could not identify user from API key or Authentication header."
_DEFAULT_PAGE, _MAX_PAGE = 10, 10_000
# The real API let anyone read the collection list and single collections (recorded:
# TestAnonymousClient.test_get_collection_anonymously_works); a wrong key is still refused.
_ANONYMOUS = frozenset({"landing", "collections", "collection"})


def _get(path: str, endpoint: str) -> Rule:
    # werkzeug adds HEAD wherever GET is allowed; any other method is a 405.
    return Rule(path, endpoint=endpoint, methods=["GET"])


_URL_MAP = Map(
    [
        _get(API_PATH, "landing"),
        _get(f"{API_PATH}collections", "collections"),
        _get(f"{API_PATH}collections/<cid>", "collection"),
        _get(f"{API_PATH}collections/<cid>/items", "items"),
        _get(f"{API_PATH}collections/<cid>/items/<iid>", "item"),
        _get(f"{API_PATH}archive/<cid>", "archive"),
        _get(f"{API_PATH}archive/<cid>/info", "archive_info"),
        _get(f"{API_PATH}download/<cid>/<iid>/<name>", "download"),
        _get(f"{API_PATH}datasets", "datasets"),
        _get(f"{API_PATH}datasets/<did>", "dataset"),
        _get(f"/{_ARCHIVE_BLOBS}<name>", "blob_archive"),
        _get(f"/{_ASSET_BLOBS}<cid>/<iid>/<name>", "blob_asset"),
    ],
    strict_slashes=False,  # `collections/` and `collections` alike, without a redirect
)


def _see_other(location: str) -> Response:
    response = Response(b"", status=303, headers={"Location": location})
    del response.headers["Content-Type"]  # the recorded 303s had a body of 0 bytes and no type
    return response


class MlhubApp(RoutesApp):
    """The emulator's WSGI application over an :data:`ArchiveIndex`."""

    def __init__(
        self,
        index: ArchiveIndex,
        readers: Mapping[str, MemberReader],
        *,
        api_key: str | None,
        faults: FaultState,
        on_response: Callable[[Request, int], None],
        on_error: Callable[[BaseException], None],
    ) -> None:
        super().__init__(faults=faults, on_response=on_response, on_error=on_error)
        self._index = index
        self._readers = readers
        self._api_key = api_key
        self._endpoints: dict[str, Callable[..., Response]] = {
            rule.endpoint: getattr(self, f"_{rule.endpoint}")
            for rule in _URL_MAP.iter_rules()
            if isinstance(rule.endpoint, str)
        }

    def _respond(self, request: Request) -> Response:
        refusal = self._faults.claim_unavailable()
        if refusal is not None:
            return unavailable_response(refusal)
        try:
            endpoint, args = _URL_MAP.bind_to_environ(request.environ).match()
        except RequestRedirect as redirect:
            return redirect.get_response(request.environ)
        except HTTPException as exc:
            code = exc.code or 500
            return error_response(code, HTTP_STATUS_CODES.get(code, "Error"))
        if not str(endpoint).startswith("blob_"):
            denial = self._check_key(request, str(endpoint))
            if denial is not None:
                return denial
        return self._endpoints[str(endpoint)](request, **args)

    def _check_key(self, request: Request, endpoint: str) -> Response | None:
        if self._api_key is None:
            return None
        keys = request.args.getlist("key")
        if not keys:
            return None if endpoint in _ANONYMOUS else error_response(401, _MISSING_KEY)
        # The client may repeat the key (session params plus a key carried in a link).
        if all(hmac.compare_digest(key.encode(), self._api_key.encode()) for key in keys):
            return None
        return error_response(401, _WRONG_KEY)

    # -- API routes ------------------------------------------------------------------------------

    def _landing(self, request: Request) -> Response:
        return json_response(docs.landing(_root(request)))

    def _collections(self, request: Request) -> Response:
        root = _root(request)
        collections = [docs.collection(c.document, root) for c in self._index.values()]
        return json_response(docs.collection_list(collections, root))

    def _collection(self, request: Request, cid: str) -> Response:
        found = self._index.get(cid)
        if found is None:
            return _no_collection(cid)
        return json_response(docs.collection(found.document, _root(request)))

    def _items(self, request: Request, cid: str) -> Response:
        found = self._index.get(cid)
        if found is None:
            return _no_collection(cid)
        try:
            query = docs.parse_page_query(request.args, default=_DEFAULT_PAGE, maximum=_MAX_PAGE)
            start = 0 if query.after is None else found.positions[query.after] + 1
        except (ValueError, KeyError):
            return error_response(400, "Invalid limit or token")
        page = found.items[start : start + query.limit]
        more = start + len(page) < len(found.items)
        root = _root(request)
        return json_response(
            docs.items_page(
                [docs.item(item.stac, cid, root) for item in page],
                matched=len(found.items),
                query=query,
                items_url=f"{root}collections/{quote(cid)}/items",
                root=root,
                next_after=page[-1].id if more and page else None,
            )
        )

    def _item(self, request: Request, cid: str, iid: str) -> Response:
        found = self._index.get(cid)
        if found is None:
            return _no_collection(cid)
        item = found.item(iid)
        if item is None:
            return error_response(404, f"Item {iid} in Collection {cid} does not exist.")
        return json_response(docs.item(item.stac, cid, _root(request)))

    def _archive(self, request: Request, cid: str) -> Response:
        if cid not in self._index:
            # v1-new answered HEAD archive/{unknown} with a JSON 404 (recorded, 55-byte body);
            # the client turns any 404 here into "does not exist and may still be generating".
            return error_response(404, f"Archive {cid} does not exist")
        return _see_other(f"{request.host_url}{_ARCHIVE_BLOBS}{quote(cid)}.tar.gz")

    def _archive_info(self, request: Request, cid: str) -> Response:
        found = self._index.get(cid)
        if found is None:
            return error_response(404, f"Archive {cid} does not exist")
        return json_response(docs.archive_info(cid, found.size, labels=found.is_labels))

    def _download(self, request: Request, cid: str, iid: str, name: str) -> Response:
        found = self._index.get(cid)
        item = found.item(iid) if found is not None else None
        if item is None or item.member(name) is None:
            return error_response(404, f"Asset {cid}/{iid}/{name} does not exist.")
        return _see_other(
            f"{request.host_url}{_ASSET_BLOBS}{quote(cid)}/{quote(iid)}/{quote(name)}"
        )

    def _datasets(self, request: Request) -> Response:
        dataset = docs.dataset(self._dataset_collections())
        return json_response([] if dataset is None else [dataset])

    def _dataset(self, request: Request, did: str) -> Response:
        dataset = docs.dataset(self._dataset_collections())
        if dataset is None or did != dataset["id"]:
            return error_response(404, f"Dataset with id '{did}' not found")
        return json_response(dataset)

    def _dataset_collections(self) -> dict[str, bool]:
        return {cid: found.is_labels for cid, found in self._index.items()}

    # -- blob store ------------------------------------------------------------------------------

    def _blob_archive(self, request: Request, name: str) -> Response:
        found = self._index.get(name.removesuffix(".tar.gz")) if name.endswith(".tar.gz") else None
        if found is None:
            return error_response(404, "The specified blob does not exist.")
        path = found.path
        return blob_response(
            request,
            self._faults,
            lambda: cast(BinaryIO, path.open("rb")),
            size=found.size,
            etag=found.etag,
            mtime=found.mtime,
            content_type="application/x-tar",
        )

    def _blob_asset(self, request: Request, cid: str, iid: str, name: str) -> Response:
        found = self._index.get(cid)
        item = found.item(iid) if found is not None else None
        span = item.member(name) if item is not None else None
        if found is None or item is None or span is None:
            return error_response(404, "The specified blob does not exist.")
        reader = self._readers[cid]
        asset_type = docs.asset_type(item.stac, name)
        return blob_response(
            request,
            self._faults,
            lambda: io.BytesIO(reader.read(*span)),
            size=span[1],
            etag=asset_etag(found, item, name),
            mtime=found.mtime,
            content_type=asset_type,
        )


def _root(request: Request) -> str:
    """The API root as the client reached it, e.g. ``http://127.0.0.1:8000/mlhub/v1/``."""
    return f"{request.host_url}{API_PATH.lstrip('/')}"


def _no_collection(cid: str) -> Response:
    return error_response(404, f"Collection {cid} does not exist.")

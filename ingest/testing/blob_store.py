"""The HTTP answers the emulator's routes share: JSON errors, refusals and blobs.

A blob answer (:func:`blob_response`) honours ``HEAD``, ``Range`` (206 with ``Content-Range``,
416 beyond the end), ``ETag``/``If-Range``/``If-None-Match`` and ``Last-Modified`` through
werkzeug's conditional handling, like Azure Blob (MLHub's store) and Zenodo's file store do, and
plays the injected :class:`~ingest.testing.faults.Faults`: resets mid-body, ignored ranges,
trickled bodies, wrong lengths. Used by :mod:`ingest.testing.mlhub_routes` and
:mod:`ingest.testing.zenodo_routes`.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, BinaryIO, cast

from werkzeug.exceptions import RequestedRangeNotSatisfiable
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.wrappers import Request, Response
from werkzeug.wsgi import wrap_file

from ingest.testing.faults import WRONG_LENGTH_EXTRA, Faults, FaultState, FaultyBody

__all__ = ["blob_response", "error_response", "json_response", "unavailable_response"]


def json_response(
    payload: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """Compact JSON, ``Content-Type: application/json`` (no charset), like the v1-new API."""
    body = json.dumps(payload, separators=(",", ":"))
    return Response(body, status=status, mimetype="application/json", headers=dict(headers or {}))


def error_response(status: int, detail: str, headers: Mapping[str, str] | None = None) -> Response:
    return json_response({"detail": detail}, status, headers)


def unavailable_response(faults: Faults) -> Response:
    """The ``unavailable`` fault: 503 or 429 with ``Retry-After``."""
    detail = HTTP_STATUS_CODES[faults.status]
    return error_response(faults.status, detail, {"Retry-After": str(faults.retry_after)})


def blob_response(
    request: Request,
    state: FaultState,
    open_body: Callable[[], BinaryIO],
    *,
    size: int,
    etag: str,
    mtime: float,
    content_type: str,
) -> Response:
    """A blob answer with werkzeug's own conditional and range handling, then the faults."""
    faults = state.faults
    body = open_body() if request.method == "GET" else io.BytesIO()
    response = Response(
        wrap_file(request.environ, body), content_type=content_type, direct_passthrough=True
    )
    response.content_length = size  # a file body has no length werkzeug could compute
    response.set_etag(etag)
    response.last_modified = datetime.fromtimestamp(mtime, UTC)
    # Without a complete length werkzeug treats the request as unranged: the ignore_range
    # fault. Otherwise it answers 206 and clamps an end past the last byte to size - 1.
    complete_length = None if faults.ignore_range else size
    try:
        response.make_conditional(request, accept_ranges=True, complete_length=complete_length)
    except RequestedRangeNotSatisfiable:
        response.close()
        return error_response(416, "Range Not Satisfiable", {"Content-Range": f"bytes */{size}"})
    # make_conditional adds a Date header and so does the HTTP server: keep only the latter.
    del response.headers["Date"]
    if request.method == "GET" and response.status_code in (200, 206):
        _inject_body_faults(request, response, state, faults)
    return response


def _inject_body_faults(
    request: Request, response: Response, state: FaultState, faults: Faults
) -> None:
    length = response.content_length or 0
    reset_after = state.claim_reset(length)
    if reset_after is not None or faults.trickle is not None:
        response.response = FaultyBody(
            cast(Iterable[bytes], response.response),
            sock=request.environ.get("werkzeug.socket"),
            reset_after=reset_after,
            trickle=faults.trickle,
        )
    if faults.wrong_length:
        # werkzeug's server closes every connection after its response, so the client sees
        # the body end early instead of waiting for bytes that never come.
        response.content_length = length + WRONG_LENGTH_EXTRA


class RoutesApp:
    """The WSGI plumbing the emulator's route sets (MLHub, Zenodo) share: each request is answered
    by the subclass's ``_respond``; a bug there is answered with 500 and reported to ``on_error``
    (the server stays up); every answer's status goes to ``on_response``."""

    def __init__(
        self,
        *,
        faults: FaultState,
        on_response: Callable[[Request, int], None],
        on_error: Callable[[BaseException], None],
    ) -> None:
        self._faults = faults
        self._on_response = on_response
        self._on_error = on_error

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        try:
            response = self._respond(request)
        except Exception as exc:  # a bug in the emulator: answer 500, keep the server alive
            self._on_error(exc)
            response = error_response(500, "Internal Server Error")
        self._on_response(request, response.status_code)
        return response(environ, start_response)

    def _respond(self, request: Request) -> Response:
        raise NotImplementedError

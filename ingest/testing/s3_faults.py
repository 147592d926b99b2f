"""A fault-injecting HTTP proxy in front of the loopback S3 server (:mod:`ingest.testing.s3`): the
ways object storage fails a writer — throttling (``503 SlowDown``) and connections reset in the
middle of a request — played on chosen write requests (PUT), everything else passed through.

    with S3Server() as s3, FaultyS3Proxy(s3) as proxy:
        proxy.set_faults(S3Faults(slowdown=(3, 7), reset=(5,)))
        location = proxy.location("bigearthnet.zarr")    # the store, reached through the proxy
"""

from __future__ import annotations

import http.client
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from ..store.location import StoreLocation
from .faults import reset_connection
from .s3 import S3Server

SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
               "proxy-connection"}  # fmt: skip


@dataclass(frozen=True)
class S3Faults:
    """Which write requests (PUTs, numbered from 1 as they arrive) fail, and how."""

    slowdown: tuple[int, ...] = ()
    """Answered ``503 SlowDown`` (what S3 says when throttling)."""
    reset: tuple[int, ...] = ()
    """The connection is reset (RST) once the request has arrived, without an answer."""
    fail_from: int | None = None
    """Every PUT from this number on is answered ``503 SlowDown`` (an outage)."""


@dataclass
class _State:
    faults: S3Faults = field(default_factory=S3Faults)
    puts: int = 0
    played: list[tuple[int, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fault_of_next_put(self) -> str | None:
        with self.lock:
            self.puts += 1
            number, faults = self.puts, self.faults
            fault = None
            if number in faults.reset:
                fault = "reset"
            elif number in faults.slowdown or (
                faults.fail_from is not None and number >= faults.fail_from
            ):
                fault = "slowdown"
            if fault is not None:
                self.played.append((number, fault))
            return fault


class FaultyS3Proxy:
    """A threaded HTTP proxy on ``127.0.0.1`` forwarding to ``s3``, playing :class:`S3Faults`."""

    def __init__(self, s3: S3Server) -> None:
        self.s3 = s3
        self.state = _State()
        target = ("127.0.0.1", s3.port)
        state = self.state

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                return None

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if self.command == "PUT":
                    fault = state.fault_of_next_put()
                    if fault == "reset":
                        reset_connection(self.connection)
                        self.close_connection = True
                        return
                    if fault == "slowdown":
                        self.send_response(503, "Slow Down")
                        self.send_header("Content-Type", "application/xml")
                        self.send_header("Content-Length", str(len(SLOW_DOWN)))
                        self.end_headers()
                        self.wfile.write(SLOW_DOWN)
                        return
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in _HOP_BY_HOP and k.lower() != "expect"}  # fmt: skip
                upstream = http.client.HTTPConnection(*target, timeout=60)
                try:
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    answer = upstream.getresponse()
                    data = answer.read()
                    self.send_response(answer.status, answer.reason)
                    for key, value in answer.getheaders():
                        if key.lower() not in _HOP_BY_HOP and key.lower() != "content-length":
                            self.send_header(key, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                finally:
                    upstream.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self.endpoint = f"http://127.0.0.1:{self.port}"

    @property
    def storage_options(self) -> dict[str, Any]:
        options = dict(self.s3.storage_options)
        options["client_kwargs"] = {**options["client_kwargs"], "endpoint_url": self.endpoint}
        return options

    def location(self, name: str) -> StoreLocation:
        return StoreLocation(f"s3://{self.s3.bucket}/{name}", self.storage_options)

    def set_faults(self, faults: S3Faults) -> None:
        """Play ``faults`` from now on, counting PUTs from 1 again."""
        with self.state.lock:
            self.state.faults, self.state.puts, self.state.played = faults, 0, []

    @property
    def played(self) -> list[tuple[int, str]]:
        """(PUT number, fault) of each fault played since :meth:`set_faults`."""
        with self.state.lock:
            return list(self.state.played)

    def __enter__(self) -> FaultyS3Proxy:
        threading.Thread(target=self._server.serve_forever, name="s3-proxy", daemon=True).start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()

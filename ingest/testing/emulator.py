"""A faithful local emulator of the retired Radiant MLHub API, serving collection archives.

Radiant MLHub (``api.radiant.earth/mlhub/v1/``) was retired in 2023 and nothing serves the
BigEarthNet collections in its layout any more, so tests, the demo and the benchmarks talk to
this emulator instead. Point it at a directory of ``<collection_id>.tar.gz`` archives (as written
by :mod:`ingest.testing.samples`) and it speaks the 2022 ("v1-new") API: the real
``radiant_mlhub`` 0.4.1 client works against it unchanged with ``MLHUB_ROOT_URL`` set to
:attr:`Emulator.root_url`. Archives and single assets are served from a blob path with
``HEAD``/``Range``/``ETag`` semantics like Azure Blob's, and :class:`Faults` injects the failures
users of the real service hit (resets mid-body, 503/429, ignored ranges, slow or short bodies).

    with Emulator(directory, api_key="k") as mlhub:
        os.environ["MLHUB_ROOT_URL"] = mlhub.root_url

The routes are listed in :mod:`ingest.testing.mlhub_routes`; the same server also serves the
directory's Zenodo-shaped files (the v1.0 and v2.0 records, :mod:`ingest.testing.zenodo_routes`)
with the same blob semantics and faults. The server binds 127.0.0.1 by
default, logs nothing (every request goes to :attr:`Emulator.requests` instead, with the key
redacted) and never prints the key.
"""

from __future__ import annotations

import socket
import sys
import threading
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler
from werkzeug.wrappers import Request

from ingest.errors import InputDataError, UsageError
from ingest.testing.archive_index import MemberReader, index_directory
from ingest.testing.faults import Faults, FaultState
from ingest.testing.mlhub_routes import API_PATH, MlhubApp
from ingest.testing.zenodo_routes import ZenodoApp, is_record_file, zenodo_path

#: A WSGI application.
WsgiApp = Callable[[dict[str, Any], Any], Iterable[bytes]]

__all__ = ["Emulator", "Faults", "RequestRecord", "serve_forever"]

_RECORDED_HEADERS = ("Range", "If-Range", "User-Agent", "Accept")
_REDACTED = "REDACTED"
# How often the serving loop checks for stop(): short, so tests tear down quickly.
_POLL_INTERVAL = 0.05


@dataclass(frozen=True)
class RequestRecord:
    """One request the emulator answered, as tests want to check it."""

    method: str
    path: str
    query: dict[str, list[str]]
    """Query parameters, repeated ones in order; the value of ``key`` is replaced by REDACTED."""
    headers: dict[str, str]
    """Those of Range, If-Range, User-Agent and Accept that the request carried."""
    status: int


class Emulator:
    """The MLHub emulator over the archives in ``directory``; serves in a daemon thread."""

    def __init__(
        self,
        directory: Path,
        *,
        api_key: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: Faults = Faults(),  # noqa: B008 - frozen, hence a safe default
    ) -> None:
        self.directory = Path(directory)
        self.requests: list[RequestRecord] = []
        """Every request answered, in order (appended under a lock by the server threads)."""
        self.errors: list[str] = []
        """Tracebacks of unexpected server-side errors (the server never prints them)."""
        self._api_key = api_key
        self._host = host
        self._port = port
        self._faults = FaultState(faults)
        self._lock = threading.Lock()
        self._server: _QuietServer | None = None
        self._thread: threading.Thread | None = None
        self._readers: dict[str, MemberReader] = {}
        self._zenodo_files: tuple[tuple[str, str], ...] = ()

    @property
    def base_url(self) -> str:
        """``http://host:port`` of the server (known once started)."""
        if self._server is None:
            raise RuntimeError("the emulator is not started")
        return f"http://{_url_host(self._host)}:{self._server.port}"

    @property
    def root_url(self) -> str:
        """The ``MLHUB_ROOT_URL`` to use, with its trailing slash (known once started)."""
        if self._server is None:
            raise RuntimeError("the emulator is not started")
        return f"{self.base_url}{API_PATH}"

    def zenodo_url(self, record: str, name: str) -> str:
        """The Zenodo download URL of a served file (it answers 302 to the blob)."""
        return f"{self.base_url}{zenodo_path(record, name)}"

    def zenodo_urls(self) -> dict[str, str]:
        """Every Zenodo-shaped file served: ``<record>/<name>`` -> its download URL."""
        return {f"{r}/{n}": self.zenodo_url(r, n) for r, n in self._zenodo_files}

    def archive_url(self, collection_id: str) -> str:
        """The API URL of a collection's archive (it answers 303 to the blob)."""
        return f"{self.root_url}archive/{collection_id}"

    def set_faults(self, faults: Faults) -> None:
        """Inject other faults from now on; the counts of played faults start again."""
        self._faults.replace(faults)

    def start(self) -> Emulator:
        """Index the archives, bind and serve in a daemon thread."""
        server = self._open()
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": _POLL_INTERVAL},
            name=f"mlhub-emulator-{server.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port and the archives; safe to call twice."""
        server, thread = self._server, self._thread
        if server is None:
            return
        if thread is not None:
            server.shutdown()  # returns once the serving loop has exited
            thread.join()
        self._close()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals shared with serve_forever -----------------------------------------------------

    def _open(self) -> _QuietServer:
        if self._server is not None:
            raise RuntimeError("the emulator is already started")
        return self._listen(self._load())

    def _load(self) -> WsgiApp:
        """Index the archives (OSError, ValueError) and build the applications over them."""
        index = index_directory(self.directory, skip=is_record_file)
        self._readers = {cid: MemberReader(found.path) for cid, found in index.items()}
        mlhub = MlhubApp(
            index,
            self._readers,
            api_key=self._api_key,
            faults=self._faults,
            on_response=self._record,
            on_error=self._record_error,
        )
        zenodo = ZenodoApp(
            self.directory,
            faults=self._faults,
            on_response=self._record,
            on_error=self._record_error,
        )
        self._zenodo_files = tuple(zenodo.files)

        def route(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
            app = zenodo if ZenodoApp.handles(environ.get("PATH_INFO", "")) else mlhub
            return app(environ, start_response)

        return route

    def _listen(self, app: WsgiApp) -> _QuietServer:
        """Bind the port (OSError if it cannot be)."""
        self._server = _QuietServer.bind(self._host, self._port, app, self._record_error)
        return self._server

    def _close(self) -> None:
        server, self._server, self._thread = self._server, None, None
        if server is not None:
            server.server_close()
        for reader in self._readers.values():
            reader.close()

    def _record(self, request: Request, status: int) -> None:
        query = request.args.to_dict(flat=False)
        if "key" in query:
            query["key"] = [_REDACTED] * len(query["key"])
        headers = {
            name: request.headers[name] for name in _RECORDED_HEADERS if name in request.headers
        }
        record = RequestRecord(request.method, request.path, query, headers, status)
        with self._lock:
            self.requests.append(record)

    def _record_error(self, error: BaseException) -> None:
        text = "".join(traceback.format_exception(error))
        with self._lock:
            self.errors.append(text)


def serve_forever(
    directory: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key: str | None = None,
    on_ready: Callable[[str], None] | None = None,
    on_files: Callable[[Mapping[str, str]], None] | None = None,
) -> None:
    """Serve ``directory`` in the foreground (``ingest serve DIR``) until KeyboardInterrupt.

    ``on_ready(root_url)`` is called once the port is listening, e.g. to print the URL to use;
    then ``on_files(urls)`` with the Zenodo-shaped files served (``<record>/<name>`` -> download
    URL; see :mod:`ingest.testing.zenodo_routes`), if any.
    Unreadable archives raise :class:`InputDataError`, a port that cannot be bound
    :class:`UsageError`: one-line messages for the CLI.
    """
    emulator = Emulator(directory, api_key=api_key, host=host, port=port)
    try:
        app = emulator._load()
    except (OSError, ValueError) as exc:
        raise InputDataError(str(directory), f"cannot serve its archives: {exc}") from exc
    try:
        server = emulator._listen(app)
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    try:
        if on_ready is not None:
            on_ready(emulator.root_url)
        if on_files is not None and emulator.zenodo_urls():
            on_files(emulator.zenodo_urls())
        server.serve_forever(poll_interval=_POLL_INTERVAL)  # returns on KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    finally:
        emulator._close()


def _url_host(host: str) -> str:
    """The host to put in URLs: a wildcard bind is reached through loopback; IPv6 bracketed."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"[{host}]" if ":" in host else host


class _QuietHandler(WSGIRequestHandler):
    """werkzeug's request handler without its access log (tests want no output at all)."""

    def log(self, type: str, message: str, *args: Any) -> None:
        pass


class _QuietServer(ThreadedWSGIServer):
    """werkzeug's threaded server, silent: unexpected errors go to ``on_error``, not stderr."""

    on_error: Callable[[BaseException], None]

    @classmethod
    def bind(
        cls, host: str, port: int, app: WsgiApp, on_error: Callable[[BaseException], None]
    ) -> _QuietServer:
        # Bind here rather than in werkzeug, which prints to stderr and calls sys.exit() when the
        # port is taken; a plain OSError is what a library caller can handle.
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.create_server((host, port), family=family) as listener:
            server = cls(host, port, app, handler=_QuietHandler, fd=listener.fileno())
        server.on_error = on_error
        return server

    def log(self, type: str, message: str, *args: Any) -> None:
        # werkzeug reports here the errors raised while a body streams (after the app returned).
        if type == "error":
            self.on_error(RuntimeError(message % args if args else message))

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exception()
        if error is not None and not isinstance(error, ConnectionError):
            self.on_error(error)

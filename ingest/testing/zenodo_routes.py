"""The Zenodo side of the emulator: BigEarthNet's records, their files, a blob store.

Routes (no key; ``{rid}`` a record id, ``{name}`` a file name)::

    GET|HEAD  /records/{rid}/files/{name}[?download=1]   302 → /blob/zenodo/{rid}/{name}
    GET|HEAD  /api/records/{rid}/files/{name}/content    302 → the same blob
    GET       /api/records/{rid}                         the record: files with size and md5
    GET|HEAD  /blob/zenodo/{rid}/{name}                  the file: HEAD, Range, ETag (its md5)

Which files a directory serves (:func:`zenodo_files`):

- files at its top level whose names are those of the real records — v1.0 record 12687186
  (``BigEarthNet-S2-v1.0.tar*``, ``BigEarthNet-S1-v1.0.tar*``) and v2.0 (reBEN) record 10891137
  (``BigEarthNet-S2.tar*``, ``BigEarthNet-S1.tar*``, ``Reference_Maps.tar*``, the two metadata
  parquets) — under that record, whatever their compression suffix or split-part suffix
  (``.tar.gz``, ``.tar.zst``, ``.tar.gzaa`` …): what :mod:`ingest.testing.releases` writes with
  ``names="official"``;
- every file in ``DIR/zenodo/<rid>/`` under record ``<rid>`` (any id, any name).

The MLHub index skips the first kind (:func:`is_record_file`), so one directory can hold both.
Files are listed when the emulator starts. ETags are the files' md5s, read from an up-to-date
``MD5SUMS`` next to the file when there is one, else computed once on first use.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Final, cast
from urllib.parse import quote

from werkzeug.exceptions import HTTPException
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from ingest.testing.blob_store import (
    RoutesApp,
    blob_response,
    error_response,
    json_response,
    unavailable_response,
)
from ingest.testing.faults import FaultState

__all__ = [
    "RECORD_V1",
    "RECORD_V2",
    "ZenodoApp",
    "ZenodoFile",
    "is_record_file",
    "zenodo_files",
    "zenodo_path",
]

RECORD_V1: Final = "12687186"
RECORD_V2: Final = "10891137"
_RECORD_OF: Final = (
    (re.compile(r"^BigEarthNet-S[12]-v1\.0\.tar(\.\w+)?$"), RECORD_V1),
    (re.compile(r"^(BigEarthNet-S[12]|Reference_Maps)\.tar(\.\w+)?$"), RECORD_V2),
    (
        re.compile(r"^metadata(_for_patches_with_snow_cloud_or_shadow)?\.parquet$"),
        RECORD_V2,
    ),
)
_TITLES: Final = {
    RECORD_V1: "BigEarthNet v1.0",
    RECORD_V2: "reBEN: Refined BigEarthNet Dataset for Remote Sensing Image Analysis",
}
_SUBFOLDER: Final = "zenodo"
_PREFIXES: Final = ("/records/", "/api/records/", "/blob/zenodo/")
_CONTENT_TYPES: Final = {".parquet": "application/octet-stream", ".json": "application/json"}

_URL_MAP = Map(
    [
        Rule("/records/<rid>/files/<name>", endpoint="file", methods=["GET"]),
        Rule("/api/records/<rid>", endpoint="record", methods=["GET"]),
        Rule("/api/records/<rid>/files/<name>/content", endpoint="file", methods=["GET"]),
        Rule("/blob/zenodo/<rid>/<name>", endpoint="blob", methods=["GET"]),
    ],
    strict_slashes=False,
)


@dataclass(frozen=True)
class ZenodoFile:
    record: str
    name: str
    path: Path


def is_record_file(name: str) -> bool:
    """True for a file name of one of the real BigEarthNet records (parts included)."""
    return _record_of(name) is not None


def _record_of(name: str) -> str | None:
    return next((record for pattern, record in _RECORD_OF if pattern.match(name)), None)


def zenodo_files(directory: Path) -> dict[tuple[str, str], ZenodoFile]:
    """``(record id, name) -> file`` for every file the directory serves, sorted."""
    found: list[ZenodoFile] = []
    directory = Path(directory)
    for path in directory.iterdir():
        record = _record_of(path.name)
        if record is not None and path.is_file():
            found.append(ZenodoFile(record, path.name, path))
    records = directory / _SUBFOLDER
    if records.is_dir():
        for folder in records.iterdir():
            if folder.is_dir():
                found.extend(
                    ZenodoFile(folder.name, p.name, p) for p in folder.iterdir() if p.is_file()
                )
    return {(f.record, f.name): f for f in sorted(found, key=lambda f: (f.record, f.name))}


def zenodo_path(record: str, name: str, *, download: bool = True) -> str:
    """The path of a file's Zenodo URL: ``/records/{rid}/files/{name}?download=1``."""
    return f"/records/{quote(record)}/files/{quote(name)}" + ("?download=1" if download else "")


class _Checksums:
    """md5 of each served file, from MD5SUMS when up to date, else computed once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._known: dict[tuple[Path, int, int], str] = {}

    def md5(self, path: Path) -> str:
        stat = path.stat()
        key = (path, stat.st_size, stat.st_mtime_ns)
        with self._lock:
            known = self._known.get(key)
        if known is None:
            known = _listed_md5(path) or _compute_md5(path)
            with self._lock:
                self._known[key] = known
        return known


def _listed_md5(path: Path) -> str | None:
    listing = path.parent / "MD5SUMS"
    try:
        if listing.stat().st_mtime_ns < path.stat().st_mtime_ns:
            return None  # written before the file: stale
        lines = listing.read_text(encoding="ascii").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    for line in lines:
        digest, _, name = line.partition("  ")
        if name == path.name and re.fullmatch(r"[0-9a-f]{32}", digest):
            return digest
    return None


def _compute_md5(path: Path) -> str:
    with path.open("rb") as raw:
        return hashlib.file_digest(raw, "md5").hexdigest()


class ZenodoApp(RoutesApp):
    """WSGI application of the Zenodo routes over the files of ``directory``."""

    def __init__(
        self,
        directory: Path,
        *,
        faults: FaultState,
        on_response: Callable[[Request, int], None],
        on_error: Callable[[BaseException], None],
    ) -> None:
        super().__init__(faults=faults, on_response=on_response, on_error=on_error)
        self.files = zenodo_files(directory)
        self._checksums = _Checksums()

    @staticmethod
    def handles(path: str) -> bool:
        """Whether a request path belongs to these routes."""
        return path.startswith(_PREFIXES)

    def _respond(self, request: Request) -> Response:
        refusal = self._faults.claim_unavailable()
        if refusal is not None:
            return unavailable_response(refusal)
        try:
            endpoint, args = _URL_MAP.bind_to_environ(request.environ).match()
        except HTTPException as exc:
            code = exc.code or 500
            return error_response(code, HTTP_STATUS_CODES.get(code, "Error"))
        if endpoint == "record":
            return self._record(request, **args)
        found = self.files.get((args["rid"], args["name"]))
        if found is None:
            return error_response(404, "The requested file does not exist.")
        if endpoint == "file":
            location = f"{request.host_url}blob/zenodo/{quote(found.record)}/{quote(found.name)}"
            response = Response(b"", status=302, headers={"Location": location})
            del response.headers["Content-Type"]  # an empty redirect body has no type
            return response
        return blob_response(
            request,
            self._faults,
            lambda: cast(BinaryIO, found.path.open("rb")),
            size=found.path.stat().st_size,
            etag=self._checksums.md5(found.path),
            mtime=found.path.stat().st_mtime,
            content_type=_CONTENT_TYPES.get(found.path.suffix, "application/octet-stream"),
        )

    def _record(self, request: Request, rid: str) -> Response:
        files = [f for (record, _), f in self.files.items() if record == rid]
        if not files:
            return error_response(404, "The persistent identifier does not exist.")
        api = f"{request.host_url}api/records/{quote(rid)}"
        return json_response(
            {
                "id": int(rid) if rid.isdigit() else rid,
                "metadata": {"title": _TITLES.get(rid, f"Record {rid}")},
                "files": [_file_entry(api, f, self._checksums.md5(f.path)) for f in files],
                "links": {"self": api, "self_html": f"{request.host_url}records/{quote(rid)}"},
            }
        )


def _file_entry(api: str, found: ZenodoFile, md5: str) -> Mapping[str, Any]:
    return {
        "key": found.name,
        "size": found.path.stat().st_size,
        "checksum": f"md5:{md5}",
        "links": {"content": f"{api}/files/{quote(found.name)}/content"},
    }

"""HTTP resume against a server that ignores If-Range (issue 19, finding 9): the resumed answer
must come from the file the first bytes came from (ETag, Last-Modified, total length), else the
stream stops with FileChanged and a download starts over with a note, never splicing two files."""

from __future__ import annotations

import random
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from ingest.catalog.fetch import download_url
from ingest.sources.download import FileChanged, ResumableBody, RetryPolicy

A = random.Random(1).randbytes(200_000)
B = random.Random(2).randbytes(200_000)
B_LONGER = random.Random(3).randbytes(300_000)
CUT = 50_000
POLICY = RetryPolicy(backoff=0.0, attempts=3)


@dataclass
class Version:
    data: bytes
    etag: str | None
    last_modified: str | None


@dataclass
class Scenario:
    """The first GET of the body is cut after CUT bytes; from then on the server answers with
    ``after`` (as 206 or, ignoring Range, 200), whatever If-Range says."""

    before: Version
    after: Version
    ignore_range: bool = False
    gets: list[str] = field(default_factory=list)
    cut_done: bool = False

    def current(self) -> Version:
        return self.after if self.cut_done else self.before


Serve = Callable[[Scenario], str]


class Handler(BaseHTTPRequestHandler):
    scenario: Scenario

    def log_message(self, format: str, *args: object) -> None:
        return None

    def _headers(self, version: Version, status: int, length: int, extra: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(length))
        if version.etag:
            self.send_header("ETag", version.etag)
        if version.last_modified:
            self.send_header("Last-Modified", version.last_modified)
        for key, value in extra.items():
            self.send_header(key, value)
        self.end_headers()

    def do_HEAD(self) -> None:
        version = self.scenario.current()
        self._headers(version, 200, len(version.data), {})

    def do_GET(self) -> None:
        scenario = self.scenario
        version = scenario.current()
        ranged = self.headers.get("Range")
        scenario.gets.append(ranged or "")
        if ranged and not scenario.ignore_range:
            start = int(ranged.removeprefix("bytes=").rstrip("-"))
            body = version.data[start:]
            last = len(version.data) - 1
            self._headers(version, 206, len(body),
                          {"Content-Range": f"bytes {start}-{last}/{len(version.data)}"})  # fmt: skip
            self.wfile.write(body)
            return
        self._headers(version, 200, len(version.data), {})
        if not scenario.cut_done:
            self.wfile.write(version.data[:CUT])
            self.wfile.flush()
            scenario.cut_done = True
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        self.wfile.write(version.data)


@pytest.fixture
def serve() -> Iterator[Serve]:
    servers: list[ThreadingHTTPServer] = []

    def start(scenario: Scenario) -> str:
        handler = type("H", (Handler,), {"scenario": scenario})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/file.bin"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def read_body(url: str, notes: list[str]) -> bytes:
    with requests.Session() as session:
        body = ResumableBody(session, url, what="file.bin", policy=POLICY, warn=notes.append,
                             sleep=lambda s: None)  # fmt: skip
        try:
            out = b""
            while chunk := body.read(1 << 16):
                out += chunk
            return out
        finally:
            body.close()


LM_A = "Mon, 01 Jan 2024 00:00:00 GMT"
LM_B = "Tue, 02 Jan 2024 00:00:00 GMT"


@pytest.mark.parametrize(
    ("before", "after", "ignore_range", "why"),
    [
        # 206 from another file: its ETag differs (before: 50,000 bytes of A, then 150,000 of B)
        (Version(A, '"a"', None), Version(B, '"b"', None), False, "ETag"),
        # no ETags at all, Last-Modified differs
        (Version(A, None, LM_A), Version(B, None, LM_B), False, "Last-Modified"),
        # 200 without an ETag for a longer file (before: 300,000 bytes for a 200,000-byte file)
        (Version(A, '"a"', None), Version(B_LONGER, None, None), True, "300,000 bytes"),
        # 206 for a longer file: Content-Range's total differs
        (Version(A, None, None), Version(B_LONGER, None, None), False, "300,000 bytes"),
    ],
)
def test_a_resumed_answer_from_another_file_is_never_spliced(
    serve: Serve,
    before: Version,
    after: Version,
    ignore_range: bool,
    why: str,
) -> None:
    url = serve(Scenario(before, after, ignore_range))
    with pytest.raises(FileChanged, match=why):
        read_body(url, [])


def test_a_resume_of_the_same_file_continues(serve: Serve) -> None:
    for version in (Version(A, '"a"', LM_A), Version(A, None, None)):
        for ignore_range in (False, True):
            notes: list[str] = []
            scenario = Scenario(version, version, ignore_range)
            assert read_body(serve(scenario), notes) == A
            assert scenario.gets == ["", f"bytes={CUT}-"]
            assert notes[0].startswith("file.bin: ") and f"resuming at byte {CUT:,}" in notes[0]


def test_a_download_whose_file_changed_starts_over_with_a_note(
    serve: Serve,
    tmp_path: Path,
) -> None:
    """Before: the download came out as 50,000 bytes of A followed by 150,000 of B."""
    scenario = Scenario(Version(A, '"a"', LM_A), Version(B, '"b"', LM_B))
    url = serve(scenario)
    notes: list[str] = []
    target = tmp_path / "file.bin"
    path = download_url(url, target, what="file.bin", policy=POLICY, warn=notes.append)
    assert path.read_bytes() == B
    assert any("changed on the server during the download" in n and "starting over" in n
               for n in notes), notes  # fmt: skip
    assert not target.with_name("file.bin.partial").exists()

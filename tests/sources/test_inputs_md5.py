"""What an input's ``sources`` record says about its md5 (issue 19, finding 7): the official md5 only
once the last byte was read and matched; a failed check raised again wherever it was first seen
(a read-ahead thread that nobody reads on); None for a file not read to its end."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest

from ingest.errors import InputDataError
from ingest.sources.download import RetryPolicy
from ingest.sources.inputs import InputSpec, open_input

DATA = bytes(range(256)) * 1000
RIGHT = hashlib.md5(DATA, usedforsecurity=False).hexdigest()


def spec(tmp_path: Path, md5: str) -> InputSpec:
    path = tmp_path / "BigEarthNet-S2.tar.zst"
    path.write_bytes(DATA)
    return InputSpec((str(path),), "s2", md5=md5)


def test_the_md5_is_recorded_once_read_to_the_end_and_matched(tmp_path: Path) -> None:
    with open_input(spec(tmp_path, RIGHT), policy=RetryPolicy(), warn=print) as stream:
        stream.read(1000)
        assert stream.records()[0]["md5"] is None  # not read to the end: not verified
        stream.drain()
        assert stream.records()[0]["md5"] == RIGHT


def test_a_failed_check_seen_only_by_a_reader_thread_is_never_dropped(tmp_path: Path) -> None:
    """The decompression threads read ahead: the check may fail in one whose error nobody
    collects (the pipeline stopped at --limit). records() raises it all the same."""
    with open_input(spec(tmp_path, "0" * 32), policy=RetryPolicy(), warn=print) as stream:
        seen: list[BaseException] = []

        def read_ahead() -> None:
            try:
                stream.drain()
            except InputDataError as exc:
                seen.append(exc)

        thread = threading.Thread(target=read_ahead)
        thread.start()
        thread.join()
        assert len(seen) == 1  # the thread's error, which the consumer never sees
        with pytest.raises(InputDataError, match=r"md5 .* differs from the official 0000"):
            stream.records()
        with pytest.raises(InputDataError, match="differs from the official"):
            stream.read(10)  # and every later read


def test_a_wrong_md5_not_reached_is_not_verified(tmp_path: Path) -> None:
    with open_input(spec(tmp_path, "0" * 32), policy=RetryPolicy(), warn=print) as stream:
        stream.read(len(DATA) - 1)
        assert stream.records()[0]["md5"] is None

"""The error hierarchy's edge cases: what counts as a Ctrl-C."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from ingest.errors import InputDataError, caused_by_interrupt


def _raise_from(cause: BaseException | None, error: BaseException) -> BaseException:
    try:
        try:
            if cause is not None:
                raise cause
        finally:
            raise error from cause
    except BaseException as caught:
        return caught


def test_a_ctrl_c_and_what_cpython_turns_it_into_count_as_an_interrupt() -> None:
    assert caused_by_interrupt(KeyboardInterrupt())
    # what CI saw: the signal handler's KeyboardInterrupt, then int() failing on the error left set
    error = _raise_from(KeyboardInterrupt(), SystemError("<class 'int'> returned a result"))
    assert isinstance(error, SystemError) and caused_by_interrupt(error)
    # raised while the interrupt was being handled (a clean-up that failed)
    during = _raise_from(None, OSError("disk gone"))
    assert not caused_by_interrupt(during)
    during = _cleanup_failing_after_ctrl_c()
    assert during.__cause__ is None and caused_by_interrupt(during)


def _cleanup_failing_after_ctrl_c() -> BaseException:
    def run() -> None:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise OSError("disk gone")  # noqa: B904 - the implicit context is the point

    try:
        run()
    except OSError as error:
        return error
    raise AssertionError("no error")


def test_other_errors_are_not_interrupts() -> None:
    assert not caused_by_interrupt(ValueError("x"))
    assert not caused_by_interrupt(_raise_from(ValueError("y"), SystemError("z")))
    assert not caused_by_interrupt(InputDataError("a.tar", "bad"))
    looped = ValueError("a")  # a cycle of contexts ends the walk
    other = ValueError("b")
    looped.__context__, other.__context__ = other, looped
    assert not caused_by_interrupt(looped)


def test_the_edge_says_interrupted_in_one_line_even_for_an_error_caused_by_ctrl_c() -> None:
    """A command whose Ctrl-C surfaced as a SystemError exits 130 with one line, and the zarr
    write the Ctrl-C cut (a pending asyncio task destroyed at exit) prints nothing more."""
    script = textwrap.dedent(
        """
        import asyncio, os, signal, threading, click
        from zarr.core.sync import sync
        from ingest.cli.common import handle_errors

        async def write() -> None:
            await asyncio.gather(asyncio.sleep(3600), asyncio.sleep(3600))

        @click.command()
        @handle_errors
        def cut() -> None:
            threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
            try:
                sync(write())  # zarr waiting on its loop thread, as a shard write does
            except KeyboardInterrupt as exc:  # and CPython turning the Ctrl-C into a SystemError
                raise SystemError("<class 'int'> returned a result with an exception set") from exc

        cut()
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 130, done.stderr
    assert done.stderr == "error: interrupted\n"

"""One error hierarchy for the whole tool; the CLI turns each class into a one-line message and an
exit code (documented in the README)."""

from __future__ import annotations


class IngestError(Exception):
    """Base of every error this tool raises on purpose. The message is one line for the user."""

    exit_code = 1


class UsageError(IngestError):
    """Bad options or arguments, or an existing store that the options do not allow touching."""

    exit_code = 2


class InputDataError(IngestError):
    """An archive, member, item or band is missing, malformed or inconsistent."""

    exit_code = 3

    def __init__(self, culprit: str, problem: str) -> None:
        super().__init__(f"{culprit}: {problem}")
        self.culprit = culprit
        self.problem = problem


class NetworkError(IngestError):
    """The endpoint could not be reached, answered with an error, or the key was rejected."""

    exit_code = 4


class AuthError(NetworkError):
    """The API key is missing or was rejected (never part of the message)."""


class NotFoundError(NetworkError):
    """A collection, item or archive does not exist on the server."""


class StoreError(IngestError):
    """The store cannot be written, is not a store of this tool, or fails its contract."""

    exit_code = 5


#: Exit code of a run stopped by Ctrl-C (128 + SIGINT), leaving a resumable store.
EXIT_INTERRUPTED = 130


def caused_by_interrupt(error: BaseException) -> bool:
    """Whether ``error`` is a Ctrl-C or was raised because of one.

    CPython can turn a Ctrl-C into another error: the signal handler raises ``KeyboardInterrupt``
    inside a Python property that C code calls (``io.BufferedReader`` asking isal's threaded gzip
    reader whether it is ``closed``), the C code drops the error indicator check, and the next
    builtin fails with ``SystemError: ... returned a result with an exception set`` whose cause is
    the ``KeyboardInterrupt`` (seen by CI, 2026-12-05). Such an error is an interrupt to the user.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False

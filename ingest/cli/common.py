"""What every ``ingest`` subcommand shares: the error edge (one line on stderr and an exit code,
a traceback only with ``--debug``) and the options several commands take."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click

from ..errors import EXIT_INTERRUPTED, IngestError, caused_by_interrupt
from ..sources.download import redact

F = TypeVar("F", bound=Callable[..., Any])


def _parse_storage_options(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return {}
    try:
        options = json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON ({exc})") from None
    if not isinstance(options, dict):
        raise click.BadParameter("must be a JSON object, e.g. '{\"anon\": false}'")
    return options


storage_options_option = click.option(
    "--storage-options",
    metavar="JSON",
    callback=_parse_storage_options,
    help="fsspec options for a store URL (s3://, gs://), as a JSON object, e.g. "
    '\'{"client_kwargs": {"endpoint_url": "http://127.0.0.1:9000"}}\'.',
)


def _fail(message: str, code: int) -> None:
    click.echo(f"error: {redact(message)}", err=True)
    if code == EXIT_INTERRUPTED:
        quiet_shutdown()
    sys.exit(code)


def quiet_shutdown() -> None:
    """After a Ctrl-C, let the interpreter end without asyncio's "Task was destroyed but it is
    pending!": zarr's event-loop thread still holds the write that was cut, and the journal, not
    that task, is what --resume continues from."""
    logging.getLogger("asyncio").disabled = True


def _with_notes(message: str, error: BaseException, joint: str = "; ") -> str:
    """The message and the notes added on the way up (what a failed run left behind), on one
    line."""
    notes = [" ".join(str(n).split()) for n in getattr(error, "__notes__", ())]
    return joint.join([message, "; ".join(notes)]) if notes else message


def interrupted_exit() -> None:
    """Ctrl-C outside a command (start-up, option parsing): one line, exit 130."""
    _fail("interrupted", EXIT_INTERRUPTED)


def handle_errors(func: F) -> F:
    """Turn the tool's errors into a one-line message and its exit code at the edge."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = click.get_current_context().find_root().params.get("debug", False)
        try:
            return func(*args, **kwargs)
        except IngestError as exc:
            if debug:
                raise
            _fail(_with_notes(str(exc), exc), exc.exit_code)
        except (Exception, KeyboardInterrupt) as exc:  # SystemExit passes
            if debug or not caused_by_interrupt(exc):
                raise
            _fail(_with_notes("interrupted", exc, ": "), EXIT_INTERRUPTED)
        return None

    return wrapper  # type: ignore[return-value]


def endpoint_options(func: F) -> F:
    """--api-key and --profile: the key is resolved as radiant-mlhub does, and never printed."""
    func = click.option(
        "--profile", help="Profile of the MLHub profiles file to take the API key from."
    )(func)
    return click.option(
        "--api-key", envvar=None, help="MLHub API key (else MLHUB_API_KEY or the profile)."
    )(func)

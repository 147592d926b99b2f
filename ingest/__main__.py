"""``python -m ingest`` and the ``ingest`` console script: the command, with Ctrl-C at any moment,
even while its modules are still loading, one line on stderr and exit 130 (never a traceback)."""

from __future__ import annotations

import logging
import os
import signal
import sys

EXIT_INTERRUPTED = 130  # ingest.errors.EXIT_INTERRUPTED, not imported: this module loads first


def entry() -> None:
    """Run the ``ingest`` command; exits with its code."""
    # No command does linear algebra, yet numpy's OpenBLAS starts a thread per core in every
    # process (the run's, each writer's), which spin at start: 0.2 CPU-s of a 10 s run measured
    # with perf on 2 cores. Set before numpy loads; the spawned processes inherit it. A value the
    # user set is kept.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    try:
        import click

        from ingest.cli import main

        try:
            code = main.main(standalone_mode=False)
        except click.exceptions.Abort:  # click's own Ctrl-C (a prompt, its parsing)
            raise KeyboardInterrupt from None
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C does not cut the line
        sys.stderr.write("error: interrupted\n")
        logging.getLogger("asyncio").disabled = True  # as ingest.cli.common.quiet_shutdown
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    entry()

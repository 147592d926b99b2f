"""The ``ingest`` command (``main``); the notebook commands (``catalog``), the test kit's commands
(``testkit``), the error edge shared by all (``common``) and the progress line (``progress``).

Public entry: :func:`main` (the ``ingest`` console script).
"""

from .main import main

__all__ = ["main"]

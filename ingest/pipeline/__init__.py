"""The main job: read the labels, then stream the source archive, join each source item to its
labels, decode its bands and write the store — without extracting anything.

Stages (one package each): ``sources`` (bytes) → ``archive`` (members, items) → ``layouts``
(label items, label index, selection) → ``decode`` (decoded bands) → ``store`` (shards, metadata).
This package wires them: :mod:`~ingest.pipeline.job` (the run, end to end) over
:mod:`~ingest.pipeline.start` (layout, inputs, room, resume point),
:mod:`~ingest.pipeline.s2_pass` (the S2 archive into shards),
:mod:`~ingest.pipeline.overlap` (the same while the partner streams stage) and
:mod:`~ingest.pipeline.report` (report, final attributes), sharing
:mod:`~ingest.pipeline.state`.
"""

from __future__ import annotations

from .job import run
from .s2_pass import make_writer
from .start import open_layout
from .state import NoProgress, Progress

__all__ = ["NoProgress", "Progress", "make_writer", "open_layout", "run"]

"""A terminal progress line (bytes and items, rate, ETA) and the end-of-run summary."""

from __future__ import annotations

import time
from typing import TextIO

from ..config import RunReport
from ..layouts.feeds import Meter
from ..units import human_bytes, human_seconds

REFRESH_SECONDS = 0.25


class ProgressLine:
    """Redraws one status line on a terminal at most every 0.25 s."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._reader: Meter | None = None
        self._name = ""
        self._items = 0
        self._started = 0.0
        self._drawn = 0.0

    def phase(self, name: str, reader: Meter) -> None:
        self._finish_line()
        self._name, self._reader, self._items = name, reader, 0
        self._started = time.monotonic()
        self._draw(force=True)

    def advance(self, items: int = 1) -> None:
        self._items += items
        self._draw()

    def done(self) -> None:
        self._finish_line()

    def _finish_line(self) -> None:
        if self._reader is not None:
            self._draw(force=True)
            self._stream.write("\n")
            self._stream.flush()
            self._reader = None

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if self._reader is None or (not force and now - self._drawn < REFRESH_SECONDS):
            return
        self._drawn = now
        elapsed = max(now - self._started, 1e-9)
        done, total = self._reader.bytes_read, self._reader.size
        parts = [f"{self._name}: {human_bytes(done)}"]
        if total:
            parts[0] += f" / {human_bytes(total)} ({100 * done / total:.0f}%)"
        parts.append(f"{self._items:,} items")
        parts.append(f"{self._items / elapsed:,.0f} items/s, {human_bytes(done / elapsed)}/s")
        if total and done:
            parts.append(f"ETA {human_seconds((total - done) * elapsed / done)}")
        self._stream.write("\r" + "  ".join(parts) + "\033[K")
        self._stream.flush()


def summary(report: RunReport) -> str:
    """The end-of-run summary, one fact per line."""
    facts = [
        ("store", str(report.store)),
        ("samples written", f"{report.samples:,}"),
        ("labels without source", f"{report.labels_without_source:,}"),
        ("source items without labels", f"{report.source_without_labels:,}"),
        ("skipped items", f"{len(report.skipped):,}"),
        ("not selected", f"{report.not_selected:,}"),
        ("store size", human_bytes(report.store_bytes)),
        ("elapsed", human_seconds(report.elapsed)),
    ]
    facts += [
        ("ignored", f"{name} in {count:,} items (not a BigEarthNet v1 band)")
        for name, count in sorted(report.ignored_files.items())
    ]
    facts += [
        (f"{role.replace('_', ' ')} patches", f"{entry['written']:,} written, {entry['staged']:,} "
         f"staged, {entry['without_s2']:,} without an S2 patch")
        for role, entry in report.partners.items()
    ]  # fmt: skip
    facts += [
        ("ignored members", f"{entry['count']:,} {reason} (e.g. {', '.join(entry['examples'])})")
        for reason, entry in report.ignored_members.items()
    ]
    facts += [
        (f"e.g. {kind.replace('_', ' ')}", ", ".join(names))
        for kind, names in sorted(report.examples.items())
    ]
    facts += [(f"skipped {entry['item']}", entry["reason"]) for entry in report.skipped[:10]]
    if not report.source_read_to_end:
        facts.append(("note", "--limit reached: the rest of the source archive was not read"))
    width = max(len(label) for label, _ in facts) + 2
    return "\n".join(f"{label + ':':<{width}}{value}" for label, value in facts)

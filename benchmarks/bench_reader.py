"""``make bench`` (issue 21): the S2 reader's own chain, which bounds a run however many cores
write: the S2 archive read, hashed, decompressed, its tar walked and every patch decoded into a
batch buffer, no writer.

Two ways, each a whole process, alternating, median of ``--repeat`` (default 3), warm (the archive
read once just before each turn):

- thread: decompression in a thread of the reader's process (``open_input`` + ``iter_archive``:
  what a run does with ``--workers 0``);
- process: decompression in a process of its own, the tar stream through a ring of shared memory
  (``ArchiveReader`` + ``iter_tar``: what a run does otherwise).

Prints the wall time and the reader process's own CPU time of each, and their ratio. Uses
``bench_partners``' sample (``bench-out/partners-N``, built when missing).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

from bench_partners import build, warm

CHAIN = """
import resource, sys, time
import numpy as np
from ingest.archive.members import ArchiveItem, IgnoredMembers, iter_archive, iter_tar
from ingest.decode.patches import decode_patch
from ingest.layouts.rules import PatchFolderRule
from ingest.nomenclature import BAND_GROUPS
from ingest.processes import keep_freed_memory
from ingest.sources.download import RetryPolicy
from ingest.sources.endpoint import Endpoint
from ingest.sources.inputs import InputSpec, open_input
from ingest.sources.reader_process import ArchiveReader

keep_freed_memory()  # as a run
way, path = sys.argv[1], sys.argv[2]
spec = InputSpec((path,), "s2")
rule = PatchFolderRule("BigEarthNet-S2", depth=1)
out = {g.array_name: np.empty((len(g.bands), g.size, g.size), np.uint16) for g in BAND_GROUPS}
start = time.perf_counter()
if way == "thread":
    with open_input(spec, policy=RetryPolicy(), warn=print) as raw:
        items = iter_archive(raw, rule, culprit=path, ignored=IgnoredMembers())
        n = sum(1 for item in items if isinstance(item, ArchiveItem)
                and decode_patch(item, item.item_id, out) is not None)
else:
    reader = ArchiveReader(spec, policy=RetryPolicy(), endpoint=Endpoint(), warn=print)
    try:
        items = iter_tar(reader.stream(), rule, culprit=path, ignored=IgnoredMembers())
        n = sum(1 for item in items if isinstance(item, ArchiveItem)
                and decode_patch(item, item.item_id, out) is not None)
    finally:
        reader.close()
usage = resource.getrusage(resource.RUSAGE_SELF)
print(n, time.perf_counter() - start, usage.ru_utime + usage.ru_stime)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patches", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    sample = build(args.out, args.patches)
    runs: dict[str, list[tuple[float, float]]] = {"thread": [], "process": []}
    for _ in range(args.repeat):
        for way in runs:
            warm([sample.s2])
            done = subprocess.run([sys.executable, "-c", CHAIN, way, str(sample.s2)],
                                  capture_output=True, text=True, check=True)  # fmt: skip
            count, seconds, cpu = done.stdout.split()
            assert int(count) == args.patches, done.stdout
            runs[way].append((float(seconds), float(cpu)))
    wall = {k: statistics.median(s for s, _ in v) for k, v in runs.items()}
    cpu = {k: statistics.median(c for _, c in v) for k, v in runs.items()}
    print(f"""
the S2 reader's chain alone (read, hash, decompress, walk, decode; no writer), N = {args.patches:,},
median of {args.repeat}, warm            seconds   reader's own CPU s
decompression in a thread             {wall["thread"]:8.2f}   {cpu["thread"]:8.2f}
decompression in a process (ring)     {wall["process"]:8.2f}   {cpu["process"]:8.2f}
thread / process                      {wall["thread"] / wall["process"]:8.2f}x
""")


if __name__ == "__main__":
    main()

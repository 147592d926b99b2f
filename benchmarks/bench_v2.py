"""``make bench`` (reBEN v2): ``ingest run`` on a reBEN v2.0 sample against the physical floor.

Builds ``write_release_sample(layout="reben-v2", patches=N)`` (default 10,000 synthetic patches;
the two metadata parquets are the full official ones, 549,488 rows), then measures whole processes,
alternating and repeated (median of ``--repeat``, default 3), on the same files:

- floor: decompress ``BigEarthNet-S2.tar.zst`` with the python ``zstandard`` stream reader and read
  every tar member's bytes with ``tarfile``, nothing else;
- ingest (local): ``ingest run`` from the local S2 archive and metadata parquets to a fresh store.

Prints ingest/floor (target <= 1.5) in wall time and in CPU time (user + system of the process
tree: the floor runs on one core, the ingest on both, so when other work shares the machine the
wall ratio grows while the CPU ratio does not), the peak RSS of the ingest's process tree
(target <= 1 GiB) and the projected time for the 549,488 patches of reBEN; writes them to
``bench-out/bench_v2.json``. Ratios taken in one run are what to compare: these machines are
shared and absolute seconds drift between runs.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

from bench_ingest import measure as measure_wall
from bench_ingest import warm_tables_cache

from ingest.testing.releases import write_release_sample

FULL_V2 = 549_488

FLOOR = """
import sys, tarfile, zstandard
with open(sys.argv[1], "rb") as raw, zstandard.ZstdDecompressor().stream_reader(raw) as plain, \\
        tarfile.open(fileobj=plain, mode="r|") as tar:
    for info in tar:
        if info.isfile():
            tar.extractfile(info).read()
"""


def measure(cmd: list[str]) -> tuple[float, float, int]:
    """Wall time, CPU time (user + system of the whole process tree, as the kernel accounts
    waited-for children) and peak RSS of one command (:func:`bench_ingest.measure`, which stops
    the benchmark on a failed run)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    seconds, peak = measure_wall(cmd)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return seconds, cpu, peak


@dataclass(frozen=True)
class Built:
    s2: tuple[Path, ...]
    metadata: tuple[Path, ...]
    patches: int


def build(out: Path, patches: int) -> Built:
    """The reBEN v2 sample of ``patches`` synthetic patches (seed 0), built once, kept in ``out``."""
    folder = out / f"reben-v2-{patches}"
    marker = folder / "done.json"
    if not marker.is_file():
        print(f"building {patches:,} synthetic reBEN v2 patches in {folder} ...", flush=True)
        sample = write_release_sample(folder, layout="reben-v2", patches=patches, seed=0)
        marker.write_text(json.dumps({"s2": [p.name for p in sample.s2],
                                      "metadata": [p.name for p in sample.metadata],
                                      "patches": len(sample.patches)}))  # fmt: skip
    done = json.loads(marker.read_text())
    return Built(tuple(folder / n for n in done["s2"]),
                 tuple(folder / n for n in done["metadata"]), done["patches"])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--patches", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None, help="ingest --workers")
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    args = parser.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    sample = build(out, args.patches)
    n = sample.patches
    warm_tables_cache(out)
    store = out / "v2.zarr"
    workers = [] if args.workers is None else ["--workers", str(args.workers)]
    ingest = [sys.executable, "-m", "ingest", "run", str(store), "--overwrite", "--no-progress",
              *(a for p in sample.s2 for a in ("--source-archive", str(p))),
              *(a for p in sample.metadata for a in ("--metadata", str(p))), *workers]  # fmt: skip
    floor = [sys.executable, "-c", FLOOR, str(sample.s2[0])]
    runs: dict[str, list[float]] = {"floor": [], "ingest": []}
    cpus: dict[str, list[float]] = {"floor": [], "ingest": []}
    rss: list[int] = []
    for round_ in range(args.repeat):
        for name, cmd in (("floor", floor), ("ingest", ingest)):
            seconds, cpu, peak = measure(cmd)
            runs[name].append(seconds)
            cpus[name].append(cpu)
            if name == "ingest":
                rss.append(peak)
            print(f"round {round_ + 1}: {name:6s} {seconds:7.2f} s  ({n / seconds:,.0f} patches/s)"
                  f"  cpu {cpu:6.2f} s", flush=True)  # fmt: skip
    med = {k: statistics.median(v) for k, v in runs.items()}
    cpu_med = {k: statistics.median(v) for k, v in cpus.items()}
    report = {
        "layout": "reben-v2",
        "patches": n,
        "repeat": args.repeat,
        "seconds": med,
        "all_seconds": runs,
        "patches_per_second": {k: n / v for k, v in med.items()},
        "ingest_over_floor": med["ingest"] / med["floor"],
        "cpu_seconds": cpu_med,
        "all_cpu_seconds": cpus,
        "ingest_over_floor_cpu": cpu_med["ingest"] / cpu_med["floor"],
        "peak_rss_bytes": max(rss),
        "projected_full_v2_seconds": med["ingest"] / n * FULL_V2,
    }
    (out / "bench_v2.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nreBEN v2, {n:,} patches, median of {args.repeat}")
    print(f"floor (zstandard + tarfile)      {med['floor']:8.2f} s   cpu {cpu_med['floor']:6.2f} s")
    print(
        f"ingest run (local files)         {med['ingest']:8.2f} s   cpu {cpu_med['ingest']:6.2f} s"
    )
    print(
        f"ingest / floor                   {report['ingest_over_floor']:8.2f}     (target <= 1.5)"
    )
    print(
        f"ingest / floor, CPU time         {report['ingest_over_floor_cpu']:8.2f}     "
        "(the floor runs on one core, the ingest on two)"
    )
    print(f"peak RSS of the ingest (tree)    {max(rss) / 2**20:8,.0f} MiB (target <= 1024)")
    hours = report["projected_full_v2_seconds"] / 3600
    print(f"projected for {FULL_V2:,} patches  {hours:8.2f} h")


if __name__ == "__main__":
    main()

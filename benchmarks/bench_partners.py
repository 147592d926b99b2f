"""``make bench`` (issue: multi-modal stores): reBEN v2 with Sentinel-1 and the reference maps.

Builds ``write_release_sample(layout="reben-v2", patches=N, s1=True, reference_maps=True)`` (S1 in
S1-name order, as the real archive; the full official metadata), then measures whole processes,
alternating, median of ``--repeat`` (default 3), on the same files, warm (each file is read once
just before its turn):

- floor: the three archives each decompressed with ``zstandard`` and walked with ``tarfile``,
  every member's bytes read, one after the other;
- ingest, S2 only: ``ingest run`` of the S2 archive and metadata;
- ingest, S2 + S1 + maps: the same plus ``--s1-archive`` and ``--reference-maps``;
- staging only: the latter with ``--limit 0`` less the former with ``--limit 0`` — the partner
  streams (read, decode, encode, stage) on their own;
- the two ingests again on one core (``taskset -c 0``, Linux): the speed-up of two cores over one
  (issue 21: >= 1.8x with the partners, >= 1.7x S2 only).

Prints ingest/floor (target <= 1.7), in wall and CPU time, the cost of the partners against a run
without them, the staging phase's share, the speed-ups, the peak RSS of the ingest's process tree
(target <= 2 GiB) and the projection to the 549,488 patches of reBEN, with the load average before
and after (these machines are shared). ``--patches 40000 --repeat 1`` shows the RSS growth.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

from bench_ingest import warm_tables_cache
from bench_v2 import measure

from ingest.testing.releases import write_release_sample

FULL_V2 = 549_488

FLOOR = """
import sys, tarfile, zstandard
for path in sys.argv[1:]:
    with open(path, "rb") as raw, zstandard.ZstdDecompressor().stream_reader(raw) as plain, \\
            tarfile.open(fileobj=plain, mode="r|") as tar:
        for info in tar:
            if info.isfile():
                tar.extractfile(info).read()
"""


@dataclass(frozen=True)
class Files:
    s2: Path
    s1: Path
    maps: Path
    metadata: tuple[Path, ...]


def files_in(folder: Path) -> Files:
    return Files(folder / "BigEarthNet-S2.tar.zst", folder / "BigEarthNet-S1.tar.zst",
                 folder / "Reference_Maps.tar.zst", tuple(sorted(folder.glob("metadata*.parquet"))))  # fmt: skip


def build(out: Path, patches: int) -> Files:
    """The sample of ``patches`` synthetic patches with S1 and maps, built once into ``out``."""
    folder = out / f"partners-{patches}"
    if not (folder / "MD5SUMS").exists():  # written last
        shutil.rmtree(folder, ignore_errors=True)
        write_release_sample(folder, layout="reben-v2", patches=patches, s1=True,
                             reference_maps=True)  # fmt: skip
    return files_in(folder)


def warm(paths: list[Path]) -> None:
    for path in paths:
        with path.open("rb") as f:
            while f.read(1 << 24):
                pass


def fresh(store: Path) -> None:
    """Delete the previous run's store before the clock starts: ``--overwrite`` would delete it
    inside the measured run, and the stores differ (2.2 GB with S1, 1.1 GB without, none at
    ``--limit 0``), which charged each run for its predecessor (S2 on two cores came after S2 + S1
    + maps, on one core after an empty store)."""
    shutil.rmtree(store, ignore_errors=True)


def ingest(files: Files, store: Path, partners: bool, *extra: str) -> list[str]:
    cmd = [sys.executable, "-m", "ingest", "run", str(store), "--overwrite", "--no-progress",
           "--source-archive", str(files.s2)]  # fmt: skip
    for m in files.metadata:
        cmd += ["--metadata", str(m)]
    if partners:
        cmd += ["--s1-archive", str(files.s1), "--reference-maps", str(files.maps)]
    return [*cmd, *extra]


def speedups(m: dict[str, float]) -> str:
    """Two cores over one (``taskset -c 0``), when measured."""
    if "all_1c" not in m:
        return "speed-up 2 cores / 1 core: not measured (no taskset)"
    return (f"1 core: S2 only / S2 + S1 + maps    {m['s2_1c']:8.2f} / {m['all_1c']:.2f} s\n"
            f"speed-up 2 cores / 1, S2 + S1 + maps {m['all_1c'] / m['all']:8.2f}x  (target >= 1.8)\n"
            f"speed-up 2 cores / 1, S2 only        {m['s2_1c'] / m['s2']:8.2f}x  (target >= 1.7)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patches", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    parser.add_argument("--sample", type=Path, help="an `ingest sample --layout reben-v2 "
                        "--patches N --s1 --reference-maps` folder to use instead of building one")  # fmt: skip
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    warm_tables_cache(args.out)
    sample = files_in(args.sample) if args.sample else build(args.out, args.patches)
    archives = [sample.s2, sample.s1, sample.maps]
    store = args.out / "partners.zarr"
    one_core = ["taskset", "-c", "0"] if shutil.which("taskset") else []
    keys = ("floor", "s2", "all", "s2_0", "all_0", *(("s2_1c", "all_1c") if one_core else ()))
    runs: dict[str, list[float]] = {k: [] for k in keys}
    cpus: dict[str, list[float]] = {k: [] for k in runs}
    rss: dict[str, list[int]] = {"s2": [], "all": []}
    load_before = os.getloadavg()
    for _ in range(args.repeat):
        warm(archives)
        seconds, cpu, _ = measure([sys.executable, "-c", FLOOR, *map(str, archives)])
        runs["floor"].append(seconds)
        cpus["floor"].append(cpu)
        for key, partners, extra in (("s2", False, ()), ("all", True, ()),
                                     ("s2_0", False, ("--limit", "0")),
                                     ("all_0", True, ("--limit", "0"))):  # fmt: skip
            fresh(store)
            warm(archives)
            seconds, cpu, peak = measure(ingest(sample, store, partners, *extra))
            runs[key].append(seconds)
            cpus[key].append(cpu)
            if key in rss:
                rss[key].append(peak)
        for key, partners in (("s2_1c", False), ("all_1c", True)) if one_core else ():
            fresh(store)
            warm(archives)
            seconds, cpu, _ = measure([*one_core, *ingest(sample, store, partners)])
            runs[key].append(seconds)
            cpus[key].append(cpu)
    load_after = os.getloadavg()
    m = {k: statistics.median(v) for k, v in runs.items()}
    c = {k: statistics.median(v) for k, v in cpus.items()}
    staging = max(m["all_0"] - m["s2_0"], 0.0)
    n = args.patches
    mib = 1 << 20
    print(f"""
reBEN v2 with Sentinel-1 and reference maps, N = {n:,}, median of {args.repeat}, warm
                                      seconds   patches/s
floor (zstd + tarfile, 3 archives)   {m["floor"]:8.2f}    {n / m["floor"]:8,.0f}
ingest, S2 only                      {m["s2"]:8.2f}    {n / m["s2"]:8,.0f}
ingest, S2 + S1 + maps               {m["all"]:8.2f}    {n / m["all"]:8,.0f}

ingest / floor                       {m["all"] / m["floor"]:8.2f}   (target <= 1.7)
ingest / floor, CPU time             {c["all"] / c["floor"]:8.2f}   (floor on one core, ingest on two)
CPU seconds: floor / S2 / S2 + S1 + maps {c["floor"]:.2f} / {c["s2"]:.2f} / {c["all"]:.2f}
{speedups(m)}
S1 + maps against S2 only            {m["all"] / m["s2"]:8.2f}x  (+{m["all"] - m["s2"]:.2f} s)
staging phase (read, decode, stage)  {staging:8.2f} s = {staging / m["all"]:.0%} of the run
peak RSS, S2 only / with partners    {max(rss["s2"]) / mib:8.0f} / {max(rss["all"]) / mib:.0f} MiB  (target <= 2048)
projected, all {FULL_V2:,} patches   {m["all"] / n * FULL_V2 / 3600:8.2f} h at this rate
load average before / after          {load_before[0]:.2f} / {load_after[0]:.2f} (1 min)
""")
    (args.out / f"bench_partners-{n}.json").write_text(json.dumps(
        {"patches": n, "runs": runs, "cpu": cpus, "rss": rss, "staging_seconds": staging,
         "load": [load_before, load_after]},
        indent=2))  # fmt: skip


if __name__ == "__main__":
    main()

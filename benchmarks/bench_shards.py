"""Choosing the shard length S: ingest speed against random single-sample read latency and memory.

For each S, ingests the same synthetic archive (``--patches``, default 4,000) as a whole process
(the lengths alternate, ``--repeat`` rounds, medians), then reads random single samples (all three band arrays, as a training loader does) from the
store with zarr-python and times them. Memory is the writer's batch buffers: (workers + spares)
x S x 160,000 bytes. Prints a table and writes ``bench-out/shards.json``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

import zarr

from ingest.config import default_workers
from ingest.store.buffers import SPARE_BUFFERS

RAW_PATCH_BYTES = 160_000
ARRAYS = ("bands_10m", "bands_20m", "bands_60m")


def ingest(archives: Path, store: Path, shard: int) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "ingest", "run", str(store), "--overwrite", "--no-progress",
         "--labels-archive", str(archives / "bigearthnet_v1_labels.tar.gz"),
         "--source-archive", str(archives / "bigearthnet_v1_source.tar.gz"),
         "--shard-size", str(shard)],
        check=True, capture_output=True,
    )  # fmt: skip
    return time.perf_counter() - start


def read_latency(store: Path, reads: int, seed: int) -> float:
    """Median seconds to read one random sample of all three band arrays (fresh process state)."""
    group = zarr.open_group(str(store), mode="r")
    arrays = [group[name] for name in ARRAYS]
    n = arrays[0].shape[0]
    rng = random.Random(seed)
    times = []
    for _ in range(reads):
        i = rng.randrange(n)
        start = time.perf_counter()
        for array in arrays:
            array[i]
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--patches", type=int, default=4000)
    parser.add_argument("--shards", type=int, nargs="+", default=[64, 128, 256, 512, 1024])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    args = parser.parse_args()
    from bench_ingest import build  # the same cached synthetic archives

    archives = build(args.out, args.patches).source.parent
    times: dict[int, list[float]] = {shard: [] for shard in args.shards}
    reads: dict[int, list[float]] = {shard: [] for shard in args.shards}
    for round_ in range(args.repeat):
        for shard in args.shards:
            store = args.out / f"shard-{shard}.zarr"
            times[shard].append(ingest(archives, store, shard))
            reads[shard].append(read_latency(store, 300, seed=shard + round_))
    rows = []
    for shard in args.shards:
        seconds, latency = statistics.median(times[shard]), statistics.median(reads[shard])
        buffers = (default_workers() + SPARE_BUFFERS) * shard * RAW_PATCH_BYTES
        rows.append({"shard": shard, "ingest_patches_per_second": args.patches / seconds,
                     "read_ms": latency * 1000, "buffer_mib": buffers / 2**20})  # fmt: skip
        print(f"S={shard:5d}: ingest {args.patches / seconds:6.0f} patches/s, random sample read "
              f"{latency * 1000:5.2f} ms, writer buffers {buffers / 2**20:5.0f} MiB", flush=True)  # fmt: skip
    (args.out / "shards.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()

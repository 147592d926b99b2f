"""``make bench`` (scale-out): how many dask workers one archive stream can feed, and what a
LocalCluster costs against the local process pool on this machine.

Measures on the same synthetic archives (``--patches``, default 4,000):

- reader: the ingest with a writer that drops every batch (gzip, tar, join, decode: what the client
  of a cluster run does), patches/s;
- one worker: compressing and writing whole shards (:func:`ingest.store.zarrstore.write_shard`) in one
  process, patches/s;
- the worker count at which the reader becomes the limit: reader rate / one worker's rate;
- ``ingest run`` as whole processes, alternating, median of ``--repeat``: the local pool
  (``--workers 1``), and ``--cluster local:1`` and ``local:2``.

Prints a table and writes ``bench-out/cluster.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import time
from pathlib import Path

import numpy as np
import zarr
from bench_ingest import build, ingest_cmd, measure

from ingest import pipeline
from ingest.config import RunConfig
from ingest.errors import StoreError
from ingest.nomenclature import BAND_GROUPS
from ingest.pipeline import s2_pass
from ingest.store import zarrstore as store
from ingest.store.buffers import Buffers
from ingest.store.staging import Staged
from ingest.store.writers import InlineWriter
from ingest.testing.samples import SampleArchives


class NullWriter(InlineWriter):
    """Takes batches and writes nothing: what is left is the reader's own work."""

    def submit(
        self, buffers: Buffers, start: int, record: store.ShardRecord, staged: Staged
    ) -> None:
        return None


def reader_rate(archives: SampleArchives, out: Path) -> float:
    """Patches/s of a whole run whose writer drops the batches (labels phase included)."""
    path = out / "reader.zarr"
    shutil.rmtree(path, ignore_errors=True)
    config = RunConfig(store=path, labels_archive=str(archives.labels),
                       source_archive=str(archives.source), workers=0)  # fmt: skip
    original = s2_pass.make_writer  # looked up there by the S2 pass
    s2_pass.make_writer = lambda config, note, pool=None: NullWriter(
        config.location, config.shard_size
    )
    start = time.perf_counter()
    try:
        pipeline.run(config)
    except StoreError:  # expected: with no shards written the store fails its final check
        pass
    finally:
        s2_pass.make_writer = original
    seconds = time.perf_counter() - start
    shutil.rmtree(path, ignore_errors=True)
    return len(archives.patches) / seconds


def worker_rate(reference: Path, out: Path, shards: int) -> float:
    """Patches/s of one process compressing and writing whole shards of real decoded pixels."""
    group = zarr.open_group(str(reference), mode="r")
    length = int(group["bands_10m"].shards[0])
    block = {g.array_name: np.asarray(group[g.array_name][:length]) for g in BAND_GROUPS}
    target = out / "worker.zarr"
    shutil.rmtree(target, ignore_errors=True)
    store.create(
        target,
        capacity=shards * length,
        shard=length,
        dataset=store.DATASET_V1,
        layout="mlhub",
        attrs={},
    )
    start = time.perf_counter()
    for shard in range(shards):
        record = store.ShardRecord(shard, tuple(f"p{shard}-{i}" for i in range(length)))
        store.write_shard(target, shard * length, block, record)
    seconds = time.perf_counter() - start
    shutil.rmtree(target, ignore_errors=True)
    return shards * length / seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--patches", type=int, default=4_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    args = parser.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    archives = build(out, args.patches)
    n = len(archives.patches)
    files = ["--labels-archive", str(archives.labels), "--source-archive", str(archives.source)]
    ways = {
        "pool (--workers 1)": ["--workers", "1"],
        "cluster local:1": ["--cluster", "local:1"],
        "cluster local:2": ["--cluster", "local:2"],
    }
    runs: dict[str, list[float]] = {name: [] for name in ways}
    target = out / "cluster.zarr"
    for round_ in range(args.repeat):
        for name, options in ways.items():
            seconds, _ = measure(ingest_cmd(target, *files, *options))
            runs[name].append(seconds)
            print(f"round {round_ + 1}: {name:20s} {seconds:7.2f} s ({n / seconds:,.0f} patches/s)",
                  flush=True)  # fmt: skip
    reader = statistics.median(reader_rate(archives, out) for _ in range(args.repeat))
    worker = statistics.median(
        worker_rate(target, out, shards=min(8, n // 256)) for _ in range(args.repeat)
    )
    report = {
        "patches": n,
        "repeat": args.repeat,
        "seconds": {k: statistics.median(v) for k, v in runs.items()},
        "all_seconds": runs,
        "patches_per_second": {k: n / statistics.median(v) for k, v in runs.items()},
        "reader_patches_per_second": reader,
        "one_worker_patches_per_second": worker,
        "workers_one_reader_feeds": reader / worker,
        "cores": os.cpu_count(),
    }
    (out / "cluster.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nscale-out, {n:,} patches, median of {args.repeat}, {os.cpu_count()} cores")
    for name, rate in report["patches_per_second"].items():
        print(f"  ingest, {name:22s} {rate:8,.0f} patches/s")
    print(f"  reader alone (no writes)        {reader:8,.0f} patches/s")
    print(f"  one worker (compress + write)   {worker:8,.0f} patches/s")
    print(f"  workers one reader can feed     {reader / worker:8.1f}")


if __name__ == "__main__":
    main()

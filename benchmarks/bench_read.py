"""Reading the store: ``open_store`` and ``ds.ben.batches`` against the obvious ways.

Builds a synthetic sample (``--patches``, default 4,000), ingests it with ``python -m ingest run``
(default shard length) and extracts the source archive to disk for the per-file way. Then, with
a warm page cache, alternating the ways and taking the median of ``--repeat`` (default 3):

- full-array mean of ``bands_10m`` (open + compute): ``open_store``, plain ``xr.open_zarr`` (one
  dask chunk per sample) and ``xr.open_zarr(chunks={"sample": S})`` (shard-aligned chunks read by
  zarr-python's codec pipeline: separates the chunking effect from the shard reader's);
- random single-sample latency (all three band arrays of one patch): ``open_store``, plain
  ``xr.open_zarr``, and the per-file way (rasterio, 12 GeoTIFFs);
- training throughput in samples/s: ``ds.ben.batches`` (shuffled, every sample once) on
  ``open_store`` and on ``xr.open_zarr(chunks=S)``, against the per-file way: shuffled patches, each
  read band by band with rasterio from the extracted GeoTIFFs and stacked into batches, as per-file
  loaders (torchgeo-style datasets behind a DataLoader) do, pixels only (no label JSON parsed, so
  the per-file figure is an upper bound), on ``--per-file-patches`` patches (default 1,000).

Prints a table and writes ``bench-out/read.json``. Ratios come from one run; these machines are
shared and absolute seconds drift between runs.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tarfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dask
import numpy as np
import rasterio
import xarray as xr
from bench_ingest import build

from ingest.nomenclature import BAND_GROUPS
from ingest.read.reading import open_store
from ingest.testing.samples import SampleArchives

ARRAYS = tuple(g.array_name for g in BAND_GROUPS)


def ingest(archives: SampleArchives, store: Path) -> None:
    print(f"ingesting into {store} ...", flush=True)
    subprocess.run(
        [sys.executable, "-m", "ingest", "run", str(store), "--overwrite", "--no-progress",
         "--labels-archive", str(archives.labels), "--source-archive", str(archives.source)],
        check=True, capture_output=True,
    )  # fmt: skip


def extract(archives: SampleArchives, target: Path) -> dict[str, Path]:
    """patch name -> its folder of band GeoTIFFs."""
    marker = target / "done"
    if not marker.is_file():
        print(f"extracting the source archive into {target} ...", flush=True)
        with tarfile.open(archives.source, "r:gz") as tar:
            tar.extractall(target, filter="data")
        marker.touch()
    root = target / "bigearthnet_v1_source"
    return {p: root / f"bigearthnet_v1_source_{p}" for p in archives.patches}


def timed(work: Callable[..., Any], *args: Any) -> float:
    start = time.perf_counter()
    work(*args)
    return time.perf_counter() - start


# --- the ways ------------------------------------------------------------------------------------


def mean_open_store(store: Path) -> float:
    return float(open_store(store)["bands_10m"].mean().compute())


def mean_plain(store: Path) -> float:
    return float(xr.open_zarr(store)["bands_10m"].mean().compute())


def mean_shard_chunks(store: Path, shard: int) -> float:
    return float(open_zarr_shard_chunks(store, shard)["bands_10m"].mean().compute())


def read_patch_files(folder: Path) -> dict[str, np.ndarray]:
    """One patch the per-file way: each band GeoTIFF opened and read with rasterio."""
    arrays = {}
    for group in BAND_GROUPS:
        layers = []
        for band in group.bands:
            with rasterio.open(folder / f"{band}.tif") as src:
                layers.append(src.read(1))
        arrays[group.array_name] = np.stack(layers)
    return arrays


def per_file_batches(folders: list[Path], batch_size: int) -> int:
    """Shuffled patches read file by file and collated into batches, as a per-file loader does."""
    seen = 0
    for start in range(0, len(folders), batch_size):
        patches = [read_patch_files(f) for f in folders[start : start + batch_size]]
        batch = {name: np.stack([p[name] for p in patches]) for name in ARRAYS}
        seen += len(batch[ARRAYS[0]])
    return seen


def store_batches(ds: xr.Dataset, batch_size: int, seed: int) -> int:
    return sum(len(b) for b in ds.ben.batches(batch_size, seed=seed))


def one_sample(ds: xr.Dataset, i: int) -> None:
    """The 12 bands of sample ``i``: the three band arrays in one dask compute."""
    dask.compute(*(ds[name].data[i] for name in ARRAYS))


def open_zarr_shard_chunks(store: Path, shard: int) -> xr.Dataset:
    with warnings.catch_warnings():
        # chunks= applies to every variable: it also cuts the 65,536-sample label and flag
        # chunks, and xarray warns that the dask chunks "separate the stored chunks" (the
        # README's snippet warns the same way on any store of more than S samples).
        warnings.simplefilter("ignore", UserWarning)
        return xr.open_zarr(store, chunks={"sample": shard})


# --- the run -------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--patches", type=int, default=4_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--random-reads", type=int, default=200)
    parser.add_argument("--per-file-patches", type=int, default=1_000)
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    args = parser.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    archives = build(out, args.patches, prefix="read-archives")
    store = out / "read.zarr"
    ingest(archives, store)
    folders = extract(archives, out / f"read-extracted-{args.patches}")
    n = len(archives.patches)
    shard = int(open_store(store)["bands_10m"].encoding["shards"][0])
    rng = random.Random(0)
    per_file = rng.sample(list(folders.values()), min(args.per_file_patches, n))
    picks = [rng.randrange(n) for _ in range(args.random_reads)]

    print("warming the page cache ...", flush=True)
    open_store(store)[list(ARRAYS)].compute()
    per_file_batches(per_file, args.batch_size)

    mean: dict[str, list[float]] = {"open_store": [], "open_zarr": [], "open_zarr_shard_chunks": []}
    throughput: dict[str, list[float]] = {
        "batches_open_store": [],
        "batches_open_zarr_shard_chunks": [],
        "per_file_rasterio": [],
    }
    latency: dict[str, list[float]] = {"open_store": [], "open_zarr": [], "per_file_rasterio": []}
    for round_ in range(args.repeat):
        mean["open_zarr"].append(timed(mean_plain, store))
        mean["open_store"].append(timed(mean_open_store, store))
        mean["open_zarr_shard_chunks"].append(timed(mean_shard_chunks, store, shard))
        for key, ds in (
            ("batches_open_store", open_store(store)),
            ("batches_open_zarr_shard_chunks", open_zarr_shard_chunks(store, shard)),
        ):
            seconds = timed(store_batches, ds, args.batch_size, round_)
            throughput[key].append(n / seconds)
        seconds = timed(per_file_batches, per_file, args.batch_size)
        throughput["per_file_rasterio"].append(len(per_file) / seconds)
        opened = {"open_store": open_store(store), "open_zarr": xr.open_zarr(store)}
        for key, ds in opened.items():
            latency[key].extend(timed(one_sample, ds, i) for i in picks)
        files = list(folders.values())
        latency["per_file_rasterio"].extend(timed(read_patch_files, files[i]) for i in picks)
        print(
            f"round {round_ + 1}: mean {', '.join(f'{k} {v[-1]:.2f} s' for k, v in mean.items())}; "
            f"samples/s {', '.join(f'{k} {v[-1]:,.0f}' for k, v in throughput.items())}",
            flush=True,
        )
    report = summarise(n, shard, args, mean, throughput, latency)
    (out / "read.json").write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)


def summarise(
    n: int, shard: int, args: argparse.Namespace, mean: dict[str, list[float]],
    throughput: dict[str, list[float]], latency: dict[str, list[float]],
) -> dict[str, Any]:  # fmt: skip
    med_mean = {k: statistics.median(v) for k, v in mean.items()}
    med_rate = {k: statistics.median(v) for k, v in throughput.items()}
    lat = {
        k: {"median_ms": 1e3 * statistics.median(v), "p95_ms": 1e3 * float(np.percentile(v, 95))}
        for k, v in latency.items()
    }
    return {
        "patches": n,
        "shard": shard,
        "repeat": args.repeat,
        "batch_size": args.batch_size,
        "per_file_patches": min(args.per_file_patches, n),
        "random_reads": args.random_reads * args.repeat,
        "mean_seconds": med_mean,
        "all_mean_seconds": mean,
        "mean_open_zarr_over_open_store": med_mean["open_zarr"] / med_mean["open_store"],
        "mean_open_zarr_over_shard_chunks": med_mean["open_zarr"]
        / med_mean["open_zarr_shard_chunks"],
        "samples_per_second": med_rate,
        "all_samples_per_second": throughput,
        "batches_over_per_file": med_rate["batches_open_store"] / med_rate["per_file_rasterio"],
        "single_sample_latency": lat,
    }


def print_table(r: dict[str, Any]) -> None:
    m, rate, lat = r["mean_seconds"], r["samples_per_second"], r["single_sample_latency"]
    print()
    print(
        f"N = {r['patches']:,} synthetic patches, shards of {r['shard']}, median of {r['repeat']}"
    )
    print()
    print(f"{'full-array mean of bands_10m (open + compute)':52s}{'seconds':>10s}")
    print(f"{'  ingest.open_store':52s}{m['open_store']:10.2f}")
    print(f"{'  xr.open_zarr (one dask chunk per sample)':52s}{m['open_zarr']:10.2f}")
    print(f"{'  xr.open_zarr(chunks={sample: S}) (zarr codecs)':52s}{m['open_zarr_shard_chunks']:10.2f}")  # fmt: skip
    print(f"{'  ratio open_zarr / open_store':52s}{r['mean_open_zarr_over_open_store']:9.1f}x")
    print()
    print(f"{'random single-sample read (12 bands)':52s}{'median ms':>10s}{'p95 ms':>10s}")
    for key, label in (("open_store", "ingest.open_store"), ("open_zarr", "xr.open_zarr"),
                       ("per_file_rasterio", "per-file rasterio (12 GeoTIFFs)")):  # fmt: skip
        print(f"{'  ' + label:52s}{lat[key]['median_ms']:10.2f}{lat[key]['p95_ms']:10.2f}")
    print()
    print(f"{'training throughput, batches of ' + str(r['batch_size']):52s}{'samples/s':>10s}")
    print(f"{'  ds.ben.batches on open_store':52s}{rate['batches_open_store']:10,.0f}")
    print(f"{'  ds.ben.batches on xr.open_zarr(chunks=S)':52s}{rate['batches_open_zarr_shard_chunks']:10,.0f}")  # fmt: skip
    label = f"  per-file rasterio ({r['per_file_patches']:,} patches)"
    print(f"{label:52s}{rate['per_file_rasterio']:10,.0f}")
    print(f"{'  ratio batches / per-file':52s}{r['batches_over_per_file']:9.1f}x   (target >= 10x)")


if __name__ == "__main__":
    warnings.simplefilter("ignore", PendingDeprecationWarning)  # rioxarray 0.19 with affine 3
    main()

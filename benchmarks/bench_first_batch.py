"""From the archive to the first training batch, on ``--patches`` reBEN v2 patches (default 10,000).

Uses ``bench_v2``'s synthetic ``BigEarthNet-S2.tar.zst`` (the two official metadata parquets, full)
and measures three routes, each command a fresh process, wall seconds and peak disk:

- ingest: ``ingest run`` (archive streamed, no extraction) into a store, then the first batch of
  256 model-ready samples (ConfigILM's S2 bands, bilinear, normalised) from
  ``SampleDataset(...).batches(256)``; disk: the store;
- files: ``tar -I zstd -xf`` (the archive extracted: one folder per patch, 12 GeoTIFFs each),
  then the first batch read per file as torchgeo does (rasterio ``read(out_shape=(120, 120),
  resampling=bilinear)`` of every band of 256 patches); disk: the extracted tree;
- LMDB: the same extraction, then an LMDB of safetensors encoded from every patch (the
  BigEarthNet authors' route: rico-hdl writes this format, ConfigILM reads it; here encoded with
  rasterio + ``safetensors.numpy.save``), then the first batch through ConfigILM's reader path
  (``stack_and_interpolate``, normalised); disk: the extracted tree plus the LMDB, both on disk at
  the end of the encoding.

The first batch is 256 patches of one seeded permutation in every route. Prints a table and writes
``bench-out/first_batch.json``; ``--repeat`` rounds (default 1), median.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ORDER = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"]
BATCH = 256


def patch_folders(root: Path) -> dict[str, Path]:
    return {p.name: p for p in root.glob("BigEarthNet-S2/*/*") if p.is_dir()}


def way_store_batch(args: argparse.Namespace) -> None:
    from ingest import SampleDataset

    data = SampleDataset(args.store, convention="configilm", bands="S2", interpolation="bilinear",
                         normalize=True)  # fmt: skip
    batch = next(iter(data.batches(BATCH, seed=args.seed)))
    print(json.dumps({"shape": list(batch["image"].shape)}))


def way_files_batch(args: argparse.Namespace) -> None:
    import rasterio
    from rasterio.enums import Resampling

    folders = patch_folders(args.dir)
    order = sorted(folders)
    picks = [order[i] for i in np.random.default_rng(args.seed).permutation(len(order))[:BATCH]]
    images = []
    for patch in picks:
        bands = []
        for band in ORDER:
            with rasterio.open(folders[patch] / f"{patch}_{band}.tif") as src:
                bands.append(src.read(1, out_shape=(120, 120), out_dtype="int32",
                                      resampling=Resampling.bilinear))  # fmt: skip
        images.append(np.stack(bands).astype(np.float32))
    print(json.dumps({"shape": list(np.stack(images).shape)}))


def way_lmdb_encode(args: argparse.Namespace) -> None:
    import lmdb
    import rasterio
    from safetensors.numpy import save

    folders = patch_folders(args.dir)
    env = lmdb.open(str(args.lmdb), map_size=1 << 36, subdir=True)
    names = sorted(folders)
    for a in range(0, len(names), 512):
        with env.begin(write=True) as txn:
            for patch in names[a : a + 512]:
                tensors = {}
                for band in ORDER:
                    with rasterio.open(folders[patch] / f"{patch}_{band}.tif") as src:
                        tensors[band] = src.read(1)
                txn.put(patch.encode(), save(tensors))
    env.sync()
    env.close()
    print(json.dumps({"patches": len(names)}))


def way_lmdb_batch(args: argparse.Namespace) -> None:
    import lmdb
    import torch
    from configilm.extra import BENv2_utils as cil
    from safetensors.numpy import load

    env = lmdb.open(str(args.lmdb), readonly=True, lock=False, subdir=True)
    with env.begin() as txn:
        names = sorted(k.decode() for k in txn.cursor().iternext(values=False))
        picks = [names[i] for i in np.random.default_rng(args.seed).permutation(len(names))[:BATCH]]
        mean, std = cil.band_combi_to_mean_std(ORDER, "120_bilinear")
        m = torch.as_tensor(mean, dtype=torch.float32)[:, None, None]
        s = torch.as_tensor(std, dtype=torch.float32)[:, None, None]
        images = []
        for patch in picks:
            bands = load(txn.get(patch.encode()))
            image = cil.stack_and_interpolate(bands, ORDER, img_size=120, upsample_mode="bilinear")
            images.append((image - m) / s)
    print(json.dumps({"shape": list(torch.stack(images).shape)}))


WAYS = {"store_batch": way_store_batch, "files_batch": way_files_batch,
        "lmdb_encode": way_lmdb_encode, "lmdb_batch": way_lmdb_batch}  # fmt: skip


def disk_bytes(*paths: Path) -> int:
    total = 0
    for path in paths:
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        total += sum(p.stat().st_blocks * 512 for p in files)
    return total


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stderr}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--patches", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    parser.add_argument("--way", help=argparse.SUPPRESS)
    parser.add_argument("--store", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--lmdb", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    if args.way:
        WAYS[args.way](args)
        return

    from bench_ingest import warm_tables_cache
    from bench_v2 import build

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    sample = build(out, args.patches)
    warm_tables_cache(out)
    me = [sys.executable, str(Path(__file__).resolve()), "--seed", str(args.seed)]
    store, tree, lmdb_path = out / "first.zarr", out / "first-extracted", out / "first.lmdb"
    archive = sample.s2[0]
    results: dict[str, list[dict[str, float]]] = {"ingest": [], "files": [], "lmdb": []}
    for round_ in range(args.repeat):
        for path in (store, tree, lmdb_path):
            shutil.rmtree(path, ignore_errors=True)
        run = timed([sys.executable, "-m", "ingest", "run", str(store), "--no-progress",
                     "--source-archive", str(archive),
                     *(a for p in sample.metadata for a in ("--metadata", str(p)))])  # fmt: skip
        batch = timed([*me, "--way", "store_batch", "--store", str(store)])
        results["ingest"].append({"prepare": run, "batch": batch, "disk": disk_bytes(store)})
        shutil.rmtree(store)
        tree.mkdir()
        extract = timed(["tar", "-I", "zstd", "-xf", str(archive), "-C", str(tree)])
        batch = timed([*me, "--way", "files_batch", "--dir", str(tree)])
        results["files"].append({"prepare": extract, "batch": batch, "disk": disk_bytes(tree)})
        encode = timed([*me, "--way", "lmdb_encode", "--dir", str(tree), "--lmdb", str(lmdb_path)])
        disk = disk_bytes(tree, lmdb_path)
        batch = timed([*me, "--way", "lmdb_batch", "--lmdb", str(lmdb_path)])
        results["lmdb"].append({"prepare": extract + encode, "batch": batch, "disk": disk,
                                "extract": extract, "encode": encode})  # fmt: skip
        for name, rows in results.items():
            r = rows[-1]
            print(f"round {round_ + 1} {name:7s} prepare {r['prepare']:7.1f} s  batch {r['batch']:6.1f} s"
                  f"  disk {r['disk'] / 1e9:6.2f} GB", flush=True)  # fmt: skip
        for path in (store, tree, lmdb_path):
            shutil.rmtree(path, ignore_errors=True)
    med = {name: {k: statistics.median(r[k] for r in rows) for k in ("prepare", "batch", "disk")}
           for name, rows in results.items()}  # fmt: skip
    report: dict[str, Any] = {
        "patches": sample.patches,
        "repeat": args.repeat,
        "median": med,
        "all": results,
    }
    (out / "first_batch.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"\narchive to first training batch (256 samples), {sample.patches:,} reBEN v2 patches, "
          f"median of {args.repeat}")  # fmt: skip
    print(f"  {'':44s}{'prepare s':>10s}{'batch s':>9s}{'total s':>9s}{'peak disk':>11s}")
    labels = {"ingest": "ingest run + SampleDataset.batches",
              "files": "tar -x + per-file reads (torchgeo)",
              "lmdb": "tar -x + LMDB encoding + ConfigILM reader"}  # fmt: skip
    for name, label in labels.items():
        m = med[name]
        print(f"  {label:44s}{m['prepare']:10.1f}{m['batch']:9.1f}{m['prepare'] + m['batch']:9.1f}"
              f"{m['disk'] / 1e9:9.2f} GB")  # fmt: skip
    base = med["ingest"]["prepare"] + med["ingest"]["batch"]
    for name in ("files", "lmdb"):
        total = med[name]["prepare"] + med[name]["batch"]
        print(f"  {labels[name]}: {total / base:5.2f}x the time, "
              f"{med[name]['disk'] / med['ingest']['disk']:5.2f}x the disk of the ingest route")  # fmt: skip


if __name__ == "__main__":
    main()

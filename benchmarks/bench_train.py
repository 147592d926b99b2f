"""Training-speed reads: ``ingest.SampleDataset`` against the authors' LMDB of safetensors.

Builds (or reuses) the synthetic sample of ``bench_read`` (``--patches``, default 4,000) and its
store written by ``python -m ingest run``, then an LMDB in the BigEarthNet authors' format
(rico-hdl / ConfigILM: one key per patch name, the value the 12 bands as uncompressed safetensors,
one tensor per band at its native resolution) holding the same values, read from the store.
Needs the ``bench`` extra (lmdb, safetensors) and torch (the ``test`` extra).

Every way runs in a fresh process, the ways alternate, median of ``--repeat`` (default 3):

- random access: ``--random`` (default 2,000) uniformly drawn samples, 12 bands + labels (the LMDB
  way: ``txn.get`` + ``safetensors.numpy.load`` + the labels row from an in-memory table, as
  ConfigILM reads labels from its metadata table); RGB only (B04, B03, B02; the LMDB value holds
  all bands, so that way loads the value and keeps 3);
- shuffled epoch over all samples in batches of 64: ``SampleDataset.batches`` against shuffled
  LMDB keys collated into the same stacked arrays (per sample the bands stacked by group, then
  the samples stacked, as a map-style dataset and ``default_collate`` do) and, for reference,
  a leaner LMDB collate copying each band straight into preallocated batch arrays; with a ``DataLoader`` and 2 workers
  (``SampleDataset.batches`` as an iterable, and the map-style ``SampleDataset`` with
  ``shuffle=True``) — those report samples/s;
- random access from an S3-compatible store (``ingest.testing.s3``, moto on loopback; a copy of
  the store): samples/s and store requests per sample;
- warm: each way's process first reads every file of what it reads (this machine's kernel evicts
  files idle for about a minute); cold: ``posix_fadvise(DONTNEED)`` on those files first (pages
  dropped for these files only), random access only.

``cpu ms`` is the CPU time per sample of the way's timed loop (its process, all threads; the
DataLoader ways include their workers once joined): on shared cores a steadier measure than the
rate, which depends on what else runs.

Values: after its timed loop each way re-reads what it read (untimed) and returns a digest of
every sample's arrays, stacked the store's way; the run stops unless all ways agree. Prints a table
with the ratios and writes ``bench-out/train.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
GROUPS = {
    "bands_10m": ("B02", "B03", "B04", "B08"),
    "bands_20m": ("B05", "B06", "B07", "B8A", "B11", "B12"),
    "bands_60m": ("B01", "B09"),
}
RGB = ("B04", "B03", "B02")


# --- the ways (each runs in its own process: `bench_train.py --way NAME ...`) ---------------------


def warm(paths: list[Path], cold: bool) -> None:
    """Read every file (warm) or drop its cached pages (cold)."""
    for root in paths:
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        for path in files:
            fd = os.open(path, os.O_RDONLY)
            try:
                if cold:
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                else:
                    while os.read(fd, 1 << 22):
                        pass
            finally:
                os.close(fd)


def cpu_seconds() -> float:
    """CPU time of this process (all its threads) and of its waited-for children (the
    DataLoader's workers, once joined)."""
    me, children = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def digest(samples: list[tuple[int, dict[str, np.ndarray]]]) -> str:
    """Order-independent digest of (position, arrays) pairs."""
    parts = []
    for position, arrays in samples:
        h = hashlib.blake2b(str(position).encode(), digest_size=16)
        for name in sorted(arrays):
            h.update(name.encode())
            h.update(np.ascontiguousarray(arrays[name]).tobytes())
        parts.append(h.hexdigest())
    return hashlib.blake2b("".join(sorted(parts)).encode(), digest_size=16).hexdigest()


class Lmdb:
    def __init__(self, path: Path, store: Path) -> None:
        import lmdb
        import zarr

        self.env = lmdb.open(str(path), readonly=True, lock=False, readahead=False, subdir=True)
        group = zarr.open_group(store, mode="r")
        self.keys = [str(p).encode() for p in np.asarray(group["patch_id"][...]).tolist()]
        self.labels = np.asarray(group["labels"][...])

    def load(self, txn: Any, i: int) -> dict[str, np.ndarray]:
        from safetensors.numpy import load

        return load(txn.get(self.keys[i]))

    @staticmethod
    def stacked(
        bands: dict[str, np.ndarray], only: tuple[str, ...] | None = None
    ) -> dict[str, np.ndarray]:
        if only is not None:
            return {"bands_10m": np.stack([bands[b] for b in only])}
        return {name: np.stack([bands[b] for b in names]) for name, names in GROUPS.items()}


def way_lmdb_random(args: argparse.Namespace, picks: list[int], rgb: bool) -> dict[str, Any]:
    db = Lmdb(args.lmdb, args.store)
    warm([args.lmdb], args.cold)
    with db.env.begin() as txn:
        start = time.perf_counter()
        cpu0 = cpu_seconds()
        for i in picks:
            bands = db.load(txn, i)
            if rgb:
                bands = {b: bands[b] for b in RGB}
            db.labels[i]
        seconds = time.perf_counter() - start
        cpu = cpu_seconds() - cpu0
        check = [(i, {**db.stacked(db.load(txn, i), RGB if rgb else None), "labels": db.labels[i]})
                 for i in picks]  # fmt: skip
    return {"seconds": seconds, "cpu": cpu, "count": len(picks), "digest": digest(check)}


def way_store_random(args: argparse.Namespace, picks: list[int], rgb: bool) -> dict[str, Any]:
    from ingest import SampleDataset

    data = SampleDataset(args.store, bands=list(RGB) if rgb else None)
    warm([args.store], args.cold)
    start = time.perf_counter()
    cpu0 = cpu_seconds()
    for i in picks:
        data[i]
    seconds = time.perf_counter() - start
    cpu = cpu_seconds() - cpu0
    check = [(i, {k: v for k, v in data[i].items() if k.startswith("bands") or k == "labels"}) for i in picks]  # fmt: skip
    return {"seconds": seconds, "cpu": cpu, "count": len(picks), "digest": digest(check)}


def way_s3_random(args: argparse.Namespace, picks: list[int]) -> dict[str, Any]:
    from ingest import SampleDataset

    data = SampleDataset(args.s3_url, storage_options=json.loads(args.s3_options))
    data[picks[0]]  # metadata and the small tables are read once per process
    before = data.store.requests
    start = time.perf_counter()
    cpu0 = cpu_seconds()
    for i in picks:
        data[i]
    seconds = time.perf_counter() - start
    cpu = cpu_seconds() - cpu0
    requests = data.store.requests - before
    check = [(i, {k: v for k, v in data[i].items() if k.startswith("bands") or k == "labels"}) for i in picks]  # fmt: skip
    return {"seconds": seconds, "cpu": cpu, "count": len(picks), "digest": digest(check),
            "requests_per_sample": requests / len(picks)}  # fmt: skip


def way_lmdb_epoch(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    db = Lmdb(args.lmdb, args.store)
    warm([args.lmdb], False)
    order = np.random.default_rng(seed).permutation(len(db.keys))
    seen = 0
    with db.env.begin() as txn:
        start = time.perf_counter()
        cpu0 = cpu_seconds()
        for a in range(0, len(order), args.batch_size):
            rows = order[a : a + args.batch_size]
            loaded = [db.load(txn, int(i)) for i in rows]
            batch = {name: np.stack([np.stack([p[b] for b in names]) for p in loaded])
                     for name, names in GROUPS.items()}  # fmt: skip
            batch["labels"] = db.labels[rows]
            seen += len(rows)
        seconds = time.perf_counter() - start
        cpu = cpu_seconds() - cpu0
        check = [
            (int(i), {**db.stacked(db.load(txn, int(i))), "labels": db.labels[i]}) for i in order
        ]
    return {"seconds": seconds, "cpu": cpu, "count": seen, "digest": digest(check)}


def way_lmdb_epoch_direct(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    """The LMDB epoch with a leaner collate: each band copied straight into preallocated batch
    arrays (one copy per value instead of two stacks); for reference."""
    from safetensors.numpy import load

    db = Lmdb(args.lmdb, args.store)
    warm([args.lmdb], False)
    order = np.random.default_rng(seed).permutation(len(db.keys))
    shapes = {"bands_10m": (4, 120, 120), "bands_20m": (6, 60, 60), "bands_60m": (2, 20, 20)}
    seen = 0
    check = []
    with db.env.begin() as txn:
        for timed in (True, False):
            start = time.perf_counter()
            cpu0 = cpu_seconds()
            for a in range(0, len(order), args.batch_size):
                rows = order[a : a + args.batch_size]
                batch = {n: np.empty((len(rows), *s), np.uint16) for n, s in shapes.items()}
                for k, i in enumerate(rows.tolist()):
                    bands = load(txn.get(db.keys[i]))
                    for name, names in GROUPS.items():
                        into = batch[name][k]
                        for j, b in enumerate(names):
                            into[j] = bands[b]
                batch["labels"] = db.labels[rows]
                if timed:
                    seen += len(rows)
                else:
                    check.extend((int(i), {n: batch[n][k] for n in (*GROUPS, "labels")})
                                 for k, i in enumerate(rows))  # fmt: skip
            if timed:
                seconds = time.perf_counter() - start
                cpu = cpu_seconds() - cpu0
    return {"seconds": seconds, "cpu": cpu, "count": seen, "digest": digest(check)}


def way_store_epoch(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    from ingest import SampleDataset

    data = SampleDataset(args.store)
    warm([args.store], False)
    seen = 0
    start = time.perf_counter()
    cpu0 = cpu_seconds()
    for batch in data.batches(args.batch_size, seed=seed):
        seen += len(batch["index"])
    seconds = time.perf_counter() - start
    cpu = cpu_seconds() - cpu0
    check = []
    for batch in data.batches(args.batch_size, seed=seed):
        for k, i in enumerate(batch["index"].tolist()):
            check.append((i, {n: batch[n][k] for n in (*GROUPS, "labels")}))
    return {"seconds": seconds, "cpu": cpu, "count": seen, "digest": digest(check)}


def way_loader(args: argparse.Namespace, seed: int, kind: str) -> dict[str, Any]:
    """A torch DataLoader with 2 worker processes (fork): the epoch as an iterable (kind
    "epoch"), the map-style dataset with shuffle=True (kind "map") or a map-style LMDB dataset
    (kind "lmdb"); samples/s, including the workers' start-up."""
    import torch
    from torch.utils.data import DataLoader

    from ingest import SampleDataset

    torch.manual_seed(seed)
    if kind == "lmdb":
        warm([args.lmdb], False)
        loader = DataLoader(LmdbDataset(args.lmdb, args.store), batch_size=args.batch_size,
                            shuffle=True, num_workers=2, multiprocessing_context="fork")  # fmt: skip
    else:
        data = SampleDataset(args.store)
        warm([args.store], False)
        if kind == "epoch":
            loader = DataLoader(data.batches(args.batch_size, seed=seed), batch_size=None,
                                num_workers=2, multiprocessing_context="fork")  # fmt: skip
        else:
            loader = DataLoader(data, batch_size=args.batch_size, shuffle=True, num_workers=2,
                                multiprocessing_context="fork")  # fmt: skip
    seen = 0
    start = time.perf_counter()
    cpu0 = cpu_seconds()
    for batch in loader:
        seen += len(batch["labels"])
    seconds = time.perf_counter() - start
    cpu = cpu_seconds() - cpu0
    return {"seconds": seconds, "cpu": cpu, "count": seen, "digest": ""}


class LmdbDataset:
    """The authors' LMDB as a map-style dataset (for the DataLoader comparison)."""

    def __init__(self, path: Path, store: Path) -> None:
        self.path, self.store = path, store
        self.db: Lmdb | None = None
        import zarr

        self.n = int(zarr.open_array(store, path="patch_id", mode="r").shape[0])

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        if self.db is None:
            self.db = Lmdb(self.path, self.store)
        with self.db.env.begin() as txn:
            bands = self.db.load(txn, i)
        return {**self.db.stacked(bands), "labels": self.db.labels[i]}


def run_way(args: argparse.Namespace) -> None:
    picks = [int(i) for i in np.random.default_rng(args.seed).integers(0, args.n, args.random)]
    way = args.way
    if way in ("lmdb_random", "lmdb_rgb"):
        result = way_lmdb_random(args, picks, rgb=way == "lmdb_rgb")
    elif way in ("store_random", "store_rgb"):
        result = way_store_random(args, picks, rgb=way == "store_rgb")
    elif way == "s3_random":
        result = way_s3_random(args, picks[: args.s3_random])
    elif way == "lmdb_epoch":
        result = way_lmdb_epoch(args, args.seed)
    elif way == "lmdb_epoch_direct":
        result = way_lmdb_epoch_direct(args, args.seed)
    elif way == "store_epoch":
        result = way_store_epoch(args, args.seed)
    else:
        result = way_loader(args, args.seed, way.removeprefix("loader_"))
    print(json.dumps(result))


# --- building and orchestrating -------------------------------------------------------------------


def build_lmdb(store: Path, target: Path) -> None:
    """The authors' format, from the store's values (read with zarr-python)."""
    import lmdb
    import zarr
    from safetensors.numpy import save

    marker = target / "done"
    if marker.is_file() and marker.stat().st_mtime >= (store / "zarr.json").stat().st_mtime:
        return
    shutil.rmtree(target, ignore_errors=True)
    print(f"building the LMDB {target} ...", flush=True)
    group = zarr.open_group(store, mode="r")
    ids = np.asarray(group["patch_id"][...]).tolist()
    arrays = {name: group[name] for name in GROUPS}
    env = lmdb.open(str(target), map_size=1 << 34, subdir=True)
    step = 512
    for a in range(0, len(ids), step):
        blocks = {name: np.asarray(array[a : a + step]) for name, array in arrays.items()}
        with env.begin(write=True) as txn:
            for k, patch in enumerate(ids[a : a + step]):
                tensors = {b: np.ascontiguousarray(blocks[name][k][j])
                           for name, names in GROUPS.items() for j, b in enumerate(names)}  # fmt: skip
                txn.put(str(patch).encode(), save(tensors))
    env.sync()
    env.close()
    marker.touch()


def prepare(out: Path, patches: int) -> tuple[int, Path, Path]:
    """The synthetic sample of ``bench_read``, its store and the LMDB made from it (each built
    once, kept in ``out``): the patch count, the store, the LMDB."""
    from bench_ingest import build
    from bench_read import ingest

    out.mkdir(parents=True, exist_ok=True)
    archives = build(out, patches, prefix="read-archives")
    store = out / "train.zarr"
    if not (store / "zarr.json").is_file():
        ingest(archives, store)
    lmdb_path = out / "train.lmdb"
    build_lmdb(store, lmdb_path)
    return len(archives.patches), store, lmdb_path


def disk_bytes(path: Path) -> int:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_blocks * 512 for p in files)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--patches", type=int, default=4_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--random", type=int, default=2_000)
    parser.add_argument("--s3-random", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--ways", default="", help="comma-separated subset of the ways (default all)"
    )
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    # internal: one way in this process
    parser.add_argument("--way", help=argparse.SUPPRESS)
    parser.add_argument("--store", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--lmdb", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--cold", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--s3-url", help=argparse.SUPPRESS)
    parser.add_argument("--s3-options", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.way:
        run_way(args)
        return

    sys.path.insert(0, str(HERE))
    from ingest.testing.s3 import S3Server

    out: Path = args.out
    n, store, lmdb_path = prepare(out, args.patches)
    raw = n * 2 * (4 * 120 * 120 + 6 * 60 * 60 + 2 * 20 * 20)  # uint16 pixels of the 12 bands

    ways = ["lmdb_random", "store_random", "lmdb_rgb", "store_rgb", "lmdb_random_cold",
            "store_random_cold", "lmdb_epoch", "lmdb_epoch_direct", "store_epoch", "loader_epoch", "loader_map",
            "loader_lmdb", "s3_random"]  # fmt: skip
    if args.ways:
        ways = [w for w in ways if w in args.ways.split(",")]
    results: dict[str, list[dict[str, Any]]] = {w: [] for w in ways}
    with S3Server() as s3:
        location = s3.location("train.zarr")
        if "s3_random" in ways:
            import fsspec

            fs = fsspec.filesystem("s3", **s3.storage_options)
            fs.put(str(store), location.url.removeprefix("s3://"), recursive=True)
        for round_ in range(args.repeat):
            for way in ways:
                command = [sys.executable, str(Path(__file__).resolve()), "--way", way.removesuffix("_cold"),
                           "--store", str(store), "--lmdb", str(lmdb_path), "--n", str(n),
                           "--random", str(args.random), "--s3-random", str(args.s3_random),
                           "--batch-size", str(args.batch_size), "--seed", str(args.seed),
                           "--s3-url", location.url, "--s3-options", json.dumps(s3.storage_options)]  # fmt: skip
                if way.endswith("_cold"):
                    command.append("--cold")
                done = subprocess.run(command, capture_output=True, text=True)
                if done.returncode:
                    sys.exit(f"{way} failed:\n{done.stderr}")
                result = json.loads(done.stdout.strip().splitlines()[-1])
                results[way].append(result)
                print(
                    f"round {round_ + 1} {way:18s} {result['count'] / result['seconds']:10,.0f} samples/s",
                    flush=True,
                )
    check_values(results)
    report = summarise(n, raw, disk_bytes(store), disk_bytes(lmdb_path), args, results)
    (out / "train.json").write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)


def check_values(results: dict[str, list[dict[str, Any]]]) -> None:
    """Every way that reads the same samples must have read the same values."""
    groups = [("lmdb_random", "store_random", "lmdb_random_cold", "store_random_cold"),
              ("lmdb_rgb", "store_rgb"), ("lmdb_epoch", "lmdb_epoch_direct", "store_epoch")]  # fmt: skip
    for group in groups:
        digests = {w: {r["digest"] for r in results[w]} for w in group if results.get(w)}
        if len({d for v in digests.values() for d in v}) > 1:
            sys.exit(f"the ways read different values: {digests}")
    s3 = {r["digest"] for r in results.get("s3_random", [])}
    if len(s3) > 1:
        sys.exit("the S3 way read different values from one round to the next")


def summarise(n: int, raw: int, store_bytes: int, lmdb_bytes: int, args: argparse.Namespace,
              results: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:  # fmt: skip
    rate = {
        w: statistics.median(r["count"] / r["seconds"] for r in rs)
        for w, rs in results.items()
        if rs
    }
    cpu = {
        w: statistics.median(r["cpu"] / r["count"] for r in rs)
        for w, rs in results.items()
        if rs and "cpu" in rs[0]
    }
    report: dict[str, Any] = {
        "patches": n, "repeat": args.repeat, "random": args.random, "batch_size": args.batch_size,
        "samples_per_second": rate,
        "cpu_seconds_per_sample": cpu,
        "all": results,
        "bytes": {"raw_pixels": raw, "store": store_bytes, "lmdb": lmdb_bytes},
    }  # fmt: skip
    if results.get("s3_random"):
        report["s3_requests_per_sample"] = statistics.median(
            r["requests_per_sample"] for r in results["s3_random"]
        )
    return report


def print_table(r: dict[str, Any]) -> None:
    rate, cpu = r["samples_per_second"], r["cpu_seconds_per_sample"]

    def row(label: str, way: str, against: str | None = None, note: str = "") -> None:
        if way not in rate:
            return
        ms = 1e3 / rate[way]
        ratio = f"{rate[way] / rate[against]:6.2f}x" if against and against in rate else " " * 7
        used = f"{1e3 * cpu[way]:8.3f}" if way in cpu else " " * 8
        print(f"  {label:50s}{rate[way]:10,.0f}{ms:10.3f}{used}   {ratio}  {note}")

    print()
    print(
        f"N = {r['patches']:,} synthetic patches, median of {r['repeat']}, each way a fresh process, warm unless cold"
    )
    print(f"{'':52s}{'samples/s':>10s}{'ms/sample':>10s}{'cpu ms':>8s}   vs LMDB")
    print(f"random access, {r['random']:,} samples, 12 bands + labels")
    row("LMDB txn.get + safetensors load", "lmdb_random")
    row("SampleDataset[i]", "store_random", "lmdb_random", "(target >= 5,000/s and >= 0.30x)")
    row("LMDB, cold", "lmdb_random_cold")
    row("SampleDataset[i], cold", "store_random_cold", "lmdb_random_cold")
    print("random access, RGB only (B04, B03, B02)")
    row("LMDB (loads the value, keeps 3 bands)", "lmdb_rgb")
    row("SampleDataset(bands=RGB)[i]", "store_rgb", "lmdb_rgb")
    print(f"shuffled epoch over all samples, batches of {r['batch_size']}, one process")
    row("LMDB, shuffled keys, stacked batches", "lmdb_epoch")
    row(
        "LMDB, bands copied straight into batch arrays",
        "lmdb_epoch_direct",
        "lmdb_epoch",
        "(a leaner collate, for reference)",
    )
    row("SampleDataset.batches(shuffle=True)", "store_epoch", "lmdb_epoch", "(target >= 1.00x)")
    if "store_epoch" in rate and "lmdb_epoch_direct" in rate:
        ratio = rate["store_epoch"] / rate["lmdb_epoch_direct"]
        print(f"  {'  the same against the leaner LMDB collate':50s}{'':28s}   {ratio:6.2f}x")
    print("shuffled epoch, torch DataLoader, 2 worker processes (fork), incl. start-up")
    row("LMDB map-style, shuffle=True", "loader_lmdb")
    row("DataLoader(SampleDataset.batches(...))", "loader_epoch", "loader_lmdb")
    row("DataLoader(SampleDataset, shuffle=True)", "loader_map", "loader_lmdb")
    if "s3_random" in rate:
        print("random access from S3 (moto on loopback), 12 bands + labels")
        row(
            f"SampleDataset(s3://...)[i]  ({r['s3_requests_per_sample']:.2f} requests/sample)",
            "s3_random",
        )
    b = r["bytes"]
    print(
        f"bytes on disk / raw pixel bytes: store {b['store'] / b['raw_pixels']:.3f}, LMDB {b['lmdb'] / b['raw_pixels']:.3f}"
    )


if __name__ == "__main__":
    warnings.simplefilter("ignore", PendingDeprecationWarning)
    main()

"""Model-ready epochs: ``SampleDataset(convention="configilm", ...)`` against ConfigILM's own path.

Uses the store and the LMDB of ``bench_train`` (built if missing: ``--patches`` synthetic patches,
default 4,000; the LMDB in the BigEarthNet authors' format, one safetensors value per patch).
Every way runs in a fresh process, warm (each reads its files once first), the ways alternate,
median of ``--repeat`` (default 3). One shuffled epoch over all samples in batches of
``--batch-size`` (default 256), S2's 12 bands, bilinear, 120 x 120, normalised:

- configilm: ConfigILM 0.7.1's reader as ``BENv2DataSet`` runs it: per sample ``txn.get``,
  ``safetensors.numpy.load``, ``stack_and_interpolate(..., img_size=120, upsample_mode=
  "bilinear")``, torchvision's ``Normalize`` ((x - mean) / std with ``band_combi_to_mean_std``),
  ``ben_19_labels_to_multi_hot``; then ``default_collate`` (``torch.stack``). torch with one
  thread (one process, as the issue measured it);
- store, native: ``SampleDataset(store).batches(256)`` (the uint16 arrays at their resolutions);
- store, model-ready: ``SampleDataset(store, convention="configilm", bands="S2",
  interpolation="bilinear", normalize=True).batches(256)``.

Targets: model-ready >= 3x ConfigILM's rate and >= 0.8x the native epoch of the same store.
``cpu ms`` is CPU time per sample (all threads of the way's process). Values: each way writes the
images and labels of 64 fixed samples (untimed); the run stops unless the store's are within
1e-3 / std of ConfigILM's. Prints a table, writes ``bench-out/model.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ORDER = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"]
CHECKED = 64


def configilm_epoch(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from bench_train import Lmdb, cpu_seconds, warm
    from configilm.extra import BENv2_utils as cil
    from torch.utils.data import default_collate

    from ingest.nomenclature import CLASSES_19

    torch.set_num_threads(1)
    db = Lmdb(args.lmdb, args.store)
    import zarr

    labels19 = np.asarray(zarr.open_group(args.store, mode="r")["labels19"][...])
    names = [[CLASSES_19[k] for k in np.flatnonzero(row)] for row in labels19]
    mean, std = cil.band_combi_to_mean_std(ORDER, "120_bilinear")
    m = torch.as_tensor(mean, dtype=torch.float32)[:, None, None]
    s = torch.as_tensor(std, dtype=torch.float32)[:, None, None]

    def sample(txn: Any, i: int) -> tuple[Any, Any]:
        bands = db.load(txn, i)
        image = cil.stack_and_interpolate(bands, ORDER, img_size=120, upsample_mode="bilinear")
        return (image - m) / s, cil.ben_19_labels_to_multi_hot(names[i])

    warm([args.lmdb], False)
    order = np.random.default_rng(args.seed).permutation(len(db.keys))
    seen = 0
    with db.env.begin() as txn:
        start, cpu0 = time.perf_counter(), cpu_seconds()
        for a in range(0, len(order), args.batch_size):
            batch = default_collate([sample(txn, int(i)) for i in order[a : a + args.batch_size]])
            seen += len(batch[0])
        seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu0
        check = [sample(txn, i) for i in range(CHECKED)]
    np.save(args.check, np.stack([c[0].numpy() for c in check]))
    np.save(str(args.check).replace(".npy", "-labels.npy"), np.stack([c[1].numpy() for c in check]))
    return {"seconds": seconds, "cpu": cpu, "count": seen}


def store_epoch(args: argparse.Namespace, model: bool) -> dict[str, Any]:
    from bench_train import cpu_seconds, warm

    from ingest import SampleDataset

    options: dict[str, Any] = {}
    if model:
        options = {"convention": "configilm", "bands": "S2", "interpolation": "bilinear",
                   "normalize": True}  # fmt: skip
    data = SampleDataset(args.store, **options)
    if model:  # compiles (or loads) the resampling kernels before the clock starts
        data[0]
    warm([args.store], False)
    seen = 0
    start, cpu0 = time.perf_counter(), cpu_seconds()
    for batch in data.batches(args.batch_size, seed=args.seed):
        seen += len(batch["index"])
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu0
    if model:
        np.save(args.check, np.stack([data[i]["image"] for i in range(CHECKED)]))
        np.save(str(args.check).replace(".npy", "-labels.npy"),
                np.stack([data[i]["label"] for i in range(CHECKED)]))  # fmt: skip
    return {"seconds": seconds, "cpu": cpu, "count": seen}


WAYS = {
    "configilm": configilm_epoch,
    "store_native": lambda a: store_epoch(a, model=False),
    "store_model": lambda a: store_epoch(a, model=True),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--patches", type=int, default=4_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    parser.add_argument("--way", help=argparse.SUPPRESS)
    parser.add_argument("--store", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--lmdb", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--check", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    if args.way:
        print(json.dumps(WAYS[args.way](args)))
        return

    from bench_train import prepare

    out: Path = args.out
    n, store, lmdb_path = prepare(out, args.patches)
    results: dict[str, list[dict[str, Any]]] = {w: [] for w in WAYS}
    for round_ in range(args.repeat):
        for way in WAYS:
            command = [sys.executable, str(Path(__file__).resolve()), "--way", way, "--store", str(store),
                       "--lmdb", str(lmdb_path), "--batch-size", str(args.batch_size),
                       "--seed", str(args.seed), "--check", str(out / f"model-check-{way}.npy")]  # fmt: skip
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode:
                sys.exit(f"{way} failed:\n{done.stderr}")
            result = json.loads(done.stdout.strip().splitlines()[-1])
            results[way].append(result)
            print(f"round {round_ + 1} {way:14s} {result['count'] / result['seconds']:10,.0f} samples/s",
                  flush=True)  # fmt: skip
    check(out)
    rate = {
        w: statistics.median(r["count"] / r["seconds"] for r in rs) for w, rs in results.items()
    }
    cpu = {w: statistics.median(r["cpu"] / r["count"] for r in rs) for w, rs in results.items()}
    report = {"patches": n, "repeat": args.repeat, "batch_size": args.batch_size,
              "samples_per_second": rate, "cpu_seconds_per_sample": cpu, "all": results}  # fmt: skip
    (out / "model.json").write_text(json.dumps(report, indent=2) + "\n")
    print()
    print(f"model-ready shuffled epochs, N = {report['patches']:,} synthetic patches, S2 12 bands, "
          f"bilinear, 120 x 120, normalised, batches of {args.batch_size}, one process, warm, "
          f"median of {args.repeat}")  # fmt: skip
    print(f"  {'':46s}{'samples/s':>10s}{'ms/sample':>10s}{'cpu ms':>8s}")
    labels = {"configilm": "ConfigILM 0.7.1 (LMDB + safetensors + torch)",
              "store_native": "SampleDataset.batches, native uint16 arrays",
              "store_model": "SampleDataset(convention='configilm').batches"}  # fmt: skip
    for way, label in labels.items():
        print(f"  {label:46s}{rate[way]:10,.0f}{1e3 / rate[way]:10.3f}{1e3 * cpu[way]:8.3f}")
    print(
        f"  model-ready / ConfigILM   {rate['store_model'] / rate['configilm']:5.2f}x  (target >= 3x)"
    )
    print(
        f"  model-ready / native      {rate['store_model'] / rate['store_native']:5.2f}x  (target >= 0.8x)"
    )


def check(out: Path) -> None:
    from configilm.extra import BENv2_utils as cil

    reference = np.load(out / "model-check-configilm.npy")
    got = np.load(out / "model-check-store_model.npy")
    _, std = cil.band_combi_to_mean_std(ORDER, "120_bilinear")
    worst = float((np.abs(got - reference) * std[None, :, None, None]).max())
    if worst > 1e-3:
        sys.exit(f"model-ready values differ from ConfigILM's by {worst} DN")
    if not np.array_equal(np.load(out / "model-check-configilm-labels.npy"),
                          np.load(out / "model-check-store_model-labels.npy")):  # fmt: skip
        sys.exit("model-ready labels differ from ConfigILM's")
    print(
        f"values: the store's model-ready images are within {worst:.2g} DN of ConfigILM's, labels equal"
    )


if __name__ == "__main__":
    main()

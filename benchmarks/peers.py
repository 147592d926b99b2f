"""The ways peers ingest BigEarthNet, for the benchmark: extract the archives to disk, then open
every band file. Run as a process: ``python benchmarks/peers.py {extract,notebook,expert} ...``;
prints one JSON line with its timings.

- notebook: ``rioxarray.open_rasterio`` per band, one Dataset per patch, ``to_zarr`` append;
- expert: ``rasterio`` per band, ``numpy.stack``, direct zarr writes into pre-sized arrays.
"""

from __future__ import annotations

import json
import sys
import tarfile
import time
import warnings
from pathlib import Path

import numpy as np

BANDS_10M = ("B02", "B03", "B04", "B08")
BANDS_20M = ("B05", "B06", "B07", "B8A", "B11", "B12")
BANDS_60M = ("B01", "B09")


def extract(archive: Path, target: Path) -> float:
    start = time.perf_counter()
    with tarfile.open(archive, "r:gz") as tar:
        tar.extractall(target, filter="data")
    return time.perf_counter() - start


def patch_folders(root: Path, count: int) -> list[Path]:
    folders = sorted((root / "bigearthnet_v1_source").glob("bigearthnet_v1_source_*"))
    return folders[:count]


def notebook(root: Path, count: int, store: Path) -> float:
    import rioxarray
    import xarray as xr

    folders = patch_folders(root, count)
    start = time.perf_counter()
    for i, folder in enumerate(folders):
        data_vars = {}
        for bands, res in ((BANDS_10M, "10m"), (BANDS_20M, "20m"), (BANDS_60M, "60m")):
            layers = [
                rioxarray.open_rasterio(folder / f"{b}.tif").squeeze("band", drop=True)
                for b in bands
            ]
            stacked = xr.concat(layers, dim=f"band_{res}").rename(
                {"y": f"y_{res}", "x": f"x_{res}"}
            )
            data_vars[f"bands_{res}"] = stacked.drop_vars(
                ["spatial_ref", f"x_{res}", f"y_{res}"], errors="ignore"
            )
        ds = xr.Dataset(data_vars).expand_dims("sample")
        ds.attrs = {}
        for var in ds.data_vars.values():
            var.attrs = {}
            var.encoding = {}
        if i == 0:
            ds.to_zarr(store, mode="w", zarr_format=3, consolidated=False)
        else:
            ds.to_zarr(store, append_dim="sample", consolidated=False)
    return (time.perf_counter() - start) / len(folders)


def expert(root: Path, count: int, store: Path) -> float:
    import rasterio
    import zarr

    folders = patch_folders(root, count)
    start = time.perf_counter()
    group = zarr.open_group(str(store), mode="w", zarr_format=3)
    arrays = {
        res: group.create_array(f"bands_{res}", shape=(len(folders), len(bands), size, size),
                                chunks=(1, len(bands), size, size), dtype="uint16")
        for bands, res, size in ((BANDS_10M, "10m", 120), (BANDS_20M, "20m", 60), (BANDS_60M, "60m", 20))
    }  # fmt: skip
    for i, folder in enumerate(folders):
        for bands, res in ((BANDS_10M, "10m"), (BANDS_20M, "20m"), (BANDS_60M, "60m")):
            layers = []
            for band in bands:
                with rasterio.open(folder / f"{band}.tif") as src:
                    layers.append(src.read(1))
            arrays[res][i] = np.stack(layers)
    return (time.perf_counter() - start) / len(folders)


def main() -> None:
    warnings.simplefilter("ignore")
    way = sys.argv[1]
    if way == "extract":
        labels, source, target = map(Path, sys.argv[2:5])
        seconds = extract(labels, target) + extract(source, target)
        print(json.dumps({"extract_seconds": seconds}))
    else:
        root, count, store = Path(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
        per_patch = (notebook if way == "notebook" else expert)(root, count, store)
        print(json.dumps({"per_patch_seconds": per_patch, "patches": count}))


if __name__ == "__main__":
    main()

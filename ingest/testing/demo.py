"""``make demo`` and ``make demo-v2``: the main job end to end on the built-in real samples.

``make demo`` (:func:`main`):

Builds the 6-patch real sample in the MLHub archive layout, serves it with the emulator on a free
loopback port (with an API key, as MLHub required), runs ``ingest run demo.zarr`` as a separate
process through the archive endpoint, verifies the store, and opens it with xarray. Runs again
without manual clean-up (``--overwrite``).

``make demo-v2`` (:func:`main_v2`, ``python -m ingest.testing.demo --reben-v2 [DIR [STORE]]``):
builds the real reBEN v2.0 sample with ``ingest sample DIR --layout reben-v2 --real``, serves its
official file names on Zenodo's routes with the emulator, runs ``ingest run STORE --dataset
bigearthnet-v2 --zenodo-url <emulator> --md5sums DIR/MD5SUMS`` as a separate process, then
``ingest info STORE``. Runs again without manual clean-up.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

DEMO_KEY = "demo-api-key"


def main(workdir: str = "demo", store: str = "demo.zarr") -> int:
    import xarray as xr

    from ingest.testing.emulator import Emulator
    from ingest.testing.samples import write_real_sample

    archives = write_real_sample(Path(workdir) / "archives")
    print(f"sample archives: {archives.labels}, {archives.source}")
    ingest = [sys.executable, "-m", "ingest"]
    with Emulator(archives.labels.parent, api_key=DEMO_KEY) as emulator:
        env = {**os.environ, "MLHUB_ROOT_URL": emulator.root_url, "MLHUB_API_KEY": DEMO_KEY}
        print(f"emulator: MLHUB_ROOT_URL={emulator.root_url}")
        print(f"$ ingest run {store} --overwrite")
        subprocess.run([*ingest, "run", store, "--overwrite"], env=env, check=True)
    subprocess.run([*ingest, "verify", store], check=True)
    with xr.open_zarr(store) as ds:
        print(ds)
    return 0


def main_v2(workdir: str = "demo-v2", store: str = "demo-v2.zarr") -> int:
    from ingest.testing.emulator import Emulator

    release = Path(workdir) / "release"
    ingest = [sys.executable, "-m", "ingest"]
    print(f"$ ingest sample {release} --layout reben-v2 --real", flush=True)
    subprocess.run([*ingest, "sample", str(release), "--layout", "reben-v2", "--real"], check=True)
    md5sums = release / "MD5SUMS"
    with Emulator(release) as emulator:
        print(f"emulator: Zenodo at {emulator.base_url}", flush=True)
        for url in emulator.zenodo_urls().values():
            print(f"  {url}", flush=True)
        command = ["run", store, "--dataset", "bigearthnet-v2", "--zenodo-url", emulator.base_url,
                   "--md5sums", str(md5sums), "--overwrite"]  # fmt: skip
        print(f"$ ingest {' '.join(command)}", flush=True)
        done = subprocess.run([*ingest, *command], check=False)
    if done.returncode != 0:
        print(f"demo-v2: ingest run failed (exit {done.returncode}); stopping", flush=True)
        return done.returncode
    print(f"$ ingest info {store}", flush=True)
    return subprocess.run([*ingest, "info", store], check=False).returncode


if __name__ == "__main__":
    if sys.argv[1:2] == ["--reben-v2"]:
        sys.exit(main_v2(*sys.argv[2:]))
    sys.exit(main(*sys.argv[1:]))

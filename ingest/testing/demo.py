"""``make demo``: the main job end to end on the built-in real sample.

Builds the 6-patch real sample in the MLHub archive layout, serves it with the emulator on a free
loopback port (with an API key, as MLHub required), runs ``ingest run demo.zarr`` as a separate
process through the archive endpoint, verifies the store, and opens it with xarray. Runs again
without manual clean-up (``--overwrite``).
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


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))

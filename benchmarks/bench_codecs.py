"""``make bench`` (codec choice): store size against compression CPU for the band arrays' codec.

Each inner chunk of the store is one sample of one band array, so each codec is measured the same
way: every sample of the 6 real BigEarthNet patches (read from the real sample's store) is
encoded chunk by chunk. Only codecs of the Zarr v3 specification are candidates (blosc, zstd,
gzip, with the bytes codec in front); pcodec is shown for reference, as zarr-python warns that it
is not a spec codec and other v3 readers may not decode it. Prints a table and writes
``bench-out/codecs.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np
import zarr

from ingest.nomenclature import BAND_GROUPS
from ingest.testing.samples import write_real_sample

CANDIDATES: dict[str, Any] = {
    "blosc zstd 1 bitshuffle": numcodecs.Blosc("zstd", 1, numcodecs.Blosc.BITSHUFFLE),
    "blosc zstd 3 bitshuffle (chosen)": numcodecs.Blosc("zstd", 3, numcodecs.Blosc.BITSHUFFLE),
    "blosc zstd 5 bitshuffle": numcodecs.Blosc("zstd", 5, numcodecs.Blosc.BITSHUFFLE),
    "blosc zstd 9 bitshuffle": numcodecs.Blosc("zstd", 9, numcodecs.Blosc.BITSHUFFLE),
    "blosc zstd 3 byteshuffle": numcodecs.Blosc("zstd", 3, numcodecs.Blosc.SHUFFLE),
    "blosc lz4 5 bitshuffle": numcodecs.Blosc("lz4", 5, numcodecs.Blosc.BITSHUFFLE),
    "zstd 3": numcodecs.Zstd(3),
    "zstd 19": numcodecs.Zstd(19),
    "gzip 6": numcodecs.GZip(6),
}


def real_samples(out: Path) -> list[dict[str, np.ndarray]]:
    archives = write_real_sample(out / "real")
    store = out / "codecs-real.zarr"
    subprocess.run([sys.executable, "-m", "ingest", "run", str(store), "--overwrite",
                    "--no-progress", "--labels-archive", str(archives.labels),
                    "--source-archive", str(archives.source)], check=True, capture_output=True)  # fmt: skip
    group = zarr.open_group(str(store), mode="r")
    arrays = {g.array_name: np.asarray(group[g.array_name][:]) for g in BAND_GROUPS}
    return [{name: a[i] for name, a in arrays.items()} for i in range(len(archives.patches))]


def measure(codec: Any, samples: list[dict[str, np.ndarray]], rounds: int) -> tuple[float, float]:
    """(encoded bytes / raw bytes, encode milliseconds per patch)."""
    raw = sum(a.nbytes for s in samples for a in s.values())
    encoded = sum(len(codec.encode(np.ascontiguousarray(a))) for s in samples for a in s.values())
    start = time.perf_counter()
    for _ in range(rounds):
        for sample in samples:
            for array in sample.values():
                codec.encode(np.ascontiguousarray(array))
    ms = (time.perf_counter() - start) * 1000 / (rounds * len(samples))
    return encoded / raw, ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    numcodecs.blosc.set_nthreads(1)  # as in a writer process: one core per worker
    samples = real_samples(args.out)
    candidates = dict(CANDIDATES)
    try:
        from numcodecs import PCodec

        candidates["pcodec 8 (not a v3 spec codec)"] = PCodec(level=8)
    except ImportError:
        pass
    rows = []
    print(f"codecs on the {len(samples)} real patches, one chunk per sample and band array")
    for name, codec in candidates.items():
        ratio, ms = measure(codec, samples, args.rounds)
        rows.append({"codec": name, "store_over_raw": ratio, "encode_ms_per_patch": ms})
        print(f"  {name:34s} size/raw {ratio:6.3f}   encode {ms:6.3f} ms/patch", flush=True)
    (args.out / "codecs.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""Model-ready samples against the reference pipelines themselves: ConfigILM 0.7.1's functions
(``stack_and_interpolate``, ``band_combi_to_mean_std``, ``ben_19_labels_to_multi_hot``) on the
original band files, and torchgeo 0.8.1's reads (rasterio, as ``BigEarthNetV2._load_image`` /
``_load_map`` / ``_load_target`` do them; torchgeo itself cannot be imported here) of the same
files, on the real reBEN v2 sample (S1 and maps included) and the real v1 sample."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import rasterio
import torch
from configilm.extra import BENv2_utils as cil
from rasterio.enums import Resampling

import ingest
from ingest.errors import UsageError
from ingest.nomenclature import CLASSES_19, CLASSES_43
from ingest.read.conventions import CONFIGILM_LABELS, TORCHGEO_CLC, configilm_bands
from ingest.testing.releases import ReleaseSample, write_release_sample
from tests.test_partners import ingest_release

COMBINATIONS = [
    "S1",
    "S2",
    "ALL",
    "RGB",
    "10m",
    "20m",
    "60m",
    "10m_20m",
    "S1_10m_20m",
    2,
    3,
    4,
    10,
    12,
]
MODES = ["nearest", "bilinear", "bicubic"]
#: torchgeo's S2 file order (``sort_sentinel2_bands``: B8A sorts as B08A).
TORCHGEO_S2 = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"]


@pytest.fixture(scope="module")
def v2(tmp_path_factory: pytest.TempPathFactory) -> tuple[ReleaseSample, Path]:
    sample = write_release_sample(tmp_path_factory.mktemp("v2"), layout="reben-v2", real=True,
                                  s1=True, reference_maps=True)  # fmt: skip
    store = tmp_path_factory.mktemp("store") / "v2.zarr"
    ingest_release(sample, store)
    return sample, store


@pytest.fixture(scope="module")
def v1(tmp_path_factory: pytest.TempPathFactory) -> tuple[ReleaseSample, Path]:
    sample = write_release_sample(
        tmp_path_factory.mktemp("v1"), layout="zenodo-v1", real=True, s1=True
    )
    store = tmp_path_factory.mktemp("store") / "v1.zarr"
    ingest_release(sample, store)
    return sample, store


def original(sample: ReleaseSample, name: str, suffix: str) -> Path | None:
    assert sample.originals is not None
    found = sorted(sample.originals.rglob(f"{name}_{suffix}.tif"))
    return found[0] if found else None


def native_bands(
    sample: ReleaseSample, patch: str, bands: list[str]
) -> dict[str, np.ndarray] | None:
    """The bands of a patch as its original files hold them (None if one is not real)."""
    out = {}
    for band in bands:
        name = sample.s1_of[patch] if band in ("VV", "VH") else patch
        path = original(sample, name, band)
        if path is None:
            return None
        with rasterio.open(path) as src:
            out[band] = src.read(1)
    return out


def patch_ids(store: Path) -> list[str]:
    return [str(p) for p in ingest.SampleDataset(store).store.table("patch_id")]


def v2_labels(sample: ReleaseSample) -> dict[str, list[str]]:
    labels: dict[str, list[str]] = {}
    for path in sample.metadata:
        table = pq.read_table(path, columns=["patch_id", "labels"]).to_pydict()
        labels.update(zip(table["patch_id"], table["labels"], strict=True))
    return labels


# --- ConfigILM --------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("combination", COMBINATIONS)
def test_configilm_equals_stack_and_interpolate(
    v2: tuple[ReleaseSample, Path], combination: str | int, mode: str
) -> None:
    sample, store = v2
    order = list(cil.resolve_band_combi(combination))
    assert configilm_bands(combination) == tuple(order)
    data = ingest.SampleDataset(
        store, convention="configilm", bands=combination, interpolation=mode
    )
    normed = ingest.SampleDataset(store, convention="configilm", bands=combination,
                                  interpolation=mode, normalize=True)  # fmt: skip
    mean, std = cil.band_combi_to_mean_std(order, f"120_{mode}")
    compared = 0
    for i, patch in enumerate(patch_ids(store)):
        bands = native_bands(sample, patch, order)
        if bands is None:
            continue
        reference = cil.stack_and_interpolate(bands, order, img_size=120, upsample_mode=mode)
        got = data[i]["image"]
        assert got.dtype == np.float32 and got.shape == (len(order), 120, 120)
        np.testing.assert_allclose(got, reference.numpy(), rtol=0, atol=1e-3, err_msg=patch)
        # torchvision's Normalize: (x - mean) / std in the tensor's dtype; 1e-3 before it is
        # 1e-3 / std after, plus the rounding of the division (2 float32 ulps)
        m = torch.as_tensor(mean, dtype=torch.float32)[:, None, None]
        s = torch.as_tensor(std, dtype=torch.float32)[:, None, None]
        np.testing.assert_allclose(normed[i]["image"], ((reference - m) / s).numpy(), rtol=2.5e-7,
                                   atol=1e-3 / float(std.min()), err_msg=patch)  # fmt: skip
        compared += 1
    assert compared >= 2


def test_configilm_label_is_lexicographic_multi_hot(v2: tuple[ReleaseSample, Path]) -> None:
    sample, store = v2
    labels = v2_labels(sample)
    data = ingest.SampleDataset(store, convention="configilm", bands="RGB")
    assert tuple(cil.NEW_LABELS) == CONFIGILM_LABELS
    for i, patch in enumerate(patch_ids(store)):
        expected = cil.ben_19_labels_to_multi_hot(labels[patch], lex_sorted=True).numpy()
        assert data[i]["label"].dtype == np.float32
        np.testing.assert_array_equal(data[i]["label"], expected, patch)


def test_configilm_other_sizes_equal_interpolate(v2_store: Any) -> None:
    """Sizes 128 and 60 (ConfigILM publishes statistics for both) on synthetic values: equal to
    torch's interpolate where torch uses its general kernel (outputs over 64 x 64); for outputs of
    64 x 64 or less torch switches to a vectorised separable kernel that rounds differently, and
    the values are within 2 float32 ulps there."""
    order = list(cil.STANDARD_BANDS["ALL"])
    pixels = v2_store.pixels
    for size in (128, 60):
        for mode in MODES:
            data = ingest.SampleDataset(v2_store.path, convention="configilm", bands="ALL",
                                        interpolation=mode, size=size)  # fmt: skip
            for i in (0, 5):
                bands = {}
                for name, names in (("bands_10m", ("B02", "B03", "B04", "B08")),
                                    ("bands_20m", ("B05", "B06", "B07", "B8A", "B11", "B12")),
                                    ("bands_60m", ("B01", "B09")), ("bands_s1", ("VV", "VH"))):  # fmt: skip
                    bands.update({b: pixels[name][i, k] for k, b in enumerate(names)})
                ref = cil.stack_and_interpolate(
                    bands, order, img_size=size, upsample_mode=mode
                ).numpy()
                got = data[i]["image"]
                if size > 64:
                    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-3)
                else:
                    np.testing.assert_allclose(got, ref, rtol=2.5e-7, atol=1e-3)


def test_configilm_batches_equal_samples(v2_store: Any) -> None:
    data = ingest.SampleDataset(v2_store.path, convention="configilm", bands="ALL",
                                interpolation="bilinear", normalize=True, split="train")  # fmt: skip
    seen = []
    for batch in data.batches(3, seed=4):
        assert set(batch) == {"image", "label", "index"}
        for k, i in enumerate(batch["index"].tolist()):
            sample = data[i]
            np.testing.assert_array_equal(batch["image"][k], sample["image"])
            np.testing.assert_array_equal(batch["label"][k], sample["label"])
            seen.append(i)
    assert sorted(seen) == list(range(len(data)))


# --- torchgeo ---------------------------------------------------------------------------------


def torchgeo_read(path: Path) -> np.ndarray:
    """``BigEarthNetV2._load_image``'s read of one band file."""
    with rasterio.open(path) as src:
        return src.read(indexes=1, out_shape=(120, 120), out_dtype="int32",
                        resampling=Resampling.bilinear)  # fmt: skip


def torchgeo_mask(path: Path) -> np.ndarray:
    """``BigEarthNetV2._load_map``: the codes read as int32, remapped code by code."""
    with rasterio.open(path) as src:
        tensor = torch.from_numpy(src.read(out_dtype="int32"))
    for corine, ordinal in TORCHGEO_CLC.items():
        tensor[tensor == corine] = ordinal
    return tensor.long().numpy()


def test_torchgeo_matches_its_rasterio_reads(v2: tuple[ReleaseSample, Path]) -> None:
    sample, store = v2
    labels = v2_labels(sample)
    data = ingest.SampleDataset(store, convention="torchgeo", bands="all")
    compared = 0
    for i, patch in enumerate(patch_ids(store)):
        got = data[i]
        assert set(got) == {"image_s1", "image_s2", "mask", "label"}
        assert got["image_s2"].shape == (12, 120, 120) and got["image_s2"].dtype == np.float32
        assert got["mask"].shape == (1, 120, 120) and got["mask"].dtype == np.int64
        expected = np.zeros(19, np.int64)
        expected[[CLASSES_19.index(c) for c in labels[patch]]] = 1
        np.testing.assert_array_equal(got["label"], expected)
        assert got["label"].dtype == np.int64
        paths = [original(sample, patch, b) for b in TORCHGEO_S2]
        if all(p is not None for p in paths):
            for k, path in enumerate(paths):
                assert path is not None
                ref = torchgeo_read(path).astype(np.float32)
                if TORCHGEO_S2[k] in ("B02", "B03", "B04", "B08"):
                    np.testing.assert_array_equal(got["image_s2"][k], ref)
                else:
                    assert np.abs(got["image_s2"][k] - ref).max() <= 1, (patch, TORCHGEO_S2[k])
            compared += 1
        s1 = [original(sample, sample.s1_of[patch], b) for b in ("VH", "VV")]  # sorted names
        if all(p is not None for p in s1):
            for k, path in enumerate(s1):
                assert path is not None
                np.testing.assert_array_equal(
                    got["image_s1"][k], torchgeo_read(path).astype(np.float32)
                )
        mask = original(sample, patch, "reference_map")
        if mask is not None:
            np.testing.assert_array_equal(got["mask"], torchgeo_mask(mask))
            compared += 1
    assert compared >= 2


def test_torchgeo_upsampling_differs_from_configilm_bilinear(
    v2: tuple[ReleaseSample, Path],
) -> None:
    """The two conventions' 20 m bands really differ (half-pixel vs corner-aligned bilinear)."""
    _, store = v2
    tg = ingest.SampleDataset(store, convention="torchgeo", bands="s2")
    cg = ingest.SampleDataset(store, convention="configilm", bands="S2", interpolation="bilinear")
    assert cil.STANDARD_BANDS["S2"] == TORCHGEO_S2  # the same order, so channels compare
    worst = max(
        float(np.abs(tg[i]["image"][4:9] - cg[i]["image"][4:9]).max()) for i in range(len(tg))
    )
    assert worst > 10
    for i in range(len(tg)):  # 10 m bands: both the file's values
        np.testing.assert_array_equal(tg[i]["image"][[1, 2, 3, 7]], cg[i]["image"][[1, 2, 3, 7]])


def test_torchgeo_on_v1(v1: tuple[ReleaseSample, Path]) -> None:
    sample, store = v1
    native = ingest.SampleDataset(store)
    for classes in (19, 43):
        data = ingest.SampleDataset(store, convention="torchgeo", bands="s1", num_classes=classes)
        for i in range(len(data)):
            got = data[i]
            assert set(got) == {"image", "label"}  # no reference maps in v1
            source = native[i]["labels" if classes == 43 else "labels19"]
            np.testing.assert_array_equal(got["label"], source.astype(np.int64))
            patch = native[i]["patch_id"]
            paths = [original(sample, sample.s1_of[patch], b) for b in ("VH", "VV")]
            if all(p is not None for p in paths):
                for k, path in enumerate(paths):
                    assert path is not None
                    np.testing.assert_array_equal(got["image"][k], torchgeo_read(path))


def test_configilm_on_v1(v1: tuple[ReleaseSample, Path]) -> None:
    sample, store = v1
    native = ingest.SampleDataset(store)
    data = ingest.SampleDataset(store, convention="configilm", bands="ALL", interpolation="bicubic")
    order = list(cil.STANDARD_BANDS["ALL"])
    compared = 0
    for i in range(len(data)):
        patch = native[i]["patch_id"]
        names = [CLASSES_19[k] for k in np.flatnonzero(native[i]["labels19"])]
        np.testing.assert_array_equal(
            data[i]["label"], cil.ben_19_labels_to_multi_hot(names).numpy()
        )
        assert len(native[i]["labels"]) == len(CLASSES_43)
        bands = native_bands(sample, patch, order)
        if bands is not None:
            ref = cil.stack_and_interpolate(bands, order, img_size=120, upsample_mode="bicubic")
            np.testing.assert_allclose(data[i]["image"], ref.numpy(), rtol=0, atol=1e-3)
            compared += 1
    assert compared >= 1


# --- choices and their errors -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"convention": "keras"}, "unknown convention 'keras' (one of configilm, torchgeo)"),
        ({"convention": "configilm", "bands": "NIR"}, "unknown band or band combination 'NIR'"),
        ({"convention": "configilm", "interpolation": "area"}, "unknown interpolation 'area'"),
        ({"convention": "configilm", "bands": 5}, "unknown band combination 5 (one of S1, S2,"),
        (
            {"convention": "configilm", "bands": "RGB", "normalize": {"B04": (1.0, 0.0)}},
            "normalize has no statistics for band B03",
        ),
        (
            {
                "convention": "configilm",
                "bands": "RGB",
                "normalize": {"B04": (1.0, 0.0), "B03": (1.0, 1.0), "B02": (1.0, 1.0)},
            },
            "normalize: band B04 has mean 1.0 and std 0.0 (a finite mean and a positive std",
        ),
        (
            {"convention": "configilm", "size": 100, "normalize": True},
            "ConfigILM publishes statistics for sizes 120, 128, 60 only, not 100; use "
            "normalize='store' after `ingest stats --size 100`",
        ),
        (
            {"convention": "configilm", "normalize": "store"},
            "has no statistics for size 120, nearest",
        ),
        (
            {"convention": "torchgeo", "bands": "rgb"},
            "torchgeo's bands are 's1', 's2' or 'all', not 'rgb'",
        ),
        (
            {"convention": "torchgeo", "interpolation": "bicubic"},
            "torchgeo resamples with GDAL's bilinear only",
        ),
        ({"convention": "torchgeo", "num_classes": 43}, "this store has the 19 classes only"),
        ({"interpolation": "bilinear"}, "interpolation needs a convention"),
        ({"convention": "configilm", "modalities": "s2"}, "with a convention, `bands` chooses"),
    ],
)
def test_bad_choices_are_one_line_usage_errors(
    v2_store: Any, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(UsageError) as caught:
        ingest.SampleDataset(v2_store.path, **options)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_missing_sentinel1_is_named(small_shards: Path) -> None:
    with pytest.raises(UsageError, match="the store has no Sentinel-1 band VV"):
        ingest.SampleDataset(small_shards, convention="configilm", bands="ALL")
    with pytest.raises(UsageError, match="the store has no Sentinel-1 band VH"):
        ingest.SampleDataset(small_shards, convention="torchgeo", bands="all")


def test_own_statistics(v2_store: Any) -> None:
    stats = dict.fromkeys(cil.STANDARD_BANDS["RGB"], (100.0, 2.0))
    data = ingest.SampleDataset(v2_store.path, convention="configilm", bands="RGB", normalize=stats)
    plain = ingest.SampleDataset(v2_store.path, convention="configilm", bands="RGB")
    np.testing.assert_array_equal(
        data[1]["image"], (plain[1]["image"] - np.float32(100)) / np.float32(2)
    )


@pytest.mark.parametrize("threads", [1, 2])
def test_batches_decoded_and_resampled_in_runs_equal_samples(
    small_shards: Path, threads: int
) -> None:
    """Batches of 16 from shards of 16: runs long enough to be split between two threads, each
    decoding and resampling 4 samples at a time; every row equals the sample read alone."""
    data = ingest.SampleDataset(small_shards, convention="configilm", bands="S2",
                                interpolation="bicubic", normalize=True)  # fmt: skip
    data.store.threads = threads
    seen = []
    for batch in data.batches(16, seed=9):
        for k, i in enumerate(batch["index"].tolist()):
            np.testing.assert_array_equal(batch["image"][k], data[i]["image"])
            np.testing.assert_array_equal(batch["label"][k], data[i]["label"])
            seen.append(i)
    assert sorted(seen) == list(range(60))

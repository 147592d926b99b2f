"""``ingest info``: the summary's facts against the item JSON, its text, the figure."""

from __future__ import annotations

import struct
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from matplotlib.figure import Figure
from PIL import Image

from ingest.cli import main
from ingest.nomenclature import CLASSES_19, CLASSES_43
from ingest.read.info import CLC_CLASSES, clc_legend, clc_rgb, plot, render, summary
from ingest.read.reading import open_store
from ingest.store import zarrstore as store_module
from ingest.testing.samples import SampleArchives
from tests.conftest import WrittenStore, ingest_local
from tests.read.test_accessor import RealV2, real_v2, reference

__all__ = ["real_v2"]  # the fixture, shared with test_accessor


@pytest.fixture(scope="module")
def real_store(real_sample: SampleArchives, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("info") / "real.zarr"
    ingest_local(real_sample, path, shard_size=4)
    return path


def test_summary_of_the_real_store(real_store: Path, real_sample: SampleArchives) -> None:
    facts = summary(real_store)
    assert (facts["store"], facts["complete"], facts["samples"]) == (str(real_store), True, 6)
    classes = Counter(c for labels, _, _ in reference(real_sample).values() for c in labels)
    assert facts["class_counts"] == {name: classes[name] for name in CLASSES_43}
    assert list(facts["class_counts_19"]) == list(CLASSES_19)
    assert facts["class_counts_19"]["Inland waters"] == 1
    assert (facts["cloud_and_shadow"], facts["seasonal_snow"]) == (0, 1)
    assert facts["split_counts"] == {"train": 4, "validation": 0, "test": 1, "": 1}
    assert facts["size_bytes"] == sum(
        f.stat().st_size for f in real_store.rglob("*") if f.is_file()
    )
    assert facts["layout"]["bands_10m"] == {
        "shape": [6, 4, 120, 120], "dtype": "uint16",
        "chunks": [1, 4, 120, 120], "shards": [4, 4, 120, 120],
    }  # fmt: skip
    assert facts["layout"]["labels"]["shards"] is None
    assert list(facts["layout"]) == [
        "bands_10m", "bands_20m", "bands_60m", "labels", "labels19", "cloud_and_shadow",
        "seasonal_snow",
    ]  # fmt: skip
    assert facts["attributes"]["counts"]["samples"] == 6 and facts["attributes"]["skipped"] == 0
    assert (facts["attributes"]["dataset"], facts["attributes"]["layout"]) == (
        "bigearthnet-v1",
        "mlhub",
    )
    assert (facts["classes"], facts["modalities"], facts["attributes"]["contract_version"]) == (
        43,
        ["s2"],
        2,
    )
    by_url = summary(real_store.as_uri())  # any fsspec URL
    assert by_url["samples"] == 6 and by_url["class_counts"] == facts["class_counts"]


def test_render(real_store: Path) -> None:
    text = render(summary(real_store))
    lines = text.splitlines()
    assert lines[1:3] == ["complete:         yes", "samples:          6"]
    assert "seasonal_snow:    1 (16.7%)" in lines and "cloud_and_shadow: 0 (0.0%)" in lines
    assert (
        "  bands_20m        (6, 6, 60, 60)         uint16 chunk (1, 6, 60, 60), shard (4, 6, 60, 60)"
        in lines
    )
    assert "  11  3  Non-irrigated arable land" in lines
    assert "splits:           train 4, validation 0, test 1, none 1" in lines
    assert "dataset:          bigearthnet-v1 (layout mlhub)" in lines
    assert "modalities:       Sentinel-2" in lines and "classes (43, canonical order):" in lines


def test_an_unfinished_store(tmp_path: Path) -> None:
    path = tmp_path / "new.zarr"
    store_module.create(
        path, capacity=40, shard=16, dataset="bigearthnet-v1", layout="mlhub", attrs={}
    )
    facts = summary(path)
    assert (facts["complete"], facts["samples"], facts["class_counts"]) == (False, None, None)
    assert facts["layout"]["bands_10m"]["shape"] == [40, 4, 120, 120]
    text = render(facts)
    assert "complete:         NO (unfinished or interrupted" in text
    assert "samples:          unknown (not finished)" in text
    plot(path, tmp_path / "new.png")  # no labels, no mosaic, no warning: still a figure
    assert png_size(tmp_path / "new.png") == (1600, 900)


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the PNG signature and IHDR chunk, read by hand."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def test_info_command_with_a_plot(real_store: Path, tmp_path: Path) -> None:
    figure = tmp_path / "store.png"
    result = CliRunner().invoke(main, ["info", str(real_store), "--plot", str(figure)])
    assert result.exit_code == 0, result.output
    assert "samples:          6" in result.stdout and f"figure: {figure}" in result.stdout
    assert png_size(figure) == (1600, 900)
    assert figure.stat().st_size > 50_000  # six true-colour patches and a bar chart, not blank
    with Image.open(figure) as image:
        image.verify()
    with Image.open(figure) as image:
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.shape == (900, 1600, 3) and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 1000


def test_info_command_errors(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["info", str(tmp_path / "missing.zarr")])
    assert result.exit_code == 5
    assert result.stderr.startswith("error: ") and "not a Zarr v3 store" in result.stderr
    (tmp_path / "a").mkdir()
    store_module.create(
        tmp_path / "a" / "s.zarr",
        capacity=1,
        shard=1,
        dataset="bigearthnet-v1",
        layout="mlhub",
        labels_only=True,
        attrs={},
    )
    result = CliRunner().invoke(
        main, ["info", str(tmp_path / "a" / "s.zarr"), "--plot", str(tmp_path / "no" / "x.png")]
    )
    assert result.exit_code == 2 and "cannot write the figure" in result.stderr


# --- a bigearthnet-v2 store: 19 classes, S1 and reference maps ----------------------------------


def test_summary_of_a_v2_store(v2_store: WrittenStore) -> None:
    facts = summary(v2_store.path)
    labels19 = v2_store.table.labels19
    expected = {name: int(n) for name, n in zip(CLASSES_19, labels19.sum(axis=0), strict=True)}
    assert (facts["complete"], facts["samples"], facts["classes"]) == (True, 10, 19)
    assert facts["class_counts"] == facts["class_counts_19"] == expected
    assert facts["class_counts"]["Urban fabric"] == 5
    assert (facts["attributes"]["dataset"], facts["attributes"]["layout"]) == (
        "bigearthnet-v2",
        "reben-v2",
    )
    assert facts["modalities"] == ["s2", "s1", "reference_maps"]
    assert facts["split_counts"] == {"train": 5, "validation": 3, "test": 2, "": 0}
    assert (facts["seasonal_snow"], facts["cloud_and_shadow"]) == (2, 0)
    assert list(facts["layout"]) == [
        "bands_10m", "bands_20m", "bands_60m", "bands_s1", "reference_map", "labels19",
        "cloud_and_shadow", "seasonal_snow",
    ]  # fmt: skip
    assert facts["layout"]["bands_s1"] == {
        "shape": [10, 2, 120, 120], "dtype": "float32",
        "chunks": [1, 2, 120, 120], "shards": [4, 2, 120, 120],
    }  # fmt: skip
    assert facts["layout"]["reference_map"]["shards"] == [4, 120, 120]
    lines = render(facts).splitlines()
    assert "dataset:          bigearthnet-v2 (layout reben-v2)" in lines
    assert "modalities:       Sentinel-2, Sentinel-1, reference maps" in lines
    assert "classes (19, canonical order):" in lines and "   0  5  Urban fabric" in lines
    assert "splits:           train 5, validation 3, test 2, none 0" in lines
    assert (
        len([line for line in lines if line.startswith("  ") and line[2:4].strip().isdigit()]) == 19
    )


def test_plot_of_a_v2_store_shows_the_19_class_frequencies(
    v2_store: WrittenStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    drawn: list[Figure] = []
    save = Figure.savefig

    def keep(self: Figure, *args: Any, **kwargs: Any) -> None:
        drawn.append(self)
        save(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    result = CliRunner().invoke(
        main, ["info", str(v2_store.path), "--plot", str(tmp_path / "v2.png")]
    )
    assert result.exit_code == 0, result.output
    assert png_size(tmp_path / "v2.png") == (1600, 900)
    (figure,) = drawn
    bars = figure.axes[0]
    assert [t.get_text() for t in bars.get_yticklabels()] == [
        textwrap.shorten(n, 48) for n in CLASSES_19
    ]
    widths = [int(p.get_width()) for p in bars.patches]
    assert widths == v2_store.table.labels19.sum(axis=0).tolist()
    assert bars.get_title() == "class frequencies (10 patches, 19 classes)"
    # S1 and maps: 8 patches of three panels each (true colour, S1, map), then the map legend.
    labels = [a.get_label() for a in figure.axes]
    assert labels == ["classes", *["rgb", "s1", "reference_map"] * 8, "legend"]
    titles = [a.get_title(loc="left") for a in figure.axes if a.get_label() == "rgb"]
    assert len(titles) == 8 and titles[0].startswith("Urban fabric")
    (legend,) = [a.get_legend() for a in figure.axes if a.get_label() == "legend"]
    shown = {int(t.get_text().split()[0]) for t in legend.get_texts()}
    assert shown == set(np.unique(v2_store.pixels["reference_map"][[0, 1, 3, 4, 5, 6, 8, 9]]))


def test_clc_table_is_the_43_classes_in_canonical_order() -> None:
    assert [name for name, _ in CLC_CLASSES.values()] == list(CLASSES_43)
    assert list(CLC_CLASSES) == sorted(CLC_CLASSES) and 335 not in CLC_CLASSES  # no glaciers
    assert CLC_CLASSES[111][1] == (230, 0, 77) and CLC_CLASSES[523][1] == (230, 242, 255)
    assert len({rgb for _, rgb in CLC_CLASSES.values()}) == 43  # every class its own colour
    assert clc_legend(0) == clc_legend(999) == ("no data", (255, 255, 255))
    assert clc_legend(335)[0] == "CLC 335 (not a BigEarthNet class)"
    codes = np.array([[0, 311], [512, 7]], dtype=np.uint16)
    image = clc_rgb(codes)
    assert image.shape == (2, 2, 3) and image.dtype == np.uint8
    assert image.tolist() == [[[255, 255, 255], [128, 255, 0]], [[128, 242, 230], [128, 128, 128]]]


def test_plot_of_the_real_reben_sample_with_s1_and_maps(real_v2: RealV2, tmp_path: Path) -> None:
    figure = plot(real_v2.path, tmp_path / "reben.png")
    assert png_size(tmp_path / "reben.png") == (1600, 900)
    labels = [a.get_label() for a in figure.axes]
    assert labels == ["classes", *["rgb", "s1", "reference_map"] * 8, "legend"]
    ds = open_store(real_v2.path)
    shown = [0, 1, 2, 3, 5, 6, 7, 8]  # 8 of 9, evenly spaced
    s1_panels = [a for a in figure.axes if a.get_label() == "s1"]
    map_panels = [a for a in figure.axes if a.get_label() == "reference_map"]
    for k, i in enumerate(shown):
        assert np.array_equal(s1_panels[k].get_images()[0].get_array(), ds.ben.s1_rgb(i))
        codes = ds["reference_map"][i].values
        assert np.array_equal(map_panels[k].get_images()[0].get_array(), clc_rgb(codes))
    legend = figure.axes[-1].get_legend()
    entries = [t.get_text() for t in legend.get_texts()]
    codes = sorted(set(np.unique(ds["reference_map"][shown].values).tolist()))
    assert [int(e.split()[0]) for e in entries] == codes
    assert "311  Broad-leaved forest" in entries and "CORINE" in legend.get_title().get_text()
    assert (
        facts_modalities(real_v2.path) == "modalities:       Sentinel-2, Sentinel-1, reference maps"
    )
    with Image.open(tmp_path / "reben.png") as image:
        pixels = np.asarray(image.convert("RGB"))
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 1000  # images, not blank panels


def facts_modalities(store: Path) -> str:
    (line,) = [x for x in render(summary(store)).splitlines() if x.startswith("modalities:")]
    return line


def test_plot_of_a_sentinel_2_store_is_the_plain_mosaic(real_store: Path, tmp_path: Path) -> None:
    figure = plot(real_store, tmp_path / "s2.png")
    assert [a.get_label() for a in figure.axes] == ["classes", *["rgb"] * 6]
    assert facts_modalities(real_store) == "modalities:       Sentinel-2"

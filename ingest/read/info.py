"""``ingest info``: what a store holds, as a dict (:func:`summary`), as text (:func:`render`) and
as a figure (:func:`plot`: class frequencies and a mosaic of true-colour patches).

The summary reads metadata and the small label, flag and split arrays with zarr directly, so it
works on unfinished stores too (whose small arrays do not exist yet) and never reads a band shard.
"""

from __future__ import annotations

import os
import textwrap
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr
import zarr
from zarr.core.sync import sync

from ..errors import UsageError
from ..units import human_bytes
from .accessor import SPLITS, BenAccessor
from .reading import IncompleteStoreWarning, open_group, open_store

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["CLC_CLASSES", "CLC_NO_DATA", "clc_legend", "clc_rgb", "plot", "render", "summary"]

#: The data variables of the contract, in the order the summary lists them.
DATA_VARIABLES = (
    "bands_10m",
    "bands_20m",
    "bands_60m",
    "bands_s1",
    "reference_map",
    "labels",
    "labels19",
    "cloud_and_shadow",
    "seasonal_snow",
)
#: The root attributes the summary repeats.
_ATTRIBUTES = (
    "title",
    "ingest_version",
    "contract_version",
    "dataset",
    "layout",
    "created",
    "counts",
)
#: Which per-pixel array shows which modality is in the store.
MODALITIES = {"s2": "bands_10m", "s1": "bands_s1", "reference_maps": "reference_map"}
_MODALITY_NAMES = {"s2": "Sentinel-2", "s1": "Sentinel-1", "reference_maps": "reference maps"}
_UNFINISHED = "NO (unfinished or interrupted: continue it with ingest run --resume)"
#: Patches in the mosaic of :func:`plot`, at most.
MOSAIC = 16


def summary(
    store: str | os.PathLike[str], storage_options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The facts ``ingest info`` prints, JSON-serialisable.

    Keys: ``store``, ``complete``, ``samples`` (None while the store is unfinished),
    ``attributes`` (version, contract, ``dataset`` and ``layout``, creation time, title, counts,
    skipped), ``modalities`` (of ``s2``, ``s1``, ``reference_maps``: those with their arrays),
    ``classes`` (43 or 19: the store's nomenclature, 19 for ``bigearthnet-v2``),
    ``class_counts`` (name -> patches in the store's nomenclature, canonical order) and
    ``class_counts_19`` (the same for the 19 classes), ``statistics`` (what ``ingest stats``
    recorded: split, size, interpolation, per-band mean and std), ``cloud_and_shadow`` and
    ``seasonal_snow`` (patches flagged), ``split_counts`` (train/validation/test/"" -> patches, or
    None when the store has no split), ``size_bytes`` and ``layout`` (array -> shape, dtype,
    chunks, shards). Raises :class:`~ingest.errors.StoreError` when ``store`` is not a store.
    """
    group = open_group(store, storage_options)
    arrays = dict(group.arrays())
    attrs = dict(group.attrs)
    skipped = attrs.get("skipped")
    labels19 = _values(arrays, "labels19")
    # bigearthnet-v1 stores count the 43 classes, v2 stores (and unfinished ones without their
    # `label` dimension) the 19 they have.
    nineteen_only = "label" not in arrays
    labels = labels19 if nineteen_only else _values(arrays, "labels")
    return {
        "store": os.fspath(store),
        "complete": attrs.get("complete") is True,
        "samples": None if labels19 is None else int(labels19.shape[0]),
        "attributes": {key: attrs.get(key) for key in _ATTRIBUTES}
        | {"skipped": len(skipped) if isinstance(skipped, list) else 0},
        "modalities": [m for m, name in MODALITIES.items() if name in arrays],
        "classes": 19 if nineteen_only else 43,
        "class_counts": _counts(arrays, "label19" if nineteen_only else "label", labels),
        "class_counts_19": _counts(arrays, "label19", labels19),
        "cloud_and_shadow": _flag_count(arrays, "cloud_and_shadow"),
        "seasonal_snow": _flag_count(arrays, "seasonal_snow"),
        "split_counts": _split_counts(arrays),
        "size_bytes": int(sync(group.store.getsize_prefix(group.path))),
        "layout": {name: _layout(arrays[name]) for name in DATA_VARIABLES if name in arrays},
        "statistics": _statistics(attrs.get("statistics")),
    }


def _statistics(entries: Any) -> list[dict[str, Any]]:
    """The statistics ``ingest stats`` recorded (well-formed entries only)."""
    if not isinstance(entries, list):
        return []
    return [e for e in entries if isinstance(e, dict) and isinstance(e.get("bands"), dict)]


def _layout(array: zarr.Array[Any]) -> dict[str, Any]:
    shards = array.shards
    return {
        "shape": list(array.shape),
        "dtype": str(array.dtype),
        "chunks": list(array.chunks),
        "shards": None if shards is None else list(shards),
    }


def _values(arrays: dict[str, Any], name: str) -> np.ndarray | None:
    return np.asarray(arrays[name][...]) if name in arrays else None


def _counts(arrays: dict[str, Any], dim: str, labels: np.ndarray | None) -> dict[str, int] | None:
    names = _values(arrays, dim)
    if labels is None or names is None:
        return None
    totals = labels.sum(axis=0)
    return {str(name): int(total) for name, total in zip(names, totals, strict=True)}


def _flag_count(arrays: dict[str, Any], name: str) -> int | None:
    values = _values(arrays, name)
    return None if values is None else int(values.sum())


def _split_counts(arrays: dict[str, Any]) -> dict[str, int] | None:
    values = _values(arrays, "split")
    if values is None:
        return None
    names, counts = np.unique(values.astype(object), return_counts=True)
    found = dict(zip((str(n) for n in names), (int(c) for c in counts), strict=True))
    ordered = {s: found.pop(s, 0) for s in (*SPLITS, "")}
    return ordered | found


def render(facts: dict[str, Any]) -> str:
    """The summary as the text ``ingest info`` prints."""
    attrs = facts["attributes"]
    samples = facts["samples"]
    lines = [
        f"store:            {facts['store']}",
        f"complete:         {'yes' if facts['complete'] else _UNFINISHED}",
        f"samples:          {'unknown (not finished)' if samples is None else f'{samples:,}'}",
        f"size on disk:     {human_bytes(facts['size_bytes'])}",
        f"ingest version:   {attrs.get('ingest_version') or '-'}"
        f" (contract {attrs.get('contract_version') or '-'})",
        f"dataset:          {attrs.get('dataset') or '-'} (layout {attrs.get('layout') or '-'})",
        f"modalities:       {', '.join(_MODALITY_NAMES[m] for m in facts['modalities']) or '-'}",
        f"created:          {attrs.get('created') or '-'}",
        f"skipped items:    {attrs.get('skipped', 0):,}",
    ]
    for flag in ("cloud_and_shadow", "seasonal_snow"):
        if facts[flag] is not None:
            lines.append(f"{flag + ':':<18}{facts[flag]:,} {_share(facts[flag], samples)}")
    if facts["split_counts"] is not None:
        parts = [f"{name or 'none'} {count:,}" for name, count in facts["split_counts"].items()]
        lines.append(f"splits:           {', '.join(parts)}")
    lines.append("layout:")
    for name, layout in facts["layout"].items():
        shards = layout["shards"]
        lines.append(
            f"  {name:<17}{_shape(layout['shape']):<23}{layout['dtype']:<7}"
            f"chunk {_shape(layout['chunks'])}"
            + ("" if shards is None else f", shard {_shape(shards)}")
        )
    for entry in facts.get("statistics", []):
        split, size = entry.get("split") or "all samples", entry.get("size")
        lines.append(f"statistics ({split}, {entry.get('samples', 0):,} samples, "
                     f"{size} x {size}, {entry.get('interpolation')}):")  # fmt: skip
        for band, values in entry["bands"].items():
            lines.append(f"  {band:<5} mean {values['mean']:>12.4f}  std {values['std']:>12.4f}")
    if facts["class_counts"] is not None:
        lines.append(f"classes ({facts['classes']}, canonical order):")
        width = max(len(f"{c:,}") for c in facts["class_counts"].values())
        for index, (name, count) in enumerate(facts["class_counts"].items()):
            lines.append(f"  {index:2d}  {count:>{width},}  {name}")
    return "\n".join(lines)


def _shape(shape: list[int]) -> str:
    return "(" + ", ".join(str(n) for n in shape) + ")"


def _share(count: int, total: int | None) -> str:
    return f"({100 * count / total:.1f}%)" if total else ""


#: CORINE Land Cover 2018 Level-3 code -> (name, RGB) for the 43 classes of BigEarthNet (every
#: Level-3 class but 335 "Glaciers and perpetual snow"), in code order = the canonical order of
#: the 43 classes, with BigEarthNet's spelling of the names (four differ slightly from the CLC
#: legend's: "Natural grassland", "Transitional woodland/shrub", "Bare rock", "Peatbogs"). The
#: colours are the official CLC legend's (the EEA's ``clc_legend.csv``, column RGB), transcribed
#: from two public copies of that file that agree; not checked against the EEA's own download.
CLC_CLASSES: dict[int, tuple[str, tuple[int, int, int]]] = {
    111: ("Continuous urban fabric", (230, 0, 77)),
    112: ("Discontinuous urban fabric", (255, 0, 0)),
    121: ("Industrial or commercial units", (204, 77, 242)),
    122: ("Road and rail networks and associated land", (204, 0, 0)),
    123: ("Port areas", (230, 204, 204)),
    124: ("Airports", (230, 204, 230)),
    131: ("Mineral extraction sites", (166, 0, 204)),
    132: ("Dump sites", (166, 77, 0)),
    133: ("Construction sites", (255, 77, 255)),
    141: ("Green urban areas", (255, 166, 255)),
    142: ("Sport and leisure facilities", (255, 230, 255)),
    211: ("Non-irrigated arable land", (255, 255, 168)),
    212: ("Permanently irrigated land", (255, 255, 0)),
    213: ("Rice fields", (230, 230, 0)),
    221: ("Vineyards", (230, 128, 0)),
    222: ("Fruit trees and berry plantations", (242, 166, 77)),
    223: ("Olive groves", (230, 166, 0)),
    231: ("Pastures", (230, 230, 77)),
    241: ("Annual crops associated with permanent crops", (255, 230, 166)),
    242: ("Complex cultivation patterns", (255, 230, 77)),
    243: (
        "Land principally occupied by agriculture, with significant areas of natural vegetation",
        (230, 204, 77),
    ),
    244: ("Agro-forestry areas", (242, 204, 166)),
    311: ("Broad-leaved forest", (128, 255, 0)),
    312: ("Coniferous forest", (0, 166, 0)),
    313: ("Mixed forest", (77, 255, 0)),
    321: ("Natural grassland", (204, 242, 77)),
    322: ("Moors and heathland", (166, 255, 128)),
    323: ("Sclerophyllous vegetation", (166, 230, 77)),
    324: ("Transitional woodland/shrub", (166, 242, 0)),
    331: ("Beaches, dunes, sands", (230, 230, 230)),
    332: ("Bare rock", (204, 204, 204)),
    333: ("Sparsely vegetated areas", (204, 255, 204)),
    334: ("Burnt areas", (0, 0, 0)),
    411: ("Inland marshes", (166, 166, 255)),
    412: ("Peatbogs", (77, 77, 255)),
    421: ("Salt marshes", (204, 204, 255)),
    422: ("Salines", (230, 230, 255)),
    423: ("Intertidal flats", (166, 166, 230)),
    511: ("Water courses", (0, 204, 242)),
    512: ("Water bodies", (128, 242, 230)),
    521: ("Coastal lagoons", (0, 255, 166)),
    522: ("Estuaries", (166, 255, 230)),
    523: ("Sea and ocean", (230, 242, 255)),
}
#: No data in a reference map: 0 (the contract's) and 999 (CLC's NODATA code); drawn white, as
#: the CLC legend draws its unclassified codes (our choice for these two).
CLC_NO_DATA: dict[int, tuple[str, tuple[int, int, int]]] = {
    0: ("no data", (255, 255, 255)),
    999: ("no data", (255, 255, 255)),
}
#: Any other code: mid grey, labelled with its number.
_CLC_OTHER = (128, 128, 128)


def clc_legend(code: int) -> tuple[str, tuple[int, int, int]]:
    """The name and RGB of a reference-map code (:data:`CLC_CLASSES`, :data:`CLC_NO_DATA`, else
    ``"CLC <code> (not a BigEarthNet class)"`` in grey)."""
    known = CLC_CLASSES.get(code) or CLC_NO_DATA.get(code)
    return known or (f"CLC {code} (not a BigEarthNet class)", _CLC_OTHER)


def clc_rgb(codes: np.ndarray) -> np.ndarray:
    """A reference map (CLC codes, any shape) as uint8 RGB (shape + (3,)), :func:`clc_legend`'s
    colours."""
    values, inverse = np.unique(np.asarray(codes), return_inverse=True)
    palette = np.array([clc_legend(int(v))[1] for v in values], dtype=np.uint8).reshape(-1, 3)
    image: np.ndarray = palette[inverse.reshape(np.shape(codes))]
    return image


def plot(
    store: str | os.PathLike[str],
    png_path: str | os.PathLike[str],
    storage_options: dict[str, Any] | None = None,
) -> Figure:
    """Write a PNG (1600 × 900 px) of the store; returns the matplotlib Figure written.

    Left: class frequencies (in the store's nomenclature: 19 classes for a ``bigearthnet-v2``
    store). Right: a mosaic of patches evenly spaced through the store, each titled with its
    classes. On a Sentinel-2-only store, up to 16 true-colour patches (:meth:`BenAccessor.rgb`
    stretch). On a store with Sentinel-1 and/or reference maps, each patch is a group of panels,
    side by side: true colour, then the S1 false colour (:meth:`BenAccessor.s1_rgb`: R = VV
    over [−25, 0] dB, G = VH over [−30, −5] dB, B = VV − VH (the VV/VH ratio) over [0, 15] dB),
    then the reference map in the official CLC 2018 Level-3 colours (:data:`CLC_CLASSES`); up to
    8 patches with all three panels, 12 with two. A map legend (code, name, colour of every code
    in the maps shown) then sits under the class frequencies.

    Every axes carries a label naming what it shows (``Axes.get_label()``): ``classes``,
    ``rgb``, ``s1``, ``reference_map``, ``legend``. Raises :class:`~ingest.errors.UsageError`
    when the file cannot be written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    facts = summary(store, storage_options)
    extras = [m for m in ("s1", "reference_maps") if m in facts["modalities"]]
    per_patch = 1 + len(extras)
    groups = {1: 4, 2: 3, 3: 2}[per_patch]  # patch groups per mosaic row; 4 rows
    samples = _mosaic_samples(facts, 4 * groups)
    with_legend = "reference_maps" in extras and bool(samples)
    figure = Figure(figsize=(16, 9), dpi=100)
    FigureCanvasAgg(figure)  # Agg: renders to a file, needs no display
    # Left: the class frequencies (43 or 19: the store's nomenclature), and the maps' legend.
    # With panel groups the mosaic takes more of the width (the bars' labels need 0.13 of it).
    split = (0.14, 0.37, 0.41) if extras else (0.2, 0.47, 0.52)
    bars = figure.add_subplot(
        figure.add_gridspec(
            1, 1, left=split[0], right=split[1], top=0.93, bottom=0.42 if with_legend else 0.11
        )[0],
        label="classes",
    )
    counts = facts["class_counts"] or {}
    bars.barh(range(len(counts)), list(counts.values()), color="#4a7f4a")
    bars.set_yticks(range(len(counts)), [textwrap.shorten(n, 48) for n in counts], fontsize=6)
    bars.invert_yaxis()
    bars.set_xlabel("patches")
    bars.set_title(
        f"class frequencies ({facts['samples'] or 0:,} patches, {facts['classes']} classes)",
        fontsize=10,
    )
    # Right: the mosaic, one group of panels per patch (an empty narrow column between groups).
    ratios = ([1.0] * per_patch + [0.2]) * groups
    cells = figure.add_gridspec(
        4, len(ratios) - 1, width_ratios=ratios[:-1], left=split[2], right=0.98,
        top=0.93 if extras else 0.95, bottom=0.02, hspace=0.4, wspace=0.04,
    )  # fmt: skip
    ben = BenAccessor(_open_quietly(store, storage_options)) if samples else None
    codes: set[int] = set()
    for k, i in enumerate(samples):
        assert ben is not None
        row, first = k // groups, (k % groups) * (per_patch + 1)
        images: list[tuple[str, np.ndarray]] = [("rgb", ben.rgb(i))]
        if "s1" in extras:
            images.append(("s1", ben.s1_rgb(i)))
        if "reference_maps" in extras:
            reference_map = np.asarray(ben.reference_map(i).values)
            codes.update(int(c) for c in np.unique(reference_map))
            images.append(("reference_map", clc_rgb(reference_map)))
        for offset, (label, image) in enumerate(images):
            axes = figure.add_subplot(cells[row, first + offset], label=label)
            axes.imshow(image, interpolation="nearest")
            axes.set_axis_off()
            if offset == 0:  # the classes, over the whole group
                title = "; ".join(ben.labels_of(i)) or "(no class)"
                width = 32 * per_patch  # characters of 6 pt across the group
                text = textwrap.fill(textwrap.shorten(title, 3 * width), width)
                axes.set_title(text, fontsize=6, loc="left")
    if extras and samples:
        names = {"s1": "S1 (R VV, G VH, B VV−VH)", "reference_maps": "reference map (CLC 2018)"}
        figure.text(
            split[2], 0.985, "each patch: true colour (B04 B03 B02) | "
            + " | ".join(names[m] for m in extras), fontsize=9, va="top",
        )  # fmt: skip
    if with_legend:
        legend = figure.add_subplot(
            figure.add_gridspec(1, 1, left=0.02, right=0.47, top=0.34, bottom=0.01)[0],
            label="legend",
        )
        legend.set_axis_off()
        entries = sorted(codes, key=lambda c: (c in CLC_NO_DATA, c))
        handles = [
            Patch(
                facecolor="#{:02x}{:02x}{:02x}".format(*clc_legend(c)[1]),
                edgecolor="#808080",
                label=f"{c}  {textwrap.shorten(clc_legend(c)[0], 60)}",
            )
            for c in entries
        ]
        legend.legend(
            handles=handles,
            loc="upper left",
            ncol=2 if len(handles) <= 30 else 3,
            fontsize=7,
            frameon=False,
            title="reference maps: CORINE Land Cover 2018 Level-3 codes (0 = no data, white)",
            title_fontsize=8,
            alignment="left",
        )
    try:
        figure.savefig(os.fspath(png_path), format="png")
    except OSError as exc:
        raise UsageError(f"{png_path}: cannot write the figure ({exc.strerror})") from None
    return figure


def _mosaic_samples(facts: dict[str, Any], count: int = MOSAIC) -> list[int]:
    samples = facts["samples"] or 0
    if "bands_10m" not in facts["layout"] or samples == 0:
        return []
    return sorted({round(x) for x in np.linspace(0, samples - 1, min(count, samples))})


def _open_quietly(
    store: str | os.PathLike[str], storage_options: dict[str, Any] | None
) -> xr.Dataset:
    with warnings.catch_warnings():
        # The summary already says when the store is unfinished; the figure shows what is there.
        warnings.simplefilter("ignore", IncompleteStoreWarning)
        return open_store(store, storage_options=storage_options)

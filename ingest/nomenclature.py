"""BigEarthNet v1 vocabulary: class nomenclatures, band groups, patch names, collection ids.

The class tables come from ``bigearthnet_common.constants`` (the dataset authors' own package),
in the canonical order of ``label_indices.json`` (the order torchgeo uses), never sorted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from bigearthnet_common.constants import NEW_LABELS_ORIGINAL_ORDER, OLD2NEW_LABELS_DICT

#: The 43 CORINE land-cover classes of BigEarthNet v1, canonical order.
CLASSES_43: tuple[str, ...] = tuple(OLD2NEW_LABELS_DICT)
#: The 19-class nomenclature, canonical order.
CLASSES_19: tuple[str, ...] = tuple(NEW_LABELS_ORIGINAL_ORDER)
#: For each of the 43 classes, the index of its 19-class target, or -1 when it has none.
CLASS_43_TO_19: tuple[int, ...] = tuple(
    -1 if target is None else CLASSES_19.index(target) for target in OLD2NEW_LABELS_DICT.values()
)
CLASS_INDEX: dict[str, int] = {name: i for i, name in enumerate(CLASSES_43)}

LABELS_COLLECTION = "bigearthnet_v1_labels"
SOURCE_COLLECTION = "bigearthnet_v1_source"


@dataclass(frozen=True)
class BandGroup:
    """Bands sharing one ground sampling distance, stored together in one array."""

    resolution: str
    """Suffix of the store's names, e.g. ``"10m"`` for ``bands_10m``."""
    bands: tuple[str, ...]
    """Band names in store order."""
    size: int
    """Patch width and height in pixels."""
    gsd: float
    """Pixel size in metres."""

    @property
    def array_name(self) -> str:
        return f"bands_{self.resolution}"

    @property
    def dims(self) -> tuple[str, str, str, str]:
        r = self.resolution
        return ("sample", f"band_{r}", f"y_{r}", f"x_{r}")


BAND_GROUPS: tuple[BandGroup, ...] = (
    BandGroup("10m", ("B02", "B03", "B04", "B08"), 120, 10.0),
    BandGroup("20m", ("B05", "B06", "B07", "B8A", "B11", "B12"), 60, 20.0),
    BandGroup("60m", ("B01", "B09"), 20, 60.0),
)
#: The 12 bands of BigEarthNet v1 (L2A has no B10), in file-name order.
BANDS: tuple[str, ...] = tuple(sorted(b for g in BAND_GROUPS for b in g.bands))
#: Where each band goes: band name -> (group, position in the group).
BAND_SLOT: dict[str, tuple[BandGroup, int]] = {
    b: (g, i) for g in BAND_GROUPS for i, b in enumerate(g.bands)
}

#: A v1 patch name. The time has 5 or 6 digits: 69,866 real names lost the hour's leading zero,
#: so names are parsed with this pattern and never rebuilt from their parts.
PATCH_NAME = re.compile(
    r"^(?P<mission>S2[AB])_MSIL2A_(?P<date>\d{8})T(?P<time>\d{5,6})_(?P<h>\d{1,2})_(?P<v>\d{1,2})$"
)


def patch_of(item_id: str) -> str:
    """The patch name of an MLHub item id (``bigearthnet_v1_source_<patch>`` -> ``<patch>``).

    Ids without a known collection prefix are returned unchanged.
    """
    for collection in (LABELS_COLLECTION, SOURCE_COLLECTION):
        prefix = collection + "_"
        if item_id.startswith(prefix):
            return item_id[len(prefix) :]
    return item_id


def label_arrays(masks: Iterable[int]) -> tuple[np.ndarray, np.ndarray]:
    """Expand 43-bit class masks into (n, 43) and (n, 19) boolean arrays (official mapping)."""
    packed = np.frombuffer(b"".join(m.to_bytes(6, "little") for m in masks), dtype=np.uint8)
    bits = np.unpackbits(packed.reshape(-1, 6), axis=1, bitorder="little")
    labels43 = bits[:, : len(CLASSES_43)].astype(bool)
    return labels43, labels19_of(labels43)


def labels19_of(labels43: np.ndarray) -> np.ndarray:
    """The 19-class view of (n, 43) labels: a 19-class target is set when any of its sources is."""
    labels19 = np.zeros((labels43.shape[0], len(CLASSES_19)), dtype=bool)
    for i43, i19 in enumerate(CLASS_43_TO_19):
        if i19 >= 0:
            labels19[:, i19] |= labels43[:, i43]
    return labels19

"""The selection's class mask."""

from __future__ import annotations

from ingest.layouts.labels import Selection
from ingest.nomenclature import CLASSES_19, CLASSES_43


def test_a_class_named_twice_is_one_bit() -> None:
    once = Selection(classes=("Rice fields",)).mask_in(CLASSES_43)
    twice = Selection(classes=("Rice fields", "Rice fields")).mask_in(CLASSES_43)
    assert twice == once == 1 << CLASSES_43.index("Rice fields")
    both = Selection(classes=("Marine waters", "Inland waters", "Marine waters"))
    assert both.mask_in(CLASSES_19) == (1 << CLASSES_19.index("Marine waters")) | (
        1 << CLASSES_19.index("Inland waters")
    )
    assert not Selection(classes=("Rice fields", "Rice fields")).keeps(
        1 << (CLASSES_43.index("Rice fields") + 1), cloud=False, snow=False
    )

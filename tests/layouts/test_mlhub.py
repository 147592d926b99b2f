"""Label items: schema validation with one-line messages, the notebook's selection, the label index."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest

from ingest import schemas
from ingest.errors import InputDataError, UsageError
from ingest.layouts.labels import LabelIndex, Selection
from ingest.layouts.mlhub import parse_label_item
from ingest.nomenclature import (
    CLASS_43_TO_19,
    CLASSES_19,
    CLASSES_43,
    PATCH_NAME,
    label_arrays,
    patch_of,
)

from ..conftest import item_documents

MEMBER = "bigearthnet_v1_labels/bigearthnet_v1_labels_X/stac.json"


@pytest.fixture
def item(real_sample: Any) -> dict[str, Any]:
    return copy.deepcopy(next(item_documents(real_sample.labels)))


def test_nomenclature_is_the_reference_order() -> None:
    # shared/reference/bigearthnet.md: canonical order of label_indices.json
    assert CLASSES_43[0] == "Continuous urban fabric"
    assert CLASSES_43[20].startswith("Land principally occupied by agriculture")
    assert CLASSES_43[34] == "Peatbogs" and CLASSES_43[42] == "Sea and ocean"
    assert CLASSES_19[11] == "Natural grassland and sparsely vegetated areas"
    sources = {i19: [i for i, t in enumerate(CLASS_43_TO_19) if t == i19] for i19 in range(19)}
    assert sources[0] == [0, 1] and sources[2] == [11, 12, 13] and sources[3] == [14, 15, 16, 18]
    assert sources[11] == [25, 31] and sources[12] == [26, 27] and sources[18] == [40, 41, 42]
    assert [i for i, t in enumerate(CLASS_43_TO_19) if t == -1] == [
        3,
        4,
        5,
        6,
        7,
        8,
        9,
        10,
        30,
        32,
        37,
    ]


def test_schema_enumerates_the_43_classes() -> None:
    schema = schemas.load(schemas.LABEL_ITEM)
    assert schema["properties"]["properties"]["properties"]["labels"]["items"]["enum"] == list(
        CLASSES_43
    )


def test_patch_names() -> None:
    assert PATCH_NAME.match("S2B_MSIL2A_20170924T93020_69_24")  # the 5-digit-hour bug
    assert PATCH_NAME.match("S2A_MSIL2A_20170613T101031_0_45")
    assert not PATCH_NAME.match("S2A_MSIL2A_20170613T101031_045")
    assert (
        patch_of("bigearthnet_v1_source_S2A_MSIL2A_20170613T101031_0_45")
        == "S2A_MSIL2A_20170613T101031_0_45"
    )


def test_parse_real_label_item(item: dict[str, Any]) -> None:
    entry = parse_label_item(item, MEMBER)
    assert entry.patch == item["id"].removeprefix("bigearthnet_v1_labels_")
    assert [CLASSES_43[i] for i in range(43) if entry.label_mask >> i & 1] == sorted(
        item["properties"]["labels"], key=CLASSES_43.index
    )


def test_absolute_api_source_link(item: dict[str, Any]) -> None:
    for link in item["links"]:
        if link["rel"] == "source":
            link["href"] = (
                "http://127.0.0.1:1/mlhub/v1/collections/bigearthnet_v1_source/items/bigearthnet_v1_source_S2A_MSIL2A_20170613T101031_87_48"
            )
    assert parse_label_item(item, MEMBER).patch == "S2A_MSIL2A_20170613T101031_87_48"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["properties"].pop("labels"), "properties: 'labels' is a required property"),
        (lambda d: d["properties"]["labels"].append("Atlantis"), "unknown class name 'Atlantis'"),
        (lambda d: d["properties"].update(seasonal_snow="maybe"),
         "properties.seasonal_snow: 'maybe' is neither a boolean nor 'true'/'false'"),
        (lambda d: d["properties"].update(cloud_and_shadow=1),
         "properties.cloud_and_shadow: 1 is neither a boolean nor 'true'/'false'"),
        (lambda d: d["properties"].update(cloud_and_shadow="True"),
         "properties.cloud_and_shadow: 'True' is neither a boolean nor 'true'/'false'"),
        (lambda d: d.update(links=[x for x in d["links"] if x["rel"] != "source"]),
         "links: expected exactly one 'source' link, found 0"),
        (lambda d: d["links"].append({"rel": "source", "href": "../../x/y/stac.json"}),
         "links: expected exactly one 'source' link, found 2"),
        (lambda d: d["properties"].update(datetime="yesterday"),
         "properties.datetime: 'yesterday' is not an ISO date-time"),
    ],
)  # fmt: skip
def test_bad_label_items_name_the_culprit(item: dict[str, Any], edit: Any, message: str) -> None:
    edit(item)
    with pytest.raises(InputDataError) as raised:
        parse_label_item(item, MEMBER)
    assert raised.value.culprit == MEMBER
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_flags_as_booleans_and_strings(item: dict[str, Any]) -> None:
    item["properties"].update(cloud_and_shadow=True, seasonal_snow="false")
    entry = parse_label_item(item, MEMBER)
    assert (entry.cloud_and_shadow, entry.seasonal_snow) == (True, False)
    item["properties"].update(cloud_and_shadow="true", seasonal_snow=False)
    entry = parse_label_item(item, MEMBER)
    assert (entry.cloud_and_shadow, entry.seasonal_snow) == (True, False)


def test_selection_semantics() -> None:
    forest = 1 << CLASSES_43.index("Coniferous forest")
    pasture = 1 << CLASSES_43.index("Pastures")
    assert Selection().keeps(forest, cloud=True, snow=True)
    any_of = Selection(("Coniferous forest", "Pastures"))
    assert any_of.keeps(forest, False, False) and any_of.keeps(pasture | forest, False, False)
    assert not any_of.keeps(1 << 0, False, False)
    assert not Selection(cloud_and_shadow=False).keeps(forest, cloud=True, snow=False)
    assert Selection(cloud_and_shadow=False, seasonal_snow=True).keeps(forest, False, True)
    with pytest.raises(UsageError, match="unknown class name 'Forest'"):
        Selection(("Forest",))


def test_label_arrays_and_index() -> None:
    masks = [1 << 0 | 1 << 34, 1 << 42, (1 << 43) - 1]
    labels43, labels19 = label_arrays(masks)
    assert labels43.shape == (3, 43) and labels19.shape == (3, 19)
    assert list(np.flatnonzero(labels43[0])) == [0, 34]
    assert list(np.flatnonzero(labels19[0])) == [0, 15]  # Urban fabric, Inland wetlands
    assert list(np.flatnonzero(labels19[1])) == [18]
    assert labels19[2].all()
    index = LabelIndex(selection=Selection(seasonal_snow=True))
    from ingest.layouts.labels import LabelEntry

    index.add(LabelEntry("a", masks[0], False, True, 10), "m/a")
    index.add(LabelEntry("b", masks[1], True, False, 20), "m/b")
    assert (len(index), index.selected_count, index.unmatched_selected()) == (2, 1, ["a"])
    with pytest.raises(InputDataError, match="a second label entry for patch a"):
        index.add(LabelEntry("a", 0, False, False, 0), "m/a2")

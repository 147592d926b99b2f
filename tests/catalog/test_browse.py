"""Browsing like the notebook (``ingest.catalog.browse``) against the emulator serving the real and a
synthetic sample: collections, items found with ``filter_item`` semantics, lazy paging, errors."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ingest.catalog import browse as catalog
from ingest.catalog.browse import collection_matches, find_items, item_matches, list_collections
from ingest.errors import AuthError, NetworkError, NotFoundError
from ingest.layouts.labels import Selection
from ingest.sources.download import RetryPolicy
from ingest.sources.endpoint import Endpoint
from ingest.testing.archive_writer import iter_members
from ingest.testing.emulator import Emulator
from ingest.testing.faults import Faults
from ingest.testing.samples import SampleArchives, SampleOptions, write_synthetic_sample

from ..conftest import EMULATOR_KEY, item_documents

KEY = EMULATOR_KEY
ENDPOINT = Endpoint(api_key=KEY)
FAST = RetryPolicy(backoff=0.01, read_timeout=10)
LABELS, SOURCE = "bigearthnet_v1_labels", "bigearthnet_v1_source"


@dataclass(frozen=True)
class Served:
    archives: SampleArchives
    emulator: Emulator

    def item_pages(self, collection: str = LABELS) -> list[dict[str, list[str]]]:
        """The query of every items-page request, in order."""
        path = f"/mlhub/v1/collections/{collection}/items"
        return [r.query for r in self.emulator.requests if r.path == path]


@pytest.fixture
def mlhub(mlhub: tuple[SampleArchives, Emulator]) -> Served:
    return Served(*mlhub)


def collection_document(archive: Path) -> dict[str, Any]:
    for info, data in iter_members(archive):
        if data is not None and info.name.endswith("/collection.json"):
            return dict(json.loads(data))
    raise AssertionError(f"no collection.json in {archive}")


def notebook_filter(
    item: dict[str, Any],
    classes: list[str] | None = None,
    cloud_and_shadow: bool | None = None,
    seasonal_snow: bool | None = None,
) -> bool:
    """The notebook's ``filter_item``, reading flags sent as strings or booleans."""
    props = item["properties"]
    if classes is not None and not any(label in classes for label in props.get("labels", [])):
        return False
    cloud = props.get("cloud_and_shadow", "false") in ("true", True)
    if cloud_and_shadow is not None and cloud != cloud_and_shadow:
        return False
    snow = props.get("seasonal_snow", "false") in ("true", True)
    return seasonal_snow is None or snow == seasonal_snow


SELECTIONS = [
    ((), None, None),
    (("Coniferous forest", "Rice fields"), False, False),  # the notebook's own example
    (("Pastures",), None, None),
    (("Non-irrigated arable land", "Water bodies"), None, True),
    ((), True, None),
    ((), False, None),
    ((), None, False),
    (("Sea and ocean", "Beaches, dunes, sands", "Peatbogs"), False, None),
]


# --- collections --------------------------------------------------------------------------------


def test_list_collections_as_the_archives_describe_them(mlhub: Served) -> None:
    found = list_collections(endpoint=ENDPOINT)
    assert sorted(c["id"] for c in found) == [LABELS, SOURCE]
    for collection in found:
        archive = mlhub.archives.labels if collection["id"] == LABELS else mlhub.archives.source
        document = collection_document(archive)
        assert catalog.collection_summary(collection) == {
            "id": document["id"],
            "title": None,
            "license": document["license"],
            "citation": document["sci:citation"],
            "stac_extensions": document["stac_extensions"],
        }
    assert [r.path for r in mlhub.emulator.requests] == ["/mlhub/v1/collections"]
    assert mlhub.emulator.requests[0].query["key"] == ["REDACTED"]  # the key went along


@pytest.mark.parametrize(
    ("text", "expected"),
    [("bigearthnet", [LABELS, SOURCE]), ("BIGEARTHNET V1.0", [LABELS, SOURCE]),
     ("_labels", [LABELS]), ("Source", [SOURCE]), ("sentinel-1", [])],
)  # fmt: skip
def test_collection_filter(mlhub: Served, text: str, expected: list[str]) -> None:
    assert sorted(c["id"] for c in list_collections(text, endpoint=ENDPOINT)) == expected


def test_collection_filter_tolerates_missing_title_and_description() -> None:
    assert collection_matches({"id": "x", "title": None, "description": "My BigEarthNet"}, "bigear")
    assert collection_matches({"id": "x", "title": "BigEarthNet"}, "earth")
    assert not collection_matches({"id": "x", "title": None, "description": None}, "earth")
    assert collection_matches({"id": "ref_bigearthnet"}, "BigEarthNet")


def test_describe_collection_prints_what_the_notebook_printed() -> None:
    summary = catalog.collection_summary(
        {"id": "c", "license": "CC-BY-4.0", "stac_extensions": ["label", "scientific"]}
    )
    assert catalog.describe_collection(summary) == (
        "ID:       c\nLicense:  CC-BY-4.0\nCitation: N/A\nSTAC Extensions: label, scientific\n"
    )


# --- items ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("classes", "cloud", "snow"), SELECTIONS)
def test_find_items_matches_the_notebook_filter_on_the_archive(
    mlhub: Served, classes: tuple[str, ...], cloud: bool | None, snow: bool | None
) -> None:
    expected = [
        doc["id"]
        for doc in item_documents(mlhub.archives.labels)
        if notebook_filter(doc, list(classes) or None, cloud, snow)
    ]
    found = find_items(LABELS, Selection(classes, cloud, snow), page_size=7, endpoint=ENDPOINT)
    assert [item["id"] for item in found] == expected
    assert len(mlhub.item_pages()) == len(mlhub.archives.patches) // 7 + 1


def test_counts_per_filter_on_the_real_sample(real_sample: SampleArchives, tmp_path: Path) -> None:
    """The real patches' facts, counted by hand from the example data."""
    documents = list(item_documents(real_sample.labels))
    assert len(documents) == 6
    assert sum(notebook_filter(d, ["Coniferous forest", "Pastures"]) for d in documents) == 4
    assert sum(notebook_filter(d, seasonal_snow=True) for d in documents) == 1
    assert (
        sum(item_matches(d, Selection(("Coniferous forest", "Pastures"))) for d in documents) == 4
    )
    assert sum(item_matches(d, Selection(seasonal_snow=True)) for d in documents) == 1
    assert sum(item_matches(d, Selection(cloud_and_shadow=True)) for d in documents) == 0


FLAG_FILTERS = ((True, None), (False, None), (None, True), (None, False))


def _ids_per_flag_filter(archives: SampleArchives) -> list[list[str]]:
    with (
        Emulator(archives.labels.parent, api_key=KEY) as emulator,
        pytest.MonkeyPatch.context() as env,
    ):
        env.setenv("MLHUB_ROOT_URL", emulator.root_url)
        return [
            [item["id"] for item in find_items(LABELS, Selection((), c, s), endpoint=ENDPOINT)]
            for c, s in FLAG_FILTERS
        ]


def test_flags_sent_as_booleans_filter_the_same(tmp_path: Path) -> None:
    strings = write_synthetic_sample(tmp_path / "s", 40, seed=11)
    options = SampleOptions(flags="bool")
    booleans = write_synthetic_sample(tmp_path / "b", 40, seed=11, options=options)
    assert isinstance(next(item_documents(booleans.labels))["properties"]["seasonal_snow"], bool)
    found = _ids_per_flag_filter(strings)
    assert _ids_per_flag_filter(booleans) == found
    documents = list(item_documents(strings.labels))
    assert [len(ids) for ids in found] == [
        sum(notebook_filter(d, cloud_and_shadow=c, seasonal_snow=s) for d in documents)
        for c, s in FLAG_FILTERS
    ]
    assert len(found[0]) + len(found[1]) == 40


def test_item_matches_flag_semantics() -> None:
    def item(**props: Any) -> dict[str, Any]:
        return {"properties": {"labels": ["Pastures"], **props}}

    snowy = Selection(seasonal_snow=True)
    assert item_matches(item(seasonal_snow="true"), snowy)
    assert item_matches(item(seasonal_snow=True), snowy)
    assert not item_matches(item(seasonal_snow="false"), snowy)
    assert not item_matches(item(seasonal_snow=False), snowy)
    assert not item_matches(item(), snowy)  # missing: the notebook's default 'false'
    assert item_matches(item(), Selection(seasonal_snow=False))
    assert not item_matches(item(seasonal_snow="True"), snowy)  # the notebook compares == 'true'
    assert item_matches(item(cloud_and_shadow=True), Selection(cloud_and_shadow=True))
    assert item_matches(item(), Selection(("Rice fields", "Pastures")))
    assert not item_matches(item(), Selection(("Rice fields",)))
    assert not item_matches({"properties": {}}, Selection(("Rice fields",)))
    assert item_matches({"properties": {}}, Selection())


def _latest_first_match(archives: SampleArchives) -> tuple[str, int]:
    """The class whose first label item comes latest in the collection, and that position."""
    first: dict[str, int] = {}
    for position, doc in enumerate(item_documents(archives.labels)):
        for label in doc["properties"]["labels"]:
            first.setdefault(label, position)
    name = max(first, key=lambda label: first[label])
    return name, first[name]


@pytest.mark.parametrize("page_size", [1, 2, 4])
def test_max_items_one_requests_only_the_pages_it_needs(mlhub: Served, page_size: int) -> None:
    name, position = _latest_first_match(mlhub.archives)
    assert position >= 2  # with pages of 1 or 2 items, the match is not on the first page
    found = list(find_items(LABELS, Selection((name,)), max_items=1, page_size=page_size,
                            endpoint=ENDPOINT))  # fmt: skip
    assert len(found) == 1
    assert name in found[0]["properties"]["labels"]
    pages = mlhub.item_pages()
    assert len(pages) == position // page_size + 1
    # The client's limit is re-sent with every page, as radiant-mlhub's paginate does.
    assert all(query["limit"][-1] == str(page_size) for query in pages)
    assert all(query["key"] == ["REDACTED"] for query in pages)


def test_find_items_is_lazy(mlhub: Served) -> None:
    items = find_items(LABELS, page_size=2, endpoint=ENDPOINT)
    assert mlhub.item_pages() == []  # a generator: nothing requested yet
    first = next(items)
    assert first["id"] == next(item_documents(mlhub.archives.labels))["id"]
    assert len(mlhub.item_pages()) == 1
    items.close()
    assert len(mlhub.item_pages()) == 1


def test_max_items_stops_at_a_page_boundary_without_asking_for_more(mlhub: Served) -> None:
    found = list(find_items(LABELS, max_items=4, page_size=2, endpoint=ENDPOINT))
    assert len(found) == 4
    assert len(mlhub.item_pages()) == 2
    assert list(find_items(LABELS, max_items=0, endpoint=ENDPOINT)) == []
    assert len(mlhub.item_pages()) == 2


def test_selection_limit_caps_without_max_items(mlhub: Served) -> None:
    assert len(list(find_items(LABELS, Selection(limit=3), page_size=5, endpoint=ENDPOINT))) == 3


def test_item_summary_of_a_source_item_follows_the_archive(mlhub: Served) -> None:
    document = next(item_documents(mlhub.archives.source))
    item = catalog.get_item(SOURCE, document["id"], endpoint=ENDPOINT)
    summary = catalog.item_summary(item)
    assert summary["id"] == document["id"]
    assert summary["platform"] == "Sentinel-2"
    assert summary["labels"] is None and summary["seasonal_snow"] is None
    assert [a["key"] for a in summary["assets"]] == list(document["assets"])
    for asset in summary["assets"]:
        archived = document["assets"][asset["key"]]
        assert asset["type"] == "image/tiff; application=geotiff; profile=cloud-optimized"
        assert asset["bands"] == [b["common_name"] for b in archived["eo:bands"]]
    text = catalog.describe_item(summary)
    assert text.startswith(f"ID: {document['id']}\n  Platform: Sentinel-2\n")
    assert (
        "    B02: image/tiff; application=geotiff; profile=cloud-optimized  bands: Blue\n" in text
    )


def test_item_summary_of_a_label_item(mlhub: Served) -> None:
    document = next(item_documents(mlhub.archives.labels))
    summary = catalog.item_summary(next(find_items(LABELS, max_items=1, endpoint=ENDPOINT)))
    assert summary["labels"] == document["properties"]["labels"]
    assert summary["seasonal_snow"] is (document["properties"]["seasonal_snow"] == "true")
    assert summary["assets"] == [{"key": "labels", "title": "Land Type Classes",
                                  "type": "application/geo+json", "bands": []}]  # fmt: skip
    (source,) = summary["sources"]
    assert source == (
        f"{mlhub.emulator.root_url}collections/{SOURCE}/items/"
        + document["id"].replace(LABELS, SOURCE)
    )


# --- errors --------------------------------------------------------------------------------------


def test_unknown_collection_and_item(mlhub: Served) -> None:
    with pytest.raises(NotFoundError, match=r"^collection 'nope' does not exist$"):
        list(find_items("nope", endpoint=ENDPOINT))
    with pytest.raises(
        NotFoundError, match=r"^item 'x' of collection 'bigearthnet_v1_labels' does not exist$"
    ):
        catalog.get_item(LABELS, "x", endpoint=ENDPOINT)


def test_rejected_and_missing_keys_never_show_the_key(mlhub: Served) -> None:
    wrong = "wrong-key-5550123"
    with pytest.raises(AuthError) as raised:
        list(find_items(LABELS, endpoint=Endpoint(api_key=wrong)))
    assert str(raised.value) == (
        "the MLHub API key was rejected (401) for the items of collection 'bigearthnet_v1_labels'"
    )
    with pytest.raises(AuthError, match="no MLHub API key"):
        list_collections(endpoint=Endpoint())
    assert sum(r.status == 401 for r in mlhub.emulator.requests) == 1


def test_throttling_is_retried(mlhub: Served) -> None:
    mlhub.emulator.set_faults(Faults(unavailable=2, status=429, retry_after=0))
    assert len(list_collections(endpoint=ENDPOINT, policy=FAST)) == 2
    assert [r.status for r in mlhub.emulator.requests] == [429, 429, 200]


def test_gives_up_when_the_server_stays_unavailable(mlhub: Served) -> None:
    mlhub.emulator.set_faults(Faults(unavailable=10, status=503, retry_after=0))
    with pytest.raises(
        NetworkError, match=r"^the collection list: giving up after 2 retries: HTTP 503$"
    ):
        list_collections(endpoint=ENDPOINT, policy=RetryPolicy(attempts=2, backoff=0.01))

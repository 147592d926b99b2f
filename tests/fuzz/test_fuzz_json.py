"""Fuzzing the JSON members (:func:`ingest.archive.members.parse_json`, ``parse_collection``) and
what reads them: a v1 ``labels_metadata.json``, the v1 Sentinel-1 pairing, an MLHub label item.

Seeds are realistic documents of each kind; mutations act on the parsed tree (a value of another
type, a huge or non-finite number, a deep nest, a removed or repeated key, a duplicated class
name) or on the bytes (flips, cuts, invalid UTF-8, a prefix of thousands of brackets). Each case
either parses to what :func:`json.loads` gives and is read as an independent check of the
document says, or is an InputDataError naming the member.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable
from typing import Any

import pytest

from ingest.archive.members import ArchiveItem, parse_collection, parse_json
from ingest.errors import InputDataError
from ingest.layouts.labels import LabelEntry
from ingest.layouts.mlhub import parse_label_item
from ingest.layouts.partners import s1_v1
from ingest.layouts.tables import official_s1
from ingest.layouts.zenodo_v1 import parse_labels_json
from ingest.nomenclature import CLASS_INDEX, CLASSES_43
from ingest.sources.inputs import InputSpec
from ingest.testing.sample_stac import PatchFacts, label_item
from tests.fuzz.kit import Outcomes, bounded, choose, describe, flip_bits, truncate_or_extend

pytestmark = pytest.mark.usefixtures("traced")

PATCH = "S2A_MSIL2A_20170613T101031_0_45"
S1_PATCH = "S1A_IW_GRDH_1SDV_20170613T165043_33UUP_0_45"
MEMBER = "BigEarthNet-v1.0/p/p_labels_metadata.json"


def seeds() -> dict[str, dict[str, Any]]:
    facts = PatchFacts(PATCH, 32633, 500_000.0, 5_000_040.0, "2017-06-13T10:10:31Z",
                       ("Pastures", "Coniferous forest"), False, True)  # fmt: skip
    return {
        "v1": {
            "labels": ["Pastures", "Coniferous forest", "Sea and ocean"],
            "coordinates": {"ulx": 500000, "uly": 5000040, "lrx": 501200, "lry": 4998840},
            "projection": 'PROJCS["WGS 84 / UTM zone 33N"]',
            "tile_source": "S2A_MSIL1C_20170613T101031_N0205_R022_T33UUP_20170613T101608.SAFE",
            "acquisition_date": "2017-06-13 10:10:31",
        },
        "s1": {
            "labels": ["Pastures"],
            "corresponding_s2_patch": PATCH,
            "acquisition_time": "2017-06-13T16:50:43",
        },
        "label": label_item(facts, "bool"),
        "collection": {"id": "c", "links": [{"rel": "item", "href": f"./i{i}/stac.json"}
                                            for i in range(5)] + [{"rel": "root", "href": "/"}]},
    }  # fmt: skip


ODD_VALUES: tuple[Any, ...] = (None, True, 0, -1, 10**30, 1.5, "", "x" * 300, [], {}, [[[]]],
                               "Pastures", "2017-13-45 99:99:99", "0001-01-01 00:00:00",
                               "9999-12-31 23:59:59", "\ud800")  # fmt: skip


def paths(tree: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if len(prefix) > 12:  # never into the deep nests a mutation made
        return found
    if isinstance(tree, dict):
        for key, value in tree.items():
            found += paths(value, (*prefix, key))
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            found += paths(value, (*prefix, i))
    return found


def mutate_tree(document: dict[str, Any], rng: random.Random) -> dict[str, Any] | list[Any]:
    tree = copy.deepcopy(document)
    for _ in range(rng.randint(1, 3)):
        where = rng.choice(paths(tree)[1:] or [()])
        parent: Any = tree
        for key in where[:-1]:
            parent = parent[key]
        action = choose(rng, [(4, "value"), (1, "remove"), (1, "deep"), (1, "duplicate")])
        if not where:
            break
        key = where[-1]
        if action == "value":
            parent[key] = rng.choice(ODD_VALUES)
        elif action == "remove":
            del parent[key]
        elif action == "deep":
            depth = rng.choice((10, 500, 990, 5000))
            value: Any = 1
            for _ in range(depth):
                value = [value]
            parent[key] = value
        elif action == "duplicate" and isinstance(parent[key], list) and parent[key]:
            parent[key].append(rng.choice(parent[key]))
    return tree


def encode(tree: Any) -> bytes:
    try:
        return json.dumps(tree, allow_nan=True).encode("utf-8", "surrogatepass")
    except RecursionError:
        return b"[" * 5000 + b"]" * 5000


def mutate(document: dict[str, Any], rng: random.Random) -> bytes:
    roll = rng.random()
    if roll < 0.55:
        return encode(mutate_tree(document, rng))
    data = bytearray(encode(document))
    if roll < 0.7:
        flip_bits(data, rng)
        return bytes(data)
    if roll < 0.8:
        return truncate_or_extend(bytes(data), rng)
    if roll < 0.9:
        depth = rng.choice((999, 1500, 200_000))
        return b"[" * depth + bytes(data) + b"]" * depth * rng.randint(0, 1)
    text = bytes(data).replace(b'"labels"', b'"labels": 1, "labels"', 1)  # a repeated key
    return text.replace(b"Pastures", rng.choice((b"Pas\xfftures", b"Pa\\ud800s", b"Pastures")))


def expected_json(data: bytes) -> Any:
    """What json.loads gives, or the exception it raises (the independent reading)."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        return exc


def check_v1(data: bytes, value: Any, outcomes: Outcomes, what: str) -> None:
    """parse_labels_json: the mask of the distinct known names, the time of the date."""
    result, error = bounded(lambda: parse_labels_json(data, MEMBER), what, outcomes)
    if error is not None:
        assert isinstance(error, InputDataError) and error.culprit == MEMBER, describe(error)
        outcomes.add("v1 refused")
        return
    assert isinstance(value, dict), f"{what}: read a non-object"
    labels = value["labels"]
    assert isinstance(labels, list) and len(set(labels)) == len(labels), what
    mask = 0
    for name in labels:
        mask |= 1 << CLASSES_43.index(name)
    assert result is not None and result[0] == mask, what
    outcomes.add("v1 read")


def check_s1(data: bytes, value: Any, outcomes: Outcomes, what: str) -> None:
    partner = s1_v1(InputSpec(("s1.tar.gz",), "s1"))
    item = ArchiveItem("BigEarthNet-S1-v1.0", S1_PATCH, {"labels_metadata.json": data},
                       prefix=f"{S1_PATCH}_")  # fmt: skip
    result, error = bounded(lambda: partner.pair(item), what, outcomes)
    if error is not None:
        assert isinstance(error, InputDataError), describe(error)
        outcomes.add("s1 refused")
        return
    assert isinstance(value, dict) and result == value["corresponding_s2_patch"], what
    outcomes.add("s1 paired")


def check_label_item(data: bytes, value: Any, outcomes: Outcomes, what: str) -> None:
    def read() -> LabelEntry:
        return parse_label_item(parse_json(data, "stac.json"), "stac.json")

    entry, error = bounded(read, what, outcomes)
    if error is not None:
        assert isinstance(error, InputDataError), describe(error)
        outcomes.add("label item refused")
        return
    assert isinstance(entry, LabelEntry) and isinstance(value, dict), what
    labels = value["properties"]["labels"]
    mask = 0
    for name in labels:
        mask |= 1 << CLASS_INDEX[name]
    assert entry.label_mask == mask and len(set(labels)) == len(labels), what
    outcomes.add("label item read")


CHECKS: dict[str, Callable[[bytes, Any, Outcomes, str], None]] = {
    "v1": check_v1,
    "s1": check_s1,
    "label": check_label_item,
}


def test_fuzz_json_members(fuzz_cases: int, fuzz_rng: random.Random, outcomes: Outcomes) -> None:
    documents = seeds()
    official_s1([PATCH])  # the official tables the S1 pairing looks up: loaded outside the bounds
    for case in range(fuzz_cases):
        kind = fuzz_rng.choice(list(documents))
        data = mutate(documents[kind], fuzz_rng)
        what = f"case {case} ({kind}, {len(data)} bytes)"
        value = expected_json(data)
        parse = parse_collection if kind == "collection" else parse_json
        parsed, error = bounded(lambda: parse(data, MEMBER), what, outcomes)  # noqa: B023
        if error is not None:
            assert isinstance(error, InputDataError), f"{what}: {describe(error)}"
            assert error.culprit == MEMBER and "invalid JSON" in error.problem, what
            assert isinstance(value, Exception) or not isinstance(value, dict), what
            outcomes.add("refused")
            continue
        assert isinstance(value, dict), f"{what}: parsed what json.loads refuses"
        if kind == "collection":  # the same document less its item links
            assert isinstance(parsed, dict) and parsed.get("id") == value.get("id"), what
            links = value.get("links")
            if isinstance(links, list):
                kept = [x for x in links if x is not None and not (  # null links go too
                    isinstance(x, dict) and x.get("rel") == "item" and len(x) <= 4)]  # fmt: skip
                assert parsed["links"] == kept, what
            else:
                assert parsed.get("links") == links, what
        else:
            assert parsed == value or json.dumps(parsed) == json.dumps(value), what
            CHECKS[kind](data, value, outcomes, what)
        outcomes.add("parsed")
    assert outcomes.counts["refused"] and outcomes.counts["parsed"]

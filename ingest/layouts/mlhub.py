"""Items: label items validated against ``schemas/label-item.schema.json``, the label index they
build, and the notebook's selection semantics.

The labels archive is read first, in full, into a :class:`LabelIndex`: for each patch its 43-class
labels (a bit mask), its two flags, its acquisition time and whether the selection keeps it. The
source archive is then joined to it patch by patch. The join key is the patch name, taken from the
label item's single ``rel: source`` link (relative inside an archive, absolute through the API).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from typing import Any

import fastjsonschema
import jsonschema
from jsonschema.exceptions import ValidationError, best_match

from .. import schemas
from ..errors import InputDataError
from ..nomenclature import CLASS_INDEX, patch_of
from .labels import LabelEntry

#: A source link: the last path segment that names an item (``.../<item_id>/stac.json`` inside an
#: archive, ``.../items/<item_id>`` through the API).
_SOURCE_HREF = re.compile(r"(?:^|/)(?P<item>[^/]+?)(?:/stac\.json)?/?$")


@cache
def _schema_validator() -> jsonschema.protocols.Validator:
    """The reference validator (draft 2020-12), used to word the message of an invalid item."""
    schema = schemas.load(schemas.LABEL_ITEM)
    validator: jsonschema.protocols.Validator = jsonschema.validators.validator_for(schema)(schema)
    return validator


@cache
def _fast_validator() -> Callable[[Any], Any]:
    """The same schema compiled to Python by fastjsonschema: 18 µs per item instead of 175 µs
    (590,326 items: 11 s instead of 103 s). It knows drafts up to 7, so the 2020-12 rule
    "exactly one source link" (minContains/maxContains) is counted by :func:`_is_valid`."""
    compiled: Callable[[Any], Any] = fastjsonschema.compile(schemas.load(schemas.LABEL_ITEM))
    return compiled


def _is_valid(document: dict[str, Any]) -> bool:
    try:
        _fast_validator()(document)
    except fastjsonschema.JsonSchemaException:
        return False
    return sum(1 for link in document["links"] if link.get("rel") == "source") == 1


def parse_label_item(document: dict[str, Any], member: str) -> LabelEntry:
    """Validate a label item's ``stac.json`` and reduce it to a :class:`LabelEntry`.

    Errors name ``member`` and say what is wrong in one line (an unknown class name, a flag that is
    neither boolean nor "true"/"false", a missing ``labels``, not exactly one source link, ...).
    """
    try:
        if not _is_valid(document):
            error = best_match(_schema_validator().iter_errors(document))
            if error is not None:
                raise InputDataError(member, describe(error))
    except RecursionError:  # a document nested nearly as deep as JSON parsing allows
        raise InputDataError(member, "item: nested too deeply to validate") from None
    props = document["properties"]
    (link,) = (lnk for lnk in document["links"] if lnk.get("rel") == "source")
    match = _SOURCE_HREF.search(link["href"])
    if match is None:
        raise InputDataError(member, f"source link {link['href']!r} names no item")
    return LabelEntry(
        patch=patch_of(match["item"]),
        label_mask=sum(1 << CLASS_INDEX[name] for name in props["labels"]),
        cloud_and_shadow=as_flag(props["cloud_and_shadow"]),
        seasonal_snow=as_flag(props["seasonal_snow"]),
        time=parse_time(props["datetime"], member),
    )


def as_flag(value: bool | str) -> bool:
    """A flag sent as a boolean or as the string "true"/"false" (both occur in MLHub's items)."""
    return value if isinstance(value, bool) else value == "true"


def parse_time(text: str, member: str) -> int:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InputDataError(
            member, f"properties.datetime: {text!r} is not an ISO date-time"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def describe(error: ValidationError) -> str:
    """One line saying where and what, without dumping the 43-name enum."""
    where = ".".join(str(p) for p in error.absolute_path) or "item"
    if error.validator == "enum" and error.absolute_path and "labels" in error.absolute_path:
        return f"{where}: unknown class name {error.instance!r}"
    if where.endswith(("cloud_and_shadow", "seasonal_snow")):
        return f"{where}: {error.instance!r} is neither a boolean nor 'true'/'false'"
    if error.validator == "required":
        return f"{where}: {error.message}"
    if error.validator in ("contains", "minContains", "maxContains"):
        links: list[Any] = error.instance if isinstance(error.instance, list) else []
        count = sum(1 for link in links if isinstance(link, dict) and link.get("rel") == "source")
        return f"links: expected exactly one 'source' link, found {count}"
    message = error.message if len(error.message) <= 160 else error.message[:157] + "..."
    return f"{where}: {message}"

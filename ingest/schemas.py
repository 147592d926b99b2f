"""The machine-readable JSON documents in ``schemas/``: label-item schema and store contracts.

In a source checkout they live in the top-level ``schemas/`` folder; a wheel installs them as
``ingest/_schemas/`` (see ``pyproject.toml``).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

LABEL_ITEM = "label-item.schema.json"
#: The store contract new stores follow (v2: both releases, optional S1 and reference maps).
STORE_CONTRACT = "store-contract-v2.json"
#: Contract v1 (the first stores, MLHub only); ``ingest verify`` still checks them against it.
STORE_CONTRACT_V1 = "store-contract-v1.json"
#: Contract version -> its document's file name.
STORE_CONTRACTS = {1: STORE_CONTRACT_V1, 2: STORE_CONTRACT}

_CANDIDATES = (
    Path(__file__).parent / "_schemas",
    Path(__file__).parent.parent / "schemas",
)


@cache
def load(name: str) -> dict[str, Any]:
    """Load one of the project's JSON documents by file name."""
    for folder in _CANDIDATES:
        path = folder / name
        if path.is_file():
            document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
            return document
    raise FileNotFoundError(f"schema {name} not found in {', '.join(map(str, _CANDIDATES))}")


def store_contract(version: int = 2) -> dict[str, Any]:
    """The store contract of ``version`` (1 or 2); KeyError for a version this tool lacks."""
    return load(STORE_CONTRACTS[version])

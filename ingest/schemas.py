"""The machine-readable JSON documents in ``schemas/``: label-item schema and store contract.

In a source checkout they live in the top-level ``schemas/`` folder; a wheel installs them as
``ingest/_schemas/`` (see ``pyproject.toml``).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

LABEL_ITEM = "label-item.schema.json"
STORE_CONTRACT = "store-contract-v1.json"

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

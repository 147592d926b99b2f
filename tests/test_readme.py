"""The README's training page, pasted as a new user would: each of its Python snippets run as a
script against a v2 store and a v1 store (only the store path, the epoch count and the batch size
changed, so that it runs in seconds on a few samples)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


def snippets() -> list[str]:
    text = (ROOT / "README.md").read_text()
    start = text.index("## From the archives to a training loop")
    section = text[start : text.index("\n## ", start + 1)]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 2
    return blocks


def shrunk(code: str, store: Path) -> str:
    replaced = (code.replace('"v2.zarr"', repr(str(store))).replace("range(10)", "range(2)")
                .replace("max_epochs=10", "max_epochs=2").replace("256", "2"))  # fmt: skip
    assert replaced.count(repr(str(store))) == 1
    return replaced


@pytest.mark.parametrize("which", ["v2", "v1"])
@pytest.mark.parametrize("snippet", [0, 1])
def test_the_training_snippets_run(
    v2_store: Any, real_store: Path, tmp_path: Path, which: str, snippet: int
) -> None:
    store = v2_store.path if which == "v2" else real_store
    script = tmp_path / "snippet.py"
    script.write_text(shrunk(snippets()[snippet], store))
    done = subprocess.run([sys.executable, "-W", "error::DeprecationWarning", str(script)],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    if snippet == 0:
        assert "torch.Size" not in done.stdout  # numpy shapes, as the comment says
        assert done.stdout.splitlines()[0] == "(12, 120, 120) (19,)"

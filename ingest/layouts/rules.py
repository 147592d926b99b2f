"""Where a member of a patch-folder archive belongs: the member rules of the Zenodo and reBEN
layouts (:class:`~ingest.archive.members.MemberRule`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ..archive.members import Place

#: A v1 patch's (S2 and S1) labels file, beside its bands.
LABELS_FILE: Final = "labels_metadata.json"


@dataclass(frozen=True)
class PatchFolderRule:
    """``{top}/{folders…}/{patch}/{patch}_{file}``: ``depth`` folders between the top folder and
    the patch folder (0 for Zenodo v1, 1 — the tile — for reBEN)."""

    top: str
    depth: int = 0

    def place(self, parts: tuple[str, ...]) -> Place | str:
        if len(parts) != self.depth + 2:
            return "not a file of a patch folder"
        patch, name = parts[-2], parts[-1]
        prefix = f"{patch}_"
        if not name.startswith(prefix) or len(name) == len(prefix):
            return "file not named after its patch folder"
        return Place(patch, name[len(prefix) :], "/".join((self.top, *parts[:-1])), prefix)

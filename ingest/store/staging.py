"""Staging: Sentinel-1 patches and reference maps held, compressed, until their S2 sample's shard is
written — how the partner modalities end up aligned sample for sample without holding an archive
in memory.

The partner archives arrive in their own order (S1 names sort differently from S2 ids; the real v1
archives guarantee no order at all), yet ``bands_s1[i]`` must be the partner of ``bands_10m[i]``
and be written in whole shards. So each partner archive is streamed by a process of its own while
the S2 archive streams (:mod:`ingest.layouts.partner_stream`): every patch is decoded, checked and
encoded at once with the store's own inner-chunk codec (the bytes zarr would write for that
chunk; S1's raw pixels, which compress badly, are left to the writers), appended to one local file,
and indexed here by its S2 patch id. A shard's S2 arrays are written as soon as the S2 stream has
filled them; its partner arrays once every one of its samples' partners is staged
(:mod:`ingest.layouts.pairing`): the writer gathers that shard's partner chunks from the file by
byte range and writes them, followed by the shard index, as the partner array's shard: no second
decode, no recompression (:func:`ingest.store.shards.assemble`).

What this costs: disk for the staged partners (115 KB per S1 patch, ≈ 2 KB per map) in
``--staging-dir``, else ``$INGEST_STAGING_DIR``, else beside a local store (the system's temporary
folder for a store on object storage), deleted when the run ends; in
memory an index of a few numbers per staged patch. A resumed run stages again (the staging file is
never trusted across runs); the shards the journal lists stay as they are.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from array import array as packed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from .location import StoreLocation
from .shards import ShardEncoder

STAGING_DIR_ENV = "INGEST_STAGING_DIR"


@dataclass(frozen=True)
class StagedChunks:
    """The encoded inner chunks of one shard of a partner array: byte ranges of a staging file,
    or the bytes themselves (when the writer cannot see the file, e.g. on a dask cluster)."""

    path: str
    offsets: tuple[int, ...]
    sizes: tuple[int, ...]
    data: tuple[bytes, ...] | None = None
    raw: tuple[str, tuple[int, ...]] | None = None
    """(dtype, sample shape) when the chunks are raw pixels the writer still has to encode;
    None when they are already encoded with the array's codec."""

    def parts(self) -> list[bytes]:
        if self.data is not None:
            return list(self.data)
        with open(self.path, "rb") as handle:
            fd = handle.fileno()
            return [os.pread(fd, n, at) for at, n in zip(self.offsets, self.sizes, strict=True)]

    def loaded(self) -> StagedChunks:
        """The same chunks carried as bytes."""
        return StagedChunks(self.path, self.offsets, self.sizes, tuple(self.parts()), self.raw)

    def block(self) -> np.ndarray:
        """Raw chunks as one (k, *shape) block of pixels."""
        assert self.raw is not None
        dtype, shape = self.raw
        data = b"".join(self.parts())
        return np.frombuffer(data, dtype=dtype).reshape(len(self.sizes), *shape)


Entry = tuple[str, str, int, int, int, float, float]
"""One staged partner: (S2 patch id, partner name, offset, size, EPSG, x_ul, y_ul)."""

Staged = dict[str, StagedChunks]
"""Partner array name → its chunks for one shard."""


@dataclass
class Staging:
    """One partner array's staging file and index (S2 patch id → chunk, partner name, corner)."""

    array: str
    """``bands_s1`` or ``reference_map``."""
    encoder: ShardEncoder
    path: Path
    raw: bool
    """Stage raw pixels for the writers to encode (S1: float32 noise costs ≈ 0.27 ms per patch
    to encode, which would run on the reader's single thread here, and compresses to only ≈ 0.85
    of raw) rather than encoded chunks (the maps: ≈ 0.07 of raw)."""
    slots: dict[str, int] = field(default_factory=dict)
    names: list[str | None] = field(default_factory=list)
    """The partner's own name, None when it is its S2 patch id (reference maps)."""
    offsets: packed[int] = field(default_factory=lambda: packed("Q"))
    sizes: packed[int] = field(default_factory=lambda: packed("Q"))
    epsg: packed[int] = field(default_factory=lambda: packed("i"))
    corners: packed[float] = field(default_factory=lambda: packed("d"))
    """x_ul, y_ul of each partner, interleaved."""
    used: bytearray = field(default_factory=bytearray)
    _end: int = 0
    _shape: tuple[int, ...] = ()

    @classmethod
    def create(cls, array: zarr.Array[Any], directory: Path, *, raw: bool = False) -> Staging:
        """The index of ``array``'s staging file in ``directory``, which a partner stream's
        process writes (:meth:`add_entries`)."""
        encoder = ShardEncoder.for_array(array)
        if encoder is None:  # pragma: no cover - the store's own arrays always have the layout
            raise ValueError(f"{array.path}: not the store's shard layout")
        path = directory / f"{array.path}.chunks"
        return cls(array.path, encoder, path, raw, _shape=tuple(array.shape[1:]))

    def encode(self, pixels: np.ndarray) -> bytes:
        """What the staging file holds of one partner: raw pixels or its encoded chunk."""
        if self.raw:
            return np.ascontiguousarray(pixels, self.encoder.dtype).tobytes()
        return self.encoder.encode_chunk(pixels)

    def add_entries(self, entries: list[Entry]) -> None:
        """Index partners another process appended to the file (and flushed), in file order;
        that process refused a second partner of one S2 patch already."""
        for s2_id, name, offset, size, epsg, x_ul, y_ul in entries:
            self.slots[s2_id] = len(self.names)
            self.names.append(None if name == s2_id else name)
            self.offsets.append(offset)
            self.sizes.append(size)
            self.epsg.append(epsg)
            self.corners.extend((x_ul, y_ul))
            self.used.append(0)
            self._end = offset + size

    def __contains__(self, s2_id: str) -> bool:
        return s2_id in self.slots

    def name_of(self, s2_id: str) -> str:
        return self.names[self.slots[s2_id]] or s2_id

    def georef_of(self, s2_id: str) -> tuple[int, float, float]:
        slot = self.slots[s2_id]
        return self.epsg[slot], self.corners[2 * slot], self.corners[2 * slot + 1]

    def use(self, s2_id: str) -> None:
        """The partner of ``s2_id`` belongs to a sample of the store."""
        self.used[self.slots[s2_id]] = 1

    def chunks(self, patch_ids: tuple[str, ...]) -> StagedChunks:
        """The chunks of one shard's samples, in sample order (each must be staged)."""
        slots = [self.slots[p] for p in patch_ids]
        shape = (self.encoder.dtype.str, self._shape) if self.raw else None
        return StagedChunks(
            str(self.path),
            tuple(self.offsets[s] for s in slots),
            tuple(self.sizes[s] for s in slots),
            raw=shape,
        )

    def unused(self) -> list[tuple[str, str]]:
        """(S2 id, partner name) of the staged partners no shard took, in staging order."""
        by_slot = {slot: s2 for s2, slot in self.slots.items()}
        return [(by_slot[i], self.names[i] or by_slot[i]) for i, u in enumerate(self.used) if not u]


def staging_parent(store: StoreLocation, explicit: str | os.PathLike[str] | None = None) -> Path:
    """The folder that holds a run's staging folder: ``explicit`` (``--staging-dir``), else
    ``$INGEST_STAGING_DIR``, else beside a local store (its file system is the one the run was
    given room on, where the system's temporary folder is often small or in memory), else the
    system's temporary folder (a store on object storage)."""
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get(STAGING_DIR_ENV):
        return Path(os.environ[STAGING_DIR_ENV]).expanduser()
    if store.is_local:
        return Path(store.zarr_url.rstrip("/")).absolute().parent
    return Path(tempfile.gettempdir())


def staging_directory(store_url: str, parent: Path | None = None) -> Path:
    """An empty folder for the staging files of the run writing ``store_url``, in ``parent``
    (default :func:`staging_parent` of the store). Named after the store, so that a run killed
    before it could remove its folder leaves it to the next run (``--resume``) of the same store,
    which empties it first."""
    if parent is None:
        parent = staging_parent(StoreLocation.of(store_url))
    digest = hashlib.sha256(store_url.encode()).hexdigest()[:16]
    folder = parent / f"ingest-staging-{digest}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder

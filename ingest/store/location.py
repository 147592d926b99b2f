"""Where a store lives: a local path or any fsspec URL (``s3://``, ``gs://``, ``file://``) with its
storage options.

zarr-python opens both forms itself; this value adds the few file-level operations the ingest needs
around zarr (does a store exist, delete it, list its shard objects, its size) through the same
fsspec filesystem, so every stage works unchanged on object storage. It is a small frozen value
that pickles, because worker processes and dask tasks receive it and open the store themselves.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, TypeAlias

import fsspec
import zarr
from fsspec.core import url_to_fs

from ..errors import UsageError

#: Attempts of one S3 request (botocore's ``standard`` retry mode), s3fs retrying on top of it.
S3_ATTEMPTS = 8

Where: TypeAlias = "str | os.PathLike[str] | StoreLocation"
"""Anything naming a store: a path, a URL, or a :class:`StoreLocation`."""


@dataclass(frozen=True)
class StoreLocation:
    """A store's URL (or local path) and the fsspec storage options to reach it."""

    url: str
    storage_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.is_local and self.storage_options:
            raise UsageError(f"{self.url}: storage options need a URL such as s3://bucket/store")

    @classmethod
    def of(
        cls, where: str | os.PathLike[str] | StoreLocation, options: dict[str, Any] | None = None
    ) -> StoreLocation:
        if isinstance(where, StoreLocation):
            return where
        return cls(os.fspath(where), dict(options or {}))

    def __hash__(self) -> int:
        return hash((self.url, json.dumps(self.storage_options, sort_keys=True, default=str)))

    def __str__(self) -> str:
        return self.url

    @property
    def is_local(self) -> bool:
        return "://" not in self.url or self.url.startswith("file://")

    @property
    def fs_options(self) -> dict[str, Any]:
        """``storage_options`` with this tool's defaults for the protocol: on S3, botocore's
        ``standard`` retry mode (throttling such as ``503 SlowDown``, 5xx answers and broken
        connections are retried with backoff, up to :data:`S3_ATTEMPTS` attempts) unless the
        options set ``config_kwargs.retries`` themselves."""
        if not self.url.startswith(("s3://", "s3a://")):
            return self.storage_options
        config = dict(self.storage_options.get("config_kwargs") or {})
        config.setdefault("retries", {"mode": "standard", "max_attempts": S3_ATTEMPTS})
        return {**self.storage_options, "config_kwargs": config}

    @property
    def zarr_options(self) -> dict[str, Any] | None:
        """``storage_options`` for zarr's ``open_*``, which refuses them for a plain path."""
        return None if self.is_local else self.fs_options

    @property
    def zarr_url(self) -> str:
        """What zarr opens: a plain path for local stores (zarr's fast ``LocalStore``)."""
        return self.url.removeprefix("file://") if self.is_local else self.url

    def open_group(self, **kwargs: Any) -> zarr.Group:
        return zarr.open_group(self.zarr_url, storage_options=self.zarr_options, **kwargs)

    @cached_property
    def _fs(self) -> tuple[fsspec.AbstractFileSystem, str]:
        fs, root = url_to_fs(self.url, **self.fs_options)
        return fs, root.rstrip("/")

    def key(self, *parts: str) -> str:
        """The filesystem path of a key inside the store."""
        return "/".join([self._fs[1], *parts])

    def exists(self, *parts: str) -> bool:
        fs, _ = self._fs
        return bool(fs.exists(self.key(*parts)))

    def read_text(self, *parts: str) -> str:
        fs, _ = self._fs
        data: bytes = fs.cat_file(self.key(*parts))
        return data.decode("utf-8")

    def children_with(self, name: str) -> set[str]:
        """The names of the store's direct children holding a ``name`` object."""
        fs, root = self._fs
        found = fs.glob(f"{root}/*/{name}")
        return {str(p).rstrip("/").split("/")[-2] for p in found}

    def objects(self, *parts: str) -> set[str]:
        """Every object under ``parts``, as keys relative to that prefix."""
        fs, _ = self._fs
        prefix = self.key(*parts)
        return {str(p)[len(prefix) + 1 :] for p in fs.find(prefix)}

    def delete(self) -> None:
        fs, root = self._fs
        fs.rm(root, recursive=True)
        # Every cached instance of this filesystem (zarr's asynchronous one too) forgets the
        # listings under the store, or a store created here next would look occupied.
        for instance in list(getattr(type(fs), "_cache", {}).values()):
            instance.invalidate_cache(root)

    def size(self) -> int:
        """Bytes of all objects of the store."""
        fs, root = self._fs
        return int(fs.du(root, total=True)) if fs.exists(root) else 0

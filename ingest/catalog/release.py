"""``ingest download --dataset``: the official files of a BigEarthNet release, fetched from Zenodo
(or a mirror with its URL scheme) resumably, then each checked against its md5.

Each file is downloaded by :func:`~ingest.catalog.fetch.download_url` (``<name>.partial``
continued with ``Range``, renamed once its size is the server's), then hashed. A file whose md5
differs is renamed ``<name>.bad`` — the official name never holds a file that failed its check, so
nothing reads it by mistake and the next run downloads it again — and is an
:class:`~ingest.errors.InputDataError` (exit 3) naming it. A file already complete and correct
is not downloaded again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Final

import requests

from ..errors import InputDataError
from ..sources.download import RetryPolicy
from ..sources.endpoint import DEFAULT_POLICY
from ..sources.official import OfficialFile, files_of
from .fetch import Progress, Warn, download_url

BAD_SUFFIX: Final = ".bad"
_CHUNK: Final = 1 << 20


def _ignore(message: str) -> None:
    return None


def md5_of(path: Path) -> str:
    """The md5 of a file, read in 1 MiB pieces."""
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as raw:
        while chunk := raw.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def download_release(
    dataset: str,
    out_dir: Path,
    *,
    base_url: str,
    modalities: Iterable[str] = (),
    md5sums: Mapping[str, str] | None = None,
    overwrite: bool = False,
    policy: RetryPolicy = DEFAULT_POLICY,
    progress: Callable[[OfficialFile], Progress | None] = lambda _: None,
    on_file: Callable[[OfficialFile, Path], None] = lambda _f, _p: None,
    warn: Warn = _ignore,
) -> list[Path]:
    """Download the files of ``dataset`` (S2 and metadata, plus ``modalities``: the files
    ``ingest run --dataset D --with M`` reads) into ``out_dir``; returns their paths in the
    official order. ``md5sums`` replaces the published sums of the files it names.
    ``progress(file)`` gives the callback of one file's download (or None); ``on_file`` is
    called once a file is checked."""
    paths: list[Path] = []
    with requests.Session() as session:
        for official in files_of(dataset, modalities, md5sums):
            target = out_dir / official.name
            download_url(
                official.url(base_url), target, what=official.name, overwrite=overwrite,
                session=session, policy=policy, progress=progress(official), warn=warn,
            )  # fmt: skip
            check_md5(target, official.md5)
            on_file(official, target)
            paths.append(target)
    return paths


def check_md5(path: Path, expected: str) -> None:
    """Raise InputDataError, the file renamed ``<name>.bad``, unless its md5 is ``expected``."""
    got = md5_of(path)
    if got == expected.lower():
        return
    bad = path.with_name(path.name + BAD_SUFFIX)
    path.replace(bad)
    raise InputDataError(
        path.name,
        f"md5 {got} differs from the expected {expected.lower()}: the file is damaged or not the "
        f"official one (kept as {bad})",
    )

"""``ingest collections``, ``items``, ``download-item``, ``download``: browsing and downloading like
the BigEarthNet notebook (:mod:`ingest.catalog.browse`, :mod:`ingest.catalog.fetch`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from ..layouts.labels import Selection
from ..sources.download import redact
from ..sources.endpoint import Endpoint
from .common import endpoint_options, handle_errors


def _note(message: str) -> None:
    click.echo(f"note: {redact(message)}", err=True)


@click.command(name="collections")
@click.option(
    "--filter",
    "text",
    metavar="TEXT",
    help="Only collections whose id, title or description contains TEXT (any case).",
)
@click.option("--json", "as_json", is_flag=True, help="One collection document per line.")
@endpoint_options
@handle_errors
def collections_command(
    text: str | None, as_json: bool, api_key: str | None, profile: str | None
) -> None:
    """List the collections of the API: id, license, citation and STAC extensions."""
    from ..catalog.browse import (
        collection_summary,
        describe_collection,
        list_collections,
        to_json_line,
    )

    for found in list_collections(text, endpoint=Endpoint(api_key=api_key, profile=profile)):
        summary = collection_summary(found)
        click.echo(to_json_line(found) if as_json else describe_collection(summary))


@click.command(name="items")
@click.argument("collection")
@click.option(
    "--classes", "classes", multiple=True, metavar="NAME",
    help="Keep items having ANY of these classes (repeatable).",
)  # fmt: skip
@click.option(
    "--cloud-and-shadow/--no-cloud-and-shadow", default=None,
    help="Keep only items with (or without) cloud or shadow. Default: no filter.",
)  # fmt: skip
@click.option(
    "--seasonal-snow/--no-seasonal-snow", default=None,
    help="Keep only items with (or without) seasonal snow. Default: no filter.",
)  # fmt: skip
@click.option(
    "--max-items", type=click.IntRange(min=0), default=10, show_default=True,
    help="Stop after N matching items (no further page is requested).",
)  # fmt: skip
@click.option(
    "--page-size", type=click.IntRange(min=1), help="Items per page (default: the server's)."
)
@click.option("--json", "as_json", is_flag=True, help="One item document per line.")
@endpoint_options
@handle_errors
def items_command(
    collection: str,
    classes: tuple[str, ...],
    cloud_and_shadow: bool | None,
    seasonal_snow: bool | None,
    max_items: int,
    page_size: int | None,
    as_json: bool,
    api_key: str | None,
    profile: str | None,
) -> None:
    """Find the items of COLLECTION matching the notebook's filter; print each one's summary."""
    from ..catalog.browse import describe_item, find_items, item_summary, to_json_line

    found = find_items(
        collection, Selection(classes, cloud_and_shadow, seasonal_snow),
        max_items=max_items, page_size=page_size,
        endpoint=Endpoint(api_key=api_key, profile=profile),
    )  # fmt: skip
    for item in found:
        click.echo(to_json_line(item) if as_json else describe_item(item_summary(item)))


@click.command(name="download-item")
@click.argument("collection")
@click.argument("item_id")
@click.option(
    "--asset", "assets", multiple=True, metavar="KEY",
    help="Download only these assets (repeatable; with --sources, keys of the source items "
    "too, e.g. B02 B03 B04). Default: all.",
)  # fmt: skip
@click.option(
    "-o", "--output", "out_dir", type=click.Path(file_okay=False, path_type=Path),
    default=Path(), show_default=True, help="Each item's files go to OUTPUT/<item id>/.",
)  # fmt: skip
@click.option(
    "--sources", is_flag=True,
    help="Also follow the item's 'source' links and download the linked items' assets.",
)  # fmt: skip
@endpoint_options
@handle_errors
def download_item_command(
    collection: str,
    item_id: str,
    assets: tuple[str, ...],
    out_dir: Path,
    sources: bool,
    api_key: str | None,
    profile: str | None,
) -> None:
    """Download the assets of one item, named as the server's URLs name them."""
    from ..catalog.browse import describe_item, item_summary
    from ..catalog.fetch import download_item

    paths = download_item(
        collection, item_id, assets=assets or None, out_dir=out_dir, sources=sources,
        endpoint=Endpoint(api_key=api_key, profile=profile),
        on_item=lambda item: click.echo(describe_item(item_summary(item))), warn=_note,
    )  # fmt: skip
    for path in paths:
        click.echo(f"Downloaded to {path}")


class _DownloadBar:
    """A click progress bar over an archive download, made once its size is known."""

    def __init__(self, label: str) -> None:
        self._label = label
        self._bar: Any = None
        self._done = 0

    def __call__(self, done: int, total: int) -> None:
        if self._bar is None:
            self._bar = click.progressbar(length=total, label=self._label, file=sys.stderr)
            self._bar.__enter__()
        self._bar.update(done - self._done)
        self._done = done

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None  # closing twice is harmless


@click.command(name="download")
@click.argument("collection", required=False)
@click.option(
    "--dataset", type=click.Choice(["bigearthnet-v1", "bigearthnet-v2"]),
    help="Instead of COLLECTION: the official files of this Zenodo release, each md5-checked.",
)  # fmt: skip
@click.option(
    "--with", "modalities", metavar="s1,reference-maps", default="",
    help="With --dataset: the modalities to add to Sentinel-2 and the metadata (comma-separated).",
)  # fmt: skip
@click.option(
    "--zenodo-url", envvar="INGEST_ZENODO_URL", metavar="URL",
    help="With --dataset: a base URL serving Zenodo's /records/<id>/files/<name> (a mirror). "
    "[env: INGEST_ZENODO_URL; default: https://zenodo.org]",
)  # fmt: skip
@click.option(
    "--md5sums", metavar="FILE",
    help="With --dataset: md5sum-format file whose sums replace the published ones for the files "
    "it names.",
)  # fmt: skip
@click.option(
    "-o", "--output", "out_dir", type=click.Path(file_okay=False, path_type=Path),
    default=Path(), show_default=True, help="Directory to download into.",
)  # fmt: skip
@click.option(
    "--overwrite", is_flag=True, help="Start over instead of continuing a partial download."
)
@click.option(
    "--progress/--no-progress", default=None,
    help="Show a progress bar. Default: when stderr is a terminal.",
)  # fmt: skip
@endpoint_options
@handle_errors
def download_command(
    collection: str | None,
    dataset: str | None,
    modalities: str,
    zenodo_url: str | None,
    md5sums: str | None,
    out_dir: Path,
    overwrite: bool,
    progress: bool | None,
    api_key: str | None,
    profile: str | None,
) -> None:
    """Download the archive of COLLECTION (archive endpoint), or with --dataset the official files
    of a Zenodo release, into OUTPUT, resumably.

    A partial download (<name>.partial) is continued with a Range request; the finished file
    is checked against the server's size before it gets its name. With --dataset each file is
    then checked against its md5: a file that fails is renamed <name>.bad (exit 3).
    """
    from ..errors import UsageError
    from ..units import human_bytes

    show = sys.stderr.isatty() if progress is None else progress
    if dataset is not None:
        if collection is not None:
            raise UsageError("give COLLECTION or --dataset, not both")
        _download_release(dataset, modalities, zenodo_url, md5sums, out_dir, overwrite, show)
        return
    if collection is None:
        raise UsageError("give COLLECTION (an MLHub collection) or --dataset")
    for name, value in (("with", modalities), ("zenodo-url", zenodo_url), ("md5sums", md5sums)):
        if value:
            raise UsageError(f"--{name} goes with --dataset")
    from ..catalog.fetch import download_archive

    bar = _DownloadBar(collection) if show else None
    try:
        path = download_archive(
            collection, out_dir=out_dir, overwrite=overwrite,
            endpoint=Endpoint(api_key=api_key, profile=profile), progress=bar, warn=_note,
        )  # fmt: skip
    finally:
        if bar is not None:
            bar.close()
    click.echo(f"{path} ({human_bytes(path.stat().st_size)})")


def _download_release(
    dataset: str,
    modalities: str,
    zenodo_url: str | None,
    md5sums: str | None,
    out_dir: Path,
    overwrite: bool,
    show: bool,
) -> None:
    from ..catalog.release import download_release
    from ..sources.official import OfficialFile, read_md5sums
    from ..sources.official import zenodo_url as base_url
    from ..units import human_bytes

    bars: list[_DownloadBar] = []

    def progress(official: OfficialFile) -> _DownloadBar | None:
        if not show:
            return None
        bars.append(_DownloadBar(official.name))
        return bars[-1]

    def checked(official: OfficialFile, path: Path) -> None:
        if bars:
            bars[-1].close()
        click.echo(f"{path} ({human_bytes(path.stat().st_size)}, md5 ok)")

    try:
        download_release(
            dataset, out_dir, base_url=base_url(zenodo_url),
            modalities=[m.strip() for m in modalities.split(",") if m.strip()],
            md5sums=read_md5sums(md5sums) if md5sums else None, overwrite=overwrite,
            progress=progress, on_file=checked, warn=_note,
        )  # fmt: skip
    finally:
        for bar in bars:
            bar.close()

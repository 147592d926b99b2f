"""The ``ingest`` command. Each subcommand maps its options onto the library and calls it; errors
become one line on stderr and an exit code (see the README) — a traceback only with ``--debug``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from .._version import __version__
from ..config import DEFAULT_SHARD_SIZE, RunConfig, default_workers
from ..errors import StoreError, UsageError
from ..layouts.labels import Selection
from ..nomenclature import LABELS_COLLECTION, SOURCE_COLLECTION
from ..sources.download import redact
from ..sources.endpoint import Endpoint
from ..sources.official import read_md5sums
from .catalog import (
    collections_command,
    download_command,
    download_item_command,
    items_command,
)
from .common import handle_errors, storage_options_option
from .testkit import sample, serve


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="ingest")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
def main(debug: bool) -> None:
    """Ingest BigEarthNet (the Zenodo v1.0 and reBEN v2.0 archives, or Radiant MLHub's
    collection archives) into one analysis-ready Zarr store.

    Exit codes: 0 success, 1 unexpected, 2 usage, 3 input data, 4 network or API key,
    5 store, 130 interrupted.
    """


@main.command()
@click.argument("store", metavar="STORE")
@click.option(
    "--source-archive",
    "--s2-archive",
    "source_archive",
    metavar="PATH_OR_URL",
    multiple=True,
    help="The Sentinel-2 archive: BigEarthNet-S2-v1.0.tar.gz (Zenodo), BigEarthNet-S2.tar.zst "
    "(reBEN) or MLHub's source collection archive; a path or http(s) URL, gzip, zstd or plain "
    "tar. Repeat it for an archive split into parts (read in the order given).",
)
@click.option(
    "--labels-archive",
    metavar="PATH_OR_URL",
    multiple=True,
    help="MLHub only: the labels collection archive (default: the archive endpoint).",
)
@click.option(
    "--metadata",
    metavar="PATH_OR_URL",
    multiple=True,
    help="reBEN only: the metadata parquet file(s) (repeatable; normally metadata.parquet and "
    "metadata_for_patches_with_snow_cloud_or_shadow.parquet).",
)
@click.option(
    "--s1-archive",
    metavar="PATH_OR_URL",
    multiple=True,
    help="The Sentinel-1 archive (BigEarthNet-S1-v1.0.tar.gz or BigEarthNet-S1.tar.zst), written "
    "as bands_s1 aligned sample for sample with S2 (repeat it for parts).",
)
@click.option(
    "--reference-maps",
    metavar="PATH_OR_URL",
    multiple=True,
    help="reBEN only: Reference_Maps.tar.zst, written as reference_map (repeat it for parts).",
)
@click.option(
    "--layout",
    type=click.Choice(["mlhub", "zenodo-v1", "reben-v2"]),
    help="Force the layout. Default: recognised from the archive's first member.",
)
@click.option(
    "--dataset",
    type=click.Choice(["bigearthnet-v1", "bigearthnet-v2"]),
    help="Stream the release's official files from Zenodo, each md5-checked as it streams.",
)
@click.option(
    "--with",
    "modalities",
    metavar="s1,reference-maps",
    default="",
    help="With --dataset: the modalities to add to Sentinel-2 (comma-separated).",
)
@click.option(
    "--zenodo-url",
    envvar="INGEST_ZENODO_URL",
    metavar="URL",
    help="With --dataset: a base URL serving Zenodo's /records/<id>/files/<name> (a mirror). "
    "[env: INGEST_ZENODO_URL; default: https://zenodo.org]",
)
@click.option(
    "--md5sums",
    metavar="FILE",
    help="With --dataset: md5sum-format file whose sums replace the published ones for the files "
    "it names (a mirror that repackaged them).",
)
@click.option("--labels-collection", default=LABELS_COLLECTION, show_default=True)
@click.option("--source-collection", default=SOURCE_COLLECTION, show_default=True)
@click.option(
    "--classes",
    "classes",
    multiple=True,
    metavar="NAME",
    help="Keep patches having ANY of these classes (repeatable).",
)
@click.option(
    "--cloud-and-shadow/--no-cloud-and-shadow",
    default=None,
    help="Keep only patches with (or without) cloud or shadow. Default: no filter.",
)
@click.option(
    "--seasonal-snow/--no-seasonal-snow",
    default=None,
    help="Keep only patches with (or without) seasonal snow. Default: no filter.",
)
@click.option(
    "--split",
    type=click.Choice(["train", "validation", "test"]),
    help="Keep only the patches of this official split.",
)
@click.option("--limit", type=click.IntRange(min=0), help="Write at most N samples.")
@click.option(
    "--labels-only",
    is_flag=True,
    help="Write the label variables alone: from the labels archive (MLHub), the metadata "
    "(reBEN), or each patch's JSON in the S2 archive (Zenodo v1.0, streamed, no band decoded).",
)
@click.option(
    "--shard-size",
    type=click.IntRange(min=1),
    default=DEFAULT_SHARD_SIZE,
    show_default=True,
    help="Samples per shard of the band arrays.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=None,
    help="Writer processes (0 = write in the reader). [default: "
    f"{default_workers()}, {default_workers(partners=True)} with S1 or reference maps]",
)
@click.option(
    "--on-error",
    type=click.Choice(["fail", "skip"]),
    default="fail",
    show_default=True,
    help="On a bad item: stop, or leave it out and list it in the store's 'skipped'.",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace an existing store, only once the new one is complete (a local store is written "
    "beside it and swapped in; on object storage every input is checked before the old store is "
    "deleted).",
)
@click.option(
    "--staging-dir",
    envvar="INGEST_STAGING_DIR",
    metavar="DIR",
    help="Where S1 patches and reference maps wait for their S2 shard (about 115 kB per S1 "
    "patch). [env: INGEST_STAGING_DIR; default: beside a local store, else the system's "
    "temporary folder]",
)
@click.option(
    "--no-space-check",
    is_flag=True,
    help="Start even when the estimate of what the run writes exceeds the free space of a "
    "local store's or the staging folder's file system.",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue an unfinished store (after a crash, Ctrl-C or kill) with the same options; "
    "finished shards are kept.",
)
@click.option(
    "--via",
    type=click.Choice(["archive", "items"]),
    default="archive",
    show_default=True,
    help="archive: stream both collection archives. items: take the label items from the items "
    "API and fetch only the selected source items' bands (a subset without the 71 GB archive; "
    "samples in label order).",
)
@click.option(
    "--cluster",
    "--scheduler",
    "cluster",
    metavar="local:N|ADDRESS",
    help="Write the shards as tasks on dask.distributed: local:N starts a LocalCluster of N "
    "workers, else the address of a running scheduler (tcp://host:8786). Default: --workers.",
)
@storage_options_option
@click.option("--api-key", envvar=None, help="MLHub API key (else MLHUB_API_KEY or the profile).")
@click.option("--profile", help="Profile of the MLHub profiles file to take the API key from.")
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Show a progress line. Default: when stderr is a terminal.",
)
@handle_errors
def run(
    store: str,
    labels_archive: tuple[str, ...],
    source_archive: tuple[str, ...],
    metadata: tuple[str, ...],
    s1_archive: tuple[str, ...],
    reference_maps: tuple[str, ...],
    layout: str | None,
    dataset: str | None,
    modalities: str,
    zenodo_url: str | None,
    md5sums: str | None,
    split: str | None,
    labels_collection: str,
    source_collection: str,
    classes: tuple[str, ...],
    cloud_and_shadow: bool | None,
    seasonal_snow: bool | None,
    limit: int | None,
    labels_only: bool,
    shard_size: int,
    workers: int | None,
    on_error: str,
    overwrite: bool,
    api_key: str | None,
    profile: str | None,
    progress: bool | None,
    resume: bool,
    staging_dir: str | None,
    no_space_check: bool,
    via: str,
    cluster: str | None,
    storage_options: dict[str, Any],
) -> None:
    """Stream BigEarthNet's archives into the Zarr store STORE (a path or an fsspec URL such
    as s3://bucket/bigearthnet.zarr); nothing is extracted to disk.

    \b
    Zenodo v1.0:  ingest run v1.zarr --source-archive BigEarthNet-S2-v1.0.tar.gz
    reBEN v2.0:   ingest run v2.zarr --source-archive BigEarthNet-S2.tar.zst \\
                      --metadata metadata.parquet \\
                      --metadata metadata_for_patches_with_snow_cloud_or_shadow.parquet
    official:     ingest run v2.zarr --dataset bigearthnet-v2
    MLHub:        ingest run v1.zarr [--labels-archive L.tar.gz --source-archive S.tar.gz]

    Without archives, MLHub's two collection archives come from the archive endpoint of an
    MLHub-compatible server (MLHUB_ROOT_URL, key from --api-key, MLHUB_API_KEY or the profiles
    file); MLHub itself (api.radiant.earth) was retired in 2023.

    One run writes a store at a time (a second one is refused, exit 5); a failed run says what
    it left and whether --resume continues it.
    """
    from ..errors import UsageError
    from ..pipeline import run as run_pipeline
    from .progress import ProgressLine, summary

    if resume and overwrite:
        raise UsageError("--resume and --overwrite exclude each other")

    config = RunConfig(
        store=store,
        labels_archive=labels_archive or None,
        source_archive=source_archive or None,
        metadata=metadata,
        s1_archive=s1_archive or None,
        reference_maps=reference_maps or None,
        layout=layout,
        dataset=dataset,
        modalities=tuple(m.strip() for m in modalities.split(",") if m.strip()),
        zenodo_url=zenodo_url,
        md5sums=read_md5sums(md5sums) if md5sums else {},
        labels_collection=labels_collection,
        source_collection=source_collection,
        selection=Selection(classes, cloud_and_shadow, seasonal_snow, limit, split),
        labels_only=labels_only,
        shard_size=shard_size,
        overwrite=overwrite,
        resume=resume,
        workers=default_workers(bool(s1_archive or reference_maps or modalities))
        if workers is None
        else workers,
        on_error="skip" if on_error == "skip" else "fail",
        endpoint=Endpoint(api_key=api_key, profile=profile),
        via="items" if via == "items" else "archive",
        storage_options=storage_options,
        cluster=cluster,
        staging_dir=staging_dir,
        space_check=not no_space_check,
    )
    show = sys.stderr.isatty() if progress is None else progress
    report = run_pipeline(
        config,
        progress=ProgressLine(sys.stderr) if show else None,
        warn=lambda message: click.echo(f"warning: {redact(message)}", err=True),
        note=lambda message: click.echo(message, err=True),
    )
    click.echo(summary(report))


@main.command()
@click.argument("store", metavar="STORE")
@storage_options_option
@handle_errors
def verify(store: str, storage_options: dict[str, Any]) -> None:
    """Check STORE (a path or an fsspec URL) against the store contract; exit 5 listing the
    first problems."""
    from ..store.location import StoreLocation
    from ..store.verify import check
    from ..store.zarrstore import root_attrs

    location = StoreLocation.of(store, storage_options)
    problems = check(location)
    if problems:
        for problem in problems[:20]:
            click.echo(f"  {problem}", err=True)
        raise StoreError(f"{store}: {len(problems)} problem(s), first: {problems[0]}")
    attrs = root_attrs(location)
    version, dataset = attrs.get("contract_version", 1), attrs.get("dataset", "bigearthnet-v1")
    click.echo(f"{store}: valid store (contract v{version}, {dataset}, complete)")


@main.command(name="classes")
@click.option("--nineteen", is_flag=True, help="The 19-class nomenclature instead of the 43.")
def classes_command(nineteen: bool) -> None:
    """List the class names that --classes accepts (canonical order)."""
    from ..nomenclature import CLASSES_19, CLASSES_43

    for i, name in enumerate(CLASSES_19 if nineteen else CLASSES_43):
        click.echo(f"{i:2d}  {name}")


@main.command()
@click.argument("store", metavar="STORE")
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE.png",
    help="Also write a figure: class frequencies and up to 16 true-colour patches.",
)
@storage_options_option
@handle_errors
def info(store: str, plot_path: Path | None, storage_options: dict[str, Any]) -> None:
    """Summarise the store STORE (a path or an fsspec URL): samples, completeness, class, flag and
    split counts, size on disk, chunk and shard layout."""
    from ..read.info import plot, render, summary

    click.echo(render(summary(store, storage_options)))
    if plot_path is not None:
        plot(store, plot_path, storage_options)
        click.echo(f"figure: {plot_path}")


@main.command()
@click.argument("store", metavar="STORE")
@click.option("--split", default="train", show_default=True,
              help="Samples of this split (train, validation, test), or 'all'.")  # fmt: skip
@click.option(
    "--size",
    type=click.IntRange(1, 4096),
    default=120,
    show_default=True,
    help="Bands resampled to SIZE x SIZE pixels first, as the model will see them.",
)
@click.option(
    "--interpolation",
    type=click.Choice(["nearest", "bilinear", "bicubic", "gdal"]),
    default="bilinear",
    show_default=True,
    help="How the 20 m and 60 m bands are resampled: torch's modes (ConfigILM) or gdal "
    "(torchgeo: GDAL bilinear, rounded).",
)
@click.option(
    "--cluster",
    metavar="local:N|ADDRESS",
    help="Compute on dask.distributed: N local worker processes or a scheduler.",
)
@storage_options_option
@handle_errors
def stats(
    store: str,
    split: str,
    size: int,
    interpolation: str,
    cluster: str | None,
    storage_options: dict[str, Any],
) -> None:
    """Compute the mean and standard deviation of every band (S2, and S1 when the store has
    it) over the samples of a split, with dask, and record them in STORE (the `statistics`
    attribute, shown by `ingest info`; `SampleDataset(..., normalize="store")` uses them)."""
    from ..read.statistics import compute, record

    client = local = None
    if cluster:
        from ..store.cluster import LOCAL_PREFIX, connect

        count = cluster.removeprefix(LOCAL_PREFIX)
        if cluster.startswith(LOCAL_PREFIX) and not (count.isdigit() and int(count) >= 1):
            raise UsageError(f"--cluster {cluster}: local:N needs N >= 1 worker processes")

        client, local = connect(cluster)
    try:
        result = compute(store, split=None if split == "all" else split, size=size,
                         interpolation=interpolation, storage_options=storage_options)  # fmt: skip
    finally:
        if client is not None:
            client.close()
        if local is not None:
            local.close()
    record(store, result, storage_options)
    click.echo(f"{store}: statistics of {result.samples:,} samples "
               f"({split}, {size} x {size}, {interpolation}) recorded")  # fmt: skip
    for band in result.mean:
        click.echo(f"  {band:<5} mean {result.mean[band]:>12.4f}  std {result.std[band]:>12.4f}")


for _command in (
    collections_command,
    items_command,
    download_item_command,
    download_command,
    sample,
    serve,
):
    main.add_command(_command)

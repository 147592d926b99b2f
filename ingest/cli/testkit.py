"""The test kit's commands, ``ingest sample`` and ``ingest serve``: the one place where the library
reaches into :mod:`ingest.testing` (lazily, when the command runs; see the import contracts in
``pyproject.toml``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import click

from .common import handle_errors


@click.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--real", is_flag=True, help="The 6 real example patches of bigearthnet-common.")
@click.option("--patches", type=click.IntRange(min=1), help="N synthetic patches.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--flags",
    type=click.Choice(["string", "bool"]),
    default="string",
    show_default=True,
    help="Write cloud/snow flags as 'true'/'false' strings or JSON booleans.",
)
@click.option(
    "--label-order",
    type=click.Choice(["same", "reversed", "shuffled"]),
    default="same",
    show_default=True,
    help="Order of the label items relative to the source items.",
)
@click.option(
    "--band-layout",
    type=click.Choice(["stripped", "cog", "bigendian"]),
    default="stripped",
    show_default=True,
    help="How band GeoTIFFs are encoded.",
)
@click.option("--extra-b10", is_flag=True, help="Add a B10 band file and asset to source items.")
@click.option(
    "--layout",
    type=click.Choice(["zenodo-v1", "reben-v2"]),
    help="Write a Zenodo release instead of the MLHub archives: v1.0 or reBEN v2.0.",
)
@click.option("--s1", is_flag=True, help="With --layout: also the Sentinel-1 archive.")
@click.option("--reference-maps", is_flag=True, help="With --layout reben-v2: also Reference_Maps.")
@click.option(
    "--compression",
    type=click.Choice(["gzip", "zstd", "none"]),
    help="With --layout: the archives' compression. Default: the layout's own (v1 gzip, v2 zstd).",
)
@click.option(
    "--parts",
    type=click.IntRange(1, 676),
    default=1,
    show_default=True,
    help="With --layout: split each archive into K parts (<name>aa, <name>ab, ...).",
)
@click.option(
    "--s1-order",
    type=click.Choice(["archive", "reversed", "shuffled"]),
    default="archive",
    show_default=True,
    help="With --layout: order of the S1 archive's patches.",
)
@click.option(
    "--maps-order",
    type=click.Choice(["archive", "reversed", "shuffled"]),
    default="archive",
    show_default=True,
    help="With --layout reben-v2: order of the reference maps' patches.",
)
@handle_errors
def sample(
    directory: Path,
    real: bool,
    patches: int | None,
    seed: int,
    flags: str,
    label_order: str,
    band_layout: str,
    extra_b10: bool,
    layout: str | None,
    s1: bool,
    reference_maps: bool,
    compression: str | None,
    parts: int,
    s1_order: str,
    maps_order: str,
) -> None:
    """Write sample archives into DIRECTORY and print their paths.

    Without --layout: the MLHub archives (labels and source .tar.gz). With --layout: the files of
    a Zenodo release under their official names, the metadata parquets (v2) and MD5SUMS.
    """
    from ..errors import UsageError

    if real == (patches is not None):
        raise UsageError("give exactly one of --real and --patches N")
    given = _given_options(click.get_current_context())
    if layout is not None:
        mlhub_only = [o for o in _MLHUB_ONLY if o in given]
        if mlhub_only:
            raise UsageError(f"--{mlhub_only[0]} is for the MLHub archives, not with --layout")
        if reference_maps and layout != "reben-v2":
            raise UsageError("--reference-maps exists only with --layout reben-v2")
        _release_sample(
            directory, layout, real=real, patches=patches or 0, seed=seed, s1=s1,
            reference_maps=reference_maps, compression=compression, parts=parts,
            s1_order=s1_order, maps_order=maps_order,
        )  # fmt: skip
        return
    release_only = [o for o in _RELEASE_ONLY if o in given]
    if release_only:
        raise UsageError(f"--{release_only[0]} needs --layout zenodo-v1 or reben-v2")
    from ..testing.samples import SampleOptions, write_real_sample, write_synthetic_sample

    options = SampleOptions(
        flags=flags,  # type: ignore[arg-type]  # click.Choice guarantees the literals
        label_order=label_order,  # type: ignore[arg-type]
        band_layout=band_layout,  # type: ignore[arg-type]
        extra_b10=extra_b10,
    )
    directory.mkdir(parents=True, exist_ok=True)
    if real:
        archives = write_real_sample(directory, options)
    else:
        assert patches is not None
        archives = write_synthetic_sample(directory, patches, seed, options)
    click.echo(f"{archives.labels}\n{archives.source}\n{len(archives.patches):,} patches")


_MLHUB_ONLY = ("flags", "label-order", "band-layout", "extra-b10")
_RELEASE_ONLY = ("s1", "reference-maps", "compression", "parts", "s1-order", "maps-order")


def _given_options(context: click.Context) -> set[str]:
    """The options given on the command line (not left at their defaults), dashed."""
    return {
        name.replace("_", "-")
        for name in context.params
        if context.get_parameter_source(name) not in (None, click.core.ParameterSource.DEFAULT)
    }


def _release_sample(
    directory: Path,
    layout: str,
    *,
    real: bool,
    patches: int,
    seed: int,
    s1: bool,
    reference_maps: bool,
    compression: str | None,
    parts: int,
    s1_order: str,
    maps_order: str,
) -> None:
    from ..testing.releases import write_release_sample

    written = write_release_sample(
        directory,
        layout=layout,  # type: ignore[arg-type]  # click.Choice guarantees the literals
        real=real,
        patches=patches,
        seed=seed,
        compression=compression,  # type: ignore[arg-type]
        parts=parts,
        s1=s1,
        reference_maps=reference_maps,
        s1_order=s1_order,  # type: ignore[arg-type]
        maps_order=maps_order,  # type: ignore[arg-type]
    )
    paths = [*written.s2, *written.s1, *written.reference_maps, *written.metadata]
    for path in [*paths, written.md5sums]:
        click.echo(str(path))
    click.echo(f"{len(written.patches):,} patches")


@click.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8000,
    show_default=True,
    help="0 picks a free port.",
)
@click.option("--api-key", help="Require this key (?key=) like MLHub did.")
@handle_errors
def serve(directory: Path, host: str, port: int, api_key: str | None) -> None:
    """Serve DIRECTORY as MLHub and Zenodo would (the emulator).

    Every <collection>.tar.gz is served through the MLHub API (MLHUB_ROOT_URL printed first);
    files with the official names of a Zenodo release under /records/{record}/files/{name}, each
    URL printed on its own line.
    """
    from ..testing.emulator import serve_forever

    def ready(root_url: str) -> None:
        click.echo(f"MLHUB_ROOT_URL={root_url}")
        click.echo("serving; press Ctrl-C to stop", err=True)

    def files(urls: Mapping[str, str]) -> None:
        for url in urls.values():
            click.echo(url)

    serve_forever(directory, host=host, port=port, api_key=api_key, on_ready=ready, on_files=files)

"""The test kit's commands, ``ingest sample`` and ``ingest serve``: the one place where the library
reaches into :mod:`ingest.testing` (lazily, when the command runs; see the import contracts in
``pyproject.toml``)."""

from __future__ import annotations

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
) -> None:
    """Write sample MLHub archives (labels and source .tar.gz) into DIRECTORY."""
    from ..errors import UsageError
    from ..testing.samples import SampleOptions, write_real_sample, write_synthetic_sample

    if real == (patches is not None):
        raise UsageError("give exactly one of --real and --patches N")
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
    """Serve every <collection>.tar.gz in DIRECTORY as the MLHub API would (the emulator)."""
    from ..testing.emulator import serve_forever

    def ready(root_url: str) -> None:
        click.echo(f"MLHUB_ROOT_URL={root_url}")
        click.echo("serving; press Ctrl-C to stop", err=True)

    serve_forever(directory, host=host, port=port, api_key=api_key, on_ready=ready)

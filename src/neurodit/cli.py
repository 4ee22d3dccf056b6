"""`neurodit` command line: a thin typer layer over one importable function per stage.

Every command turns a NeuroditError into one line on stderr (``error: <file>: <problem>``) and
exit code 2. Stage modules are imported inside each command so ``neurodit --help`` stays fast.
Section owners: each block below calls exactly one stage entry function.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Optional

import typer

from neurodit.errors import NeuroditError

app = typer.Typer(
    name="neurodit",
    help="Synthetic 3D brain MD maps with a finetuned Diffusion Transformer.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def command(name: str | None = None, **kwargs):
    """Register a command whose NeuroditError becomes one stderr line and exit code 2."""

    def deco(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kw):
            try:
                return fn(*args, **kw)
            except NeuroditError as exc:
                typer.echo(f"error: {exc}", err=True)
                raise typer.Exit(code=NeuroditError.exit_code) from None

        return app.command(name, **kwargs)(wrapper)

    return deco


# --------------------------------------------------------------------------- data (issue 2)
@command("phantom")
def phantom_cmd(
    cohort: Annotated[str, typer.Option(help="camcan (sex/age) or adni (CN/AD[/MCI])")],
    n: Annotated[int, typer.Option("--n", help="number of subjects")],
    out: Annotated[Path, typer.Option(help="output folder (participants.tsv + NIfTI)")],
    seed: Annotated[int, typer.Option(help="random seed: same seed, same bytes")] = 0,
    voxel_size: Annotated[float, typer.Option(help="voxel size in mm (MNI template resolution)")] = 2.0,
    include_mci: Annotated[bool, typer.Option(help="adni: also draw MCI subjects")] = False,
    overwrite: Annotated[bool, typer.Option(help="replace a non-empty output folder")] = False,
):
    """Write a phantom cohort (MNI152-based MD maps with known effects) in the input format."""
    from neurodit.data.phantom import make_phantom_cohort

    path = make_phantom_cohort(cohort, n=n, out=out, seed=seed, voxel_size=voxel_size,
                               include_mci=include_mci, overwrite=overwrite)
    typer.echo(f"phantom: wrote {n} {cohort} subjects to {path}")


@command("prepare")
def prepare_cmd(
    data_dir: Annotated[Path, typer.Argument(help="folder with participants.tsv and NIfTI volumes")],
    out: Annotated[Path, typer.Option(help="prepared output folder")],
    shape: Annotated[Optional[tuple[int, int, int]], typer.Option(help="grid shape D H W")] = None,
    voxel_size: Annotated[Optional[float], typer.Option(help="grid voxel size in mm")] = None,
    overwrite: Annotated[bool, typer.Option(help="replace a non-empty output folder")] = False,
):
    """Validate, reorient to RAS, resample to one grid, mask and normalise a cohort."""
    from neurodit.data.prepare import prepare

    path = prepare(data_dir, out, shape=shape, voxel_size=voxel_size, overwrite=overwrite)
    typer.echo(f"prepare: wrote {path}")


# --------------------------------------------------------------------------- tiling (issue 2)
@command("tile")
def tile_cmd(
    volume: Annotated[Path, typer.Argument(help="3D NIfTI volume")],
    out: Annotated[Path, typer.Option(help="MOSAIC.png or MOSAIC.npy (spec written to MOSAIC.json)")],
    axis: Annotated[int, typer.Option(help="slicing axis (2 = axial for RAS volumes)")] = 2,
):
    """Tile a 3D volume into one square 2D mosaic of its slices."""
    from neurodit.tiling import tile_file

    path = tile_file(volume, out, axis=axis)
    typer.echo(f"tile: wrote {path}")


@command("untile")
def untile_cmd(
    mosaic: Annotated[Path, typer.Argument(help="MOSAIC.npy with MOSAIC.json beside it")],
    out: Annotated[Path, typer.Option(help="VOLUME.nii.gz")],
):
    """Turn a mosaic back into a 3D NIfTI volume (spec and affine from MOSAIC.json)."""
    from neurodit.tiling import untile_file

    path = untile_file(mosaic, out)
    typer.echo(f"untile: wrote {path}")


def main() -> None:  # console-script entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()

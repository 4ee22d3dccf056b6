"""`neurodit` command line: a thin typer layer over one importable function per stage.

Every command turns a NeuroditError into one line on stderr (``error: <file>: <problem>``) and
exit code 2. Stage modules are imported inside each command so ``neurodit --help`` stays fast.
Section owners: each block below calls exactly one stage entry function.
"""

from __future__ import annotations

import errno
import functools
import re
from pathlib import Path
from typing import Annotated

import typer

from neurodit.defaults import SAMPLING
from neurodit.errors import NeuroditError

app = typer.Typer(
    name="neurodit",
    help="Synthetic 3D brain MD maps with a finetuned Diffusion Transformer.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


# A full disk, a read-only or unwritable output folder: the user's environment, not a bug -> exit 2.
OUTPUT_ERRNOS = frozenset({errno.ENOSPC, errno.EACCES, errno.EROFS, errno.EPERM, errno.EDQUOT})
# atomic_dir builds OUT in a hidden sibling ".OUT.<random>.partial" (and atomic writes ".NAME.<random>.tmp")
_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.[^.]+\.(partial|tmp)$")


def output_error(exc: OSError, out: Path | str | None = None) -> NeuroditError:
    """One line for an OSError on an output: the path (the user's name for it, not our hidden temporary
    sibling) and the system's reason, e.g. ``runs/eval: No space left on device (no output was written)``."""
    path: Path | None = Path(exc.filename) if exc.filename else None
    if path is not None:  # map temporary siblings (a folder, a file inside it) back to what they become
        path = Path(*[(m.group("name") if (m := _TEMP_NAME.match(part)) else part) for part in path.parts])
    if path is None and out is not None:
        path = Path(out)
    reason = exc.strerror or errno.errorcode.get(exc.errno or 0, type(exc).__name__)
    return NeuroditError(f"{reason} (no output was written)", path)


def command(name: str | None = None, **kwargs):
    """Register a command whose NeuroditError -- or OSError of a full disk / unwritable folder
    (:data:`OUTPUT_ERRNOS`) -- becomes one stderr line and exit code 2."""

    def deco(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kw):
            try:
                return fn(*args, **kw)
            except NeuroditError as exc:
                typer.echo(f"error: {exc}", err=True)
                raise typer.Exit(code=NeuroditError.exit_code) from None
            except OSError as exc:
                if exc.errno not in OUTPUT_ERRNOS:
                    raise
                typer.echo(f"error: {output_error(exc, kw.get('out'))}", err=True)
                raise typer.Exit(code=NeuroditError.exit_code) from None

        return app.command(name, **kwargs)(wrapper)

    return deco


# --------------------------------------------------------------------------- data
@command("phantom")
def phantom_cmd(
    cohort: Annotated[str, typer.Option(help="camcan (sex/age) or adni (CN/AD, optionally MCI)")],
    n: Annotated[int, typer.Option("--n", help="number of subjects")],
    out: Annotated[Path, typer.Option(help="output folder (participants.tsv + NIfTI)")],
    seed: Annotated[int, typer.Option(help="random seed: same seed, same bytes")] = 0,
    voxel_size: Annotated[float, typer.Option(help="voxel size in mm (1 and 2: native MNI152 templates; "
                                                   "others resampled, e.g. 4 for speed)")] = 2.0,
    include_mci: Annotated[bool, typer.Option(help="adni: also draw MCI subjects")] = False,
    overwrite: Annotated[bool, typer.Option(help="replace a non-empty output folder")] = False,
    effects: Annotated[str, typer.Option(help="study (lesions, non-linear anatomy, site effects) or classic "
                                              "(the model before issue 11, same bytes)")] = "study",
    site: Annotated[str | None, typer.Option(help="study only: none, camcan or adni scanner/protocol effects "
                                                  "(default: the cohort's own)")] = None,
    maps: Annotated[str, typer.Option(help="comma-separated maps of the same subjects: md (one folder, the "
                                           "earlier layout) or md,fa (OUT/md and OUT/fa cohort folders)")] = "md",
):
    """Write a phantom cohort (MNI152-based MD, optionally FA, maps with known effects, see docs/PHANTOM.md)."""
    from neurodit.data.phantom import make_phantom_cohort

    path = make_phantom_cohort(cohort, n=n, out=out, seed=seed, voxel_size=voxel_size,
                               include_mci=include_mci, overwrite=overwrite, effects_model=effects, site=site,
                               maps=tuple(m for m in maps.split(",") if m.strip()))
    typer.echo(f"phantom: wrote {n} {cohort} subjects to {path}")


@command("prepare")
def prepare_cmd(
    data_dir: Annotated[Path, typer.Argument(help="folder with participants.tsv and NIfTI volumes")],
    out: Annotated[Path, typer.Option(help="prepared output folder")],
    shape: Annotated[tuple[int, int, int] | None, typer.Option(help="grid shape D H W")] = None,
    voxel_size: Annotated[float | None, typer.Option(help="grid voxel size in mm")] = None,
    map_: Annotated[str | None, typer.Option("--map", help="the scalar map the folder holds: md, fa, ad, rd or a "
                                                           "map its map.json declares with unit and window "
                                                           "(default: its map.json, else md)")] = None,
    maps: Annotated[str | None, typer.Option(help="several maps kept together, e.g. md,fa: DATA_DIR holds one "
                                                  "cohort folder per map (DATA_DIR/md, DATA_DIR/fa, as "
                                                  "`neurodit dti` and `phantom --maps` write)")] = None,
    overwrite: Annotated[bool, typer.Option(help="replace a non-empty output folder")] = False,
):
    """Validate, reorient to RAS, resample to one grid, mask and normalise a cohort."""
    from neurodit.data.prepare import prepare

    path = prepare(data_dir, out, shape=shape, voxel_size=voxel_size, overwrite=overwrite, map_name=map_,
                   maps=maps)
    typer.echo(f"prepare: wrote {path}")


@command("split")
def split_cmd(
    data_dir: Annotated[Path, typer.Argument(help="cohort folder to split (participants.tsv + NIfTI)")],
    out: Annotated[Path | None, typer.Option(help="write OUT/train and OUT/heldout")] = None,
    train_out: Annotated[Path | None, typer.Option(help="training cohort folder (instead of --out)")] = None,
    heldout_out: Annotated[Path | None, typer.Option(help="held-out cohort folder (instead of --out)")] = None,
    heldout_fraction: Annotated[float, typer.Option(help="fraction of participants held out")] = 0.2,
    seed: Annotated[int, typer.Option(help="random seed: same seed, same split")] = 0,
    stratify: Annotated[str, typer.Option(help="label column whose classes keep their proportions "
                                               "('' for none)")] = "sex",
    overwrite: Annotated[bool, typer.Option(help="replace non-empty output folders")] = False,
):
    """Split a cohort by participant (all sessions on one side), stratified, into two cohort folders."""
    from neurodit.data.split import split_cohort

    pair = (train_out, heldout_out)
    if (out is not None and any(pair)) or (out is None and not all(pair)):
        raise NeuroditError("give --out DIR, or both --train-out and --heldout-out", data_dir)
    if out is not None:
        train_out, heldout_out = out / "train", out / "heldout"
    train, held = split_cohort(data_dir, train_out, heldout_out, heldout_fraction=heldout_fraction, seed=seed,
                               stratify=stratify or None, overwrite=overwrite)
    typer.echo(f"split: wrote {train} and {held}")


@command("export")
def export_cmd(
    prep_dir: Annotated[Path, typer.Argument(help="folder written by `neurodit prepare`")],
    out: Annotated[Path, typer.Option(help="output cohort folder (participants.tsv + NIfTI in mm2/s)")],
    overwrite: Annotated[bool, typer.Option(help="replace a non-empty output folder")] = False,
):
    """Write a prepared cohort back as NIfTI in mm2/s on its grid (the real data as a generator sees it)."""
    from neurodit.data.prepare import export_prepared

    path = export_prepared(prep_dir, out, overwrite=overwrite)
    typer.echo(f"export: wrote {path}")


@command("dti")
def dti_cmd(
    dwi: Annotated[Path, typer.Argument(help="4D DWI NIfTI, or a folder with participants.tsv and "
                                             "<participant_id>[_<session_id>]_dwi.nii.gz + .bval/.bvec")],
    out: Annotated[Path, typer.Option(help="output folder: md/fa/ad/rd .nii.gz (a file), or md/ fa/ ad/ rd/ "
                                           "cohort folders (a folder)")],
    bval: Annotated[Path | None, typer.Option(help="b-values in s/mm² (FSL .bval); a DWI file only")] = None,
    bvec: Annotated[Path | None, typer.Option(help="b-vectors, 3xN or Nx3 text; a DWI file only")] = None,
    mask: Annotated[Path | None, typer.Option(help="brain mask NIfTI on the DWI grid (default: median_otsu)")]
    = None,
    overwrite: Annotated[bool, typer.Option(help="replace a non-empty output folder")] = False,
):
    """Fit the diffusion tensor (dipy) and write MD, FA, AD, RD maps (mm²/s; FA unitless)."""
    from neurodit.data.dti import dti

    path = dti(dwi, out, bval=bval, bvec=bvec, mask=mask, overwrite=overwrite)
    typer.echo(f"dti: wrote {path}")


# --------------------------------------------------------------------------- reference generators
@command("baseline")
def baseline_cmd(
    train_cohort: Annotated[Path, typer.Argument(help="training cohort folder (participants.tsv + NIfTI)")],
    kind: Annotated[str, typer.Option(help="pca, noise, copy or mean")],
    n: Annotated[int, typer.Option("--n", help="number of volumes")],
    out: Annotated[Path, typer.Option(help="output synthetic cohort folder")],
    label: Annotated[list[str] | None, typer.Option(help="one class only, e.g. sex=F")] = None,
    condition: Annotated[str, typer.Option(help="label column the generator is conditioned on")] = "sex",
    components: Annotated[int | None, typer.Option(help="pca: keep the K largest components")] = None,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    overwrite: Annotated[bool, typer.Option(help="replace a non-empty output folder")] = False,
):
    """Write a reference generator's samples as a synthetic cohort (what good and bad look like)."""
    from neurodit.data.synthetic import parse_label
    from neurodit.generators.reference import write_baseline

    path = write_baseline(train_cohort, kind, n, out, label=parse_label(label) or None, condition=condition,
                          components=components, seed=seed, overwrite=overwrite)
    typer.echo(f"baseline: wrote {n} {kind} volumes to {path}")


# --------------------------------------------------------------------------- tiling
@command("tile")
def tile_cmd(
    volume: Annotated[Path, typer.Argument(help="3D NIfTI volume")],
    out: Annotated[Path, typer.Option(help="MOSAIC.png or MOSAIC.npy (spec written to MOSAIC.json)")],
    axis: Annotated[int, typer.Option(help="slicing axis (2 = axial for RAS volumes)")] = 2,
):
    """Tile a 3D volume into one square 2D mosaic of its slices."""
    from neurodit.mosaic_files import tile_file

    path = tile_file(volume, out, axis=axis)
    typer.echo(f"tile: wrote {path}")


@command("untile")
def untile_cmd(
    mosaic: Annotated[Path, typer.Argument(help="MOSAIC.npy with MOSAIC.json beside it")],
    out: Annotated[Path, typer.Option(help="VOLUME.nii.gz")],
):
    """Turn a mosaic back into a 3D NIfTI volume (spec and affine from MOSAIC.json)."""
    from neurodit.mosaic_files import untile_file

    path = untile_file(mosaic, out)
    typer.echo(f"untile: wrote {path}")


# --------------------------------------------------------------------------- report
@command("report")
def report_cmd(
    dirs: Annotated[list[Path], typer.Argument(help="run, cohort, prepared, eval or downstream folders, "
                                                    "or a demo root holding them (one level down)")],
    out: Annotated[Path, typer.Option(help="HTML file to write (self-contained, images embedded)")] = Path(
        "report.html"),
    title: Annotated[str, typer.Option(help="page title")] = "neurodit report",
):
    """Build one self-contained HTML report from the folders the other stages wrote."""
    from neurodit.report import build_report

    path = build_report(dirs, out, title=title)
    typer.echo(f"report: wrote {path} ({path.stat().st_size / 1e6:.1f} MB); open it in a browser")


# --------------------------------------------------------------------------- generative core
@command("train")
def train_cmd(
    prep_dir: Annotated[Path, typer.Argument(help="folder written by `neurodit prepare`")],
    out: Annotated[Path, typer.Option(help="run folder (model/, checkpoints/, samples/, loss.csv, ...)")],
    generator: Annotated[str | None, typer.Option(help="dit (mosaic DiT) | ddpm3d (3D diffusion UNet) | "
                                                       "pca (PCA-Gaussian)")] = None,
    objective: Annotated[str | None, typer.Option(help="ddpm (eps/v/x0: diffusion.prediction_type) | flow "
                                                       "(rectified flow, velocity target)")] = None,
    preset: Annotated[str | None, typer.Option(help="model preset (tiny, S-8, B-4, XL-2-256, ...)")] = None,
    init: Annotated[str | None, typer.Option(help="pretrained weights: hub id, diffusers folder or DiT .pt")] = None,
    max_steps: Annotated[int | None, typer.Option(help="optimiser steps in total")] = None,
    resume: Annotated[bool, typer.Option(help="continue from the last checkpoint in --out")] = False,
    checkpoint_every: Annotated[int | None, typer.Option(help="save a checkpoint every N steps")] = None,
    label: Annotated[str | None, typer.Option(help="label column, or combined 'sex*age_bin'")] = None,
    age_bins: Annotated[list[str] | None, typer.Option(help="age_bin edges in years: '40,60' or repeated "
                                                            "(--age-bins 40 --age-bins 60)")] = None,
    seed: Annotated[int | None, typer.Option(help="random seed")] = None,
    batch_size: Annotated[int | None, typer.Option(help="mosaics per step (per device)")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML with TrainConfig keys")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="override key=value (repeatable)")] = None,
    overwrite: Annotated[bool, typer.Option(help="replace an existing run folder")] = False,
):
    """Fit a class-conditional generator: the mosaic DiT (default; finetune with --init), a 3D diffusion
    UNet or a PCA-Gaussian; `accelerate launch` works for the diffusion ones."""
    from neurodit.config import parse_age_bins, parse_overrides
    from neurodit.generators.base import fit
    from neurodit.train import resolve_train_config

    cfg = resolve_train_config(config, parse_overrides(set_), prep_dir=str(prep_dir), out=str(out),
                               generator=generator, objective=objective,
                               preset=preset, init=init, max_steps=max_steps, resume=resume or None,
                               checkpoint_every=checkpoint_every, label=label, seed=seed,
                               age_bins=parse_age_bins(age_bins),
                               batch_size=batch_size, overwrite=overwrite or None)
    path = fit(prep_dir, cfg)
    typer.echo(f"train: wrote {path} ({cfg.generator}; model in {path / 'model'})")


@command("pretrain")
def pretrain_cmd(
    images: Annotated[str, typer.Option(help="skimage (scikit-image's sample images) | sklearn (its two sample "
                                             "photos) | a folder of image files")],
    preset: Annotated[str, typer.Option(help="model preset whose DiT is pretrained (tiny-p32, S-8, ...)")],
    out: Annotated[Path, typer.Option(help="run folder: model/ (an --init source), images.json (images, "
                                           "licences), crops.png")],
    max_steps: Annotated[int | None, typer.Option(help="optimiser steps (default: the preset's recipe)")] = None,
    crops: Annotated[int, typer.Option(help="random crops drawn before training (rescale, crop, flip)")] = 1024,
    label: Annotated[str, typer.Option(help="none (unconditional) | image (the image id as class)")] = "none",
    seed: Annotated[int, typer.Option(help="random seed (crops and training)")] = 0,
    set_: Annotated[list[str] | None, typer.Option("--set", help="override a TrainConfig key, key=value")] = None,
    overwrite: Annotated[bool, typer.Option(help="replace an existing run folder")] = False,
):
    """Pretrain a preset's DiT on natural images with the finetune's objective; then finetune it with
    `neurodit train PREP --init OUT/model`."""
    from neurodit.config import parse_overrides
    from neurodit.pretrain import pretrain

    path = pretrain(images, preset, out, max_steps=max_steps, n_crops=crops, label=label, seed=seed,
                    overrides=parse_overrides(set_), overwrite=overwrite)
    typer.echo(f"pretrain: wrote {path}; finetune with: neurodit train PREP_DIR --init {path / 'model'} "
               f"--preset {preset}")


@command("sample")
def sample_cmd(
    run_dir: Annotated[Path, typer.Argument(help="run folder written by `neurodit train`")],
    out: Annotated[Path, typer.Option(help="output cohort folder (participants.tsv + NIfTI in mm2/s)")],
    n: Annotated[int | None, typer.Option("--n", "-n", help="number of synthetic volumes (-n under torchrun, "
                                                             "which claims --n)")] = None,
    label: Annotated[list[str] | None, typer.Option(help="keep classes matching col=value, e.g. sex=F")] = None,
    match: Annotated[Path | None, typer.Option(help="participants.tsv (or cohort folder) to match: one volume "
                                                    "per row with its class (e.g. sex x age bin), replaces --n")] = None,
    steps: Annotated[int, typer.Option(help="sampler steps")] = SAMPLING.steps,
    guidance: Annotated[float, typer.Option(
        help="classifier-free guidance scale (1 = none)")] = SAMPLING.guidance,
    scheduler: Annotated[str | None, typer.Option(help="ddim | dpm | ddpm (ddpm runs), euler | heun | ab2 | dpm | "
                                                       "ancestral (flow runs); default: the run's own")] = None,
    seed: Annotated[int, typer.Option(help="same seed, same volumes")] = 0,
    batch_size: Annotated[int, typer.Option(help="volumes per forward batch")] = SAMPLING.batch_size,
    overwrite: Annotated[bool, typer.Option(help="replace a non-empty output folder")] = False,
):
    """Sample synthetic volumes from any generator's run (diffusion ones with classifier-free guidance)
    and write them as a cohort folder."""
    from neurodit.generators.base import sample
    from neurodit.io import read_json

    path = sample(run_dir, n, out, label=label, match=match, steps=steps, guidance=guidance, scheduler=scheduler,
                  seed=seed, batch_size=batch_size, overwrite=overwrite)
    counts = read_json(path / "run.json").get("class_counts") or {}
    typer.echo(f"sample: wrote {sum(counts.values()) or n} volumes to {path}"
               + (f" ({', '.join(f'{k}: {v}' for k, v in counts.items())})" if match else ""))


@command("bench")
def bench_cmd(
    preset: Annotated[list[str], typer.Option(help="preset(s) to time (repeatable)")] = ["tiny-p32"],  # noqa: B006
    generator: Annotated[list[str] | None, typer.Option(help="diffusion generator(s) to time (repeatable; "
                                                        "default: the default generator)")] = None,
    steps: Annotated[int, typer.Option(help="timed bare steps per round (after 2 warm-up steps)")] = 10,
    loop_steps: Annotated[int, typer.Option(help="steps of each real training loop (`neurodit train` on a "
                                            "phantom cohort); 0: bare step of a fresh preset only")] = 30,
    rounds: Annotated[int, typer.Option(help="loop / bare-step rounds (alternating; the ratio is their median)")] = 2,
    batch_size: Annotated[int | None, typer.Option(help="samples per step (default: the recipe's)")] = None,
    sample_steps: Annotated[int, typer.Option(help="sampler steps per volume")] = SAMPLING.steps,
    run: Annotated[Path | None, typer.Option(help="a trained RUN_DIR: time and judge each sampler at "
                                             "several step counts on it")] = None,
    real: Annotated[Path | None, typer.Option(help="with --run: held-out real cohort on the run's grid "
                                              "for the judge's C2ST / Fréchet")] = None,
    sampler_n: Annotated[int, typer.Option(help="with --run: volumes per sampler row")] = 40,
    judge: Annotated[bool, typer.Option(help="the judge's seconds and peak RSS at N and 4N volumes")] = True,
    judge_2mm: Annotated[bool, typer.Option(help="with --judge: also on the phantom's native 2 mm grid "
                                            "(99x117x95)")] = True,
    out: Annotated[Path | None, typer.Option(help="write the results as JSON here")] = None,
    evaluate: Annotated[bool, typer.Option("--evaluate", help="the judge at native resolution: time `evaluate` "
                                           "on 40 synthetic + 40 real + 40 train phantom volumes at 2 mm "
                                           "(99x117x95) and measure its peak RSS for N and 4N synthetic volumes "
                                           "there (minutes), instead of the presets")] = False,
    eval_quick: Annotated[bool, typer.Option("--eval-quick", help="with --evaluate: tiny sizes (smoke run)")] = False,
    eval_part: Annotated[str, typer.Option(help="with --evaluate: time, memory or both")] = "both",
    no_calibrate: Annotated[bool, typer.Option("--no-calibrate", help="with --evaluate: skip the --calibrate "
                                               "timing run")] = False,
):
    """The training step against this machine's limit: matmul peak, bare step (FLOPs/s, fraction of
    peak, memory), the real loop as a fraction of it, sampling s/volume; with --run, each sampler's
    speed and quality; the judge's time and memory. With --evaluate, the judge's figures on larger sets."""
    if evaluate:
        from neurodit.bench import bench_evaluate, format_evaluate

        if eval_part not in ("time", "memory", "both"):
            raise NeuroditError(f"--eval-part must be time, memory or both, got {eval_part!r}")
        res = bench_evaluate(out=out, quick=eval_quick, timing=eval_part != "memory",
                             memory=eval_part != "time", calibrate=not no_calibrate)
        typer.echo(format_evaluate(res))
        return
    from neurodit.bench import bench, format_report
    from neurodit.generators.registry import DEFAULT, is_diffusion

    gens = tuple(generator or [DEFAULT])
    for g in gens:
        if not is_diffusion(g):
            raise NeuroditError(f"--generator {g}: bench times diffusion generators only")
    if real is not None and run is None:
        raise NeuroditError("--real needs --run")
    res = bench(preset, gens, out=out, steps=steps, batch_size=batch_size, sample_steps=sample_steps,
                loop_steps=loop_steps, rounds=rounds, run=run, real=real, sampler_n=sampler_n, judge=judge,
                    judge_2mm=judge_2mm)
    typer.echo(format_report(res))


# --------------------------------------------------------------------------- demo
@command("demo")
def demo_cmd(
    out: Annotated[Path, typer.Option(help="demo folder: every stage's outputs and report.html")],
    quick: Annotated[bool, typer.Option(help="minimal sizes (~1 minute); numbers are not meaningful")] = False,
    full: Annotated[bool, typer.Option(help="fair budgets for every generator (configs/demo/full.yaml): "
                                            "a GPU or hours of CPU")] = False,
    set_: Annotated[list[str] | None, typer.Option("--set", help="override a demo setting, key=value")] = None,
    ablation: Annotated[str | None, typer.Option(help="run an ablation instead of the demo: pretraining (scratch "
                                                      "vs natural-image vs other-cohort starts; "
                                                      "configs/ablation/pretraining.yaml, --set its keys)")] = None,
):
    """Run the whole mission on the phantom cohorts: phantom → prepare → tile → train → sample →
    evaluate → downstream → report.html (or, with --ablation, an ablation on the same cohorts)."""
    from neurodit.config import parse_overrides

    if ablation is not None:
        from neurodit.ablation.schema import ABLATIONS
        from neurodit.ablation.stage import run_pretraining_ablation

        if ablation not in ABLATIONS:
            raise NeuroditError(f"--ablation must be one of {', '.join(ABLATIONS)}, got '{ablation}'")
        if full:
            raise NeuroditError("--ablation takes --quick or its own --set keys, not --full")
        run_pretraining_ablation(out, overrides=parse_overrides(set_), quick=quick, echo=typer.echo)
        return
    from neurodit.demo import run_demo

    run_demo(out, quick=quick, full=full, overrides=parse_overrides(set_), echo=typer.echo)



# --------------------------------------------------------------------------- model presets
@command("presets")
def presets_cmd(
    name: Annotated[list[str] | None, typer.Argument(help="preset names (default: all)")] = None,
):
    """List model presets: grid to prepare, mosaic, DiT size, parameters, suggested --init."""
    from neurodit.models.presets import describe_presets

    for row in describe_presets(name or None):
        typer.echo(f"{row['name']:<10} {row['space']:<6} grid {row['grid']:<10} mosaic {row['mosaic']:>4}^2  "
                   f"DiT in {row['dit_input']:<8} {row['tokens']:>5} tokens  {row['size']:<12} "
                   f"{row['params_M']:>6}M  init {row['init']}")
        typer.echo(f"{'':<10} {row['prepare']}")

# --------------------------------------------------------------------------- downstream
# `--synthetic dit=DIR pca=DIR`: one flag, several NAME=DIR values (the spelling). Click options take one
# value each, so the commands with no positional argument take the values after the first as extra arguments
SEVERAL = {"context_settings": {"allow_extra_args": True}}


def _more_values(ctx: typer.Context, flag: str) -> list[str]:
    """The extra NAME=DIR arguments of ``ctx`` (values of ``flag`` after its first); NeuroditError for any
    other stray argument."""
    stray = [a for a in ctx.args if "=" not in a]
    if stray:
        raise NeuroditError(f"unexpected argument '{stray[0]}' (only {flag} NAME=DIR values may follow one another)")
    return list(ctx.args)


def _named_dirs(items: list[str] | None, flag: str, default_name: str = "synthetic") -> dict[str, Path]:
    """``NAME=DIR`` option values (a bare ``DIR`` is named ``default_name``) as {name: folder}, in order;
    NeuroditError for a repeated or empty name."""
    named: dict[str, Path] = {}
    for item in items or []:
        name, folder = item.split("=", 1) if "=" in item and not Path(item).exists() else (default_name, item)
        if not name or not folder:
            raise NeuroditError(f"{flag} '{item}' must look like NAME=DIR or DIR")
        if name in named:
            raise NeuroditError(f"{flag}: the name '{name}' is given twice (name each cohort: NAME=DIR)")
        named[name] = Path(folder)
    return named


@command("downstream", **SEVERAL)
def downstream_cmd(
    ctx: typer.Context,
    source: Annotated[Path, typer.Option(help="SOURCE_DIR cohort folder with sex labels (Cam-CAN-like)")],
    target: Annotated[Path, typer.Option(help="TARGET_DIR cohort folder with diagnosis labels (ADNI-like)")],
    out: Annotated[Path, typer.Option(help="DS_DIR output folder (results.json, runs.csv, plots)")],
    synthetic: Annotated[list[str] | None, typer.Option(
        help="SYN_DIR synthetic cohort with sex labels, or NAME=SYN_DIR (repeatable: the synthetic arms once per "
             "cohort, e.g. --synthetic dit=DIR --synthetic pca=DIR)")] = None,
    arch: Annotated[str, typer.Option(help="densenet121 | resnet10 | small (CPU preset)")] = "small",
    folds: Annotated[int, typer.Option(help="cross-validation folds (grouped by participant)")] = 5,
    seeds: Annotated[int, typer.Option(help="repetitions with different splits and initialisations")] = 3,
    shape: Annotated[tuple[int, int, int], typer.Option(help="common grid shape D H W")] = (32, 32, 32),
    epochs: Annotated[int, typer.Option(help="maximum epochs per model (early stopping on validation)")] = 20,
    freeze_backbone: Annotated[bool, typer.Option(help="target arms from a sex model: train the head only")]
    = False,
    include_mci: Annotated[bool, typer.Option(help="MCI joins AD as the positive class (default: dropped)")]
    = False,
    augment: Annotated[bool, typer.Option(help="random intensity gain/offset/noise on training volumes")]
    = False,
    seed: Annotated[int, typer.Option(help="first seed")] = 0,
    set_: Annotated[list[str] | None, typer.Option("--set", help="other settings, e.g. lr=3e-4")] = None,
    overwrite: Annotated[bool, typer.Option(help="replace a non-empty output folder")] = False,
):
    """Sex classifier on real / real+synthetic / synthetic data and its transfer to AD vs CN."""
    from neurodit.config import parse_overrides
    from neurodit.downstream import run_downstream

    settings = {"shape": tuple(shape), "epochs": epochs, "freeze_backbone": freeze_backbone,
                "include_mci": include_mci, "augment": augment, "seed": seed, **parse_overrides(set_)}
    named = _named_dirs((synthetic or []) + _more_values(ctx, "--synthetic"), "--synthetic")
    # one bare DIR keeps the unnamed arms (sex/real+synthetic, ...); named cohorts get sex/real+synthetic[NAME]
    syn = named["synthetic"] if list(named) == ["synthetic"] else named or None
    path = run_downstream(source, target, out, synthetic=syn, arch=arch, folds=folds, seeds=seeds,
                          overwrite=overwrite, progress=typer.echo, **settings)
    from neurodit.downstream.schema import read_results

    res = read_results(path)
    typer.echo(f"downstream: wrote {path}")
    typer.echo(res["verdict"]["summary"])


def _fractions(text: str | None, flag: str, kind: type = float) -> list | None:
    """'0.1,0.25,1' -> [0.1, 0.25, 1.0] (None stays None; '' is an empty list: that setting is skipped).
    Fractions, multiples, guidance scales: every comma-separated number list of the CLI."""
    if text is None:
        return None
    try:
        return [kind(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise NeuroditError(f"{flag} '{text}' must be comma-separated numbers, e.g. 1,1.5,3") from exc


@command("sweep", **SEVERAL)
def sweep_cmd(
    ctx: typer.Context,
    source: Annotated[Path, typer.Option(help="SOURCE as a PREP_DIR (neurodit prepare; sex, age): generators are "
                                              "refitted on its subsets")],
    out: Annotated[Path, typer.Option(help="SWEEP_DIR (results.json, runs.csv, augment.png, transfer.png)")],
    target: Annotated[Path | None, typer.Option(help="TARGET_DIR cohort folder with diagnosis labels")] = None,
    real_fraction: Annotated[str | None, typer.Option(help="source fractions, e.g. 0.1,0.25,0.5,1")] = None,
    synthetic_multiple: Annotated[str | None, typer.Option(help="synthetic volumes per real one, e.g. 0,1,4")] = None,
    generator: Annotated[list[str] | None, typer.Option(help="generator refitted per fraction (repeatable: pca, "
                                                             "dit, ddpm3d)")] = None,
    generator_fraction: Annotated[list[str] | None, typer.Option(help="NAME=0.25,1: refit NAME at these fractions "
                                                                      "only (repeatable)")] = None,
    target_fraction: Annotated[str | None, typer.Option(help="target fractions, e.g. 0.1,0.25,0.5,1 ('' = none)")]
    = None,
    synthetic: Annotated[list[str] | None, typer.Option(help="NAME=SYN_DIR (repeatable): a cohort of a generator "
                                                             "trained on the source, for the transfer backbones")]
    = None,
    pretrain: Annotated[str | None, typer.Option(help="source backbones' task(s): sex, sex+age, or sex,sex+age "
                                                      "(each backbone once per task, compared)")] = None,
    folds: Annotated[int | None, typer.Option(help="outer folds (grouped by participant)")] = None,
    seeds: Annotated[int | None, typer.Option(help="repetitions with different splits, fractions and inits")] = None,
    epochs: Annotated[int | None, typer.Option(help="maximum epochs per classifier")] = None,
    seed: Annotated[int | None, typer.Option(help="first seed")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML with SweepConfig keys (e.g. configs/sweep/demo.yaml)")]
    = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="other settings, e.g. downstream.lr=3e-4, "
                                                                 "generator_settings.dit.max_steps=300")] = None,
    overwrite: Annotated[bool, typer.Option(help="replace a non-empty output folder")] = False,
):
    """Learning curves under data scarcity (augmentation, generators refitted per fraction) and the transfer
    test (scratch / linear probe / fine-tune per sex backbone, by target fraction)."""
    from neurodit.downstream.sweep import load_sweep_config, read_results, run_sweep

    flags = {"real_fractions": _fractions(real_fraction, "--real-fraction"),
             "synthetic_multiples": _fractions(synthetic_multiple, "--synthetic-multiple", int),
             "target_fractions": _fractions(target_fraction, "--target-fraction"),
             "generators": generator or None, "pretrain": pretrain.split(",") if pretrain else None,
             "generator_fractions": {g: _fractions(f, "--generator-fraction")
                                     for g, f in _pairs(generator_fraction, "--generator-fraction", "NAME=0.25,1")}
             or None,
             "downstream": {k: v for k, v in {"folds": folds, "seeds": seeds, "epochs": epochs,
                                              "seed": seed}.items() if v is not None} or None}
    cfg = load_sweep_config(config, set_, **flags)
    named = _named_dirs((synthetic or []) + _more_values(ctx, "--synthetic"), "--synthetic")
    path = run_sweep(source, out, target=target, synthetic=named or None,
                     cfg=cfg, overwrite=overwrite, progress=typer.echo)
    res = read_results(path)
    typer.echo(f"sweep: wrote {path}")
    for line in res["verdicts"]["augment"] + res["verdicts"]["transfer"]:
        typer.echo(line)


@command("effect")
def effect_cmd(
    run_dir: Annotated[Path, typer.Argument(help="training RUN folder to sample at each guidance")],
    real: Annotated[Path, typer.Option(help="real cohort with sex labels (e.g. held-out): the reference effect")],
    out: Annotated[Path, typer.Option(help="OUT folder: effect.json, effect.png, samples/g<guidance>/, run.json")],
    guidance: Annotated[str, typer.Option(help="comma-separated guidance scales")] = "1,1.5,3,5",
    n: Annotated[int, typer.Option("--n", help="volumes sampled per guidance")] = 100,
    steps: Annotated[int, typer.Option(help="sampler steps")] = SAMPLING.steps,
    train: Annotated[Path | None, typer.Option(help="real cohort to train the fixed sex classifier on (default: "
                                                    "2/3 of --real, margin on the other 1/3)")] = None,
    n_boot: Annotated[int, typer.Option(help="bootstrap resamples of every CI")] = 1000,
    keep_samples: Annotated[bool, typer.Option(help="keep the sampled cohorts in OUT/samples")] = True,
    seed: Annotated[int, typer.Option(help="seed of sampling, the classifier and the bootstrap")] = 0,
    overwrite: Annotated[bool, typer.Option(help="replace a non-empty output folder")] = False,
):
    """Sex effect size (difference map, Cohen's d, a fixed classifier's margin) in real vs synthetic volumes
    as a function of classifier-free guidance."""
    from neurodit.downstream.effect import guidance_effect, read_effect

    scales = _fractions(guidance, "--guidance")
    path = guidance_effect(run_dir, real, out, scales, n=n, steps=steps, seed=seed, train_dir=train, n_boot=n_boot,
                           keep_samples=keep_samples, overwrite=overwrite, progress=typer.echo)
    typer.echo(f"effect: wrote {path}")
    typer.echo(read_effect(path)["verdict"])


# --------------------------------------------------------------------------- evaluation
@command("evaluate")
def evaluate_cmd(
    real: Annotated[Path, typer.Option(help="real cohort folder (held-out subjects when --train is given)")],
    synthetic: Annotated[Path, typer.Option(help="synthetic cohort folder (sample output)")],
    out: Annotated[Path, typer.Option(help="EVAL_DIR: metrics.json, figures, run.json")],
    train: Annotated[Path | None, typer.Option(help="training cohort folder (memorization audit)")] = None,
    protocol: Annotated[str, typer.Option(help="ours, or paper (adds the authors' 64^3 protocol)")] = "ours",
    max_pairs: Annotated[int, typer.Option(help="MS-SSIM pairs per group (seeded subset)")] = 500,
    seed: Annotated[int, typer.Option(help="seed for pair subsets, bootstrap, permutations")] = 0,
    permutations: Annotated[int, typer.Option(help="MMD permutation-test permutations")] = 500,
    calibrate: Annotated[bool, typer.Option(help="also score the pca/noise/copy/mean reference generators "
                                                 "fitted on --train (calibration panel)")] = False,
    c2st_real: Annotated[str, typer.Option(help="real side of the classifier test: heldout or "
                                                "train+heldout")] = "heldout",
    c2st_views: Annotated[str, typer.Option(help="comma-separated C2ST views: voxel,texture,cnn")] =
        "voxel,texture,cnn",
    encoder: Annotated[Path | None, typer.Option(help="fixed 3D encoder for the feature metrics: TorchScript "
                                                      "file, or safetensors + json config (e.g. MedicalNet); "
                                                      "default: our own, trained on --train and cached")] = None,
    encoder_cache: Annotated[Path | None, typer.Option(help="cache folder of our own encoders "
                                                            "(default $NEURODIT_CACHE or ~/.cache/neurodit)")] = None,
    overwrite: Annotated[bool, typer.Option(help="replace a non-empty output folder")] = False,
):
    """C2ST, MS-SSIM, kernel MMD, memorization audit and through-plane coherence of synthetic volumes."""
    from neurodit.metrics.evaluate import EvalConfig, evaluate
    from neurodit.metrics.joint import read_joint
    from neurodit.metrics.schema import read_metrics

    cfg = EvalConfig(protocol=protocol, max_pairs=max_pairs, seed=seed, permutations=permutations,
                     calibrate=calibrate, c2st_real=c2st_real,
                     c2st_views=tuple(v.strip() for v in c2st_views.split(",") if v.strip()),
                     encoder=None if encoder is None else str(encoder),
                     encoder_cache=None if encoder_cache is None else str(encoder_cache))
    path = evaluate(real, synthetic, out, train=train, overwrite=overwrite, cfg=cfg)
    typer.echo(f"evaluate: wrote {path}")
    joint = read_joint(path)
    if joint is not None:  # several maps: one EVAL_DIR per map under path, and the joint view
        for name, h in joint["headline"].items():
            aucs = ", ".join(f"{v} {a:.2f}" for v, a in h["c2st"].items() if a is not None)
            fr = h["frechet_ratio"]
            typer.echo(f"{name}: C2ST {aucs or 'n/a'}; Fréchet {'n/a' if fr is None else f'{fr:.1f}x'} the floor; "
                       f"syn-syn MS-SSIM {h['syn_syn']:.3f} (real-real {h['real_real']:.3f}); see {path / name}")
        typer.echo(f"joint: {joint['verdict']}")
        return
    m = read_metrics(path)
    ms, rbf, mem = m["msssim"], m["mmd"]["rbf"], m["memorization"]
    typer.echo(f"MS-SSIM real-real {ms['real_real']['mean']:.4f}  real-syn {ms['real_syn']['mean']:.4f}  "
               f"syn-syn {ms['syn_syn']['mean']:.4f} (kernel {ms['kernel_size']}, {ms['scales']} scales)")
    typer.echo(f"RBF MMD^2 real-syn {rbf['real_syn']['mmd2']:.4g} (p={rbf['real_syn']['p_value']:.3g}), "
               f"floor {rbf['floor']['mmd2']:.4g}; memorization: {mem['fraction_above']:.1%} of synthetic "
               f"above the held-out 99th percentile{' (FLAGGED)' if mem['flagged'] else ''}")
    for family, verdict in m.get("verdicts", {}).items():
        typer.echo(f"{family}: {verdict}")


# --------------------------------------------------------------------------- compare
def _pairs(items: list[str] | None, flag: str, form: str, last: bool = False) -> list[tuple[str, str]]:
    """``A=B`` option values as (A, B), split at the last ``=`` with ``last`` (a label may hold one)."""
    out = []
    for item in items or []:
        if "=" not in item:
            raise NeuroditError(f"{flag} '{item}' must look like {form}")
        a, b = item.rsplit("=", 1) if last else item.split("=", 1)
        out.append((a, b))
    return out


@command("compare")
def compare_cmd(
    inputs: Annotated[list[Path], typer.Argument(help="synthetic cohort folders and/or training RUN folders")],
    real: Annotated[Path, typer.Option(help="HELDOUT real cohort folder (any grid: resampled onto the "
                                            "synthetic grid)")],
    train: Annotated[Path, typer.Option(help="TRAIN real cohort folder the generators were fitted on (any grid)")],
    out: Annotated[Path, typer.Option(help="CMP_DIR: comparison.json/.md/.png and eval-<name>/ per input")],
    n: Annotated[int, typer.Option("--n", help="volumes sampled from each RUN input (balanced by class)")] = 100,
    label_as: Annotated[list[str] | None, typer.Option(help="row label for one input, NAME=DIR (repeatable), "
                                                            "e.g. 'ddpm3d, 200 steps on CPU=runs/ddpm'")] = None,
    c2st_views: Annotated[str, typer.Option(help="comma-separated C2ST views: voxel,texture,cnn")]
    = "voxel,texture,cnn",
    downstream: Annotated[bool, typer.Option(help="run the downstream sex arms per input")] = True,
    reuse_eval: Annotated[list[str] | None, typer.Option(help="SYN=EVAL_DIR (repeatable): an evaluation of the "
                                                             "synthetic input SYN already written with these "
                                                             "settings, reused instead of judging SYN again")] = None,
    seed: Annotated[int, typer.Option(help="seed of sampling, the judge and the downstream splits")] = 0,
    set_: Annotated[list[str] | None, typer.Option("--set", help="other settings, e.g. eval.max_pairs=200, "
                                                                 "downstream.folds=5")] = None,
    overwrite: Annotated[bool, typer.Option(help="replace a non-empty output folder")] = False,
):
    """Judge several generators side by side (full judge + downstream sex arms, one set of settings)."""
    from neurodit.compare import compare, compare_config
    from neurodit.config import parse_overrides

    labels = {folder: name for name, folder in _pairs(label_as, "--label-as", "NAME=DIR", last=True)}
    reuse = dict(_pairs(reuse_eval, "--reuse-eval", "SYN=EVAL_DIR"))
    views = [v.strip() for v in c2st_views.split(",") if v.strip()]
    cfg = compare_config({"n": n, "seed": seed, "labels": labels, "run_downstream": downstream, "reuse_eval": reuse,
                          "eval": {"c2st_views": views, "seed": seed}, "downstream": {"seed": seed},
                          **{k: v for k, v in parse_overrides(set_).items()}})
    path = compare(inputs, real, train, out, cfg=cfg, overwrite=overwrite)
    from neurodit.compare import read_comparison

    data = read_comparison(path)
    typer.echo(f"compare: wrote {path}")
    typer.echo(data["summary"])


def main() -> None:  # console-script entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()

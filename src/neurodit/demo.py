"""`neurodit demo`: the whole mission end to end on the embedded phantom cohorts.

phantom camcan + adni -> split camcan by participant (train / held-out) -> prepare on the preset's
grid -> export the prepared real volumes as NIfTI (the reference the generator is judged against) ->
tile one volume to PNG -> train the DiT -> sample a sex-balanced synthetic camcan cohort -> evaluate
(held-out real vs synthetic, audit against the training subjects) -> downstream (all six arms) ->
report.html. Every stage writes its own folder under DIR and prints the CLI command that re-runs it.

Known caveat, kept on purpose and stated here and in the README: the downstream source cohort is the
camcan training split, the same subjects the generator learned from, so its cross-validation test folds
contain subjects the generator saw (as in the paper's protocol); the memorization audit measures how
close the synthetic volumes come to them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neurodit.config import CONFIG_DIR, deep_merge, from_dict, read_yaml, to_dict
from neurodit.errors import NeuroditError
from neurodit.io import write_json, write_run_info

DEMO_CONFIG_DIR = CONFIG_DIR / "demo"


@dataclass
class DemoConfig:
    """Sizes and budgets of the demo (defaults in ``configs/demo/default.yaml``)."""

    seed: int = 0
    preset: str = "tiny-p32"
    phantom_voxel_size: float = 4.0
    n_camcan: int = 200
    heldout_fraction: float = 0.2
    n_adni: int = 100
    train_steps: int | None = None
    train_overrides: dict[str, Any] = field(default_factory=dict)
    n_synthetic: int = 100
    sample_steps: int = 25
    guidance: float = 2.0
    sampler: str | None = None  # None: the trained run's own sampler (ddim for ddpm runs, euler for flow)
    eval_max_pairs: int = 300
    eval_permutations: int = 200
    eval_calibrate: bool = True  # the calibration panel: pca / noise / copy / mean scored beside the model
    downstream_folds: int = 3
    downstream_seeds: int = 2
    downstream_epochs: int = 15
    # `compare`: the DiT's samples beside the other generators, judged with one set of settings
    compare: bool = True
    compare_generators: list[str] = field(default_factory=lambda: ["pca", "ddpm3d"])
    ddpm3d_steps: int = 60  # the 3D UNet's budget here (labelled in the comparison); --full gives it a fair one
    ddpm3d_overrides: dict[str, Any] = field(default_factory=dict)
    compare_downstream: bool = True  # the sex arms per generator (source: the held-out real subjects)


def load_demo_config(quick: bool = False, overrides: dict[str, Any] | None = None, full: bool = False) -> DemoConfig:
    """``configs/demo/default.yaml`` (``quick.yaml`` with ``quick``; ``full.yaml`` merged over the default with
    ``full``: fair budgets for every generator, for a GPU or a long CPU run) with ``overrides``."""
    if quick and full:
        raise NeuroditError("--quick and --full exclude each other")
    data = read_yaml(DEMO_CONFIG_DIR / ("quick.yaml" if quick else "default.yaml"))
    if full:
        data = deep_merge(data, read_yaml(DEMO_CONFIG_DIR / "full.yaml"))
    return from_dict(DemoConfig, deep_merge(data, overrides or {}))


def run_demo(out: str | Path, quick: bool = False, overrides: dict[str, Any] | None = None,
             echo: Callable[[str], None] = print, full: bool = False) -> Path:
    """Run every stage into ``out``; returns the path of ``out/report.html``."""
    from neurodit.compare import COMPARE_ARMS, CompareConfig, compare, read_comparison
    from neurodit.data.phantom import make_phantom_cohort
    from neurodit.data.prepare import load_prepared, prepare
    from neurodit.data.split import export_prepared, split_cohort
    from neurodit.downstream import DownstreamConfig, run_downstream
    from neurodit.generators import fit
    from neurodit.metrics.evaluate import EvalConfig, evaluate
    from neurodit.metrics.schema import read_metrics
    from neurodit.models.presets import load_preset
    from neurodit.mosaic_files import tile_file
    from neurodit.report import build_report
    from neurodit.sample import sample_diffusion
    from neurodit.train import resolve_train_config, train_diffusion

    cfg = load_demo_config(quick, overrides, full=full)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    preset = load_preset(cfg.preset)
    shape = tuple(int(s) for s in preset.grid_shape)
    shape_arg = " ".join(map(str, shape))
    d = {k: out / k for k in ("camcan", "camcan_train", "camcan_heldout", "adni", "prep_train",
                              "prep_heldout", "prep_adni", "real_train", "real_heldout", "adni_grid",
                              "tile", "run", "synthetic", "eval", "downstream", "cache", "compare")}
    timings: dict[str, float] = {}
    commands: dict[str, str] = {}

    def stage(name: str, command: str, fn: Callable[[], str]) -> None:
        t0 = time.perf_counter()
        summary = fn()
        timings[name] = round(time.perf_counter() - t0, 1)
        commands[name] = command
        echo(f"[{name}] {summary} ({timings[name]:.1f} s)")
        echo(f"    re-run: {command}")

    s = cfg.seed

    def phantoms() -> str:
        make_phantom_cohort("camcan", n=cfg.n_camcan, out=d["camcan"], seed=s,
                            voxel_size=cfg.phantom_voxel_size, overwrite=True)
        make_phantom_cohort("adni", n=cfg.n_adni, out=d["adni"], seed=s + 1,
                            voxel_size=cfg.phantom_voxel_size, overwrite=True)
        split_cohort(d["camcan"], d["camcan_train"], d["camcan_heldout"], cfg.heldout_fraction, seed=s,
                     overwrite=True)
        return (f"{cfg.n_camcan} camcan + {cfg.n_adni} adni phantom subjects at {cfg.phantom_voxel_size:g} mm; "
                f"camcan split by participant into train/held-out ({cfg.heldout_fraction:.0%})")

    stage("phantom", f"neurodit phantom --cohort camcan --n {cfg.n_camcan} --out {d['camcan']} --seed {s} "
          f"--voxel-size {cfg.phantom_voxel_size:g}; neurodit phantom --cohort adni --n {cfg.n_adni} "
          f"--out {d['adni']} --seed {s + 1} --voxel-size {cfg.phantom_voxel_size:g}", phantoms)

    def prep() -> str:
        for src, dst, real in (("camcan_train", "prep_train", "real_train"),
                               ("camcan_heldout", "prep_heldout", "real_heldout"),
                               ("adni", "prep_adni", "adni_grid")):
            prepare(d[src], d[dst], shape=shape, overwrite=True)
            export_prepared(d[dst], d[real], overwrite=True)
        n = len(load_prepared(d["prep_train"]))
        return f"{n} training volumes on the {preset.name} grid {shape_arg.replace(' ', 'x')}, model range [-1, 1]"

    stage("prepare", f"neurodit prepare {d['camcan_train']} --out {d['prep_train']} --shape {shape_arg}", prep)

    def tile() -> str:
        first = sorted(d["real_train"].glob("*.nii.gz"))[0]
        d["tile"].mkdir(exist_ok=True)
        tile_file(first, d["tile"] / "mosaic.png")
        tile_file(first, d["tile"] / "mosaic.npy")
        return f"tiled {first.name} into {d['tile'] / 'mosaic.png'}"

    stage("tile", f"neurodit tile {sorted(d['real_train'].glob('*.nii.gz'))[0]} --out {d['tile'] / 'mosaic.png'}",
          tile)

    def train() -> str:
        flags: dict[str, Any] = {"prep_dir": str(d["prep_train"]), "out": str(d["run"]), "preset": cfg.preset,
                                 "seed": s, "overwrite": True}
        if cfg.train_steps is not None:
            flags["max_steps"] = cfg.train_steps
        tcfg = resolve_train_config(None, dict(cfg.train_overrides), **flags)
        train_diffusion(tcfg)
        return f"{tcfg.max_steps} steps of the {cfg.preset} DiT (batch {tcfg.batch_size}, lr {tcfg.lr:g})"

    steps_flag = f" --max-steps {cfg.train_steps}" if cfg.train_steps is not None else ""
    stage("train", f"neurodit train {d['prep_train']} --out {d['run']} --preset {cfg.preset}{steps_flag}", train)

    def synth() -> str:
        sample_diffusion(d["run"], cfg.n_synthetic, d["synthetic"], steps=cfg.sample_steps, guidance=cfg.guidance,
               scheduler=cfg.sampler, seed=s, overwrite=True)
        return f"{cfg.n_synthetic} synthetic volumes (NIfTI, mm²/s), balanced by sex"

    scheduler_flag = f" --scheduler {cfg.sampler}" if cfg.sampler else ""
    stage("sample", f"neurodit sample {d['run']} --n {cfg.n_synthetic} --out {d['synthetic']} "
          f"--steps {cfg.sample_steps} --guidance {cfg.guidance:g}{scheduler_flag} --seed {s}", synth)

    def evaluation() -> str:
        ecfg = EvalConfig(max_pairs=cfg.eval_max_pairs, seed=s, permutations=cfg.eval_permutations,
                          calibrate=cfg.eval_calibrate, encoder_cache=str(d["cache"]))
        evaluate(d["real_heldout"], d["synthetic"], d["eval"], train=d["real_train"], overwrite=True, cfg=ecfg)
        verdicts = read_metrics(d["eval"])["verdicts"]
        return f"metrics in {d['eval'] / 'metrics.json'}; " + (verdicts.get("c2st") or "no C2ST")

    calibrate_flag = " --calibrate" if cfg.eval_calibrate else ""
    stage("evaluate", f"neurodit evaluate --real {d['real_heldout']} --synthetic {d['synthetic']} "
          f"--train {d['real_train']} --out {d['eval']} --max-pairs {cfg.eval_max_pairs} "
          f"--permutations {cfg.eval_permutations} --seed {s}{calibrate_flag} --encoder-cache {d['cache']}", evaluation)

    def downstream() -> str:
        run_downstream(d["real_train"], d["adni_grid"], d["downstream"], synthetic=d["synthetic"],
                       folds=cfg.downstream_folds, seeds=cfg.downstream_seeds, shape=shape,
                       epochs=cfg.downstream_epochs, seed=s, overwrite=True)
        return f"six arms x {cfg.downstream_folds} folds x {cfg.downstream_seeds} seeds in {d['downstream']}"

    stage("downstream", f"neurodit downstream --source {d['real_train']} --synthetic {d['synthetic']} "
          f"--target {d['adni_grid']} --out {d['downstream']} --folds {cfg.downstream_folds} "
          f"--seeds {cfg.downstream_seeds} --shape {shape_arg} --epochs {cfg.downstream_epochs}", downstream)

    def comparison() -> str:
        runs = []
        for gen in cfg.compare_generators:
            flags: dict[str, Any] = {"prep_dir": str(d["prep_train"]), "out": str(out / f"run_{gen}"),
                                     "generator": gen, "seed": s, "overwrite": True}
            if gen == "ddpm3d":
                flags["max_steps"] = cfg.ddpm3d_steps
            extra = dict(cfg.ddpm3d_overrides) if gen == "ddpm3d" else {}
            runs.append(fit(d["prep_train"], resolve_train_config(None, extra, **flags)))
        ccfg = CompareConfig(
            n=cfg.n_synthetic, seed=s, sample_steps=cfg.sample_steps, sample_guidance=cfg.guidance,
            run_downstream=cfg.compare_downstream,
            eval=EvalConfig(max_pairs=cfg.eval_max_pairs, seed=s, permutations=cfg.eval_permutations,
                            encoder_cache=str(d["cache"])),
            downstream=DownstreamConfig(folds=cfg.downstream_folds, seeds=cfg.downstream_seeds,
                                        epochs=cfg.downstream_epochs, seed=s, arms=COMPARE_ARMS),
            labels={str(d["synthetic"]): "dit", **{str(r): r.name.removeprefix("run_") for r in runs}})
        compare([d["synthetic"], *runs], d["real_heldout"], d["real_train"], d["compare"], cfg=ccfg, overwrite=True)
        return read_comparison(d["compare"])["summary"]

    if cfg.compare:
        gens = "".join(f"neurodit train {d['prep_train']} --generator {g} --out {out / f'run_{g}'}"
                       + (f" --max-steps {cfg.ddpm3d_steps}" if g == "ddpm3d" else "") + "; "
                       for g in cfg.compare_generators)
        stage("compare", f"{gens}neurodit compare {d['synthetic']} "
              + " ".join(str(out / f"run_{g}") for g in cfg.compare_generators)
              + f" --real {d['real_heldout']} --train {d['real_train']} --out {d['compare']} --n {cfg.n_synthetic}",
              comparison)

    write_json(out / "demo.json", {"config": to_dict(cfg), "quick": quick, "timings_s": timings,
                                   "commands": commands, "folders": {k: str(v) for k, v in d.items()}})
    write_run_info(out, to_dict(cfg), cfg.seed, quick=quick, timings_s=timings)
    report = out / "report.html"
    stage("report", f"neurodit report {out} --out {report}",
          lambda: f"{build_report([out], report)}")
    write_json(out / "demo.json", {"config": to_dict(cfg), "quick": quick, "timings_s": timings,
                                   "commands": commands, "folders": {k: str(v) for k, v in d.items()}})
    echo(f"demo: done in {sum(timings.values()):.0f} s; open {report}")
    return report


__all__ = ["DemoConfig", "load_demo_config", "run_demo"]

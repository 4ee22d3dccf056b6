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

import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from neurodit.config import CONFIG_DIR, deep_merge, from_dict, read_yaml, to_dict
from neurodit.defaults import SAMPLING
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
    sample_steps: int = SAMPLING.steps
    guidance: float = SAMPLING.guidance
    sampler: str | None = None  # None: the trained run's own sampler (ddim for ddpm runs, euler for flow)
    eval_max_pairs: int = 300
    eval_permutations: int = 200
    eval_calibrate: bool = True  # the calibration panel: pca / noise / copy / mean scored beside the model
    downstream_folds: int = 3
    downstream_seeds: int = 2
    downstream_epochs: int = 15
    # `compare`: the DiT's samples beside the other generators, judged with one set of settings
    compare: bool = True
    compare_generators: list[str] = field(default_factory=list)  # registry names (neurodit.generators)
    # generator -> its training settings in compare (max_steps and any TrainConfig key): each row's budget is
    # labelled in the comparison; --full gives the undertrained ones a fair budget
    generator_budgets: dict[str, dict[str, Any]] = field(default_factory=dict)
    compare_downstream: bool = True  # the sex arms per generator (source: the held-out real subjects)
    # the downstream stage runs its printed command in a child process beside evaluate and compare: all three
    # train small networks on one thread each, so on 2 cores the two lines of work take the time of the longer
    # (issue 19); False runs the stages one after the other in this process
    overlap: bool = True
    # `neurodit sweep` (issue 21): learning curves with generators refitted per fraction, and the transfer test
    # (configs/sweep/<sweep>.yaml); off in the default demo (its 10 minutes cannot pay 12 DiT fits), on in --full
    sweep: str | None = None
    # `neurodit effect` (issue 21): the sex difference in the DiT's samples against real, by guidance; empty: not
    # run (the default demo), --full: 1, 1.5, 3, 5
    effect_guidance: list[float] = field(default_factory=list)
    # issue 22: several maps generated together (e.g. [md, fa]): the camcan phantom drawn with those maps, split
    # and prepared with --maps, one DiT trained on all of them as channels, sampled and judged per map with the
    # joint view; empty: not run (the default demo), --full: md, fa. ``maps_train_steps``: that DiT's budget
    # (None: ``train_steps``)
    maps: list[str] = field(default_factory=list)
    maps_train_steps: int | None = None


def load_demo_config(quick: bool = False, overrides: dict[str, Any] | None = None, full: bool = False) -> DemoConfig:
    """``configs/demo/default.yaml`` (``quick.yaml`` with ``quick``; ``full.yaml`` merged over the default with
    ``full``: fair budgets for every generator, for a GPU or a long CPU run) with ``overrides``."""
    if quick and full:
        raise NeuroditError("--quick and --full exclude each other")
    data = read_yaml(DEMO_CONFIG_DIR / ("quick.yaml" if quick else "default.yaml"))
    if full:
        data = deep_merge(data, read_yaml(DEMO_CONFIG_DIR / "full.yaml"))
    return from_dict(DemoConfig, deep_merge(data, overrides or {}))


FOLDERS = ("camcan", "camcan_train", "camcan_heldout", "adni", "prep_train", "prep_heldout", "prep_adni",
           "real_train", "real_heldout", "adni_grid", "tile", "run", "synthetic", "eval", "downstream", "cache",
           "compare", "sweep", "effect", "maps", "maps_eval")


def _q(path: Any) -> str:
    """A path as one shell word (unchanged unless it holds spaces or shell characters)."""
    return shlex.quote(str(path))


def _set_flags(overrides: dict[str, Any], prefix: str = "") -> str:
    """``{"a": {"b": 1e-5}}`` -> `` --set a.b=1.0e-05``: values spelled as the YAML scalars that
    ``neurodit.config.parse_overrides`` reads back to the same values."""
    flags = ""
    for key, value in overrides.items():
        if isinstance(value, dict):
            flags += _set_flags(value, f"{prefix}{key}.")
        else:
            text = yaml.safe_dump(value, default_flow_style=True, width=float("inf")).removesuffix("...\n").strip()
            flags += f" --set {_q(f'{prefix}{key}={text}')}"
    return flags


@dataclass
class _DemoRun:
    """One demo run: its settings, folders (``d``: name -> path under ``out``), and per stage the
    seconds and the CLI command that re-creates that stage's folders (stored in demo.json)."""

    cfg: DemoConfig
    out: Path
    echo: Callable[[str], None]
    d: dict[str, Path] = field(init=False)
    preset: Any = field(init=False)  # the ModelPreset: its grid is the prepared shape
    shape: tuple[int, ...] = field(init=False)
    timings: dict[str, float] = field(default_factory=dict)
    commands: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from neurodit.models.presets import load_preset

        self.d = {k: self.out / k for k in FOLDERS}
        self.preset = load_preset(self.cfg.preset)
        self.shape = tuple(int(s) for s in self.preset.grid_shape)

    @property
    def shape_arg(self) -> str:
        return " ".join(map(str, self.shape))

    def stage(self, name: str, command: str, fn: Callable[[], str]) -> None:
        t0 = time.perf_counter()
        summary = fn()
        self.record(name, command, summary, time.perf_counter() - t0)

    def record(self, name: str, command: str, summary: str, seconds: float, where: str = "") -> None:
        """A finished stage: its seconds and re-run command (demo.json), its summary line and command printed."""
        self.timings[name] = round(seconds, 1)
        self.commands[name] = command
        self.echo(f"[{name}] {summary} ({self.timings[name]:.1f} s{where})")
        self.echo(f"    re-run: {command}")

    def start(self, name: str, command: str, summary: str) -> _Child:
        """Run ``command`` (one ``neurodit ...`` call, as printed) in a child Python process, its output in
        ``out/<name>.log``; :meth:`_Child.join` waits for it and records the stage like :meth:`stage`."""
        self.out.mkdir(parents=True, exist_ok=True)
        log = self.out / f"{name}.log"
        argv = [sys.executable, "-m", "neurodit.cli", *shlex.split(command)[1:]]
        self.echo(f"[{name}] started beside the next stages (log: {log})")
        return _Child(self, name, command, summary, log, argv)

    def write_summary(self, quick: bool, wall_s: float | None = None) -> None:
        write_json(self.out / "demo.json", {"config": to_dict(self.cfg), "quick": quick, "timings_s": self.timings,
                                            "wall_s": wall_s, "overlapped": ["downstream"] if self.cfg.overlap else [],
                                            "commands": self.commands,
                                            "folders": {k: str(v) for k, v in self.d.items()}})


class _Child:
    """A stage running as a child process (:meth:`_DemoRun.start`); its seconds are its own, from start to exit,
    measured by a watcher thread (not the time the demo waited for it)."""

    def __init__(self, r: _DemoRun, name: str, command: str, summary: str, log: Path, argv: list[str]):
        self.r, self.name, self.command, self.summary, self.log = r, name, command, summary, log
        self.seconds = 0.0
        t0 = time.perf_counter()
        with open(log, "w") as f:  # the child keeps its own handle; progress bars go to the log
            self.proc = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

        def watch() -> None:
            self.proc.wait()
            self.seconds = time.perf_counter() - t0

        self.watcher = threading.Thread(target=watch, daemon=True)
        self.watcher.start()

    def join(self) -> None:
        self.watcher.join()
        if self.proc.returncode != 0:
            lines = [ln for ln in self.log.read_text(errors="replace").splitlines() if ln.strip()]
            raise NeuroditError(f"the {self.name} stage failed (exit {self.proc.returncode}): "
                                f"{lines[-1] if lines else 'no output'}; its log: {self.log}")
        self.r.record(self.name, self.command, self.summary, self.seconds, ", beside evaluate and compare")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _phantoms(r: _DemoRun) -> None:
    from neurodit.data.phantom import make_phantom_cohort

    c, d, s = r.cfg, r.d, r.cfg.seed
    cohorts = (("camcan", c.n_camcan, s), ("adni", c.n_adni, s + 1))
    commands = [f"neurodit phantom --cohort {name} --n {n} --out {_q(d[name])} --seed {seed} "
                f"--voxel-size {c.phantom_voxel_size:g} --overwrite" for name, n, seed in cohorts]

    def run() -> str:
        # one after the other: drawing the adni cohort in a child process beside the camcan one took 11.5 s
        # against 7.6 s (AVX2 kernels, 2 cores): each process loads and resamples the templates itself
        for name, n, seed in cohorts:
            make_phantom_cohort(name, n=n, out=d[name], seed=seed, voxel_size=c.phantom_voxel_size, overwrite=True)
        return f"{c.n_camcan} camcan + {c.n_adni} adni phantom subjects at {c.phantom_voxel_size:g} mm"

    r.stage("phantom", "; ".join(commands), run)


def _split(r: _DemoRun) -> None:
    from neurodit.data.split import split_cohort

    c, d = r.cfg, r.d

    def run() -> str:
        split_cohort(d["camcan"], d["camcan_train"], d["camcan_heldout"], c.heldout_fraction, seed=c.seed,
                     overwrite=True)
        return f"camcan split by participant into train/held-out ({c.heldout_fraction:.0%})"

    r.stage("split", f"neurodit split {_q(d['camcan'])} --train-out {_q(d['camcan_train'])} --heldout-out "
            f"{_q(d['camcan_heldout'])} --heldout-fraction {c.heldout_fraction:g} --seed {c.seed} --overwrite", run)


def _prepare(r: _DemoRun) -> None:
    from neurodit.data.prepare import export_prepared, load_prepared, prepare

    d = r.d
    # each cohort on the preset's grid, then back to NIfTI: the real data as the generator sees it
    chains = (("camcan_train", "prep_train", "real_train"), ("camcan_heldout", "prep_heldout", "real_heldout"),
              ("adni", "prep_adni", "adni_grid"))

    def run() -> str:
        for src, dst, real in chains:
            prepare(d[src], d[dst], shape=r.shape, overwrite=True)
            export_prepared(d[dst], d[real], overwrite=True)
        n = len(load_prepared(d["prep_train"]))
        return (f"{n} training volumes on the {r.preset.name} grid {r.shape_arg.replace(' ', 'x')}, "
                "model range [-1, 1]")

    r.stage("prepare", "; ".join(f"neurodit prepare {_q(d[src])} --out {_q(d[dst])} --shape {r.shape_arg} "
                                 f"--overwrite; neurodit export {_q(d[dst])} --out {_q(d[real])} --overwrite"
                                 for src, dst, real in chains), run)


def _tile(r: _DemoRun) -> None:
    from neurodit.mosaic_files import tile_file

    first = sorted(r.d["real_train"].glob("*.nii.gz"))[0]
    mosaics = (r.d["tile"] / "mosaic.png", r.d["tile"] / "mosaic.npy")

    def run() -> str:
        r.d["tile"].mkdir(exist_ok=True)
        for mosaic in mosaics:
            tile_file(first, mosaic)
        return f"tiled {first.name} into {mosaics[0]}"

    r.stage("tile", "; ".join(f"neurodit tile {_q(first)} --out {_q(m)}" for m in mosaics), run)


def _train(r: _DemoRun) -> None:
    from neurodit.train import resolve_train_config, train_diffusion

    c, d = r.cfg, r.d

    def run() -> str:
        flags: dict[str, Any] = {"prep_dir": str(d["prep_train"]), "out": str(d["run"]), "preset": c.preset,
                                 "seed": c.seed, "overwrite": True}
        if c.train_steps is not None:
            flags["max_steps"] = c.train_steps
        tcfg = resolve_train_config(None, dict(c.train_overrides), **flags)
        train_diffusion(tcfg)
        return f"{tcfg.max_steps} steps of the {c.preset} DiT (batch {tcfg.batch_size}, lr {tcfg.lr:g})"

    steps_flag = f" --max-steps {c.train_steps}" if c.train_steps is not None else ""
    r.stage("train", f"neurodit train {_q(d['prep_train'])} --out {_q(d['run'])} --preset {c.preset} --seed {c.seed}"
            f"{steps_flag}{_set_flags(c.train_overrides)} --overwrite", run)


def _sample(r: _DemoRun) -> None:
    from neurodit.sample import sample_diffusion

    c, d = r.cfg, r.d

    def run() -> str:
        sample_diffusion(d["run"], c.n_synthetic, d["synthetic"], steps=c.sample_steps, guidance=c.guidance,
               scheduler=c.sampler, seed=c.seed, overwrite=True)
        return f"{c.n_synthetic} synthetic volumes (NIfTI, mm²/s), balanced by sex"

    scheduler_flag = f" --scheduler {c.sampler}" if c.sampler else ""
    r.stage("sample", f"neurodit sample {_q(d['run'])} --n {c.n_synthetic} --out {_q(d['synthetic'])} "
            f"--steps {c.sample_steps} --guidance {c.guidance:g}{scheduler_flag} --seed {c.seed} --overwrite", run)


def _evaluate(r: _DemoRun) -> None:
    from neurodit.metrics.evaluate import EvalConfig, evaluate
    from neurodit.metrics.schema import read_metrics

    c, d = r.cfg, r.d

    def run() -> str:
        ecfg = EvalConfig(max_pairs=c.eval_max_pairs, seed=c.seed, permutations=c.eval_permutations,
                          calibrate=c.eval_calibrate, encoder_cache=str(d["cache"]))
        evaluate(d["real_heldout"], d["synthetic"], d["eval"], train=d["real_train"], overwrite=True, cfg=ecfg)
        verdicts = read_metrics(d["eval"])["verdicts"]
        return f"metrics in {d['eval'] / 'metrics.json'}; " + (verdicts.get("c2st") or "no C2ST")

    calibrate_flag = " --calibrate" if c.eval_calibrate else ""
    r.stage("evaluate", f"neurodit evaluate --real {_q(d['real_heldout'])} --synthetic {_q(d['synthetic'])} "
            f"--train {_q(d['real_train'])} --out {_q(d['eval'])} --max-pairs {c.eval_max_pairs} "
            f"--permutations {c.eval_permutations} --seed {c.seed}{calibrate_flag} --encoder-cache {_q(d['cache'])} "
            "--overwrite", run)


def _downstream(r: _DemoRun) -> _Child | None:
    """The downstream stage; with ``overlap`` it starts as a child process (joined by the caller) and
    returns its handle."""
    from neurodit.downstream import run_downstream

    c, d = r.cfg, r.d
    summary = f"six arms x {c.downstream_folds} folds x {c.downstream_seeds} seeds in {d['downstream']}"

    def run() -> str:
        run_downstream(d["real_train"], d["adni_grid"], d["downstream"], synthetic=d["synthetic"],
                       folds=c.downstream_folds, seeds=c.downstream_seeds, shape=r.shape,
                       epochs=c.downstream_epochs, seed=c.seed, overwrite=True)
        return summary

    command = (f"neurodit downstream --source {_q(d['real_train'])} --synthetic {_q(d['synthetic'])} "
               f"--target {_q(d['adni_grid'])} --out {_q(d['downstream'])} --folds {c.downstream_folds} "
               f"--seeds {c.downstream_seeds} --shape {r.shape_arg} --epochs {c.downstream_epochs} --seed {c.seed} "
               "--overwrite")
    if c.overlap:
        return r.start("downstream", command, summary)
    r.stage("downstream", command, run)
    return None


def _compare(r: _DemoRun) -> None:
    from neurodit.compare import compare, read_comparison
    from neurodit.generators import fit
    from neurodit.generators.registry import DEFAULT
    from neurodit.train import resolve_train_config

    c, d, s = r.cfg, r.d, r.cfg.seed
    runs = {g: r.out / f"run_{g}" for g in c.compare_generators}
    extra = {g: {k: v for k, v in c.generator_budgets.get(g, {}).items() if k != "max_steps"} for g in runs}
    steps = {g: {k: v for k, v in c.generator_budgets.get(g, {}).items() if k == "max_steps"} for g in runs}
    # the DiT run of the train stage is the registry's default generator (train names none)
    labels = {str(d["synthetic"]): DEFAULT, **{str(run): g for g, run in runs.items()}}
    # the evaluate stage judged the DiT's samples with these settings (calibration aside): not judged twice
    reuse = {str(d["synthetic"]): str(d["eval"])}

    def run() -> str:
        for g, run_dir in runs.items():
            flags = {"prep_dir": str(d["prep_train"]), "out": str(run_dir), "generator": g, "seed": s,
                     "overwrite": True, **steps[g]}
            fit(d["prep_train"], resolve_train_config(None, extra[g], **flags))
        ccfg = compare_settings(c, d["cache"], labels, reuse)
        compare([d["synthetic"], *runs.values()], d["real_heldout"], d["real_train"], d["compare"], cfg=ccfg,
                overwrite=True)
        return read_comparison(d["compare"])["summary"]

    fits = "".join(f"neurodit train {_q(d['prep_train'])} --generator {g} --out {_q(run_dir)} --seed {s}"
                   + "".join(f" --{k.replace('_', '-')} {v}" for k, v in steps[g].items())
                   + f"{_set_flags(extra[g])} --overwrite; " for g, run_dir in runs.items())
    # compare's --set overrides replace its nested defaults key by key: the seeds are spelled out too
    settings = {"sample_steps": c.sample_steps, "sample_guidance": c.guidance,
                "eval": {"max_pairs": c.eval_max_pairs, "permutations": c.eval_permutations, "seed": s,
                         "encoder_cache": str(d["cache"])},
                "downstream": {"folds": c.downstream_folds, "seeds": c.downstream_seeds,
                               "epochs": c.downstream_epochs, "seed": s}}
    r.stage("compare", f"{fits}neurodit compare " + " ".join(_q(p) for p in (d["synthetic"], *runs.values()))
            + f" --real {_q(d['real_heldout'])} --train {_q(d['real_train'])} --out {_q(d['compare'])} "
            f"--n {c.n_synthetic} --seed {s}" + "".join(f" --label-as {_q(f'{name}={p}')}" for p, name in labels.items())
            + "".join(f" --reuse-eval {_q(f'{syn}={ev}')}" for syn, ev in reuse.items())
            + ("" if c.compare_downstream else " --no-downstream") + _set_flags(settings) + " --overwrite", run)


def compare_settings(c: DemoConfig, cache: Path, labels: dict[str, str], reuse: dict[str, str] | None = None):
    """The demo's ``CompareConfig``: its sample, judge and downstream settings, one seed (the compare stage and
    ``demo --ablation`` judge with these)."""
    from neurodit.compare import COMPARE_ARMS, CompareConfig
    from neurodit.downstream import DownstreamConfig
    from neurodit.metrics.evaluate import EvalConfig

    s = c.seed
    return CompareConfig(
        n=c.n_synthetic, seed=s, sample_steps=c.sample_steps, sample_guidance=c.guidance,
        run_downstream=c.compare_downstream,
        eval=EvalConfig(max_pairs=c.eval_max_pairs, seed=s, permutations=c.eval_permutations, encoder_cache=str(cache)),
        downstream=DownstreamConfig(folds=c.downstream_folds, seeds=c.downstream_seeds, epochs=c.downstream_epochs,
                                    seed=s, arms=COMPARE_ARMS),
        labels=labels, reuse_eval=dict(reuse or {}))


def _sweep(r: _DemoRun) -> None:
    """The sweep on the demo cohorts: source = the generator's training participants (prepared), target =
    the ADNI-like cohort, transfer backbones from the DiT's samples (and the pca row's, when compare ran)."""
    from neurodit.downstream.sweep import SWEEP_CONFIG_DIR, load_sweep_config, read_results, run_sweep
    from neurodit.generators.registry import DEFAULT

    c, d = r.cfg, r.d
    preset = SWEEP_CONFIG_DIR / f"{c.sweep}.yaml"
    # the compare stage's samples of each other generator (``syn-<input folder>``), where it ran
    rows = {g: d["compare"] / f"syn-run_{g}" for g in c.compare_generators}
    syn = {DEFAULT: d["synthetic"], **{g: p for g, p in rows.items() if (p / "participants.tsv").is_file()}}

    def run() -> str:
        cfg = load_sweep_config(preset, None, downstream={"seed": c.seed})
        run_sweep(d["prep_train"], d["sweep"], target=d["adni_grid"], synthetic=syn, cfg=cfg, overwrite=True)
        return " | ".join(read_results(d["sweep"])["verdicts"]["augment"])

    r.stage("sweep", f"neurodit sweep --source {_q(d['prep_train'])} --target {_q(d['adni_grid'])} --out "
            f"{_q(d['sweep'])} --config {_q(preset)} --seed {c.seed}"
            + "".join(f" --synthetic {_q(f'{n}={p}')}" for n, p in syn.items()) + " --overwrite", run)


def _effect(r: _DemoRun) -> None:
    """The class effect by guidance: the DiT sampled at each scale, against the real training cohort (its
    sex difference measured on 160 subjects; the fixed classifier trained on 2/3 of them)."""
    from neurodit.downstream.effect import guidance_effect, read_effect

    c, d = r.cfg, r.d
    scales = ",".join(f"{g:g}" for g in c.effect_guidance)

    def run() -> str:
        guidance_effect(d["run"], d["real_train"], d["effect"], list(c.effect_guidance), n=c.n_synthetic,
                        steps=c.sample_steps, seed=c.seed, overwrite=True)
        return read_effect(d["effect"])["verdict"].split(".")[0]

    r.stage("effect", f"neurodit effect {_q(d['run'])} --real {_q(d['real_train'])} --out {_q(d['effect'])} "
            f"--guidance {scales} --n {c.n_synthetic} --steps {c.sample_steps} --seed {c.seed} --overwrite", run)


def _maps(r: _DemoRun) -> None:
    """Several maps together (issue 22): the camcan phantom with ``cfg.maps`` (the same subjects and seed as the
    MD cohort), split and prepared with ``--maps``, one DiT on the maps as channels (the demo's recipe),
    ``n_synthetic`` subjects sampled, judged per map with the joint view; the folders under ``out/maps/``, the
    evaluation in ``out/maps_eval/``."""
    from neurodit.data.phantom import make_phantom_cohort
    from neurodit.data.prepare import export_prepared, prepare
    from neurodit.data.split import split_cohort
    from neurodit.metrics.evaluate import EvalConfig, evaluate
    from neurodit.metrics.joint import read_joint
    from neurodit.sample import sample_diffusion
    from neurodit.train import resolve_train_config, train_diffusion

    c, root = r.cfg, r.d["maps"]
    d = {k: root / k for k in ("phantom", "train", "heldout", "prep_train", "prep_heldout", "real_train",
                               "real_heldout", "run", "synthetic")}
    d["eval"] = r.d["maps_eval"]  # beside the other stage folders: the report finds it one level down
    maps = ",".join(c.maps)
    steps = c.maps_train_steps if c.maps_train_steps is not None else c.train_steps

    def run() -> str:
        make_phantom_cohort("camcan", n=c.n_camcan, out=d["phantom"], seed=c.seed, voxel_size=c.phantom_voxel_size,
                            overwrite=True, maps=tuple(c.maps))
        split_cohort(d["phantom"], d["train"], d["heldout"], c.heldout_fraction, seed=c.seed, overwrite=True)
        for side in ("train", "heldout"):
            prepare(d[side], d[f"prep_{side}"], shape=r.shape, overwrite=True, maps=tuple(c.maps))
            export_prepared(d[f"prep_{side}"], d[f"real_{side}"], overwrite=True)
        flags: dict[str, Any] = {"prep_dir": str(d["prep_train"]), "out": str(d["run"]), "preset": c.preset,
                                 "seed": c.seed, "overwrite": True, **({"max_steps": steps} if steps else {})}
        train_diffusion(resolve_train_config(None, dict(c.train_overrides), **flags))
        sample_diffusion(d["run"], c.n_synthetic, d["synthetic"], steps=c.sample_steps, guidance=c.guidance,
                         scheduler=c.sampler, seed=c.seed, overwrite=True)
        ecfg = EvalConfig(max_pairs=c.eval_max_pairs, seed=c.seed, permutations=c.eval_permutations,
                          calibrate=False, encoder_cache=str(r.d["cache"]))
        evaluate(d["real_heldout"], d["synthetic"], d["eval"], train=d["real_train"], overwrite=True, cfg=ecfg)
        return read_joint(d["eval"])["verdict"]

    q = {k: _q(v) for k, v in d.items()}
    steps_flag = f" --max-steps {steps}" if steps else ""
    r.stage("maps", "; ".join([
        f"neurodit phantom --cohort camcan --n {c.n_camcan} --out {q['phantom']} --seed {c.seed} --voxel-size "
        f"{c.phantom_voxel_size:g} --maps {maps} --overwrite",
        f"neurodit split {q['phantom']} --train-out {q['train']} --heldout-out {q['heldout']} --heldout-fraction "
        f"{c.heldout_fraction:g} --seed {c.seed} --overwrite",
        *(f"neurodit prepare {q[side]} --out {q['prep_' + side]} --maps {maps} --shape {r.shape_arg} --overwrite; "
          f"neurodit export {q['prep_' + side]} --out {q['real_' + side]} --overwrite" for side in ("train", "heldout")),
        f"neurodit train {q['prep_train']} --out {q['run']} --preset {c.preset} --seed {c.seed}{steps_flag}"
        f"{_set_flags(c.train_overrides)} --overwrite",
        f"neurodit sample {q['run']} --n {c.n_synthetic} --out {q['synthetic']} --steps {c.sample_steps} "
        f"--guidance {c.guidance:g} --seed {c.seed} --overwrite",
        f"neurodit evaluate --real {q['real_heldout']} --synthetic {q['synthetic']} --train {q['real_train']} "
        f"--out {q['eval']} --max-pairs {c.eval_max_pairs} --permutations {c.eval_permutations} --seed {c.seed} "
        f"--encoder-cache {_q(r.d['cache'])} --overwrite"]), run)


def run_demo(out: str | Path, quick: bool = False, overrides: dict[str, Any] | None = None,
             echo: Callable[[str], None] = print, full: bool = False) -> Path:
    """Run every stage into ``out``; returns the path of ``out/report.html``."""
    from neurodit.report import build_report

    cfg = load_demo_config(quick, overrides, full=full)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    r = _DemoRun(cfg, out, echo)
    for step in (_phantoms, _split, _prepare, _tile, _train, _sample):
        step(r)
    # downstream needs the synthetic cohort only; evaluate and compare go on beside it (overlap)
    child = _downstream(r)
    try:
        _evaluate(r)
        if cfg.compare:
            _compare(r)
        if child is not None:
            child.join()
        if cfg.effect_guidance:
            _effect(r)
        if cfg.sweep:
            _sweep(r)
        if cfg.maps:
            _maps(r)
    finally:
        if child is not None:
            child.kill()  # a stage that failed here leaves no orphan training in the background
    r.write_summary(quick)
    write_run_info(out, to_dict(cfg), cfg.seed, quick=quick, timings_s=r.timings)
    report = out / "report.html"
    r.stage("report", f"neurodit report {_q(out)} --out {_q(report)}", lambda: f"{build_report([out], report)}")
    wall = time.perf_counter() - t0
    r.write_summary(quick, wall_s=round(wall, 1))
    echo(f"demo: done in {wall:.0f} s wall; open {report}")
    return report


__all__ = ["DemoConfig", "load_demo_config", "run_demo"]

"""``neurodit demo --ablation pretraining``: does pretraining the DiT help, and on what?

The method's thesis (Chattopadhyay et al. 2025) is that a DiT pretrained on natural images transfers to
mosaics of brain slices. This runs the miniature of that claim on the demo's phantom cohorts, one command:

1. the demo's data stages (phantom camcan + adni, split, prepare on the preset's grid; :mod:`neurodit.demo`);
2. two pretrained starts of the same preset and recipe: ``natural`` (:func:`neurodit.pretrain.pretrain` on
   natural-image crops) and ``adni`` (``neurodit train`` on the adni-like phantom cohort: the in-domain
   alternative a user actually has, another brain cohort), each ``pretrain_steps`` steps;
3. the same finetune on the camcan training split, the demo's recipe, from ``scratch``, from ``natural`` and
   from ``adni`` (``--init START/model``: class table replaced with ours), at each budget in ``budgets``
   (finetuning steps) and each training seed in ``seeds``;
4. :func:`neurodit.compare.compare` of every finetuned run against the held-out real subjects, one set of
   settings: the judge's C2ST views with bootstrap 95 % CIs and permutation p, Fréchet / its real floor,
   diversity, memorization, and the downstream sex arms per row;
5. ``ablation.json``, ``ablation.md`` (table and verdicts) and ``ablation.png`` (quality against
   finetuning steps, one line per start).

Verdict rule, per start against scratch at the same budget and per C2ST view: the difference of AUCs
(start - scratch, averaged over seeds) with a 95 % CI of +-1.96 sqrt(se_start^2 + se_scratch^2), each se
read from that row's bootstrap CI as (hi - lo) / 3.92 (the bootstrap is over the judged volumes, not over
training seeds: with one seed it does not include training noise). ``helped`` where some view's CI lies
wholly below 0 and none wholly above, ``hurt`` for the reverse, ``mixed`` for both, else ``no clear
difference``. The downstream sex gain is compared the same way (a gain larger than scratch's helps). Shown
beside the verdict, not part of it (no CI): the Fréchet ratio and the training loss over the last quarter of
steps, start minus scratch per training seed (a seed draws the same batches, noise and timesteps whatever the
start, so each pair differs only by the start), with how many seeds agree in sign.

ABL_DIR (schema: :mod:`neurodit.ablation.schema`): the demo folders it uses (``camcan``, ``prep_train``, ``real_heldout``, ...), ``start_natural/``,
``start_adni/``, ``ft_<start>_<steps>_s<seed>/``, ``compare/`` (CMP_DIR), ``ablation.{json,md,png}``,
``run.json``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neurodit.ablation.render import ablation_figure, ablation_markdown
from neurodit.ablation.schema import ABLATIONS, FIGURE, RESULT, SCHEMA, STARTS, TABLE, VIEWS
from neurodit.config import CONFIG_DIR, deep_merge, from_dict, read_yaml, to_dict
from neurodit.errors import NeuroditError
from neurodit.io import atomic_write_bytes, atomic_write_text, read_json, write_json, write_run_info

ABLATION_CONFIG_DIR = CONFIG_DIR / "ablation"


@dataclass
class PretrainingAblationConfig:
    """Settings of the pretraining ablation (``configs/ablation/pretraining.yaml``)."""

    demo: dict[str, Any] = field(default_factory=dict)  # DemoConfig keys over configs/demo/default.yaml
    quick: bool = False  # the demo's quick sizes underneath (tests); numbers are not meaningful
    images: str = "skimage"  # neurodit pretrain --images
    n_crops: int = 2048
    crop_scale: list[float] = field(default_factory=lambda: [0.3, 1.0])
    pretrain_steps: int = 1000  # each pretrained start (natural and adni)
    brain_label: str = "diagnosis"  # the adni start's class label (CN / AD)
    budgets: list[int] = field(default_factory=lambda: [100, 300, 1000])  # finetuning steps
    seeds: list[int] = field(default_factory=lambda: [0])  # finetuning seeds (the starts use the demo's seed)
    num_threads: int = 0  # training threads (0: timed at start-up, as train does)
    # the natural-image start as given (hub id, diffusers folder, original DiT .pt: any --init source), not
    # pretrained here: facebook/DiT-XL-2-256 with demo.preset XL-2-256 on a GPU is the method's own start
    natural_init: str | None = None

    def __post_init__(self) -> None:
        if not self.budgets or min(self.budgets) < 1 or not self.seeds or self.pretrain_steps < 1:
            raise NeuroditError("ablation: budgets and seeds must be non-empty, steps >= 1")
        self.budgets = sorted(int(b) for b in self.budgets)


def load_ablation_config(name: str, overrides: dict[str, Any] | None = None,
                         quick: bool = False) -> PretrainingAblationConfig:
    """``configs/ablation/<name>.yaml`` (``<name>-quick.yaml`` with ``quick``) with nested ``overrides``."""
    if name not in ABLATIONS:
        raise NeuroditError(f"unknown ablation '{name}' (known: {', '.join(ABLATIONS)})")
    data = read_yaml(ABLATION_CONFIG_DIR / f"{name}{'-quick' if quick else ''}.yaml")
    return from_dict(PretrainingAblationConfig, deep_merge(data, overrides or {}))


def _run_name(start: str, steps: int, seed: int) -> str:
    return f"ft_{start}_{steps}_s{seed}"


def _label(start: str, steps: int, seed: int, seeds: list[int]) -> str:
    return f"{start} +{steps}" + (f" s{seed}" if len(seeds) > 1 else "")


def run_pretraining_ablation(out: str | Path, overrides: dict[str, Any] | None = None, quick: bool = False,
                             echo: Callable[[str], None] = print) -> Path:
    """Run the ablation into ``out`` (see the module docstring); returns ``out/ablation.md``."""
    from neurodit.demo import _DemoRun, _phantoms, _prepare, _q, _set_flags, _split, load_demo_config

    acfg = load_ablation_config("pretraining", overrides, quick=quick)
    dcfg = load_demo_config(acfg.quick or quick, acfg.demo)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    r = _DemoRun(dcfg, out, echo)
    for step in (_phantoms, _split, _prepare):
        step(r)
    d, s = r.d, dcfg.seed
    # the demo's recipe for every training here; a start's class label is its own cohort's
    recipe = {k: v for k, v in dcfg.train_overrides.items() if k not in ("label", "age_bins")}
    if acfg.num_threads:
        recipe["num_threads"] = acfg.num_threads
    # each start's --init source: a run's model/ folder, or natural_init as given
    starts = {"natural": out / "start_natural", "adni": out / "start_adni"}
    inits = {k: str(v / "model") for k, v in starts.items()}
    if acfg.natural_init:
        inits["natural"] = acfg.natural_init
        del starts["natural"]
    else:
        _pretrain_natural(r, acfg, starts["natural"], recipe, _q, _set_flags)
    _pretrain_brain(r, acfg, starts["adni"], recipe, _q, _set_flags)

    runs: dict[tuple[str, int, int], Path] = {}
    for budget in acfg.budgets:
        for seed in acfg.seeds:
            for start in STARTS:
                runs[(start, budget, seed)] = _finetune(r, start, budget, seed, inits.get(start), _q, _set_flags)
    labels = {str(p): _label(st, b, sd, acfg.seeds) for (st, b, sd), p in runs.items()}
    _compare_runs(r, list(runs.values()), labels, _q)
    data = summarize(read_json(d["compare"] / "comparison.json"), runs, acfg, starts)
    data["timings_s"] = r.timings
    data["wall_s"] = round(time.perf_counter() - t0, 1)
    data["commands"] = r.commands
    write_json(out / RESULT, data)
    atomic_write_text(out / TABLE, ablation_markdown(data))
    atomic_write_bytes(out / FIGURE, ablation_figure(data))
    write_run_info(out, {"ablation": to_dict(acfg), "demo": to_dict(dcfg)}, s, stage="ablation", quick=quick,
                   timings_s=r.timings)
    echo(f"ablation: done in {data['wall_s']:.0f} s wall; {out / TABLE}, {out / FIGURE}")
    for line in data["verdicts"]:
        echo(f"    {line}")
    return out / TABLE


def _pretrain_natural(r, acfg: PretrainingAblationConfig, run: Path, recipe: dict, _q, _set_flags) -> None:
    from neurodit.pretrain import pretrain

    c = r.cfg

    def go() -> str:
        pretrain(acfg.images, c.preset, run, max_steps=acfg.pretrain_steps, n_crops=acfg.n_crops,
                 seed=c.seed, scale=tuple(acfg.crop_scale), overrides=recipe, overwrite=True)
        n = len(read_json(run / "images.json")["images"])
        return f"{acfg.pretrain_steps} steps on {acfg.n_crops} crops of {n} {acfg.images} images"

    r.stage("pretrain_natural", f"neurodit pretrain --images {_q(acfg.images)} --preset {c.preset} --out {_q(run)} "
            f"--max-steps {acfg.pretrain_steps} --crops {acfg.n_crops} --seed {c.seed}{_set_flags(recipe)} "
            "--overwrite", go)


def _pretrain_brain(r, acfg: PretrainingAblationConfig, run: Path, recipe: dict, _q, _set_flags) -> None:
    from neurodit.train import resolve_train_config, train_diffusion

    c, d = r.cfg, r.d

    def go() -> str:
        cfg = resolve_train_config(None, dict(recipe), prep_dir=str(d["prep_adni"]), out=str(run), preset=c.preset,
                                   label=acfg.brain_label, max_steps=acfg.pretrain_steps, seed=c.seed,
                                   overwrite=True)
        train_diffusion(cfg)
        return f"{acfg.pretrain_steps} steps on the adni-like cohort ({c.n_adni} subjects, label {acfg.brain_label})"

    r.stage("pretrain_adni", f"neurodit train {_q(d['prep_adni'])} --out {_q(run)} --preset {c.preset} --label "
            f"{acfg.brain_label} --max-steps {acfg.pretrain_steps} --seed {c.seed}{_set_flags(recipe)} --overwrite", go)


def _finetune(r, start: str, budget: int, seed: int, init: str | None, _q, _set_flags) -> Path:
    from neurodit.train import resolve_train_config, train_diffusion

    c, d = r.cfg, r.d
    run = r.out / _run_name(start, budget, seed)

    def go() -> str:
        cfg = resolve_train_config(None, dict(c.train_overrides), prep_dir=str(d["prep_train"]), out=str(run),
                                   preset=c.preset, init=init, max_steps=budget, seed=seed, overwrite=True)
        train_diffusion(cfg)
        loss = read_json(run / "run.json").get("final_loss")
        return f"finetune from {start}, {budget} steps, seed {seed}: final loss {loss:.3f}"

    r.stage(f"finetune_{start}_{budget}_s{seed}",
            f"neurodit train {_q(d['prep_train'])} --out {_q(run)} --preset {c.preset}"
            + (f" --init {_q(init)}" if init else "") + f" --max-steps {budget} --seed {seed}"
            f"{_set_flags(c.train_overrides)} --overwrite", go)
    return run


def _compare_runs(r, runs: list[Path], labels: dict[str, str], _q) -> None:
    from neurodit.compare import compare, read_comparison
    from neurodit.demo import compare_settings

    c, d, s = r.cfg, r.d, r.cfg.seed

    def go() -> str:
        ccfg = compare_settings(c, d["cache"], labels)
        compare(runs, d["real_heldout"], d["real_train"], d["compare"], cfg=ccfg, overwrite=True)
        return read_comparison(d["compare"])["summary"]

    r.stage("compare", "neurodit compare " + " ".join(_q(p) for p in runs)
            + f" --real {_q(d['real_heldout'])} --train {_q(d['real_train'])} --out {_q(d['compare'])} "
            f"--n {c.n_synthetic} --seed {s} --steps {c.sample_steps} --guidance {c.guidance:g}"
            + "".join(f" --label-as {_q(f'{name}={p}')}" for p, name in labels.items())
            + ("" if c.compare_downstream else " --no-downstream") + " --overwrite", go)


# --------------------------------------------------------------------------- summary
def _se(ci: list[float] | None) -> float:
    """A 95 % CI's half-width / 1.96 (nan without a CI)."""
    return math.nan if not ci else (float(ci[1]) - float(ci[0])) / 3.92


def _mean(values: list[float]) -> float | None:
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    return sum(vals) / len(vals) if vals else None


def _diff(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> dict[str, Any] | None:
    """Mean over seeds of (value, se) pairs ``a`` minus ``b`` -> {diff, ci95}: independent rows' errors."""
    if not a or not b:
        return None
    n = len(a)
    diff = sum(x for x, _ in a) / n - sum(x for x, _ in b) / len(b)
    se = math.sqrt(sum(s * s for _, s in a) / n ** 2 + sum(s * s for _, s in b) / len(b) ** 2)
    return {"diff": round(diff, 4), "ci95": [round(diff - 1.96 * se, 4), round(diff + 1.96 * se, 4)]}


def _loss_end(run: Path) -> float | None:
    """Mean training loss over the last quarter of a run's logged steps (``loss.csv``; None without it)."""
    import csv

    path = Path(run) / "loss.csv"
    if not path.is_file():
        return None
    with open(path) as f:
        losses = [float(r["loss"]) for r in csv.DictReader(f)]
    tail = losses[-max(1, len(losses) // 4):]
    return round(sum(tail) / len(tail), 4) if tail else None


def _word(signs: list[int]) -> str:
    """+1 per comparison shown better, -1 shown worse, 0 not shown -> the verdict word."""
    better, worse = any(v > 0 for v in signs), any(v < 0 for v in signs)
    return "mixed" if better and worse else "helped" if better else "hurt" if worse else "no clear difference"


def summarize(comparison: dict, runs: dict[tuple[str, int, int], Path], acfg: PretrainingAblationConfig,
              starts: dict[str, Path]) -> dict[str, Any]:
    """The ablation's result from CMP_DIR's ``comparison.json``: per (start, budget) the seed-averaged
    quality, and per pretrained start and budget the difference to scratch with a CI and its verdict."""
    by_input = {row["input"]: row for row in comparison["rows"]}
    cells: dict[str, dict[int, dict[str, Any]]] = {}
    for (start, budget, seed), path in runs.items():
        row = by_input[str(path)]
        cell = cells.setdefault(start, {}).setdefault(budget, {"rows": []})
        cell["rows"].append({"seed": seed, "name": row["name"], "quality": row["quality"], "loss_end": _loss_end(path),
                             "diversity": row["diversity"], "memorization": row["memorization"],
                             "downstream": row["downstream"], "cost": row["cost"]})
    table: list[dict[str, Any]] = []
    for start in STARTS:
        for budget in acfg.budgets:
            rows = cells[start][budget]["rows"]
            entry: dict[str, Any] = {"start": start, "steps": budget, "seeds": [x["seed"] for x in rows]}
            for v in VIEWS:
                views = [x["quality"]["c2st"].get(v) for x in rows]
                entry[f"auc_{v}"] = _mean([w["auc"] for w in views if w])
                los = [w["auc_ci95"][0] for w in views if w]
                his = [w["auc_ci95"][1] for w in views if w]
                entry[f"auc_{v}_ci95"] = [_mean(los), _mean(his)] if los else None
            entry["frechet_ratio"] = _mean([x["quality"]["frechet_ratio"] for x in rows])
            entry["precision"] = _mean([x["quality"]["precision"] for x in rows])
            entry["recall"] = _mean([x["quality"]["recall"] for x in rows])
            entry["msssim_syn_syn"] = _mean([x["diversity"]["syn_syn"] for x in rows])
            entry["msssim_real_real"] = rows[0]["diversity"]["real_real"]
            entry["memorization"] = _mean([x["memorization"]["fraction_above"] for x in rows])
            ds = [x["downstream"] for x in rows if x["downstream"]]
            entry["gain"] = _mean([g["gain"] for g in ds])
            entry["gain_ci95"] = [_mean([g["ci95"][0] for g in ds]), _mean([g["ci95"][1] for g in ds])] if ds else None
            entry["train_seconds"] = _mean([x["cost"]["train_seconds"] for x in rows if x["cost"]])
            entry["loss_end"] = _mean([x["loss_end"] for x in rows])
            # the per-seed values of the two measures without a CI (the figure draws them)
            entry["frechet_ratio_seeds"] = [x["quality"]["frechet_ratio"] for x in rows]
            entry["loss_end_seeds"] = [x["loss_end"] for x in rows]
            table.append(entry)
    contrasts, verdicts = [], []
    for start in STARTS[1:]:
        for budget in acfg.budgets:
            a, b = cells[start][budget]["rows"], cells["scratch"][budget]["rows"]
            c: dict[str, Any] = {"start": start, "steps": budget, "c2st": {}, "downstream": None}
            signs = []
            for v in VIEWS:
                pa = [(x["quality"]["c2st"][v]["auc"], _se(x["quality"]["c2st"][v]["auc_ci95"]))
                      for x in a if v in x["quality"]["c2st"]]
                pb = [(x["quality"]["c2st"][v]["auc"], _se(x["quality"]["c2st"][v]["auc_ci95"]))
                      for x in b if v in x["quality"]["c2st"]]
                dv = _diff(pa, pb)
                if dv is None:
                    continue
                c["c2st"][v] = dv  # lower AUC is better: a CI wholly below 0 means the start helped
                signs.append(1 if dv["ci95"][1] < 0 else -1 if dv["ci95"][0] > 0 else 0)
            c["verdict"] = _word(signs)
            ga = [(x["downstream"]["gain"], _se(x["downstream"]["ci95"])) for x in a if x["downstream"]]
            gb = [(x["downstream"]["gain"], _se(x["downstream"]["ci95"])) for x in b if x["downstream"]]
            dg = _diff(ga, gb)
            if dg is not None:
                c["downstream"] = dg
                c["downstream_verdict"] = _word([1 if dg["ci95"][0] > 0 else -1 if dg["ci95"][1] < 0 else 0])
            f_a = _mean([x["quality"]["frechet_ratio"] for x in a])
            f_b = _mean([x["quality"]["frechet_ratio"] for x in b])
            # per seed, start minus scratch: the same seed draws the same batches, noise and timesteps
            # at every step (neurodit.train.loop._seeded), so these pairs differ only by the start
            pairs = [(x, y) for x in a for y in b if x["seed"] == y["seed"]]
            fd = [x["quality"]["frechet_ratio"] - y["quality"]["frechet_ratio"] for x, y in pairs
                  if x["quality"]["frechet_ratio"] is not None and y["quality"]["frechet_ratio"] is not None]
            ld = [x["loss_end"] - y["loss_end"] for x, y in pairs if x["loss_end"] is not None
                  and y["loss_end"] is not None]
            c["frechet_ratio"] = {"start": f_a, "scratch": f_b, "per_seed_diff": [round(v, 3) for v in fd]}
            c["loss_end"] = {"per_seed_diff": [round(v, 4) for v in ld]}
            contrasts.append(c)
            parts = [f"{v} {dv['diff']:+.2f} ({dv['ci95'][0]:+.2f} to {dv['ci95'][1]:+.2f})"
                     for v, dv in c["c2st"].items()]
            line = (f"{start} vs scratch at {budget} steps: {c['verdict']} by the C2ST views (AUC difference, "
                    f"95% CI: {', '.join(parts)})")
            if f_a is not None and f_b is not None:
                line += (f"; Fréchet/floor {f_a:.1f} vs {f_b:.1f} (lower in {sum(v < 0 for v in fd)} of "
                         f"{len(fd)} seeds)")
            if ld:
                line += (f"; training loss (last quarter) {_mean(ld):+.3f} vs scratch (lower in "
                         f"{sum(v < 0 for v in ld)} of {len(ld)} seeds)")
            if dg is not None:
                line += (f"; downstream sex gain difference {dg['diff']:+.3f} ({dg['ci95'][0]:+.3f} to "
                         f"{dg['ci95'][1]:+.3f}): {c['downstream_verdict']}")
            verdicts.append(line)
    pre = {}
    for name, run in starts.items():
        info = read_json(run / "run.json")
        pre[name] = {"run": str(run), "steps": info.get("steps_trained"), "train_seconds": info.get("train_seconds"),
                     "final_loss": info.get("final_loss")}
    if acfg.natural_init:
        pre["natural"] = {"run": None, "init": acfg.natural_init, "steps": None}
    elif (starts["natural"] / "images.json").is_file():
        imgs = read_json(starts["natural"] / "images.json")
        pre["natural"]["images"] = [{k: im[k] for k in ("name", "licence", "crops")} for im in imgs["images"]]
    return {"schema": SCHEMA, "config": to_dict(acfg), "starts": pre, "table": table,
            "contrasts": contrasts, "verdicts": verdicts, "floor": comparison["floor"],
            "compare": "compare/comparison.json", "rule": __doc__.split("Verdict rule, ")[1].split("\n\n")[0]}


__all__ = ["PretrainingAblationConfig", "load_ablation_config", "run_pretraining_ablation", "summarize"]

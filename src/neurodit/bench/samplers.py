"""Sampler steps against quality on one trained run: for each sampler and step count, seconds per sampled
volume and the judge's C2ST AUC (every view) and Fréchet ratio (Fréchet distance / the real-vs-real floor,
``neurodit.metrics``). The curve a user picks a sampler from.

The rows depend on the run's objective: ddpm runs get DDPM 250, DDIM 50, DPM-Solver++ 10 and 20; flow runs
Euler at 250 (the reference), 10, 25 and 50 steps, Heun at 10, 25 and 50 (Heun calls the network twice a
step but the last: 2 * steps - 1 evaluations), and the one-call second-order AB2 and DPM-Solver++(2M) at 12
and 25, all on the run's time grid (``SAMPLING.flow_shift``). Every row samples the same seeds, so rows differ only by the
sampler. Each row's ``auc_gap`` is its largest C2ST AUC difference from the 250-step row over the views; a
sampler of at most :data:`FEW_CALLS` network calls within :data:`AUC_TOLERANCE` of it in every view is a
cheap sampler that loses nothing the judge sees (``cheap_within_tolerance``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from neurodit.errors import NeuroditError
from neurodit.io import read_json

SAMPLER_GRID = {"ddpm": (("ddpm", 250), ("ddim", 50), ("dpm", 10), ("dpm", 20)),
                "flow": (("euler", 250), ("euler", 10), ("euler", 25), ("euler", 50), ("heun", 10), ("heun", 25),
                         ("heun", 50), ("ab2", 12), ("ab2", 25), ("dpm", 12), ("dpm", 25))}
REFERENCE_STEPS = 250  # the many-step row every other row is held against
FEW_CALLS = 25  # "cheap": at most this many network calls per sample
AUC_TOLERANCE = 0.03  # C2ST AUC within this of the reference, in every view


def network_calls(kind: str, steps: int) -> int:
    """Network evaluations per sample, without guidance's doubling of the batch (Heun: 2 a step but the last)."""
    return 2 * steps - 1 if kind == "heun" else steps


def judge_config(work: Path, quick: bool):
    """The judge's settings for the table: C2ST and Fréchet only (no MS-SSIM, MMD, morphometry, figures);
    ``quick``: fewer permutations and CNN epochs (a smoke run, numbers not meaningful)."""
    from neurodit.metrics.config import EvalConfig

    return EvalConfig(max_pairs=10, permutations=20, bootstrap=20, coherence_pairs=4, figures=False,
                      morphometry=False, c2st_permutations=20 if quick else 100,
                      c2st_cnn_epochs=1 if quick else 8, encoder_cache=str(work / "encoder"))


def judge_row(real: Path, syn: Path, train: Path | None, out: Path, cfg) -> dict[str, Any]:
    """C2ST AUC per view and the Fréchet ratio of one synthetic folder (``neurodit.metrics.evaluate``)."""
    from neurodit.metrics.evaluate import evaluate

    m = read_json(evaluate(real, syn, out, train=train, cfg=cfg, overwrite=True) / "metrics.json")
    feats = m.get("features") or {}
    ratio = feats.get("frechet_ratio")  # the judge's one ratio (neurodit.metrics.features.frechet_ratio)
    return {"c2st_auc": {v: round(r["auc"], 3) for v, r in m.get("c2st", {}).get("views", {}).items()},
            "frechet": feats.get("frechet"), "frechet_ratio": None if ratio is None else round(ratio, 2)}


def bench_samplers(run_dir: str | Path, real: str | Path | None, work: Path, *, n: int = 40,
                   quick: bool = False, grid: tuple[tuple[str, int], ...] | None = None) -> dict[str, Any]:
    """The sampler table of the run ``run_dir`` (module docstring): ``n`` volumes per row sampled with the
    run's guidance; judged against the real cohort folder ``real`` (held-out volumes on the run's grid),
    with the run's own training volumes (exported from its prepared folder, when still there) as the
    second real set of the Fréchet floor. Without ``real`` the rows carry seconds only."""
    import yaml

    from neurodit.data.prepare import export_prepared
    from neurodit.generators import sample

    run_dir = Path(run_dir)
    cfg_file = run_dir / "train_config.yaml"
    if not cfg_file.is_file():
        raise NeuroditError("--run: not a diffusion run folder (no train_config.yaml)", run_dir)
    train_cfg = yaml.safe_load(cfg_file.read_text()) or {}
    objective = (train_cfg.get("diffusion") or {}).get("objective", "ddpm")
    guidance = float(train_cfg.get("guidance", 2.0))
    prep = Path(train_cfg.get("prep_dir", ""))
    train = export_prepared(prep, work / "train", overwrite=True) if real and (prep / "prepare.json").is_file() else None
    jcfg = judge_config(work, quick)
    rows = []
    for kind, steps in grid or SAMPLER_GRID[objective]:
        out = work / f"syn-{kind}-{steps}"
        t0 = time.perf_counter()
        sample(run_dir, n, out, scheduler=kind, steps=steps, guidance=guidance, overwrite=True, progress=False)
        row = {"sampler": kind, "steps": steps, "network_calls": network_calls(kind, steps),
               "s_per_volume": round((time.perf_counter() - t0) / n, 4)}
        if real:
            row.update(judge_row(Path(real), out, train, work / f"eval-{kind}-{steps}", jcfg))
        rows.append(row)
    note = None if real else "no --real cohort: seconds only (pass held-out real volumes on the run's grid)"
    return {"run": str(run_dir), "objective": objective, "guidance": guidance, "n": n, "real": str(real) if real else None,
            "floor_set": "the run's training volumes" if train else None, "rows": rows, "note": note,
            **against_reference(rows)}


def against_reference(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Set each row's ``auc_gap`` (largest |C2ST AUC - the reference row's| over the views) and name the cheap
    rows (at most :data:`FEW_CALLS` calls) within :data:`AUC_TOLERANCE` in every view; empty without a
    judged reference row."""
    ref = next((r for r in rows if r["steps"] == REFERENCE_STEPS and r.get("c2st_auc")), None)
    if ref is None:
        return {"reference": None, "cheap_within_tolerance": []}
    for r in rows:
        if r.get("c2st_auc"):
            r["auc_gap"] = round(max(abs(a - ref["c2st_auc"][v]) for v, a in r["c2st_auc"].items()), 3)
    cheap = [f"{r['sampler']} {r['steps']}" for r in rows
             if r is not ref and r["network_calls"] <= FEW_CALLS and r.get("auc_gap", 1.0) <= AUC_TOLERANCE]
    return {"reference": f"{ref['sampler']} {ref['steps']}", "tolerance": AUC_TOLERANCE, "few_calls": FEW_CALLS,
            "cheap_within_tolerance": cheap}

"""The "When synthetic data helps" section: ``results.json`` of schema ``neurodit.sweep/1`` (the schema is
the module docstring of :mod:`neurodit.downstream.sweep`, whose :func:`~neurodit.downstream.sweep.read_results`
is the only reader of the file)."""

from __future__ import annotations

import json
from pathlib import Path

from neurodit.downstream.sweep import read_results, result_figures
from neurodit.report import html as H

CAPTIONS = {"augment": "Sex classifier by real source participants: real only (black) and with m× synthetic "
                       "volumes of a generator refitted on exactly those participants; bands: 95% CI.",
            "transfer": "AD vs CN by target participants: scratch (black), and each sex backbone as a linear "
                        "probe (frozen) or fine-tuned; bands: 95% CI."}


def _cell(m: dict) -> str:
    lo, hi = m["ci95"]
    return f"{m['mean']:.3f} ({H.fmt(lo, 3)} to {H.fmt(hi, 3)})"


def _diff(c: dict) -> list:
    ba = c["metrics"]["balanced_accuracy"]
    return [ba["mean_diff"], *ba["ci95"], ba["p_wilcoxon"], c["outcome"]]


def results_html(res: dict, summary: H.Summary) -> str:
    parts = []
    lines = res["verdicts"]["augment"] + res["verdicts"]["transfer"]
    # the summary box: the augmentation curves and the transfer lines against scratch; the rest in the section
    for line in res["verdicts"]["augment"] + [v for v in res["verdicts"]["transfer"] if "vs scratch" in v]:
        summary.say(f"Sweep: {line}", prio=0.2)
    parts.append("<ul>" + "".join(f'<li><span class="{H.verdict_class(v)}">{H.esc(v)}</span></li>'
                                  for v in lines) + "</ul>")
    if "augment" in res:
        a = res["augment"]
        rows = [[c["generator"], c["real_fraction"], c["n_real"], c["multiple"], c["n_synthetic"], c["n_runs"],
                 _cell(c["metrics"]["balanced_accuracy"]), _cell(c["metrics"]["roc_auc"])] for c in a["cells"]]
        parts.append("<h3>Augmentation: sex, by real fraction (mean over folds × seeds, 95% CI)</h3>" + H.table(
            ["generator", "fraction", "real participants", "× synthetic", "synthetic volumes", "runs",
             "balanced accuracy", "ROC-AUC"], rows))
        rows = [[f"{c['multiple']}× {c['generator']}", c["n_real"], *_diff(c)] for c in a["comparisons"]]
        parts.append("<h4>Added synthetic data − real only (paired, balanced accuracy)</h4>" + H.table(
            ["arm", "real participants", "difference", "95% CI low", "95% CI high", "Wilcoxon p", "outcome"], rows))
        fits = [[g, ", ".join(f"{x:g}" for x in f["fractions"]), f["n_fits"], f["seconds"],
                 json.dumps(f["settings"])] for g, f in a.get("fits", {}).items()]
        parts.append("<h4>Generators refitted per fraction</h4>" + H.table(
            ["generator", "fractions", "fits", "seconds", "settings"], fits))
    if "transfer" in res:
        t = res["transfer"]
        rows = [[c["backbone"], c["mode"], c["target_fraction"], c["n_target"], c["n_runs"],
                 _cell(c["metrics"]["balanced_accuracy"]), _cell(c["metrics"]["roc_auc"])] for c in t["cells"]]
        parts.append("<h3>Transfer: AD vs CN, by target fraction</h3>" + H.table(
            ["backbone", "mode", "fraction", "target participants", "runs", "balanced accuracy", "ROC-AUC"], rows))
        rows = [[c["question"], c["n_target"], *_diff(c)] for c in t["comparisons"]]
        parts.append("<h4>Paired comparisons (balanced accuracy)</h4>" + H.table(
            ["question", "target participants", "difference", "95% CI low", "95% CI high", "Wilcoxon p",
             "outcome"], rows))
    parts.append(H.details("Sweep configuration", H.pre(json.dumps(res.get("config"), indent=2))))
    return "".join(parts)


def sweep_section(folders: list[Path], summary: H.Summary) -> str:
    """One block per SWEEP_DIR; empty when none was given (the default demo runs no sweep)."""
    def render(folder: Path) -> str:
        res = read_results(folder)
        with H.bad_keys(folder / "results.json"):
            body = results_html(res, summary)
        figs = [H.img(p.read_bytes(), n, CAPTIONS[n]) for n, p in result_figures(folder).items()]
        return H.figs(figs) + body

    return H.folder_section("sweep", "When synthetic data helps (learning curves)", folders, render)


__all__ = ["sweep_section"]

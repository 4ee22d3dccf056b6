"""The "Downstream classifier" section: ``results.json`` of schema ``neurodit.downstream/2`` (or ``/1``):
every arm of every synthetic cohort (``sex/real+synthetic[name]`` ...), every cohort's comparisons.

The schema is the module docstring of :mod:`neurodit.downstream.experiment`; the file is read by
:func:`neurodit.downstream.schema.read_results` (which rejects any other schema).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from neurodit.downstream.schema import data_sets, read_results, result_figures
from neurodit.errors import NeuroditError
from neurodit.report import figures as F
from neurodit.report import html as H

METRIC_COLUMNS = {"balanced_accuracy": "balanced accuracy", "roc_auc": "ROC-AUC", "f1": "F1",
                  "accuracy": "accuracy"}
SITE_LABELS = {"md_scale": "MD scale (× true MD)", "noise_sd": "voxel noise sd (fraction of MD)",
               "blur_fwhm_mm": "blur FWHM (mm)", "bias_sd": "bias field sd", "bias_field": "bias field"}
OVERALL = {"synthetic_for_sex": "Sex classifier", "synthetic_for_transfer": "AD vs CN (transfer)"}


def _cell(m: dict) -> str:
    lo, hi = m["ci95"]
    return f"{m['mean']:.3f} ({H.fmt(lo, 3)} to {H.fmt(hi, 3)})"


def results_html(results: dict, summary: H.Summary) -> tuple[str, list[str]]:
    """(tables, figures) of one results.json; the overall verdicts go to the summary."""
    for key, label in OVERALL.items():
        summary.say(f"{label}: {results['verdict'][key]}", prio=0)
    comps, arms = results["comparisons"], results["arms"]
    parts = ["<ul>" + "".join(f'<li><b>{H.esc(c["question"])}</b> <span class="{H.verdict_class(c["verdict"])}">'
                              f'{H.esc(c["verdict"])}</span></li>' for c in comps) + "</ul>"]
    rows = [[name, d["n_participants"], d["n_volumes"],
             ", ".join(f"{c}: {n}" for c, n in zip(d["classes"], d["n_per_class"], strict=True))]
            for name, d in data_sets(results)]
    parts.append("<h3>Data</h3>" + H.table(["set", "participants", "volumes", "per class"], rows))
    rows = [[name, a["task"], a["n_runs"], *(_cell(a["metrics"][m]) for m in METRIC_COLUMNS)]
            for name, a in arms.items()]
    parts.append("<h3>Arms: mean over folds × seeds (95% CI)</h3>"
                 + H.table(["arm", "task", "runs", *METRIC_COLUMNS.values()], rows))
    bas = [c["metrics"]["balanced_accuracy"] for c in comps]
    rows = [[c["arm"], c["baseline"], ba["mean_diff"], *ba["ci95"], ba["p_wilcoxon"], ba["p_corrected_t"],
             f"{ba['wins']}/{ba['losses']}/{ba['ties']}", c["outcome"]] for c, ba in zip(comps, bas, strict=True)]
    parts.append("<h3>Paired comparisons on balanced accuracy (arm − baseline)</h3>"
                 + H.table(["arm", "baseline", "mean difference", "95% CI low", "95% CI high", "Wilcoxon p",
                            "corrected t p", "wins/losses/ties", "outcome"], rows, numeric_from=2))
    parts.append(H.details("Downstream configuration", H.pre(json.dumps(results.get("config"), indent=2))))
    arm_rows = [(n, a["metrics"]["balanced_accuracy"]["mean"], *a["metrics"]["balanced_accuracy"]["ci95"])
                for n, a in arms.items()]
    figs = [H.img(F.interval_figure(arm_rows, "balanced accuracy (mean, 95% CI)", ref=0.5, bounds=(0.0, 1.0)),
                  "balanced accuracy per arm", "Balanced accuracy per arm; dashed: chance (0.5).", "half")]
    if comps:
        diff_rows = [(f"{c['arm']} − {c['baseline']}", ba["mean_diff"], *ba["ci95"])
                     for c, ba in zip(comps, bas, strict=True)]
        figs.append(H.img(F.interval_figure(diff_rows, "difference in balanced accuracy (95% CI)", ref=0.0),
                          "paired differences", "Paired difference to the baseline arm; dashed: no effect.", "half"))
    return "".join(parts), figs


def _site_order(item: tuple[str, dict]) -> tuple[int, str]:
    # camcan-like (the source of the transfer arms) first, adni-like (the target) second, then the rest
    text = f"{item[0]} {item[1].get('cohort', '')}".lower()
    return (0 if "camcan" in text else 1 if "adni" in text else 2, item[0])


def site_shift(cohorts: list[tuple[str, dict]]) -> tuple[str, str | None]:
    """(table, sentence) of the site / protocol effects of phantom cohorts (name, phantom.json as read by
    :func:`neurodit.data.phantom_info.read_phantom_info`): one column per cohort, one row per numeric key of
    its ``site`` (whatever keys it holds); the sentence names the effects that differ between cohorts."""
    sites = sorted(((n, i) for n, i in cohorts if isinstance(i.get("site"), dict)), key=_site_order)
    if not sites:
        return "", None
    keys = list(dict.fromkeys(k for _, i in sites for k, v in i["site"].items()
                              if isinstance(v, (int, float)) and not isinstance(v, bool)))
    heads = [f"{n} ({i['site'].get('name', i.get('cohort', '?'))}-like)" for n, i in sites]
    rows = [[SITE_LABELS.get(k, k.replace("_", " ")), *(i["site"].get(k) for _, i in sites)] for k in keys]
    html = ("<h3>Site shift the transfer arms face (phantom scanner / protocol effects)</h3>"
            + H.table(["site effect", *heads], rows))
    sentence = None
    if len(sites) >= 2:
        differ = [r for r in rows if len({repr(x) for x in r[1:]}) > 1]
        names = " → ".join(n for n, _ in sites)
        sentence = (f"The transfer arms ({names}) face a site shift: "
                    + "; ".join(f"{r[0]} {' vs '.join(H.fmt(x, 3) for x in r[1:])}" for r in differ) + "."
                    if differ else f"The phantom cohorts ({names}) share the same site effects: no site shift.")
        html += f"<p>{H.esc(sentence)}</p>"
    return html, sentence


def downstream_section(folders: list[Path], summary: H.Summary, sites: Sequence[tuple[str, dict]] = ()) -> str:
    """The downstream tables per results.json, and the site shift of the phantom cohorts ``sites``."""
    parts = ['<section id="downstream"><h2>Downstream classifier</h2>']
    if not folders:
        parts.append(H.not_run("Not run: no downstream folder (results.json) was given."))
    shift, sentence = site_shift(list(sites))
    if sentence:
        summary.say(sentence, "verdict-neutral", prio=0.5)
    for folder in folders:
        if len(folders) > 1:
            parts.append(f"<h3>{H.esc(folder.name)}</h3>")
        results = read_results(folder)
        try:
            body, figs = results_html(results, summary)
        except (KeyError, TypeError, ValueError) as exc:
            raise NeuroditError(f"missing or bad key {exc}", folder / "results.json") from exc
        figs += [H.img(p.read_bytes(), n, p.name, "half") for n, p in result_figures(folder).items()]
        parts.append(body + H.figs(figs))
        if (runs := folder / "runs.csv").is_file():
            try:
                df = pd.read_csv(runs)
            except (ValueError, pd.errors.ParserError) as exc:
                raise NeuroditError(f"cannot read runs table ({exc})", runs) from exc
            parts.append(H.details(f"All runs ({len(df)} rows of runs.csv)", H.table(
                list(map(str, df.columns)), df.head(200).itertuples(index=False), numeric_from=0)))
    return "".join(parts) + shift + "</section>"

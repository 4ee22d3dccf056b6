"""Figures of the downstream experiment: arms with 95% CIs, and ROC curves (matplotlib, PNG)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score, roc_curve

from neurodit.downstream.stats import PRETTY
from neurodit.io import atomic_write_bytes

TASK_TITLE = {"sex": "source: sex (test on real)", "diagnosis": "target: AD vs CN"}


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def plot_arms(results: dict, path: str | Path) -> Path:
    """Per task, mean and 95% CI of balanced accuracy and ROC-AUC per arm (every cohort's arms, named
    ``real+synthetic[name]``); each run is a dot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = [t for t in ("sex", "diagnosis") if any(a["task"] == t for a in results["arms"].values())]
    n_max = max(sum(a["task"] == t for a in results["arms"].values()) for t in tasks)
    # wider panels and slanted labels when several cohorts add arms (3 arms per task fit as they are)
    fig, axes = plt.subplots(1, len(tasks), figsize=(max(6.0, 1.6 * n_max) * len(tasks), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        arms = [name for name, a in results["arms"].items() if a["task"] == task]
        for j, (metric, colour) in enumerate((("balanced_accuracy", "tab:blue"), ("roc_auc", "tab:orange"))):
            for i, arm in enumerate(arms):
                s = results["arms"][arm]["metrics"][metric]
                x = i + (j - 0.5) * 0.3
                lo, hi = s["ci95"]
                ax.errorbar(x, s["mean"], yerr=[[s["mean"] - lo], [hi - s["mean"]]], fmt="o", color=colour,
                            capsize=4, label=PRETTY[metric] if i == 0 else None)
                vals = np.asarray(s["values"])
                ax.scatter(np.full(len(vals), x + 0.08), vals, s=8, color=colour, alpha=0.4)
        ax.axhline(0.5, color="grey", lw=0.8, ls="--")
        ax.set_xticks(range(len(arms)), [a.split("/", 1)[1] for a in arms],
                      **({"rotation": 20, "ha": "right"} if len(arms) > 3 else {}))
        ax.set_ylim(0.0, 1.0)
        ax.set_title(TASK_TITLE.get(task, task))
        ax.set_ylabel("mean and 95% CI over folds x seeds")
        ax.legend(loc="lower right", fontsize=8)
    return _save(fig, Path(path))


def plot_roc(preds: pd.DataFrame, path: str | Path) -> Path:
    """ROC curve per arm (every cohort's arms) of test predictions pooled over folds and seeds (AUC of the
    pool in the legend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = [t for t in ("sex", "diagnosis") if (preds["task"] == t).any()]
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 5), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        sub = preds[preds["task"] == task]
        for arm, g in sub.groupby("arm", sort=False):
            if g["label"].nunique() < 2:
                continue
            fpr, tpr, _ = roc_curve(g["label"], g["p_positive"])
            auc = roc_auc_score(g["label"], g["p_positive"])
            ax.plot(fpr, tpr, label=f"{arm.split('/', 1)[1]} (pooled AUC {auc:.2f})")
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.set_title(TASK_TITLE.get(task, task))
        ax.legend(loc="lower right", fontsize=8)
        ax.set_aspect("equal")
    return _save(fig, Path(path))


def plot_curves(results: dict, setting: str, path: str | Path) -> Path:
    """Learning curves of a sweep (``neurodit.downstream.sweep``): balanced accuracy and ROC-AUC against
    the number of real training participants, one line per cell family (augment: generator x synthetic
    multiple; transfer: backbone x mode) with its 95% CI band (Student-t over the fold x seed runs)."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = results[setting]["cells"]
    if setting == "augment":
        key, n_key, xlabel = (lambda c: "real only" if c["generator"] == "real"
                              else f"+{c['multiple']}x {c['generator']}"), "n_real", "real source participants"
        title = "sex classifier, synthetic volumes added (generator refitted per fraction)"
    else:
        key, n_key, xlabel = (lambda c: "scratch" if c["backbone"] == "scratch"
                              else f"{c['backbone']} {c['mode']}"), "n_target", "real target participants"
        title = "AD vs CN by backbone (probe: frozen backbone, linear head)"
    lines: dict[str, list[dict]] = {}
    for c in cells:
        lines.setdefault(key(c), []).append(c)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for ax, metric in zip(axes, ("balanced_accuracy", "roc_auc"), strict=True):
        for name, cs in lines.items():
            cs = sorted(cs, key=lambda c: c[n_key])
            x = np.array([c[n_key] for c in cs], float)
            m = np.array([c["metrics"][metric]["mean"] for c in cs], float)
            lo = np.array([c["metrics"][metric]["ci95"][0] for c in cs], float)
            hi = np.array([c["metrics"][metric]["ci95"][1] for c in cs], float)
            style = "k-o" if name in ("real only", "scratch") else "-o"
            line = ax.plot(x, m, style, label=name, ms=4, lw=1.5)[0]
            ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.12)
        ax.set_xscale("log")
        ax.set_xticks(sorted({c[n_key] for c in cells}))
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%.0f"))
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_xlabel(xlabel + " (log scale)")
        ax.set_ylabel(PRETTY[metric])
        ax.axhline(0.5, color="0.6", lw=0.8, ls=":")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="lower right")
    fig.suptitle(title, fontsize=10)
    return _save(fig, Path(path))

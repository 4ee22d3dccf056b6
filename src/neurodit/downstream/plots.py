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

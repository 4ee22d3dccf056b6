"""The one renderer of ``comparison.json`` (schema in :mod:`neurodit.compare.schema`): the table (rows for
the report's HTML, Markdown for ``comparison.md``) and the figure (``comparison.png``). The stage draws
them once; the report embeds what the stage wrote, so CMP_DIR and the report show the same thing.
"""

from __future__ import annotations

import numpy as np

from neurodit.formatting import fmt, signed
from neurodit.metrics.figures import plt, png_bytes

# (header, function of a row -> cell value); None cells print as "—"
COLUMNS = (
    ("generator", lambda r: r["label"]),
    ("budget", lambda r: r["budget"]),
    ("C2ST AUC voxel", lambda r: _auc(r, "voxel")),
    ("C2ST AUC texture", lambda r: _auc(r, "texture")),
    ("C2ST AUC cnn", lambda r: _auc(r, "cnn")),
    ("Fréchet / floor", lambda r: _frechet(r["quality"])),
    ("precision", lambda r: r["quality"]["precision"]),
    ("recall", lambda r: r["quality"]["recall"]),
    ("RBF MMD² (p)", lambda r: f"{fmt(r['quality']['mmd_rbf']['mmd2'], 3)} ({fmt(r['quality']['mmd_rbf']['p_value'], 2)})"),
    ("MS-SSIM syn-syn / real-real", lambda r: f"{r['diversity']['syn_syn']:.3f} / {r['diversity']['real_real']:.3f}"),
    ("memorization", lambda r: f"{r['memorization']['fraction_above']:.1%}"
     + (" flagged" if r["memorization"]["flagged"] else "")),
    ("downstream gain (95% CI)", lambda r: None if r["downstream"] is None else
     f"{signed(r['downstream']['gain'], 3)} ({signed(r['downstream']['ci95'][0], 3)} to "
     f"{signed(r['downstream']['ci95'][1], 3)})"),
    ("train s", lambda r: r["cost"]["train_seconds"]),
    ("sample s/vol", lambda r: r["cost"]["sample_seconds_per_volume"]),
    ("parameters", lambda r: r["cost"]["parameters"]),
    ("peak MB", lambda r: r["cost"]["peak_gpu_mb"] or r["cost"]["peak_rss_mb"]),
)


def _frechet(q: dict) -> str | None:
    """The Fréchet distance as a ratio to the real-vs-real floor; the raw figure, said so, without a floor."""
    if q.get("frechet_ratio") is not None:
        return f"{q['frechet_ratio']:.2f}x"
    return None if q.get("frechet") is None else f"{fmt(q['frechet'], 3)} (raw, no floor)"


def _auc(row: dict, view: str) -> str | None:
    r = row["quality"]["c2st"].get(view)
    return None if r is None else f"{r['auc']:.2f} (p {fmt(r['p_value'], 2)})"


def table_rows(data: dict) -> tuple[list[str], list[list]]:
    """(header, rows) of the comparison table, plus a real-vs-real floor row."""
    rows = [[fn(r) for _, fn in COLUMNS] for r in data["rows"]]
    fl = data["floor"]
    floor = ["real held-out vs real train (floor)", "—"]
    for view in ("voxel", "texture", "cnn"):
        v = (fl.get("c2st") or {}).get(view)
        floor.append(None if v is None else f"{v['auc']:.2f} (p {fmt(v['p_value'], 2)})")
    floor += [None if fl.get("frechet") is None else f"1x (= {fmt(fl['frechet'], 3)})", None, None,
              f"{fmt(fl['mmd_rbf']['mmd2'], 3)} ({fmt(fl['mmd_rbf']['p_value'], 2)})",
              f"— / {fl['msssim_real_real']:.3f}"] + [None] * (len(COLUMNS) - 10)
    return [h for h, _ in COLUMNS], rows + [floor]


def comparison_markdown(data: dict) -> str:
    """``comparison.md``: the summary sentence and the table."""
    header, rows = table_rows(data)

    def cell(v) -> str:
        return fmt(v, 3).replace("|", "\\|")

    lines = [f"# Generators compared ({data['n_real']} held-out, {data['n_train']} training subjects)", "",
             data["summary"], "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    lines += ["", "C2ST AUC 0.5 = a classifier cannot tell synthetic from real (judge by p); memorization = "
              "share of synthetic volumes closer to a training subject than most held-out subjects are; "
              "downstream gain = balanced accuracy of sex/real+synthetic minus sex/real on held-out "
              "participants. Budget says what each generator was trained with: an undertrained row is not "
              "a verdict on its method.", ""]
    return "\n".join(lines)


def comparison_figure(data: dict) -> bytes:
    """C2ST AUC per view (grouped bars, the real-vs-real AUC dashed per view, chance at 0.5) and the
    Fréchet distance per generator as a ratio to the train-vs-held-out floor (dashed at 1); the raw
    distances where there is no floor (the axis says which)."""
    rows = data["rows"]
    views = [v for v in ("voxel", "texture", "cnn") if any(v in r["quality"]["c2st"] for r in rows)]
    names = [r["label"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    ax = axes[0]
    width = 0.8 / max(1, len(views))
    x = np.arange(len(rows))
    floor_c2st = data["floor"].get("c2st") or {}
    for j, v in enumerate(views):
        vals = [r["quality"]["c2st"].get(v, {}).get("auc", np.nan) for r in rows]
        bars = ax.bar(x + (j - (len(views) - 1) / 2) * width, vals, width, label=v)
        if v in floor_c2st:
            ax.axhline(floor_c2st[v]["auc"], color=bars.patches[0].get_facecolor(), ls="--", lw=1)
    ax.axhline(0.5, color="grey", lw=0.8, ls=":")
    ax.set_xticks(x, names, rotation=20, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("C2ST AUC (0.5 = indistinguishable)")
    ax.set_title("classifier two-sample test (dashed: real vs real)")
    if views:
        ax.legend(fontsize=8)
    ax = axes[1]
    ratios = all(r["quality"].get("frechet_ratio") is not None for r in rows)
    key = "frechet_ratio" if ratios else "frechet"
    fr = [np.nan if r["quality"].get(key) is None else r["quality"][key] for r in rows]
    ax.bar(x, fr, 0.6, color="#7f8c8d")
    floor = 1.0 if ratios else data["floor"].get("frechet")
    if floor is not None:
        ax.axhline(floor, color="#c0392b", ls="--", lw=1, label="real train vs held-out")
        ax.legend(fontsize=8)
    ax.set_xticks(x, names, rotation=20, ha="right")
    ax.set_ylabel("Fréchet distance / real-vs-real floor" if ratios else "Fréchet distance (raw feature units)")
    ax.set_title("feature Fréchet distance (lower is better)")
    fig.tight_layout()
    return png_bytes(fig)


__all__ = ["COLUMNS", "comparison_figure", "comparison_markdown", "table_rows"]

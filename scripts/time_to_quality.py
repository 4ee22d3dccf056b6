"""Plot and tabulate what `scripts/time_to_quality.sh OUT` measured: the judge's figures of the demo
recipe against its training budget.

    python scripts/time_to_quality.py OUT FIGURE.png [--s-per-step S]

Reads OUT/run-<steps>/run.json and OUT/eval-<steps>/metrics.json through their owners' readers, prints a
markdown table (steps, training seconds as measured, C2ST AUC per view with p, Fréchet as a ratio to the
real-vs-real floor, recall, syn-syn vs real-real MS-SSIM, memorized fraction) and draws one figure.
``--s-per-step`` adds a column of training seconds at that speed (e.g. 0.47 s/step, the AVX2 machine's
fp32 step), since the measured seconds depend on what else the machine ran.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from neurodit.io import read_json  # noqa: E402
from neurodit.metrics.schema import read_metrics  # noqa: E402

VIEWS = ("voxel", "texture", "cnn")


def rows(out: Path) -> list[dict]:
    found = []
    for ev in out.glob("eval-*"):
        m = re.fullmatch(r"eval-(\d+)", ev.name)
        if not m or not (ev / "metrics.json").is_file():
            continue
        steps = int(m.group(1))
        met = read_metrics(ev)
        run = read_json(out / f"run-{steps}" / "run.json")
        c2st, feats, ms = met["c2st"]["views"], met["features"], met["msssim"]
        found.append({
            "steps": steps, "train_s": run.get("train_seconds"),
            **{f"auc_{v}": c2st[v]["auc"] for v in VIEWS}, **{f"p_{v}": c2st[v]["p_value"] for v in VIEWS},
            "frechet_ratio": feats["frechet"] / feats["floor"]["frechet"], "recall": feats["recall"],
            "syn_syn": ms["syn_syn"]["mean"], "real_real": ms["real_real"]["mean"],
            "memorized": met["memorization"]["fraction_above"]})
    return sorted(found, key=lambda r: r["steps"])


def table(found: list[dict], s_per_step: float | None) -> str:
    head = ["steps", "train s (measured)", *([f"train s at {s_per_step} s/step"] if s_per_step else []),
            "C2ST voxel / texture / CNN (p)", "Fréchet / floor", "recall", "MS-SSIM syn-syn (real-real)",
            "memorized"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in found:
        aucs = " / ".join(f"{r[f'auc_{v}']:.2f} ({r[f'p_{v}']:.2g})" for v in VIEWS)
        cells = [str(r["steps"]), f"{r['train_s']:.0f}" if r["train_s"] else "?",
                 *([f"{r['steps'] * s_per_step:.0f}"] if s_per_step else []), aucs, f"{r['frechet_ratio']:.1f}x",
                 f"{r['recall']:.2f}", f"{r['syn_syn']:.3f} ({r['real_real']:.3f})", f"{r['memorized']:.0%}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def figure(found: list[dict], path: Path) -> None:
    steps = [r["steps"] for r in found]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for v in VIEWS:
        axes[0].plot(steps, [r[f"auc_{v}"] for r in found], "o-", label=v)
    axes[0].axhline(0.5, color="grey", lw=0.8, ls=":")
    axes[0].set(title="C2ST AUC (0.5 = indistinguishable)", xlabel="training steps", ylim=(0.4, 1.02))
    axes[0].legend()
    axes[1].plot(steps, [r["frechet_ratio"] for r in found], "o-")
    axes[1].axhline(1.0, color="grey", lw=0.8, ls=":")
    axes[1].set(title="Fréchet / real-vs-real floor", xlabel="training steps", yscale="log")
    axes[2].plot(steps, [r["syn_syn"] for r in found], "o-", label="syn-syn")
    axes[2].axhline(found[0]["real_real"], color="grey", lw=0.8, ls=":", label="real-real")
    axes[2].set(title="MS-SSIM (diversity)", xlabel="training steps")
    axes[2].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("figure", type=Path)
    ap.add_argument("--s-per-step", type=float, default=None)
    args = ap.parse_args()
    found = rows(args.out)
    print(table(found, args.s_per_step))
    figure(found, args.figure)


if __name__ == "__main__":
    main()

"""The table (``ablation.md``) and the figure (``ablation.png``) of an ABL_DIR's ``ablation.json``
(schema: :mod:`neurodit.ablation.schema`)."""

from __future__ import annotations

from neurodit.ablation.schema import STARTS, VIEWS


def _ci(x: float | None, ci: list | None, digits: int = 2) -> str:
    if x is None:
        return "—"
    return f"{x:.{digits}f}" + (f" ({ci[0]:.{digits}f}–{ci[1]:.{digits}f})" if ci and None not in ci else "")


def _num(x: float | None) -> str:
    return "—" if x is None else f"{x:.3f}"


def _ratio(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}x"


def ablation_markdown(data: dict) -> str:
    """The table (one row per start and budget, seed-averaged), the real floor and the verdicts."""
    head = ("| start | finetune steps | C2ST AUC voxel (95% CI) | texture | CNN | Fréchet / floor | "
            "MS-SSIM syn-syn / real-real | memorization | sex gain real+syn (95% CI) | train loss, last ¼ |")
    lines = [head, "|" + "---|" * 10]
    for e in data["table"]:
        lines.append(f"| {e['start']} | {e['steps']} | {_ci(e['auc_voxel'], e['auc_voxel_ci95'])} | "
                     f"{_ci(e['auc_texture'], e['auc_texture_ci95'])} | {_ci(e['auc_cnn'], e['auc_cnn_ci95'])} | "
                     f"{_ratio(e['frechet_ratio'])} | "
                     f"{e['msssim_syn_syn']:.3f} / {e['msssim_real_real']:.3f} | {e['memorization']:.0%} | "
                     f"{_ci(e['gain'], e['gain_ci95'], 3)} | {_num(e.get('loss_end'))} |")
    fl = data["floor"].get("c2st") or {}
    lines.append("| real held-out vs real train (floor) | — | "
                 + " | ".join(_ci(fl[v]["auc"], fl[v].get("auc_ci95")) if v in fl else "—" for v in VIEWS)
                 + " | 1x | — | — | — | — |")
    pre = data["starts"]
    lines += ["", "Starts: " + "; ".join(f"{k}: {v['steps']} steps, {v['train_seconds']:.0f} s, final loss "
                                        f"{v['final_loss']:.3f}" for k, v in pre.items() if v.get("steps")) + ".",
              "", "Verdicts (rule: " + " ".join(data["rule"].split()) + "):", ""]
    lines += [f"- {v}" for v in data["verdicts"]]
    return "\n".join(lines) + "\n"


def ablation_figure(data: dict) -> bytes:
    """Quality against finetuning steps, one line per start: the three C2ST views (AUC, 95 % CI), Fréchet /
    floor, diversity (syn-syn MS-SSIM, the real-real level dashed), the downstream sex gain (95 % CI) and the
    finetune's training loss over its last quarter of steps."""
    from matplotlib.ticker import ScalarFormatter

    from neurodit.metrics.figures import plt, png_bytes

    fig, axes = plt.subplots(2, 4, figsize=(17, 7.5))
    colors = {"scratch": "#555555", "natural": "#1f77b4", "adni": "#d62728"}
    panels = [("auc_voxel", "C2ST AUC, voxel view"), ("auc_texture", "C2ST AUC, texture view"),
              ("auc_cnn", "C2ST AUC, CNN view"), ("frechet_ratio", "Fréchet / real floor (floor = 1)"),
              ("msssim_syn_syn", "MS-SSIM syn-syn (diversity)"), ("gain", "downstream sex gain, real+syn"),
              ("loss_end", "training loss, last quarter")]
    axes.flat[-1].axis("off")
    for ax, (key, title) in zip(axes.flat, panels, strict=False):
        for k, start in enumerate(STARTS):
            es = [e for e in data["table"] if e["start"] == start and e.get(key) is not None]
            if not es:
                continue
            x = [e["steps"] * (1 + 0.03 * (k - 1)) for e in es]  # small offset: the CIs stay readable
            y = [e[key] for e in es]
            ci = [e.get(f"{key}_ci95") for e in es]
            if all(c and None not in c for c in ci):
                err = [[yy - c[0] for yy, c in zip(y, ci, strict=True)], [c[1] - yy for yy, c in zip(y, ci, strict=True)]]
                ax.errorbar(x, y, yerr=err, marker="o", capsize=3, color=colors[start], label=start)
            else:
                ax.plot(x, y, marker="o", color=colors[start], label=start)
            seeds = [e.get(f"{key}_seeds") or [] for e in es]  # no CI: every seed's value as a small dot
            if any(len(v) > 1 for v in seeds):
                for xx, vals in zip(x, seeds, strict=True):
                    ax.plot([xx] * len(vals), [v for v in vals if v is not None], ".", color=colors[start], ms=4)
        if key.startswith("auc"):
            fl = (data["floor"].get("c2st") or {}).get(key.removeprefix("auc_"))
            ax.axhline(0.5, color="k", lw=0.6, ls=":")
            if fl:
                ax.axhline(fl["auc"], color="green", lw=0.8, ls="--", label="real vs real")
        if key == "msssim_syn_syn":
            ax.axhline(data["table"][0]["msssim_real_real"], color="green", lw=0.8, ls="--", label="real-real")
        if key in ("frechet_ratio", "loss_end"):
            ax.set_ylabel("lines: seed mean; dots: each seed", fontsize=8)
        if key == "gain":
            ax.axhline(0.0, color="k", lw=0.6, ls=":")
        ax.set_xscale("log")
        ax.set_xticks(sorted({e["steps"] for e in data["table"]}))
        ax.get_xaxis().set_major_formatter(ScalarFormatter())
        ax.minorticks_off()
        ax.set_xlabel("finetuning steps")
        ax.set_title(title, fontsize=10)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    cfg = data["config"]
    natural = cfg.get("natural_init") or f"{cfg['images']}, {cfg['pretrain_steps']} steps"
    fig.suptitle(f"Pretraining ablation: finetune from scratch vs natural images ({natural}) vs another brain "
                 f"cohort (adni-like, {cfg['pretrain_steps']} steps); seeds {cfg['seeds']}", fontsize=10)
    fig.tight_layout()
    return png_bytes(fig)


__all__ = ["ablation_figure", "ablation_markdown"]

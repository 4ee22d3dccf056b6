"""The "Does pretraining help?" section: an ABL_DIR of ``neurodit demo --ablation pretraining``
(``ablation.json`` read by :func:`neurodit.ablation.read_ablation`, its own ``ablation.png`` and table)."""

from __future__ import annotations

from pathlib import Path

from neurodit.ablation.schema import FIGURE, read_ablation
from neurodit.report import html as H


def _ci(x: float | None, ci: list | None, digits: int = 2) -> str:
    if x is None:
        return "—"
    return f"{x:.{digits}f}" + (f" ({ci[0]:.{digits}f} to {ci[1]:.{digits}f})" if ci and None not in ci else "")


def ablation_html(data: dict, summary: H.Summary) -> str:
    """The verdict lines (also into the summary box), then the table of every start x budget."""
    for line in data["verdicts"]:
        summary.say(f"Pretraining: {line.split(' (AUC')[0]}", prio=0.2)
    rows = [[e["start"], e["steps"], _ci(e["auc_voxel"], e["auc_voxel_ci95"]),
             _ci(e["auc_texture"], e["auc_texture_ci95"]), _ci(e["auc_cnn"], e["auc_cnn_ci95"]),
             None if e["frechet_ratio"] is None else f"{e['frechet_ratio']:.2f}x",
             f"{e['msssim_syn_syn']:.3f} / {e['msssim_real_real']:.3f}", _ci(e["gain"], e["gain_ci95"], 3)]
            for e in data["table"]]
    return ("<ul>" + "".join(f'<li><span class="{H.verdict_class(v)}">{H.esc(v)}</span></li>'
                             for v in data["verdicts"]) + "</ul>"
            + H.table(["start", "finetune steps", "C2ST AUC voxel (95% CI)", "texture", "CNN", "Fréchet / floor",
                       "MS-SSIM syn-syn / real-real", "sex gain real+syn (95% CI)"], rows, numeric_from=99)
            + f"<p>{H.esc('Rule: ' + ' '.join(data['rule'].split()))}</p>")


def ablation_section(folders: list[Path], summary: H.Summary) -> str:
    """One block per ablation folder; empty when none was given (the demo runs none)."""
    def render(folder: Path) -> str:
        data = read_ablation(folder)
        with H.bad_keys(folder / "ablation.json"):
            body = ablation_html(data, summary)
        fig = folder / FIGURE
        figs = [H.img(fig.read_bytes(), "pretraining ablation", "Quality against finetuning steps per start "
                      "(95% CIs); dashed green: the real-vs-real level.")] if fig.is_file() else []
        return H.figs(figs) + body

    return H.folder_section("ablation", "Does pretraining help? (ablation)", folders, render)


__all__ = ["ablation_section"]

"""The "Several maps" section: a multi-map EVAL_DIR (``joint.json`` of schema ``neurodit.joint/1``).

The schema is the module docstring of :mod:`neurodit.metrics.joint`; the file is read by
:func:`neurodit.metrics.joint.read_joint`. Shown: the joint verdict, the per-map judge's headline numbers
(each map's own EVAL_DIR is under the folder), the joint MD-FA view and its figure, each map's mosaics.
"""

from __future__ import annotations

from pathlib import Path

from neurodit.metrics.joint import read_joint
from neurodit.report import html as H


def _fmt(v, spec: str = ".2f") -> str:
    return "n/a" if v is None else format(v, spec)


def maps_html(data: dict) -> str:
    """The verdict, the per-map table and the per-pair table of one joint.json."""
    views = sorted({v for h in data["headline"].values() for v in h["c2st"]})
    rows = [[m.upper(), *(_fmt(h["c2st"].get(v)) for v in views), _fmt(h["frechet_ratio"], ".1f"),
             _fmt(h["syn_syn"], ".3f"), _fmt(h["real_real"], ".3f"), _fmt(h["memorization_fraction"], ".0%")]
            for m, h in data["headline"].items()]
    per_map = H.table(["map", *(f"C2ST {v}" for v in views), "Fréchet / floor", "syn-syn MS-SSIM",
                       "real-real MS-SSIM", "memorized"], rows, numeric_from=99)
    pair_rows = []
    for key, p in data["pairs"].items():
        c = p["corr"]
        pair_rows.append([" vs ".join(k.upper() for k in key.split("~")),
                          f"{c['real']['mean']:+.2f} ({c['real']['ci95'][0]:+.2f} to {c['real']['ci95'][1]:+.2f})",
                          f"{c['synthetic']['mean']:+.2f} ({c['synthetic']['ci95'][0]:+.2f} to "
                          f"{c['synthetic']['ci95'][1]:+.2f})",
                          f"{c['diff']['mean']:+.2f} ({c['diff']['ci95'][0]:+.2f} to {c['diff']['ci95'][1]:+.2f})",
                          f"{p['joint_tv']:.3f}", f"{p['floor']:.3f}", f"{p['tv_ratio']:.1f}x"])
    joint = H.table(["maps", "rank correlation, real", "synthetic", "difference", "joint-histogram distance",
                     "real floor", "ratio"], pair_rows, numeric_from=99) if pair_rows else ""
    note = ("Each map is judged on its own by the same judge (a map other than MD on MD's scale; tissue classes "
            "and morphometry are MD's and skipped for the others). The joint view asks whether a synthetic "
            "subject's maps keep the voxel-wise relation of real ones: per-subject rank correlation with 95% "
            "bootstrap CIs, and the total-variation distance between the joint histograms beside the same "
            f"distance between two real sets ({next(iter(data['pairs'].values()))['floor_sets'] if data['pairs'] else 'n/a'}).")
    return (f'<p class="{H.verdict_class(data["verdict"])}">{H.esc(data["verdict"])}</p><p>{H.esc(note)}</p>'
            + per_map + joint)


def maps_section(folders: list[Path], summary: H.Summary) -> str:
    """One block per multi-map EVAL_DIR; empty string when none was given (the section is optional)."""
    def render(folder: Path) -> str:
        data = read_joint(folder)
        with H.bad_keys(folder / "joint.json"):
            body = maps_html(data)
        summary.say(f"Several maps ({', '.join(m.upper() for m in data['maps'])}, {folder.name}): "
                    f"{data['verdict']}", "verdict-neutral", prio=1.5)
        figs = []
        if (folder / "joint.png").is_file():
            figs.append(H.img((folder / "joint.png").read_bytes(), "joint view",
                              f"{folder.name}/joint.png: voxel-wise joint histograms, real and synthetic, and the "
                              "per-subject rank correlations."))
        for m in data["maps"]:
            f = folder / m / "mosaics.png"
            if f.is_file():
                figs.append(H.img(f.read_bytes(), f"{m} mosaics", f"{folder.name}/{m}/mosaics.png: real and synthetic "
                                  f"{m.upper()} mosaics."))
        return body + H.figs(figs)

    return H.folder_section("maps", "Several maps", folders, render)


__all__ = ["maps_html", "maps_section"]

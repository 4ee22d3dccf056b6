"""The "Class effect vs guidance" section: ``effect.json`` of schema ``neurodit.effect/1``.

The schema is the module docstring of :mod:`neurodit.downstream.effect`; the file is read by
:func:`neurodit.downstream.effect.read_effect` (which rejects any other schema). Shown beside the
downstream arms: it says whether the synthetic sets carry a larger sex difference than real data.
"""

from __future__ import annotations

from pathlib import Path

from neurodit.downstream.effect import effect_figure, read_effect
from neurodit.report import html as H


def _ci(c: dict | None) -> str:
    if c is None:
        return "n/a"
    return f"{c['value']:.3f} ({c['ci95'][0]:.3f} to {c['ci95'][1]:.3f})"


def effect_html(data: dict) -> str:
    """The table of one effect.json: real, then each guidance."""
    def row(name: str, item: dict, ratio: dict | None) -> list:
        e, m = item["effect"], item["margin"]
        return [name, "/".join(map(str, e["n_per_class"])), _ci(e["diff_rms"]), f"{e['diff_rms_noise']:.3f}",
                _ci(e["diff_rms_excess"]), _ci(ratio), _ci(e["mean_abs_d"]), f"{e['mean_abs_d_null']:.3f}",
                _ci(e["d_rms_excess"]), _ci(m["margin"]), _ci(m["balanced_accuracy"])]

    rows = [row("real (margin: held-out part)", data["real"], None)]
    rows += [row(f"guidance {s['guidance']:g}", s, s["ratio"]["diff_rms_excess"]) for s in data["synthetic"]]
    inp, clf = data["inputs"], data.get("classifier", {})
    note = (f"Generator {inp['generator']}{'' if inp['guidance_applies'] else ' (ignores guidance)'}, "
            f"{inp['n']} volumes per guidance, {inp['steps']} steps, mask of {inp['mask_voxels']} voxels. "
            f"Classifier {clf.get('arch')} trained on {clf.get('trained_on')}. Values with 95% bootstrap CIs; "
            "'noise' and 'null' are what sampling noise alone gives at that set's size: compare sets on the "
            "excess over them.")
    return (f'<p class="{H.verdict_class(data["verdict"])}">{H.esc(data["verdict"])}</p><p>{H.esc(note)}</p>'
            + H.table(["set", "F/M", "difference-map RMS", "noise", "RMS above noise", "ratio to real",
                       "mean |d|", "null", "d RMS above noise", "classifier margin", "balanced accuracy"],
                      rows, numeric_from=99))


def effect_section(folders: list[Path], summary: H.Summary) -> str:
    """One block per effect folder; empty string when none was given (the section is optional)."""
    def render(folder: Path) -> str:
        data = read_effect(folder)
        with H.bad_keys(folder / "effect.json"):
            body = effect_html(data)
        summary.say(f"Sex effect vs guidance ({folder.name}): {data['verdict'].split('. ')[0]}.",
                    "verdict-neutral", prio=0.2)
        fig = effect_figure(folder)
        figs = [H.img(fig.read_bytes(), "effect vs guidance", f"{folder.name}/{fig.name}: each measure vs guidance "
                      "(95% CI); green band: real.")] if fig else []
        return body + H.figs(figs)

    return H.folder_section("effect", "Class effect vs guidance", folders, render)

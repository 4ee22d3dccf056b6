"""``build_report(dirs, out_html)``: one self-contained HTML page from the folders the stages write.

Sections: summary of verdicts; real vs synthetic mosaics per class with an mm²/s colour bar, a
3-plane view of one synthetic volume and MD histograms (:mod:`neurodit.report.volumes`); one block
per metric family of metrics.json (:mod:`neurodit.report.evaluation`, the judge's families in
:mod:`neurodit.report.judge`); the downstream tables and plots and the site shift of the phantom
cohorts (:mod:`neurodit.report.downstream`); the class effect vs guidance beside them
(:mod:`neurodit.report.effect`); the training loss curve; the resolved configs and
versions. A section whose stage output was not given says "not run". The report renders saved
artifacts only: every value shown is read from a stage's files through its owner's reader, or
computed here from the volumes (histograms, mosaics).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from neurodit import __version__
from neurodit.data.phantom_info import read_phantom_info
from neurodit.errors import NeuroditError
from neurodit.io import atomic_write_text, read_json
from neurodit.metrics.schema import read_metrics
from neurodit.report import figures as F
from neurodit.report import html as H
from neurodit.report.ablation import ablation_section
from neurodit.report.compare import compare_section
from neurodit.report.discover import Found, detect_kind, discover
from neurodit.report.downstream import downstream_section
from neurodit.report.effect import effect_section
from neurodit.report.evaluation import eval_sections
from neurodit.report.maps import maps_section
from neurodit.report.sweep import sweep_section
from neurodit.report.volumes import images_section

CONFIG_FILES = ("run.json", "train_config.yaml", "labels.json", "preset.json", "tiling.json", "prepare.json")
NAV = [("summary", "Summary"), ("images", "Volumes"), ("judge", "Judge"), ("similarity", "MS-SSIM / MMD"),
       ("memorization", "Memorization"), ("maps", "Maps"), ("downstream", "Downstream"), ("effect", "Effect"),
       ("sweep", "Sweep"), ("ablation", "Ablation"), ("compare", "Compared"), ("training", "Training"),
       ("provenance", "Configs")]


def training_sources(by_kind: dict[str, list[Found]]) -> set[Path]:
    """Real cohort folders named by training runs (prepare.json ``source``) and evaluations
    (metrics.json ``inputs.real``)."""
    out = {Path(read_json(f.path / "prepare.json")["source"]).resolve()
           for f in by_kind.get("train", []) if (f.path / "prepare.json").is_file()}
    for f in by_kind.get("eval", []):
        if "inputs" in (metrics := read_metrics(f.path)):
            out.add(Path(metrics["inputs"]["real"]).resolve())
    return out


def phantom_sites(by_kind: dict[str, list[Found]]) -> list[tuple[str, dict]]:
    """(folder name, phantom.json) of the real phantom cohorts that carry a ``site``, one per distinct
    site (a split of a phantom cohort that copied its phantom.json is not listed twice)."""
    out, seen = [], set()
    for f in by_kind.get("real", []):
        info = read_phantom_info(f.path)
        if info and isinstance(info.get("site"), dict):
            key = json.dumps([info.get("cohort"), info["site"]], sort_keys=True)
            if key not in seen:
                seen.add(key)
                out.append((f.name, info))
    return out


def training_section(trains: list[Found], summary: H.Summary) -> str:
    parts = ['<section id="training"><h2>Training</h2>']
    if not trains:
        parts.append(H.not_run("Not run: no training run folder (loss.csv) was given."))
    for t in trains:
        if len(trains) > 1:
            parts.append(f"<h3>{H.esc(t.name)}</h3>")
        figs = []
        if (lf := t.path / "loss.csv").is_file():
            try:
                df = pd.read_csv(lf)
            except (ValueError, pd.errors.ParserError) as exc:
                raise NeuroditError(f"cannot read loss table ({exc})", lf) from exc
            if not {"step", "loss"} <= set(df.columns):
                raise NeuroditError(f"needs columns step and loss, has {', '.join(df.columns)}", lf)
            df = df[np.isfinite(df["loss"])]
            if len(df):
                steps, loss = df["step"].to_numpy(), df["loss"].to_numpy(dtype=float)
                tail = float(loss[-max(1, len(loss) // 10):].mean())
                figs.append(H.img(F.loss_figure(steps, loss), "training loss curve", f"{t.name}: {len(df)} logged steps."))
                parts.append(H.table(["steps logged", "last step", "first loss", "mean loss, last 10%"],
                                     [[len(df), int(steps[-1]), float(loss[0]), tail]], numeric_from=0))
                summary.say(f"Training {t.name}: {int(steps[-1])} steps, loss {H.fmt(float(loss[0]), 3)} → "
                            f"{H.fmt(tail, 3)} (mean of the last 10%).", "verdict-neutral")
        else:
            parts.append(H.not_run(f"{t.name}: no loss.csv."))
        # train writes samples/preview.png and samples/real.png
        figs += [H.img(p.read_bytes(), p.stem, f"preview sample {p.name}", "half")
                 for p in (t.path / "samples" / n for n in ("preview.png", "real.png")) if p.is_file()]
        parts.append(H.figs(figs))
    return "".join(parts) + "</section>"


def _json_block(path: Path, label: str | None = None) -> tuple[str, object]:
    """(collapsible block titled ``label`` or the file name, parsed data) of a JSON file, pretty-printed."""
    data = read_json(path)
    return H.details(label or path.name, H.pre(json.dumps(data, indent=2))), data


def provenance_section(found: list[Found], roots: list[Path]) -> str:
    parts = ['<section id="provenance"><h2>Configs and versions</h2>',
             H.table(["kind", "folder"], [[f.kind, str(f.path)] for f in found], numeric_from=99)]
    for root in roots:  # demo roots: demo.json has each stage's seconds and the command that re-runs it
        if (root / "demo.json").is_file():
            block, info = _json_block(root / "demo.json")
            timings, commands = info.get("timings_s", {}), info.get("commands", {})
            body = "".join(f'<tr><td>{H.esc(k)}</td><td class="num">{H.esc(H.fmt(timings.get(k)))}</td>'
                           f"<td><code>{H.esc(commands.get(k, ''))}</code></td></tr>"
                           for k in dict.fromkeys([*timings, *commands]))
            parts.append(f"<h3>demo: {H.esc(root.name)}</h3><table><thead><tr><th>stage</th><th>seconds</th>"
                         f"<th>re-run with</th></tr></thead><tbody>{body}</tbody></table>" + block)
        if (root / "run.json").is_file():
            parts.append(_json_block(root / "run.json", f"{root.name}/run.json")[0])
    versions = None
    for f in found:
        blocks = []
        for p in (f.path / n for n in CONFIG_FILES):
            if p.suffix == ".json" and p.is_file():
                block, data = _json_block(p)
                if p.name == "run.json" and versions is None:
                    versions = data["versions"]
                blocks.append(block)
            elif p.is_file():
                blocks.append(H.details(p.name, H.pre(p.read_text(errors="replace"))))
        if blocks:
            parts.append(f"<h3>{H.esc(f.kind)}: {H.esc(f.name)}</h3>" + "".join(blocks))
    if versions:
        parts.append("<h3>Versions (from the first run.json)</h3>"
                     + H.table(["package", "version"], sorted(versions.items()), numeric_from=99))
    return "".join(parts) + "</section>"


def build_report(dirs: list[str | Path], out_html: str | Path, title: str = "neurodit report") -> Path:
    """Write one self-contained HTML report (images embedded as base64 PNG) from stage output folders.

    Args:
        dirs: training run, cohort (real or synthetic), prepared, evaluation and downstream folders,
            or a demo root holding such folders one level down; kinds are detected from their files.
        out_html: the page to write (atomically: a failed build leaves no partial file).
        title: page title.
    Returns: ``out_html`` as a Path.
    Raises: NeuroditError for a missing folder, a folder with no stage output, or an unreadable file.
    """
    if not dirs:
        raise NeuroditError("give at least one folder to report on")
    found = discover(list(dirs))
    roots = [Path(d) for d in dirs if detect_kind(d) is None]
    by_kind: dict[str, list[Found]] = {}
    for f in found:
        by_kind.setdefault(f.kind, []).append(f)
    summary = H.Summary()
    sections = [images_section(by_kind, training_sources(by_kind), summary),
                eval_sections([f.path for f in by_kind.get("eval", [])], summary),
                maps_section([f.path for f in by_kind.get("maps", [])], summary),
                downstream_section([f.path for f in by_kind.get("downstream", [])], summary, phantom_sites(by_kind)),
                effect_section([f.path for f in by_kind.get("effect", [])], summary),
                sweep_section([f.path for f in by_kind.get("sweep", [])], summary),
                ablation_section([f.path for f in by_kind.get("ablation", [])], summary),
                compare_section([f.path for f in by_kind.get("compare", [])], summary),
                training_section(by_kind.get("train", []), summary), provenance_section(found, roots)]
    kinds = ", ".join(f"{len(v)} {k}" for k, v in by_kind.items())
    subtitle = f"{kinds} · generated {time.strftime('%Y-%m-%d %H:%M')} · neurodit {__version__}"
    nav = [x for x in NAV if x[0] not in ("compare", "effect", "sweep", "maps", "ablation") or by_kind.get(x[0])]
    return atomic_write_text(out_html, H.page(title, subtitle, nav, summary.html_items(), [s for s in sections if s]))


__all__ = ["build_report"]

"""``build_report(dirs, out_html)``: one self-contained HTML page from the folders the stages write.

Sections (issue 6): summary of verdicts; real vs synthetic mosaics per class with an mm²/s colour bar,
a 3-plane view of one synthetic volume and MD histograms; MS-SSIM / MMD with the real-vs-real floor;
the memorization audit; the downstream table and plot with 95% CIs; the training loss curve; the
resolved configs and versions. A section whose stage output was not given says "not run"; the
report never invents a number: every value shown is read from a stage's files or computed here from
the volumes (histograms, mosaics).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from neurodit import __version__
from neurodit.errors import NeuroditError
from neurodit.io import atomic_write_text, read_json
from neurodit.report import figures as F
from neurodit.report import html as H
from neurodit.report.discover import Found, detect_kind, discover

MAX_HIST_VOLUMES = 24  # per class and source: enough for a smooth histogram, cheap to load
LABEL_GUESSES = ("sex", "diagnosis")


# --------------------------------------------------------------------------- volume sources
@dataclass
class VolumeSet:
    """Real or synthetic volumes of one folder, loaded lazily (mm²/s, RAS, (D, H, W))."""

    name: str
    path: Path
    kind: str  # "real" | "synthetic" | "prepared"
    table: pd.DataFrame
    _loader: Any = field(repr=False, default=None)

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return self._loader(i)

    def indices_of(self, column: str, value: str) -> list[int]:
        if column not in self.table.columns:
            return []
        return [i for i, v in enumerate(self.table[column].astype(str)) if v == value]


def _cohort_set(found: Found) -> VolumeSet:
    table = F.cohort_table(found.path)

    def load(i: int) -> tuple[np.ndarray, np.ndarray]:
        path = table["path"].iloc[i]
        if path is None:
            raise NeuroditError(f"no NIfTI file for {table['participant_id'].iloc[i]}",
                                found.path / "participants.tsv")
        return F.load_md(path)

    return VolumeSet(found.name, found.path, found.kind, table, load)


def _prepared_set(found: Found) -> VolumeSet:
    """A PREP_DIR: ``volumes.npy`` (N, D, H, W) in model range -> mm²/s via prepare.json's normalization."""
    meta = read_json(found.path / "prepare.json")
    table = pd.read_csv(found.path / "participants.tsv", sep="\t", dtype=str)
    vols = np.load(found.path / "volumes.npy", mmap_mode="r")
    mask_file = found.path / "mask.npy"
    mask = np.load(mask_file) if mask_file.is_file() else None
    norm = meta.get("normalization", {})
    vmin, vmax = float(norm.get("vmin", 0.0)), float(norm.get("vmax", 4.0e-3))
    affine = np.asarray(meta.get("grid", {}).get("affine", np.eye(4)), dtype=float)
    zooms = np.linalg.norm(affine[:3, :3], axis=0)

    def load(i: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.asarray(vols[i], dtype=np.float32)
        x = (y + 1.0) / 2.0 * (vmax - vmin) + vmin  # Normalization.to_physical, mm²/s
        if mask is not None:
            x = np.where(mask, x, 0.0).astype(np.float32)
        return x, zooms

    return VolumeSet(found.name, found.path, "prepared", table, load)


def _classes(vs: VolumeSet, column: str) -> list[str]:
    if column not in vs.table.columns:
        return []
    return sorted(vs.table[column].dropna().astype(str).unique().tolist())


def _label_info(trains: list[Found]) -> tuple[str | None, list[str]]:
    """Label column and class names (index order) from a training run's ``labels.json``.

    ``neurodit.train`` writes ``{"label", "columns", "classes", "null_class", ...}``; a combined label
    (``sex*age_bin``, classes ``"F|<50"``) is shown by its first real table column (``sex``), with the
    classes then read from the tables.
    """
    for t in trains:
        f = t.path / "labels.json"
        if not f.is_file():
            continue
        data = read_json(f)
        if not isinstance(data, dict):
            continue
        columns = data.get("columns") if isinstance(data.get("columns"), list) else []
        label = data.get("label", data.get("column"))
        if not columns and isinstance(label, str):
            columns = [label]
        classes = data.get("classes") if isinstance(data.get("classes"), list) else []
        if len(columns) == 1:
            return str(columns[0]), [str(c) for c in classes]
        for col in columns:
            if col != "age_bin":
                return str(col), []
    return None, []


# --------------------------------------------------------------------------- JSON walking
def _walk(obj: Any, path: tuple[str, ...] = ()):
    """Yield (path, value) for every node of a JSON tree; keys starting with '_' are private."""
    yield path, obj
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not str(k).startswith("_"):
                yield from _walk(v, (*path, str(k)))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _walk(v, (*path, str(i)))


def _num(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return float(x)


def _ci(d: dict) -> tuple[float | None, float | None]:
    for key in ("ci95", "ci", "ci_95"):
        ci = d.get(key)
        if isinstance(ci, (list, tuple)) and len(ci) == 2:
            return _num(ci[0]), _num(ci[1])
    return _num(d.get("ci_low", d.get("lo"))), _num(d.get("ci_high", d.get("hi")))


def _name(path: tuple[str, ...]) -> str:
    return " / ".join(p.replace("_", " ") for p in path) or "(top level)"


def _scalar_rows(obj: Any, skip: tuple[str, ...] = ()) -> list[tuple[str, Any]]:
    """Every scalar leaf as (dotted name, value); short numeric lists are shown inline, the items of
    longer lists (profiles, per-run values, lists of records) are left to the dedicated tables."""
    rows = []
    for path, v in _walk(obj):
        if any(p in skip or p.isdigit() for p in path):  # p.isdigit(): inside a list
            continue
        if isinstance(v, (str, int, float, bool)) or v is None:
            if path:
                rows.append((".".join(path), v))
        elif isinstance(v, list) and 0 < len(v) <= 4 and all(_num(x) is not None for x in v):
            rows.append((".".join(path), "[" + ", ".join(H.fmt(float(x)) for x in v) + "]"))
    return rows


def _mean_ci_rows(obj: Any) -> list[tuple[tuple[str, ...], dict]]:
    """Every dict with a numeric ``mean`` (a summary with CI), keyed by its path."""
    return [(p, v) for p, v in _walk(obj) if isinstance(v, dict) and _num(v.get("mean")) is not None]


def _verdict_strings(obj: Any) -> list[str]:
    """Strings stored under keys naming a verdict/sentence/summary (the stages' plain-words results)."""
    out = []
    for path, v in _walk(obj):
        if isinstance(v, str) and path and any(w in path[-1].lower() for w in ("verdict", "sentence",
                                                                                "summary", "conclusion")):
            out.append(v)
        elif (isinstance(v, list) and len(v) == 2 and all(isinstance(x, str) for x in v) and path
              and "verdict" in path[-1].lower()):
            out.append(v[1])  # (outcome, sentence) pairs from downstream.stats.verdict
    return list(dict.fromkeys(out))


def plain_difference(subject: str, diff: float, lo: float, hi: float, metric: str = "balanced accuracy") -> str:
    """Compose a verdict from a paired difference and its 95% CI (used when no sentence was stored)."""
    if lo > 0:
        head = f"{subject} helped"
    elif hi < 0:
        head = f"{subject} hurt"
    else:
        head = f"{subject} did not help"
    return f"{head}: {H.signed(diff)} {metric}, 95% CI {H.signed(lo)} to {H.signed(hi)}"


# --------------------------------------------------------------------------- sections
class Report:
    def __init__(self, found: list[Found], roots: list[Path] | None = None):
        self.found = found
        self.roots = roots or []  # demo roots: folders whose subfolders hold the stage outputs
        self.summary: list[tuple[int, str]] = []  # (priority, HTML): downstream first, training last
        self.by_kind: dict[str, list[Found]] = {}
        for f in found:
            self.by_kind.setdefault(f.kind, []).append(f)

    def of(self, kind: str) -> list[Found]:
        return self.by_kind.get(kind, [])

    def say(self, text: str, cls: str | None = None, prio: int = 5) -> None:
        """Add a plain-words line to the summary box (escaped; coloured by ``cls`` or its words)."""
        klass = cls or H.verdict_class(text)
        self.summary.append((prio, f'<span class="{klass}">{H.esc(text)}</span>'))

    def _training_sources(self) -> set[Path]:
        """Real cohort folders named by training runs (prepare.json "source") and evals (inputs.real)."""
        out: set[Path] = set()
        for f in self.of("train"):
            meta = f.path / "prepare.json"
            if meta.is_file() and isinstance(src := read_json(meta).get("source"), str):
                out.add(Path(src).resolve())
        for f in self.of("eval"):
            inputs = read_json(f.path / "metrics.json")
            inputs = inputs.get("inputs") if isinstance(inputs, dict) else None
            if isinstance(inputs, dict) and isinstance(inputs.get("real"), str):
                out.add(Path(inputs["real"]).resolve())
        return out

    @staticmethod
    def _prep_source(vs: VolumeSet) -> Path | None:
        meta = vs.path / "prepare.json"
        if vs.kind == "prepared" and meta.is_file() and isinstance(src := read_json(meta).get("source"), str):
            return Path(src).resolve()
        return None

    # ----------------------------------------------------------------- images
    def images_section(self) -> str:
        head = '<section id="images"><h2>Real vs synthetic volumes</h2>'
        syn_sets = [_cohort_set(f) for f in self.of("synthetic")]
        real_sets = [_prepared_set(f) for f in self.of("prepared")] + [_cohort_set(f) for f in self.of("real")]
        if not syn_sets and not real_sets:
            return head + H.not_run("Not run: no cohort, prepared or synthetic folder was given.") + "</section>"
        column, class_order = _label_info(self.of("train"))
        ref = syn_sets[0] if syn_sets else real_sets[0]
        if column is None or column not in ref.table.columns:
            column = next((c for c in LABEL_GUESSES if c in ref.table.columns), None)
        classes = class_order or (_classes(ref, column) if column else [])
        classes = [c for c in classes if not syn_sets or ref.indices_of(column, c)] or classes
        real = None
        if real_sets:
            # the real data the model was trained on / evaluated against first (a demo root holds both
            # camcan and adni), then class overlap, then prepared (same grid as the synthetic volumes)
            wanted = self._training_sources()
            ranked = sorted(real_sets, key=lambda vs: (
                not ({vs.path.resolve(), self._prep_source(vs)} & wanted),
                -len(set(_classes(vs, column)) & set(classes)) if column else 0,
                vs.kind != "prepared"))
            real = ranked[0]
        syn = syn_sets[0] if syn_sets else None
        parts = [head]
        srcs = [(f"real ({real.name})", real)] if real else []
        srcs += [(f"synthetic ({syn.name})", syn)] if syn else []
        parts.append("<p class=\"muted\">Sources: " + H.esc("; ".join(
            f"{label}: {len(vs.table)} volumes" for label, vs in srcs)) + (
            f". Classes by <code>{H.esc(column)}</code>." if column else ". No label column found.") + "</p>")

        groups = classes if column and classes else ["all"]

        def idx(vs: VolumeSet, cls: str) -> list[int]:
            return list(range(len(vs.table))) if cls == "all" else vs.indices_of(column, cls)

        # first volume of each class from each source: mosaics; up to MAX_HIST_VOLUMES: histograms
        loaded: dict[str, dict[str, list[np.ndarray]]] = {}
        first_zooms: dict[str, np.ndarray] = {}
        for cls in groups:
            loaded[cls] = {}
            for label, vs in srcs:
                vols = []
                for i in idx(vs, cls)[:MAX_HIST_VOLUMES]:
                    v, z = vs.load(i)
                    vols.append(v)
                    first_zooms.setdefault(label, z)
                loaded[cls][label] = vols
        all_vols = [v for c in loaded.values() for vs in c.values() for v in vs]
        real_vols = [v for c in loaded.values() for lab, vs in c.items() if lab.startswith("real") for v in vs]
        vmax = F.display_vmax(real_vols or all_vols)
        if not all_vols:
            return head + H.not_run("No volumes could be matched to the classes.") + "</section>"

        panels = {cls: {label: (F.display_mosaic(vs[0]) if vs else None) for label, vs in loaded[cls].items()}
                  for cls in groups}
        parts.append("<h3>Mosaics per class (one volume each, axial slices)</h3>")
        parts.append(H.figs([H.img(F.mosaic_grid_figure(panels, vmax), "real vs synthetic mosaics per class",
                                   f"First volume of each class; shared grey scale 0 to {H.fmt(vmax, 3)} mm²/s "
                                   "(99.5th percentile of real brain MD).")]))
        figs = []
        if syn is not None:
            syn_label = srcs[-1][0]
            vol = next((loaded[c][syn_label][0] for c in groups if loaded[c][syn_label]), None)
            if vol is not None:
                pid = syn.table["participant_id"].iloc[idx(syn, groups[0])[0] if idx(syn, groups[0]) else 0]
                figs.append(H.img(F.three_plane_figure(vol, first_zooms[syn_label], vmax, f"synthetic {pid}"),
                                  "three-plane view of one synthetic volume",
                                  f"Axial, coronal and sagittal slices through the brain centre of {pid}.", "half"))
        hist = {cls: {label: np.concatenate([F.brain_values(v) for v in vs]) if vs else np.zeros(0)
                      for label, vs in loaded[cls].items()} for cls in groups}
        nh = max(len(vs) for c in loaded.values() for vs in c.values())
        figs.append(H.img(F.histogram_figure(hist, vmax), "MD histograms",
                          f"Brain-voxel MD (> 0) of up to {nh} volumes per class and source.", "half"))
        parts.append("<h3>Three-plane view and MD histograms</h3>" + H.figs(figs))
        rows = []
        for cls in groups:
            for label, _ in srcs:
                vals = hist[cls][label] * 1e3  # mm²/s -> 10⁻³ mm²/s, as on the figures' axes
                rows.append([cls, label, len(loaded[cls][label]),
                             *(float(np.percentile(vals, q)) if vals.size else None for q in (50, 5, 95))])
        parts.append(H.table(["class", "source", "volumes", "median MD (10⁻³ mm²/s)", "5th percentile",
                              "95th percentile"], rows, numeric_from=2))
        if syn is not None:
            counts = ", ".join(f"{c}: {len(idx(syn, c))}" for c in groups)
            self.say(f"Synthetic cohort ({syn.path.name}/): {len(syn.table)} volumes ({counts}).", "verdict-neutral", prio=4)
        return "".join(parts) + "</section>"

    # ----------------------------------------------------------------- evaluation
    def eval_sections(self) -> str:
        """MS-SSIM / MMD / tissue / coherence (section "similarity") and the memorization audit.

        Reads EVAL_DIR/metrics.json in the schema of ``neurodit.metrics.evaluate``; unknown extra
        keys are listed in a collapsible table, missing parts say so.
        """
        evals = self.of("eval")
        ms = ['<section id="similarity"><h2>Similarity: MS-SSIM and MMD</h2>']
        mem = ['<section id="memorization"><h2>Memorization audit</h2>']
        if not evals:
            note = H.not_run("Not run: no evaluation folder (metrics.json) was given.")
            return ms[0] + note + "</section>" + mem[0] + note + "</section>"
        for ev in evals:
            mfile = ev.path / "metrics.json"
            metrics = read_json(mfile)
            if not isinstance(metrics, dict):
                raise NeuroditError("metrics.json must hold a JSON object", mfile)
            title = f"<h3>{H.esc(ev.name)}</h3>" if len(evals) > 1 else ""
            pngs = self._eval_figures(ev.path, metrics)
            counts = [f"{k.replace('n_', '')}: {metrics[k]}" for k in ("n_real", "n_synthetic", "n_train")
                      if isinstance(metrics.get(k), int)]
            intro = (f'<p class="muted">Protocol <code>{H.esc(metrics.get("protocol", "?"))}</code>'
                     + (f"; volumes {H.esc(', '.join(counts))}" if counts else "") + ".</p>")
            ms.append(title + intro + self._similarity(metrics, pngs))
            mem.append(title + self._memorization(metrics, pngs))
            known = ("msssim", "ms_ssim", "mmd", "memorization", "tissue", "coherence", "paper", "figures",
                     "notes", "timings_s", "protocol", "n_real", "n_synthetic", "n_train")
            other = {k: v for k, v in metrics.items() if k not in known}
            rows = _scalar_rows(other)
            if rows:
                ms.append(H.details(f"All other values in {ev.name}/metrics.json", H.table(["key", "value"], rows)))
            notes = metrics.get("notes")
            if isinstance(notes, list) and notes:
                ms.append("<h3>How to read these numbers</h3><ul>"
                          + "".join(f"<li>{H.esc(n)}</li>" for n in notes) + "</ul>")
            rest = [H.img(b, name, f"{ev.name}/{name}.png", "half") for name, b in pngs.items()
                    if name not in ("msssim", "memorization")]
            if rest:
                ms.append("<h3>Evaluation figures</h3>" + H.figs(rest))
        return "".join(ms) + "</section>" + "".join(mem) + "</section>"

    @staticmethod
    def _eval_figures(folder: Path, metrics: dict) -> dict[str, bytes]:
        """name -> PNG bytes: the ``figures`` map of metrics.json, then any other PNG in the folder."""
        out: dict[str, bytes] = {}
        figs = metrics.get("figures") if isinstance(metrics.get("figures"), dict) else {}
        for name, rel in figs.items():
            p = (folder / str(rel)).resolve()
            if p.is_file() and folder.resolve() in p.parents:  # never read outside EVAL_DIR
                out[str(name)] = p.read_bytes()
        for p in sorted(folder.glob("*.png")):
            if p.stem not in out and p.name not in figs.values():
                out[p.stem] = p.read_bytes()
        return out

    def _similarity(self, metrics: dict, pngs: dict[str, bytes]) -> str:
        out = []
        ms = metrics.get("msssim", metrics.get("ms_ssim"))
        names = {"real_real": "real–real (floor)", "real_syn": "real–synthetic", "real_synthetic": "real–synthetic",
                 "syn_syn": "synthetic–synthetic", "synthetic_synthetic": "synthetic–synthetic"}
        if isinstance(ms, dict) and any(isinstance(v, dict) for v in ms.values()):
            rows, means = [], {}
            for key, d in ms.items():
                if isinstance(d, dict) and _num(d.get("mean")) is not None:
                    means[names.get(key, key)] = float(d["mean"])
                    rows.append([names.get(key, key.replace("_", " ")), _num(d["mean"]), *_ci(d), d.get("n_pairs")])
            out.append("<h3>3D MS-SSIM between pairs of volumes (higher = more alike)</h3>")
            out.append(H.table(["pairs", "mean MS-SSIM", "95% CI low", "95% CI high", "pairs used"], rows))
            settings = [(k, v) for k, v in _scalar_rows({k: v for k, v in ms.items() if not isinstance(v, dict)})]
            if settings:
                out.append(H.details("MS-SSIM settings", H.table(["setting", "value"], settings)))
            floor, cross = means.get("real–real (floor)"), means.get("real–synthetic")
            syn = means.get("synthetic–synthetic")
            if floor is not None and cross is not None:
                words = ("synthetic volumes resemble real ones as much as real ones resemble each other"
                         if cross >= floor else "synthetic volumes resemble real ones less than real ones "
                         "resemble each other")
                if syn is not None and syn > floor:
                    words += "; synthetic volumes are more alike to each other than real ones (less diversity)"
                sentence = f"MS-SSIM real–synthetic {H.fmt(cross, 3)} vs real–real floor {H.fmt(floor, 3)}: {words}."
                self.say(sentence, "verdict-neutral", prio=2)
                out.append(f"<p>{H.esc(sentence)}</p>")
        elif ms is not None:
            out.append(H.table(["key", "value"], _scalar_rows({"msssim": ms})))
        else:
            out.append(H.not_run("No MS-SSIM values in metrics.json."))
        if "msssim" in pngs:
            out.append(H.figs([H.img(pngs["msssim"], "msssim", "MS-SSIM per pair (msssim.png)", "half")]))

        mmd = metrics.get("mmd")
        kernels = {k: v for k, v in mmd.items() if isinstance(v, dict)} if isinstance(mmd, dict) else {}
        if kernels and all(isinstance(v.get("real_syn"), dict) for v in kernels.values()):
            out.append("<h3>Kernel MMD² two-sample test, real vs synthetic, against the real–real floor</h3>")
            rows = []
            for kernel, v in kernels.items():
                rs, fl = v.get("real_syn") or {}, v.get("floor") or {}
                rows.append([kernel, _num(rs.get("mmd2")), _num(rs.get("p_value")), _num(fl.get("mmd2")),
                             _num(fl.get("p_value")), f"{rs.get('n_x', '—')} vs {rs.get('n_y', '—')}",
                             rs.get("permutations")])
            out.append(H.table(["kernel", "MMD² real–synthetic", "p", "MMD² floor", "floor p", "volumes",
                                "permutations"], rows))
            bits = [f"{label}: {mmd[k]}" for k, label in (("features", "features"), ("floor_sets", "floor"))
                    if isinstance(mmd.get(k), str)]
            if bits:
                out.append(f'<p class="muted">{H.esc("; ".join(bits))}.</p>')
            rbf = kernels.get("rbf", {})
            p = _num((rbf.get("real_syn") or {}).get("p_value"))
            if p is not None:
                self.say(f"RBF-kernel MMD: real and synthetic volumes {'differ' if p < 0.05 else 'are not told apart'}"
                         f" (permutation p={p:.2g}).", "verdict-neutral", prio=3)
        elif mmd is not None:
            out.append("<h3>MMD</h3>" + H.table(["key", "value"], _scalar_rows({"mmd": mmd})))
        else:
            out.append(H.not_run("No MMD values in metrics.json."))

        tissue = metrics.get("tissue")
        if isinstance(tissue, dict):
            rows = [[k, _num(v.get("real_mean")), _num(v.get("syn_mean")), _num(v.get("wasserstein")),
                     v.get("n_voxels")] for k, v in tissue.items() if isinstance(v, dict)]
            if rows:
                thr = tissue.get("thresholds_mm2s")
                out.append("<h3>MD per tissue class (mm²/s)</h3>")
                out.append(H.table(["tissue", "real mean", "synthetic mean", "Wasserstein distance", "voxels"], rows))
                if isinstance(thr, list):
                    out.append(f'<p class="muted">Classes by the median real MD map: thresholds '
                               f'{H.esc(", ".join(H.fmt(_num(t)) for t in thr))} mm²/s.</p>')
        coh = metrics.get("coherence")
        if isinstance(coh, dict):
            out.append("<h3>Slice coherence (is the 3D volume consistent across the tiled slices?)</h3>")
            planes = coh.get("ssim_2d") if isinstance(coh.get("ssim_2d"), dict) else {}
            rows = [[plane, _num(v.get("real_real")), _num(v.get("real_syn")), _num(v.get("drop")), v.get("n_pairs")]
                    for plane, v in planes.items() if isinstance(v, dict)]
            if rows:
                out.append(H.table(["plane", "2D SSIM real–real", "real–synthetic", "drop", "pairs"], rows))
            scal = _scalar_rows({k: v for k, v in coh.items() if k != "ssim_2d"})
            if scal:
                out.append(H.table(["quantity", "value"], scal))
        paper = metrics.get("paper")
        if isinstance(paper, dict):
            out.append("<h3>The paper's protocol (64³, [0, 1], MONAI kernel 2)</h3>")
            rows = []
            for metric, groups in paper.items():
                if metric == "settings" or not isinstance(groups, dict):
                    continue
                for g, d in groups.items():
                    if isinstance(d, dict) and _num(d.get("mean")) is not None:
                        rows.append([metric.replace("_", " "), names.get(g, g), _num(d["mean"]), *_ci(d),
                                     d.get("n_pairs")])
            out.append(H.table(["metric", "pairs", "mean", "95% CI low", "95% CI high", "pairs used"], rows,
                               numeric_from=2))
        return "".join(out)

    def _memorization(self, metrics: dict, pngs: dict[str, bytes]) -> str:
        audit = metrics.get("memorization")
        if audit is None:
            return H.not_run("Not run: metrics.json has no memorization audit.")
        if not isinstance(audit, dict):
            return H.table(["key", "value"], [("memorization", audit)])
        out = []
        stored = _verdict_strings(audit)
        frac, exp_ = _num(audit.get("fraction_above")), _num(audit.get("expected_fraction"))
        p, flagged, ndup = _num(audit.get("binom_p")), audit.get("flagged"), audit.get("n_duplicates")
        sentence = stored[0] if stored else None
        if sentence is None and frac is not None and exp_ is not None and isinstance(flagged, bool):
            pct = _num(audit.get("percentile")) or 99.0
            sentence = (("possible memorization" if flagged else "no sign of memorization")
                        + f": {frac:.1%} of synthetic volumes are closer to a training volume than the "
                        f"{pct:g}th percentile of held-out real subjects (expected {exp_:.1%}"
                        + (f", binomial p={p:.2g}" if p is not None else "") + ")"
                        + (f"; {ndup} near-duplicates" if isinstance(ndup, int) else "") + ".")
        if sentence:
            self.say("Memorization: " + sentence,
                     "verdict-bad" if flagged is True else ("verdict-good" if flagged is False else None), prio=1)
            out.append(f'<p class="{"verdict-bad" if flagged else "verdict-good"}">{H.esc(sentence)}</p>')
        syn_nn = audit.get("syn_nn") if isinstance(audit.get("syn_nn"), dict) else {}
        ho_nn = audit.get("heldout_nn") if isinstance(audit.get("heldout_nn"), dict) else {}
        if syn_nn or ho_nn:
            out.append("<h3>Nearest-training-volume correlation (Pearson r, in the brain mask)</h3>")
            out.append(H.table(["set", "mean", "median", "min", "max", "volumes"], [
                [label, _num(d.get("mean")), _num(d.get("median")), _num(d.get("min")), _num(d.get("max")),
                 d.get("n")] for label, d in (("synthetic", syn_nn), ("held-out real", ho_nn)) if d]))
        closest = audit.get("closest")
        if isinstance(closest, list) and closest and all(isinstance(c, dict) for c in closest):
            cols = list(dict.fromkeys(k for c in closest for k in c))
            out.append("<h3>Synthetic volumes closest to a training volume</h3>")
            out.append(H.table(cols, [[c.get(k) for k in cols] for c in closest], numeric_from=0))
        if "memorization" in pngs:
            out.append(H.figs([H.img(pngs["memorization"], "memorization", "memorization.png")]))
        rows = _scalar_rows(audit, skip=("closest", "syn_nn", "heldout_nn"))
        out.append(H.details("All memorization values", H.table(["quantity", "value"], rows)))
        return "".join(out)

    # ----------------------------------------------------------------- downstream
    def downstream_section(self) -> str:
        parts = ['<section id="downstream"><h2>Downstream classifier</h2>']
        dss = self.of("downstream")
        if not dss:
            return parts[0] + H.not_run("Not run: no downstream folder (results.json) was given.") + "</section>"
        for ds in dss:
            if len(dss) > 1:
                parts.append(f"<h3>{H.esc(ds.name)}</h3>")
            rfile = ds.path / "results.json"
            if not rfile.is_file():
                parts.append(H.not_run(f"{ds.name}: results.json missing (runs.csv only)."))
                results: dict = {}
            else:
                results = read_json(rfile)
                if not isinstance(results, dict):
                    raise NeuroditError("results.json must hold a JSON object", rfile)
            if isinstance(results.get("arms"), dict):
                body, figs = self._downstream_schema(results)
            else:
                body, figs = self._downstream_generic(results)
            parts.append(body)
            figs += [H.img(p.read_bytes(), p.stem, p.name, "half") for p in sorted(ds.path.glob("*.png"))]
            if figs:
                parts.append(H.figs(figs))
            runs = ds.path / "runs.csv"
            if runs.is_file():
                try:
                    df = pd.read_csv(runs)
                except (ValueError, pd.errors.ParserError) as exc:
                    raise NeuroditError(f"cannot read runs table ({exc})", runs) from exc
                body = H.table(list(map(str, df.columns)), df.head(200).itertuples(index=False), numeric_from=0)
                parts.append(H.details(f"All runs ({len(df)} rows of runs.csv)", body))
            if results:
                rest = _scalar_rows(results)
                if rest:
                    parts.append(H.details("All values in results.json", H.table(["key", "value"], rest)))
        return "".join(parts) + "</section>"

    def _downstream_generic(self, results: dict) -> tuple[str, list[str]]:
        """Any results.json: verdict strings, every {mean, ci95} summary and every paired difference."""
        parts: list[str] = []
        verdicts = _verdict_strings(results)
        comparisons = [(p, d) for p, d in _walk(results) if isinstance(d, dict)
                       and _num(d.get("mean_diff")) is not None]
        if not verdicts:  # compose from the numbers when no sentence was stored
            for p, d in comparisons:
                lo, hi = _ci(d)
                if lo is not None and hi is not None:
                    verdicts.append(plain_difference(_name(p), float(d["mean_diff"]), lo, hi))
        if verdicts:
            parts.append("<ul>" + "".join(f'<li class="{H.verdict_class(v)}">{H.esc(v)}</li>'
                                          for v in verdicts) + "</ul>")
            for v in verdicts:
                self.say(v, prio=0)
        summaries = [(p, d) for p, d in _mean_ci_rows(results) if "mean_diff" not in d]
        if summaries:
            rows = [[_name(p), _num(d["mean"]), _num(d.get("sd")), *_ci(d), d.get("n")] for p, d in summaries]
            parts.append("<h3>Arms (mean over runs, 95% CI)</h3>")
            parts.append(H.table(["arm / metric", "mean", "sd", "95% CI low", "95% CI high", "runs"], rows))
        if comparisons:
            rows = [[_name(p), _num(d["mean_diff"]), *_ci(d), _num(d.get("p_wilcoxon")),
                     _num(d.get("p_corrected_t")), d.get("n_pairs")] for p, d in comparisons]
            parts.append("<h3>Paired comparisons (arm − baseline)</h3>")
            parts.append(H.table(["comparison", "mean difference", "95% CI low", "95% CI high",
                                  "Wilcoxon p", "corrected t p", "pairs"], rows))
        figs = []
        ba = [(p, d) for p, d in summaries if p and "balanced" in p[-1]]
        plot_rows = [(_name(p[:-1]) or _name(p), float(d["mean"]), *_ci(d)) for p, d in ba]
        if plot_rows:
            figs.append(H.img(F.interval_figure(plot_rows, "balanced accuracy (mean, 95% CI)", ref=0.5,
                                                  bounds=(0.0, 1.0)),
                              "balanced accuracy per arm", "Balanced accuracy per arm; dashed: chance (0.5).", "half"))
        diff_rows = [(_name(p), float(d["mean_diff"]), *_ci(d)) for p, d in comparisons]
        if diff_rows:
            figs.append(H.img(F.interval_figure(diff_rows, "difference to baseline (95% CI)", ref=0.0),
                              "paired differences", "Paired difference to the baseline arm; dashed: no effect.", "half"))
        return "".join(parts), figs

    def _downstream_schema(self, results: dict) -> tuple[str, list[str]]:
        """results.json of ``neurodit.downstream.experiment`` (schema neurodit.downstream/1)."""
        parts: list[str] = []
        overall = results.get("verdict") if isinstance(results.get("verdict"), dict) else {}
        comps = [c for c in results.get("comparisons", []) if isinstance(c, dict)]
        labels = {"synthetic_for_sex": "Sex classifier", "synthetic_for_transfer": "AD vs CN (transfer)"}
        said = False
        for key, label in labels.items():
            if isinstance(overall.get(key), str):
                self.say(f"{label}: {overall[key]}", prio=0)
                said = True
        if not said and isinstance(overall.get("summary"), str):
            self.say(overall["summary"], prio=0)
        if comps:
            items = []
            for c in comps:
                sentence = c.get("verdict")
                ba = (c.get("metrics") or {}).get("balanced_accuracy", {})
                if not isinstance(sentence, str) and _num(ba.get("mean_diff")) is not None:
                    lo, hi = _ci(ba)
                    if lo is not None and hi is not None:
                        sentence = plain_difference(str(c.get("arm", "arm")), float(ba["mean_diff"]), lo, hi)
                if isinstance(sentence, str):
                    q = c.get("question") or c.get("name") or ""
                    items.append(f'<li><b>{H.esc(q)}</b> <span class="{H.verdict_class(sentence)}">'
                                 f"{H.esc(sentence)}</span></li>")
            if items:
                parts.append("<ul>" + "".join(items) + "</ul>")
        data = results.get("data") if isinstance(results.get("data"), dict) else {}
        if data:
            rows = []
            for name, d in data.items():
                if isinstance(d, dict):
                    classes = d.get("classes") or []
                    npc = d.get("n_per_class") or []
                    per = ", ".join(f"{c}: {n}" for c, n in zip(classes, npc, strict=False))
                    rows.append([name, d.get("n_participants"), d.get("n_volumes"), per])
            parts.append("<h3>Data</h3>" + H.table(["set", "participants", "volumes", "per class"], rows))

        def cell(m: Any) -> str:
            if not isinstance(m, dict) or _num(m.get("mean")) is None:
                return "—"
            lo, hi = _ci(m)
            ci = f" ({H.fmt(lo, 3)} to {H.fmt(hi, 3)})" if lo is not None and hi is not None else ""
            return f"{float(m['mean']):.3f}{ci}"

        arms = {k: v for k, v in results["arms"].items() if isinstance(v, dict)}
        metric_names = ["balanced_accuracy", "roc_auc", "f1", "accuracy"]
        rows = [[H.esc(name), H.esc(a.get("task", "")), H.esc(H.fmt(a.get("n_runs"))),
                 *(H.esc(cell((a.get("metrics") or {}).get(m))) for m in metric_names)] for name, a in arms.items()]
        parts.append("<h3>Arms: mean over folds × seeds (95% CI)</h3>")
        parts.append(H.table_raw(["arm", "task", "runs", "balanced accuracy", "ROC-AUC", "F1", "accuracy"], rows))
        if comps:
            rows = []
            for c in comps:
                ba = (c.get("metrics") or {}).get("balanced_accuracy", {})
                lo, hi = _ci(ba)
                wl = (f"{ba.get('wins', '—')}/{ba.get('losses', '—')}/{ba.get('ties', '—')}"
                      if isinstance(ba, dict) else "—")
                rows.append([c.get("arm"), c.get("baseline"), _num(ba.get("mean_diff")), lo, hi,
                             _num(ba.get("p_wilcoxon")), _num(ba.get("p_corrected_t")), wl, c.get("outcome")])
            parts.append("<h3>Paired comparisons on balanced accuracy (arm − baseline)</h3>")
            parts.append(H.table(["arm", "baseline", "mean difference", "95% CI low", "95% CI high",
                                  "Wilcoxon p", "corrected t p", "wins/losses/ties", "outcome"], rows,
                                 numeric_from=2))
        figs = []
        plot_rows = []
        for name, a in arms.items():
            m = (a.get("metrics") or {}).get("balanced_accuracy")
            if isinstance(m, dict) and _num(m.get("mean")) is not None:
                plot_rows.append((name, float(m["mean"]), *_ci(m)))
        if plot_rows:
            figs.append(H.img(F.interval_figure(plot_rows, "balanced accuracy (mean, 95% CI)", ref=0.5,
                                                  bounds=(0.0, 1.0)),
                              "balanced accuracy per arm", "Balanced accuracy per arm; dashed: chance (0.5).", "half"))
        diff_rows = []
        for c in comps:
            ba = (c.get("metrics") or {}).get("balanced_accuracy", {})
            if isinstance(ba, dict) and _num(ba.get("mean_diff")) is not None:
                diff_rows.append((f"{c.get('arm')} − {c.get('baseline')}", float(ba["mean_diff"]), *_ci(ba)))
        if diff_rows:
            figs.append(H.img(F.interval_figure(diff_rows, "difference in balanced accuracy (95% CI)", ref=0.0),
                              "paired differences", "Paired difference to the baseline arm; dashed: no effect.", "half"))
        return "".join(parts), figs

    # ----------------------------------------------------------------- training
    def training_section(self) -> str:
        parts = ['<section id="training"><h2>Training</h2>']
        trains = self.of("train")
        if not trains:
            return parts[0] + H.not_run("Not run: no training run folder (loss.csv) was given.") + "</section>"
        for t in trains:
            if len(trains) > 1:
                parts.append(f"<h3>{H.esc(t.name)}</h3>")
            figs = []
            lf = t.path / "loss.csv"
            if lf.is_file():
                try:
                    df = pd.read_csv(lf)
                except (ValueError, pd.errors.ParserError) as exc:
                    raise NeuroditError(f"cannot read loss table ({exc})", lf) from exc
                if not {"step", "loss"} <= set(df.columns):
                    raise NeuroditError(f"needs columns step and loss, has {', '.join(df.columns)}", lf)
                df = df[np.isfinite(df["loss"])]
                if len(df):
                    steps, loss = df["step"].to_numpy(), df["loss"].to_numpy(dtype=float)
                    tail = loss[-max(1, len(loss) // 10):]
                    figs.append(H.img(F.loss_figure(steps, loss), "training loss curve",
                                      f"{t.name}: {len(df)} logged steps."))
                    parts.append(H.table(["steps logged", "last step", "first loss", "mean loss, last 10%"],
                                         [[len(df), int(steps[-1]), float(loss[0]), float(tail.mean())]],
                                         numeric_from=0))
                    self.say(f"Training {t.name}: {int(steps[-1])} steps, loss {H.fmt(float(loss[0]), 3)} → "
                             f"{H.fmt(float(tail.mean()), 3)} (mean of the last 10%).", "verdict-neutral")
            else:
                parts.append(H.not_run(f"{t.name}: no loss.csv."))
            samples = sorted((t.path / "samples").glob("*.png"))
            figs += [H.img(p.read_bytes(), p.stem, f"preview sample {p.name}", "half") for p in samples[-4:]]
            parts.append(H.figs(figs))
        return "".join(parts) + "</section>"

    # ----------------------------------------------------------------- provenance
    def provenance_section(self) -> str:
        parts = ['<section id="provenance"><h2>Configs and versions</h2>']
        versions = None
        rows = []
        for f in self.found:
            rows.append([f.kind, str(f.path)])
        parts.append(H.table(["kind", "folder"], rows, numeric_from=99))
        for root in self.roots:
            demo = root / "demo.json"
            info = read_json(demo) if demo.is_file() else None
            if isinstance(info, dict):
                parts.append(f"<h3>demo: {H.esc(root.name)}</h3>")
                timings = info.get("timings_s") if isinstance(info.get("timings_s"), dict) else {}
                commands = info.get("commands") if isinstance(info.get("commands"), dict) else {}
                stages = list(dict.fromkeys([*timings, *commands]))
                if stages:
                    body = "".join(f"<tr><td>{H.esc(k)}</td><td class=\"num\">{H.esc(H.fmt(timings.get(k)))}</td>"
                                   f"<td><code>{H.esc(commands.get(k, ''))}</code></td></tr>" for k in stages)
                    parts.append("<table><thead><tr><th>stage</th><th>seconds</th><th>re-run with</th></tr>"
                                 f"</thead><tbody>{body}</tbody></table>")
                parts.append(H.details("demo.json", H.pre(json.dumps(info, indent=2))))
            if (root / "run.json").is_file():
                parts.append(H.details(f"{root.name}/run.json",
                                       H.pre(json.dumps(read_json(root / "run.json"), indent=2))))
        for f in self.found:
            blocks = []
            for name in ("run.json", "train_config.yaml", "labels.json", "preset.json", "tiling.json",
                         "prepare.json"):
                p = f.path / name
                if not p.is_file():
                    continue
                text = p.read_text(errors="replace")
                if name.endswith(".json"):
                    try:
                        data = json.loads(text)
                    except json.JSONDecodeError as exc:
                        raise NeuroditError(f"not valid JSON ({exc.msg})", p) from exc
                    if name == "run.json" and isinstance(data, dict) and versions is None:
                        versions = data.get("versions")
                    text = json.dumps(data, indent=2)
                blocks.append(H.details(name, H.pre(text)))
            if blocks:
                parts.append(f"<h3>{H.esc(f.kind)}: {H.esc(f.name)}</h3>" + "".join(blocks))
        if isinstance(versions, dict):
            parts.append("<h3>Versions (from the first run.json)</h3>")
            parts.append(H.table(["package", "version"], sorted(versions.items()), numeric_from=99))
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
    rep = Report(found, roots)
    sections = [rep.images_section(), rep.eval_sections(), rep.downstream_section(), rep.training_section(),
                rep.provenance_section()]
    kinds = ", ".join(f"{len(v)} {k}" for k, v in rep.by_kind.items())
    subtitle = f"{kinds} · generated {time.strftime('%Y-%m-%d %H:%M')} · neurodit {__version__}"
    nav = [("summary", "Summary"), ("images", "Volumes"), ("similarity", "MS-SSIM / MMD"),
           ("memorization", "Memorization"), ("downstream", "Downstream"), ("training", "Training"),
           ("provenance", "Configs")]
    doc = H.page(title, subtitle, nav, [h for _, h in sorted(rep.summary, key=lambda x: x[0])], sections)
    return atomic_write_text(out_html, doc)


__all__ = ["build_report", "plain_difference"]

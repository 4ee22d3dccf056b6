"""The "Real vs synthetic volumes" section: mosaics per class, a 3-plane view, MD histograms.

Volumes come through the data layer only: cohort folders by ``read_cohort`` + ``load_volumes``
(one row at a time, so each volume keeps its own grid), PREP_DIRs by ``load_prepared`` +
``Prepared.to_mm2s``; every array here is (D, H, W) float32 mm²/s in RAS.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from neurodit.data.cohort import Cohort, load_volumes, read_cohort
from neurodit.data.prepare import load_prepared
from neurodit.io import read_json
from neurodit.report import figures as F
from neurodit.report import html as H
from neurodit.report.discover import Found

MAX_HIST_VOLUMES = 24  # per class and source: enough for a smooth histogram, cheap to load
LABEL_GUESSES = ("sex", "diagnosis")


@dataclass
class VolumeSet:
    """The volumes of one folder: ``table`` (one row per volume) and ``load(i) -> (volume, voxel size mm)``."""

    name: str
    path: Path
    kind: str  # "real" | "synthetic" | "prepared"
    table: pd.DataFrame
    load: Callable[[int], tuple[np.ndarray, tuple[float, float, float]]]
    source: Path | None = None  # the cohort a PREP_DIR was prepared from

    def rows(self, column: str | None, cls: str) -> list[int]:
        if column is None:
            return list(range(len(self.table)))
        return [i for i, v in enumerate(self.table[column]) if str(v) == cls]

    def classes(self, column: str | None) -> list[str]:
        return [] if column is None else sorted(self.table[column].dropna().astype(str).unique().tolist())


def cohort_set(found: Found) -> VolumeSet:
    cohort = read_cohort(found.path)

    def load(i: int) -> tuple[np.ndarray, tuple[float, float, float]]:
        vols, grid = load_volumes(Cohort(cohort.table.iloc[[i]].reset_index(drop=True), cohort.data_dir))
        return vols[0], grid.voxel_size

    return VolumeSet(found.name, found.path, found.kind, cohort.table, load)


def prepared_set(found: Found) -> VolumeSet:
    prep = load_prepared(found.path)
    source = Path(read_json(found.path / "prepare.json")["source"]).resolve()
    # a several-map folder is shown by its first map (prep.norm is that map's window)
    return VolumeSet(found.name, found.path, "prepared", prep.table,
                     lambda i: (prep.to_mm2s(prep.volumes[i][0] if prep.maps else prep.volumes[i]),
                                prep.grid.voxel_size), source)


def label_info(trains: list[Found]) -> tuple[str | None, list[str]]:
    """Label column and class names (index order) from the first training run's ``labels.json``
    (``{"label", "columns", "classes", ...}``). A combined label (``sex*age_bin``, classes ``"F|<50"``)
    is shown by its first column other than ``age_bin``, with the classes then read from the tables."""
    for t in trains:
        if (t.path / "labels.json").is_file():
            labels = read_json(t.path / "labels.json")
            if len(labels["columns"]) == 1:
                return labels["columns"][0], [str(c) for c in labels["classes"]]
            return next(c for c in labels["columns"] if c != "age_bin"), []
    return None, []


def images_section(by_kind: dict[str, list[Found]], wanted: set[Path], summary: H.Summary) -> str:
    """``wanted``: the real cohorts the runs were trained on / evaluated against (preferred as reference)."""
    head = '<section id="images"><h2>Real vs synthetic volumes</h2>'
    syn_sets = [cohort_set(f) for f in by_kind.get("synthetic", [])]
    real_sets = [prepared_set(f) for f in by_kind.get("prepared", [])] + [cohort_set(f) for f in
                                                                        by_kind.get("real", [])]
    if not syn_sets and not real_sets:
        return head + H.not_run("Not run: no cohort, prepared or synthetic folder was given.") + "</section>"
    column, classes = label_info(by_kind.get("train", []))
    ref = (syn_sets or real_sets)[0]
    if column is None:
        column = next((c for c in LABEL_GUESSES if ref.classes(c)), None)
    classes = [c for c in classes if not syn_sets or ref.rows(column, c)] or ref.classes(column)
    srcs = []
    if real_sets:
        # the real data the model was trained on / evaluated against first (a demo root holds both
        # camcan and adni), then class overlap, then prepared (same grid as the synthetic volumes)
        real = sorted(real_sets, key=lambda vs: (not {vs.path.resolve(), vs.source} & wanted,
                                                 -len(set(vs.classes(column)) & set(classes)),
                                                 vs.kind != "prepared"))[0]
        srcs.append((f"real ({real.name})", real))
    syn = syn_sets[0] if syn_sets else None
    if syn is not None:
        srcs.append((f"synthetic ({syn.name})", syn))
    groups = classes if classes else ["all"]
    col = column if classes else None
    parts = [head, '<p class="muted">Sources: ' + H.esc("; ".join(f"{label}: {len(vs.table)} volumes"
                                                                  for label, vs in srcs))
             + (f". Classes by <code>{H.esc(column)}</code>." if col else ". No label column found.") + "</p>"]

    # up to MAX_HIST_VOLUMES per class and source: the first one for the mosaics, all for histograms
    loaded: dict[str, dict[str, list[np.ndarray]]] = {c: {} for c in groups}
    zooms: dict[str, tuple[float, float, float]] = {}
    for cls in groups:
        for label, vs in srcs:
            pairs = [vs.load(i) for i in vs.rows(col, cls)[:MAX_HIST_VOLUMES]]
            loaded[cls][label] = [v for v, _ in pairs]
            if pairs:
                zooms.setdefault(label, pairs[0][1])
    real_vols = [v for c in loaded.values() for lab, vs in c.items() if lab.startswith("real") for v in vs]
    all_vols = [v for c in loaded.values() for vs in c.values() for v in vs]
    if not all_vols:
        return head + H.not_run("No volumes could be matched to the classes.") + "</section>"
    vmax = F.display_vmax(real_vols or all_vols)
    panels = {c: {lab: (F.display_mosaic(vs[0]) if vs else None) for lab, vs in loaded[c].items()} for c in groups}
    parts.append("<h3>Mosaics per class (one volume each, axial slices)</h3>" + H.figs([H.img(
        F.mosaic_grid_figure(panels, vmax), "real vs synthetic mosaics per class",
        f"First volume of each class; shared grey scale 0 to {H.fmt(vmax, 3)} mm²/s "
        "(99.5th percentile of real brain MD).")]))
    figs = []
    if syn is not None and (first := next((c for c in groups if loaded[c][srcs[-1][0]]), None)) is not None:
        pid = syn.table["participant_id"].iloc[syn.rows(col, first)[0]]
        figs.append(H.img(F.three_plane_figure(loaded[first][srcs[-1][0]][0], np.asarray(zooms[srcs[-1][0]]),
                                               vmax, f"synthetic {pid}"),
                          "three-plane view of one synthetic volume",
                          f"Axial, coronal and sagittal slices through the brain centre of {pid}.", "half"))
    hist = {c: {lab: np.concatenate([F.brain_values(v) for v in vs]) if vs else np.zeros(0)
                for lab, vs in loaded[c].items()} for c in groups}
    n_max = max(len(vs) for c in loaded.values() for vs in c.values())
    figs.append(H.img(F.histogram_figure(hist, vmax), "MD histograms",
                      f"Brain-voxel MD (> 0) of up to {n_max} volumes per class and source.", "half"))
    parts.append("<h3>Three-plane view and MD histograms</h3>" + H.figs(figs))
    rows = [[cls, label, len(loaded[cls][label]),
             *(float(np.percentile(hist[cls][label] * 1e3, q)) if hist[cls][label].size else None
               for q in (50, 5, 95))]  # 10⁻³ mm²/s, as on the figures' axes
            for cls in groups for label, _ in srcs]
    parts.append(H.table(["class", "source", "volumes", "median MD (10⁻³ mm²/s)", "5th percentile",
                          "95th percentile"], rows, numeric_from=2))
    if syn is not None:
        counts = ", ".join(f"{c}: {len(syn.rows(col, c))}" for c in groups)
        summary.say(f"Synthetic cohort ({syn.path.name}/): {len(syn.table)} volumes ({counts}).",
                    "verdict-neutral", prio=4)
    return "".join(parts) + "</section>"

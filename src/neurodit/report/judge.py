"""The judge's families of ``metrics.json``: C2ST, feature metrics, morphometry, and the calibration panel.

Each renderer takes one family's dict in the schema of :mod:`neurodit.metrics.evaluate` and returns
(HTML, plain-words sentence or None), like those of :mod:`neurodit.report.evaluation`, which registers
them. The judge and its reference generators are described in docs/JUDGE.md:

- ``c2st``: classifier two-sample test (Lopez-Paz & Oquab 2017), ``{views: {view: {auc, auc_ci95, p_value,
  n_real, n_synthetic, folds, permutations, method, verdict}}, verdict}``.
- ``features``: Fréchet distance (Heusel et al. 2017) and precision / recall (Kynkäänniemi et al. 2019) /
  density / coverage (Naeem et al. 2020) in the judge's feature view (a fixed 3D encoder's pooled features
  beside texture statistics), with a real-vs-real ``floor``. The Fréchet distance is shown as a ratio to
  the floor's (its raw figure has no scale of its own); raw only where there is no floor, and said so.
- ``morphometry``: tissue fractions and brain volume, real vs synthetic, and their age / sex effects.
- ``calibration``: ``{kind: {family: headline numbers}}`` for the reference generators (noise, mean, copy,
  pca) fitted on the training set; :func:`calibration` puts them beside the model's own numbers.
"""

from __future__ import annotations

from typing import Any

from neurodit.generators.reference import DESCRIPTIONS, PANEL_ORDER
from neurodit.report import html as H

Rendered = tuple[str, str | None]

VIEWS = {"voxel": "voxel values (linear)", "texture": "texture: gradients, local variance (linear)",
         "cnn": "small 3D CNN"}
MEASURES = {"wm_fraction": "white-matter-like fraction", "gm_fraction": "grey-matter-like fraction",
            "csf_fraction": "CSF-like fraction", "brain_volume_ml": "brain volume (ml)"}
EFFECTS = {"csf_fraction_age_slope": "CSF-like fraction vs age (slope)",
           "brain_volume_sex_diff_ml": "brain volume, men − women"}


# calibration columns: (header, dotted path into one calibration entry, the schema of
# neurodit.metrics.verdicts.headline)
HEADLINE: tuple[tuple[str, str], ...] = (
    *((f"C2ST AUC {v if v != 'cnn' else 'CNN'}", f"c2st.{v}.auc") for v in VIEWS),
    ("Fréchet / real-vs-real floor", "features.frechet_ratio"),
    # the raw figure only for an entry without a ratio (a metrics.json without a floor or from before
    # frechet_ratio): it has no scale of its own, so the header says it is raw (see headline())
    ("Fréchet (raw: no floor)", "features.frechet"),
    ("precision", "features.precision"),
    ("recall", "features.recall"),
    ("MS-SSIM syn–syn", "msssim.syn_syn"),
    ("MS-SSIM real–real", "msssim.real_real"),
    ("memorized fraction", "memorization.fraction_above"),
)
LEGEND = {
    "model": "the generator under evaluation.",
    **DESCRIPTIONS,
}


def _get(d: Any, path: str) -> Any:
    for key in path.split("."):
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def _number(d: dict, path: str) -> float | None:
    """The number at ``path``, else None (a family not run for that row)."""
    v = _get(d, path)
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def c2st(c: dict) -> Rendered:
    rows = [[VIEWS.get(v, v), r["auc"], *(r.get("auc_ci95") or [None, None]), r["p_value"],
             r.get("n_real"), r.get("n_synthetic"), r.get("folds"), r.get("permutations"), r.get("verdict", "")]
            for v, r in c["views"].items()]
    methods = [(VIEWS.get(v, v), r["method"]) for v, r in c["views"].items() if "method" in r]
    return ("<h3>Can a classifier tell synthetic from real? (two-sample test on held-out folds; "
            "AUC 0.5 = indistinguishable, 1 = always told apart)</h3>"
            + H.table(["view", "AUC", "95% CI low", "95% CI high", "p", "real", "synthetic", "folds",
                       "permutations", "verdict"], rows)
            + (H.details("C2ST methods", H.table(["view", "method"], methods)) if methods else "")), None


def features(f: dict) -> Rendered:
    fl = f.get("floor") or {}
    ratio = f.get("frechet_ratio")
    if ratio is None and fl.get("frechet"):  # a metrics.json written before frechet_ratio existed
        ratio = f["frechet"] / fl["frechet"]
    rows = ([["Fréchet distance / real-vs-real floor", ratio, 1.0]] if ratio is not None else [])
    rows += [[name if ratio is not None or k != "frechet" else "Fréchet distance (raw: no floor to scale it)",
              f[k], fl.get(k)]
             for name, k in (("Fréchet distance (raw)", "frechet"), ("precision", "precision"), ("recall", "recall"),
                             ("density", "density"), ("coverage", "coverage"))]
    blocks = [[b, v.get("frechet_ratio") if v.get("frechet_ratio") is not None else v.get("frechet")]
              for b, v in (f.get("by_block") or {}).items()]
    texture = [[name, t["real_mean"], t["syn_mean"], t["syn_z"]] for name, t in (f.get("texture") or {}).items()]
    floor_head = f"real vs real floor ({fl['sets']})" if "sets" in fl else "real vs real floor"
    enc = f.get("encoder") or {}
    sha = enc.get("sha256")
    info = [("encoder", enc.get("kind")), ("weights sha256", sha[:12] if isinstance(sha, str) else None),
            ("feature dimension", f.get("dim", enc.get("dim"))), ("real volumes", f.get("n_real")),
            ("synthetic volumes", f.get("n_synthetic")), ("reference volumes", fl.get("n_reference")),
            ("k nearest neighbours", f.get("k")), ("source", enc.get("source")),
            ("trained on (volumes)", _get(enc, "trained_on.n"))]
    warn = "".join(f'<li class="verdict-neutral">{H.esc(w)}</li>' for w in f.get("warnings") or [])
    extra = ""
    if blocks:
        extra += H.details("Fréchet distance per block (/ floor where there is one)",
                           H.table(["block", "Fréchet / floor"], blocks))
    if texture:
        extra += H.details("Texture statistics (model range; syn z = synthetic mean in real-training sds)",
                           H.table(["statistic", "real mean", "synthetic mean", "syn z"], texture))
    return ("<h3>Feature-space metrics (Fréchet distance, precision / recall / density / coverage)</h3>"
            + H.table(["quantity", "real vs synthetic", floor_head], rows)
            + (H.not_run("No real reference set: the real-vs-real floor was not computed; the Fréchet "
                         "distance is the raw figure.") if not fl else "") + extra
            + H.table(["encoder", "value"], [r for r in info if r[1] is not None])
            + (f"<ul>{warn}</ul>" if warn else "")), None


def morphometry(m: dict) -> Rendered:
    rows = [[MEASURES.get(k, k), v["real_mean"], v["real_sd"], v["syn_mean"], v["syn_sd"], v["wasserstein"],
             v["ks_p"]] for k, v in m["measures"].items()]
    effects = [[EFFECTS.get(k, k), e["real"], e.get("real_ci95"), e["synthetic"], e.get("synthetic_ci95"),
                e.get("unit", "")] for k, e in (m.get("effects") or {}).items()]
    thr = m.get("thresholds_mm2s")
    return ("<h3>Morphometry: tissue fractions and brain volume per subject</h3>"
            + H.table(["measure", "real mean", "real sd", "synthetic mean", "synthetic sd", "Wasserstein",
                       "KS p"], rows)
            + "<h3>Age and sex effects, real vs synthetic (95% CI)</h3>"
            + H.table(["effect", "real", "real CI", "synthetic", "synthetic CI", "unit"], effects)
            + (f'<p class="muted">Tissue classes by MD thresholds {H.esc(H.fmt(thr))} mm²/s.</p>' if thr else "")), None


def headline(entry: dict) -> list[float | None]:
    """One calibration row: the ``HEADLINE`` numbers of a generator (None where not computed; the raw
    Fréchet distance only where its ratio to the floor is missing)."""
    ratio = _number(entry, "features.frechet_ratio")
    return [None if path == "features.frechet" and ratio is not None else _number(entry, path)
            for _, path in HEADLINE]


def calibration(panel: dict) -> Rendered:
    """The calibration panel: one row per generator (``model`` first, then noise, mean, copy, pca and any
    other kind), one column per headline number; columns nobody has are dropped."""
    kinds = [k for k in ("model", *PANEL_ORDER) if isinstance(panel.get(k), dict)]
    kinds += [k for k, v in panel.items() if k not in kinds and k != "labels" and isinstance(v, dict)]
    rows = {k: headline(panel[k]) for k in kinds}
    keep = [i for i in range(len(HEADLINE)) if any(r[i] is not None for r in rows.values())]
    table = H.table(["generator", *(HEADLINE[i][0] for i in keep)], [[k, *(r[i] for i in keep)]
                                                                     for k, r in rows.items()])
    legend = "".join(f"<li><b>{H.esc(k)}</b>: {H.esc(LEGEND[k])}</li>" for k in kinds if k in LEGEND)
    # the sentence: each generator's best C2ST AUC (the view that separates it most)
    best = {k: max((x for x in r[:len(VIEWS)] if x is not None), default=None) for k, r in rows.items()}
    known = {k: a for k, a in best.items() if a is not None}
    sentence = None
    if known:
        words = ", ".join(f"{k} {a:.2f}" for k, a in known.items())
        sentence = (f"Calibration on this dataset: the classifier's AUC (best view; 0.5 = cannot tell apart) is "
                    f"{words}.")
        refs = {k: a for k, a in known.items() if k != "model"}
        if "model" in known and refs:
            near = min(refs, key=lambda k: abs(refs[k] - known["model"]))
            # what the nearness rests on: two point estimates (the panel tests no reference against the model)
            sentence += (f" The model's AUC is nearest the {near} reference's ({known['model']:.2f} vs "
                         f"{refs[near]:.2f}; point estimates, not tested against each other).")
    html = ("<h3>Calibration panel: what good and bad generators score on this dataset</h3>" + table
            + f'<ul class="muted">{legend}</ul>')
    return html, sentence


__all__ = ["HEADLINE", "LEGEND", "c2st", "calibration", "features", "headline", "morphometry"]

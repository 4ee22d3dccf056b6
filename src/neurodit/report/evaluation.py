"""The evaluation sections: one renderer per metric family of ``metrics.json``.

The schema is the module docstring of :mod:`neurodit.metrics.evaluate`; the file is read by
:func:`neurodit.metrics.schema.read_metrics`. ``FAMILIES`` maps a family to (section, renderer);
a renderer takes the family's dict and returns (HTML, plain-words sentence or None). A family's own
``verdict`` sentence, when it carries one, goes to the summary first, before the renderer's sentence.
A family with no renderer is shown by :func:`other_family` (its verdict and every scalar value), so a
new family in metrics.json appears in the report before it has a dedicated renderer.

The judge's families (C2ST, feature metrics, morphometry, calibration: :mod:`neurodit.report.judge`)
form the section "judge"; the C2ST verdict leads the summary, then the calibration panel (one row per
generator, the model's first, as ``neurodit.metrics.verdicts.headline`` writes them), then the other families' verdicts (``PRIO``). A sentence
of the top-level ``verdicts`` map whose family does not carry it itself is said too.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from neurodit.errors import NeuroditError
from neurodit.metrics.schema import METRICS_FILE, families, metric_figures, read_metrics
from neurodit.report import html as H
from neurodit.report import judge as J

PAIRS = {"real_real": "real–real (floor)", "real_syn": "real–synthetic", "syn_syn": "synthetic–synthetic"}
MSSSIM_SETTINGS = ("kernel_size", "scales", "kernel_sigma", "weights", "data_range", "syn_syn_above_real_max")
MMD_KERNELS = ("linear", "rbf", "rbf_features")
Rendered = J.Rendered
MISSING = {"c2st": "Not run: metrics.json has no classifier two-sample test (C2ST).",
           "calibration": "Not run: no calibration panel (reference generators; evaluate --calibrate).",
           "features": "Not run: no feature-space metrics (Fréchet distance, precision / recall).",
           "morphometry": "Not run: no morphometry (tissue fractions, brain volume).",
           "msssim": "No MS-SSIM values in metrics.json.", "mmd": "No MMD values in metrics.json.",
           "memorization": "Not run: metrics.json has no memorization audit."}
SECTIONS = {"judge": "Can the judge tell them apart? Two-sample classifier, feature metrics, calibration",
            "similarity": "Similarity: MS-SSIM and MMD", "memorization": "Memorization audit"}
PRIO = {"c2st": -2, "calibration": -1}  # summary order: C2ST verdict, calibration panel, then the rest (1)


def _pair_rows(groups: dict, first: list | None = None) -> list[list]:
    """[(label), mean, CI low, CI high, pairs] per MS-SSIM pair group present (fixed order)."""
    return [[*(first or []), PAIRS[k], groups[k]["mean"], *groups[k]["ci95"], groups[k]["n_pairs"]]
            for k in PAIRS if k in groups]


def msssim(ms: dict) -> Rendered:
    out = ["<h3>3D MS-SSIM between pairs of volumes (higher = more alike)</h3>",
           H.table(["pairs", "mean MS-SSIM", "95% CI low", "95% CI high", "pairs used"], _pair_rows(ms)),
           H.details("MS-SSIM settings", H.table(["setting", "value"],
                                                 [(k, ms[k]) for k in MSSSIM_SETTINGS if k in ms]))]
    sentence = None
    if "real_real" in ms and "real_syn" in ms:
        floor, cross = ms["real_real"]["mean"], ms["real_syn"]["mean"]
        words = ("synthetic volumes resemble real ones as much as real ones resemble each other" if cross >= floor
                 else "synthetic volumes resemble real ones less than real ones resemble each other")
        if "syn_syn" in ms and ms["syn_syn"]["mean"] > floor:
            words += "; synthetic volumes are more alike to each other than real ones (less diversity)"
        sentence = f"MS-SSIM real–synthetic {H.fmt(cross, 3)} vs real–real floor {H.fmt(floor, 3)}: {words}."
        out.append(f"<p>{H.esc(sentence)}</p>")
    return "".join(out), sentence


def mmd(m: dict) -> Rendered:
    rows = []
    for kernel in (k for k in MMD_KERNELS if k in m):
        rs, fl = m[kernel]["real_syn"], m[kernel]["floor"]
        rows.append([kernel, rs["mmd2"], rs["p_value"], fl["mmd2"], fl["p_value"], f"{rs['n_x']} vs {rs['n_y']}",
                     rs["permutations"]])
    out = ("<h3>Kernel MMD² two-sample test, real vs synthetic, against the real–real floor</h3>"
           + H.table(["kernel", "MMD² real–synthetic", "p", "MMD² floor", "floor p", "volumes", "permutations"],
                     rows)
           + f'<p class="muted">features: {H.esc(m["features"])}; floor: {H.esc(m["floor_sets"])}.</p>')
    p = m["rbf"]["real_syn"]["p_value"] if "rbf" in m else None
    sentence = None if p is None else (f"RBF-kernel MMD: real and synthetic volumes "
                                       f"{'differ' if p < 0.05 else 'are not told apart'} (permutation p={p:.2g}).")
    return out, sentence


def tissue(t: dict) -> Rendered:
    rows = [[k, v["real_mean"], v["syn_mean"], v["wasserstein"], v["n_voxels"]] for k, v in t.items()
            if isinstance(v, dict)]
    return ("<h3>MD per tissue class (mm²/s)</h3>"
            + H.table(["tissue", "real mean", "synthetic mean", "Wasserstein distance", "voxels"], rows)
            + f'<p class="muted">Classes by the median real MD map: thresholds '
              f'{H.esc(", ".join(H.fmt(x) for x in t["thresholds_mm2s"]))} mm²/s.</p>'), None


def coherence(c: dict) -> Rendered:
    planes = [[p, v["real_real"], v["real_syn"], v["drop"], v["n_pairs"]] for p, v in c["ssim_2d"].items()]
    sc, an = c["slice_corr"], c["anisotropy"]
    rows = [("tiled axis", c["tiled_axis"]), ("through-plane excess drop", c["through_plane_excess_drop"]),
            ("adjacent-slice correlation, real", sc["real_mean"]),
            ("adjacent-slice correlation, synthetic", sc["syn_mean"]),
            ("mean |profile difference|", sc["mean_abs_profile_diff"]),
            ("anisotropy, real", an["real_mean"]), ("anisotropy, synthetic", an["syn_mean"]),
            ("anisotropy ratio synthetic / real", an["ratio_syn_over_real"])]
    return ("<h3>Slice coherence (is the 3D volume consistent across the tiled slices?)</h3>"
            + H.table(["plane", "2D SSIM real–real", "real–synthetic", "drop", "pairs"], planes)
            + H.table(["quantity", "value"], rows)), None


def paper(p: dict) -> Rendered:
    rows = [r for metric in ("msssim", "mmd_pairwise_msd") if metric in p
            for r in _pair_rows(p[metric], [metric.replace("_", " ")])]
    return ("<h3>The paper's protocol (64³, [0, 1], MONAI kernel 2)</h3>"
            + H.table(["metric", "pairs", "mean", "95% CI low", "95% CI high", "pairs used"], rows, numeric_from=2)
            + H.details("paper settings", H.table(["setting", "value"], _scalars(p.get("settings", {}))))), None


def memorization(a: dict) -> Rendered:
    flagged = a["flagged"]
    sentence = (("possible memorization" if flagged else "no sign of memorization")
                + f": {a['fraction_above']:.1%} of synthetic volumes are closer to a training volume than the "
                f"{a['percentile']:g}th percentile of held-out real subjects (expected {a['expected_fraction']:.1%}, "
                f"binomial p={a['binom_p']:.2g}); {a['n_duplicates']} near-duplicates.")
    nn = [[label, *(a[key][s] for s in ("mean", "median", "min", "max", "n"))]
          for label, key in (("synthetic", "syn_nn"), ("held-out real", "heldout_nn"))]
    cols = ["synthetic_id", "reference_id", "r", "synthetic", "reference"]
    out = [f'<p class="{"verdict-bad" if flagged else "verdict-good"}">{H.esc(sentence)}</p>',
           "<h3>Nearest-training-volume correlation (Pearson r, in the brain mask)</h3>",
           H.table(["set", "mean", "median", "min", "max", "volumes"], nn),
           "<h3>Synthetic volumes closest to a training volume</h3>",
           H.table(cols, [[c[k] for k in cols] for c in a["closest"]], numeric_from=2),
           H.details("All memorization values", H.table(["quantity", "value"], _scalars(a)))]
    return "".join(out), "Memorization: " + sentence


def _scalars(d: dict, prefix: str = "") -> list[tuple[str, object]]:
    """Every number/string/bool leaf of nested objects as (dotted key, value); lists of more than 4
    items (profiles, per-pair values, records) are left to the dedicated tables."""
    rows: list[tuple[str, object]] = []
    for k, v in d.items():
        if isinstance(v, dict):
            rows += _scalars(v, f"{prefix}{k}.")
        elif not isinstance(v, list) or (len(v) <= 4 and not any(isinstance(x, (dict, list)) for x in v)):
            rows.append((prefix + k, v))
    return rows


def other_family(d: dict) -> Rendered:
    """A family without a dedicated renderer: its verdict (if any) and every scalar value."""
    return H.table(["quantity", "value"], _scalars(d)), None


# family -> (section id, renderer), in summary order
FAMILIES: dict[str, tuple[str, Callable[[dict], Rendered]]] = {
    "c2st": ("judge", J.c2st), "calibration": ("judge", J.calibration), "memorization": ("memorization", memorization),
    "features": ("judge", J.features), "morphometry": ("judge", J.morphometry),
    "msssim": ("similarity", msssim), "mmd": ("similarity", mmd),
    "tissue": ("similarity", tissue), "coherence": ("similarity", coherence), "paper": ("similarity", paper),
}


def eval_sections(folders: list[Path], summary: H.Summary) -> str:
    """Sections "judge" (C2ST, features, morphometry, calibration), "similarity" (every other family but
    memorization) and "memorization"."""
    parts: dict[str, list[str]] = {k: [] for k in SECTIONS}
    if not folders:
        note = H.not_run("Not run: no evaluation folder (metrics.json) was given.")
        parts = {k: [note] for k in SECTIONS}
    for folder in folders:
        metrics = read_metrics(folder)
        fams = families(metrics)
        title = f"<h3>{H.esc(folder.name)}</h3>" if len(folders) > 1 else ""
        counts = ", ".join(f"{k[2:]}: {metrics[k]}" for k in ("n_real", "n_synthetic", "n_train")
                           if metrics.get(k) is not None)
        parts["similarity"].append(f'{title}<p class="muted">Protocol <code>{H.esc(metrics.get("protocol", "?"))}'
                                   f"</code>" + (f"; volumes {H.esc(counts)}" if counts else "") + ".</p>")
        parts["memorization"].append(title)
        parts["judge"].append(title)
        said: set[str] = set()
        for name in (*FAMILIES, *(f for f in fams if f not in FAMILIES)):
            section, render = FAMILIES.get(name, ("similarity", other_family))
            if name not in fams:
                continue
            fam = fams[name]
            try:
                body, sentence = render(fam)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise NeuroditError(f"family '{name}': missing or bad key {exc}", folder / METRICS_FILE) from exc
            verdict = fam.get("verdict")
            prio = PRIO.get(name, 1)
            # a family's own verdict replaces the renderer's sentence in the summary (one line per family)
            for text in (verdict,) if isinstance(verdict, str) else (sentence,):
                if text:
                    # the calibration sentence describes the references: neutral whatever its words
                    summary.say(text, "verdict-neutral" if name == "calibration" else None, prio=prio)
                    said.add(text)
            if name == "calibration":
                summary.raw(body.replace("<h3>", '<h3 class="muted">', 1), prio=prio)
            head = "" if render is not other_family else f"<h3>{H.esc(name.replace('_', ' '))}</h3>"
            if isinstance(verdict, str):  # under the renderer's own heading, when it starts with one
                cut = body.index("</h3>") + 5 if body.startswith("<h3>") else 0
                body = body[:cut] + f'<p class="{H.verdict_class(verdict)}">{H.esc(verdict)}</p>' + body[cut:]
            parts[section].append(head + body)
        for name, text in (metrics.get("verdicts") or {}).items():
            if isinstance(text, str) and text not in said:  # e.g. a diversity verdict with no family of its own
                summary.say(text, prio=PRIO.get(name, 1))
        for name, note in MISSING.items():
            if name not in fams:
                parts[FAMILIES[name][0]].append(H.not_run(note))
        pngs = metric_figures(folder, metrics)
        for name, section in (("msssim", "similarity"), ("memorization", "memorization")):
            if name in pngs:
                parts[section].append(H.figs([H.img(pngs[name].read_bytes(), name, pngs[name].name, "half")]))
        if metrics.get("notes"):
            parts["similarity"].append("<h3>How to read these numbers</h3><ul>"
                                       + "".join(f"<li>{H.esc(n)}</li>" for n in metrics["notes"]) + "</ul>")
        rest = [H.img(p.read_bytes(), n, f"{folder.name}/{p.name}", "half") for n, p in pngs.items()
                if n not in ("msssim", "memorization")]
        if rest:
            parts["similarity"].append("<h3>Evaluation figures</h3>" + H.figs(rest))
    return "".join(f'<section id="{k}"><h2>{H.esc(head)}</h2>' + "".join(parts[k]) + "</section>"
                   for k, head in SECTIONS.items())

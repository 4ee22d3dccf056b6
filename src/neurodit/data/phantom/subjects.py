"""Labels and hidden variables of phantom subjects (:func:`draw_subjects`), deterministic in the seed."""

from __future__ import annotations

import numpy as np
import pandas as pd

from neurodit.data.phantom.effects import (
    AGE_RANGE,
    COHORTS,
    SEVERITY_BASE,
    TISSUE_MD,
    PhantomEffects,
    StudyEffects,
)
from neurodit.errors import NeuroditError


def draw_subjects(cohort: str, n: int, seed: int = 0, include_mci: bool = False,
                  effects: PhantomEffects | None = None, study: StudyEffects | None = None) -> pd.DataFrame:
    """Labels and hidden variables of ``n`` subjects (one row each), deterministic in ``seed``.

    Columns: participant_id, sex, age, diagnosis (the participants table) and the latents
    scale (linear head scale), scale_x/y/z (per-axis), alpha (ventricular expansion), beta (GM->CSF
    atrophy), wm_md/gm_md/csf_md (mm²/s), sev_h/sev_v (AD severities), seed (per-subject stream).
    With ``study`` (the study model) also: n_wmh, n_lacunes (Poisson counts), vent_asym,
    vent_wx/wy/wz (ventricle envelope width factors), vent_dx/dy/dz (centre shift, mm), sulcal
    (sulcal widening), drawn from a separate stream so the classic columns are unchanged.
    """
    e = effects or PhantomEffects()
    if cohort not in COHORTS:
        raise NeuroditError(f"phantom: unknown cohort '{cohort}' (choose {', '.join(COHORTS)})")
    if n < 1:
        raise NeuroditError(f"phantom: --n must be >= 1, got {n}")
    if include_mci and cohort != "adni":
        raise NeuroditError("phantom: --include-mci only applies to the adni cohort")
    # independent streams via spawn keys (a plain list entropy drops trailing zeros: [s, 1, 0] == [s, 1])
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0,)))
    sex = rng.permutation(np.array(["F", "M"] * (n // 2 + 1))[:n])
    if cohort == "adni":
        classes = ["CN", "MCI", "AD"] if include_mci else ["CN", "AD"]
        diag = rng.permutation(np.array(classes * (n // len(classes) + 1))[:n])
    else:
        diag = np.array(["CN"] * n)
    lo, hi = AGE_RANGE[cohort]
    rows = []
    for i in range(n):
        r = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1, i)))  # one stream per subject
        age = float(np.round(r.uniform(lo, hi), 1))
        a = (age - 18.0) / 70.0
        sign = 1.0 if sex[i] == "M" else -1.0
        base = SEVERITY_BASE[str(diag[i])]
        sev_h = base + r.normal(0, e.sev_h_sd) if cohort == "adni" else 0.0
        sev_v = base + r.normal(0, e.sev_v_sd) if cohort == "adni" else 0.0
        scale = 1.0 + sign * e.head_sex + r.normal(0, e.head_sd)
        sx, sy, sz = scale * (1.0 + r.normal(0, e.head_aniso_sd, 3))
        rows.append({
            "participant_id": f"sub-{i + 1:04d}", "sex": str(sex[i]), "age": age, "diagnosis": str(diag[i]),
            "scale": scale, "scale_x": sx, "scale_y": sy, "scale_z": sz,
            "alpha": float(np.clip(e.vent_base + e.vent_age * a + e.ad_vent * sev_v + r.normal(0, e.vent_sd),
                                   0.0, 0.45)),
            "beta": float(np.clip(e.atrophy_age * a + r.normal(0, e.atrophy_sd), 0.0, 0.5)),
            "wm_md": TISSUE_MD["wm"] * (1.0 + e.wm_age * a + r.normal(0, e.wm_sd)),
            "gm_md": TISSUE_MD["gm"] * (1.0 + r.normal(0, e.gm_sd)),
            "csf_md": TISSUE_MD["csf"] * (1.0 + r.normal(0, e.csf_sd)),
            "sev_h": sev_h, "sev_v": sev_v,
            "seed": int(r.integers(0, 2**31 - 1)),
        })
        if study is not None:
            rows[-1].update(_draw_study_latents(study, seed, i, a, sev_h, sev_v))
    return pd.DataFrame(rows)


def _draw_study_latents(s: StudyEffects, seed: int, i: int, a: float, sev_h: float, sev_v: float) -> dict:
    r = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2, i)))
    sev = max(0.0, 0.5 * (sev_h + sev_v))
    wx, wy, wz = np.clip(1.0 + r.normal(0, s.vent_shape_sd, 3), 0.6, 1.5)
    dx, dy, dz = r.normal(0, s.vent_shift_sd_mm, 3)
    return {
        "n_wmh": int(r.poisson(s.wmh_base + s.wmh_age * a**2 + s.wmh_ad * sev)),
        "n_lacunes": int(r.poisson(s.lacune_base + s.lacune_age * a**2 + s.lacune_ad * sev)),
        "vent_asym": float(np.clip(r.normal(0, s.vent_asym_sd), -0.5, 0.5)),
        "vent_wx": float(wx), "vent_wy": float(wy), "vent_wz": float(wz),
        "vent_dx": float(dx), "vent_dy": float(dy), "vent_dz": float(dz),
        "sulcal": float(np.clip(s.sulcal_age * a + r.normal(0, s.sulcal_sd), 0.0, 1.0)),
    }

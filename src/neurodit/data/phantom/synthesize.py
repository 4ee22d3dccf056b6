"""One subject's MD map from its :func:`~neurodit.data.phantom.subjects.draw_subjects` row.

The pipeline is shared: tissue mixture in template space -> pull-back warp (head scale, ventricular
expansion, smooth random deformation) -> scanner effects -> background 0. Where the ``classic`` and
the ``study`` model differ, :class:`ClassicModel` and :class:`StudyModel` (one method per step) say how;
the classic one is the model before issue 11, bit for bit.

FA (:mod:`neurodit.data.phantom.fa`, issue 22) comes from the same run: the same tissue fractions,
atrophy, lesions, warp and site blur, and the MD map itself; its draws have a stream of their own (spawn
key 9 of the subject's seed), so asking for FA leaves the MD map's bytes as they were.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage

from neurodit.data.phantom.effects import (
    BACKGROUND_MM2S,
    VENTRICLE_CENTRE_MM,
    VENTRICLE_SIGMA_MM,
    PhantomEffects,
    StudyEffects,
)
from neurodit.data.phantom.fa import FA_STREAM, FAEffects, fa_from, fa_latents, tissue_aniso
from neurodit.data.phantom.lesions import draw_lesions, study_maps
from neurodit.data.phantom.site import SITES, SiteEffects, apply_site, blur_in_support
from neurodit.data.phantom.templates import Templates, gauss_1d, outer3, separable
from neurodit.errors import NeuroditError

Row = dict | pd.Series
MAP_NAMES = ("md", "fa")  # the maps the phantom writes


class ClassicModel:
    """The model before issue 11: template tissue, Gaussian ventricles, one deformation scale, voxel noise."""

    def tissue(self, t: Templates, row: Row) -> tuple[np.ndarray, np.ndarray]:
        """(GM, CSF) fractions (D, H, W) before atrophy."""
        return t.gm, t.csf

    def wm_md(self, row: Row) -> float:
        return float(row["wm_md"])

    def lesions(self, t: Templates, row: Row, md: np.ndarray) -> tuple[np.ndarray, dict[str, float], list]:
        """(MD map with the model's focal changes, lesion volumes, those changes in order as (kind, (D, H, W)
        map): ("csf", fraction replaced by CSF) or ("wmh", relative MD increase)): none here."""
        return md, {}, []

    def wm_fa_factor(self, row: Row, f: FAEffects) -> float:
        """Relative WM FA change of the model's disease effects: none here."""
        return 1.0

    def ventricles(self, row: Row, y: list[np.ndarray], alpha: float) -> tuple[tuple[float, ...], np.ndarray]:
        """(expansion centre mm, alpha x envelope (D, H, W)) at the head-scaled positions ``y``."""
        c = VENTRICLE_CENTRE_MM
        return c, alpha * outer3(*(gauss_1d(y[k], c[k], VENTRICLE_SIGMA_MM[k]) for k in range(3)))

    def fine_warp(self, t: Templates) -> np.ndarray | None:
        """Extra displacement (voxels, (D, H, W)) of one axis on top of the coarse one; None: none."""
        return None

    def scanner(self, out: np.ndarray, t: Templates, e: PhantomEffects, rng: np.random.Generator,
                noise: bool) -> np.ndarray:
        if noise:
            out *= 1.0 + rng.standard_normal(t.shape, dtype=np.float32) * np.float32(e.noise_sd)
        return out

    def fa_scanner(self, s: np.ndarray, md: np.ndarray, t: Templates, f: FAEffects, rng: np.random.Generator,
                   noise: bool) -> np.ndarray:
        """FA (D, H, W) from the warped deviatoric norm ``s`` and the warped MD before the scanner, with
        relative voxel noise of its own (FA's noise is not MD's: a ratio of the same signals)."""
        fa = fa_from(s, md)
        if noise:
            fa *= 1.0 + rng.standard_normal(t.shape, dtype=np.float32) * np.float32(f.noise_sd)
        return fa


class StudyModel(ClassicModel):
    """The study model (issue 11): sulcal widening, AD WM MD and hippocampal atrophy, lesions, shaped
    ventricles, a fine cortical deformation and the site's effects.

    Its draws come from streams of their own (spawn keys 7 and 8 of the subject's seed), so the classic
    draws, and with them the classic anatomy of the same subject, stay as they were; lesions have their
    own stream so that switching them off leaves the anatomy and the site untouched.
    """

    def __init__(self, study: StudyEffects, site: SiteEffects | None, row: Row, t: Templates):
        self.s, self.site = study, site or SITES["none"]
        seed = int(row["seed"])
        self.rs = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(7,)))
        self.rl = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(8,)))
        self.maps = study_maps(t, study.wmh_periventricular)

    def tissue(self, t: Templates, row: Row) -> tuple[np.ndarray, np.ndarray]:
        # sulcal widening: a fraction w(x) of the one-voxel cortical CSF dilation, w = sulcal latent
        # modulated by a smooth regional field (so sulci widen unevenly)
        nb = tuple(b.shape[1] for b in t.field_basis)
        w = float(row["sulcal"]) * (1.0 + separable(t.field_basis, self.rs.normal(
            0.0, self.s.sulcal_field_sd, nb).astype(np.float32)))
        widen = np.clip(w, 0.0, 1.0).astype(np.float32) * self.maps.sulcal_delta
        return t.gm - widen, t.csf + widen

    def wm_md(self, row: Row) -> float:  # AD: diffusely raised WM MD (mean severity, clipped at 0)
        return float(row["wm_md"]) * (1.0 + self.s.ad_wm_md * max(
            0.0, 0.5 * (float(row["sev_h"]) + float(row["sev_v"]))))

    def lesions(self, t: Templates, row: Row, md: np.ndarray) -> tuple[np.ndarray, dict[str, float], list]:
        csf_md = float(row["csf_md"])
        # AD hippocampal atrophy: tissue replaced by CSF (enlarged temporal horn), a non-linear,
        # CSF-contrast change that the site's blur and noise do not wash out
        h = np.clip(self.s.hippo_atrophy * float(row["sev_h"]), 0.0, 0.6) * t.hippocampus
        md = md * (1.0 - h) + h * csf_md
        wmh, lac, info = draw_lesions(t, row, self.s, self.rl)
        md *= 1.0 + wmh                                 # WMH: MD +20-50 % in the patch
        md = md * (1.0 - lac) + lac * csf_md            # lacunes: CSF-filled cavities
        return md, info, [("csf", h), ("wmh", wmh), ("csf", lac)]

    def wm_fa_factor(self, row: Row, f: FAEffects) -> float:  # AD: WM FA lower with the mean severity
        return 1.0 - f.ad_wm * max(0.0, 0.5 * (float(row["sev_h"]) + float(row["sev_v"])))

    def ventricles(self, row: Row, y: list[np.ndarray], alpha: float) -> tuple[tuple[float, ...], np.ndarray]:
        # shifted centre, per-axis envelope widths, left-right asymmetric expansion
        # (factor 1 + asym·tanh(x / 10 mm) <= 1.5, so alpha·factor stays < 0.7: still no folding)
        c = VENTRICLE_CENTRE_MM
        cv = tuple(c[k] + float(row[f"vent_d{'xyz'[k]}"]) for k in range(3))
        env = [gauss_1d(y[k], cv[k], VENTRICLE_SIGMA_MM[k] * float(row[f"vent_w{'xyz'[k]}"])) for k in range(3)]
        env[0] = env[0] * (1.0 + float(row["vent_asym"]) * np.tanh((y[0] - cv[0]) / 10.0))
        return cv, alpha * outer3(*env)

    def fine_warp(self, t: Templates) -> np.ndarray | None:  # second, finer scale (16 mm control points)
        fb = self.maps.fine_basis
        coef = self.rs.normal(0.0, self.s.warp_fine_sd_mm / t.voxel_size, tuple(b.shape[1] for b in fb))
        return self.maps.fine_weight * separable(fb, coef.astype(np.float32))

    def scanner(self, out: np.ndarray, t: Templates, e: PhantomEffects, rng: np.random.Generator,
                noise: bool) -> np.ndarray:
        out[out < BACKGROUND_MM2S] = 0.0  # the site's blur is normalised inside the brain support
        return apply_site(out, self.site, t.voxel_size, self.rs, noise=noise)

    def fa_scanner(self, s: np.ndarray, md: np.ndarray, t: Templates, f: FAEffects, rng: np.random.Generator,
                   noise: bool) -> np.ndarray:
        # the site's blur acts on the signals, i.e. on the tensor: blur s and MD alike (same support as
        # the MD map's blur), then FA; MD scale and bias field scale s and MD alike: FA does not see them
        if self.site.blur_fwhm_mm > 0:
            support = (md >= BACKGROUND_MM2S).astype(np.float32)
            s = blur_in_support(s, support, self.site.blur_fwhm_mm, t.voxel_size)
            md = blur_in_support(np.where(support > 0, md, 0.0).astype(np.float32), support,
                                 self.site.blur_fwhm_mm, t.voxel_size)
        fa = fa_from(s, md)
        if noise and self.site.noise_sd > 0:
            fa *= 1.0 + rng.standard_normal(t.shape, dtype=np.float32) * np.float32(self.site.noise_sd)
        return fa


def synthesize_subject(t: Templates, row: Row, effects: PhantomEffects | None = None,
                       *, deform: bool = True, noise: bool = True, field: bool = True,
                       study: StudyEffects | None = None, site: SiteEffects | None = None) -> np.ndarray:
    """One MD map (D, H, W) float32 in mm²/s on the template grid, from one :func:`draw_subjects` row.

    ``deform``/``noise``/``field`` switch off the random deformation, voxel noise and random MD
    field (tests use them to check tissue values exactly); the labelled effects always apply.
    ``study`` (with a row drawn with the same ``study``) adds lesions, multi-scale deformation,
    ventricle shape and sulcal widening; ``site`` (study model only; default :data:`SITES` "none")
    replaces the voxel noise by the site's effects. Without ``study``: the classic model, bit for bit.
    """
    return synthesize_with_lesions(t, row, effects, deform=deform, noise=noise, field=field, study=study,
                                   site=site)[0]


def synthesize_with_lesions(t: Templates, row: Row, effects: PhantomEffects | None = None,
                            *, deform: bool = True, noise: bool = True, field: bool = True,
                            study: StudyEffects | None = None,
                            site: SiteEffects | None = None) -> tuple[np.ndarray, dict[str, float]]:
    """:func:`synthesize_subject` plus the lesion volumes ``{"wmh_ml", "lacune_ml"}`` (template
    space, partial-volume sums; empty dict for the classic model)."""
    vols, info = synthesize_maps(t, row, effects, deform=deform, noise=noise, field=field, study=study, site=site)
    return vols["md"], info


def synthesize_maps(t: Templates, row: Row, effects: PhantomEffects | None = None,
                    *, deform: bool = True, noise: bool = True, field: bool = True,
                    study: StudyEffects | None = None, site: SiteEffects | None = None,
                    maps: tuple[str, ...] = ("md",),
                    fa: FAEffects | None = None) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """One subject's maps ``{name: (D, H, W) float32}`` for ``maps`` (md: mm²/s; fa: unitless in [0, 1])
    from one latent subject, and ``info``: the lesion volumes (:func:`synthesize_with_lesions`), plus
    the subject's pure-tissue FA levels ``wm_fa``, ``gm_fa`` when FA is asked for.

    The MD map is the same, byte for byte, whichever maps are asked for. ``fa``: FA sizes (defaults if None).
    """
    unknown = [m for m in maps if m not in MAP_NAMES]
    if unknown or not maps:
        raise NeuroditError(f"phantom: unknown map '{unknown[0] if unknown else ''}' (choose {', '.join(MAP_NAMES)})")
    e = effects or PhantomEffects()
    model = ClassicModel() if study is None else StudyModel(study, site, row, t)
    rng = np.random.default_rng(int(row["seed"]))  # the classic stream: MD field, warp, voxel noise
    md, info, latent = _tissue_md(t, row, e, model, rng, field)
    coords = _pullback(t, row, e, model, rng, deform)
    out = ndimage.map_coordinates(md, coords, order=1, mode="constant", cval=0.0, prefilter=False,
                                  output=np.float32)
    pre = out.copy() if "fa" in maps else None  # (D, H, W) MD before the scanner: FA's MD
    out = model.scanner(out, t, e, rng, noise)
    # Template resampling and the warp leave a halo of tiny positive values (down to 1e-19) around
    # the brain; below 1% of WM MD nothing is tissue, so the background is exactly 0, as the input
    # format promises.
    out[out < BACKGROUND_MM2S] = 0.0
    vols = {"md": out}
    if pre is not None:
        f = fa or FAEffects()
        rf = np.random.default_rng(np.random.SeedSequence(int(row["seed"]), spawn_key=(FA_STREAM,)))
        lat = fa_latents(row, f, rf)
        lat["wm_fa"] *= model.wm_fa_factor(row, f)
        s = tissue_aniso(t, lat, model.wm_md(row), float(row["gm_md"]), float(row["csf_md"]), latent["gm"],
                         latent["csf"], latent["beta"], latent["focal"], f, rf)
        s = ndimage.map_coordinates(s, coords, order=1, mode="constant", cval=0.0, prefilter=False,
                                    output=np.float32)
        fa_map = model.fa_scanner(s, pre, t, f, rf, noise)
        # FA in [0, 1] and exactly 0 where the MD map is background: one brain outline for both maps
        vols["fa"] = np.where(out > 0, np.clip(fa_map, 0.0, 1.0), 0.0).astype(np.float32)
        info = {**info, **lat}
    return {m: vols[m] for m in maps}, info


def _tissue_md(t: Templates, row: Row, e: PhantomEffects, model: ClassicModel, rng: np.random.Generator,
               field: bool) -> tuple[np.ndarray, dict[str, float], dict]:
    """(D, H, W) float32 MD in template space (before any warp), the lesion volumes, and the tissue
    the MD was mixed from (``gm``, ``csf`` fractions, ``beta``, ``focal``: the lesion model's changes in order),
    which the FA map shares."""
    sign = 1.0 if row["sex"] == "M" else -1.0
    # relative MD field f (D, H, W): random smooth blobs + sex pattern (± half the M-F difference);
    # the coefficients are drawn even without ``field``, so the later draws do not move
    nb = tuple(b.shape[1] for b in t.field_basis)
    coef = rng.normal(0.0, e.field_sd, nb).astype(np.float32)
    f = separable(t.field_basis, coef) if field else np.zeros(t.shape, np.float32)
    f += (0.5 * sign * e.sex_md) * t.sex_pattern
    gm, csf = model.tissue(t, row)
    # tissue mixture; atrophy turns a fraction beta of GM into CSF
    beta = float(row["beta"])
    md = (gm * ((1.0 - beta) * float(row["gm_md"])) + t.wm * model.wm_md(row)) * (1.0 + f)
    md += (csf + beta * gm) * float(row["csf_md"])
    md *= 1.0 + (e.hippo_md * float(row["sev_h"])) * t.hippocampus  # AD: medial-temporal MD increase
    md, info, focal = model.lesions(t, row, md)
    return md.astype(np.float32), info, {"gm": gm, "csf": csf, "beta": beta, "focal": focal}


def _pullback(t: Templates, row: Row, e: PhantomEffects, model: ClassicModel, rng: np.random.Generator,
              deform: bool) -> np.ndarray:
    """(3, D, H, W) float32: for each output voxel the template-space position it samples (voxel units)."""
    v = t.voxel_size
    # 1) undo head scaling about the ventricle centre (per axis: separable), in mm
    c = VENTRICLE_CENTRE_MM
    scales = (float(row["scale_x"]), float(row["scale_y"]), float(row["scale_z"]))
    y = [c[k] + (t.axes_mm[k] - c[k]) / scales[k] for k in range(3)]  # 3 x (n_k,)
    # 2) ventricular expansion: y' = y - alpha g(y) (y - c), g separable Gaussian envelope; no folding
    #    for alpha < 1 (radial derivative >= 1 - alpha)
    cv, g = model.ventricles(row, y, float(row["alpha"]))  # g: (D, H, W)
    coords = np.empty((3,) + t.shape, np.float32)
    for k in range(3):
        bshape = [-1 if j == k else 1 for j in range(3)]
        yk = y[k].reshape(bshape).astype(np.float32)
        ck = (yk - (yk - cv[k]) * g - t.affine[k, 3]) / v
        if deform:  # 3) smooth random displacement (mm -> voxels)
            nw = tuple(b.shape[1] for b in t.warp_basis)
            ck = ck + separable(t.warp_basis, rng.normal(0.0, e.warp_sd_mm / v, nw).astype(np.float32))
            fine = model.fine_warp(t)
            if fine is not None:
                ck = ck + fine
        coords[k] = ck
    return coords

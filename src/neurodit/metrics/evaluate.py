"""``neurodit evaluate``: compare a synthetic cohort with a real one (and the training set).

Inputs are cohort folders (docs/ARCHITECTURE.md, input format), MD in mm²/s, all on one grid
(``load_volumes(cohort, grid=None)``; the three folders must share that grid too, else NeuroditError).
Metrics are computed in model range ([-1, 1], :class:`neurodit.data.normalize.Normalization`) inside
a brain mask (:func:`neurodit.data.mask.support_mask`: voxels with MD > 1e-4 mm²/s in at least half of the
real (+ training) volumes); the tissue histograms in mm²/s.

This module is the orchestration: the families' numbers are in :mod:`neurodit.metrics.families`, their
sentences in :mod:`neurodit.metrics.verdicts`, the reference generators' panel in
:mod:`neurodit.metrics.calibration`, the settings in :mod:`neurodit.metrics.config`.
:func:`write_evaluation` is the one writer of an EVAL_DIR (``evaluate`` and ``neurodit compare`` call it).

Memory is flat in the number of synthetic volumes: ``evaluate`` loads each folder into a scratch ``.npy``
(:class:`neurodit.metrics.volumes.DiskVolumes`) and every family reads it a few volumes at a time (model
range converted on the fly, MMD from a streamed Gram matrix, pairwise metrics read only the volumes of
their sampled pairs, the C2ST only its balanced subsets); ``evaluate_arrays`` on in-memory arrays
computes the same numbers the in-memory way. The calibration panel's reference samples are in memory.

``EVAL_DIR/metrics.json`` (all numbers float unless said; "pairs" are seeded random subsets when
there are more than ``max_pairs``; ci95 = percentile bootstrap of the mean over pairs)::

    schema          "neurodit.metrics/1" (:data:`neurodit.metrics.schema.SCHEMA`; checked by ``read_metrics``)
    protocol        "ours" | "paper" ("paper" = everything of "ours" plus the "paper" section)
    n_real, n_synthetic, n_train (int | null), mask_voxels (int), grid {shape, affine},
    normalization   {vmin, vmax, unit}
    msssim          {real_real | real_syn | syn_syn: {mean, ci95: [lo, hi], n_pairs},
                     kernel_size, scales, kernel_sigma, weights, data_range,
                     syn_syn_above_real_max (fraction of syn-syn pairs more alike than the most alike
                     real-real pair: near-duplicates)}    3D MS-SSIM in model range
                     (syn_syn high vs real_real = low diversity / mode collapse; real_syn low = poor fidelity)
    mmd             {features: str, floor_sets: str,
                     linear: {real_syn, floor: {mmd2, p_value, kernel, n_x, n_y, permutations}},
                     rbf:    {real_syn, floor: {mmd2, p_value, bandwidth, kernel, n_x, n_y, permutations}},
                     rbf_features: {same as rbf, on a fixed encoder's features; only when one is given}}
                     floor = real train vs real held-out (or two halves of REAL_DIR without --train)
    memorization    {similarity, heldout, reference_set, percentile, threshold, n_above, fraction_above,
                     expected_fraction, binom_p, flagged (bool), n_duplicates, duplicate_r,
                     syn_nn {mean, median, min, max, n}, heldout_nn {...},
                     closest [{synthetic, reference, r, synthetic_id, reference_id}]}
    coherence       {tiled_axis, ssim_2d {sagittal|coronal|axial: {real_real, real_syn, drop, n_pairs}},
                     through_plane_excess_drop, slice_corr {real_mean, syn_mean, mean_abs_profile_diff,
                     real_profile [..], syn_profile [..]}, anisotropy {real_mean, syn_mean,
                     ratio_syn_over_real}}   excess drop = mean(sagittal, coronal drop) - axial drop:
                     > 0 means the axial slices are fine but do not stack into coherent 3D volumes
    tissue          {class: {real_mean, syn_mean, wasserstein, n_voxels}, thresholds_mm2s: [t1, t2]}
                     classes by the median real MD (mm²/s), values > 1e-4 only; wasserstein in mm²/s
    c2st            (cfg.c2st) {real_side: "heldout" | "train+heldout", views: {voxel|texture|cnn: {view, auc,
                     auc_ci95: [lo, hi], auc_ci95_bootstrap, auc_pooled, p_value, n_real, n_synthetic, folds, permutations, method,
                     seconds, verdict}}, skipped: [str], verdict}   classifier two-sample test
                     (neurodit.metrics.c2st): AUC 0.5 = indistinguishable; judge by p_value
    diversity       {syn_syn, real_real, syn_syn_above_real_max, identical_pairs (fraction of synthetic pairs
                     with MS-SSIM > 0.9999), zero_diversity (bool), low_diversity (bool), verdict}
    features        (cfg.features; needs --train or --encoder) neurodit.metrics.features.feature_metrics:
                     {encoder {kind, source, sha256, dim, trained_on, cached, ...}, view {version, blocks
                     {encoder, texture}, standardized_on, weighting}, dim, n_real, n_synthetic, k, frechet,
                     frechet_ratio (frechet / floor.frechet; null without a floor), precision, recall, density,
                     coverage, by_block {encoder|texture: {frechet, floor_frechet, frechet_ratio}}, texture {stat:
                     {real_mean, syn_mean, syn_z}}, floor {sets, n_reference, frechet, precision, recall,
                     density, coverage} | null, warnings [str], verdict}  the feature view: a fixed 3D encoder's
                     pooled features (our own, trained on TRAIN_DIR only and cached by its hash, or --encoder)
                     beside texture statistics in the mask, z-scored on TRAIN_DIR, equal weight per block
    morphometry     (cfg.morphometry) neurodit.metrics.morphometry.morphometry_metrics: {measures {name:
                     {real_mean, real_sd, syn_mean, syn_sd, wasserstein, ks_p}}, effects {csf_fraction_age_slope,
                     brain_volume_sex_diff_ml: {real, synthetic, real_ci95, synthetic_ci95, unit}},
                     thresholds_mm2s, voxel_volume_ml, n_real, n_synthetic, verdict}
    verdicts        {family: one sentence a clinician understands}, families in FAMILIES order
                     (msssim, mmd, memorization, coherence and tissue carry no verdict key of their own
                     except msssim = fidelity, mmd, memorization: each has a "verdict" entry)
    calibration     (cfg.calibrate, needs train) {model | pca | noise | copy | mean: headline numbers
                     {n_synthetic, c2st {view: {auc, auc_ci95, p_value}}, msssim {real_syn, syn_syn, real_real},
                     diversity {zero_diversity, identical_pairs}, mmd_rbf {mmd2, p_value},
                     memorization {fraction_above, flagged}, features {frechet, frechet_ratio, precision, recall,
                     density, coverage} (with an encoder), verdicts {family: sentence}},
                     labels {kind: {class: count}}}  the same families for the reference generators
                     (neurodit.generators.reference) fitted on TRAIN_DIR, same n and label balance as the
                     synthetic set: what good (pca), bad (noise, mean) and copying (copy) look like here
    paper           (protocol "paper") {msssim {real_real|real_syn|syn_syn: {mean, ci95, n_pairs}},
                     mmd_pairwise_msd {same groups}, settings {...}}
    figures         {name: path relative to EVAL_DIR}
    inputs          {real, synthetic, train (or null)}  folder paths as given
    timings_s       {section: seconds}
    notes           [str]  how to read the numbers (which held-out set, what the paper "MMD" is)
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neurodit.data.mask import support_mask
from neurodit.data.normalize import Normalization
from neurodit.errors import NeuroditError
from neurodit.io import atomic_dir, seed_everything, timed, write_json, write_run_info
from neurodit.metrics.calibration import calibration_panel
from neurodit.metrics.coherence import coherence_report
from neurodit.metrics.config import EvalConfig
from neurodit.metrics.families import (
    PAIR_VOXELS,
    c2st_family,
    floor_split,
    memorization_family,
    mmd_family,
    msssim_family,
    pairs_for,
    strip_arrays,
    tissue_family,
)
from neurodit.metrics.msssim import MSSSIMSettings, choose_settings
from neurodit.metrics.schema import METRICS_FILE, SCHEMA
from neurodit.metrics.verdicts import (
    c2st_with_audit,
    collect_verdicts,
    diversity_family,
    fidelity_verdict,
    memorization_verdict,
    mmd_verdict,
)
from neurodit.metrics.volumes import DiskVolumes, ModelRange, is_lazy, model_range_on_disk
from neurodit.optim import usable_cores


@dataclasses.dataclass
class _Sets:
    """The volume sets of one evaluation, checked to share one grid: as given (mm²/s, in memory or on
    disk: on-disk sets stay lazy, every family reads them a few volumes at a time) and in model range."""

    real: Any  # (N_r, D, H, W) mm²/s
    synthetic: Any  # (N_s, D, H, W)
    train: Any | None  # (N_t, D, H, W) or None
    r_m: Any  # the same in model range [-1, 1], background -1
    s_m: Any
    t_m: Any | None
    mask: np.ndarray  # (D, H, W) bool: brain in at least half of the real (+ training) volumes
    settings: MSSSIMSettings  # MS-SSIM kernel and scales that fit the grid


def _as_set(x):
    """On-disk sets stay as they are (read lazily); anything else becomes a float32 ndarray."""
    return x if is_lazy(x) else np.asarray(x, dtype=np.float32)


def _to_model(x, norm: Normalization):
    """Model range of a set: a full converted copy in memory, a converted scratch copy of an on-disk set, or
    a lazy view of another lazy set (a memmap)."""
    if isinstance(x, DiskVolumes):
        return model_range_on_disk(x, norm)
    return ModelRange(x, norm) if is_lazy(x) else norm.to_model(x)


def _prepare_sets(real, synthetic, train, norm: Normalization) -> _Sets:
    """:class:`_Sets` of the given volumes; NeuroditError on fewer than 2 volumes, mixed grids, a grid too
    small for MS-SSIM or (almost) no brain voxels."""
    real, synthetic = _as_set(real), _as_set(synthetic)
    train = None if train is None else _as_set(train)
    for name, s in (("real", real), ("synthetic", synthetic), ("train", train)):
        if s is not None and (s.ndim != 4 or len(s) < 2):
            raise NeuroditError(f"{name} set must hold >= 2 volumes (N, D, H, W), got shape {s.shape}")
    shapes = {s.shape[1:] for s in (real, synthetic, train) if s is not None}
    if len(shapes) != 1:
        raise NeuroditError(f"volumes are on different grids: shapes {sorted(shapes)}")
    settings = choose_settings(real.shape[1:], data_range=2.0, what="evaluation grid")
    mask = support_mask(real, *(() if train is None else (train,)))
    if mask.sum() < 10:
        raise NeuroditError("real volumes have (almost) no brain voxels (MD > 0): nothing to evaluate")
    return _Sets(real, synthetic, train, _to_model(real, norm), _to_model(synthetic, norm),
                 None if train is None else _to_model(train, norm), mask, settings)


def evaluate_arrays(real: np.ndarray, synthetic: np.ndarray, train: np.ndarray | None = None,
                    cfg: EvalConfig | None = None, norm: Normalization | None = None,
                    fig_dir: Path | None = None, real_ids: list[str] | None = None,
                    syn_ids: list[str] | None = None, train_ids: list[str] | None = None,
                    encoder: Callable[[torch.Tensor], torch.Tensor] | None = None,
                    syn_labels: list[str | None] | None = None,
                    train_labels: list[str | None] | None = None, voxel_volume_ml: float | None = None,
                    tables: dict | None = None, map_name: str = "md") -> dict:
    """All metrics for (N, D, H, W) volumes in mm²/s on one grid; returns the metrics.json dict.
    ``map_name`` other than md: the sets are that map on MD's scale; tissue and morphometry are skipped.

    ``train`` given: memorization is against it with ``real`` as held-out subjects, and the MMD
    floor is MMD(train, real). Without it: memorization against ``real`` (leave-one-out held-out),
    floor = MMD between two seeded halves of ``real``. Figures go to ``fig_dir`` when given.
    ``encoder``: a fixed network (B, 1, D, H, W) model range -> (B, F); when given, the RBF MMD is also
    computed on its features (``mmd.rbf_features``). ``syn_labels`` / ``train_labels`` (one class of
    ``cfg.condition`` per volume, or None) set the class balance of the calibration generators.
    ``voxel_volume_ml`` (the grid's voxel volume) enables the morphometry family; ``tables``
    (``{"real" | "synthetic" | "train": cohort table}``, rows aligned with the volumes) give it ages and sexes,
    and the encoder its training labels.
    """
    cfg = cfg or EvalConfig()
    tables = tables or {}
    if cfg.calibrate and train is None:
        raise NeuroditError("--calibrate needs --train (the reference generators are fitted on it)")
    ids = {"real": real_ids, "synthetic": syn_ids, "train": train_ids}

    def run() -> dict:
        t0 = time.perf_counter()
        feat_encoder = feature_encoder(train, tables.get("train"), cfg, norm)
        enc_s = time.perf_counter() - t0
        out = _evaluate_arrays(real, synthetic, train, cfg, norm, fig_dir, ids,
                               encoder if encoder is not None else feat_encoder, feat_encoder=feat_encoder,
                               map_name=map_name)
        if feat_encoder is not None:
            out["timings_s"]["encoder"] = round(enc_s, 3)
        if cfg.morphometry and voxel_volume_ml is not None and map_name == "md":
            from neurodit.metrics.morphometry import morphometry_metrics

            t0 = time.perf_counter()
            out["morphometry"] = morphometry_metrics(real, synthetic, support_mask(real), voxel_volume_ml,
                                                     tables.get("real"), tables.get("synthetic"))
            out["timings_s"]["morphometry"] = round(time.perf_counter() - t0, 3)
            out["verdicts"] = collect_verdicts(out)
        if cfg.calibrate:
            light_cfg = dataclasses.replace(cfg, calibrate=False, figures=False)

            def judge(vols: np.ndarray, tr: np.ndarray) -> dict:  # the light families of one reference set
                return _evaluate_arrays(real, vols, tr, light_cfg, norm, None, {}, feat_encoder, light=True,
                                        feat_encoder=feat_encoder)

            t0 = time.perf_counter()
            out["calibration"] = calibration_panel(judge, train, len(synthetic), cfg.seed, out, syn_labels,
                                                   train_labels)
            out["timings_s"]["calibration"] = round(time.perf_counter() - t0, 3)
        return out

    if cfg.threads == 0:
        return run()
    old_threads = torch.get_num_threads()
    big = int(np.prod(real.shape[1:])) > PAIR_VOXELS  # the size above which the pair budgets shrink too
    torch.set_num_threads(cfg.threads if cfg.threads > 0 else (usable_cores() if big else 1))
    try:
        return run()
    finally:
        torch.set_num_threads(old_threads)


def feature_encoder(train: np.ndarray | None, train_table, cfg: EvalConfig, norm: Normalization | None):
    """The fixed encoder of the feature metrics: ``cfg.encoder`` (a user's file), else our own trained on
    the real training volumes only and cached by their hash; None when ``cfg.features`` is off or there is
    neither an encoder file nor a training set."""
    if not cfg.features or (cfg.encoder is None and train is None):
        return None
    import os

    from neurodit.metrics.encoder import get_encoder

    cache = cfg.encoder_cache or os.environ.get("NEURODIT_CACHE") or Path.home() / ".cache" / "neurodit"
    t = None if train is None else np.asarray(train, dtype=np.float32)
    return get_encoder(t, train_table, None if t is None else support_mask(t), Path(cache) / "encoders",
                       encoder_path=cfg.encoder, seed=cfg.seed, norm=norm or Normalization())


def _evaluate_arrays(real, synthetic, train, cfg: EvalConfig, norm, fig_dir, ids: dict, encoder,
                     light: bool = False, feat_encoder=None, map_name: str = "md") -> dict:
    """``light``: only the families of the calibration panel (MS-SSIM, MMD, memorization, C2ST, features).
    ``map_name`` other than md: the sets are that map on MD's scale; the tissue classes (MD thresholds) are
    skipped and the mosaic figure says how to read its scale.

    The families run in a fixed order: ``rng`` (seed ``cfg.seed``) draws the MMD floor's halves, then the
    tissue histograms' voxels."""
    norm = norm or Normalization()
    s = _prepare_sets(real, synthetic, train, norm)
    rng = np.random.default_rng(cfg.seed)
    timings: dict[str, float] = {}
    with timed(timings, "msssim"):
        ms, msssim = msssim_family(s.r_m, s.s_m, s.settings, cfg.max_pairs, cfg.seed, cfg.bootstrap)
    with timed(timings, "mmd"):
        halves = None if s.t_m is not None else floor_split(rng, len(s.real))
        mmd = mmd_family(s.r_m, s.s_m, s.t_m, s.mask, halves, cfg.permutations, cfg.seed, encoder)
    with timed(timings, "memorization"):
        mem = memorization_family(s.r_m, s.s_m, s.t_m, s.mask, ids)
    c2st_out = features = None
    if cfg.c2st:
        with timed(timings, "c2st"):
            c2st_out = c2st_family(s.real, s.synthetic, s.train, s.mask, cfg)
    if feat_encoder is not None:
        from neurodit.metrics.features import feature_metrics

        with timed(timings, "features"):
            features = feature_metrics(s.real, s.synthetic, feat_encoder, reference_mm2s=s.train, mask=s.mask,
                                       norm=norm)
    msssim["verdict"] = fidelity_verdict(msssim)
    mmd["verdict"] = mmd_verdict(mmd)
    mem["verdict"] = memorization_verdict(mem)
    diversity = diversity_family(ms, msssim)
    if c2st_out is not None:
        c2st_out["verdict"] = c2st_with_audit(c2st_out, mem)
    optional = {**({"c2st": c2st_out} if c2st_out is not None else {}),
                **({"features": features} if features is not None else {})}
    if light:
        out = {"n_synthetic": len(s.synthetic), "msssim": msssim, "mmd": mmd, "memorization": strip_arrays(mem),
               "diversity": diversity, **optional}
        out["verdicts"] = collect_verdicts(out)
        out["timings_s"] = {k: round(v, 3) for k, v in timings.items()}
        return out

    with timed(timings, "coherence"):
        # pairs budgeted in voxels as MS-SSIM's (families.pairs_for): 60 a group at 32^3, 20 at 2 mm
        coh = coherence_report(s.r_m, s.s_m, s.mask, axis=2, seed=cfg.seed,
                               max_pairs=pairs_for(s.r_m.shape[1:], cfg.coherence_pairs, floor=20))
    with timed(timings, "tissue"):
        tissue, r_vals, s_vals = (tissue_family(s.real, s.synthetic, s.mask, rng) if map_name == "md" else
                                  ({"skipped": "tissue classes are MD thresholds"}, {}, {}))
    out = {
        "schema": SCHEMA, "protocol": cfg.protocol, "n_real": len(s.real), "n_synthetic": len(s.synthetic),
        "n_train": None if s.train is None else len(s.train), "mask_voxels": int(s.mask.sum()),
        "normalization": norm.to_dict(), "msssim": msssim, "mmd": mmd, "memorization": strip_arrays(mem),
        "coherence": strip_arrays(coh), "tissue": tissue, "diversity": diversity, **optional,
    }
    out["verdicts"] = collect_verdicts(out)
    if cfg.protocol == "paper":
        from neurodit.metrics.paper import paper_protocol

        with timed(timings, "paper"):
            out["paper"] = paper_protocol(s.real, s.synthetic, cfg.max_pairs, cfg.seed, cfg.bootstrap)
    figures: dict[str, str] = {}
    if fig_dir is not None and cfg.figures:
        with timed(timings, "figures"):
            figures = _figures(s, norm, Path(fig_dir), ms, mem, coh, r_vals, s_vals, map_name)
    out["figures"] = figures
    out["timings_s"] = {k: round(v, 3) for k, v in timings.items()}
    out["notes"] = _notes(s, cfg, mmd["floor_sets"])
    return out


def _notes(s: _Sets, cfg: EvalConfig, floor_sets: str) -> list[str]:
    """metrics.json ``notes``: how to read the numbers (which held-out set, what the paper "MMD" is)."""
    notes = []
    if cfg.protocol == "paper":
        notes.append("paper.mmd_pairwise_msd is the authors' 'MMD': MONAI MMDMetric on one pair at a time, "
                     "i.e. the voxelwise mean squared difference of two volumes (in [0, 1] at 64^3), averaged "
                     "over pairs. It is a distance between individual volumes, not a two-sample test; "
                     "compare distributions with mmd.rbf (kernel MMD^2 with permutation p-value).")
    notes.append("mmd.linear is MONAI MMDMetric's estimator: it only sees the difference of mean images, "
                 "not spread; mmd.rbf (median-heuristic Gaussian kernel) also sees spread and shape. "
                 "Compare real_syn with floor (" + floor_sets + ").")
    notes.append("memorization: " + ("held-out = REAL_DIR subjects, nearest neighbours searched in TRAIN_DIR"
                                     if s.t_m is not None else
                                     "no TRAIN_DIR: neighbours searched in REAL_DIR; held-out distribution is "
                                     "each real subject's nearest other real subject (leave-one-out)"))
    notes.append("msssim ci95: bootstrap over pairs, which share volumes, so intervals are somewhat narrow.")
    notes.append(f"msssim settings chosen to fit the grid {tuple(s.real.shape[1:])}: kernel "
                 f"{s.settings.kernel_size}, {s.settings.scales} scales (MONAI defaults need >= 176 voxels a side).")
    return notes


def _figures(s: _Sets, norm: Normalization, fig_dir: Path, ms: dict, mem: dict, coh: dict, r_vals: dict,
             s_vals: dict, map_name: str = "md") -> dict[str, str]:
    """Write the evaluation's PNGs into ``fig_dir``; returns metrics.json ``figures`` (name -> file)."""
    from neurodit.metrics import figures as fg

    vmax = float(norm.vmax) * 0.75  # CSF (~3e-3) still below the top of the scale at the default 4e-3
    figures = {}
    label = fg.MD_LABEL if map_name == "md" else f"{map_name.upper()} on MD's scale (4e-3 = top of its window)"
    fg.mosaic_figure(s.real, s.synthetic, s.mask, fig_dir / "mosaics.png", vmax, label=label)
    figures["mosaics"] = "mosaics.png"
    if r_vals:
        fg.tissue_histogram_figure(r_vals, s_vals, fig_dir / "tissue_histograms.png")
        figures["tissue_histograms"] = "tissue_histograms.png"
    fg.msssim_figure({k: v["values"] for k, v in ms.items()}, fig_dir / "msssim.png")
    figures["msssim"] = "msssim.png"
    fg.memorization_figure(mem["_arrays"]["syn_nn"], mem["_arrays"]["heldout_nn"], mem["threshold"],
                           mem["closest"], s.synthetic, s.real if s.train is None else s.train,
                           fig_dir / "memorization.png", vmax)
    figures["memorization"] = "memorization.png"
    fg.coherence_figure(coh["_arrays"]["real_profile"], coh["_arrays"]["syn_profile"], s.real, s.synthetic,
                        fig_dir / "coherence.png", vmax)
    figures["coherence"] = "coherence.png"
    return figures


# ------------------------------------------------------------------------------------------- folders
def _load(folder: str | Path, map_name: str | None = None):
    """(volumes on disk (a DiskVolumes in a scratch folder: memory flat in N), grid, table, map). A map
    other than MD is put on MD's scale (``neurodit.metrics.volumes.md_scale``); ``map_name``: the map the
    folder must hold (NeuroditError naming its map.json otherwise)."""
    from neurodit.data.cohort import read_cohort
    from neurodit.data.maps import MAP_FILE

    cohort = read_cohort(folder)
    if map_name is not None and cohort.map != map_name:
        raise NeuroditError(f"holds {cohort.map.upper()}, the real folder {map_name.upper()}: judge one map "
                            "against the same map", Path(folder) / MAP_FILE)
    vols, grid = DiskVolumes.from_cohort(cohort, grid=None, to_md_scale=True)
    return vols, grid, cohort.table, cohort.map


def participant_ids(table) -> list[str] | None:
    """The ``participant_id`` column of a cohort table as strings (None for no table)."""
    return None if table is None else [str(x) for x in table["participant_id"]]


def labels_of(table, column: str) -> list[str | None] | None:
    """One class per row of a cohort table's ``column`` (None where missing), or None without it."""
    if table is None or column not in table.columns:
        return None
    vals = [None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in table[column]]
    return None if all(v is None for v in vals) else vals


def check_disjoint(real_ids: list[str], train_ids: list[str] | None, real: str | Path) -> None:
    """NeuroditError when the held-out set (REAL_DIR) shares participants with the training set."""
    shared = sorted(set(real_ids) & set(train_ids or ()))
    if shared:
        raise NeuroditError(f"{len(shared)} participant(s) are in both the held-out (real) and the train folder, "
                            f"e.g. {shared[0]}: split by participant", real)


def check_inputs(real: str | Path, real_ids: list[str], synthetic: str | Path, syn_ids: list[str],
                 train: str | Path | None = None, train_ids: list[str] | None = None) -> dict:
    """The participant checks of an evaluation: REAL_DIR disjoint from TRAIN_DIR (:func:`check_disjoint`),
    synthetic ids distinct from real ones, and REAL_DIR disjoint from the generator's training set
    (:func:`neurodit.data.leakage.check_no_leakage`). Returns what was checked (saved in run.json)."""
    from neurodit.data.leakage import check_distinct_ids, check_no_leakage

    check_disjoint(real_ids, train_ids, real)
    check_distinct_ids(syn_ids, synthetic, real=(real_ids, real), train=(train_ids, train))
    checked = check_no_leakage(real_ids, real, synthetic)
    if checked is None:
        return {"checked": False, "reason": "the synthetic folder's run.json names no generator (run_dir or "
                                            "train_cohort)"}
    return {"checked": True, "generator": checked.generator, "training_set": checked.source,
            "n_training_participants": len(checked.ids)}


def write_evaluation(folder: str | Path, sets: dict[str, Any], tables: dict[str, Any], grid, cfg: EvalConfig,
                     folders: dict[str, str | Path | None], inputs: dict[str, str | None], *,
                     stage: str | None = None, notes: Sequence[str] = (), load_seconds: float | None = None,
                     map_name: str = "md") -> dict:
    """The one writer of an EVAL_DIR: check the participants (:func:`check_inputs`), judge
    (:func:`evaluate_arrays`) and write ``metrics.json``, its figures and ``run.json`` into the existing
    ``folder`` (the caller makes it atomic). Returns the metrics dict.

    ``sets`` / ``tables`` / ``folders``: ``{"real" | "synthetic" | "train": (N, D, H, W) mm²/s on ``grid`` /
    cohort table, rows aligned / folder read for the checks}`` ("train" may be None); ``inputs``: the folders
    as metrics.json names them; ``notes`` are appended to metrics.json ``notes``; ``stage`` goes to run.json.
    Draws no seed of its own: the caller seeds once (a comparison judges its rows in one seeded sequence).
    ``map_name``: the map the sets hold, already on MD's scale (``neurodit.metrics.volumes.md_scale``) when it
    is not MD; the MD-only families (tissue, morphometry) are then skipped and a note says so."""
    ids = {k: participant_ids(tables.get(k)) for k in ("real", "synthetic", "train")}
    leakage = check_inputs(folders["real"], ids["real"], folders["synthetic"], ids["synthetic"],
                           folders.get("train"), ids["train"])
    metrics = evaluate_arrays(sets["real"], sets["synthetic"], sets.get("train"), cfg, Normalization(),
                              fig_dir=Path(folder), real_ids=ids["real"], syn_ids=ids["synthetic"],
                              train_ids=ids["train"], syn_labels=labels_of(tables["synthetic"], cfg.condition),
                              train_labels=labels_of(tables.get("train"), cfg.condition),
                              voxel_volume_ml=float(np.prod(grid.voxel_size)) / 1000.0, tables=tables,
                              map_name=map_name)
    metrics["grid"] = grid.to_dict()
    metrics["map"] = map_name
    if map_name != "md":
        from neurodit.data.maps import get_map

        spec = get_map(map_name)
        notes = [f"{map_name.upper()} judged on MD's scale: its window [{spec.vmin:g}, {spec.vmax:g}] {spec.unit} "
                 "mapped linearly onto [0, 4e-3] (model-range numbers unchanged); the MD-only families (tissue "
                 "classes, morphometry) are skipped", *notes]
    if load_seconds is not None:
        metrics["timings_s"]["load"] = round(load_seconds, 3)
    metrics["inputs"] = inputs
    metrics["notes"] += list(notes)
    write_json(Path(folder) / METRICS_FILE, metrics)
    write_run_info(folder, dataclasses.asdict(cfg), cfg.seed, inputs=inputs, leakage=leakage,
                   **({"stage": stage} if stage else {}))
    return metrics


def _check_grids(real: str | Path, grid, r_table, others: Sequence[tuple[Any, Any]]) -> None:
    """NeuroditError unless every (grid, table) of ``others`` is on the real folder's ``grid``."""
    for g, table in others:
        if g is not None and not grid.same_as(g):
            what = "shape" if tuple(g.shape) != tuple(grid.shape) else "affine"
            # name a file of each side: within a folder load_volumes already checked one grid
            raise NeuroditError(f"grid {what} differs from the real folder's {Path(r_table['path'][0]).name} "
                                f"in {real} ({'x'.join(map(str, g.shape))} vs {'x'.join(map(str, grid.shape))}); "
                                "all volumes must share one grid (prepare both folders onto one grid)",
                                table["path"][0])


def evaluate(real: str | Path, synthetic: str | Path, out: str | Path, train: str | Path | None = None,
             protocol: str | None = None, max_pairs: int | None = None, seed: int | None = None,
             permutations: int | None = None, overwrite: bool = False, cfg: EvalConfig | None = None) -> Path:
    """Evaluate the cohort folder ``synthetic`` against ``real`` (and ``train``); write EVAL_DIR.

    Writes ``out/metrics.json`` (schema in this module's docstring), PNG figures and ``run.json``,
    atomically. All volumes of the (two or three) folders must share one grid. The calibration panel
    (``cfg.calibrate``) is conditioned on the ``cfg.condition`` column of the train and synthetic tables.
    The settings are either ``cfg`` or ``protocol`` / ``max_pairs`` / ``seed`` / ``permutations`` (the
    :class:`EvalConfig` defaults for those not given): giving both is a NeuroditError, not a silent choice.
    """
    loose = {k: v for k, v in (("protocol", protocol), ("max_pairs", max_pairs), ("seed", seed),
                               ("permutations", permutations)) if v is not None}
    if cfg is not None and loose:
        raise NeuroditError(f"give the settings either as cfg or as {', '.join(loose)}, not both "
                            f"(cfg already holds {', '.join(loose)})")
    cfg = cfg or EvalConfig(**loose)
    if cfg.calibrate and train is None:
        raise NeuroditError("--calibrate needs --train (the reference generators are fitted on it)")
    from neurodit.metrics.joint import evaluate_maps, judged_maps

    maps = judged_maps(real, synthetic, train)
    if maps:  # multi-map folders: every map judged on its own, then the joint view (neurodit.metrics.joint)
        return evaluate_maps(real, synthetic, out, maps, judge_folders, train=train, cfg=cfg, overwrite=overwrite)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        judge_folders(tmp, real, synthetic, train, cfg)
    return Path(out)


def judge_folders(folder: Path, real: str | Path, synthetic: str | Path, train: str | Path | None,
                  cfg: EvalConfig) -> dict:
    """One map's evaluation of three cohort folders into the existing ``folder`` (the caller makes it
    atomic): load (a map other than MD on MD's scale), check the grids, :func:`write_evaluation`."""
    seed_everything(cfg.seed)
    t0 = time.perf_counter()
    r, grid, r_table, map_name = _load(real)
    s, s_grid, s_table, _ = _load(synthetic, map_name)
    t, t_grid, t_table, _ = (None, None, None, None) if train is None else _load(train, map_name)
    _check_grids(real, grid, r_table, ((s_grid, s_table), (t_grid, t_table)))
    load_s = time.perf_counter() - t0
    inputs = {"real": str(real), "synthetic": str(synthetic), "train": None if train is None else str(train)}
    return write_evaluation(folder, {"real": r, "synthetic": s, "train": t},
                            {"real": r_table, "synthetic": s_table, "train": t_table}, grid, cfg,
                            {"real": real, "synthetic": synthetic, "train": train}, inputs, load_seconds=load_s,
                            map_name=map_name)


__all__ = ["EvalConfig", "check_disjoint", "check_inputs", "evaluate", "evaluate_arrays", "feature_encoder",
           "labels_of", "participant_ids", "write_evaluation"]

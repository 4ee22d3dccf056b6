"""``neurodit evaluate``: compare a synthetic cohort with a real one (and the training set).

Inputs are cohort folders (docs/ARCHITECTURE.md, input format), MD in mm²/s, all on one grid
(``load_volumes(cohort, grid=None)``; the three folders must share that grid too, else NeuroditError).
Metrics are computed in model range ([-1, 1], :class:`neurodit.data.normalize.Normalization`) inside
a brain mask (voxels with MD > 1e-4 mm²/s in at least half of the real (+ training) volumes); the tissue
histograms in mm²/s.

Memory is flat in the number of synthetic volumes: ``evaluate`` loads each folder into a scratch ``.npy``
(:class:`neurodit.metrics.volumes.DiskVolumes`) and every family reads it a few volumes at a time (model
range converted on the fly, MMD from a streamed Gram matrix, pairwise metrics read only the volumes of
their sampled pairs, the C2ST only its balanced subsets); ``evaluate_arrays`` on in-memory arrays
computes the same numbers the in-memory way. The calibration panel's reference samples are in memory.

``EVAL_DIR/metrics.json`` (all numbers float unless said; "pairs" are seeded random subsets when
there are more than ``max_pairs``; ci95 = percentile bootstrap of the mean over pairs)::

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
                     {encoder {kind, source, sha256, dim, trained_on, cached, ...}, dim, n_real, n_synthetic, k,
                     frechet, precision, recall, density, coverage, floor {sets, n_reference, frechet,
                     precision, recall, density, coverage} | null, warnings [str], verdict}  features of a fixed
                     3D encoder (our own, trained on TRAIN_DIR only and cached by its hash, or --encoder)
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
                     memorization {fraction_above, flagged}, features {frechet, precision, recall, density,
                     coverage} (with an encoder), verdicts {family: sentence}},
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
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from neurodit.data.normalize import Normalization
from neurodit.errors import NeuroditError
from neurodit.io import atomic_dir, seed_everything, write_json, write_run_info
from neurodit.metrics.coherence import coherence_report
from neurodit.metrics.memorization import memorization_audit
from neurodit.metrics.mmd import mmd_from_gram, mmd_test, volume_features

# one truth for the tissue split and the brain cut-off (morphometry owns them; see its comments)
from neurodit.metrics.morphometry import BRAIN_MIN_MM2S, TISSUE_THRESHOLDS_MM2S  # noqa: E402
from neurodit.metrics.msssim import choose_settings, pairwise_msssim
from neurodit.metrics.volumes import DiskVolumes, ModelRange, chunks, is_lazy


@dataclasses.dataclass
class EvalConfig:
    """Settings of one evaluation (saved in run.json)."""

    protocol: str = "ours"  # "ours" | "paper"
    max_pairs: int = 500  # per MS-SSIM group (real-real, real-syn, syn-syn)
    seed: int = 0
    permutations: int = 500  # MMD permutation test
    bootstrap: int = 1000  # bootstrap resamples for the MS-SSIM CIs
    coherence_pairs: int = 60  # pairs per group for the 2D reformat SSIM
    figures: bool = True
    # torch threads while evaluating (restored after): the metrics are many small tensor ops, and on
    # the shared 2-core machines one thread was 5-9x faster than two (MS-SSIM of 1500 pairs of 32^3:
    # 4.8 s vs 42 s wall at load 10); 0 keeps torch's setting
    threads: int = 1
    c2st: bool = True  # classifier two-sample test (neurodit.metrics.c2st)
    c2st_real: str = "heldout"  # real side of the C2ST: "heldout" (REAL_DIR) | "train+heldout"
    c2st_views: tuple[str, ...] = ("voxel", "texture", "cnn")
    c2st_folds: int = 5
    c2st_permutations: int = 100  # label permutations of the linear views (p resolution 1/101)
    c2st_cnn_epochs: int = 8
    calibrate: bool = False  # also evaluate the reference generators fitted on train (needs train)
    features: bool = True  # Fréchet distance + precision/recall/density/coverage (neurodit.metrics.features)
    encoder: str | None = None  # a user's encoder file (TorchScript, or safetensors + json); None: our own
    # where our own encoder is cached, keyed by a hash of the training data; None: $NEURODIT_CACHE or
    # ~/.cache/neurodit
    encoder_cache: str | None = None
    morphometry: bool = True  # tissue fractions, brain volume, their age/sex effects
    condition: str = "sex"  # label column the calibration generators are conditioned on

    def __post_init__(self) -> None:
        if self.protocol not in ("ours", "paper"):
            raise NeuroditError(f"unknown protocol '{self.protocol}' (use ours or paper)")
        if self.max_pairs < 1 or self.permutations < 0 or self.bootstrap < 1 or self.coherence_pairs < 1 \
                or self.threads < 0:
            raise NeuroditError("max_pairs, bootstrap and coherence_pairs must be >= 1, permutations and "
                                "threads >= 0")
        from neurodit.metrics.c2st import VIEWS

        if self.c2st_real not in ("heldout", "train+heldout"):
            raise NeuroditError(f"unknown c2st_real '{self.c2st_real}' (use heldout or train+heldout)")
        self.c2st_views = tuple(self.c2st_views)
        bad = [v for v in self.c2st_views if v not in VIEWS]
        if bad or not self.c2st_views:
            raise NeuroditError(f"unknown or no C2ST view(s) {bad} (use {', '.join(VIEWS)})")
        if self.c2st_folds < 2 or self.c2st_permutations < 1 or self.c2st_cnn_epochs < 1:
            raise NeuroditError("c2st_folds must be >= 2, c2st_permutations and c2st_cnn_epochs >= 1")


def brain_mask(*sets_mm2s: np.ndarray, min_fraction: float = 0.5) -> np.ndarray:
    """Voxels with MD > ``BRAIN_MIN_MM2S`` in at least ``min_fraction`` of all given (N, D, H, W) volumes
    -> (D, H, W) bool."""
    count = sum((c > BRAIN_MIN_MM2S).sum(0) for s in sets_mm2s for _, c in chunks(s))  # streamed
    total = sum(len(s) for s in sets_mm2s)
    return count >= min_fraction * total


def tissue_classes(ref_mm2s: np.ndarray, mask: np.ndarray,
                   thresholds: tuple[float, float] = TISSUE_THRESHOLDS_MM2S) -> dict[str, np.ndarray]:
    """Voxel classes from a reference MD map, e.g. the median real map (the same voxels are then used
    for both sets): WM-like / GM-like / CSF-like.

    Adult MD is ~0.7e-3 mm²/s in white matter, ~0.8-0.9e-3 in grey matter and ~3e-3 in CSF
    (e.g. Pfefferbaum et al. 2000); the thresholds split the partial-volume continuum between them.
    """
    t1, t2 = thresholds
    m = np.asarray(mask, dtype=bool)
    return {"WM-like": m & (ref_mm2s > BRAIN_MIN_MM2S) & (ref_mm2s < t1),
            "GM-like": m & (ref_mm2s >= t1) & (ref_mm2s < t2),
            "CSF-like": m & (ref_mm2s >= t2)}


def _subsample(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    return x if x.size <= n else rng.choice(x, size=n, replace=False)


def _as_set(x):
    """On-disk sets stay as they are (read lazily); anything else becomes a float32 ndarray."""
    return x if is_lazy(x) else np.asarray(x, dtype=np.float32)


def _to_model(x, norm: Normalization):
    """Model range of a set: a full converted copy in memory, or a lazy view of an on-disk set."""
    return ModelRange(x, norm) if is_lazy(x) else norm.to_model(x)


def pooled_gram(sets: list, mask: np.ndarray, chunk: int | None = None) -> torch.Tensor:
    """(N, N) float64 Gram matrix <x_i, x_j> of the in-mask voxels of the concatenated ``sets`` (each
    (N_k, D, H, W)), read ``chunk`` volumes at a time (default: a fixed voxel budget): memory O(chunk x voxels + N^2), not O(N x voxels)."""
    from neurodit.metrics.volumes import chunk_size

    mask = np.asarray(mask, dtype=bool)
    chunk = chunk or chunk_size(sets[0])
    blocks = [(s, a, min(a + chunk, len(s))) for s in sets for a in range(0, len(s), chunk)]
    starts = np.cumsum([0] + [b - a for _, a, b in blocks])
    gram = torch.zeros(int(starts[-1]), int(starts[-1]), dtype=torch.float64)

    def feats(k: int) -> torch.Tensor:
        s, a, b = blocks[k]
        return torch.as_tensor(np.asarray(s[a:b], dtype=np.float32)[:, mask], dtype=torch.float64)  # (B, M)

    for i in range(len(blocks)):
        fi = feats(i)
        for j in range(i + 1):
            fj = fi if j == i else feats(j)
            g = fi @ fj.T
            gram[starts[i]:starts[i + 1], starts[j]:starts[j + 1]] = g
            gram[starts[j]:starts[j + 1], starts[i]:starts[i + 1]] = g.T
    return gram


def _sub_gram(gram: torch.Tensor, ia: np.ndarray, ib: np.ndarray) -> torch.Tensor:
    idx = torch.as_tensor(np.r_[ia, ib], dtype=torch.long)
    return gram[idx][:, idx]


def _class_values(vols, cm: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """MD values > BRAIN_MIN_MM2S of class voxels ``cm`` over all volumes, subsampled to ``n`` (seeded).

    In-memory sets: ``vols[:, cm]`` at once. On-disk sets: two streamed passes (count, then gather the
    drawn positions), drawing the same positions as ``_subsample`` does on the full vector."""
    if not is_lazy(vols):
        v = vols[:, cm].ravel()
        return _subsample(v[v > BRAIN_MIN_MM2S], n, rng)
    counts = [int((c[:, cm] > BRAIN_MIN_MM2S).sum()) for _, c in chunks(vols)]
    total = sum(counts)
    if total <= n:
        return np.concatenate([c[:, cm].ravel()[c[:, cm].ravel() > BRAIN_MIN_MM2S] for _, c in chunks(vols)])
    pick = rng.choice(total, size=n, replace=False)  # Generator.choice(x, n) draws exactly these positions
    order = np.argsort(pick)
    sorted_pick = pick[order]
    out_sorted = np.empty(n, dtype=np.float32)
    offset, done = 0, 0
    for (_, c), k in zip(chunks(vols), counts, strict=True):
        hi = np.searchsorted(sorted_pick, offset + k)
        if hi > done:
            v = c[:, cm].ravel()
            out_sorted[done:hi] = v[v > BRAIN_MIN_MM2S][sorted_pick[done:hi] - offset]
            done = hi
        offset += k
    out = np.empty(n, dtype=np.float32)
    out[order] = out_sorted
    return out


def _strip(d: dict) -> dict:
    return {k: v for k, v in d.items() if k not in ("_arrays", "values")}


def evaluate_arrays(real: np.ndarray, synthetic: np.ndarray, train: np.ndarray | None = None,
                    cfg: EvalConfig | None = None, norm: Normalization | None = None,
                    fig_dir: Path | None = None, real_ids: list[str] | None = None,
                    syn_ids: list[str] | None = None, train_ids: list[str] | None = None,
                    encoder: Callable[[torch.Tensor], torch.Tensor] | None = None,
                    syn_labels: list[str | None] | None = None,
                    train_labels: list[str | None] | None = None, voxel_volume_ml: float | None = None,
                    tables: dict | None = None) -> dict:
    """All metrics for (N, D, H, W) volumes in mm²/s on one grid; returns the metrics.json dict.

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

    def run() -> dict:
        t0 = time.perf_counter()
        feat_encoder = feature_encoder(train, tables.get("train"), cfg, norm)
        enc_s = time.perf_counter() - t0
        out = _evaluate_arrays(real, synthetic, train, cfg, norm, fig_dir, real_ids, syn_ids, train_ids,
                               encoder if encoder is not None else feat_encoder, feat_encoder=feat_encoder)
        if feat_encoder is not None:
            out["timings_s"]["encoder"] = round(enc_s, 3)
        if cfg.morphometry and voxel_volume_ml is not None:
            from neurodit.metrics.morphometry import morphometry_metrics

            t0 = time.perf_counter()
            out["morphometry"] = morphometry_metrics(real, synthetic, brain_mask(real), voxel_volume_ml,
                                                     tables.get("real"), tables.get("synthetic"))
            out["timings_s"]["morphometry"] = round(time.perf_counter() - t0, 3)
            out["verdicts"] = collect_verdicts(out)
        if cfg.calibrate:
            t0 = time.perf_counter()
            out["calibration"] = calibration_panel(real, synthetic, train, cfg, norm, out, syn_labels, train_labels,
                                                   feat_encoder)
            out["timings_s"]["calibration"] = round(time.perf_counter() - t0, 3)
        return out

    if cfg.threads <= 0:
        return run()
    old_threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
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

    from neurodit.metrics.features import get_encoder

    cache = cfg.encoder_cache or os.environ.get("NEURODIT_CACHE") or Path.home() / ".cache" / "neurodit"
    t = None if train is None else np.asarray(train, dtype=np.float32)
    return get_encoder(t, train_table, None if t is None else brain_mask(t), Path(cache) / "encoders",
                       encoder_path=cfg.encoder, seed=cfg.seed, norm=norm or Normalization())


def _evaluate_arrays(real, synthetic, train, cfg: EvalConfig, norm, fig_dir, real_ids, syn_ids,
                     train_ids, encoder, light: bool = False, feat_encoder=None) -> dict:
    """``light``: only the families of the calibration panel (MS-SSIM, MMD, memorization, C2ST, features)."""
    norm = norm or Normalization()
    # on-disk sets (DiskVolumes, memmaps) stay lazy: every metric below reads them a few volumes at a time
    real, synthetic = _as_set(real), _as_set(synthetic)
    train = None if train is None else _as_set(train)
    for name, s in (("real", real), ("synthetic", synthetic), ("train", train)):
        if s is not None and (s.ndim != 4 or len(s) < 2):
            raise NeuroditError(f"{name} set must hold >= 2 volumes (N, D, H, W), got shape {s.shape}")
    shapes = {s.shape[1:] for s in (real, synthetic, train) if s is not None}
    if len(shapes) != 1:
        raise NeuroditError(f"volumes are on different grids: shapes {sorted(shapes)}")
    settings = choose_settings(real.shape[1:], data_range=2.0, what="evaluation grid")
    rng = np.random.default_rng(cfg.seed)
    timings: dict[str, float] = {}
    notes: list[str] = []

    mask = brain_mask(real, *(() if train is None else (train,)))
    if mask.sum() < 10:
        raise NeuroditError("real volumes have (almost) no brain voxels (MD > 0): nothing to evaluate")
    # (N, D, H, W) mm²/s -> model range [-1, 1]; background -> -1
    r_m, s_m = _to_model(real, norm), _to_model(synthetic, norm)
    t_m = None if train is None else _to_model(train, norm)

    t0 = time.perf_counter()
    ms = {k: pairwise_msssim(a, b, settings, cfg.max_pairs, cfg.seed + i, cfg.bootstrap)
          for i, (k, a, b) in enumerate((("real_real", r_m, None), ("real_syn", r_m, s_m),
                                         ("syn_syn", s_m, None)))}
    msssim = {k: _strip(v) for k, v in ms.items()} | settings.to_dict()
    # diversity beyond the mean: synthetic pairs more alike than the most alike real pair (near-duplicates)
    rr_max = float(ms["real_real"]["values"].max()) if len(ms["real_real"]["values"]) else float("nan")
    msssim["syn_syn_above_real_max"] = float((ms["syn_syn"]["values"] > rr_max).mean()) \
        if len(ms["syn_syn"]["values"]) else float("nan")
    timings["msssim"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    if t_m is None:
        perm = rng.permutation(len(real))
        half = len(real) // 2
    floor_sets = "real train vs real held-out (REAL_DIR)" if t_m is not None else "two random halves of REAL_DIR"
    mmd = {"features": "in-mask voxels in model range [-1, 1]", "floor_sets": floor_sets}
    if not any(is_lazy(x) for x in (real, synthetic, train) if x is not None):
        f_r, f_s = volume_features(r_m, mask), volume_features(s_m, mask)
        f_a, f_b = (volume_features(t_m, mask), f_r) if t_m is not None else (f_r[perm[:half]], f_r[perm[half:]])
        for kernel in ("linear", "rbf"):
            mmd[kernel] = {"real_syn": mmd_test(f_r, f_s, kernel, cfg.permutations, cfg.seed),
                           "floor": mmd_test(f_a, f_b, kernel, cfg.permutations, cfg.seed)}
    else:
        # on-disk sets: the (N, N) Gram matrix of the in-mask voxels, accumulated a few volumes at a time,
        # instead of the (N, n_mask) feature matrices (the same MMD from the same Gram matrix)
        sets = [r_m, s_m] + ([t_m] if t_m is not None else [])
        gram = pooled_gram(sets, mask)
        nr, ns = len(real), len(synthetic)
        i_r, i_s = np.arange(nr), nr + np.arange(ns)
        i_a, i_b = (nr + ns + np.arange(len(train)), i_r) if t_m is not None else (perm[:half], perm[half:])
        for kernel in ("linear", "rbf"):
            mmd[kernel] = {"real_syn": mmd_from_gram(_sub_gram(gram, i_r, i_s), nr, kernel, cfg.permutations, cfg.seed),
                           "floor": mmd_from_gram(_sub_gram(gram, i_a, i_b), len(i_a), kernel, cfg.permutations,
                                                  cfg.seed)}
    if encoder is not None:
        e_r, e_s = volume_features(r_m, encoder=encoder), volume_features(s_m, encoder=encoder)
        if t_m is not None:
            e_a, e_b = volume_features(t_m, encoder=encoder), e_r
        else:
            e_a, e_b = e_r[perm[:half]], e_r[perm[half:]]
        mmd["rbf_features"] = {"real_syn": mmd_test(e_r, e_s, "rbf", cfg.permutations, cfg.seed),
                               "floor": mmd_test(e_a, e_b, "rbf", cfg.permutations, cfg.seed)}
    timings["mmd"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    mem = memorization_audit(s_m, r_m if t_m is None else t_m, None if t_m is None else r_m, mask)
    ref_ids = real_ids if t_m is None else train_ids
    for c in mem["closest"]:
        c["synthetic_id"] = syn_ids[c["synthetic"]] if syn_ids else None
        c["reference_id"] = ref_ids[c["reference"]] if ref_ids else None
    mem["reference_set"] = "REAL_DIR (no --train)" if t_m is None else "TRAIN_DIR"
    timings["memorization"] = time.perf_counter() - t0

    c2st_out = None
    if cfg.c2st:
        t0 = time.perf_counter()
        c2st_out = c2st_family(real, synthetic, train, mask, cfg)
        timings["c2st"] = time.perf_counter() - t0
    features = None
    if feat_encoder is not None:
        from neurodit.metrics.features import feature_metrics

        t0 = time.perf_counter()
        features = feature_metrics(real, synthetic, feat_encoder, reference_mm2s=train, norm=norm)
        timings["features"] = time.perf_counter() - t0
    msssim["verdict"] = fidelity_verdict(msssim)
    mmd["verdict"] = mmd_verdict(mmd)
    mem["verdict"] = memorization_verdict(mem)
    diversity = diversity_family(ms, msssim)
    if c2st_out is not None:
        c2st_out["verdict"] = c2st_with_audit(c2st_out, mem)
    if light:
        out = {"n_synthetic": len(synthetic), "msssim": msssim, "mmd": mmd, "memorization": _strip(mem),
               "diversity": diversity, **({"c2st": c2st_out} if c2st_out is not None else {}),
               **({"features": features} if features is not None else {})}
        out["verdicts"] = collect_verdicts(out)
        out["timings_s"] = {k: round(v, 3) for k, v in timings.items()}
        return out

    t0 = time.perf_counter()
    coh = coherence_report(r_m, s_m, mask, axis=2, max_pairs=cfg.coherence_pairs, seed=cfg.seed)
    timings["coherence"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    # classes from the median real map; each volume's own background zeros are left out below
    classes = tissue_classes(np.median(real, axis=0), mask)
    tissue: dict = {"thresholds_mm2s": list(TISSUE_THRESHOLDS_MM2S)}
    r_vals, s_vals = {}, {}
    for name, cm in classes.items():
        if cm.sum() == 0:
            tissue[name] = {"real_mean": None, "syn_mean": None, "wasserstein": None, "n_voxels": 0}
            continue
        r_vals[name] = _class_values(real, cm, 200_000, rng)
        s_vals[name] = _class_values(synthetic, cm, 200_000, rng)
        if r_vals[name].size == 0 or s_vals[name].size == 0:
            tissue[name] = {"real_mean": None, "syn_mean": None, "wasserstein": None, "n_voxels": int(cm.sum())}
            r_vals.pop(name), s_vals.pop(name)
            continue
        tissue[name] = {"real_mean": float(r_vals[name].mean()), "syn_mean": float(s_vals[name].mean()),
                        "wasserstein": float(stats.wasserstein_distance(r_vals[name], s_vals[name])),
                        "n_voxels": int(cm.sum())}
    timings["tissue"] = time.perf_counter() - t0

    out = {
        "protocol": cfg.protocol, "n_real": len(real), "n_synthetic": len(synthetic),
        "n_train": None if train is None else len(train), "mask_voxels": int(mask.sum()),
        "normalization": norm.to_dict(), "msssim": msssim, "mmd": mmd, "memorization": _strip(mem),
        "coherence": _strip(coh), "tissue": tissue, "diversity": diversity,
    }
    if c2st_out is not None:
        out["c2st"] = c2st_out
    if features is not None:
        out["features"] = features
    out["verdicts"] = collect_verdicts(out)
    if cfg.protocol == "paper":
        from neurodit.metrics.paper import paper_protocol

        t0 = time.perf_counter()
        out["paper"] = paper_protocol(real, synthetic, cfg.max_pairs, cfg.seed, cfg.bootstrap)
        timings["paper"] = time.perf_counter() - t0
        notes.append("paper.mmd_pairwise_msd is the authors' 'MMD': MONAI MMDMetric on one pair at a time, "
                     "i.e. the voxelwise mean squared difference of two volumes (in [0, 1] at 64^3), averaged "
                     "over pairs. It is a distance between individual volumes, not a two-sample test; "
                     "compare distributions with mmd.rbf (kernel MMD^2 with permutation p-value).")
    notes.append("mmd.linear is MONAI MMDMetric's estimator: it only sees the difference of mean images, "
                 "not spread; mmd.rbf (median-heuristic Gaussian kernel) also sees spread and shape. "
                 "Compare real_syn with floor (" + floor_sets + ").")
    notes.append("memorization: " + ("held-out = REAL_DIR subjects, nearest neighbours searched in TRAIN_DIR"
                                     if t_m is not None else
                                     "no TRAIN_DIR: neighbours searched in REAL_DIR; held-out distribution is "
                                     "each real subject's nearest other real subject (leave-one-out)"))
    notes.append("msssim ci95: bootstrap over pairs, which share volumes, so intervals are somewhat narrow.")
    notes.append(f"msssim settings chosen to fit the grid {tuple(real.shape[1:])}: kernel "
                 f"{settings.kernel_size}, {settings.scales} scales (MONAI defaults need >= 176 voxels a side).")

    figures: dict[str, str] = {}
    if fig_dir is not None and cfg.figures:
        from neurodit.metrics import figures as fg

        t0 = time.perf_counter()
        fig_dir = Path(fig_dir)
        vmax = float(norm.vmax) * 0.75  # CSF (~3e-3) still below the top of the scale at the default 4e-3
        fg.mosaic_figure(real, synthetic, mask, fig_dir / "mosaics.png", vmax)
        figures["mosaics"] = "mosaics.png"
        if r_vals:
            fg.tissue_histogram_figure(r_vals, s_vals, fig_dir / "tissue_histograms.png")
            figures["tissue_histograms"] = "tissue_histograms.png"
        fg.msssim_figure({k: v["values"] for k, v in ms.items()}, fig_dir / "msssim.png")
        figures["msssim"] = "msssim.png"
        fg.memorization_figure(mem["_arrays"]["syn_nn"], mem["_arrays"]["heldout_nn"], mem["threshold"],
                               mem["closest"], synthetic, real if train is None else train,
                               fig_dir / "memorization.png", vmax)
        figures["memorization"] = "memorization.png"
        fg.coherence_figure(coh["_arrays"]["real_profile"], coh["_arrays"]["syn_profile"], real, synthetic,
                            fig_dir / "coherence.png", vmax)
        figures["coherence"] = "coherence.png"
        timings["figures"] = time.perf_counter() - t0
    out["figures"] = figures
    out["timings_s"] = {k: round(v, 3) for k, v in timings.items()}
    out["notes"] = notes
    return out


# ------------------------------------------------------------------------------------------- families
# Each family is a JSON-able dict with a "verdict" sentence; collect_verdicts gathers them in this order
# (the C2ST first: it is the strongest single signal). A new family (e.g. features, morphometry) is one
# function on arrays returning such a dict, stored under its name in metrics.json and listed here.
FAMILIES = ("c2st", "diversity", "memorization", "msssim", "mmd", "features", "morphometry")
FAMILY_NAMES = {"msssim": "fidelity"}  # key in metrics["verdicts"] when it differs from the section name


def collect_verdicts(metrics: dict) -> dict[str, str]:
    """``{family: verdict}`` of every family in ``metrics`` that carries one, in :data:`FAMILIES` order."""
    return {FAMILY_NAMES.get(f, f): metrics[f]["verdict"] for f in FAMILIES
            if isinstance(metrics.get(f), dict) and "verdict" in metrics[f]}


def c2st_family(real: np.ndarray, synthetic: np.ndarray, train: np.ndarray | None, mask: np.ndarray,
                cfg: EvalConfig) -> dict:
    """The ``c2st`` section: :func:`neurodit.metrics.c2st.c2st_report` against REAL_DIR, or train + REAL_DIR."""
    from neurodit.downstream.nets import MIN_SIDE
    from neurodit.metrics.c2st import c2st_report

    if cfg.c2st_real == "train+heldout":
        if train is None:
            raise NeuroditError("c2st_real 'train+heldout' needs --train")
        real_side = np.concatenate([train, real])
    else:
        real_side = real
    views, skipped = list(cfg.c2st_views), []
    if "cnn" in views and min(real.shape[1:]) < MIN_SIDE["small"]:
        views.remove("cnn")
        skipped.append(f"cnn: grid {real.shape[1:]} has a side < {MIN_SIDE['small']} voxels")
    rep = c2st_report(real_side, synthetic, mask, views=views, folds=cfg.c2st_folds,
                      permutations=cfg.c2st_permutations, seed=cfg.seed, bootstrap=cfg.bootstrap,
                      cnn_epochs=cfg.c2st_cnn_epochs)
    return {"real_side": cfg.c2st_real, **rep, "skipped": skipped}


def c2st_with_audit(c2st_out: dict, mem: dict) -> str:
    """The C2ST verdict, warning that a copy fools the classifier when the memorization audit flags one."""
    verdict = c2st_out["verdict"]
    told_apart = any(r["p_value"] < 0.05 for r in c2st_out["views"].values())
    if mem.get("flagged") and not told_apart:
        verdict += ("; but the memorization audit flags copies of training subjects: a copy of a real "
                    "subject fools any classifier, only the audit catches it")
    return verdict


def diversity_family(ms: dict, msssim: dict) -> dict:
    """Diversity from MS-SSIM between synthetic pairs vs between real pairs (``ms``: pairwise_msssim
    results with their ``values``)."""
    ss, rr = msssim["syn_syn"]["mean"], msssim["real_real"]["mean"]
    vals = np.asarray(ms["syn_syn"]["values"])
    identical = float((vals > 0.9999).mean()) if vals.size else float("nan")
    above = msssim["syn_syn_above_real_max"]
    zero = bool(identical >= 0.25 or above >= 0.9)
    low = bool(zero or above >= 0.25 or ss - rr > 0.5 * (1.0 - rr))
    nums = f"MS-SSIM between synthetic pairs {ss:.3f} vs {rr:.3f} between real pairs"
    if zero:
        verdict = (f"synthetic volumes are (near-)copies of each other ({nums}; {identical:.0%} of pairs identical, "
                   f"{above:.0%} more alike than the most alike real pair): flagged as zero diversity")
    elif low:
        verdict = (f"synthetic volumes are less varied than real subjects ({nums}; {above:.0%} of pairs more "
                   "alike than the most alike real pair): low diversity")
    else:
        verdict = f"synthetic volumes vary about as much as real subjects ({nums})"
    return {"syn_syn": ss, "real_real": rr, "syn_syn_above_real_max": above, "identical_pairs": identical,
            "zero_diversity": zero, "low_diversity": low, "verdict": verdict}


def fidelity_verdict(msssim: dict) -> str:
    rs, rr = msssim["real_syn"]["mean"], msssim["real_real"]["mean"]
    nums = f"MS-SSIM real-synthetic {rs:.3f} vs real-real {rr:.3f}"
    if rs < rr - 0.02:
        return f"synthetic volumes look structurally less like real subjects than real subjects do ({nums})"
    return f"synthetic volumes are structurally as close to real subjects as real subjects are to each other ({nums})"


def mmd_verdict(mmd: dict) -> str:
    r = mmd["rbf"]["real_syn"]
    f = mmd["rbf"]["floor"]
    nums = f"RBF MMD² {r['mmd2']:.3g}, p {r['p_value']:.2g}; real-vs-real floor {f['mmd2']:.3g}"
    if r["p_value"] < 0.05:
        return f"the kernel two-sample test finds the synthetic distribution differs from the real one ({nums})"
    return (f"the kernel two-sample test finds no difference ({nums}); it is weak on texture, so read it "
            "with the classifier test")


def memorization_verdict(mem: dict) -> str:
    frac, exp = mem["fraction_above"], mem["expected_fraction"]
    nums = (f"{frac:.1%} of synthetic volumes are closer to a training subject than {1 - exp:.0%} of real "
            f"held-out subjects are (expected {exp:.1%}; {mem['n_duplicates']} near-exact copies)")
    if mem["flagged"]:
        return f"{nums}: flagged as copying the training set"
    return f"{nums}: no sign of copying"


def headline(metrics: dict) -> dict:
    """The calibration panel's numbers of one evaluation (full or light)."""
    out = {"n_synthetic": metrics["n_synthetic"],
           "msssim": {k: metrics["msssim"][k]["mean"] for k in ("real_syn", "syn_syn", "real_real")},
           "diversity": {k: metrics["diversity"][k] for k in ("zero_diversity", "identical_pairs")},
           "mmd_rbf": {k: metrics["mmd"]["rbf"]["real_syn"][k] for k in ("mmd2", "p_value")},
           "memorization": {k: metrics["memorization"][k] for k in ("fraction_above", "flagged")},
           "verdicts": dict(metrics["verdicts"])}
    if "c2st" in metrics:
        out["c2st"] = {v: {k: r[k] for k in ("auc", "auc_ci95", "p_value")} for v, r in metrics["c2st"]["views"].items()}
    if "features" in metrics:
        out["features"] = {k: metrics["features"][k] for k in ("frechet", "precision", "recall", "density", "coverage")}
    return out


def _label_counts(labels: list | None) -> dict:
    if not labels:
        return {}
    keys = [str(x) for x in labels if x is not None]
    return {k: keys.count(k) for k in sorted(set(keys))}


def calibration_panel(real: np.ndarray, synthetic: np.ndarray, train: np.ndarray | None, cfg: EvalConfig,
                      norm: Normalization | None, model_metrics: dict, syn_labels: list | None = None,
                      train_labels: list | None = None, feat_encoder=None) -> dict:
    """The ``calibration`` section: the light families for each reference generator fitted on ``train``
    (same n and class balance as ``synthetic``: its ``syn_labels`` counts when both sets have labels,
    else balanced), beside the model's own headline numbers."""
    from neurodit.generators.reference import KINDS, fit_reference

    if train is None:
        raise NeuroditError("--calibrate needs --train (the reference generators are fitted on it)")
    train = np.asarray(train, dtype=np.float32)
    n = len(synthetic)
    known = set(str(x) for x in (train_labels or []) if x is not None)
    counts = {k: c for k, c in _label_counts(syn_labels).items() if k in known}
    panel: dict = {"model": headline(model_metrics)}
    labels_used: dict = {}
    light_cfg = dataclasses.replace(cfg, calibrate=False, figures=False)
    gen_mask = brain_mask(train, min_fraction=1e-6)  # union of the training brains (see generators.reference)
    for i, kind in enumerate(KINDS):
        model = fit_reference(train, train_labels if known else None, gen_mask, kind)
        if counts and sum(counts.values()) == n:
            parts = [model.sample(c, label=k, seed=cfg.seed + 100 * i + j) for j, (k, c) in enumerate(counts.items())]
            vols = np.concatenate([p[0] for p in parts])
            labs = [x for p in parts for x in p[1]]
        else:
            vols, labs = model.sample(n, seed=cfg.seed + 100 * i)
        labels_used[kind] = _label_counts(labs)
        res = _evaluate_arrays(real, vols, train, light_cfg, norm, None, None, None, None, feat_encoder,
                               light=True, feat_encoder=feat_encoder)
        panel[kind] = headline(res)
        del vols
    panel["labels"] = labels_used
    return panel


def _load(folder: str | Path):
    """(volumes on disk (a DiskVolumes in a scratch folder: memory flat in N), grid, ids, table)."""
    from neurodit.data.cohort import read_cohort

    cohort = read_cohort(folder)
    vols, grid = DiskVolumes.from_cohort(cohort, grid=None)
    return vols, grid, [str(x) for x in cohort.table["participant_id"]], cohort.table


def labels_of(table, column: str) -> list[str | None] | None:
    """One class per row of a cohort table's ``column`` (None where missing), or None without it."""
    if table is None or column not in table.columns:
        return None
    vals = [None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in table[column]]
    return None if all(v is None for v in vals) else vals


def evaluate(real: str | Path, synthetic: str | Path, out: str | Path, train: str | Path | None = None,
             protocol: str = "ours", max_pairs: int = 500, seed: int = 0, permutations: int = 500,
             overwrite: bool = False, cfg: EvalConfig | None = None) -> Path:
    """Evaluate the cohort folder ``synthetic`` against ``real`` (and ``train``); write EVAL_DIR.

    Writes ``out/metrics.json`` (schema in this module's docstring), PNG figures and ``run.json``,
    atomically. All volumes of the (two or three) folders must share one grid. The calibration panel
    (``cfg.calibrate``) is conditioned on the ``cfg.condition`` column of the train and synthetic tables.
    """
    if cfg is not None and cfg.calibrate and train is None:
        raise NeuroditError("--calibrate needs --train (the reference generators are fitted on it)")
    cfg = cfg or EvalConfig(protocol=protocol, max_pairs=max_pairs, seed=seed, permutations=permutations)
    seed_everything(cfg.seed)
    t0 = time.perf_counter()
    r, grid, r_ids, r_table = _load(real)
    s, s_grid, s_ids, s_table = _load(synthetic)
    t, t_grid, t_ids, t_table = (None, None, None, None) if train is None else _load(train)
    for g, table in ((s_grid, s_table), (t_grid, t_table)):
        if g is not None and not grid.same_as(g):
            what = "shape" if tuple(g.shape) != tuple(grid.shape) else "affine"
            # name a file of each side: within a folder load_volumes already checked one grid
            raise NeuroditError(f"grid {what} differs from the real folder's {Path(r_table['path'][0]).name} "
                                f"in {real} ({'x'.join(map(str, g.shape))} vs {'x'.join(map(str, grid.shape))}); "
                                "all volumes must share one grid (prepare both folders onto one grid)",
                                table["path"][0])
    if t_ids is not None:
        shared = sorted(set(r_ids) & set(t_ids))
        if shared:
            raise NeuroditError(f"{len(shared)} participant(s) are in both the real (held-out) and the train "
                                f"folder, e.g. {shared[0]}: split by participant", real)
    leakage = check_inputs(real, r_ids, synthetic, s_ids, train, t_ids)
    load_s = time.perf_counter() - t0
    with atomic_dir(out, overwrite=overwrite) as tmp:
        metrics = evaluate_arrays(r, s, t, cfg, Normalization(), fig_dir=tmp, real_ids=r_ids, syn_ids=s_ids,
                                  train_ids=t_ids, syn_labels=labels_of(s_table, cfg.condition),
                                  train_labels=labels_of(t_table, cfg.condition),
                                  voxel_volume_ml=float(np.prod(grid.voxel_size)) / 1000.0,
                                  tables={"real": r_table, "synthetic": s_table, "train": t_table})
        metrics["grid"] = grid.to_dict()
        metrics["timings_s"]["load"] = round(load_s, 3)
        metrics["inputs"] = {"real": str(real), "synthetic": str(synthetic),
                             "train": None if train is None else str(train)}
        write_json(tmp / "metrics.json", metrics)
        write_run_info(tmp, dataclasses.asdict(cfg), cfg.seed, inputs=metrics["inputs"], leakage=leakage)
    return Path(out)


def check_inputs(real: str | Path, real_ids: list[str], synthetic: str | Path, syn_ids: list[str],
                 train: str | Path | None = None, train_ids: list[str] | None = None) -> dict:
    """The participant checks of an evaluation (``evaluate``; ``compare`` reuses them): synthetic ids
    distinct from real ones, and REAL_DIR disjoint from the generator's training set
    (:func:`neurodit.data.leakage.check_no_leakage`). Returns what was checked (saved in run.json)."""
    from neurodit.data.leakage import check_distinct_ids, check_no_leakage

    check_distinct_ids(syn_ids, synthetic, real=(real_ids, real), train=(train_ids, train))
    checked = check_no_leakage(real_ids, real, synthetic)
    if checked is None:
        return {"checked": False, "reason": "the synthetic folder's run.json names no generator (run_dir or "
                                            "train_cohort)"}
    return {"checked": True, "generator": checked.generator, "training_set": checked.source,
            "n_training_participants": len(checked.ids)}

"""The judge's metric families on volume sets: the numbers of each section of metrics.json.

Each function takes the sets of one evaluation (model range [-1, 1] unless said: mm²/s for the tissue
histograms) and the evaluation mask, and returns its section's dict (schema in
:mod:`neurodit.metrics.evaluate`, which calls them in a fixed order: the seeded draws depend on it).
Sets may be in memory or on disk (:mod:`neurodit.metrics.volumes`): every family reads on-disk sets a
few volumes at a time. The verdict sentences are in :mod:`neurodit.metrics.verdicts`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from scipy import stats

from neurodit.data.mask import BRAIN_MIN_MM2S
from neurodit.errors import NeuroditError
from neurodit.metrics.config import EvalConfig
from neurodit.metrics.memorization import memorization_audit
from neurodit.metrics.mmd import mmd_from_gram, mmd_test, volume_features

# one truth for the tissue split (morphometry owns it)
from neurodit.metrics.morphometry import TISSUE_THRESHOLDS_MM2S
from neurodit.metrics.msssim import MSSSIMSettings, pairwise_msssim
from neurodit.metrics.volumes import chunks, is_lazy


def strip_arrays(d: dict) -> dict:
    """A family's dict without its in-memory arrays (``_arrays``, ``values``): what metrics.json keeps."""
    return {k: v for k, v in d.items() if k not in ("_arrays", "values")}


# MS-SSIM pairs are budgeted in voxels: up to 64^3 voxels a volume ``max_pairs`` per group; above it fewer,
# in proportion, but never under MIN_PAIRS (a 2 mm pair costs 34x a 32^3 one: 500 pairs a group took 65 s of
# a 125 s `evaluate` of 40 + 40 + 40 volumes at 2 mm on 2 AVX2 cores; the CI says what fewer pairs cost)
PAIR_VOXELS = 64 ** 3
MIN_PAIRS = 100


def pairs_for(shape: tuple[int, ...], max_pairs: int, floor: int = MIN_PAIRS) -> int:
    """Pairs per group for volumes of ``shape``: ``max_pairs`` up to :data:`PAIR_VOXELS` voxels, then scaled
    down by the volume's size, at least ``floor`` (or ``max_pairs`` where that is fewer). MS-SSIM uses the
    default floor; the reformat-SSIM coherence pairs a floor of 20."""
    voxels = int(np.prod(shape))
    if voxels <= PAIR_VOXELS:
        return max_pairs
    return min(max_pairs, max(floor, int(max_pairs * PAIR_VOXELS / voxels)))


def msssim_family(r_m, s_m, settings: MSSSIMSettings, max_pairs: int, seed: int, bootstrap: int) -> tuple[dict, dict]:
    """(pairwise results with their ``values``, the ``msssim`` section) for real-real, real-syn, syn-syn
    pairs of the (N, D, H, W) model-range sets ``r_m``, ``s_m`` (group i seeded ``seed + i``); at most
    :func:`pairs_for` ``max_pairs`` pairs a group (``pairs_per_group`` in the section)."""
    max_pairs = pairs_for(r_m.shape[1:], max_pairs)
    ms = {k: pairwise_msssim(a, b, settings, max_pairs, seed + i, bootstrap)
          for i, (k, a, b) in enumerate((("real_real", r_m, None), ("real_syn", r_m, s_m),
                                         ("syn_syn", s_m, None)))}
    msssim = {k: strip_arrays(v) for k, v in ms.items()} | settings.to_dict() | {"pairs_per_group": max_pairs}
    # diversity beyond the mean: synthetic pairs more alike than the most alike real pair (near-duplicates)
    rr_max = float(ms["real_real"]["values"].max()) if len(ms["real_real"]["values"]) else float("nan")
    msssim["syn_syn_above_real_max"] = float((ms["syn_syn"]["values"] > rr_max).mean()) \
        if len(ms["syn_syn"]["values"]) else float("nan")
    return ms, msssim


def floor_split(rng: np.random.Generator, n_real: int) -> tuple[np.ndarray, np.ndarray]:
    """Two seeded halves of the real set (indices): the MMD floor without a training set."""
    perm = rng.permutation(n_real)
    half = n_real // 2
    return perm[:half], perm[half:]


def mmd_family(r_m, s_m, t_m, mask: np.ndarray, halves: tuple[np.ndarray, np.ndarray] | None, permutations: int,
               seed: int, encoder: Callable[[torch.Tensor], torch.Tensor] | None = None) -> dict:
    """The ``mmd`` section: linear and RBF MMD of real vs synthetic in-mask voxels and the real-vs-real floor
    (``t_m`` vs ``r_m``, or the two ``halves`` of ``r_m`` without a training set); with an ``encoder``
    also the RBF MMD on its features (``rbf_features``)."""
    floor_sets = "real train vs real held-out (REAL_DIR)" if t_m is not None else "two random halves of REAL_DIR"
    mmd = {"features": "in-mask voxels in model range [-1, 1]", "floor_sets": floor_sets}
    if not any(is_lazy(x) for x in (r_m, s_m, t_m) if x is not None):
        f_r, f_s = volume_features(r_m, mask), volume_features(s_m, mask)
        f_a, f_b = (volume_features(t_m, mask), f_r) if t_m is not None else (f_r[halves[0]], f_r[halves[1]])
        for kernel in ("linear", "rbf"):
            mmd[kernel] = {"real_syn": mmd_test(f_r, f_s, kernel, permutations, seed),
                           "floor": mmd_test(f_a, f_b, kernel, permutations, seed)}
    else:
        # on-disk sets: the (N, N) Gram matrix of the in-mask voxels, accumulated a few volumes at a time,
        # instead of the (N, n_mask) feature matrices (the same MMD from the same Gram matrix)
        gram = pooled_gram([r_m, s_m] + ([t_m] if t_m is not None else []), mask)
        nr, ns = len(r_m), len(s_m)
        i_r, i_s = np.arange(nr), nr + np.arange(ns)
        i_a, i_b = (nr + ns + np.arange(len(t_m)), i_r) if t_m is not None else halves
        for kernel in ("linear", "rbf"):
            mmd[kernel] = {"real_syn": mmd_from_gram(_sub_gram(gram, i_r, i_s), nr, kernel, permutations, seed),
                           "floor": mmd_from_gram(_sub_gram(gram, i_a, i_b), len(i_a), kernel, permutations, seed)}
    if encoder is not None:
        e_r, e_s = volume_features(r_m, encoder=encoder), volume_features(s_m, encoder=encoder)
        if t_m is not None:
            e_a, e_b = volume_features(t_m, encoder=encoder), e_r
        else:
            e_a, e_b = e_r[halves[0]], e_r[halves[1]]
        mmd["rbf_features"] = {"real_syn": mmd_test(e_r, e_s, "rbf", permutations, seed),
                               "floor": mmd_test(e_a, e_b, "rbf", permutations, seed)}
    return mmd


def memorization_family(r_m, s_m, t_m, mask: np.ndarray, ids: dict[str, list[str] | None]) -> dict:
    """The ``memorization`` section (with its ``_arrays``): synthetic vs TRAIN (REAL as held-out), or vs REAL
    without a training set; the closest pairs named by ``ids`` (``{"real" | "synthetic" | "train": ids}``)."""
    mem = memorization_audit(s_m, r_m if t_m is None else t_m, None if t_m is None else r_m, mask)
    ref_ids = ids.get("real") if t_m is None else ids.get("train")
    syn_ids = ids.get("synthetic")
    for c in mem["closest"]:
        c["synthetic_id"] = syn_ids[c["synthetic"]] if syn_ids else None
        c["reference_id"] = ref_ids[c["reference"]] if ref_ids else None
    mem["reference_set"] = "REAL_DIR (no --train)" if t_m is None else "TRAIN_DIR"
    return mem


def tissue_family(real, synthetic, mask: np.ndarray, rng: np.random.Generator,
                  n_values: int = 200_000) -> tuple[dict, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(the ``tissue`` section, real values, synthetic values per class): MD (mm²/s) of WM-, GM- and CSF-like
    voxels of the median real map, ``n_values`` seeded draws per class and set, their Wasserstein distance."""
    # classes from the median real map; each volume's own background zeros are left out below
    classes = tissue_classes(np.median(real, axis=0), mask)
    tissue: dict = {"thresholds_mm2s": list(TISSUE_THRESHOLDS_MM2S)}
    r_vals, s_vals = {}, {}
    for name, cm in classes.items():
        if cm.sum() == 0:
            tissue[name] = {"real_mean": None, "syn_mean": None, "wasserstein": None, "n_voxels": 0}
            continue
        r_vals[name] = _class_values(real, cm, n_values, rng)
        s_vals[name] = _class_values(synthetic, cm, n_values, rng)
        if r_vals[name].size == 0 or s_vals[name].size == 0:
            tissue[name] = {"real_mean": None, "syn_mean": None, "wasserstein": None, "n_voxels": int(cm.sum())}
            r_vals.pop(name), s_vals.pop(name)
            continue
        tissue[name] = {"real_mean": float(r_vals[name].mean()), "syn_mean": float(s_vals[name].mean()),
                        "wasserstein": float(stats.wasserstein_distance(r_vals[name], s_vals[name])),
                        "n_voxels": int(cm.sum())}
    return tissue, r_vals, s_vals


def c2st_family(real: np.ndarray, synthetic: np.ndarray, train: np.ndarray | None, mask: np.ndarray,
                cfg: EvalConfig) -> dict:
    """The ``c2st`` section: :func:`neurodit.metrics.c2st.c2st_report` against REAL_DIR, or train + REAL_DIR."""
    from neurodit.metrics.c2st import c2st_report
    from neurodit.models.small_cnn import MIN_SIDE

    if cfg.c2st_real == "train+heldout":
        if train is None:
            raise NeuroditError("c2st_real 'train+heldout' needs --train")
        real_side = np.concatenate([train, real])
    else:
        real_side = real
    views, skipped = list(cfg.c2st_views), []
    if "cnn" in views and min(real.shape[1:]) < MIN_SIDE:
        views.remove("cnn")
        skipped.append(f"cnn: grid {real.shape[1:]} has a side < {MIN_SIDE['small']} voxels")
    rep = c2st_report(real_side, synthetic, mask, views=views, folds=cfg.c2st_folds,
                      permutations=cfg.c2st_permutations, seed=cfg.seed, bootstrap=cfg.bootstrap,
                      cnn_epochs=cfg.c2st_cnn_epochs)
    return {"real_side": cfg.c2st_real, **rep, "skipped": skipped}


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


__all__ = ["c2st_family", "floor_split", "memorization_family", "mmd_family", "msssim_family", "pooled_gram",
           "strip_arrays", "tissue_classes", "tissue_family"]

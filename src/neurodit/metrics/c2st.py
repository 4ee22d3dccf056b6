"""Classifier two-sample test (C2ST; Lopez-Paz & Oquab 2017, "Revisiting classifier two-sample tests"):
can a classifier, trained on some real and synthetic volumes, tell them apart on held-out folds?

AUC 0.5 = indistinguishable, 1.0 = always told apart. Protocol (all seeded):

1. Balance the classes: the larger set is subsampled to the size of the smaller one.
2. Stratified K-fold: a classifier is fitted on K-1 folds and scores the held-out fold.
3. ``auc`` = the mean over folds of the *within-fold* AUC (a stratified Mann-Whitney statistic, van
   Elteren 1960). Why not the AUC of the pooled out-of-fold scores: comparing scores made by different
   fold models couples each test volume with the training sets it was part of, which pushes the pooled
   AUC of two identical populations well below 0.5 ("anti-learning"; seen at 0.01-0.14 on matched sets).
   Within a fold both test volumes are scored by one model that saw neither, so under the null the
   within-fold AUC is exactly centred on 0.5. ``auc_pooled`` is reported too.
4. ``auc_ci95``: by inverting the permutation test under a shift model,
   ``[auc - q97.5(null - median), auc - q2.5(null - median)]``, so it carries the whole spread of the
   cross-validated AUC (fold models included); for the CNN view ``auc +- 1.96 se`` of the stratified
   Mann-Whitney null. ``auc_ci95_bootstrap`` (resampling the test volumes within each fold and class,
   the fold models fixed) is narrower: it ignores how much the fold models themselves vary, and on two
   matched real sets it excluded 0.5 (AUC 0.33, [0.20, 0.48]) while the permutation interval did not.
5. ``p_value`` (one-sided, "synthetic is detectable"): linear views by a label permutation test with the
   SAME folds, labels permuted within each fold (so every fold keeps its class balance), classifier
   refitted, ``p = (1 + #{AUC_perm >= AUC}) / (1 + permutations)``; the CNN view (too slow to refit
   hundreds of times) by the normal approximation of the stratified Mann-Whitney test on the
   within-fold scores (each fold AUC has null variance (n1 + n2 + 1) / (12 n1 n2)).

Views (features of each (D, H, W) volume inside the brain mask):

- ``voxel``: the MD values; L2 logistic regression (C = 1) on standardized features divided by sqrt(F)
  (F features), so the strength of the regularization does not depend on the grid: with thousands of
  voxels this is close to a nearest-class-mean classifier, the most sensitive one for a small shift
  spread over the whole brain.
- ``texture``: gradient magnitude, local variance (3x3x3) and |Laplacian| maps: what a radiologist calls
  texture / sharpness; same classifier. White voxel noise or over-smooth samples show here.
- ``cnn``: the small 3D CNN (``neurodit.models.small_cnn.SmallCNN``, one logit) trained a few epochs per
  fold on the volumes in model range (``neurodit.models.fit.fit_network``).

The logistic regression is fitted in the dual: with p >> n features, the L2 solution lies in the span of
the training rows (representer theorem), so fitting it on the training rows' coordinates in that span
(from the n_tr x n_tr Gram matrix, accumulated over feature chunks) gives exactly the same scores at a
fraction of the cost, and the per-fold Gram matrices do not depend on the labels, so each permutation
only refits an n_tr-dimensional problem.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
from scipy import ndimage, stats

from neurodit.errors import NeuroditError

VIEWS = ("voxel", "texture", "cnn")
VIEW_WORDS = {"voxel": "a linear classifier on the voxel values",
              "texture": "a linear classifier on local texture (gradients, local variance, edges)",
              "cnn": "a small 3D CNN"}
CHUNK = 1 << 15  # features per chunk when accumulating Gram matrices


# ------------------------------------------------------------------------------------------- features
def view_features(volumes_mm2s: np.ndarray, mask: np.ndarray, view: str) -> np.ndarray:
    """(N, D, H, W) mm²/s -> (N, F) float32 features of a linear view (``voxel`` or ``texture``)."""
    mask = np.asarray(mask, dtype=bool)
    vols = np.asarray(volumes_mm2s)
    if view == "voxel":
        return (vols[:, mask] * 1e3).astype(np.float32)  # (N, M) in µm²/ms (units only for float range)
    if view != "texture":
        raise NeuroditError(f"no linear features for view '{view}'")
    out = np.empty((len(vols), 3 * int(mask.sum())), dtype=np.float32)
    m = int(mask.sum())
    for i, v in enumerate(vols):
        x = v.astype(np.float64) * 1e3  # (D, H, W)
        grad = np.sqrt(sum(g ** 2 for g in np.gradient(x)))
        mu = ndimage.uniform_filter(x, size=3)
        var = np.clip(ndimage.uniform_filter(x * x, size=3) - mu * mu, 0.0, None)
        lap = np.abs(ndimage.laplace(x))
        out[i, :m], out[i, m:2 * m], out[i, 2 * m:] = grad[mask], var[mask], lap[mask]
    return out


# ------------------------------------------------------------------------------------------- AUC tools
def _auc(scores: np.ndarray, y: np.ndarray) -> float:
    """Mann-Whitney AUC of ``scores`` with positives ``y == 1`` (ties count 1/2)."""
    pos, neg = int(y.sum()), int((1 - y).sum())
    if pos == 0 or neg == 0:
        return float("nan")
    r = stats.rankdata(scores)
    return float((r[y == 1].sum() - pos * (pos + 1) / 2) / (pos * neg))


def _fold_auc(scores: np.ndarray, y: np.ndarray, fold_of: np.ndarray) -> float:
    return float(np.nanmean([_auc(scores[fold_of == k], y[fold_of == k]) for k in np.unique(fold_of)]))


def _fold_auc_batch(scores: np.ndarray, y: np.ndarray, fold_of: np.ndarray) -> np.ndarray:
    """:func:`_fold_auc` of each row of ``scores`` (B, n), with labels ``y`` (n,) shared by the rows or
    (B, n) per row, and one ``fold_of`` (n,) -> (B,). One ``rankdata`` per fold over all rows instead of
    B calls; the rank sums are sums of half-integers (exact in float64), so every value is the same
    float :func:`_fold_auc` gives."""
    y = np.broadcast_to(y, scores.shape)
    per_fold = []
    for k in np.unique(fold_of):
        cols = fold_of == k
        yk = y[:, cols]
        pos = yk.sum(axis=1)
        neg = int(cols.sum()) - pos
        ranks = stats.rankdata(scores[:, cols], axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            auc = ((ranks * yk).sum(axis=1) - pos * (pos + 1) / 2) / (pos * neg)
        per_fold.append(np.where((pos == 0) | (neg == 0), np.nan, auc))
    return np.nanmean(np.stack(per_fold), axis=0)


def _bootstrap_ci(scores: np.ndarray, y: np.ndarray, fold_of: np.ndarray, n_boot: int,
                  rng: np.random.Generator) -> list[float]:
    """95 % percentile interval of the fold-mean AUC, resampling within each (fold, side) group."""
    groups = [np.flatnonzero((fold_of == k) & (y == c)) for k in np.unique(fold_of) for c in (0, 1)]
    # the draws stay one rng.choice per group and resample, in this order, so the stream (and the CI)
    # is what the one-resample-at-a-time loop gave; every resample has the same y and fold layout
    idx = np.array([np.concatenate([rng.choice(g, len(g)) for g in groups]) for _ in range(n_boot)])
    order = np.concatenate(groups)
    vals = _fold_auc_batch(scores[idx], y[order], fold_of[order]) if n_boot else np.empty(0)
    lo, hi = np.nanpercentile(vals, [2.5, 97.5])
    return [float(lo), float(hi)]


def _folds(y: np.ndarray, folds: int, seed: int, strata: np.ndarray | None = None) -> np.ndarray:
    """Fold index per volume, stratified by side (and by ``strata``, e.g. sex, when every (side, stratum)
    group has >= ``folds`` members)."""
    from sklearn.model_selection import StratifiedKFold

    k = int(min(folds, np.bincount(y).min()))
    if k < 2:
        raise NeuroditError("C2ST needs >= 2 volumes on each side")
    key = y
    if strata is not None:
        _, s_id = np.unique(strata, return_inverse=True)
        joint = y * (s_id.max() + 1) + s_id
        if np.bincount(joint)[np.unique(joint)].min() >= k:
            key = joint
    fold_of = np.empty(len(y), dtype=int)
    for i, (_, te) in enumerate(StratifiedKFold(k, shuffle=True, random_state=seed).split(np.zeros(len(y)), key)):
        fold_of[te] = i
    return fold_of


# ------------------------------------------------------------------------------------------- linear views
def _dual_coordinates(feats: np.ndarray, fold_of: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per fold: (train coordinates (n_tr, r), test coordinates (n_te, r)) of the standardized features
    in the span of the training rows (standardization with the training rows' mean / sd)."""
    out = []
    n, p = feats.shape
    for k in np.unique(fold_of):
        tr, te = np.flatnonzero(fold_of != k), np.flatnonzero(fold_of == k)
        g = np.zeros((n, len(tr)))  # (N, n_tr) = X_std X_std[tr]^T
        for a in range(0, p, CHUNK):
            x = feats[:, a:a + CHUNK].astype(np.float64)  # (N, chunk)
            mu, sd = x[tr].mean(0), x[tr].std(0)
            x = (x - mu) / np.where(sd > 1e-12, sd, 1.0)
            g += x @ x[tr].T
        g /= p  # features / sqrt(F): the regularization then does not depend on the number of voxels
        lam, vec = np.linalg.eigh(g[tr])  # g[tr] = U S^2 U^T
        keep = lam > max(lam.max(), 0.0) * 1e-10
        lam, vec = lam[keep], vec[:, keep]
        s = np.sqrt(lam)
        out.append((vec * s, g[te] @ vec / s))  # X_tr W = U S, X_te W = X_te X_tr^T U / S
    return out


def logistic_fit(z: np.ndarray, y: np.ndarray, c: float = 1.0, iters: int = 50) -> np.ndarray:
    """L2 logistic regression, min 0.5 |w|^2 + c * sum_i log(1 + exp(-(2 y_i - 1)(z_i w + b))) (the
    objective of scikit-learn's ``LogisticRegression(C=c)``, intercept unpenalized), by damped Newton,
    for many label vectors at once.

    z: (n, r) features; y: (P, n) 0/1 labels -> (P, r + 1) parameters [w, b]. Vectorized over P so
    that a permutation test refits hundreds of times in a fraction of a second.
    """
    n, r = z.shape
    za = np.c_[z, np.ones(n)]  # (n, r + 1)
    y = np.atleast_2d(y).astype(np.float64)  # (P, n)
    pen = np.r_[np.ones(r), 1e-8]  # penalty on w, (almost) none on b
    theta = np.zeros((len(y), r + 1))

    def objective(th: np.ndarray) -> np.ndarray:
        f = th @ za.T  # (P, n)
        return 0.5 * (pen * th * th).sum(1) + c * (np.logaddexp(0, f) - y * f).sum(1)

    obj = objective(theta)
    for _ in range(iters):
        prob = 1.0 / (1.0 + np.exp(-(theta @ za.T)))  # (P, n)
        grad = pen * theta + c * (prob - y) @ za  # (P, r + 1)
        hess = np.einsum("pn,ni,nj->pij", c * prob * (1 - prob), za, za) + np.diag(pen)[None]
        step = np.linalg.solve(hess, grad[..., None])[..., 0]
        best_t, best_o = theta, obj
        for eta in (1.0, 0.5, 0.25, 0.1):  # damping: keep the best of a few step lengths per fit
            cand = theta - eta * step
            o = objective(cand)
            better = o < best_o
            best_t, best_o = np.where(better[:, None], cand, best_t), np.where(better, o, best_o)
        done = obj - best_o < 1e-10 * (1 + np.abs(obj))
        theta, obj = best_t, best_o
        if done.all():
            break
    return theta


def _linear_scores(coords, y: np.ndarray, fold_of: np.ndarray, c: float) -> np.ndarray:
    """Out-of-fold decision scores; ``y`` (N,) or (P, N) label vectors -> same shape."""
    ys = np.atleast_2d(y)
    scores = np.empty(ys.shape)
    for k, (z_tr, z_te) in zip(np.unique(fold_of), coords, strict=True):
        tr, te = fold_of != k, fold_of == k
        theta = logistic_fit(z_tr, ys[:, tr], c)
        scores[:, te] = theta[:, :-1] @ z_te.T + theta[:, -1:]
    return scores.reshape(np.shape(y))


def _permute_within_folds(y: np.ndarray, fold_of: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    yp = y.copy()
    for k in np.unique(fold_of):
        idx = np.flatnonzero(fold_of == k)
        yp[idx] = y[rng.permutation(idx)]
    return yp


# ------------------------------------------------------------------------------------------- CNN view
def _cnn_scores(vols_model: np.ndarray, y: np.ndarray, fold_of: np.ndarray, epochs: int, seed: int,
                batch: int = 16, lr: float = 1e-3) -> np.ndarray:
    """Out-of-fold logits (N,) of a small 3D CNN trained on the other folds; volumes (N, D, H, W) in model range."""
    import torch

    from neurodit.models.fit import batched_outputs, fit_network
    from neurodit.models.small_cnn import MIN_SIDE, SmallCNN, input_pool

    if min(vols_model.shape[1:]) < MIN_SIDE:
        raise NeuroditError(f"C2ST cnn view needs >= {MIN_SIDE} voxels a side, got {vols_model.shape[1:]}")
    x_all = torch.from_numpy(np.ascontiguousarray(vols_model, dtype=np.float32))[:, None]  # (N, 1, D, H, W)
    pool = input_pool(vols_model.shape[1:])
    if pool > 1:  # the network's working grid (small_cnn.WORK_SIDE), pooled once for all folds and epochs
        x_all = torch.nn.functional.avg_pool3d(x_all, pool, ceil_mode=True)  # (N, 1, D/p, H/p, W/p)
    yt = torch.from_numpy(y.astype(np.float32))
    scores = np.empty(len(y))

    def bce(out: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.binary_cross_entropy_with_logits(out[:, 0], yb)  # out (B, 1), yb (B,)

    for k in np.unique(fold_of):
        torch.manual_seed(seed + int(k))  # the fold's initial weights
        tr, te = torch.from_numpy(np.flatnonzero(fold_of != k)), np.flatnonzero(fold_of == k)
        net = SmallCNN(n_outputs=1)
        fit_network(net, len(tr), lambda b, tr=tr: (x_all[tr[b]], yt[tr[b]]), bce, epochs=epochs,
                    batch_size=batch, lr=lr, weight_decay=1e-2, seed=seed + int(k), what="C2ST CNN")
        scores[te] = torch.cat([out[:, 0] for out in batched_outputs(net, x_all[te, 0], batch_size=64)]).numpy()
    return scores


def _null_se(y: np.ndarray, fold_of: np.ndarray) -> float:
    """sd of the mean of independent within-fold AUCs under the null (Mann-Whitney variance per fold)."""
    var = [(n1 + n0 + 1) / (12.0 * n1 * n0) for n1, n0 in
           ((int(y[fold_of == k].sum()), int((1 - y[fold_of == k]).sum())) for k in np.unique(fold_of))]
    return float(np.sqrt(np.sum(var)) / len(var))


def _stratified_mwu_p(auc: float, y: np.ndarray, fold_of: np.ndarray) -> float:
    return float(stats.norm.sf((auc - 0.5) / _null_se(y, fold_of)))


# ------------------------------------------------------------------------------------------- public
def _fmt_p(p: float) -> str:
    return "p < 0.01" if p < 0.01 else f"p {p:.2f}"


def c2st_verdict(view: str, auc: float, p: float) -> str:
    """One sentence for a clinician, e.g. 'a linear classifier on the voxel values tells synthetic from
    real with AUC 0.99 (p < 0.01): easy to tell apart'."""
    who, ps = VIEW_WORDS.get(view, view), _fmt_p(p)
    if p < 0.05 and auc >= 0.9:
        return f"{who} tells synthetic from real with AUC {auc:.2f} ({ps}): easy to tell apart"
    if p < 0.05 and auc >= 0.7:
        return f"{who} tells synthetic from real with AUC {auc:.2f} ({ps}): clearly distinguishable"
    if p < 0.05:
        return f"{who} tells synthetic from real slightly better than chance, AUC {auc:.2f} ({ps}): subtly different"
    return f"{who} could not tell synthetic from real (AUC {auc:.2f}, {ps}): could not tell them apart"


def c2st(real_mm2s: np.ndarray, syn_mm2s: np.ndarray, mask: np.ndarray, view: str = "voxel", *,
         folds: int = 5, permutations: int = 100, seed: int = 0, bootstrap: int = 1000, c: float = 1.0,
         cnn_epochs: int = 8, real_strata: Sequence | None = None, syn_strata: Sequence | None = None) -> dict:
    """C2ST of real vs synthetic (N, D, H, W) volumes in mm²/s inside ``mask`` (D, H, W) for one view.

    Returns ``{view, auc, auc_ci95 [lo, hi], auc_ci95_bootstrap, auc_pooled, p_value, n_real, n_synthetic, folds,
    permutations, method, seconds, verdict}`` (n_* after balancing; permutations 0 for the CNN view,
    whose p-value is the stratified Mann-Whitney normal approximation; see the module docstring).
    ``real_strata`` / ``syn_strata``: a class per volume (e.g. sex) to stratify the folds by as well.
    Why: when both sets hold the same mix of a strong covariate, folds stratified by side alone can give
    a training part with more of one class on one side and a test part with fewer, so the classifier
    learns the covariate backwards. (Measured: on two sex-matched real halves of a phantom this alone did
    not remove the low AUC, 0.34 with or without it; the permutation p-value stays the judge.)
    """
    if view not in VIEWS:
        raise NeuroditError(f"unknown C2ST view '{view}' (use {', '.join(VIEWS)})")
    t0 = time.perf_counter()
    from neurodit.metrics.volumes import is_lazy

    # on-disk sets stay lazy: only the balanced subsets real[ri], syn[si] below are read
    real, syn = ((x if is_lazy(x) else np.asarray(x)) for x in (real_mm2s, syn_mm2s))
    if real.ndim != 4 or syn.ndim != 4 or real.shape[1:] != syn.shape[1:]:
        raise NeuroditError(f"C2ST sets must be (N, D, H, W) on one grid, got {real.shape} and {syn.shape}")
    rng = np.random.default_rng(seed)
    n = min(len(real), len(syn))
    ri = np.sort(rng.choice(len(real), n, replace=False)) if len(real) > n else np.arange(n)
    si = np.sort(rng.choice(len(syn), n, replace=False)) if len(syn) > n else np.arange(n)
    y = np.r_[np.zeros(n, int), np.ones(n, int)]  # 1 = synthetic
    strata = None
    if real_strata is not None and syn_strata is not None:
        if len(real_strata) != len(real) or len(syn_strata) != len(syn):
            raise NeuroditError("C2ST strata need one value per volume")
        strata = np.array([str(real_strata[i]) for i in ri] + [str(syn_strata[i]) for i in si])
    fold_of = _folds(y, folds, seed, strata)
    if view == "cnn":
        from neurodit.data.normalize import Normalization

        norm = Normalization()
        vols = np.concatenate([norm.to_model(real[ri]), norm.to_model(syn[si])]).astype(np.float32)
        scores = _cnn_scores(vols, y, fold_of, cnn_epochs, seed)
        auc = _fold_auc(scores, y, fold_of)
        p, n_perm = _stratified_mwu_p(auc, y, fold_of), 0
        se = _null_se(y, fold_of)
        ci = [auc - 1.96 * se, auc + 1.96 * se]
        method = (f"small 3D CNN, {cnn_epochs} epochs per fold; p: stratified Mann-Whitney U (van Elteren), "
                  "normal approximation on within-fold scores")
    else:
        feats = np.concatenate([view_features(real[ri], mask, view), view_features(syn[si], mask, view)])
        coords = _dual_coordinates(feats, fold_of)
        del feats
        scores = _linear_scores(coords, y, fold_of, c)
        auc = _fold_auc(scores, y, fold_of)
        null = []
        for start in range(0, permutations, 100):  # 100 refits per batch bounds the (P, n, n) Hessians
            yp = np.array([_permute_within_folds(y, fold_of, rng) for _ in range(min(100, permutations - start))])
            sp = _linear_scores(coords, yp, fold_of, c)
            null += list(_fold_auc_batch(sp, yp, fold_of))
        null = np.asarray(null)
        d = null - np.median(null)
        ci = [float(auc - np.percentile(d, 97.5)), float(auc - np.percentile(d, 2.5))]
        p, n_perm = float((1 + np.sum(null >= auc - 1e-12)) / (1 + permutations)), permutations
        method = (f"L2 logistic regression (C={c}) on standardized {view} features / sqrt(F); p: label permutations "
                  "within the same folds, refitted")
    return {"view": view, "auc": auc, "auc_ci95": [float(np.clip(x, 0.0, 1.0)) for x in ci],
            "auc_ci95_bootstrap": _bootstrap_ci(scores, y, fold_of, bootstrap, rng),
            "auc_pooled": _auc(scores, y), "p_value": p, "n_real": int(n), "n_synthetic": int(n),
            "folds": int(fold_of.max() + 1), "permutations": n_perm, "method": method,
            "seconds": round(time.perf_counter() - t0, 3), "verdict": c2st_verdict(view, auc, p)}


def c2st_report(real_mm2s: np.ndarray, syn_mm2s: np.ndarray, mask: np.ndarray,
                views: Sequence[str] = VIEWS, **kw) -> dict:
    """:func:`c2st` for each view -> ``{views: {view: result}, verdict}``; the verdict is that of the view
    that separates best (highest AUC among significant ones), else the 'could not tell' of all views."""
    res = {v: c2st(real_mm2s, syn_mm2s, mask, v, **kw) for v in views}
    if not res:
        raise NeuroditError("no C2ST views requested")
    sig = [r for r in res.values() if r["p_value"] < 0.05]
    if sig:
        verdict = max(sig, key=lambda r: r["auc"])["verdict"]
    else:
        aucs = ", ".join(f"{v} {r['auc']:.2f}" for v, r in res.items())
        verdict = f"no classifier could tell synthetic from real (AUC {aucs}; all p >= 0.05): could not tell them apart"
    return {"views": res, "verdict": verdict}

"""Class effect size in real vs synthetic volumes as a function of classifier-free guidance (issue 21).

Why: a sex classifier trained on synthetic volumes only scored above one trained on real volumes. The
hypothesis: guidance (Ho & Salimans 2022) pushes samples toward what is typical of their class, so the
sex difference in the samples is larger than in real data and the synthetic task is easier. This module
measures that difference directly, on the volumes, and through one fixed classifier:

- :func:`class_effect`: the mean difference map (class 1 mean - class 0 mean, i.e. M - F) inside a
  mask: its RMS, and voxelwise Cohen's d (pooled sd, Cohen 1988) summarised as mean |d|, each with a
  bootstrap 95% CI (subjects resampled within class). Both raw values are biased upward by sampling
  noise, more for a small set: with n per class the noise alone gives an RMS of about
  sqrt(mean(s1^2/n1 + s0^2/n0)). Sets of different size (40 real vs 100 synthetic) are therefore
  compared on the *excess over noise* ("..._excess": signed sqrt of the squared norm less its noise
  expectation; about 0 with no difference, negative when the set differs less than noise alone would).
- :func:`classifier_margin`: the class-balanced mean signed margin ``2 p_true - 1`` and balanced
  accuracy of one fixed sex classifier (the downstream CNN, :mod:`neurodit.downstream.nets`) on a set.
  A set with an exaggerated sex difference gets a larger margin than held-out real volumes.
- :func:`guidance_effect`: the folder layer: samples a trained run at each guidance, measures real and
  every synthetic set on one grid and writes ``OUT`` (atomically).

``OUT`` layout:
  - ``effect.json`` (schema ``neurodit.effect/1``; :func:`read_effect` is the only reader)::

      {"schema": "neurodit.effect/1",
       "inputs": {"run", "real", "train" (or null), "generator", "guidance_applies": bool,
                  "grid_shape", "n", "steps", "seed", "n_boot", "mask_voxels"},
       "classifier": {"arch", "trained_on": str, "n_train", "n_val", "n_test" (participants), "best_epoch"},
       "real": {"set": "real", "effect": EFFECT, "margin": MARGIN},      # effect on all of --real,
                                                                         # margin on its held-out part
       "synthetic": [{"guidance": g, "samples": "samples/g1.5" or null, "effect": EFFECT, "margin": MARGIN,
                      "ratio": {"diff_rms_excess": CI_OR_NULL, "d_rms_excess": CI_OR_NULL},
                      "margin_diff": CI, "verdict": str}, ...],
       "verdict": str}                                                   # one line, what the CIs show

      EFFECT = {"n_per_class": [n0, n1], "n_voxels", "n_boot",
                "diff_rms": CI, "diff_rms_noise": float, "diff_rms_excess": CI,
                "mean_abs_d": CI, "mean_abs_d_null": float, "d_rms_excess": CI}
      MARGIN = {"n_per_class": [n0, n1], "margin": CI, "balanced_accuracy": CI}
      CI = {"value": float, "ci95": [lo, hi]}

    ``ratio``: synthetic / real excess (null when real's excess CI reaches 0: no ratio to a difference
    that is not shown); ``margin_diff``: synthetic margin - held-out real margin. CIs are percentile
    bootstrap intervals (independent resamples of the two sets).
  - ``effect.png``: each measure vs guidance with 95% CI bars, real as a horizontal band.
  - ``samples/g<guidance>/``: the sampled cohorts (kept unless ``keep_samples=False``), ``run.json``.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from neurodit.downstream.labelled import LabelledSet
from neurodit.errors import NeuroditError
from neurodit.io import atomic_dir, atomic_write_bytes, read_schema_json, write_json, write_run_info

SCHEMA = "neurodit.effect/1"
EFFECT_FILE = "effect.json"
FIGURE = "effect.png"
REQUIRED = ("inputs", "real", "synthetic", "verdict")
# the measures plotted and compared against real (excess over noise: comparable across set sizes)
COMPARED = ("diff_rms_excess", "d_rms_excess")
# bootstrap replicates held in memory at once: chunk * n_voxels float64 arrays (~6 of them)
_BOOT_CELLS = 4_000_000


# ------------------------------------------------------------------------------------------ effect
def _signed_sqrt(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.sqrt(np.abs(x))


def _stats(c0: tuple[np.ndarray, ...], c1: tuple[np.ndarray, ...], n0: int, n1: int) -> dict[str, np.ndarray]:
    """The effect measures from each class's (mean, variance, unbiased squared mean), each (..., V), -> (...),
    on the scale where the bootstrap is pivoted (:data:`_SCALE`): squared norms, and mean |d| as is."""
    (m0, v0, u0), (m1, v1, u1) = c0, c1
    diff = m1 - m0  # (..., V) mean difference map, class 1 - class 0
    # unbiased per-voxel (mu1 - mu0)^2: the classes are independent, so only the squares need the U form
    dd = u1 + u0 - 2 * m1 * m0  # (..., V)
    noise2 = np.mean(v1 / n1 + v0 / n0, axis=-1)  # mean(diff^2) - mean(dd): what sampling noise adds
    s2 = ((n1 - 1) * v1 + (n0 - 1) * v0) / (n0 + n1 - 2)  # (..., V) pooled variance
    ok = s2 > 1e-24  # a voxel constant in both classes has no standardised difference (0, not nan)
    d = np.divide(diff, np.sqrt(s2), out=np.zeros_like(diff), where=ok)
    dd_std = np.divide(dd, s2, out=np.zeros_like(dd), where=ok)  # unbiased-ish d^2 per voxel
    d_null2 = 1.0 / n0 + 1.0 / n1  # E[d^2] with no difference, to first order
    return {"diff_rms": np.mean(dd, axis=-1) + noise2, "diff_rms_excess": np.mean(dd, axis=-1),
            "mean_abs_d": np.mean(np.abs(d), axis=-1), "d_rms_excess": np.mean(dd_std, axis=-1),
            "diff_rms_noise": noise2, "mean_abs_d_null": np.full(np.shape(noise2), 2 / np.pi * d_null2)}


# measure -> how its pivot-scale value is reported (squared norms -> signed root)
_SCALE = {"diff_rms": _signed_sqrt, "diff_rms_excess": _signed_sqrt, "mean_abs_d": lambda x: x,
          "d_rms_excess": _signed_sqrt, "diff_rms_noise": np.sqrt, "mean_abs_d_null": np.sqrt}


def _pivot(point: float, reps: np.ndarray) -> np.ndarray:
    """Basic (pivot) bootstrap replicates ``2 point - reps``, centred on the estimate by the replicates' mean.

    A resample adds its own sampling noise to a norm, so plain replicates of ||diff||^2 sit about one noise
    level above the estimate (their percentile interval would not even hold the estimate); the pivot
    ``reps - mean(reps)`` approximates the estimate's error, and ``point - error`` gives the interval."""
    return point - (reps - reps.mean())


def _class_moments(x: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, variance, unbiased squared mean) per voxel of one class for each resample: ``x`` (n, V)
    volumes, ``counts`` (B, n) how often each is drawn (all ones: the sample itself) -> three (B, V).

    A resample's moments are matrix products (fast BLAS) instead of gathers. The squared mean is the
    U-statistic over pairs of *different* subjects, sum_{s != t} w_s w_t x_s x_t / (n^2 - sum w_s^2): a plain
    resampled mean^2 less its variance / n moves with how many subjects a resample repeats, the same way
    at every voxel, and that shared shift would swamp the interval of a norm over thousands of voxels.
    """
    n = x.shape[0]
    mean = counts @ x / n
    sum_w2 = (counts**2).sum(axis=1, keepdims=True)  # (B, 1)
    var = np.maximum(counts @ (x**2) / n - mean**2, 0.0) * n / (n - 1)
    denom = n**2 - sum_w2  # 0 only when a resample repeats one subject n times (no pair: fall back to mean^2)
    u2 = np.divide(n**2 * mean**2 - (counts**2) @ (x**2), denom, out=mean**2, where=denom > 0)
    return mean, var, u2


def _effect_with_boot(volumes: np.ndarray, labels: np.ndarray, mask: np.ndarray, n_boot: int,
                      seed: int, name: str = "volumes") -> tuple[dict, dict[str, np.ndarray]]:
    """:func:`class_effect`'s dict and the bootstrap replicates (n_boot,) of each CI measure."""
    volumes = np.asarray(volumes)
    labels = np.asarray(labels)
    mask = np.asarray(mask, dtype=bool)
    if volumes.ndim != 4:
        raise NeuroditError(f"{name}: volumes must be (N, D, H, W), got shape {volumes.shape}")
    if mask.shape != volumes.shape[1:]:
        raise NeuroditError(f"{name}: mask shape {mask.shape} does not match volumes {volumes.shape[1:]}")
    if labels.shape != (len(volumes),) or not set(np.unique(labels)) <= {0, 1}:
        raise NeuroditError(f"{name}: labels must be (N,) = ({len(volumes)},) with values 0/1")
    if not mask.any():
        raise NeuroditError(f"{name}: the mask is empty")
    if n_boot < 1:
        raise NeuroditError(f"n_boot must be at least 1, got {n_boot}")
    xs = [volumes[labels == c][:, mask].astype(np.float64) for c in (0, 1)]  # (n_c, V) inside the mask
    n0, n1 = len(xs[0]), len(xs[1])
    if min(n0, n1) < 2:
        raise NeuroditError(f"{name}: need at least 2 volumes per class, have {n0} and {n1}")
    point = _stats(_class_moments(xs[0], np.ones((1, n0))), _class_moments(xs[1], np.ones((1, n1))), n0, n1)
    point = {k: v[0] for k, v in point.items()}
    rng = np.random.default_rng(seed)
    chunk = max(1, _BOOT_CELLS // xs[0].shape[1])
    reps: dict[str, list[np.ndarray]] = {}
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        draws = [rng.multinomial(len(x), np.full(len(x), 1.0 / len(x)), size=b).astype(np.float64) for x in xs]
        for k, v in _stats(_class_moments(xs[0], draws[0]), _class_moments(xs[1], draws[1]), n0, n1).items():
            reps.setdefault(k, []).append(v)
    out: dict = {"n_per_class": [n0, n1], "n_voxels": int(mask.sum()), "n_boot": int(n_boot)}
    boot = {}
    for k in ("diff_rms", "diff_rms_noise", "diff_rms_excess", "mean_abs_d", "mean_abs_d_null", "d_rms_excess"):
        value = float(_SCALE[k](point[k]))
        if k.endswith(("_noise", "_null")):  # reference levels of this set's size, no CI
            out[k] = value
        else:
            boot[k] = _SCALE[k](_pivot(float(point[k]), np.concatenate(reps[k])))
            out[k] = _ci(value, boot[k])
    return out, {k: boot[k] for k in COMPARED}


def _ci(value: float, reps: np.ndarray) -> dict:
    lo, hi = np.percentile(reps, [2.5, 97.5])
    return {"value": float(value), "ci95": [float(lo), float(hi)]}


def class_effect(volumes: np.ndarray, labels: np.ndarray, mask: np.ndarray, n_boot: int = 1000,
                 seed: int = 0) -> dict:
    """Size of the class difference in a set of volumes, with bootstrap 95% CIs.

    Args:
        volumes: (N, D, H, W) float, model range (background -1).
        labels: (N,) 0/1 (sex: F=0, M=1); at least 2 volumes per class.
        mask: (D, H, W) bool, the voxels measured (e.g. where any real volume is above background).
        n_boot: bootstrap resamples (subjects drawn with replacement within each class).
        seed: bootstrap seed.
    Returns:
        ``EFFECT`` of the module docstring: ``diff_rms`` (RMS of the class-1 minus class-0 mean map inside
        the mask, model units), ``mean_abs_d`` (mean |Cohen's d|), their noise-only levels for this set's
        size (``diff_rms_noise``, ``mean_abs_d_null``) and excesses over noise (``diff_rms_excess``,
        ``d_rms_excess``: RMS of d above its null level), each CI as ``{"value", "ci95": [lo, hi]}``.
    """
    return _effect_with_boot(volumes, labels, mask, n_boot, seed)[0]


# ------------------------------------------------------------------------------------------ margin
def _margin_stats(p_true: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(class-balanced mean of 2 p_true - 1, balanced accuracy) of one set."""
    per_class = [p_true[labels == c] for c in (0, 1)]
    return (float(np.mean([np.mean(2 * p - 1) for p in per_class])),
            float(np.mean([np.mean(p > 0.5) for p in per_class])))


def _margin_with_boot(model, volumes: np.ndarray, labels: np.ndarray, *, n_boot: int, seed: int,
                      device: str = "cpu", batch_size: int = 32) -> tuple[dict, np.ndarray]:
    """:func:`classifier_margin`'s dict and the margin's bootstrap replicates (n_boot,)."""
    from neurodit.downstream.train import predict_proba

    labels = np.asarray(labels, dtype=int)
    counts = np.bincount(labels, minlength=2)
    if counts.min() < 1:
        raise NeuroditError(f"margin needs volumes of both classes, have {counts.tolist()}")
    p1 = predict_proba(model, volumes, batch_size=batch_size, device=device)[:, 1]  # (N,) P(class 1)
    p_true = np.where(labels == 1, p1, 1.0 - p1)
    margin, bacc = _margin_stats(p_true, labels)
    rng = np.random.default_rng(seed)
    idx = [np.flatnonzero(labels == c) for c in (0, 1)]
    reps = np.empty((n_boot, 2))
    for b in range(n_boot):
        pick = np.concatenate([rng.choice(i, len(i)) for i in idx])
        reps[b] = _margin_stats(p_true[pick], labels[pick])
    return ({"n_per_class": counts.tolist(), "margin": _ci(margin, reps[:, 0]),
             "balanced_accuracy": _ci(bacc, reps[:, 1])}, reps[:, 0])


def classifier_margin(model, volumes: np.ndarray, labels: np.ndarray, *, n_boot: int = 1000, seed: int = 0,
                      device: str = "cpu", batch_size: int = 32) -> dict:
    """How confidently a fixed classifier separates the classes of a set.

    Args:
        model: a trained 2-class classifier (``nets.build_classifier`` + ``train.fit_classifier``).
        volumes: (N, D, H, W) float32, model range. labels: (N,) 0/1, both classes present.
    Returns:
        ``MARGIN`` of the module docstring: ``margin`` = mean over the two classes of the mean of
        ``2 p_true - 1`` (in [-1, 1]; 0 = chance, 1 = certain and right), ``balanced_accuracy``, each with
        a bootstrap 95% CI (volumes resampled within class).
    """
    return _margin_with_boot(model, volumes, labels, n_boot=n_boot, seed=seed, device=device,
                             batch_size=batch_size)[0]


def fit_margin_classifier(train: LabelledSet, config=None, seed: int = 0):
    """Train the fixed sex classifier on ``train`` (participant-grouped validation split for early stopping).

    ``config``: :class:`neurodit.downstream.config.DownstreamConfig` (architecture, epochs, lr, ...;
    default its defaults). Returns (model, fit result, (n_fit, n_val) participants)."""
    import torch

    from neurodit.downstream.config import DownstreamConfig
    from neurodit.downstream.experiment import auto_threads, device_of, fit_model
    from neurodit.downstream.splits import grouped_holdout

    cfg = config or DownstreamConfig()
    fit_i, val_i = grouped_holdout(train.labels, train.groups, cfg.val_fraction, seed, f"{train.name} (classifier)")
    prev = torch.get_num_threads()
    torch.set_num_threads(cfg.threads if cfg.threads > 0 else auto_threads(cfg))
    try:
        model, fit = fit_model(cfg, device_of(cfg.device), train.subset(fit_i), train.subset(val_i), seed)
    finally:
        torch.set_num_threads(prev)
    n_part = (len(np.unique(train.groups[fit_i])), len(np.unique(train.groups[val_i])))
    return model, fit, n_part


# ------------------------------------------------------------------------------------------ verdict
def _fmt_ci(c: dict, digits: int = 2) -> str:
    lo, hi = c["ci95"]
    return f"{c['value']:.{digits}f} (95% CI {lo:.{digits}f} to {hi:.{digits}f})"


def _ratio(syn: np.ndarray, real: np.ndarray, syn_value: float, real_value: float, real_lo: float) -> dict | None:
    """synthetic / real with a bootstrap CI; None when real's CI reaches 0 (no shown difference to scale)."""
    if real_lo <= 0:
        return None
    return _ci(syn_value / real_value, syn / real)


def _compare_word(ci: dict | None, ref: float) -> str:
    if ci is None:
        return "not comparable"
    lo, hi = ci["ci95"]
    return "larger than real" if lo > ref else "smaller than real" if hi < ref else "not distinguishable from real"


def guidance_verdict(g: float, item: dict, real: dict, guidance_applies: bool) -> str:
    """One clause for one guidance: the difference-map ratio, the d ratio and the margin vs held-out real."""
    r = item["ratio"]["diff_rms_excess"]
    e = item["effect"]["diff_rms_excess"]
    if r is not None:
        diff = f"sex difference map {r['value']:.2f}x real (95% CI {r['ci95'][0]:.2f} to {r['ci95'][1]:.2f}, " \
               f"{_compare_word(r, 1.0)})"
    else:
        diff = f"sex difference map above noise {_fmt_ci(e, 3)} vs real {_fmt_ci(real['effect']['diff_rms_excess'], 3)}"
    md = item["margin_diff"]
    margin = (f"classifier margin {item['margin']['margin']['value']:.2f} vs {real['margin']['margin']['value']:.2f} "
              f"on held-out real ({md['value']:+.2f}, 95% CI {md['ci95'][0]:+.2f} to {md['ci95'][1]:+.2f}, "
              f"{_compare_word(md, 0.0)})")
    tag = f"guidance {g:g}" + ("" if guidance_applies else " (ignored by this generator)")
    return f"{tag}: {diff}; {margin}"


def overall_verdict(items: list[dict], guidance_applies: bool) -> str:
    """Headline over all guidances: where the synthetic sex difference is larger / smaller than real."""
    def where(word: str, key: str) -> list[str]:
        out = []
        for it in items:
            ci = it["ratio"]["diff_rms_excess"] if key == "ratio" else it["margin_diff"]
            if _compare_word(ci, 1.0 if key == "ratio" else 0.0) == word:
                out.append(f"{it['guidance']:g}")
        return out

    larger, smaller = where("larger than real", "ratio"), where("smaller than real", "ratio")
    m_larger = where("larger than real", "margin")
    if items and all(it["ratio"]["diff_rms_excess"] is None for it in items):
        head = "the real sex difference is not shown above noise (its CI reaches 0): no ratio can be claimed"
    elif larger:
        head = f"synthetic sex difference larger than real at guidance {', '.join(larger)}"
    else:
        head = "no guidance gives a sex difference shown larger than real"
    if smaller:
        head += f"; smaller than real at guidance {', '.join(smaller)}"
    head += (f"; classifier margin above held-out real at guidance {', '.join(m_larger)}" if m_larger
             else "; no margin shown above held-out real")
    if not guidance_applies:
        head += " (this generator ignores guidance: differences between guidances are sampling noise)"
    return head[0].upper() + head[1:] + ". " + "; ".join(it["verdict"] for it in items)


# ------------------------------------------------------------------------------------------ figure
def plot_effect(data: dict, path: str | Path) -> Path:
    """``effect.png``: difference-map RMS and Cohen's d RMS above noise, and the classifier margin, vs
    guidance (95% CI bars); real as a horizontal band (its value and CI)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("diff_rms_excess", "effect", "difference-map RMS above noise\n(M - F, model units)"),
              ("d_rms_excess", "effect", "Cohen's d RMS above noise"),
              ("margin", "margin", "classifier margin (2 p_true - 1)\nreal: held-out part")]
    syn = data["synthetic"]
    gs = np.array([s["guidance"] for s in syn], dtype=float)
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for ax, (key, block, title) in zip(axes, panels, strict=True):
        ref = data["real"][block][key]
        ax.axhspan(*ref["ci95"], color="tab:green", alpha=0.2, label="real (95% CI)")
        ax.axhline(ref["value"], color="tab:green", lw=1.5)
        vals = np.array([s[block][key]["value"] for s in syn])
        los = np.array([s[block][key]["ci95"][0] for s in syn])
        his = np.array([s[block][key]["ci95"][1] for s in syn])
        ax.errorbar(gs, vals, yerr=[vals - los, his - vals], fmt="o-", color="tab:purple", capsize=4,
                    label="synthetic (95% CI)")
        ax.axhline(0.0, color="grey", lw=0.8, ls="--")
        ax.set_xticks(gs, [f"{g:g}" for g in gs])
        ax.set_xlabel("classifier-free guidance scale")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8, loc="best")
    run = Path(data["inputs"]["run"])
    fig.suptitle(f"sex effect vs guidance: {run.parent.name}/{run.name} ({data['inputs']['generator']})"
                 + ("" if data["inputs"]["guidance_applies"] else ", which ignores guidance"), fontsize=11, y=1.04)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


# ------------------------------------------------------------------------------------------ folders
def guidance_effect(run_dir: str | Path, real_dir: str | Path, out: str | Path,
                    guidances: Sequence[float] = (1.0, 1.5, 3.0, 5.0), n: int = 100, steps: int = 12,
                    seed: int = 0, *, train_dir: str | Path | None = None, n_boot: int = 1000,
                    keep_samples: bool = True, config=None, overwrite: bool = False,
                    progress: Callable[[str], None] | None = None) -> Path:
    """Sample ``run_dir`` at each guidance and measure the sex effect against the real cohort; write ``out``.

    Args:
        run_dir: a finished training run (any generator; one without guidance samples the same at each).
        real_dir: real cohort folder with sex labels (e.g. the held-out cohort): its class effect is the
            reference, and its volumes decide the mask (voxels where any real volume is above background).
        out: OUT (see the module docstring), written atomically.
        guidances: classifier-free guidance scales (1 = none); every one is sampled with the same ``seed``,
            so the sets differ by guidance only (same initial noise).
        n, steps: volumes per guidance (balanced over the run's classes), sampler steps.
        train_dir: real cohort to train the fixed classifier on (all of ``real_dir`` is then the held-out
            part); None: the classifier is trained on about 2/3 of ``real_dir``'s participants
            (participant-grouped, stratified) and the margin measured on the other third.
        n_boot: bootstrap resamples of every CI.
        keep_samples: keep ``OUT/samples/g<guidance>/``; False deletes them after measuring.
        config: :class:`neurodit.downstream.config.DownstreamConfig` of the classifier and the grid
            (``shape``); default its defaults (small CNN, 32^3).
    """
    from neurodit.config import to_dict
    from neurodit.downstream import load_labelled
    from neurodit.downstream.config import DownstreamConfig
    from neurodit.downstream.experiment import device_of
    from neurodit.downstream.splits import grouped_holdout
    from neurodit.generators.base import is_diffusion, sample
    from neurodit.run_folder import is_run_folder, read_generator

    say = progress or (lambda msg: None)
    run_dir, real_dir = Path(run_dir), Path(real_dir)
    if not run_dir.is_dir():
        raise NeuroditError("run folder not found", run_dir)
    if not is_run_folder(run_dir):
        raise NeuroditError("not a finished training run folder (written by `neurodit train`)", run_dir)
    guidances = [float(g) for g in guidances]
    if not guidances or min(guidances) <= 0 or len(set(guidances)) != len(guidances):
        raise NeuroditError(f"guidance scales must be distinct and positive, got {guidances}")
    if n < 8:
        raise NeuroditError(f"--n must be at least 8 (volumes of both sexes for the bootstrap), got {n}")
    cfg = config or DownstreamConfig()
    shape = tuple(int(s) for s in cfg.shape)
    generator = read_generator(run_dir)
    applies = is_diffusion(generator)

    real = load_labelled(real_dir, "sex", shape, synthetic=False)
    mask = (real.volumes > -1.0 + 1e-6).any(axis=0)  # (D, H, W) voxels above background in any real volume
    if train_dir is not None:
        train, test = load_labelled(train_dir, "sex", shape, synthetic=False), real
        clash = sorted(set(train.groups) & set(real.groups))
        if clash:
            raise NeuroditError(f"participant {clash[0]} is in both the classifier's training cohort and --real "
                                "(the margin needs held-out participants)", real_dir)
        trained_on = str(Path(train_dir).resolve())
    else:
        # a third held out: grouped_holdout takes fraction < 0.5 and falls back to fewer splits if needed
        keep, hold = grouped_holdout(real.labels, real.groups, 1 / 3, seed, f"{real.name} (margin hold-out)")
        train, test = real.subset(keep), real.subset(hold)
        trained_on = f"{real_dir.resolve()} (participant-grouped 2/3; margin on the other 1/3)"
    say(f"effect: training the sex classifier on {len(np.unique(train.groups))} participants")
    model, fit, (n_fit, n_val) = fit_margin_classifier(train, cfg, seed)
    device = device_of(cfg.device)

    with atomic_dir(out, overwrite=overwrite) as tmp:
        real_eff, real_boot = _effect_with_boot(real.volumes, real.labels, mask, n_boot, seed, real.name)
        real_margin, real_mboot = _margin_with_boot(model, test.volumes, test.labels, n_boot=n_boot, seed=seed,
                                                    device=device)
        items = []
        for g in guidances:
            folder = tmp / "samples" / f"g{g:g}"
            say(f"effect: sampling {n} volumes at guidance {g:g}")
            sample(run_dir, n, folder, steps=steps, guidance=g, seed=seed)
            syn = load_labelled(folder, "sex", shape, synthetic=None)
            eff, boot = _effect_with_boot(syn.volumes, syn.labels, mask, n_boot, seed + 1, syn.name)
            marg, mboot = _margin_with_boot(model, syn.volumes, syn.labels, n_boot=n_boot, seed=seed + 1,
                                            device=device)
            ratio = {k: _ratio(boot[k], real_boot[k], eff[k]["value"], real_eff[k]["value"], real_eff[k]["ci95"][0])
                     for k in COMPARED}
            item = {"guidance": g, "samples": f"samples/g{g:g}" if keep_samples else None, "effect": eff,
                    "margin": marg, "ratio": ratio,
                    "margin_diff": _ci(marg["margin"]["value"] - real_margin["margin"]["value"], mboot - real_mboot)}
            item["verdict"] = guidance_verdict(g, item, {"effect": real_eff, "margin": real_margin}, applies)
            say(f"effect: {item['verdict']}")
            items.append(item)
        if not keep_samples:
            shutil.rmtree(tmp / "samples")
        data = {"schema": SCHEMA,
                "inputs": {"run": str(run_dir.resolve()), "real": str(real_dir.resolve()),
                           "train": None if train_dir is None else str(Path(train_dir).resolve()),
                           "generator": generator, "guidance_applies": applies, "grid_shape": list(shape),
                           "n": int(n), "steps": int(steps), "seed": int(seed), "n_boot": int(n_boot),
                           "mask_voxels": int(mask.sum())},
                "classifier": {"arch": cfg.arch, "trained_on": trained_on, "n_train": int(n_fit), "n_val": int(n_val),
                               "n_test": int(len(np.unique(test.groups))), "best_epoch": int(fit.best_epoch)},
                "real": {"set": "real", "effect": real_eff, "margin": real_margin},
                "synthetic": items,
                "verdict": overall_verdict(items, applies)}
        write_json(tmp / EFFECT_FILE, data)
        plot_effect(data, tmp / FIGURE)
        write_run_info(tmp, {"guidances": guidances, "n": n, "steps": steps, "n_boot": n_boot,
                             "keep_samples": keep_samples, "classifier": to_dict(cfg)}, seed,
                       inputs=data["inputs"])
    return Path(out)


def read_effect(effect_dir: str | Path) -> dict:
    """``OUT/effect.json`` (schema ``neurodit.effect/1``) as a dict; NeuroditError naming the file if it is
    missing, not JSON, of another schema, or lacks ``REQUIRED`` keys (``synthetic`` a list of objects)."""
    path = Path(effect_dir) / EFFECT_FILE
    data = read_schema_json(path, SCHEMA, "neurodit effect", REQUIRED)
    if not isinstance(data["synthetic"], list) or not all(isinstance(s, dict) for s in data["synthetic"]):
        raise NeuroditError("'synthetic' must be a list of objects", path)
    return data


def effect_figure(effect_dir: str | Path) -> Path | None:
    """``OUT/effect.png`` when it exists."""
    p = Path(effect_dir) / FIGURE
    return p if p.is_file() else None


__all__ = ["EFFECT_FILE", "SCHEMA", "class_effect", "classifier_margin", "effect_figure", "fit_margin_classifier",
           "guidance_effect", "plot_effect", "read_effect"]

"""Fake-but-realistic stage folders for the report tests (fixture ``stage_dirs`` in conftest.py), in the layouts of docs/ARCHITECTURE.md.

Numbers are chosen by hand (so tests can look for them in the page); volumes are tiny seeded MD maps
from tests/helpers.py (24x28x24 voxels at 8 mm, mm²/s).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402

from helpers import tiny_affine, tiny_md_volume  # noqa: E402
from neurodit.io import write_json, write_run_info  # noqa: E402

SHAPE = (24, 28, 24)
VOXEL = 8.0

def _mmd(mmd2: float, p: float, kernel: str) -> dict:
    return {"mmd2": mmd2, "p_value": p, "kernel": kernel, "n_x": 6, "n_y": 4, "permutations": 200}


def _c2st(view: str, auc: float, lo: float, hi: float, p: float) -> dict:
    return {"view": view, "auc": auc, "auc_ci95": [lo, hi], "auc_pooled": auc - 0.01, "p_value": p, "n_real": 4,
            "n_synthetic": 4, "folds": 2, "permutations": 0 if view == "cnn" else 100,
            "method": f"{view} classifier", "seconds": 0.5, "verdict": f"{view}: AUC {auc:.2f}"}


def _measure(mean: float, sd: float, syn_mean: float) -> dict:
    return {"real_mean": mean, "real_sd": sd, "syn_mean": syn_mean, "syn_sd": sd * 0.8,
            "wasserstein": abs(mean - syn_mean) * 1.1, "ks_p": 0.4321}


C2ST_VIEWS = {"voxel": (0.9876, 0.9512, 1.0, 0.0099), "texture": (0.9432, 0.8871, 0.9901, 0.0198),
              "cnn": (0.8123, 0.7011, 0.9235, 0.0013)}
VERDICT_C2ST = ("a linear classifier on the voxel values tells synthetic from real with AUC 0.99 (p < 0.01): "
                "easy to tell apart")
VERDICT_FEATURES = ("To a 3D network trained on the real training brains, 75% of the synthetic brains look like "
                    "plausible real ones and they cover 50% of the real variety: varied, but many look unlike "
                    "any real brain.")
VERDICT_MORPHOMETRY = "tissue fractions and brain volume as in real brains"
VERDICT_DIVERSITY = "synthetic brains are as varied as real ones"


def _headline(voxel: float, texture: float, frechet: float, recall: float, syn_syn: float, memo: float) -> dict:
    """One calibration entry: the headline numbers of a reference generator (judge's evaluate --calibrate);
    ``frechet`` is the ratio to the real-vs-real floor (3.2109 raw)."""
    return {"c2st": {"voxel": {"auc": voxel}, "texture": {"auc": texture}},
            "features": {"frechet": frechet * 3.2109, "frechet_ratio": frechet, "recall": recall},
            "msssim": {"syn_syn": syn_syn, "real_real": 0.8312},
            "memorization": {"fraction_above": memo}}


CALIBRATION = {"model": _headline(0.9876, 0.9432, 12.345, 0.5, 0.9123, 0.0),
               "noise": _headline(0.6111, 1.0, 45.61, 0.1667, 0.7342, 0.0),
               "mean": _headline(0.9722, 0.9944, 88.12, 0.0, 0.9999, 0.0),
               "copy": _headline(0.5012, 0.4833, 0.0123, 1.0, 0.8315, 1.0),
               "pca": _headline(0.5521, 0.5688, 2.987, 0.8333, 0.8291, 0.25),
               "labels": {"pca": {"F": 2, "M": 2}}}
CALIBRATION["model"]["c2st"]["cnn"] = {"auc": 0.8123}

# metrics.json in the schema of neurodit.metrics.evaluate (its module docstring)
METRICS = {
    "protocol": "ours", "n_real": 6, "n_synthetic": 4, "n_train": None, "mask_voxels": 1234,
    "normalization": {"vmin": 0.0, "vmax": 0.004, "unit": "mm2/s"},
    "msssim": {
        "real_real": {"mean": 0.8312, "ci95": [0.8101, 0.8523], "n_pairs": 15},
        "real_syn": {"mean": 0.7741, "ci95": [0.7502, 0.7979], "n_pairs": 24},
        "syn_syn": {"mean": 0.9123, "ci95": [0.8977, 0.9269], "n_pairs": 6},
        "kernel_size": 3, "scales": 2, "kernel_sigma": 1.5, "weights": [0.5, 0.5], "data_range": 2.0,
    },
    "mmd": {
        "features": "in-mask voxels in model range [-1, 1]", "floor_sets": "two random halves of REAL_DIR",
        "linear": {"real_syn": _mmd(0.000567, 0.31, "linear"), "floor": _mmd(0.000123, 0.62, "linear")},
        "rbf": {"real_syn": _mmd(0.01234, 0.0421, "rbf") | {"bandwidth": 3.5},
                "floor": _mmd(0.00321, 0.48, "rbf") | {"bandwidth": 3.4}},
    },
    "memorization": {
        "similarity": "pearson_r_in_mask", "heldout": "leave_one_out_reference", "percentile": 99.0,
        "threshold": 0.9871, "n_above": 0, "fraction_above": 0.0, "expected_fraction": 0.01,
        "binom_p": 1.0, "flagged": False, "n_duplicates": 0, "duplicate_r": 0.999,
        "syn_nn": {"mean": 0.9512, "median": 0.9533, "min": 0.931, "max": 0.9704, "n": 4},
        "heldout_nn": {"mean": 0.9655, "median": 0.966, "min": 0.95, "max": 0.9866, "n": 6},
        "closest": [{"synthetic": 2, "reference": 5, "r": 0.9704, "synthetic_id": "syn-000003",
                     "reference_id": "sub-0006"},
                    {"synthetic": 0, "reference": 1, "r": 0.9651, "synthetic_id": "syn-000001",
                     "reference_id": "sub-0002"}],
        "reference_set": "REAL_DIR (no --train)",
    },
    "coherence": {
        "tiled_axis": 2,
        "ssim_2d": {"sagittal": {"real_real": 0.6131, "real_syn": 0.5522, "drop": 0.0609, "n_pairs": 20},
                    "coronal": {"real_real": 0.6012, "real_syn": 0.5488, "drop": 0.0524, "n_pairs": 20},
                    "axial": {"real_real": 0.6233, "real_syn": 0.5911, "drop": 0.0322, "n_pairs": 20}},
        "through_plane_excess_drop": 0.0245,
        "slice_corr": {"real_mean": 0.912, "syn_mean": 0.861, "mean_abs_profile_diff": 0.051,
                       "real_profile": [0.9] * 23, "syn_profile": [0.85] * 23},
        "anisotropy": {"real_mean": 1.01, "syn_mean": 1.23, "ratio_syn_over_real": 1.2178},
    },
    "tissue": {"thresholds_mm2s": [0.0008, 0.0015],
               "wm": {"real_mean": 0.000701, "syn_mean": 0.000723, "wasserstein": 2.2e-05, "n_voxels": 800},
               "gm": {"real_mean": 0.000851, "syn_mean": 0.000802, "wasserstein": 4.9e-05, "n_voxels": 400},
               "csf": {"real_mean": None, "syn_mean": None, "wasserstein": None, "n_voxels": 0}},
    "c2st": {"views": {v: _c2st(v, *a) for v, a in C2ST_VIEWS.items()}, "verdict": VERDICT_C2ST},
    "features": {
        "encoder": {"kind": "own", "source": "/cache/encoder/encoder.safetensors",
                    "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "dim": 32,
                    "input": "model", "trained_on": {"n": 160, "sha256": "ab12"}},
        "dim": 32, "n_real": 6, "n_synthetic": 4, "k": 3, "frechet": 12.345, "precision": 0.75, "recall": 0.5,
        "density": 0.8333, "coverage": 0.6667,
        "floor": {"sets": "real reference (e.g. training) vs real", "n_reference": 8, "frechet": 3.2109,
                  "precision": 1.0, "recall": 0.8333, "density": 1.052, "coverage": 0.8334},
        "warnings": ["only 6 real volumes for 32 features: the covariance is rank deficient"],
        "verdict": VERDICT_FEATURES},
    "morphometry": {
        "measures": {"wm_fraction": _measure(0.4012, 0.0211, 0.4133), "gm_fraction": _measure(0.3561, 0.0152, 0.3422),
                     "csf_fraction": _measure(0.2427, 0.0301, 0.2445), "brain_volume_ml": _measure(1402.5, 61.2, 1388.1)},
        "effects": {"csf_fraction_age_slope": {"real": 0.0213, "synthetic": 0.0071, "real_ci95": [0.0151, 0.0275],
                                               "synthetic_ci95": [-0.0012, 0.0154], "unit": "per decade"},
                    "brain_volume_sex_diff_ml": {"real": 121.4, "synthetic": None, "real_ci95": [80.2, 162.6],
                                                 "synthetic_ci95": None, "unit": "ml (M - F)"}},
        "thresholds_mm2s": [0.0008, 0.0015], "voxel_volume_ml": 0.512, "n_real": 6, "n_synthetic": 4,
        "verdict": VERDICT_MORPHOMETRY},
    "calibration": CALIBRATION,
    "verdicts": {"c2st": VERDICT_C2ST, "diversity": VERDICT_DIVERSITY},
    "figures": {"msssim": "msssim.png", "memorization": "memorization.png", "mosaics": "mosaics.png"},
    "timings_s": {"msssim": 0.5, "mmd": 0.1},
    "notes": ["mmd.linear is MONAI MMDMetric's estimator: it only sees the difference of mean images."],
    "grid": {"shape": [24, 28, 24], "affine": [[8.0, 0, 0, -92.0], [0, 8.0, 0, -125.0], [0, 0, 8.0, -87.0],
                                               [0, 0, 0, 1]]},
    "inputs": {"real": "camcan", "synthetic": "synthetic", "train": None},
}

VERDICT_SEX = ("synthetic data did not clearly help or hurt: +0.010 balanced accuracy, 95% CI \u22120.030 to "
               "+0.050 (6 paired fold\u00d7seed runs, Wilcoxon p=0.56)")
VERDICT_AD = ("synthetic data hurt: \u22120.081 balanced accuracy, 95% CI \u22120.120 to \u22120.040 "
              "(6 paired fold\u00d7seed runs, Wilcoxon p=0.031)")


def _summary(mean: float, half: float, n: int = 6) -> dict:
    return {"mean": mean, "sd": half, "ci95": [mean - half, mean + half], "n": n, "values": [mean] * n}


def _arm(task: str, ba: float) -> dict:
    return {"task": task, "description": f"{task} arm", "n_runs": 6,
            "metrics": {"balanced_accuracy": _summary(ba, 0.04), "f1": _summary(ba - 0.02, 0.05),
                        "roc_auc": _summary(ba + 0.05, 0.03), "accuracy": _summary(ba, 0.04)}}


def _comparison(arm: str, base: str, diff: float, lo: float, hi: float, verdict: str, outcome: str) -> dict:
    return {"name": f"{arm} vs {base}", "task": arm.split("/")[0], "arm": arm, "baseline": base,
            "question": f"Does {arm} beat {base}?",
            "metrics": {"balanced_accuracy": {"mean_diff": diff, "sd_diff": 0.02, "ci95": [lo, hi],
                                              "p_bootstrap": 0.5, "p_wilcoxon": 0.56, "p_corrected_t": 0.61,
                                              "n_pairs": 6, "wins": 3, "losses": 2, "ties": 1}},
            "outcome": outcome, "verdict": verdict}


RESULTS = {
    "schema": "neurodit.downstream/1",
    "config": {"arch": "small", "folds": 2, "seeds": 3},
    "data": {"source": {"n_volumes": 6, "n_participants": 6, "classes": ["F", "M"], "n_per_class": [3, 3]},
             "target": {"n_volumes": 8, "n_participants": 8, "classes": ["CN", "AD"], "n_per_class": [4, 4]},
             "synthetic": {"n_volumes": 4, "n_participants": 4, "classes": ["F", "M"], "n_per_class": [2, 2]}},
    "arms": {"sex/real": _arm("sex", 0.7012), "sex/real+synthetic": _arm("sex", 0.7113),
             "ad/scratch": _arm("ad", 0.6621), "ad/init-real+synthetic": _arm("ad", 0.5811)},
    "comparisons": [
        _comparison("sex/real+synthetic", "sex/real", 0.0101, -0.0299, 0.0503, VERDICT_SEX, "no clear effect"),
        _comparison("ad/init-real+synthetic", "ad/scratch", -0.081, -0.12, -0.04, VERDICT_AD, "hurt"),
    ],
    "verdict": {"synthetic_for_sex": VERDICT_SEX, "synthetic_for_transfer": VERDICT_AD,
                "summary": f"Sex: {VERDICT_SEX}. AD vs CN: {VERDICT_AD}."},
    "timing": {"seconds": 12.5, "models_trained": 40},
}


def png_bytes(seed: int = 0) -> bytes:
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.imshow(np.random.default_rng(seed).random((8, 8)), cmap="gray")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=40)
    plt.close(fig)
    return buf.getvalue()


def write_synthetic_cohort(out: Path, n: int = 4, seed: int = 1) -> Path:
    """A SYN_DIR as `neurodit sample` writes it: syn-000001..., sex, synthetic=1, NIfTI in mm²/s."""
    out.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    affine = tiny_affine(SHAPE, VOXEL)
    lines = ["participant_id\tsex\tsynthetic"]
    for i in range(n):
        sex = "F" if i % 2 == 0 else "M"
        vol = tiny_md_volume(SHAPE, affine, rng, head_scale=1.05 if sex == "M" else 0.97, noise=6e-5)
        nib.save(nib.Nifti1Image(vol, affine), out / f"syn-{i + 1:06d}.nii.gz")
        lines.append(f"syn-{i + 1:06d}\t{sex}\t1")
    (out / "participants.tsv").write_text("\n".join(lines) + "\n")
    return out


def write_train_run(out: Path) -> Path:
    """A RUN_DIR: loss.csv, labels.json, train_config.yaml, run.json, samples/*.png, model/."""
    (out / "model").mkdir(parents=True)
    (out / "model" / "config.json").write_text(json.dumps({"_class_name": "DiTTransformer2DModel"}))
    steps = np.arange(1, 201)
    loss = 0.9 * np.exp(-steps / 60) + 0.1 + 0.01 * np.random.default_rng(0).standard_normal(200)
    (out / "loss.csv").write_text("step,loss,lr\n" + "".join(f"{s},{v:.6f},0.001\n" for s, v in zip(
        steps, loss, strict=True)))
    write_json(out / "labels.json", {"label": "sex", "columns": ["sex"], "classes": ["F", "M"], "null_class": 2,
                                     "age_bins": [], "counts": [3, 3]})
    (out / "train_config.yaml").write_text("preset: tiny\nsteps: 200\nlr: 0.001\nprediction: v_prediction\n")
    (out / "samples").mkdir()
    (out / "samples" / "preview.png").write_bytes(png_bytes(3))
    (out / "samples" / "real.png").write_bytes(png_bytes(4))
    write_run_info(out, {"preset": "tiny", "steps": 200}, seed=7)
    return out



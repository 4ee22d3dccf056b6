"""evaluate: the must-show ranking on the phantom cohort, the CLI, metrics.json and bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from neurodit.cli import app
from neurodit.errors import NeuroditError
from neurodit.io import read_json, write_nifti
from neurodit.metrics.evaluate import EvalConfig, evaluate, evaluate_arrays
from neurodit.metrics.schema import read_metrics

FAST = EvalConfig(max_pairs=60, permutations=200, bootstrap=200, coherence_pairs=20, figures=False)


def noise_generator(real: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """A 'generator' that learned the brain outline and the MD histogram's mean and spread, nothing else:
    i.i.d. Gaussian voxels inside the mean brain mask."""
    rng = np.random.default_rng(seed)
    mask = (real > 0).mean(0) >= 0.5
    vals = real[:, mask]
    out = np.zeros((n, *real.shape[1:]), np.float32)
    out[:, mask] = np.clip(rng.normal(vals.mean(), vals.std(), (n, int(mask.sum()))), 1e-5, None)
    return out


def copy_generator(train: np.ndarray, n: int, n_memorized: int = 4, seed: int = 0) -> np.ndarray:
    """A 'generator' that memorized a few training volumes and returns copies of them."""
    rng = np.random.default_rng(seed)
    return train[rng.choice(n_memorized, n)].copy()


def test_noise_and_copy_generators_rank_below_heldout_real(phantom):
    train, heldout, fresh = phantom["train"], phantom["heldout"], phantom["fresh"]
    gens = {"heldout_real": fresh, "noise": noise_generator(train, 12),
            "copies": copy_generator(train, 12, n_memorized=3)}
    res = {k: evaluate_arrays(heldout, g, train, FAST) for k, g in gens.items()}
    good, noise, copies = res["heldout_real"], res["noise"], res["copies"]
    # noise: caught by the RBF MMD (far above the real floor, tiny p) and by real-syn MS-SSIM
    assert good["mmd"]["rbf"]["real_syn"]["p_value"] > 0.01
    assert noise["mmd"]["rbf"]["real_syn"]["p_value"] < 0.01
    assert noise["mmd"]["rbf"]["real_syn"]["mmd2"] > 10 * max(good["mmd"]["rbf"]["real_syn"]["mmd2"],
                                                                 good["mmd"]["rbf"]["floor"]["mmd2"], 1e-3)
    assert noise["msssim"]["real_syn"]["ci95"][1] < good["msssim"]["real_syn"]["ci95"][0]
    # copies: flagged by the memorization audit, and syn-syn MS-SSIM (diversity) above real-real
    assert copies["memorization"]["flagged"] and not good["memorization"]["flagged"]
    assert copies["memorization"]["fraction_above"] == 1.0
    assert good["memorization"]["fraction_above"] <= 0.1
    assert copies["msssim"]["syn_syn"]["mean"] > good["msssim"]["syn_syn"]["mean"]
    assert copies["msssim"]["syn_syn"]["mean"] > good["msssim"]["syn_syn"]["mean"]
    assert copies["msssim"]["syn_syn_above_real_max"] > 0.25 > 0.05 >= good["msssim"]["syn_syn_above_real_max"]
    # ... and a noise set has no slice-to-slice structure along the tiled axis
    assert noise["coherence"]["slice_corr"]["syn_mean"] < 0.2 < 0.7 < good["coherence"]["slice_corr"]["syn_mean"]
    # the held-out real set matches the reference population on every metric
    assert abs(good["msssim"]["real_syn"]["mean"] - good["msssim"]["real_real"]["mean"]) < 0.02
    assert good["msssim"]["kernel_size"] == 3 and good["msssim"]["scales"] == 4  # fits 33x39x32
    for tissue in ("WM-like", "GM-like", "CSF-like"):
        assert good["tissue"][tissue]["wasserstein"] < noise["tissue"][tissue]["wasserstein"]


def test_without_training_set_uses_leave_one_out(phantom):
    res = evaluate_arrays(phantom["heldout"], phantom["train"][:6].copy(), None, FAST)
    assert res["memorization"]["heldout"] == "leave_one_out_reference"
    assert res["mmd"]["floor_sets"] == "two random halves of REAL_DIR"
    assert any("leave-one-out" in n for n in res["notes"])
    assert res["n_train"] is None and res["n_synthetic"] == 6


def test_too_small_volumes_raise_clear_error():
    vols = np.ones((3, 5, 5, 5), np.float32) * 1e-3
    with pytest.raises(NeuroditError, match="too small for MS-SSIM"):
        evaluate_arrays(vols, vols, None, FAST)


def _write_cohort(folder: Path, vols: np.ndarray, ids: list[str], affine: np.ndarray, synthetic: bool = False):
    folder.mkdir(parents=True)
    rows = ["participant_id\tsex\tsynthetic"]
    for i, (pid, v) in enumerate(zip(ids, vols, strict=True)):
        write_nifti(v, affine, folder / f"{pid}.nii.gz")
        rows.append(f"{pid}\t{'FM'[i % 2]}\t{int(synthetic)}")
    (folder / "participants.tsv").write_text("\n".join(rows) + "\n")
    return folder


def test_cli_end_to_end_with_paper_protocol(phantom, tmp_path):
    aff = phantom["affine"]
    real = _write_cohort(tmp_path / "real", phantom["heldout"], phantom["ids"]["heldout"], aff)
    train = _write_cohort(tmp_path / "train", phantom["train"], phantom["ids"]["train"], aff)
    syn_ids = [f"syn-{i:06d}" for i in range(1, 11)]
    syn = _write_cohort(tmp_path / "syn", phantom["fresh"][:10], syn_ids, aff, synthetic=True)
    out = tmp_path / "eval"
    r = CliRunner().invoke(app, ["evaluate", "--real", str(real), "--synthetic", str(syn), "--train", str(train),
                                 "--out", str(out), "--protocol", "paper", "--max-pairs", "30",
                                 "--permutations", "100", "--seed", "3"])
    assert r.exit_code == 0, r.output
    assert "MS-SSIM real-real" in r.output
    m = read_json(out / "metrics.json")
    assert list(m)[0] == "schema" and m["schema"] == "neurodit.metrics/1" and read_metrics(out) == m
    assert m["protocol"] == "paper" and (m["n_real"], m["n_synthetic"], m["n_train"]) == (12, 10, 12)
    for key in ("msssim", "mmd", "memorization", "coherence", "tissue", "paper", "figures", "notes", "grid"):
        assert key in m
    assert m["msssim"]["real_syn"]["n_pairs"] == 30 and len(m["msssim"]["real_syn"]["ci95"]) == 2
    assert m["mmd"]["rbf"]["real_syn"]["permutations"] == 100
    assert m["mmd"]["floor_sets"].startswith("real train vs real held-out")
    assert m["memorization"]["closest"][0]["reference_id"].startswith("sub-")
    assert m["memorization"]["closest"][0]["synthetic_id"].startswith("syn-")
    assert any("not a two-sample test" in n for n in m["notes"])
    assert m["paper"]["msssim"]["real_real"]["n_pairs"] == 30
    assert m["grid"]["shape"] == [33, 39, 32]
    for rel in m["figures"].values():
        png = (out / rel).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert set(m["figures"]) == {"mosaics", "tissue_histograms", "msssim", "memorization", "coherence"}
    run = read_json(out / "run.json")
    assert run["leakage"] == {"checked": False, "reason": "the synthetic folder's run.json names no generator "
                                                         "(run_dir or train_cohort)"}
    assert run["seed"] == 3 and run["config"]["protocol"] == "paper" and run["config"]["max_pairs"] == 30


def test_evaluate_refuses_cfg_with_loose_settings(tmp_path):
    # the loose arguments used to be ignored silently when a cfg was given
    with pytest.raises(NeuroditError, match="either as cfg or as max_pairs, seed, not both"):
        evaluate(tmp_path / "r", tmp_path / "s", tmp_path / "e", cfg=EvalConfig(max_pairs=5), max_pairs=30, seed=3)
    assert not (tmp_path / "e").exists()


def test_cli_rejects_mixed_grids_and_shared_participants(phantom, tmp_path):
    aff = phantom["affine"]
    real = _write_cohort(tmp_path / "real", phantom["heldout"][:4], phantom["ids"]["heldout"][:4], aff)
    shifted = aff.copy()
    shifted[:3, 3] += 6.0
    syn = _write_cohort(tmp_path / "syn", phantom["fresh"][:4], [f"syn-{i:06d}" for i in range(4)], shifted)
    runner = CliRunner()
    r = runner.invoke(app, ["evaluate", "--real", str(real), "--synthetic", str(syn), "--out", str(tmp_path / "e")])
    assert r.exit_code == 2
    assert "grid affine differs" in r.output and str(syn) in r.output
    assert not (tmp_path / "e").exists()  # no half-written output
    # the held-out (real) folder must not share participants with the training folder
    r = runner.invoke(app, ["evaluate", "--real", str(real), "--synthetic", str(real), "--train", str(real),
                            "--out", str(tmp_path / "e2")])
    assert r.exit_code == 2 and "split by participant" in r.output
    assert not (tmp_path / "e2").exists()


def test_rbf_mmd_on_fixed_encoder_features(phantom):
    import torch

    # a fixed "encoder": 4x4x4 average pooling of the volume, (B, 1, D, H, W) -> (B, 64)
    enc = torch.nn.Sequential(torch.nn.AdaptiveAvgPool3d(4), torch.nn.Flatten())
    train, heldout = phantom["train"], phantom["heldout"]
    good = evaluate_arrays(heldout, phantom["fresh"], train, FAST, encoder=enc)
    bad = evaluate_arrays(heldout, noise_generator(train, 12), train, FAST, encoder=enc)
    assert good["mmd"]["rbf_features"]["real_syn"]["p_value"] > 0.01
    assert bad["mmd"]["rbf_features"]["real_syn"]["p_value"] < 0.01
    assert good["mmd"]["rbf_features"]["floor"]["n_x"] == 12

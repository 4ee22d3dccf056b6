"""Reference generators: the moments / span / copies each kind promises, the baseline CLI and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from neurodit.cli import app
from neurodit.data.cohort import load_volumes, read_cohort
from neurodit.errors import NeuroditError
from neurodit.generators import fit_reference, write_baseline


def smooth_set(n: int, shape=(12, 14, 12), seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(n, D, H, W) mm²/s volumes with a box brain; class M has +0.1e-3 in one half; labels F/M."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    mask = np.zeros(shape, bool)
    mask[2:-2, 2:-2, 2:-2] = True
    labels = ["F" if i % 2 == 0 else "M" for i in range(n)]
    vols = np.zeros((n, *shape), np.float32)
    for i in range(n):
        f = ndimage.gaussian_filter(rng.standard_normal(shape), 1.5)
        v = 0.9e-3 + 0.1e-3 * f / f.std() + (0.1e-3 if labels[i] == "M" else 0.0) * (np.arange(shape[0]) < 6)[:, None, None]
        vols[i] = np.where(mask, v, 0.0)
    return vols, mask, labels


def test_pca_samples_live_in_the_class_span_with_its_variance():
    vols, mask, labels = smooth_set(24)
    model = fit_reference(vols, labels, mask, "pca")
    s, labs = model.sample(3000, label="F", seed=1)
    assert s.shape == (3000, *vols.shape[1:]) and s.dtype == np.float32 and set(labs) == {"F"}
    f = vols[0::2][:, mask].astype(np.float64)
    # total variance of the class is reproduced (sampling error of 3000 draws ~ 3 %)
    ratio = s[:, mask].astype(np.float64).var(0).sum() / f.var(0, ddof=1).sum()
    assert 0.93 < ratio < 1.07
    assert np.abs(s[:, mask].mean(0) - f.mean(0)).max() < 0.05e-3
    # every sample minus the class mean lies in the span of the centred class data
    fc = f - f.mean(0)
    q, _ = np.linalg.qr(fc.T)
    d = s[:5, mask] - f.mean(0)
    resid = d - (d @ q) @ q.T
    assert np.abs(resid).max() < 1e-6 * np.abs(d).max() + 1e-9
    assert (s[:, ~mask] == 0).all() and (s >= 0).all()
    # K components: a K-dimensional affine subspace, variances = the K largest
    k3 = fit_reference(vols, labels, mask, "pca", components=3)
    info = k3.info()["classes"]["F"]
    lam = np.sort(np.linalg.eigvalsh(fc @ fc.T / (len(f) - 1)))[::-1]
    assert info["components"] == 3 and info["variance_sum"] == pytest.approx(lam[:3].sum(), rel=1e-6)
    s3 = k3.sample(8, label="F", seed=0)[0][:, mask] - f.mean(0)
    assert np.linalg.matrix_rank(s3.astype(np.float64), tol=1e-9) == 3


def test_noise_mean_copy_and_label_balance():
    vols, mask, labels = smooth_set(20)
    f = vols[0::2][:, mask].astype(np.float64)
    noise, labs = fit_reference(vols, labels, mask, "noise").sample(2000, seed=0)
    assert labs[:4] == ["F", "M", "F", "M"] and labs.count("F") == 1000  # balanced without a label
    nf = noise[0::2][:, mask]
    assert np.median(nf.std(0) / f.std(0, ddof=1)) == pytest.approx(1.0, abs=0.05)
    # white: neighbouring voxels uncorrelated (the real ones are smooth, r > 0.5)
    res = noise[0::2] - noise[0::2].mean(0)  # per-voxel residuals
    a, b = res[:, 5, 5, 3:9].ravel(), res[:, 5, 6, 3:9].ravel()
    assert abs(np.corrcoef(a, b)[0, 1]) < 0.1
    mean, _ = fit_reference(vols, labels, mask, "mean").sample(6, seed=0)
    assert np.allclose(mean[0], mean[2]) and np.allclose(mean[0][mask], f.mean(0), atol=1e-9)
    assert not np.allclose(mean[0], mean[1])  # F and M means differ
    copy, labs = fit_reference(vols, labels, mask, "copy").sample(10, seed=3)
    flat = vols.reshape(len(vols), -1)
    hits = [np.flatnonzero((flat == c.ravel()).all(1)) for c in copy]
    assert all(len(h) == 1 for h in hits)  # each sample is exactly one training volume ...
    assert len({int(h[0]) for h in hits}) == 10  # ... all different (10 <= 10 per class)
    assert all(labels[int(h[0])] == lab for h, lab in zip(hits, labs, strict=True))  # ... of its class
    again, _ = fit_reference(vols, labels, mask, "copy").sample(10, seed=3)
    assert np.array_equal(copy, again)  # seeded
    with pytest.raises(NeuroditError, match="no class 'X'"):
        fit_reference(vols, labels, mask, "pca").sample(2, label="X")
    with pytest.raises(NeuroditError, match="unknown reference generator"):
        fit_reference(vols, labels, mask, "gan")
    unlabelled = fit_reference(vols, None, mask, "mean")
    assert unlabelled.labels == [None] and unlabelled.sample(2)[1] == [None, None]


def test_baseline_cli_writes_a_cohort_that_reads_back(make_tiny_cohort, tmp_path):
    train = make_tiny_cohort("train", n=8)
    out = tmp_path / "syn"
    res = CliRunner().invoke(app, ["baseline", str(train), "--kind", "pca", "--n", "5", "--out", str(out),
                                   "--seed", "2"])
    assert res.exit_code == 0, res.output
    cohort = read_cohort(out)
    t = cohort.table
    assert list(t["participant_id"]) == [f"syn-{i:06d}" for i in range(1, 6)]
    assert list(t["sex"]) == ["F", "M", "F", "M", "F"] and (t["synthetic"] == 1).all()
    vols, grid = load_volumes(cohort)
    real, rgrid = load_volumes(read_cohort(train))
    assert grid.same_as(rgrid) and vols.shape == (5, *real.shape[1:])
    assert 0.3e-3 < vols[vols > 1e-4].mean() < 3e-3  # mm²/s
    assert (tmp_path / "syn" / "run.json").is_file()
    # one class only; same seed, same bytes
    only_f = write_baseline(train, "noise", 3, tmp_path / "f", label={"sex": "F"}, seed=1)
    assert set(read_cohort(only_f).table["sex"]) == {"F"}
    again = write_baseline(train, "pca", 5, tmp_path / "again", seed=2)
    assert (again / "syn-000003.nii.gz").read_bytes() == (out / "syn-000003.nii.gz").read_bytes()


@pytest.mark.parametrize("args, message", [
    (["--kind", "gan", "--n", "3"], "--kind must be one of"),
    (["--kind", "pca", "--n", "0"], "--n must be >= 1"),
    (["--kind", "pca", "--n", "3", "--label", "site=A"], "no column 'site'"),
    (["--kind", "pca", "--n", "3", "--label", "sex=X"], "sex=X: no training volume"),
])
def test_baseline_bad_input_exits_2_and_writes_nothing(make_tiny_cohort, tmp_path, args, message):
    train = make_tiny_cohort("train", n=6)
    before = sorted(p.name for p in train.iterdir())
    out = tmp_path / "syn"
    res = CliRunner().invoke(app, ["baseline", str(train), "--out", str(out), *args])
    assert res.exit_code == 2 and message in res.output
    assert not out.exists() and sorted(p.name for p in train.iterdir()) == before
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".syn")] == []

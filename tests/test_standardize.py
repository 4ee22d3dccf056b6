"""neurodit.standardize: per-pixel standardized diffusion inputs, their run-folder file, and the
train -> sample round trip through it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurodit.errors import NeuroditError
from neurodit.standardize import fit_standardizer, load_standardizer, save_standardizer


def test_fit_gives_zero_mean_unit_sd_and_floors_constant_pixels():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 1, 4, 4, generator=g) * 0.3 + 2.0  # (N, C, H, W)
    x[:, :, 0, 0] = -1.0  # a background pixel: the same in every input
    st = fit_standardizer(x, floor=0.05)
    assert st.mean.shape == st.scale.shape == (1, 4, 4)
    assert float(st.scale[0, 0, 0]) == pytest.approx(0.05)  # sd 0 -> the floor
    z = st.apply(x)
    inner = z[:, :, 1:, 1:]
    assert float(inner.mean()) == pytest.approx(0.0, abs=1e-5)
    assert torch.allclose(inner.std(dim=0, unbiased=False), torch.ones(1, 3, 3), atol=1e-4)
    assert float(z[:, :, 0, 0].abs().max()) == 0.0  # constant pixel -> exactly 0
    assert torch.allclose(st.invert(z), x, atol=1e-5)


def test_highpass_scale_is_the_texture_sd_not_the_whole_spread():
    """x = a_n (a smooth per-subject offset, sd 0.5) + white noise (sd 0.1): the pixel scale is the
    whole spread sqrt(0.5^2 + 0.1^2); the highpass scale is the noise after removing its Gaussian-
    smoothed copy, 0.1 * sqrt(1 - 2 k0 + sum k^2) = 0.1 * 0.8725 for a 2D sigma-1 kernel."""
    g = torch.Generator().manual_seed(1)
    n = 2000
    x = 0.5 * torch.randn(n, 1, 1, 1, generator=g) + 0.1 * torch.randn(n, 1, 24, 24, generator=g)
    inner = (slice(None), slice(6, -6), slice(6, -6))  # away from the border (mode "nearest")
    pixel = fit_standardizer(x, floor=0.01, kind="pixel").scale[inner]
    hp = fit_standardizer(x, floor=0.01, kind="highpass").scale[inner]
    assert float(pixel.mean()) == pytest.approx((0.5**2 + 0.1**2) ** 0.5, rel=0.04)
    assert float(hp.mean()) == pytest.approx(0.1 * 0.8725, rel=0.02)
    with pytest.raises(NeuroditError, match="kind"):
        fit_standardizer(x, floor=0.01, kind="none")


def test_fit_refuses_one_input_and_a_bad_floor():
    with pytest.raises(NeuroditError, match="at least 2"):
        fit_standardizer(torch.zeros(1, 1, 2, 2), floor=0.01)
    with pytest.raises(NeuroditError, match="floor"):
        fit_standardizer(torch.zeros(3, 1, 2, 2), floor=0.0)


def test_file_round_trips_and_a_bad_file_is_named(tmp_path):
    assert load_standardizer(tmp_path) is None  # a run trained on raw inputs
    st = fit_standardizer(torch.arange(24.0).reshape(3, 1, 2, 4), floor=0.01)
    path = save_standardizer(tmp_path, st)
    back = load_standardizer(tmp_path)
    assert torch.equal(back.mean, st.mean) and torch.equal(back.scale, st.scale)
    assert not list(tmp_path.glob(".*tmp"))
    path.write_bytes(b"not safetensors")
    with pytest.raises(NeuroditError, match="unreadable standardizer") as exc:
        load_standardizer(tmp_path)
    assert "standardize.safetensors" in str(exc.value)


def test_standardized_run_samples_in_the_model_range(tmp_path):
    """Trained with ``standardize: pixel``, a run saves the training mosaics' mean/sd, and sampling
    maps the model's output back: a standardized 0 is the training mean volume."""
    from tests.helpers import train_tiny_dit

    from neurodit.data.prepare import load_prepared, model_to_mm2s
    from neurodit.runs import TrainedRun
    from neurodit.tiling import mosaic_to_volume, volume_to_mosaic

    run_dir, prep_dir = train_tiny_dit(tmp_path, steps=2, standardize="pixel", standardize_floor=0.02)
    run = TrainedRun(run_dir)
    st = run.inputs.standardizer
    assert st is not None and (run_dir / "standardize.safetensors").is_file()
    prep = load_prepared(prep_dir)
    vols = np.asarray(prep.volumes, dtype=np.float32)
    mosaics = volume_to_mosaic(vols, run.spec)  # (N, M, M)
    np.testing.assert_allclose(st.mean[0].numpy(), mosaics.mean(0), atol=1e-5)
    np.testing.assert_allclose(st.scale[0].numpy(), np.maximum(mosaics.std(0), 0.02), atol=1e-5)
    out = run.to_volumes(torch.zeros(1, *run.input_shape))  # (1, D, H, W) mm2/s
    want = model_to_mm2s(np.asarray(mosaic_to_volume(mosaics.mean(0)[None], run.spec)), run.norm, run.mask)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-9)


def test_resume_refuses_a_changed_standardization(tmp_path):
    from tests.helpers import train_tiny_dit

    from neurodit.train import resolve_train_config, train_diffusion

    run_dir, prep_dir = train_tiny_dit(tmp_path, steps=2, standardize="pixel")
    preset = tmp_path / "p.yaml"
    cfg = resolve_train_config(None, None, prep_dir=str(prep_dir), out=str(run_dir), preset=str(preset),
                               max_steps=3, batch_size=4, preview_per_class=0, resume=True)
    with pytest.raises(NeuroditError, match="standardize"):
        train_diffusion(cfg)


def test_config_rejects_unknown_standardization():
    from neurodit.train import resolve_train_config

    with pytest.raises(NeuroditError, match="standardize must be one of"):
        resolve_train_config(None, {"standardize": "zscore"})

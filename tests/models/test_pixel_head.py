"""The pixel-level head (``preset.pixel_head``): a fresh head passes the DiT's prediction through, it
reaches per-pixel detail a patch-32 DiT cannot output, and it saves, loads and samples through a run."""

from __future__ import annotations

import json

import pytest
import torch

from neurodit.errors import NeuroditError
from neurodit.models import load_preset
from neurodit.models.dit import build_dit, fit_attention
from neurodit.models.pixel_head import HeadedDiT, PixelHead, has_head, load_headed


def _tiny(pixel_head: int = 8):
    preset = load_preset("tiny-p32", {"num_layers": 1, "pixel_head": pixel_head})
    torch.manual_seed(0)
    return preset, HeadedDiT(fit_attention(build_dit(preset, 2)), PixelHead(1, pixel_head, 3))


def test_a_fresh_head_passes_the_prediction_through_and_counts_its_parameters():
    preset, model = _tiny()
    torch.nn.init.normal_(model.dit.proj_out_2.weight, std=0.02)  # a DiT that outputs something
    x, t, y = torch.randn(2, 1, 192, 192), torch.tensor([100.0, 900.0]), torch.tensor([0, 1])
    assert torch.equal(model(x, timestep=t, class_labels=y), model.dit(x, timestep=t, class_labels=y).sample)
    assert preset.num_params(2) == sum(p.numel() for p in model.parameters())
    with pytest.raises(NeuroditError, match="pixel_head"):
        load_preset("tiny-p32", {"pixel_head": -1})


def test_the_head_reaches_per_pixel_detail_the_patch_32_output_cannot():
    """Denoise fresh white textures (a new draw every step: nothing to memorize): the DiT alone, whose patch-32
    input and output layers pass each 1,024-pixel token through 256 numbers, keeps most of the error; with the
    head, which sees the texture in its noisy input, the error falls to the denoising floor (0.3^2 / 1.09)."""
    errors = {}
    for width in (0, 8):
        preset = load_preset("tiny-p32", {"num_layers": 1, "pixel_head": width, "grid_shape": [32, 32, 4]})
        torch.manual_seed(1)
        dit = fit_attention(build_dit(preset, 2))  # 2x2 tiles: a 64^2 mosaic, 4 tokens
        model = HeadedDiT(dit, PixelHead(1, width, 3)) if width else dit
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        g = torch.Generator().manual_seed(0)
        t, y = torch.full((8,), 50.0), torch.zeros(8, dtype=torch.long)
        tail = []
        for step in range(150):
            target = torch.randn(8, 1, 64, 64, generator=g)
            xt = target + 0.3 * torch.randn(8, 1, 64, 64, generator=g)  # the texture shows in the input
            out = model(xt, timestep=t, class_labels=y)
            loss = ((getattr(out, "sample", out) - target) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            tail += [float(loss.detach())] if step >= 130 else []
        errors[width] = sum(tail) / len(tail)
    # measured: DiT alone 0.81, with the head 0.096 (floor 0.083)
    assert errors[0] > 0.6 and errors[8] < 0.3 * errors[0], errors


def test_save_and_load_round_trip(tmp_path):
    from diffusers import DiTTransformer2DModel

    _, model = _tiny()
    with torch.no_grad():
        for p in model.head.parameters():
            p.normal_(0, 0.1)
    model.save_pretrained(tmp_path / "model")
    assert has_head(tmp_path / "model")
    assert json.loads((tmp_path / "model" / "pixel_head.json").read_text()) == {"channels": 1, "width": 8, "depth": 3}
    back = load_headed(DiTTransformer2DModel.from_pretrained(tmp_path / "model"), tmp_path / "model")
    x, t, y = torch.randn(1, 1, 192, 192), torch.tensor([300.0]), torch.tensor([1])
    torch.testing.assert_close(back(x, timestep=t, class_labels=y), model(x, timestep=t, class_labels=y))
    (tmp_path / "model" / "pixel_head.json").write_text('{"channels": 1}')
    with pytest.raises(NeuroditError, match="pixel_head.json"):
        load_headed(DiTTransformer2DModel.from_pretrained(tmp_path / "model"), tmp_path / "model")

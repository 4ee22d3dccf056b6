"""Tiny DiT presets and helpers shared by the model-layer tests (seconds on 2 CPU cores)."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never touch the network in tests

from neurodit.models import ModelPreset, build_dit, share_block_embedders  # noqa: E402


def pixel_preset(**kw) -> ModelPreset:
    """4x4x4 grid -> 2x2 mosaic of 4^2 tiles = 8^2 pixels, patch 2 -> 16 tokens, width 16."""
    base = dict(name="test-pixel", grid_shape=(4, 4, 4), num_layers=2, num_attention_heads=2,
                attention_head_dim=8, patch_size=2, space="pixel")
    base.update(kw)
    return ModelPreset(**base)


def latent_preset(**kw) -> ModelPreset:
    """8x8x16 grid -> 4x4 mosaic of 8^2 tiles = 32^2 pixels -> latent 4^2 x 4, patch 2, learn_sigma."""
    base = dict(name="test-latent", grid_shape=(8, 8, 16), num_layers=2, num_attention_heads=2,
                attention_head_dim=8, patch_size=2, space="latent", learn_sigma=True)
    base.update(kw)
    return ModelPreset(**base)


def random_dit(preset: ModelPreset, num_classes: int, seed: int = 0, shared: bool = True):
    """A DiT whose every weight is random and non-zero (DiT's init zeroes the output layers)."""
    torch.manual_seed(seed)
    model = build_dit(preset, num_classes)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.2)
    if shared:
        share_block_embedders(model)
    return model.eval()


def forward(model, x: torch.Tensor, labels: list[int], t: list[int] | None = None) -> torch.Tensor:
    t = t or [1, 500, 999][: len(labels)]
    with torch.no_grad():
        return model(x, timestep=torch.tensor(t), class_labels=torch.tensor(labels)).sample


@pytest.fixture
def dt() -> SimpleNamespace:
    """The helpers above as a fixture (tests cannot import conftest under --import-mode=importlib)."""
    return SimpleNamespace(pixel_preset=pixel_preset, latent_preset=latent_preset, random_dit=random_dit,
                           forward=forward)


@pytest.fixture
def tiny_pixel() -> ModelPreset:
    return pixel_preset()


@pytest.fixture
def tiny_latent() -> ModelPreset:
    return latent_preset()

"""build_dit: diffusers DiT from a preset, DiT's init, label dropout disabled in every block."""

from __future__ import annotations

import pytest
import torch
from diffusers import DiTTransformer2DModel

from neurodit.errors import NeuroditError
from neurodit.models import (
    build_dit,
    check_compatible,
    disable_label_dropout,
    label_dropout_probs,
    load_preset,
    num_classes_of,
)


def test_build_dit_matches_preset_and_null_row(tiny_pixel, dt):
    model = build_dit(tiny_pixel, num_classes=3)
    assert isinstance(model, DiTTransformer2DModel)
    assert num_classes_of(model) == 3
    for block in model.transformer_blocks:  # 3 classes + the null row (index 3)
        assert block.norm1.emb.class_embedder.embedding_table.weight.shape == (4, 16)
    assert label_dropout_probs(model) == [0.0, 0.0]
    check_compatible(model, tiny_pixel, 3)
    out = dt.forward(model, torch.randn(2, 1, 8, 8), [0, 3])
    assert out.shape == (2, 1, 8, 8)


def test_dit_init_is_adaln_zero_and_shared_embedders(tiny_latent, dt):
    torch.manual_seed(0)
    model = build_dit(tiny_latent, num_classes=2)
    # adaLN-Zero: modulation and output layers zero -> the model outputs exactly 0 at init
    assert all(float(b.norm1.linear.weight.detach().abs().max()) == 0.0 for b in model.transformer_blocks)
    out = dt.forward(model, torch.randn(2, 4, 4, 4), [0, 1])
    assert out.shape == (2, 8, 4, 4) and float(out.abs().max()) == 0.0
    e0, e1 = (b.norm1.emb.state_dict() for b in model.transformer_blocks)
    assert all(torch.equal(e0[k], e1[k]) for k in e0)
    table = e0["class_embedder.embedding_table.weight"]
    assert 0.01 < float(table.std()) < 0.04  # N(0, 0.02)
    plain = build_dit(tiny_latent, num_classes=2, dit_init=False)
    assert float(plain.proj_out_2.weight.detach().abs().max()) > 0


def test_no_label_dropout_in_train_mode(tiny_pixel, dt):
    # With diffusers' default 0.1 per block, train mode changes outputs at random; with ours it cannot.
    model = dt.random_dit(tiny_pixel, 2).train()
    x, labels = torch.randn(64, 1, 8, 8), torch.randint(0, 2, (64,))
    t = torch.full((64,), 300)
    with torch.no_grad():
        a = model(x, timestep=t, class_labels=labels).sample
        b = model.eval()(x, timestep=t, class_labels=labels).sample
    assert torch.equal(a, b)


def test_from_pretrained_restores_dropout_and_disable_fixes_it(tmp_path, tiny_pixel):
    model = build_dit(tiny_pixel, num_classes=2)
    model.save_pretrained(tmp_path / "m")
    back = DiTTransformer2DModel.from_pretrained(tmp_path / "m")
    assert label_dropout_probs(back) == [0.1, 0.1]  # the trap docs/NOTES.md describes
    assert label_dropout_probs(disable_label_dropout(back)) == [0.0, 0.0]


def test_check_compatible_names_the_difference(tiny_pixel):
    model = build_dit(tiny_pixel, num_classes=2)
    with pytest.raises(NeuroditError, match="patch_size=2 .*needs 8"):
        check_compatible(model, load_preset("tiny"), 2)
    with pytest.raises(NeuroditError, match="num_embeds_ada_norm=2 .*needs 5"):
        check_compatible(model, tiny_pixel, 5)
    with pytest.raises(NeuroditError, match="num_classes"):
        build_dit(tiny_pixel, 0)

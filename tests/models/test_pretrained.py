"""load_init: diffusers folders, original facebookresearch checkpoints, class/channel surgery."""

from __future__ import annotations

import argparse
import pickle

import pytest
import torch
from safetensors.torch import save_file

from neurodit.errors import NeuroditError
from neurodit.models import convert_original_state_dict, export_original_state_dict, load_init
from neurodit.models.dit import label_dropout_probs
from neurodit.models.pretrained import read_checkpoint

X = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))


def test_original_keys_match_facebookresearch_layout(tiny_pixel, dt):
    sd = export_original_state_dict(dt.random_dit(tiny_pixel, 3))
    assert sd["x_embedder.proj.weight"].shape == (16, 1, 2, 2)
    assert sd["pos_embed"].shape == (1, 16, 16)
    assert sd["y_embedder.embedding_table.weight"].shape == (4, 16)  # 3 classes + null
    assert sd["blocks.1.attn.qkv.weight"].shape == (48, 16)
    assert sd["blocks.0.adaLN_modulation.1.weight"].shape == (96, 16)  # 6 x width
    assert sd["final_layer.adaLN_modulation.1.weight"].shape == (32, 16)
    assert sd["final_layer.linear.weight"].shape == (4, 16)  # p*p*out
    assert {k.split(".")[0] for k in sd} == {"x_embedder", "pos_embed", "t_embedder", "y_embedder",
                                            "blocks", "final_layer"}
    assert len(sd) == 2 + 1 + 4 + 1 + 2 * 10 + 4
    back, arch = convert_original_state_dict(sd)
    assert arch == {"width": 16, "in_channels": 1, "patch_size": 2, "out_channels": 1, "num_layers": 2,
                    "num_classes": 3}
    model_sd = dt.random_dit(tiny_pixel, 3).state_dict()
    assert set(back) == set(model_sd)


def test_diffusers_folder_and_original_pt_give_identical_outputs(tmp_path, tiny_pixel, dt):
    src = dt.random_dit(tiny_pixel, 3)
    ref = dt.forward(src, X, [0, 2, 3])
    assert float(ref.abs().mean()) > 0.1  # not a trivial all-zero model
    src.save_pretrained(tmp_path / "folder")
    torch.save(export_original_state_dict(src), tmp_path / "orig.pt")
    save_file(export_original_state_dict(src), str(tmp_path / "orig.safetensors"))
    for source in (tmp_path / "folder", tmp_path / "orig.pt", tmp_path / "orig.safetensors"):
        model, summary = load_init(source, tiny_pixel, 3, return_summary=True)
        assert torch.equal(dt.forward(model.eval(), X, [0, 2, 3]), ref), source
        assert label_dropout_probs(model) == [0.0, 0.0]
        assert summary["adapted"] == {} and summary["class_table"] == "copied"
        assert len(summary["copied"]) == len(src.state_dict())
    assert summary["format"] == "original"


def test_train_script_checkpoint_prefers_ema(tmp_path, tiny_pixel, dt):
    ema, raw = dt.random_dit(tiny_pixel, 2, seed=1), dt.random_dit(tiny_pixel, 2, seed=2)
    ckpt = {"model": export_original_state_dict(raw), "ema": export_original_state_dict(ema),
            "opt": {"state": {}, "param_groups": [{"lr": 1e-4}]},
            "args": argparse.Namespace(model="custom", image_size=8, num_classes=2)}
    torch.save(ckpt, tmp_path / "0400000.pt")
    model, summary = load_init(tmp_path / "0400000.pt", tiny_pixel, 2, return_summary=True)
    assert summary["entry"] == "ema"
    assert torch.equal(dt.forward(model.eval(), X, [0, 1, 2]), dt.forward(ema, X, [0, 1, 2]))
    del ckpt["ema"]
    torch.save(ckpt, tmp_path / "no_ema.pt")
    model = load_init(tmp_path / "no_ema.pt", tiny_pixel, 2)
    assert torch.equal(dt.forward(model.eval(), X, [0, 1, 2]), dt.forward(raw, X, [0, 1, 2]))
    # DDP prefixes are stripped
    torch.save({"module." + k: v for k, v in export_original_state_dict(raw).items()}, tmp_path / "ddp.pt")
    assert torch.equal(dt.forward(load_init(tmp_path / "ddp.pt", tiny_pixel, 2).eval(), X, [0, 1, 2]),
                       dt.forward(raw, X, [0, 1, 2]))


@pytest.mark.parametrize("fmt", ["folder", "pt"])
def test_class_count_change_keeps_every_other_tensor(tmp_path, tiny_pixel, dt, fmt):
    src = dt.random_dit(tiny_pixel, 3)  # 3 classes + null
    if fmt == "folder":
        src.save_pretrained(tmp_path / "s")
        path = tmp_path / "s"
    else:
        path = tmp_path / "s.pt"
        torch.save(export_original_state_dict(src), path)
    model, summary = load_init(path, tiny_pixel, 5, return_summary=True)
    got, want = model.state_dict(), src.state_dict()
    tables = [k for k in got if k.endswith("class_embedder.embedding_table.weight")]
    assert len(tables) == 2
    for name, tensor in got.items():
        if name in tables:
            continue
        assert torch.equal(tensor, want[name]), name  # bit-identical copies
    src_table = want[tables[0]]  # (4, 16)
    for name in tables:
        t = got[name]
        assert t.shape == (6, 16)
        assert torch.equal(t[5], src_table[3])  # null row -> our last row
        noise = t[:5] - src_table[:3].mean(0)
        assert 0.0 < float(noise.std()) < 0.2 * float(src_table[:3].std())  # mean row + small noise
        assert torch.equal(t, got[tables[0]])  # every block gets the same table
    assert sorted(summary["adapted"]) == tables and "null row 5 = source row 3" in summary["class_table"]
    assert len(summary["copied"]) == len(got) - 2
    # chosen rows instead of the mean
    model = load_init(path, tiny_pixel, 2, class_init=[2, 0])
    t = model.state_dict()[tables[1]]
    assert torch.equal(t, torch.stack([src_table[2], src_table[0], src_table[3]]))


def test_latent_source_into_pixel_and_sigma_heads(tmp_path, dt):
    # DiT-XL/2-like source (4 latent channels in, 8 out with learn_sigma) -> our pixel / latent presets
    lat = dt.latent_preset(grid_shape=(4, 4, 4), space="latent", latent_downsample=1)  # sample 8
    src = dt.random_dit(lat, 2)
    torch.save(export_original_state_dict(src), tmp_path / "xl.pt")
    xg = X[:2]
    ref = dt.forward(src, xg.repeat(1, 4, 1, 1), [0, 1])  # (2, 8, 8, 8)
    # latent, no learn_sigma: output = the source's 4 prediction channels exactly
    no_sigma = load_init(tmp_path / "xl.pt", dt.latent_preset(grid_shape=(4, 4, 4), latent_downsample=1,
                                                              learn_sigma=False), 2)
    assert torch.allclose(dt.forward(no_sigma.eval(), xg.repeat(1, 4, 1, 1), [0, 1]), ref[:, :4], atol=1e-6)
    # pixel (1 channel): input weights summed, output = mean of the 4 prediction channels
    pix, summary = load_init(tmp_path / "xl.pt", dt.pixel_preset(), 2, return_summary=True)
    assert torch.allclose(dt.forward(pix.eval(), xg, [0, 1]), ref[:, :4].mean(1, keepdim=True), atol=1e-5)
    assert "4 -> 1 input channels (sum)" in summary["adapted"]["pos_embed.proj.weight"]
    assert "source variance channels dropped" in summary["adapted"]["proj_out_2.weight"]
    # pixel with learn_sigma: [mean of prediction channels | mean of variance channels]
    pix2 = load_init(tmp_path / "xl.pt", dt.pixel_preset(learn_sigma=True), 2)
    out = dt.forward(pix2.eval(), xg, [0, 1])
    assert torch.allclose(out[:, :1], ref[:, :4].mean(1, keepdim=True), atol=1e-5)
    assert torch.allclose(out[:, 1:], ref[:, 4:].mean(1, keepdim=True), atol=1e-5)


def test_shape_and_format_errors(tmp_path, tiny_pixel, dt):
    src = dt.random_dit(tiny_pixel, 2)
    sd = export_original_state_dict(src)
    torch.save(sd, tmp_path / "ok.pt")
    with pytest.raises(NeuroditError, match="width=16 but the preset needs 32"):
        load_init(tmp_path / "ok.pt", dt.pixel_preset(attention_head_dim=16), 2)
    with pytest.raises(NeuroditError, match="patch_size=2 but the preset needs 4"):
        load_init(tmp_path / "ok.pt", dt.pixel_preset(grid_shape=(8, 8, 4), patch_size=4), 2)
    with pytest.raises(NeuroditError, match="num_layers=2 but the preset needs 3"):
        load_init(tmp_path / "ok.pt", dt.pixel_preset(num_layers=3), 2)
    with pytest.raises(NeuroditError, match="cannot adapt 1 input channels to 4 .only C -> C, C -> 1, or 1 -> C for a pixel"):
        load_init(tmp_path / "ok.pt", dt.latent_preset(grid_shape=(4, 4, 4), latent_downsample=1), 2)
    src.save_pretrained(tmp_path / "folder")
    with pytest.raises(NeuroditError, match="2 attention heads but preset 'test-pixel' has 1"):
        load_init(tmp_path / "folder", dt.pixel_preset(num_attention_heads=1, attention_head_dim=16), 2)
    bad = dict(sd, **{"blocks.1.attn.qkv.weight": torch.zeros(40, 16)})
    torch.save(bad, tmp_path / "bad_qkv.pt")
    with pytest.raises(NeuroditError, match=r"bad_qkv\.pt.*blocks\.1\.attn\.qkv\.weight has shape \(40, 16\)"):
        load_init(tmp_path / "bad_qkv.pt", tiny_pixel, 2)
    bad = dict(sd, **{"blocks.0.mlp.fc1.weight": torch.zeros(64, 8)})
    torch.save(bad, tmp_path / "bad_fc1.pt")
    with pytest.raises(NeuroditError, match=r"transformer_blocks\.0\.ff\.net\.0\.proj\.weight has shape \(64, 8\)"):
        load_init(tmp_path / "bad_fc1.pt", tiny_pixel, 2)
    torch.save(dict(sd, pos_embed=torch.randn(1, 16, 16)), tmp_path / "learned_pos.pt")
    with pytest.raises(NeuroditError, match="not DiT's fixed 2D sin-cos"):
        load_init(tmp_path / "learned_pos.pt", tiny_pixel, 2)
    torch.save({k: v for k, v in sd.items() if k != "t_embedder.mlp.2.bias"}, tmp_path / "missing.pt")
    with pytest.raises(NeuroditError, match="lacks 't_embedder.mlp.2.bias'"):
        load_init(tmp_path / "missing.pt", tiny_pixel, 2)
    torch.save(dict(sd, extra=torch.zeros(1)), tmp_path / "extra.pt")
    with pytest.raises(NeuroditError, match="unexpected keys.*extra"):
        load_init(tmp_path / "extra.pt", tiny_pixel, 2)


class Evil:  # anything that is not tensors/containers must never be unpickled
    def __reduce__(self):
        return (print, ("pwned",))


def test_unsafe_or_unreadable_files_are_refused(tmp_path, tiny_pixel, capsys):
    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"w": Evil()}))
    with pytest.raises(NeuroditError, match=r"evil\.pt.*weights_only=True"):
        read_checkpoint(tmp_path / "evil.pt")
    assert "pwned" not in capsys.readouterr().out
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(NeuroditError, match=r"junk\.safetensors.*safetensors"):
        load_init(tmp_path / "junk.safetensors", tiny_pixel, 2)
    torch.save({"step": torch.tensor(3), "note": "x"}, tmp_path / "nostate.pt")
    with pytest.raises(NeuroditError, match="holds no state dict"):
        load_init(tmp_path / "nostate.pt", tiny_pixel, 2)
    with pytest.raises(NeuroditError, match="checkpoint file not found"):
        read_checkpoint(tmp_path / "absent.pt")
    with pytest.raises(NeuroditError, match="not found"):
        load_init(str(tmp_path / "absent_folder"), tiny_pixel, 2)


def test_hub_id_absent_from_cache_is_a_clear_error(tmp_path, tiny_pixel, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    with pytest.raises(NeuroditError, match=r"facebook/DiT-XL-2-256 \(subfolder transformer\).*"
                                            r"not in the local Hugging Face cache.*huggingface-cli download"):
        load_init("facebook/DiT-XL-2-256", tiny_pixel, 2)


def test_export_refuses_diverged_embedders(tiny_pixel, dt):
    model = dt.random_dit(tiny_pixel, 2, shared=False)
    with pytest.raises(NeuroditError, match="block 1's timestep/label embedder differs"):
        export_original_state_dict(model)
    sd = export_original_state_dict(model, strict=False)
    assert torch.equal(sd["t_embedder.mlp.0.weight"],
                       model.transformer_blocks[0].norm1.emb.timestep_embedder.linear_1.weight)


def test_source_without_sigma_into_learn_sigma_target(tmp_path, tiny_pixel, dt):
    src = dt.random_dit(tiny_pixel, 2)
    src.save_pretrained(tmp_path / "s")
    model, summary = load_init(tmp_path / "s", dt.pixel_preset(learn_sigma=True), 2, return_summary=True)
    out = dt.forward(model.eval(), X, [0, 1, 2])
    assert out.shape == (3, 2, 8, 8)
    assert torch.equal(out[:, :1], dt.forward(src, X, [0, 1, 2]))  # prediction channel kept exactly
    assert float(out[:, 1:].abs().max()) == 0.0  # new variance channel starts at zero (adaLN-Zero)
    assert "variance channels newly initialised" in summary["adapted"]["proj_out_2.weight"]


def test_hub_pipeline_layout_with_legacy_transformer2d_config(tmp_path, dt):
    # facebook/DiT-XL-2-256 on the hub: a DiTPipeline folder whose transformer/config.json names the
    # legacy class Transformer2DModel (attention_bias true, ada_norm_zero). Emulated with a tiny one.
    from diffusers import Transformer2DModel

    torch.manual_seed(0)
    legacy = Transformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8,
                                num_layers=2, sample_size=8, patch_size=2, norm_type="ada_norm_zero",
                                num_embeds_ada_norm=5, activation_fn="gelu-approximate",
                                norm_elementwise_affine=False, attention_bias=True).eval()
    legacy.save_pretrained(tmp_path / "pipe" / "transformer")
    preset = dt.latent_preset(grid_shape=(4, 4, 4), latent_downsample=1)
    model, summary = load_init(tmp_path / "pipe", preset, 5, return_summary=True)
    assert summary["subfolder"] == "transformer" and summary["format"] == "diffusers"
    x, t, y = torch.randn(2, 4, 8, 8), torch.tensor([3, 700]), torch.tensor([1, 5])
    with torch.no_grad():
        assert torch.equal(model.eval()(x, timestep=t, class_labels=y).sample,
                           legacy(x, timestep=t, class_labels=y).sample)


def test_trained_run_folder_keeps_per_block_embedders(tmp_path, tiny_pixel, dt):
    # after training, diffusers' per-block embedders differ; a diffusers folder keeps each block's own
    src = dt.random_dit(tiny_pixel, 2, shared=False)
    src.save_pretrained(tmp_path / "model")
    model = load_init(tmp_path / "model", tiny_pixel, 2)
    assert torch.equal(dt.forward(model.eval(), X, [0, 1, 2]), dt.forward(src, X, [0, 1, 2]))
    e0, e1 = (b.norm1.emb.timestep_embedder.linear_1.weight for b in model.transformer_blocks)
    assert not torch.equal(e0, e1)

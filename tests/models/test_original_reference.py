"""The key mapping checked against the original architecture, not just against its own inverse.

``reference_dit_forward`` re-implements facebookresearch/DiT's ``models.py`` forward (Peebles & Xie
2023) in plain torch on an ORIGINAL-format state dict (timm's fused qkv attention, adaLN-Zero blocks,
final layer, unpatchify). A converted diffusers model must give the same output: a swapped q/k,
a wrong adaLN chunk order or a wrong unpatchify layout would survive an export/convert round trip,
but not this test.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from neurodit.models import convert_original_state_dict, export_original_state_dict, load_init


def _timestep_embedding(t: torch.Tensor, dim: int = 256, freq_shift: int = 0) -> torch.Tensor:
    # DiT: freqs = exp(-ln(1e4) k / half); diffusers' DiT divides by (half - 1) (freq_shift=1)
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / (half - freq_shift))
    args = t[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # (N, 256)


def reference_dit_forward(sd: dict, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, heads: int,
                          freq_shift: int = 0) -> torch.Tensor:
    """facebookresearch/DiT forward on its own state dict: (N, C, H, W) -> (N, C_out, H, W)."""
    lin = lambda v, name: F.linear(v, sd[name + ".weight"], sd[name + ".bias"])  # noqa: E731
    mod = lambda v, shift, scale: v * (1 + scale[:, None]) + shift[:, None]  # noqa: E731
    ln = lambda v: F.layer_norm(v, v.shape[-1:], eps=1e-6)  # noqa: E731
    w = sd["x_embedder.proj.weight"]
    p, width = w.shape[-1], w.shape[0]
    h = F.conv2d(x, w, sd["x_embedder.proj.bias"], stride=p).flatten(2).transpose(1, 2)  # (N, T, W)
    h = h + sd["pos_embed"]
    temb = lin(F.silu(lin(_timestep_embedding(t, 256, freq_shift), "t_embedder.mlp.0")), "t_embedder.mlp.2")
    c = temb + sd["y_embedder.embedding_table.weight"][y]  # (N, W)
    n_blocks = len({k.split(".")[1] for k in sd if k.startswith("blocks.")})
    for i in range(n_blocks):
        b = f"blocks.{i}."
        sm, cm, gm, sf, cf, gf = lin(F.silu(c), b + "adaLN_modulation.1").chunk(6, dim=1)
        a = mod(ln(h), sm, cm)
        n, tok, _ = a.shape
        qkv = lin(a, b + "attn.qkv").reshape(n, tok, 3, heads, width // heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # (N, heads, T, head_dim) each
        att = (q @ k.transpose(-2, -1) * (width // heads) ** -0.5).softmax(-1)
        a = lin((att @ v).transpose(1, 2).reshape(n, tok, width), b + "attn.proj")
        h = h + gm[:, None] * a
        m = lin(F.gelu(lin(mod(ln(h), sf, cf), b + "mlp.fc1"), approximate="tanh"), b + "mlp.fc2")
        h = h + gf[:, None] * m
    shift, scale = lin(F.silu(c), "final_layer.adaLN_modulation.1").chunk(2, dim=1)
    h = lin(mod(ln(h), shift, scale), "final_layer.linear")  # (N, T, p*p*C)
    side = int(tok ** 0.5)
    cout = h.shape[-1] // (p * p)
    h = h.reshape(n, side, side, p, p, cout)
    return torch.einsum("nhwpqc->nchpwq", h).reshape(n, cout, side * p, side * p)


def test_converted_model_matches_the_original_forward(tmp_path, dt):
    # latent-like: 4 channels in, learn_sigma 8 out, 3 heads, 2 layers
    preset = dt.latent_preset(grid_shape=(4, 4, 4), latent_downsample=1, num_attention_heads=3,
                              attention_head_dim=8)
    sd = export_original_state_dict(dt.random_dit(preset, 5, seed=3))
    sd = {k: v * 0.5 for k, v in sd.items() if k != "pos_embed"} | {"pos_embed": sd["pos_embed"]}
    torch.save(sd, tmp_path / "orig.pt")
    model = load_init(tmp_path / "orig.pt", preset, 5).eval()
    x = torch.randn(4, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    t, y = torch.tensor([0, 17, 400, 999]), torch.tensor([0, 2, 4, 5])  # 5 = null class
    with torch.no_grad():
        ours = model(x, timestep=t, class_labels=y).sample
        ref = reference_dit_forward(sd, x, t, y, heads=3, freq_shift=1)
        ref_orig_t = reference_dit_forward(sd, x, t, y, heads=3, freq_shift=0)
    assert ours.shape == ref.shape == (4, 8, 8, 8)
    scale = float(ref.abs().mean())
    assert scale > 0.05
    # only the norm eps (1e-5 in diffusers' norm2 vs 1e-6) and float order differ
    assert float((ours - ref).abs().max()) < 1e-4 * max(1.0, scale)  # measured 3.5e-6
    # the timestep-frequency convention is a real (documented) difference, not noise
    assert float((ours - ref_orig_t).abs().max()) > 1e-3


def test_convert_is_the_inverse_of_export(dt):
    model = dt.random_dit(dt.pixel_preset(), 2)
    sd = export_original_state_dict(model)
    back, _ = convert_original_state_dict(sd)
    mine = model.state_dict()
    assert set(back) == set(mine) and all(torch.equal(back[k], mine[k]) for k in mine)

"""``neurodit bench``: time one train step and sampling per preset on this machine.

Timings live here, never in tests. For each preset: a randomly initialised DiT (``build_dit``) on
random inputs of the preset's shape (no data needed), AdamW + the diffusion loss under the same
mixed precision ``train`` would use; then classifier-free-guided DDIM sampling of one batch. Latent
presets time the DiT only (the SD VAE needs hub weights; its cost is reported as not measured).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from neurodit.io import package_versions, write_json


def bench_preset(name: str, steps: int = 10, batch_size: int = 16, sample_steps: int = 25,
                 sample_batch: int = 4, guidance: float = 2.0, device: str | None = None) -> dict[str, Any]:
    """Seconds per train step, images/s and sampling seconds per volume for preset ``name``."""
    from neurodit.diffusion import DiffusionConfig, autocast_dtype, create_diffusion, mixed_precision_for
    from neurodit.models import build_dit, load_preset

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    preset = load_preset(name)
    mp = mixed_precision_for("auto", dev.type)
    dtype = autocast_dtype(mp)
    torch.manual_seed(0)
    model = build_dit(preset, 2, dit_init=False).to(dev).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    process = create_diffusion(DiffusionConfig(prediction_type="v_prediction"))
    shape = (preset.in_channels, preset.sample_size, preset.sample_size)
    x = torch.randn((batch_size, *shape), device=dev).clamp(-1, 1)
    y = torch.randint(0, 3, (batch_size,), device=dev)

    def one_step() -> None:
        with torch.autocast(dev.type, dtype=dtype, enabled=dtype is not None):
            loss = process.loss(model, x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(2):  # warm-up (allocator, kernels)
        one_step()
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        one_step()
    sync()
    step_s = (time.perf_counter() - t0) / steps
    model.eval()
    labels = torch.arange(sample_batch, device=dev) % 2
    sync()
    t0 = time.perf_counter()
    process.sample(model, labels, 2, shape, kind="ddim", steps=sample_steps, guidance=guidance,
                   autocast_dtype=dtype)
    sync()
    sample_s = (time.perf_counter() - t0) / sample_batch
    return {
        "preset": name, "device": str(dev), "threads": torch.get_num_threads(), "mixed_precision": mp,
        "mosaic": preset.mosaic_size, "tokens": preset.num_tokens,
        "params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        "batch_size": batch_size, "train_s_per_step": round(step_s, 4),
        "train_img_per_s": round(batch_size / step_s, 2), "sample_steps": sample_steps,
        "guidance": guidance, "sample_s_per_volume": round(sample_s, 4),
        "vae": "not timed" if preset.space == "latent" else "n/a",
    }


def bench(presets: list[str], steps: int = 10, batch_size: int = 16, sample_steps: int = 25,
          out: str | Path | None = None) -> list[dict[str, Any]]:
    """Run ``bench_preset`` for each preset; optionally write ``{"results": [...], "versions"}`` JSON."""
    results = [bench_preset(p, steps=steps, batch_size=batch_size, sample_steps=sample_steps) for p in presets]
    if out is not None:
        write_json(out, {"results": results, "versions": package_versions()})
    return results


def format_table(results: list[dict[str, Any]]) -> str:
    cols = ["preset", "device", "mixed_precision", "mosaic", "tokens", "params_M", "batch_size",
            "train_s_per_step", "train_img_per_s", "sample_s_per_volume"]
    rows = [cols] + [[str(r[c]) for c in cols] for r in results]
    widths = [max(len(r[i]) for r in rows) for i in range(len(cols))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows)

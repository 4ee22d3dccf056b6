"""Which floating-point precision a device gets, for training and sampling alike."""

from __future__ import annotations

import torch

MIXED_PRECISION = ("auto", "fp32", "bf16", "fp16")  # not "no": YAML reads an unquoted no as false


def mixed_precision_for(choice: str, device_type: str) -> str:
    """Resolve ``auto`` to accelerate's name: bf16 on CUDA with bf16 support or on CPUs with
    AVX-512/AMX (measured 1.6x faster than fp32 for DiT-S/8 on such a CPU, docs/NOTES.md), else full
    precision (``"no"``)."""
    if choice == "fp32":
        return "no"  # accelerate's name for full precision
    if choice != "auto":
        return choice
    if device_type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    cap = torch.backends.cpu.get_cpu_capability() if hasattr(torch.backends, "cpu") else ""
    return "bf16" if ("AVX512" in cap or "AMX" in cap) else "no"


def autocast_dtype(mixed_precision: str) -> torch.dtype | None:
    """The autocast dtype of an accelerate precision name (``bf16``/``fp16``); None = full precision."""
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mixed_precision)

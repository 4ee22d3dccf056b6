"""The machine's limit: CPU model and ISA (or the GPU's name), the measured matmul peak, peak RSS.

The peak is what the best square matmul (:data:`PEAK_SIZES`) reaches with the threads in use
(``torch.get_num_threads()``): the ceiling any network step on this machine can approach, so a step's
model FLOPs/s divided by it says how much of the machine the step uses. bf16 is measured only where the CPU has native bf16 instructions
(``avx512_bf16`` / ``amx_bf16``; without them torch emulates bf16 and it is slower than fp32).
"""

from __future__ import annotations

import os
import resource
import subprocess
import time
from typing import Any

import torch


def _lscpu() -> dict[str, str]:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    return {k.strip(): v.strip() for k, _, v in (ln.partition(":") for ln in out.splitlines())}


def cpu_info() -> dict[str, Any]:
    """CPU model (lscpu), core count, torch's CPU capability (the SIMD level its kernels use) and
    whether the CPU has native bf16 (``native_bf16``); the GPU's name when torch sees one."""
    info = _lscpu()
    flags = set(info.get("Flags", "").split())
    cap = torch.backends.cpu.get_cpu_capability()
    return {"cpu_model": info.get("Model name"), "cpus": os.cpu_count(),
            "affinity": len(os.sched_getaffinity(0)),
            "torch_cpu_capability": cap,
            # the instructions and kernels that use them: torch held to AVX2 kernels (ATEN_CPU_CAPABILITY=avx2)
            # emulates bf16 even on a CPU that has it (2.4 GFLOP/s against 220 fp32, measured 2026-12-05)
            "native_bf16": bool(flags & {"avx512_bf16", "amx_bf16"}) and ("AVX512" in cap or "AMX" in cap),
            "torch_threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def matmul_gflops(m: int, k: int, n: int, dtype: torch.dtype = torch.float32, seconds: float = 0.3,
                  device: str = "cpu") -> float:
    """GFLOP/s of (m, k) @ (k, n) in ``dtype`` (2 m k n FLOPs), the best of repeated calls over about
    ``seconds`` after one warm-up: best, not median, because the peak is what the hardware can do and a
    shared machine only ever slows a call down."""
    a = torch.randn(m, k, device=device).to(dtype)
    b = torch.randn(k, n, device=device).to(dtype)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    a @ b
    sync()
    best, t_end = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t0 = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - t0)
    return 2 * m * k * n / best / 1e9


# Square sizes tried for the peak: on the 2-core EPYC (1 thread, 2026-12-05) bf16 reached 490 GFLOP/s at
# 512-1024 but 460 at 2048 (the operands leave the caches), fp32 112 at 512 and 86 at 2048: the peak is
# the best size, not the largest.
PEAK_SIZES = (512, 1024, 2048)


def matmul_peak(dtype: torch.dtype = torch.float32, seconds: float = 1.0, device: str = "cpu") -> tuple[float, int]:
    """The best GFLOP/s of square matmuls over :data:`PEAK_SIZES` (about ``seconds`` in all) and its size."""
    rates = {n: matmul_gflops(n, n, n, dtype, seconds / len(PEAK_SIZES), device) for n in PEAK_SIZES}
    best = max(rates, key=rates.get)
    return rates[best], best


def machine_limit(seconds: float = 1.0) -> dict[str, Any]:
    """``cpu_info`` plus the matmul peak in GFLOP/s (and the size that reached it) with the threads in use:
    fp32, and bf16 where the CPU (or GPU) has it natively."""
    info = cpu_info()
    device = "cuda" if info["gpu"] else "cpu"
    native = info["native_bf16"] if device == "cpu" else torch.cuda.is_bf16_supported()
    peak, size = {}, {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        if name == "fp32" or native:
            rate, size[name] = matmul_peak(dtype, seconds=seconds, device=device)
            peak[name] = round(rate, 1)
        else:
            peak[name] = None
    return {**info, "device": device, "peak_gflops": peak, "peak_matmul_n": size}


def reset_peak_rss() -> bool:
    """Reset this process's RSS high-water mark (Linux: ``5`` to ``/proc/self/clear_refs``), so that
    :func:`peak_rss_mb` then measures what follows; False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """This process's peak resident set in MB (VmHWM; ``ru_maxrss`` where /proc is missing)."""
    try:
        with open("/proc/self/status") as fh:
            hwm = [int(ln.split()[1]) for ln in fh if ln.startswith("VmHWM:")]
        if hwm:
            return round(hwm[0] / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)

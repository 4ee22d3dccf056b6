"""``neurodit bench``: every figure of the training step against this machine's limit from one run.

1. The machine (:mod:`neurodit.bench.machine`): CPU model and ISA or the GPU, matmul peak (fp32, and
   bf16 where native) with the threads the loop uses.
2. Per generator: the real loop (``neurodit train`` in a child process, :mod:`neurodit.bench.loop`) and
   the bare step of the same network, objective, batch, precision and threads
   (:mod:`neurodit.bench.step`), in alternating rounds so that a change in a shared machine's load hits
   both; the loop's speed as a fraction of the bare step's; the bare step's model FLOPs/s as a fraction
   of the peak and, for the DiT, what bounds it (the model's own matmul shape timed alone).
3. With ``--run``: sampling seconds per volume and the judge's C2ST AUC and Fréchet ratio per sampler
   and step count (:mod:`neurodit.bench.samplers`).
4. The judge's seconds and peak RSS at N and 4N synthetic volumes on the 32^3 grid and on the phantom's
   native 2 mm grid (99x117x95), each ``evaluate()`` in a fresh process (:mod:`neurodit.bench.evaluate`).
5. The bench's own seconds per part (``sections_s``): what a run of it costs, and where.
Timings live here, never in tests.
"""

from __future__ import annotations

import contextlib
import statistics
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from neurodit.bench.machine import machine_limit, matmul_gflops
from neurodit.bench.step import (
    StepSubject,
    bare_step,
    dit_analytic_flops,
    sample_seconds,
    subject_from_preset,
    subject_from_run,
)
from neurodit.defaults import SAMPLING
from neurodit.io import package_versions, timed, write_json

JUDGE_2MM_N = 5  # N of the 2 mm judge rows (N and 4N synthetic volumes; N real, N train)


def _fraction(gflops: float, peak: dict[str, float | None], mixed_precision: str) -> tuple[str, float | None]:
    """Which peak a step's precision is held against (bf16 autocast: the bf16 peak where measured) and the
    fraction of it."""
    kind = "bf16" if mixed_precision == "bf16" and peak.get("bf16") else "fp32"
    # 3 significant digits, not 3 decimals: a test-sized network runs at ~1e-4 of the peak, not 0
    return kind, (float(f"{gflops / peak[kind]:.3g}") if peak.get(kind) else None)


def dit_matmul_bound(subj: StepSubject, peak_kind: str) -> dict[str, Any] | None:
    """For a DiT: GFLOP/s of the model's own MLP matmul, (B*T, D) @ (D, 4D), timed alone at the step's
    precision and threads: whether the network's matrices are too small for the peak."""
    cfg = getattr(subj.model, "config", None)
    if cfg is None or not hasattr(cfg, "attention_head_dim"):
        return None
    width = cfg.num_attention_heads * cfg.attention_head_dim
    rows = subj.batch_size * (cfg.sample_size // cfg.patch_size) ** 2
    dtype = torch.bfloat16 if peak_kind == "bf16" else torch.float32
    return {"shape": [rows, width, 4 * width], "dtype": peak_kind,
            "gflops": round(matmul_gflops(rows, width, 4 * width, dtype), 1)}


# profiler op names by kind: what the FLOP count credits (matmul, attention, conv) and the fused AdamW
_OP_KINDS = (("attention", ("attention",)), ("conv", ("conv",)),
             ("matmul", ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::matmul", "mkldnn")),
             ("optimizer", ("adam",)))


def step_profile(subj: StepSubject, top: int = 4) -> dict[str, Any]:
    """Where one bare step's time goes (torch.profiler, self CPU time of each op, after a warm-up step):
    shares by kind (matmul, attention, conv, optimizer, other) and the ``top`` other ops; with the counted
    FLOPs by kind. Profiling slows small ops most, so the shares overstate the other ops a little."""
    from torch.profiler import ProfilerActivity, profile
    from torch.utils.flop_counter import FlopCounterMode

    from neurodit.diffusion import autocast_dtype
    from neurodit.optim import adamw, bare_step

    device = next(subj.model.parameters()).device
    x = torch.randn((subj.batch_size, *subj.input_shape), device=device)
    y = torch.zeros(subj.batch_size, dtype=torch.long, device=device)
    step = bare_step(subj.model, subj.process, x, y, autocast_dtype(subj.mixed_precision),
                     adamw(subj.model.parameters(), lr=1e-4))
    step()
    with FlopCounterMode(display=False) as counter:
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    times: dict[str, float] = {}
    others: dict[str, float] = {}
    for ev in prof.key_averages():
        kind = next((k for k, keys in _OP_KINDS if any(s in ev.key.lower() for s in keys)), "other")
        times[kind] = times.get(kind, 0.0) + ev.self_cpu_time_total
        if kind == "other" and ev.key.startswith("aten::"):
            others[ev.key] = others.get(ev.key, 0.0) + ev.self_cpu_time_total
    flops: dict[str, float] = {}
    for op, n in counter.get_flop_counts().get("Global", {}).items():
        kind = next((k for k, keys in _OP_KINDS[:3] if any(s in str(op) for s in keys)), "matmul")
        flops[kind] = flops.get(kind, 0) + n
    total_t, total_f = sum(times.values()) or 1.0, sum(flops.values()) or 1
    return {"time_share": {k: round(v / total_t, 3) for k, v in sorted(times.items())},
            "flop_share": {k: round(v / total_f, 3) for k, v in sorted(flops.items())},
            "top_other_ops": {k: round(v / total_t, 3) for k, v in sorted(others.items(), key=lambda kv: -kv[1])[:top]}}


def _bound_text(fraction: float | None, shape_bound: dict | None, peak: float, prof: dict[str, Any]) -> str:
    """What bounds the bare step, in words, from the measured figures (no guess)."""
    if fraction is None:
        return "no peak measured at this precision"
    parts = [f"{fraction:.0%} of the matmul peak"]
    if fraction >= 0.5:
        return parts[0]
    ts = prof["time_share"]
    mm_t = ts.get("matmul", 0) + ts.get("attention", 0) + ts.get("conv", 0)
    parts.append(f"the matmuls, attention and convs (the FLOPs) take {mm_t:.0%} of the step's op time; the "
                 f"rest goes to ops without FLOPs in the count (optimizer "
                 f"{ts.get('optimizer', 0):.0%}, other {ts.get('other', 0):.0%}: "
                 + ", ".join(f"{k.removeprefix('aten::')} {v:.0%}" for k, v in prof["top_other_ops"].items()) + ")")
    if shape_bound:
        r, d, f = shape_bound["shape"]
        parts.append(f"the model's MLP matmul ({r}x{d} @ {d}x{f}) alone runs at {shape_bound['gflops'] / peak:.0%} "
                     "of the peak" + (": small matrices bound it too" if shape_bound["gflops"] < 0.5 * peak
                                      else ", so the matrices are not too small: memory-bound elementwise work "
                                           "and per-op overhead bound the step"))
    return "; ".join(parts)


def bench_generator(generator: str, preset: str, work: Path, *, loop_steps: int = 30, rounds: int = 2,
                    steps: int = 10, batch_size: int | None = None, sample_steps: int = SAMPLING.steps,
                    device: torch.device | None = None) -> dict[str, Any]:
    """The loop and the bare step of ``generator`` on ``preset`` (module docstring, item 2); with
    ``loop_steps`` 0 only the bare step of a fresh preset DiT (no data, no loop; the threads in use)."""
    from neurodit.bench.loop import prepared_phantom, time_loop
    from neurodit.models import load_preset

    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    p = load_preset(preset)
    loops, bares, subj = [], [], None
    if loop_steps > 0:
        prep = prepared_phantom(work / "data", tuple(p.grid_shape))
        for r in range(rounds):  # loop, bare, loop, bare: the ratio per round, on the load of that round
            loops.append(time_loop(prep, work / f"run-{r}", generator=generator, preset=preset,
                                   steps=loop_steps, batch_size=batch_size))
            torch.set_num_threads(loops[-1]["threads"])
            subj = subject_from_run(work / f"run-{r}", device, batch_size)
            bares.append(bare_step(subj, steps=steps))
    else:
        subj = subject_from_preset(preset, device, batch_size or 16)
        bares.append(bare_step(subj, steps=steps))
    limit = machine_limit(seconds=0.5)  # with the threads now in use: the loop's
    bare = _median_row(bares)
    analytic = dit_analytic_flops(subj.model, bare["batch_size"])
    flops = analytic / 1e9 if analytic else bare["counted_gflop_per_step"]
    bare.update(model_gflop_per_step=round(flops, 3), model_gflops=round(flops / bare["s_per_step"], 1),
                flops_source="hand count (DiT)" if analytic else "FlopCounterMode")
    # the unrounded rate: model_gflops is rounded to 0.1 for printing
    peak_kind, fraction = _fraction(flops / bare["s_per_step"], limit["peak_gflops"], bare["mixed_precision"])
    shape_bound = dit_matmul_bound(subj, peak_kind)
    prof = step_profile(subj)
    row = {"generator": generator, "preset": preset, "device": str(device), "threads": bare["threads"],
           "mixed_precision": bare["mixed_precision"], "subject": subj.source.split(" ", 1)[0],
           "params_M": round(sum(q.numel() for q in subj.model.parameters()) / 1e6, 2),
           "batch_size": bare["batch_size"], "bare": bare, "bare_rounds": bares,
           "peak_gflops": limit["peak_gflops"], "peak_threads": limit["torch_threads"],
           "peak_matmul_n": limit["peak_matmul_n"], "peak_kind": peak_kind,
           "fraction_of_peak": fraction, "mlp_matmul": shape_bound, "profile": prof,
           "bound": _bound_text(fraction, shape_bound, limit["peak_gflops"][peak_kind] or 1.0, prof)}
    if hasattr(subj.model, "transformer_blocks"):
        row.update(mosaic=p.mosaic_size, tokens=p.num_tokens)
    if loops:
        ratios = [b["s_per_step"] / lp["s_per_step"] for b, lp in zip(bares, loops, strict=True)]
        best = [b["s_per_step_min"] / lp["step_seconds"]["min"] for b, lp in zip(bares, loops, strict=True)]
        row.update(loop=loops, loop_ratio=round(statistics.median(ratios), 3),
                   loop_ratio_rounds=[round(x, 3) for x in ratios], loop_ratio_best=round(statistics.median(best), 3))
    row.update(train_s_per_step=bare["s_per_step"], train_img_per_s=bare["samples_per_s"],
               sample_steps=sample_steps, sampler=subj.sampler,
               sample_s_per_volume=round(sample_seconds(subj, steps=sample_steps), 4))
    return row


@contextlib.contextmanager
def _restore_threads(n: int) -> Iterator[None]:
    try:
        yield
    finally:
        torch.set_num_threads(n)


def _median_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The bare-step row whose seconds per step is the median of the rounds' (the lower middle one)."""
    ordered = sorted(rows, key=lambda b: b["s_per_step"])
    return ordered[(len(ordered) - 1) // 2]


def bench(presets: list[str], generators: tuple[str, ...] | None = None, *, out: str | Path | None = None,
          steps: int = 10, batch_size: int | None = None, sample_steps: int = SAMPLING.steps,
          loop_steps: int = 30, rounds: int = 2, run: str | Path | None = None, real: str | Path | None = None,
          sampler_n: int = 40, judge: bool = True, judge_2mm: bool = True, quick: bool = False,
          work: str | Path | None = None) -> dict[str, Any]:
    """Every figure of the module docstring in one dict (written as JSON to ``out``): ``machine``,
    ``results`` (one row per generator and preset), ``samplers`` (with ``run``, else a note) and ``judge``
    (N and 4N volumes on the 32^3 grid, when ``judge``); ``generators``: default the registry's default
    generator. ``quick``: smallest sizes (tests)."""
    from neurodit.bench.evaluate import NATIVE_2MM, bench_evaluate_memory
    from neurodit.bench.machine import cpu_info
    from neurodit.generators.registry import DEFAULT

    generators = generators or (DEFAULT,)
    res: dict[str, Any] = {"machine": cpu_info()}
    sections: dict[str, float] = {}
    threads = torch.get_num_threads()  # the bare steps run on the loop's choice; restored on exit
    with tempfile.TemporaryDirectory(prefix="neurodit-bench-", dir=work) as tmp, _restore_threads(threads):
        tmp_p = Path(tmp)
        with timed(sections, "generators"):
            res["results"] = [bench_generator(g, p, tmp_p / f"{g}-{i}", loop_steps=loop_steps, rounds=rounds,
                                              steps=steps, batch_size=batch_size, sample_steps=sample_steps)
                              for g in generators for i, p in enumerate(presets)]
        res["machine"]["peak_gflops"] = res["results"][0]["peak_gflops"]
        res["machine"]["peak_threads"] = res["results"][0]["peak_threads"]
        res["machine"]["peak_matmul_n"] = res["results"][0]["peak_matmul_n"]
        if run is not None:
            from neurodit.bench.samplers import bench_samplers

            with timed(sections, "samplers"):
                res["samplers"] = bench_samplers(run, real, tmp_p / "samplers", n=sampler_n, quick=quick)
        else:
            res["samplers"] = {"note": "skipped: pass --run RUN_DIR (a trained run, e.g. demo_out/run) and "
                                       "--real HELDOUT_DIR for the sampler table"}
        if judge:
            n = 4 if quick else 10
            with timed(sections, "judge"):
                # drawn at 6 mm and resampled (the demo's phantoms are drawn at 4 mm): 2 mm phantoms cost seconds
                res["judge"] = bench_evaluate_memory(tmp_p / "judge", ns=(n, 4 * n), n_fixed=n, shape=(32, 32, 32),
                                                     voxel_size=6.0, cfg={"features": False} if quick else None)
            # the native grid: 4 MB a volume, where a judge that held every volume's copies would show it
            n2, shape2 = (2, (24, 28, 24)) if quick else (JUDGE_2MM_N, NATIVE_2MM)
            if judge_2mm:
                with timed(sections, "judge_2mm"):
                    # fewer MS-SSIM pairs and resamples than the 32^3 rows: at 2 mm a pair costs ~60x more,
                    # and what this row measures (time and memory against N) does not need them
                    cfg2 = {"features": False} if quick else {"max_pairs": 8, "coherence_pairs": 4,
                                                              "permutations": 50, "bootstrap": 50}
                    res["judge_2mm"] = bench_evaluate_memory(tmp_p / "judge2mm", ns=(n2, 4 * n2), n_fixed=n2,
                                                             shape=shape2, cfg=cfg2)
    res["sections_s"] = {k: round(v, 1) for k, v in sections.items()}
    res["versions"] = package_versions()
    if out is not None:
        write_json(out, res)
    return res


def format_report(res: dict[str, Any]) -> str:
    """The bench's figures as text: machine, step vs peak and loop vs step, samplers, judge."""
    m = res["machine"]
    pk = m.get("peak_gflops", {})
    lines = [f"machine: {m['gpu'] or m['cpu_model']} ({m['affinity']} usable cores), torch {m['torch_cpu_capability']}, "
             f"native bf16 {'yes' if m['native_bf16'] else 'no'}; matmul peak {pk.get('fp32')} GFLOP/s fp32, "
             f"{pk.get('bf16') or 'n/a'} bf16 ({m.get('peak_threads')} threads)"]
    for r in res["results"]:
        b = r["bare"]
        lines.append(f"{r['generator']} {r['preset']} ({r['params_M']}M params, batch {r['batch_size']}, "
                     f"{r['mixed_precision']}, {r['threads']} threads):")
        lines.append(f"  bare step {b['s_per_step']:.4f} s ({b['samples_per_s']} samples/s), "
                     f"{b['model_gflop_per_step']} GFLOP/step, {b['model_gflops']} GFLOP/s = "
                     f"{r['fraction_of_peak']} of the {r['peak_kind']} peak; peak RSS {b['peak_rss_mb']} MB")
        lines.append(f"  bound: {r['bound']}")
        if "loop" in r:
            lp = r["loop"][0]
            lines.append(f"  loop {[x['s_per_step'] for x in r['loop']]} s/step (median of each run), "
                         f"loop speed / bare speed {r['loop_ratio']} (rounds {r['loop_ratio_rounds']}; "
                         f"best steps {r['loop_ratio_best']}); threads chosen {lp['threads']}, loop peak RSS "
                         f"{lp['peak_rss_mb']} MB")
        lines.append(f"  sampling {r['sampler']} {r['sample_steps']} steps: {r['sample_s_per_volume']} s/volume")
    s = res.get("samplers", {})
    if s.get("rows"):
        lines.append(f"samplers on {s['run']} ({s['objective']}, guidance {s['guidance']}, {s['n']} volumes):")
        for row in s["rows"]:
            auc = " ".join(f"{v} {a}" for v, a in (row.get("c2st_auc") or {}).items())
            # the Fréchet distance as a ratio to the real-vs-real floor; raw, and said so, without a floor
            ratio, raw = row.get("frechet_ratio"), row.get("frechet")
            frechet = (f"Fréchet ratio {ratio}" if ratio is not None else
                       f"Fréchet {raw:.3g} (raw: no real-vs-real floor)" if raw is not None else "Fréchet -")
            lines.append(f"  {row['sampler']:<6}{row['steps']:>4} steps {row['network_calls']:>4} calls "
                         f"{row['s_per_volume']:.3f} s/volume  C2ST AUC {auc or '-'}  "
                         f"{frechet}"
                         + (f"  gap to {s['reference']} {row['auc_gap']}" if "auc_gap" in row else ""))
        if s.get("reference"):
            cheap = ", ".join(s["cheap_within_tolerance"]) or "none"
            lines.append(f"  at most {s['few_calls']} calls and every C2ST AUC within {s['tolerance']} of "
                         f"{s['reference']}: {cheap}")
    if s.get("note"):
        lines.append(f"samplers: {s['note']}")
    for key in ("judge", "judge_2mm"):
        if key in res:
            j = res[key]
            lines.append(f"judge on {'x'.join(map(str, j['shape']))} ({j['n_real']} real, {j['n_train']} train): "
                         + "; ".join(f"{r['n_synthetic']} synthetic {r['seconds']} s, peak RSS {r['vmhwm_mb']} MB"
                                     for r in j["rows"]))
    if res.get("sections_s"):
        lines.append("bench seconds: " + ", ".join(f"{k} {v}" for k, v in res["sections_s"].items()))
    return "\n".join(lines)

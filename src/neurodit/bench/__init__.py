"""``neurodit bench``: the training step against this machine's limit (:mod:`neurodit.bench.run`), the
sampler table (:mod:`neurodit.bench.samplers`) and the judge's time and memory
(:mod:`neurodit.bench.evaluate`). Timings live here, never in tests; nothing here imports
``neurodit.train`` (the loop is timed through ``neurodit train``, :mod:`neurodit.bench.loop`)."""

from neurodit.bench.evaluate import bench_evaluate, format_evaluate
from neurodit.bench.machine import cpu_info, machine_limit
from neurodit.bench.run import bench, format_report

__all__ = ["bench", "bench_evaluate", "cpu_info", "format_evaluate", "format_report", "machine_limit"]

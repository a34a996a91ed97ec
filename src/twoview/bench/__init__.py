"""Benchmark harness: run methods on dataset pairs, cache predictions, score, report.

    twoview bench --dataset icl_nuim --root DIR --gap 10 30 --method sift --method sift-rigid3d --out runs/x

Library use::

    from twoview.bench import BenchConfig, run_benchmark
    summary = run_benchmark(BenchConfig(dataset="tum", root="...", methods=["sift"], out="runs/x"))

Methods plug in through :mod:`twoview.bench.methods` (``BENCH_METHODS`` dicts).
"""

from twoview.bench.runner import BenchConfig, run_benchmark

__all__ = ["BenchConfig", "run_benchmark"]

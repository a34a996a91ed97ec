"""Benchmark: reading and writing 3DGS PLY files of many Gaussians.

A random mixture of N Gaussians (anisotropic covariances, 4 descriptor channels) is written
with ``twoview.gmm.ply.write_ply`` as binary little-endian and read back with ``read_ply``;
also an ASCII file of the same Gaussians. Wall time per call (best of ``--repeat``, one
BLAS thread), file size, and a check that the covariances read back match (float32
precision). Records the load average and the speed probe of benchmarks/_machine.py.

    python benchmarks/bench_ply.py            # 1M Gaussians (binary), 100k (ASCII)
    python benchmarks/bench_ply.py --quick    # 100k / 10k

Writes benchmarks/results/ply.json and ply.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))  # benchmark this checkout

from _machine import speed_probe_ms  # noqa: E402
from twoview.gmm.mixture import GaussianMixture  # noqa: E402
from twoview.gmm.ply import SH_C0, read_ply, write_ply  # noqa: E402
from twoview.io.atomic import atomic_write_json, atomic_write_text  # noqa: E402


def mixture(n: int, seed: int = 0) -> GaussianMixture:
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(n, 3, 3)) * 0.01
    covs = A @ A.transpose(0, 2, 1) + 1e-6 * np.eye(3)
    return GaussianMixture(rng.normal(size=(n, 3)) + [0, 0, 3], covs, rng.random(n) + 0.01, rng.random((n, 3)),
                           rng.random((n, 4)).astype(np.float32))


def ascii_copy(binary: Path, out: Path) -> None:
    """The binary file's Gaussians as an ASCII PLY (same header, text rows)."""
    data = binary.read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode("ascii").replace("binary_little_endian", "ascii")
    n_props = header.count("property ")
    rows = np.frombuffer(data[end:], "<f4").reshape(-1, n_props)
    with open(out, "w") as f:
        f.write(header)
        np.savetxt(f, rows, fmt="%.7g")


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    n_bin, n_ascii = (100_000, 10_000) if args.quick else (1_000_000, 100_000)
    probe0, load0 = speed_probe_ms(), os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for fmt, n in (("binary", n_bin), ("ascii", n_ascii)):
            mix = mixture(n)
            path = Path(tmp) / f"{fmt}.ply"
            write_s = best(lambda: write_ply(Path(tmp) / "binary.ply", mix), args.repeat if fmt == "binary" else 1)
            if fmt == "ascii":
                ascii_copy(Path(tmp) / "binary.ply", path)
            read_s = best(lambda: read_ply(path), args.repeat)
            back = read_ply(path)
            err = float(np.abs(back.covs - mix.covs).max() / np.abs(mix.covs).max())
            rows.append({"format": fmt, "gaussians": n, "file_mb": round(path.stat().st_size / 1e6, 1),
                         "read_s": round(read_s, 3), "write_s": round(write_s, 3) if fmt == "binary" else None,
                         "cov_rel_error": err})
            print(rows[-1], flush=True)
    result = {"rows": rows, "machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version(),
                                        "numpy": np.__version__, "loadavg_start": round(load0, 2),
                                        "loadavg_end": round(os.getloadavg()[0], 2),
                                        "speed_probe_ms_start": round(probe0, 1), "speed_probe_ms_end": round(speed_probe_ms(), 1)},
              "sh_c0": SH_C0}
    out = REPO / "benchmarks" / "results"
    atomic_write_json(out / "ply.json", result)
    md = ["# 3DGS PLY read / write", "", "`python benchmarks/bench_ply.py` (one BLAS thread, best of "
          f"{args.repeat}; load average {load0:.2f} at the start).", "",
          "| format | Gaussians | file (MB) | read (s) | write (s) | max cov. error (rel.) |", "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        md.append(f"| {r['format']} | {r['gaussians']:,} | {r['file_mb']} | {r['read_s']:.3f} | "
                  f"{'–' if r['write_s'] is None else format(r['write_s'], '.3f')} | {r['cov_rel_error']:.1e} |")
    atomic_write_text(out / "ply.md", "\n".join(md) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

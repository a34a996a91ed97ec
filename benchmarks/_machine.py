"""What the machine did while a benchmark ran (shared by the benchmark scripts).

On a virtual machine the hypervisor can give part of the cores' time to other guests
("steal" in /proc/stat); wall times measured meanwhile are not the code's own.
"""

from __future__ import annotations


def cpu_ticks() -> list[int] | None:
    """The machine's CPU time counters (/proc/stat 'cpu' line, USER_HZ ticks), or None."""
    try:
        with open("/proc/stat") as f:
            return [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None


def steal_fraction(before, after) -> float:
    """Fraction of the machine's CPU time stolen by the hypervisor between two
    :func:`cpu_ticks` readings (NaN where /proc/stat is unavailable)."""
    if before is None or after is None:
        return float("nan")
    d = [b - a for a, b in zip(before, after)]
    return d[7] / max(sum(d), 1)


def speed_probe_ms(repeats: int = 5) -> float:
    """Time of a fixed single-threaded workload (ten Gaussian blurs of a 1280x960 float
    image, SIFT's first octave; best of ``repeats``), in ms.

    This VM's per-core speed changes by up to ~1.7x from minute to minute without any
    steal being reported (a busy neighbour on the same physical core); the probe, taken
    before and after a benchmark, says which regime its wall times were measured in.
    """
    import time

    import cv2
    import numpy as np

    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    img = np.random.default_rng(0).random((960, 1280), dtype=np.float32)
    best = float("inf")
    try:
        for _ in range(repeats):
            t = time.perf_counter()
            for sigma in (1.2, 1.5, 1.9, 2.4, 3.0, 1.2, 1.5, 1.9, 2.4, 3.0):
                cv2.GaussianBlur(img, (0, 0), sigma)
            best = min(best, time.perf_counter() - t)
    finally:
        cv2.setNumThreads(threads)
    return best * 1e3

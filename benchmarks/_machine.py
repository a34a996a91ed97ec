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

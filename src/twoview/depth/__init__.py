"""Depth sources: files, monocular estimators, and a degradation model for benchmarks."""

from twoview.depth.degrade import DepthDegradation, degrade_depth

__all__ = ["DepthDegradation", "degrade_depth"]

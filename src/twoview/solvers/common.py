"""Shared pieces of the solvers: their output type and depth look-up at keypoints."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from twoview.geometry.pose import Pose


@dataclass
class SolverOutput:
    """What a solver returns.

    Attributes:
        pose: ``cam1_from_cam0`` or None on failure.
        inliers: (N,) bool mask over the input matches.
        metric: whether ``pose.t`` is in metres.
        reason: why it failed (empty on success).
        info: iterations, residuals, scale, ... (JSON-ready: it reaches ``PoseResult.info``).
        depths: ``(z0, z1)``, the depth the solver used at each match of view 0 / view 1,
            (N,) metres with NaN where unusable, None for a view whose depth it did not use
            (the pose covariance reuses them).
    """

    pose: Pose | None
    inliers: np.ndarray
    metric: bool
    reason: str = ""
    info: dict = field(default_factory=dict)
    depths: tuple[np.ndarray | None, np.ndarray | None] = (None, None)

    @property
    def num_inliers(self) -> int:
        return int(np.count_nonzero(self.inliers))


def sample_depth(
    depth: np.ndarray,
    uv: np.ndarray,
    min_depth: float = 0.0,
    max_depth: float = np.inf,
    max_rel_jump: float = 0.05,
) -> np.ndarray:
    """Depth at pixel positions, NaN where unreliable.

    Nearest-pixel look-up (depth is not interpolated across surfaces). A sample is
    rejected when it is invalid, outside ``[min_depth, max_depth]``, or sits on a depth
    edge: its 3x3 neighbourhood spans more than ``max_rel_jump`` of its depth, where
    keypoints typically lie and a one-pixel error flips foreground and background.

    Args:
        depth: (H, W) metres, NaN invalid.
        uv: (N, 2) pixels.

    Returns:
        (N,) depth in metres with NaN for rejected samples.
    """
    H, W = depth.shape
    uv = np.asarray(uv, dtype=np.float64)
    x = np.rint(uv[:, 0]).astype(np.int64)
    y = np.rint(uv[:, 1]).astype(np.int64)
    inside = (x >= 1) & (x < W - 1) & (y >= 1) & (y < H - 1)
    z = np.full(len(uv), np.nan)
    if not np.any(inside):
        return z
    xi, yi = x[inside], y[inside]
    patch = np.stack([depth[yi + dy, xi + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)], axis=1)
    centre = patch[:, 4]
    # Rows with a NaN are rejected below anyway; plain max/min avoid nan-warnings.
    with np.errstate(invalid="ignore"):
        spread = patch.max(axis=1) - patch.min(axis=1)
        ok = (
            np.isfinite(centre)
            & np.all(np.isfinite(patch), axis=1)
            & (spread <= max_rel_jump * centre)
            & (centre >= min_depth)
            & (centre <= max_depth)
        )
    zi = np.where(ok, centre, np.nan)
    z[inside] = zi
    return z

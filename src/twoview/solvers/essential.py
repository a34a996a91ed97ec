"""Essential-matrix relative pose with PoseLib."""

from __future__ import annotations

import numpy as np

from twoview.config import SolverConfig
from twoview.geometry.camera import Camera
from twoview.geometry.pose import Pose
from twoview.solvers.common import SolverOutput


def solve_essential(
    kpts0: np.ndarray, kpts1: np.ndarray, cam0: Camera, cam1: Camera, cfg: SolverConfig | None = None
) -> SolverOutput:
    """5-point LO-RANSAC on the essential matrix, then bundle refinement on the inliers.

    Args:
        kpts0, kpts1: (N, 2) matched pixels.

    Returns:
        ``cam1_from_cam0`` with a unit-norm translation (``metric=False``).
    """
    import poselib

    cfg = cfg or SolverConfig()
    n = len(kpts0)
    if n < 5:
        return SolverOutput(None, np.zeros(n, bool), False, f"too few matches for the essential matrix ({n} < 5)")
    ransac = {
        "max_epipolar_error": cfg.max_epipolar_error,
        "max_iterations": cfg.max_iterations,
        "min_iterations": cfg.min_iterations,
        "success_prob": cfg.success_prob,
    }
    pose, info = poselib.estimate_relative_pose(
        np.ascontiguousarray(kpts0, dtype=np.float64),
        np.ascontiguousarray(kpts1, dtype=np.float64),
        cam0.to_poselib(),
        cam1.to_poselib(),
        ransac,
        {},
    )
    inliers = np.asarray(info.get("inliers", np.zeros(n)), dtype=bool)
    nin = int(inliers.sum())
    if nin < cfg.min_inliers:
        return SolverOutput(None, inliers, False, f"essential matrix: only {nin} inliers (need {cfg.min_inliers})")
    t = np.asarray(pose.t, dtype=np.float64)
    if not np.all(np.isfinite(t)) or np.linalg.norm(t) < 1e-9:
        return SolverOutput(None, inliers, False, "essential matrix degenerate (no translation: pure rotation?)")
    out_pose = Pose(np.asarray(pose.R), t / np.linalg.norm(t))
    return SolverOutput(out_pose, inliers, False, info={"iterations": int(info.get("iterations", 0))})

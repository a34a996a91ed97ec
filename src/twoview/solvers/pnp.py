"""Metric relative pose from one depth map: PnP with PoseLib."""

from __future__ import annotations

import numpy as np

from twoview.config import SolverConfig
from twoview.geometry.camera import Camera
from twoview.geometry.pose import Pose
from twoview.solvers.common import SolverOutput, sample_depth


def solve_pnp(
    kpts0: np.ndarray,
    kpts1: np.ndarray,
    cam0: Camera,
    cam1: Camera,
    depth0: np.ndarray | None = None,
    depth1: np.ndarray | None = None,
    cfg: SolverConfig | None = None,
) -> SolverOutput:
    """P3P LO-RANSAC and refinement; the 3D points come from one view's depth.

    Uses ``depth0`` when given (3D points in camera 0, observed in image 1) and otherwise
    ``depth1`` (then the pose is inverted). Matches without reliable depth are not used
    and are reported as outliers.

    Args:
        kpts0, kpts1: (N, 2) matched pixels.
        depth0, depth1: (H, W) metres with NaN invalid; at least one is required.

    Returns:
        metric ``cam1_from_cam0``.
    """
    import poselib

    cfg = cfg or SolverConfig()
    n = len(kpts0)
    if depth0 is None and depth1 is None:
        raise ValueError("solve_pnp needs depth0 or depth1")
    use0 = depth0 is not None
    src_uv, dst_uv = (kpts0, kpts1) if use0 else (kpts1, kpts0)
    src_cam, dst_cam = (cam0, cam1) if use0 else (cam1, cam0)
    z = sample_depth(depth0 if use0 else depth1, src_uv, cfg.min_depth, cfg.max_depth)
    valid = np.isfinite(z)
    nvalid = int(valid.sum())
    if nvalid < max(cfg.min_inliers, 4):
        return SolverOutput(
            None, np.zeros(n, bool), False,
            f"PnP: only {nvalid} matches have valid depth in view {0 if use0 else 1} (need {cfg.min_inliers})",
        )
    X = src_cam.unproject(src_uv[valid], z[valid])
    ransac = {
        "max_reproj_error": cfg.max_reproj_error,
        "max_iterations": cfg.max_iterations,
        "min_iterations": cfg.min_iterations,
        "success_prob": cfg.success_prob,
    }
    pose, info = poselib.estimate_absolute_pose(
        np.ascontiguousarray(dst_uv[valid]), np.ascontiguousarray(X), dst_cam.to_poselib(), ransac, {}
    )
    inl_valid = np.asarray(info.get("inliers", np.zeros(nvalid)), dtype=bool)
    inliers = np.zeros(n, bool)
    inliers[np.flatnonzero(valid)[inl_valid]] = True
    nin = int(inliers.sum())
    if nin < cfg.min_inliers:
        return SolverOutput(None, inliers, False, f"PnP: only {nin} inliers (need {cfg.min_inliers})")
    est = Pose(np.asarray(pose.R), np.asarray(pose.t))
    out = est if use0 else est.inverse()
    return SolverOutput(
        out, inliers, True,
        info={"depth_view": 0 if use0 else 1, "iterations": int(info.get("iterations", 0)), "num_with_depth": nvalid},
        depths=(z, None) if use0 else (None, z),
    )

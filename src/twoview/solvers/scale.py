"""Metric scale for a direction-only pose from depth at triangulated points."""

from __future__ import annotations

import numpy as np

from twoview.geometry.camera import Camera
from twoview.geometry.pose import Pose
from twoview.solvers.common import sample_depth


def triangulate(pose: Pose, x0: np.ndarray, x1: np.ndarray) -> np.ndarray:
    """Midpoint-free linear (DLT) triangulation in camera 0.

    Args:
        pose: ``cam1_from_cam0``.
        x0, x1: (N, 2) normalised image coordinates.

    Returns:
        (N, 3) points in camera 0 (NaN where ill-conditioned).
    """
    P0 = np.hstack([np.eye(3), np.zeros((3, 1))])
    P1 = np.hstack([pose.R, pose.t[:, None]])
    A = np.stack(
        [
            x0[:, :1] * P0[2] - P0[0],
            x0[:, 1:2] * P0[2] - P0[1],
            x1[:, :1] * P1[2] - P1[0],
            x1[:, 1:2] * P1[2] - P1[1],
        ],
        axis=1,
    )
    _, _, Vt = np.linalg.svd(A)
    Xh = Vt[:, -1]
    with np.errstate(divide="ignore", invalid="ignore"):
        X = Xh[:, :3] / Xh[:, 3:]
    return X


def scale_from_depth(
    pose_dir: Pose,
    kpts0: np.ndarray,
    kpts1: np.ndarray,
    cam0: Camera,
    cam1: Camera,
    depth0: np.ndarray | None,
    depth1: np.ndarray | None,
    min_points: int = 8,
) -> tuple[float | None, dict]:
    """Scale ``s`` such that ``pose_dir.scaled(s)`` is metric.

    Triangulates the inlier matches with the unit-baseline pose and takes the median
    ratio of measured to triangulated depth over every view with depth. Points with a
    small parallax angle (< 1 deg) carry no scale information and are ignored.

    Returns:
        (scale or None, info dict with ``num_points`` and ``spread`` = MAD / median).
    """
    x0 = cam0.bearings(kpts0)
    x1 = cam1.bearings(kpts1)
    X = triangulate(pose_dir, x0, x1)
    X1 = pose_dir.apply(X)
    c1 = pose_dir.center  # camera 1 centre in camera 0
    ray0 = X / np.linalg.norm(X, axis=1, keepdims=True)
    ray1 = (X - c1) / np.linalg.norm(X - c1, axis=1, keepdims=True)
    parallax = np.degrees(np.arccos(np.clip(np.sum(ray0 * ray1, axis=1), -1, 1)))
    good = np.all(np.isfinite(X), axis=1) & (X[:, 2] > 0) & (X1[:, 2] > 0) & (parallax > 1.0)
    ratios = []
    if depth0 is not None:
        z = sample_depth(depth0, kpts0)
        m = good & np.isfinite(z)
        ratios.append(z[m] / X[m, 2])
    if depth1 is not None:
        z = sample_depth(depth1, kpts1)
        m = good & np.isfinite(z)
        ratios.append(z[m] / X1[m, 2])
    r = np.concatenate(ratios) if ratios else np.zeros(0)
    if len(r) < min_points:
        return None, {"num_points": int(len(r))}
    s = float(np.median(r))
    spread = float(np.median(np.abs(r - s)) / s)
    return s, {"num_points": int(len(r)), "spread": spread}

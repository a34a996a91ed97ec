"""Whether two depth maps agree at a pose: the free-space test of RGB-D registration checks.

At the right pose, a surface point seen in view 0 lands, in view 1, on the surface view 1
measures there, or behind it (hidden from view 1). A point that lands well *in front of*
view 1's surface sits in space view 1 sees through: free space, which the pose
contradicts. Wrong poses that still align many planes (a cabinet's faces slid onto each
other at a wide baseline, a symmetric structure matched the wrong way round) explain much
of the depth, yet throw part of each view into the other's free space; right poses almost
never do. The same test checks loop closures in RGB-D SLAM (KinectFusion-style systems
reject an alignment whose points fall in observed free space).

:func:`depth_consistency` measures both directions and keeps the worse: the fraction of
projected points in the other view's free space (``violation``) and the fraction on its
surface (``agreement``). The pipeline records it for every metric pose with sensor or
predicted depth in both views (``result.info["depth_consistency"]``).

Measured on the default pipeline's poses of six RGB-D suites (eighth session): right poses
put under 8 % of their depth in free space where depth and colour are exposed together
(fr3_cabinet, HoloLens 2, ICL-NUIM, the simulated Kinect, fr1_xyz), the wrong fr3_cabinet
ones 10-41 %. On TUM fr1_rpy, whose depth is taken apart in time from the colour the
ground truth follows during fast rotation, right poses reach 43 % (median 7 %). The
calibrated model does not read it: a model fitted without the wrong poses of one
suite cannot tell those two apart (leave-one-suite-out AUROC 0.66 with it against 0.74
without, on the same runs). Agreement bounds it from below instead: no right pose of
those suites leaves under 20 % of the overlap on the other surface (fr1_rpy again the
lowest of eight suites; each suite's median 72-97 %), so with sensor depth a pose under
``ConfidenceConfig.min_depth_agreement`` (15 %) gets confidence 0
(:func:`twoview.pipeline.confidence.depth_contradiction`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from twoview.geometry.camera import Camera


@dataclass
class DepthConsistency:
    """Depth agreement of two views at a pose (the worse of the two directions).

    Attributes:
        violation: fraction of one view's points, projected into the other with valid
            depth there, lying more than ``violation_rel`` (relative) in front of the
            other view's surface: in its free space.
        agreement: fraction lying within ``agreement_rel`` of the other view's surface.
        overlap: fraction of one view's points that project into the other image onto
            valid depth.
        points: points tested in the direction with fewer of them.
    """

    violation: float
    agreement: float
    overlap: float
    points: int

    def to_dict(self) -> dict:
        return asdict(self)


def _one_way(depth_a: np.ndarray, cam_a: Camera, depth_b: np.ndarray, cam_b: Camera, b_from_a: np.ndarray,
             step: int, violation_rel: float, agreement_rel: float) -> tuple[float, float, float, int]:
    H, W = depth_a.shape
    v, u = np.mgrid[0:H:step, 0:W:step]
    z = depth_a[v, u]
    ok = np.isfinite(z) & (z > 0)
    if not ok.any():
        return 0.0, 0.0, 0.0, 0
    X = cam_a.unproject(np.stack([u[ok], v[ok]], 1).astype(np.float64), z[ok])
    Y = X @ b_from_a[:3, :3].T + b_from_a[:3, 3]
    front = Y[:, 2] > 1e-6
    Y = Y[front]
    uv = cam_b.project(Y)
    inside = cam_b.in_image(uv)
    ib = np.clip(np.rint(uv[inside, 1]).astype(np.intp), 0, depth_b.shape[0] - 1)
    jb = np.clip(np.rint(uv[inside, 0]).astype(np.intp), 0, depth_b.shape[1] - 1)
    d = depth_b[ib, jb]
    valid = np.isfinite(d) & (d > 0)
    n = int(valid.sum())
    if n == 0:
        return 0.0, 0.0, 0.0, 0
    zb = Y[inside, 2][valid]
    rel = (d[valid] - zb) / zb  # > 0: the other view sees farther: this point is in its free space
    return float(np.mean(rel > violation_rel)), float(np.mean(np.abs(rel) < agreement_rel)), n / len(X), n


def depth_consistency(depth0: np.ndarray, camera0: Camera, depth1: np.ndarray, camera1: Camera,
                      cam1_from_cam0: np.ndarray, step: int = 4, violation_rel: float = 0.05,
                      agreement_rel: float = 0.03, min_points: int = 50) -> DepthConsistency | None:
    """Free-space violation and surface agreement of two depth maps at a pose.

    Args:
        depth0, depth1: (H, W) depth in metres, NaN (or <= 0) invalid, each on its
            camera's pixel grid (lens distortion is removed first).
        camera0, camera1: the depth maps' cameras.
        cam1_from_cam0: (4, 4) the pose to test, metres.
        step: every ``step``-th pixel of each row and column is tested (4: about 19,000
            points of a 640x480 map, a few milliseconds).
        violation_rel: a point more than this fraction of its depth in front of the other
            view's surface is a violation (5 %: beyond Kinect-class noise at 4 m).
        agreement_rel: within this fraction it agrees (3 %).
        min_points: fewer points landing on the other view's valid depth, in either
            direction: None (no overlap to judge).

    Returns:
        :class:`DepthConsistency` (the worse direction of each measure), or None.
    """
    T = np.asarray(cam1_from_cam0, dtype=np.float64)
    d0, c0 = camera0.undistort_depth(depth0), camera0.pinhole  # as twoview.solvers.gicp.depth_points
    d1, c1 = camera1.undistort_depth(depth1), camera1.pinhole
    a = _one_way(d0, c0, d1, c1, T, step, violation_rel, agreement_rel)
    b = _one_way(d1, c1, d0, c0, np.linalg.inv(T), step, violation_rel, agreement_rel)
    if min(a[3], b[3]) < min_points:
        return None
    return DepthConsistency(violation=max(a[0], b[0]), agreement=min(a[1], b[1]), overlap=min(a[2], b[2]),
                            points=min(a[3], b[3]))

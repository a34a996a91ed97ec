"""Sensor depth as a measurement with its own noise, not as exact 3D points.

The 3D-3D and PnP solvers fix each match's 3D point at its depth map value. When the
depth is noisy, unregistered to the colour image, or taken at another time than it, that
pulls the rotation off what the images alone say (issue 17: the image-only essential
matrix beat every depth solver on unregistered Kinect data). :func:`refine_with_depth_noise`
refines the solver's pose by the maximum-likelihood two-view problem of
:func:`twoview.solvers.monodepth.refine_joint` with the relative scale fixed (sensor depth
is metric): one 3D point per inlier seen in both images, each depth value a prior whose
relative noise is estimated from the data (the disagreement of the two views' depths at
the matches), each pixel's noise from the epipolar errors. Accurate depth then holds the
translation and the scale and still helps the rotation; poor depth gives the scale and
leaves the bearings to the images.
"""

from __future__ import annotations

import numpy as np

from twoview.config import SolverConfig
from twoview.geometry.camera import Camera
from twoview.geometry.pose import Pose
from twoview.solvers.common import sample_depth


def refine_with_depth_noise(pose: Pose, kpts0: np.ndarray, kpts1: np.ndarray, cam0: Camera, cam1: Camera,
                            depth0: np.ndarray | None, depth1: np.ndarray | None, cfg: SolverConfig) -> tuple[Pose, dict]:
    """Refine a metric pose with the depth of its inliers as noisy priors.

    Args:
        pose: the solver's ``cam1_from_cam0`` (metres).
        kpts0, kpts1: (N, 2) inlier pixels.
        cam0, cam1: pinhole cameras; depth0, depth1: (H, W) metres (NaN invalid) or None.
        cfg: solver options (depth range, pixel threshold, the joint refinement's options in
            ``cfg.monodepth``: robust_k, sigma bounds, outlier gate, iterations).

    Returns:
        (refined pose, info with the estimated ``sigma_px`` and ``sigma_rel`` and the number
        of depth values dropped as outliers); the input pose when too few matches have depth.
    """
    from twoview.solvers.monodepth import _depth_outliers, estimate_sigmas, refine_joint

    mono = cfg.monodepth
    nan = np.full(len(kpts0), np.nan)
    d0 = sample_depth(depth0, kpts0, cfg.min_depth, cfg.max_depth) if depth0 is not None else nan
    d1 = sample_depth(depth1, kpts1, cfg.min_depth, cfg.max_depth) if depth1 is not None else nan
    if int(np.sum(np.isfinite(d0) | np.isfinite(d1))) < cfg.min_inliers:
        return pose, {"skipped": "too few matches with depth"}
    R, t = pose.R, pose.t
    spx, srel, bad = cfg.max_reproj_error, mono.sigma_rel_min, np.zeros(len(kpts0), bool)
    for _ in range(2):  # noise levels and depth outliers from the current fit, then refit
        spx, srel, _ = estimate_sigmas(R, t, 0.0, kpts0, kpts1, d0, d1, cam0, cam1, mono.sigma_rel_min,
                                       mono.sigma_rel_min, mono.sigma_rel_max, cfg.max_reproj_error)
        bad = _depth_outliers(R, t, 0.0, kpts0, kpts1, d0, d1, cam0, mono.depth_outlier_gate * srel)
        R, t, _, _ = refine_joint(R, t, 0.0, kpts0, kpts1, np.where(bad, np.nan, d0), np.where(bad, np.nan, d1),
                                  cam0, cam1, spx, srel, mono.robust_k, mono.joint_iterations, fix_scale=True)
    if not (np.all(np.isfinite(R)) and np.all(np.isfinite(t))):
        return pose, {"skipped": "the joint refinement diverged"}
    return Pose(R, t), {"sigma_px": float(spx), "sigma_rel": float(srel), "depth_outliers": int(bad.sum())}

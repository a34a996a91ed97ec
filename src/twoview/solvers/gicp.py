"""Point-level GICP between two depth maps (small_gicp), from a given pose.

Generalised ICP (Segal et al. 2009) as small_gicp implements it: each cloud is reduced to
voxel centroids, each centroid gets the covariance of its 10 nearest neighbours (what
small_gicp's ``align`` uses for arrays) flattened to a plane (eigenvalues 1e-3, 1, 1),
and the pose minimises the Mahalanobis distances of nearest-neighbour pairs under the
summed covariances. Scales come from the scene, not from a dataset: ``v`` is 4 pixel
footprints at the median depth of view 0, the coarse level runs on voxels of ``4 v`` with
pairs up to ``16 v`` apart, the fine level on ``v`` with pairs up to ``4 v``. Every valid
pixel goes into the voxels: every second one (2.4x faster) loses most of what GICP adds
after the mixtures on the simulated Kinect (``gmm_polish_study.md``).

The pipeline runs it after the Gaussian mixtures where the data show that the depth map
is a second camera's (:mod:`twoview.depth.registration`, ``reference="depth"``): the
mixtures give the basin, GICP's point-level fit the final pose in the depth camera's
frame (``benchmarks/results/gmm_polish_study.md``). The bench's ``small_gicp`` method
uses the same function.
"""

from __future__ import annotations

import numpy as np

from twoview.geometry.camera import Camera
from twoview.geometry.pose import Pose

#: (voxel size, largest pair distance) of the levels, in units of the scene voxel ``v``
LEVELS = ((4.0, 16.0), (1.0, 4.0))


def depth_points(depth: np.ndarray, camera: Camera) -> np.ndarray:
    """The valid pixels of ``depth`` (H, W) metres, NaN invalid, back-projected with
    ``camera`` (lens distortion removed first): (N, 3) metres in the camera frame."""
    d, pin = camera.undistort_depth(depth), camera.pinhole
    v, u = np.nonzero(np.isfinite(d))
    return pin.unproject(np.stack([u, v], 1).astype(np.float64), d[v, u])


def scene_voxel(depth0: np.ndarray, camera0: Camera) -> float:
    """4 pixel footprints at the median valid depth of view 0, metres (NaN: no valid depth)."""
    z = depth0[np.isfinite(depth0)]
    if z.size == 0:
        return float("nan")
    return 4.0 * float(np.median(z)) / float(np.sqrt(camera0.fx * camera0.fy))


def gicp(depth0: np.ndarray, depth1: np.ndarray, camera0: Camera, camera1: Camera,
         init: Pose, levels=LEVELS, max_iterations: int = 30, num_threads: int = 1) -> tuple[Pose | None, dict]:
    """Refine ``cam1_from_cam0`` by GICP between the two depth maps' point clouds.

    Args:
        depth0, depth1: (H, W) metres, NaN invalid.
        camera0, camera1: the depth maps' cameras.
        init: the starting ``cam1_from_cam0``.
        levels: ``(voxel, pair distance)`` per level, in scene voxels (see the module).
        max_iterations: Gauss-Newton iterations per level at most.
        num_threads: small_gicp's OpenMP threads (the result is the same to float rounding).

    Returns:
        (pose, info): ``pose`` None when GICP found no pairs or diverged (``info["why"]``);
        ``info`` has ``voxel_m``, ``converged``, ``num_inliers`` and ``error`` of the last level.
    """
    import small_gicp

    v = scene_voxel(depth0, camera0)
    info: dict = {"voxel_m": v}
    src, tgt = depth_points(depth0, camera0), depth_points(depth1, camera1)
    if not np.isfinite(v) or len(src) < 10 or len(tgt) < 10:
        info["why"] = "too little valid depth"
        return None, info
    T = init.matrix
    res = None
    for voxel, distance in levels:
        res = small_gicp.align(tgt, src, init_T_target_source=T, registration_type="GICP",
                               downsampling_resolution=voxel * v, max_correspondence_distance=distance * v,
                               num_threads=num_threads, max_iterations=max_iterations)
        T = np.asarray(res.T_target_source)
    info.update(converged=bool(res.converged), num_inliers=int(res.num_inliers), error=float(res.error))
    if res.num_inliers == 0:
        info["why"] = "GICP found no pairs"
        return None, info
    if not np.all(np.isfinite(T)):
        info["why"] = "GICP diverged"
        return None, info
    return Pose.from_matrix(T), info

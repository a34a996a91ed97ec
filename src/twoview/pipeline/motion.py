"""What kind of motion the matches show, as pycolmap's two-view geometry labels it.

- ``"general"``: parallax between the views; the pose (and with depth its scale) is
  determined.
- ``"pure_rotation"`` (pycolmap's PANORAMIC): a rotation alone explains the matches. The
  rotation is determined; without depth the translation direction is not (the images
  carry no parallax to fix it), so ``translation_observable`` is False. With depth the
  translation is measured (close to zero) and stays observable.
- ``"planar"``: one homography explains the matches but a rotation does not (a plane, or
  a zoom / crop of one image): the essential matrix is less well conditioned; the
  confidence says how much that costs.
- ``"no_motion"``: a rotation of a few hundredths of a degree explains the matches
  (a photo and a crop of it, re-encoded copies): a failure, there is no camera motion to
  report.
- ``"unknown"``: no matches to tell (the regressor, a recovery without matches).
"""

from __future__ import annotations

import numpy as np

from twoview.config import SolverConfig
from twoview.result import PoseResult

#: fraction of the inliers a model must explain within its threshold to label the motion
EXPLAINED_FRACTION = 0.9
#: a rotation below this explaining the matches is no motion (degrees)
NO_MOTION_DEG = 0.05
#: ... and with metric depth, a translation below this (metres)
NO_MOTION_M = 0.001


def classify(kpts0: np.ndarray, kpts1: np.ndarray, cam0, cam1, R: np.ndarray, threshold_px: float) -> dict:
    """Label the motion of inlier matches.

    Args:
        kpts0, kpts1: (N, 2) inlier pixels of the two pinhole cameras.
        cam0, cam1: :class:`~twoview.geometry.camera.Camera` (pinhole).
        R: (3, 3) the estimated rotation (``x1 = R x0 + t``).
        threshold_px: pixel error below which a model explains a match.

    Returns:
        dict with ``motion`` (see the module docstring), ``rotation_explained`` and
        ``homography_explained`` (fractions of the matches), ``parallax_deg`` (median
        angle between each bearing in view 1 and the rotated bearing from view 0).
    """
    import cv2

    n = len(kpts0)
    if n < 8:
        return {"motion": "unknown"}
    f0 = np.column_stack([cam0.bearings(kpts0), np.ones(n)])
    f1 = np.column_stack([cam1.bearings(kpts1), np.ones(n)])
    rf0 = f0 @ R.T
    # rotation only: where the rotated bearing of view 0 lands in image 1
    with np.errstate(divide="ignore", invalid="ignore"):
        proj = np.stack([cam1.fx * rf0[:, 0] / rf0[:, 2] + cam1.cx, cam1.fy * rf0[:, 1] / rf0[:, 2] + cam1.cy], 1)
    e_rot = np.linalg.norm(proj - kpts1, axis=1)
    rot_explained = float(np.mean(np.where(rf0[:, 2] > 0, e_rot, np.inf) < threshold_px))
    cosang = np.clip(np.einsum("ij,ij->i", rf0, f1) / (np.linalg.norm(rf0, axis=1) * np.linalg.norm(f1, axis=1)), -1, 1)
    parallax = float(np.degrees(np.median(np.arccos(cosang))))
    H, mask = cv2.findHomography(kpts0.astype(np.float64), kpts1.astype(np.float64), cv2.RANSAC, threshold_px, maxIters=2000,
                                 confidence=0.999)
    h_explained = float(mask.mean()) if H is not None and mask is not None else 0.0
    angle = float(np.degrees(np.arccos(np.clip((np.trace(R) - 1) / 2, -1, 1))))
    if rot_explained >= EXPLAINED_FRACTION:
        motion = "no_motion" if angle < NO_MOTION_DEG else "pure_rotation"
    elif h_explained >= EXPLAINED_FRACTION:
        motion = "planar"
    else:
        motion = "general"
    return {"motion": motion, "rotation_explained": rot_explained, "homography_explained": h_explained,
            "parallax_deg": parallax, "rotation_deg": angle}


def label_motion(result: PoseResult, view0, view1, solver: SolverConfig, run=None) -> PoseResult:
    """Set ``result.motion`` and ``result.translation_observable`` from its inlier
    matches; a failure for no motion. Results without matches are "unknown"."""
    if not result.success:
        return result
    T = result.cam1_from_cam0
    angle = float(np.degrees(np.linalg.norm(T.rotvec())))
    if result.metric and angle < NO_MOTION_DEG and float(np.linalg.norm(T.t)) < NO_MOTION_M:
        # a metric pose of no motion (e.g. a registration without matches of the same view
        # twice) is never reported as an estimate
        return PoseResult.failure(
            f"no camera motion: the {result.solver} pose moves {1000 * float(np.linalg.norm(T.t)):.2f} mm and turns "
            f"{angle:.3f} deg (the same view twice)", solver=result.solver, num_matches=result.num_matches,
            matches=result.matches, inliers=result.inliers, info={**result.info, "no_motion": True})
    m, inl = result.matches, result.inliers
    if m is None or inl is None or int(np.sum(inl)) < 8:
        result.motion = "unknown"
        return result
    cam0, cam1 = view0.camera.pinhole, view1.camera.pinhole
    thr = 2.0 * solver.max_epipolar_error * m.noise_scale
    lab = classify(m.kpts0[inl], m.kpts1[inl], cam0, cam1, result.cam1_from_cam0.R, thr)
    result.motion = lab["motion"]
    result.info["motion"] = lab
    if run is not None:
        run.note("motion", **lab)
    if result.motion == "no_motion" and not result.metric:
        return PoseResult.failure(
            f"no camera motion: a rotation of {lab['rotation_deg']:.3f} deg explains {100 * lab['rotation_explained']:.0f} % "
            "of the matches (the same view, re-encoded or cropped)", solver=result.solver,
            num_matches=result.num_matches, matches=m, inliers=inl, info=result.info)
    if result.motion == "pure_rotation" and not result.metric:
        result.translation_observable = False
    return result

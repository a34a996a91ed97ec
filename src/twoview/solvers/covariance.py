"""First-order covariance of a two-view pose from its inlier residuals.

The pose is perturbed as ``R = Exp(w) @ R_hat``, ``t = t_hat + dt`` (rotation in radians,
in camera 1's frame; translation in the pose's units), and the covariance of
``(w, dt)`` is ``sigma^2 (J^T J)^-1``, with J the Jacobian of the residuals the solver
minimised and ``sigma^2`` their variance estimated from the inliers themselves
(Gauss-Newton / Cramer-Rao at the estimate, as bundle adjusters report it):

- depth in view 0 (PnP, rigid3d): reprojection of camera-0 points into image 1;
- depth in view 1 (PnP, rigid3d): reprojection of camera-1 points into image 0;
- no depth (essential): the Sampson error, with the translation a unit vector (2 DoF), so
  the covariance has rank 5 and no variance along ``t``. When depth then gave the scale,
  the spread of the per-point scale ratios adds the variance along ``t``.

It counts the keypoint noise the residuals show, including what depth noise turns into
reprojection error; not errors shared by all points (a wrong focal length, one depth
map's global scale), which no residual reveals.
"""

from __future__ import annotations

import numpy as np

from twoview.geometry.camera import Camera
from twoview.geometry.pose import Pose
from twoview.geometry.rotation import so3_exp
from twoview.solvers.common import sampson_px, two_sided_reprojection

#: Finite-difference step of the Jacobian (radians, pose units): residuals are smooth and
#: float64, so central differences at this step match the analytic Jacobian to ~1e-8.
_STEP = 1e-6


def pose_covariance(
    pose: Pose,
    kpts0: np.ndarray,
    kpts1: np.ndarray,
    cam0: Camera,
    cam1: Camera,
    z0: np.ndarray | None = None,
    z1: np.ndarray | None = None,
    depth_scale: tuple[float, float, int] | None = None,
    inlier_threshold: float | None = None,
) -> tuple[np.ndarray | None, str]:
    """Covariance of ``cam1_from_cam0`` from its inlier matches.

    Args:
        pose: the estimate ``cam1_from_cam0``; a unit-norm ``t`` when no depth is given.
        kpts0, kpts1: (N, 2) inlier pixels (undistorted: the cameras are pinholes).
        z0, z1: (N,) depth of each inlier in view 0 / view 1, NaN where missing; None
            when that view's depth was not used.
        depth_scale: ``(scale, relative spread, count)`` when depth turned the
            direction-only ``pose`` into ``pose.scaled(scale)`` (``scale_from_depth``'s
            scale, MAD / median of its ratios and their number): the covariance is then
            that of the scaled pose.
        inlier_threshold: the solver's inlier threshold on these residuals (pixels):
            inliers are a truncated sample, whose spread understates the noise; the
            noise is estimated from the truncated second moment instead.

    Returns:
        ``(cov, note)``: (6, 6) covariance of ``(w, dt)``, or None with the reason in
        ``note`` (too few residuals, a degenerate configuration).
    """
    kpts0 = np.asarray(kpts0, dtype=np.float64)
    kpts1 = np.asarray(kpts1, dtype=np.float64)
    ok0 = np.isfinite(z0) if z0 is not None else np.zeros(len(kpts0), bool)
    ok1 = np.isfinite(z1) if z1 is not None else np.zeros(len(kpts0), bool)
    with_depth = z0 is not None or z1 is not None
    if with_depth:
        if not (ok0.any() or ok1.any()):
            return None, "no inlier has valid depth"
        X0 = cam0.unproject(kpts0[ok0], np.asarray(z0)[ok0]) if ok0.any() else np.zeros((0, 3))
        X1 = cam1.unproject(kpts1[ok1], np.asarray(z1)[ok1]) if ok1.any() else np.zeros((0, 3))
        u1, u0 = kpts1[ok0], kpts0[ok1]

        def residuals(R, t):
            e1, e0 = two_sided_reprojection(R, t, X0, u1, X1, u0, cam0, cam1)
            return np.concatenate([e1.ravel(), e0.ravel()])

        # A match with depth in both views gives two residuals made of the same two
        # keypoints' noise (each keypoint enters one directly and the other through its
        # 3D point): nearly one measurement, so each half counts half.
        shared = np.where(ok0 & ok1, 0.5, 1.0)
        w = np.concatenate([np.repeat(shared[ok0], 2), np.repeat(shared[ok1], 2)])
        basis = np.eye(3)
    else:
        t_norm = float(np.linalg.norm(pose.t))
        if not t_norm > 0:
            return None, "zero translation: no epipolar geometry"
        basis = _tangent_basis(pose.t / t_norm)

        def residuals(R, t):
            return sampson_px(R, t / np.linalg.norm(t), kpts0, kpts1, cam0, cam1, signed=True)

        w = np.ones(len(kpts0))

    def params_to_pose(p):
        return so3_exp(p[:3]) @ pose.R, pose.t + basis @ p[3:]

    dof = 3 + basis.shape[1]
    r0 = residuals(pose.R, pose.t)
    m = len(r0)
    if w.sum() < 2 * dof:
        return None, f"{m} residuals for {dof} unknowns: too few to estimate the noise"
    J = np.empty((m, dof))
    for k in range(dof):
        d = np.zeros(dof)
        d[k] = _STEP
        J[:, k] = (residuals(*params_to_pose(d)) - residuals(*params_to_pose(-d))) / (2 * _STEP)
    sigma2 = float(w @ r0**2) / (w.sum() - dof)
    if inlier_threshold is not None:
        per_point = 2 if with_depth else 1
        sigma2 *= _truncation_factor(r0.reshape(-1, per_point), inlier_threshold)
    H = J.T @ (w[:, None] * J)
    # Scale the columns before inverting: rotation and translation units differ by orders.
    s = np.sqrt(np.diag(H))
    if not np.all(s > 0):
        return None, "a pose parameter does not change any residual (degenerate configuration)"
    Hn = H / np.outer(s, s)
    if np.linalg.cond(Hn) > 1e12:
        return None, "degenerate configuration (the residuals do not constrain every pose parameter)"
    cov_p = sigma2 * np.linalg.inv(Hn) / np.outer(s, s)
    A = np.zeros((6, dof))
    A[:3, :3] = np.eye(3)
    A[3:, 3:] = basis
    cov = A @ cov_p @ A.T
    if depth_scale is not None:
        scale, spread, count = depth_scale
        S = np.diag([1.0, 1.0, 1.0, scale, scale, scale])
        cov = S @ cov @ S
        # Standard error of the median scale: 1.4826 MAD x sqrt(pi / 2 / n), along t.
        rel = 1.4826 * spread * np.sqrt(np.pi / 2.0 / max(count, 1))
        u = pose.t / np.linalg.norm(pose.t)
        cov[3:, 3:] += (rel * scale) ** 2 * np.outer(u, u)
    return 0.5 * (cov + cov.T), ""


def sigmas(cov: np.ndarray, t: np.ndarray) -> dict[str, float]:
    """Summary of a (6, 6) pose covariance: RMS rotation error (deg), RMS translation
    error (pose units) and RMS translation direction error (deg)."""
    rot = float(np.degrees(np.sqrt(max(np.trace(cov[:3, :3]), 0.0))))
    trans = float(np.sqrt(max(np.trace(cov[3:, 3:]), 0.0)))
    n = float(np.linalg.norm(t))
    if n > 0:
        P = np.eye(3) - np.outer(t, t) / n**2  # only the part across t turns the direction
        direction = float(np.degrees(np.sqrt(max(np.trace(P @ cov[3:, 3:] @ P), 0.0)) / n))
    else:
        direction = float("inf")
    return {"rotation_sigma_deg": rot, "translation_sigma": trans, "translation_direction_sigma_deg": direction}


def _truncation_factor(r: np.ndarray, threshold: float) -> float:
    """``sigma^2 / s^2`` for Gaussian residuals of dimension ``k`` (rows of ``r``) kept
    only when their norm is under ``threshold``, ``s^2`` the kept ones' mean square per
    dimension: solves E[|r|^2 | |r| < threshold] = observed, by bisection."""
    from math import erf, exp, pi, sqrt

    k = r.shape[1]
    q = np.sum(r**2, axis=1)
    observed = float(np.mean(np.minimum(q, threshold**2)))
    if not observed > 0:
        return 1.0
    tau2 = threshold**2

    def truncated_mean(s2):  # E[|r|^2 | |r|^2 < tau2] for r ~ N(0, s2 I_k), k = 1 or 2
        if k == 2:
            a = tau2 / (2 * s2)
            return 2 * s2 * (1 - a * exp(-a) / -np.expm1(-a)) if a < 700 else 2 * s2
        c = sqrt(tau2 / s2)
        return s2 * (1 - 2 * c * exp(-c * c / 2) / sqrt(2 * pi) / erf(c / sqrt(2)))

    # The truncated mean grows with s2 towards tau2 / 2 (k = 2) or tau2 / 3 (k = 1); past
    # 95 % of that the residuals fill the gate and the noise is not identifiable: cap there.
    limit = 0.95 * tau2 / (2 if k == 2 else 3)
    lo, hi = observed / k, observed / k
    while truncated_mean(hi) < min(observed, limit) and hi < 1e6 * tau2:
        hi *= 2
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if truncated_mean(mid) < min(observed, limit) else (lo, mid)
    return max(hi / (observed / k), 1.0)


def _tangent_basis(u: np.ndarray) -> np.ndarray:
    """(3, 2) orthonormal basis of the plane orthogonal to the unit vector ``u``."""
    a = np.eye(3)[np.argmin(np.abs(u))]
    b1 = np.cross(u, a)
    b1 /= np.linalg.norm(b1)
    return np.stack([b1, np.cross(u, b1)], axis=1)

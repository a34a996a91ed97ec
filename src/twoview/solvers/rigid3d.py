"""Metric relative pose from two depth maps: 3D-3D RANSAC plus two-sided reprojection refinement."""

from __future__ import annotations

import numpy as np
from scipy.optimize import least_squares

from twoview.config import SolverConfig
from twoview.geometry.camera import Camera
from twoview.geometry.pose import Pose
from twoview.geometry.rotation import so3_exp
from twoview.solvers.common import SolverOutput, sample_depth


def kabsch(X0: np.ndarray, X1: np.ndarray, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares rigid transform with ``X1 ≈ R @ X0 + t`` (no scale).

    Batched: X0, X1 are (..., N, 3), weights (..., N). Returns R (..., 3, 3), t (..., 3).
    """
    X0 = np.asarray(X0, dtype=np.float64)
    X1 = np.asarray(X1, dtype=np.float64)
    w = np.ones(X0.shape[:-1]) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w / np.maximum(w.sum(axis=-1, keepdims=True), 1e-300)
    c0 = np.einsum("...n,...nk->...k", w, X0)
    c1 = np.einsum("...n,...nk->...k", w, X1)
    H = np.einsum("...n,...ni,...nj->...ij", w, X0 - c0[..., None, :], X1 - c1[..., None, :])
    U, _, Vt = np.linalg.svd(H)
    d = np.sign(np.linalg.det(np.swapaxes(Vt, -1, -2) @ np.swapaxes(U, -1, -2)))
    D = np.zeros(H.shape)
    D[..., 0, 0] = 1
    D[..., 1, 1] = 1
    D[..., 2, 2] = np.where(d == 0, 1, d)
    R = np.swapaxes(Vt, -1, -2) @ D @ np.swapaxes(U, -1, -2)
    t = c1 - np.einsum("...ij,...j->...i", R, c0)
    return R, t


def _ransac_rigid(X0, X1, tol, cfg: SolverConfig, rng):
    """MSAC over 3-point Kabsch hypotheses, with local optimisation on the best model."""
    n = len(X0)
    best_cost, best_R, best_t = np.inf, None, None
    tol2 = tol**2
    max_iter = cfg.max_iterations
    done, batch = 0, 256
    while done < max_iter:
        idx = np.stack([rng.choice(n, 3, replace=False) for _ in range(batch)])
        R, t = kabsch(X0[idx], X1[idx])
        res = np.einsum("bij,nj->bni", R, X0) + t[:, None, :] - X1[None]
        r2 = np.einsum("bni,bni->bn", res, res)
        cost = np.minimum(r2 / tol2, 1.0).sum(axis=1)  # MSAC: truncated quadratic
        b = int(np.argmin(cost))
        done += batch
        if cost[b] < best_cost:
            best_cost, best_R, best_t = cost[b], R[b], t[b]
            # local optimisation: refit on the inliers a few times
            for _ in range(3):
                r = np.sum((X0 @ best_R.T + best_t - X1) ** 2, axis=1)
                inl = r < tol2
                if inl.sum() < 3:
                    break
                R2, t2 = kabsch(X0[inl], X1[inl])
                c2 = np.minimum(np.sum((X0 @ R2.T + t2 - X1) ** 2, axis=1) / tol2, 1.0).sum()
                if c2 >= best_cost:
                    break
                best_cost, best_R, best_t = c2, R2, t2
        inl_ratio = float(np.mean(np.sum((X0 @ best_R.T + best_t - X1) ** 2, axis=1) < tol2))
        if done >= cfg.min_iterations and inl_ratio > 0:
            needed = np.log(1 - cfg.success_prob) / np.log(max(1 - inl_ratio**3, 1e-12))
            if done >= needed:
                break
    return best_R, best_t, done


def _reprojection(R, t, X0, u1, X1, u0, cam0: Camera, cam1: Camera):
    """Per-point reprojection error vectors of X0 in image 1 and X1 in image 0."""
    P1 = X0 @ R.T + t
    P0 = (X1 - t) @ R  # R.T @ (X1 - t)
    with np.errstate(divide="ignore", invalid="ignore"):
        e1 = cam1.project(P1) - u1 if len(X0) else np.zeros((0, 2))
        e0 = cam0.project(P0) - u0 if len(X1) else np.zeros((0, 2))
    e1[~(P1[:, 2] > 1e-6)] = 1e6 if len(X0) else 0
    e0[~(P0[:, 2] > 1e-6)] = 1e6 if len(X1) else 0
    return e1, e0


def solve_rigid3d(
    kpts0: np.ndarray,
    kpts1: np.ndarray,
    cam0: Camera,
    cam1: Camera,
    depth0: np.ndarray,
    depth1: np.ndarray,
    cfg: SolverConfig | None = None,
) -> SolverOutput:
    """Pose from matches with depth in both views.

    1. 3-point Kabsch MSAC on matches with depth in both views (threshold relative to depth).
    2. Refinement of the reprojection error of view-0 points in image 1 and of view-1
       points in image 0 (Huber loss), using every match with depth in either view:
       image positions are far more precise than depth-sensor values.

    Returns:
        metric ``cam1_from_cam0``; inliers are matches whose reprojection error is below
        ``cfg.max_reproj_error`` in every image where it can be measured.
    """
    cfg = cfg or SolverConfig()
    n = len(kpts0)
    z0 = sample_depth(depth0, kpts0, cfg.min_depth, cfg.max_depth)
    z1 = sample_depth(depth1, kpts1, cfg.min_depth, cfg.max_depth)
    v0, v1 = np.isfinite(z0), np.isfinite(z1)
    both = v0 & v1
    nboth = int(both.sum())
    if nboth < max(cfg.min_inliers, 3):
        return SolverOutput(
            None, np.zeros(n, bool), False, f"rigid3d: only {nboth} matches have valid depth in both views (need {cfg.min_inliers})"
        )
    X0 = cam0.unproject(kpts0[v0], z0[v0])
    X1 = cam1.unproject(kpts1[v1], z1[v1])
    X0_all = np.full((n, 3), np.nan)
    X1_all = np.full((n, 3), np.nan)
    X0_all[v0], X1_all[v1] = X0, X1

    # Threshold: relative to depth, since depth-sensor noise grows with distance.
    zmean = 0.5 * (z0[both] + z1[both])
    tol = cfg.max_3d_error_rel * float(np.median(zmean))
    rng = np.random.default_rng(cfg.seed)
    R, t, iters = _ransac_rigid(X0_all[both], X1_all[both], tol, cfg, rng)
    r3 = np.linalg.norm(X0_all[both] @ R.T + t - X1_all[both], axis=1)
    n3 = int((r3 < tol).sum())
    if n3 < cfg.min_inliers:
        return SolverOutput(None, np.zeros(n, bool), False, f"rigid3d: only {n3} 3D-3D inliers (need {cfg.min_inliers})")

    # Two-sided reprojection refinement, re-selecting inliers once.
    pose = Pose(R, t)
    thr = cfg.max_reproj_error
    for _ in range(2):
        e1, e0 = _reprojection(pose.R, pose.t, X0_all[v0], kpts1[v0], X1_all[v1], kpts0[v1], cam0, cam1)
        keep0 = np.linalg.norm(e1, axis=1) < 3 * thr
        keep1 = np.linalg.norm(e0, axis=1) < 3 * thr
        A0, a1 = X0_all[v0][keep0], kpts1[v0][keep0]
        A1, a0 = X1_all[v1][keep1], kpts0[v1][keep1]
        if len(A0) + len(A1) < cfg.min_inliers:
            break
        R0, t0 = pose.R, pose.t

        def residuals(xi):
            Rx = so3_exp(xi[:3]) @ R0
            tx = t0 + xi[3:]
            f1, f0 = _reprojection(Rx, tx, A0, a1, A1, a0, cam0, cam1)
            return np.concatenate([f1.ravel(), f0.ravel()])

        sol = least_squares(residuals, np.zeros(6), loss="huber", f_scale=thr / 2, method="trf", x_scale="jac", max_nfev=50)
        pose = Pose(so3_exp(sol.x[:3]) @ R0, t0 + sol.x[3:])

    e1, e0 = _reprojection(pose.R, pose.t, X0_all[v0], kpts1[v0], X1_all[v1], kpts0[v1], cam0, cam1)
    ok = np.ones(n, bool)
    ok[~(v0 | v1)] = False
    bad0 = np.zeros(n, bool)
    bad0[np.flatnonzero(v0)] = np.linalg.norm(e1, axis=1) >= thr
    bad1 = np.zeros(n, bool)
    bad1[np.flatnonzero(v1)] = np.linalg.norm(e0, axis=1) >= thr
    inliers = ok & ~bad0 & ~bad1
    nin = int(inliers.sum())
    if nin < cfg.min_inliers:
        return SolverOutput(None, inliers, False, f"rigid3d: only {nin} inliers after refinement (need {cfg.min_inliers})")
    return SolverOutput(
        pose, inliers, True,
        info={"iterations": iters, "num_with_depth_both": nboth, "ransac_inliers_3d": n3, "tol_3d_m": tol},
    )

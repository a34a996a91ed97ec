"""Metric relative pose from two depth maps: 3D-3D RANSAC plus two-sided reprojection refinement."""

from __future__ import annotations

import time

import numpy as np

from twoview.config import SolverConfig
from twoview.geometry.camera import Camera
from twoview.geometry.pose import Pose
from twoview.geometry.rotation import so3_exp
from twoview.solvers.common import SolverOutput, sample_depth, two_sided_reprojection


def kabsch(X0: np.ndarray, X1: np.ndarray, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares rigid transform with ``X1 ≈ R @ X0 + t`` (no scale).

    Batched: X0, X1 are (..., N, 3), weights (..., N). Returns R (..., 3, 3), t (..., 3).
    """
    X0 = np.asarray(X0, dtype=np.float64)
    X1 = np.asarray(X1, dtype=np.float64)
    w = np.ones(X0.shape[:-1]) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w / np.maximum(w.sum(axis=-1, keepdims=True), 1e-300)
    c0 = (w[..., None] * X0).sum(axis=-2)
    c1 = (w[..., None] * X1).sum(axis=-2)
    H = np.swapaxes(w[..., None] * (X0 - c0[..., None, :]), -1, -2) @ (X1 - c1[..., None, :])
    U, _, Vt = np.linalg.svd(H)
    d = np.sign(np.linalg.det(np.swapaxes(Vt, -1, -2) @ np.swapaxes(U, -1, -2)))
    D = np.zeros(H.shape)
    D[..., 0, 0] = 1
    D[..., 1, 1] = 1
    D[..., 2, 2] = np.where(d == 0, 1, d)
    R = np.swapaxes(Vt, -1, -2) @ D @ np.swapaxes(U, -1, -2)
    t = c1 - (R @ c0[..., None])[..., 0]
    return R, t


def _sample_triplets(rng: np.random.Generator, n: int, b: int) -> np.ndarray:
    """``b`` uniform samples of 3 distinct indices in ``range(n)``: (b, 3) int64."""
    i = rng.integers(0, n, b)
    j = rng.integers(0, n - 1, b)
    j += j >= i
    k = rng.integers(0, n - 2, b)
    lo, hi = np.minimum(i, j), np.maximum(i, j)
    k += k >= lo
    k += k >= hi
    return np.stack([i, j, k], axis=1)


def _ransac_rigid(X0, X1, tol, cfg: SolverConfig, rng):
    """MSAC over 3-point Kabsch hypotheses, with local optimisation on the best model.

    Hypotheses are scored in batches (the first of ``min_iterations``), stopping as soon
    as the usual RANSAC bound for ``success_prob`` is met.
    """
    n = len(X0)
    best_cost, best_R, best_t = np.inf, None, None
    tol2 = tol**2
    max_iter = cfg.max_iterations
    done = 0
    X0T = X0.T

    def cost_of(R, t):
        r = X0 @ R.T + t - X1
        return np.minimum(np.einsum("ij,ij->i", r, r) / tol2, 1.0)

    while done < max_iter:
        batch = min(max(cfg.min_iterations, 32) if done == 0 else 256, max_iter - done)
        idx = _sample_triplets(rng, n, batch)
        R, t = kabsch(X0[idx], X1[idx])
        res = np.matmul(R, X0T) + (t[:, :, None] - X1.T[None])  # (b, 3, n)
        r2 = (res * res).sum(axis=1)
        cost = np.minimum(r2 / tol2, 1.0).sum(axis=1)  # MSAC: truncated quadratic
        b = int(np.argmin(cost))
        done += batch
        if cost[b] < best_cost:
            best_cost, best_R, best_t = cost[b], R[b], t[b]
            # local optimisation: refit on the inliers a few times
            for _ in range(3):
                inl = cost_of(best_R, best_t) < 1.0
                if inl.sum() < 3:
                    break
                R2, t2 = kabsch(X0[inl], X1[inl])
                c2 = cost_of(R2, t2).sum()
                if c2 >= best_cost:
                    break
                best_cost, best_R, best_t = c2, R2, t2
        inl_ratio = float(np.mean(cost_of(best_R, best_t) < 1.0))
        if done >= cfg.min_iterations and inl_ratio > 0:
            needed = np.log(1 - cfg.success_prob) / np.log(max(1 - inl_ratio**3, 1e-12))
            if done >= needed:
                break
    return best_R, best_t, done


def _jacobian_rows(P: np.ndarray, cam: Camera) -> tuple[np.ndarray, np.ndarray]:
    """Rows d(u)/d(P) and d(v)/d(P) of the pinhole projection at points P: (N, 3) each."""
    iz = 1.0 / P[:, 2]
    zero = np.zeros(len(P))
    jx = np.stack([cam.fx * iz, zero, -cam.fx * P[:, 0] * iz * iz], axis=1)
    jy = np.stack([zero, cam.fy * iz, -cam.fy * P[:, 1] * iz * iz], axis=1)
    return jx, jy


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cross product of (N, 3) arrays (np.cross has a large per-call overhead)."""
    return np.stack([a[:, 1] * b[:, 2] - a[:, 2] * b[:, 1], a[:, 2] * b[:, 0] - a[:, 0] * b[:, 2],
                     a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]], axis=1)


def _huber_cost(e: np.ndarray, k: float) -> float:
    r = np.abs(e).ravel()
    return float(np.where(r <= k, r * r, 2 * k * r - k * k).sum())


def _refine_two_sided(R, t, A0, a1, A1, a0, cam0: Camera, cam1: Camera, k: float, max_iter: int = 20):
    """Gauss-Newton (IRLS, Huber of width ``k`` pixels on each error component) of the
    reprojection of view-0 points ``A0`` into image 1 (at ``a1``) and of view-1 points
    ``A1`` into image 0 (at ``a0``), over ``R <- exp(w) R``, ``t <- t + dt``.

    Analytic Jacobians: with ``q = R A0``, ``P1 = q + t`` gives ``dP1/dw = -[q]x`` and
    ``dP1/dt = I``; with ``y = A1 - t``, ``P0 = R^T y`` gives ``dP0/dw = R^T [y]x`` and
    ``dP0/dt = -R^T``. Each step is accepted only if it lowers the robust cost (halved
    otherwise).
    """

    def cost(R, t):
        e1, e0 = two_sided_reprojection(R, t, A0, a1, A1, a0, cam0, cam1)
        return _huber_cost(e1, k) + _huber_cost(e0, k), e1, e0

    c, e1, e0 = cost(R, t)
    for _ in range(max_iter):
        q = A0 @ R.T
        y = A1 - t
        # a^T [v]x = (a x v)^T turns every "row times skew matrix" into a cross product
        jx1, jy1 = _jacobian_rows(q + t, cam1)
        jx0, jy0 = (j @ R.T for j in _jacobian_rows(y @ R, cam0))  # rows of Jp R^T
        J = np.concatenate([
            np.concatenate([-_cross(jx1, q), jx1], axis=1), np.concatenate([-_cross(jy1, q), jy1], axis=1),
            np.concatenate([_cross(jx0, y), -jx0], axis=1), np.concatenate([_cross(jy0, y), -jy0], axis=1),
        ])  # (2 * (m0 + m1), 6): x rows then y rows, view 0 points first
        e = np.concatenate([e1[:, 0], e1[:, 1], e0[:, 0], e0[:, 1]])
        a = np.abs(e)
        w = np.where(a <= k, 1.0, k / np.maximum(a, 1e-300)) * (a < 1e5)
        Jw = J * w[:, None]
        H = Jw.T @ J
        g = Jw.T @ e
        try:
            delta = -np.linalg.solve(H + 1e-9 * np.trace(H) * np.eye(6), g)
        except np.linalg.LinAlgError:
            break
        for _ in range(8):
            Rn, tn = so3_exp(delta[:3]) @ R, t + delta[3:]
            cn, e1n, e0n = cost(Rn, tn)
            if cn <= c:
                break
            delta = delta / 2
        else:
            break
        converged = (c - cn) <= 1e-6 * c or np.linalg.norm(delta) < 1e-12
        R, t, c, e1, e0 = Rn, tn, cn, e1n, e0n
        if converged:
            break
    return R, t


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

    1. 3-point Kabsch MSAC on matches with depth in both views (threshold relative to
       depth), local optimisation by refitting on the inliers. (PoseLib has no 3D-3D
       estimator, hence numpy.)
    2. Refinement of the reprojection error of view-0 points in image 1 and of view-1
       points in image 0 (Gauss-Newton, Huber loss of half ``max_reproj_error`` on each
       pixel coordinate), using every match with depth in either view: image positions
       are far more precise than depth-sensor values. Inliers are re-selected once and
       refined again.

    ``info`` gives the RANSAC iterations and the time of both stages (``ransac_ms``,
    ``refine_ms``).

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
    t_ransac = time.perf_counter()
    R, t, iters = _ransac_rigid(X0_all[both], X1_all[both], tol, cfg, rng)
    t_refine = time.perf_counter()
    r3 = np.linalg.norm(X0_all[both] @ R.T + t - X1_all[both], axis=1)
    n3 = int((r3 < tol).sum())
    if n3 < cfg.min_inliers:
        return SolverOutput(None, np.zeros(n, bool), False, f"rigid3d: only {n3} 3D-3D inliers (need {cfg.min_inliers})")

    # Two-sided reprojection refinement, re-selecting inliers once.
    pose = Pose(R, t)
    thr = cfg.max_reproj_error
    for _ in range(2):
        e1, e0 = two_sided_reprojection(pose.R, pose.t, X0_all[v0], kpts1[v0], X1_all[v1], kpts0[v1], cam0, cam1)
        keep0 = np.linalg.norm(e1, axis=1) < 3 * thr
        keep1 = np.linalg.norm(e0, axis=1) < 3 * thr
        A0, a1 = X0_all[v0][keep0], kpts1[v0][keep0]
        A1, a0 = X1_all[v1][keep1], kpts0[v1][keep1]
        if len(A0) + len(A1) < cfg.min_inliers:
            break
        Rr, tr = _refine_two_sided(pose.R, pose.t, A0, a1, A1, a0, cam0, cam1, thr / 2)
        pose = Pose(Rr, tr)

    e1, e0 = two_sided_reprojection(pose.R, pose.t, X0_all[v0], kpts1[v0], X1_all[v1], kpts0[v1], cam0, cam1)
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
        info={"iterations": iters, "num_with_depth_both": nboth, "ransac_inliers_3d": n3, "tol_3d_m": tol,
              "ransac_ms": (t_refine - t_ransac) * 1e3, "refine_ms": (time.perf_counter() - t_refine) * 1e3},
        depths=(z0, z1),
    )

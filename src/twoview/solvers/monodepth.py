"""Metric relative pose from two *monocular* depth maps that disagree in scale.

Monocular metric depth is right on average but each map carries its own scale error
(often 5-20%) and a smooth distortion. Fitting a rigid transform to such points (as
:func:`~twoview.solvers.rigid3d.solve_rigid3d` does for sensor depth) or trusting one map
(PnP) puts those errors straight into the pose. Following MADPose (Yu et al., 2025) and
PoseLib's monodepth estimators, the pose is estimated together with a *relative scale*
between the two depth maps:

1. Back-project matches with reliable depth (``sample_depth`` rejects depth edges) in
   both views: ``P0 = d0 * K0^-1 u0``, ``P1 = d1 * K1^-1 u1``.
2. LO-MSAC over 3-point similarity hypotheses ``P1 ≈ s R P0 + t'`` (Umeyama), scored by
   the 3D residual relative to depth plus a loose epipolar (Sampson) gate.
3. Nonlinear refinement of ``(R, t, log s)`` on the inliers with residuals in pixels:
   the Sampson error of every inlier (independent of depth, fixes rotation and the
   translation direction) and the reprojection errors of the depth points in the other
   image, each down-weighted by how much a ``depth_sigma_rel`` depth error would move
   it (fixes the translation length and the relative scale).
4. Joint refinement (``MonodepthConfig.joint_refinement``, :func:`refine_joint`): the
   maximum-likelihood problem with one 3D point per match seen in both images and each
   depth value as a log-depth prior, ``(R, t, log s, X_1..X_N)`` by Levenberg-Marquardt
   with the points eliminated (Schur complement), Huber losses. Pixel noise and the
   relative depth noise are estimated from the data (:func:`estimate_sigmas`: Sampson
   errors; disagreement of the two scale-corrected maps), so accurate depth is trusted
   for the direction too and poor depth mostly gives the scale. Depth that disagreed
   with the other view in step 3 is dropped (the match keeps its image terms); matches
   without depth enter through their Sampson error.

Metric scale: the two maps are corrected by ``a0 = sqrt(s)``, ``a1 = 1/sqrt(s)``, so
their geometric-mean scale is kept: the metric scale comes from the depth maps' mean,
the relative scale from the geometry. The maps' shared scale error cannot be seen in
the photos, so the translation length is off by about that factor whatever the solver
(``benchmarks/results/monodepth.md`` measures this floor).
"""

from __future__ import annotations

import numpy as np

from twoview.config import MonodepthConfig, SolverConfig
from twoview.errors import InputError
from twoview.geometry.camera import Camera
from twoview.geometry.pose import Pose
from twoview.geometry.rotation import hat, so3_exp
from twoview.solvers.common import SolverOutput, hat_batch, sample_depth, sampson_px


def umeyama(X0: np.ndarray, X1: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares similarity ``X1 ≈ s R X0 + t`` (Umeyama 1991), batched.

    Args:
        X0, X1: (..., N, 3) corresponding points, N >= 3.

    Returns:
        s (...,), R (..., 3, 3), t (..., 3).
    """
    X0 = np.asarray(X0, dtype=np.float64)
    X1 = np.asarray(X1, dtype=np.float64)
    c0 = X0.mean(axis=-2)
    c1 = X1.mean(axis=-2)
    A = X0 - c0[..., None, :]
    B = X1 - c1[..., None, :]
    n = X0.shape[-2]
    H = np.einsum("...ni,...nj->...ij", A, B) / n  # cov(X0, X1)
    U, S, Vt = np.linalg.svd(H)
    d = np.sign(np.linalg.det(np.swapaxes(Vt, -1, -2) @ np.swapaxes(U, -1, -2)))
    d = np.where(d == 0, 1.0, d)
    D = np.zeros(H.shape)
    D[..., 0, 0] = 1
    D[..., 1, 1] = 1
    D[..., 2, 2] = d
    R = np.swapaxes(Vt, -1, -2) @ D @ np.swapaxes(U, -1, -2)
    var0 = np.einsum("...ni,...ni->...", A, A) / n
    trace = S[..., 0] + S[..., 1] + d * S[..., 2]
    s = trace / np.maximum(var0, 1e-300)
    t = c1 - s[..., None] * np.einsum("...ij,...j->...i", R, c0)
    return s, R, t


def _ransac_sim3(P0, P1, u0, u1, cam0, cam1, cfg: SolverConfig, mcfg: MonodepthConfig, rng):
    """LO-MSAC over 3-point similarities; returns (s, R, t, iterations) or None."""
    n = len(P0)
    tau = mcfg.ransac_3d_error_rel
    gate = mcfg.epipolar_gate * cfg.max_reproj_error
    z1 = P1[:, 2]
    smax = mcfg.max_relative_scale

    def cost_and_inliers(s, R, t):
        # s (B,), R (B,3,3), t (B,3) -> cost (B,), inliers (B, N)
        pred = s[:, None, None] * np.einsum("bij,nj->bni", R, P0) + t[:, None, :]
        r = np.linalg.norm(pred - P1[None], axis=2) / z1[None]
        ep = sampson_px(R, t, u0, u1, cam0, cam1)
        r2 = (r / tau) ** 2 + (ep / gate) ** 2
        inl = (r < tau) & (ep < gate)
        cost = np.minimum(r2, 1.0).sum(axis=1)
        bad = ~((s > 1 / smax) & (s < smax))
        cost[bad] = np.inf
        inl[bad] = False
        return cost, inl

    best = (np.inf, None, None, None)
    done, batch = 0, 128
    while done < cfg.max_iterations:
        idx = np.stack([rng.choice(n, 3, replace=False) for _ in range(batch)])
        s, R, t = umeyama(P0[idx], P1[idx])
        cost, inl = cost_and_inliers(s, R, t)
        b = int(np.argmin(cost))
        done += batch
        if cost[b] < best[0]:
            best = (cost[b], s[b], R[b], t[b])
            mask = inl[b]
            for _ in range(3):  # local optimisation: refit on the inliers
                if mask.sum() < 3:
                    break
                s2, R2, t2 = umeyama(P0[mask], P1[mask])
                c2, inl2 = cost_and_inliers(np.array([s2]), R2[None], t2[None])
                if not c2[0] < best[0]:
                    break
                best = (c2[0], s2, R2, t2)
                mask = inl2[0]
        if best[1] is None:
            continue
        _, inl_best = cost_and_inliers(np.array([best[1]]), best[2][None], best[3][None])
        ratio = float(inl_best.mean())
        if done >= cfg.min_iterations and ratio > 0:
            needed = np.log(1 - cfg.success_prob) / np.log(max(1 - ratio**3, 1e-12))
            if done >= needed:
                break
    if best[1] is None:
        return None
    return best[1], best[2], best[3], done


def _project(cam: Camera, P: np.ndarray) -> np.ndarray:
    z = P[:, 2]
    ok = z > 1e-6
    zs = np.where(ok, z, 1.0)
    uv = np.stack([cam.fx * P[:, 0] / zs + cam.cx, cam.fy * P[:, 1] / zs + cam.cy], axis=1)
    uv[~ok] = 1e6
    return uv


def solve_monodepth(
    kpts0: np.ndarray,
    kpts1: np.ndarray,
    cam0: Camera,
    cam1: Camera,
    depth0: np.ndarray,
    depth1: np.ndarray,
    cfg: SolverConfig | None = None,
    mono: MonodepthConfig | None = None,
) -> SolverOutput:
    """Metric ``cam1_from_cam0`` and the relative scale of two monocular depth maps.

    Args:
        kpts0, kpts1: (N, 2) matched pixels.
        cam0, cam1: intrinsics; the depth maps must have their image sizes.
        depth0, depth1: (H, W) metres with NaN invalid, e.g. from a monocular network.
        cfg: shared solver options (thresholds, RANSAC stopping, depth range, seed).
        mono: the options of this solver.

    Returns:
        :class:`SolverOutput` with ``metric=True``. ``info["relative_scale"]`` is the scale
        of ``depth1`` relative to ``depth0`` found by the fit (``depth1 / depth0`` of the
        same surface, up to pose): > 1 means depth1 is too large relative to depth0.
        ``info["depth_scale_corrections"]`` = (a0, a1) multiply the maps to make them
        mutually consistent with geometric mean 1.

    Raises:
        InputError: a depth map does not have its image's size.
    """
    from scipy.optimize import least_squares  # here: importing scipy.optimize costs a cold start 0.3-1 s

    cfg = cfg or SolverConfig()
    mono = mono or cfg.monodepth
    n = len(kpts0)
    kpts0 = np.asarray(kpts0, dtype=np.float64).reshape(-1, 2)
    kpts1 = np.asarray(kpts1, dtype=np.float64).reshape(-1, 2)
    for name, d, cam in (("depth0", depth0, cam0), ("depth1", depth1, cam1)):
        if d is None:
            raise InputError(name, "the monodepth solver needs a depth map for both views")
        if np.shape(d) != (cam.height, cam.width):
            raise InputError(name, f"depth map is {np.shape(d)} but the image is {(cam.height, cam.width)} (H, W)")
    z0 = sample_depth(depth0, kpts0, cfg.min_depth, cfg.max_depth)
    z1 = sample_depth(depth1, kpts1, cfg.min_depth, cfg.max_depth)
    both = np.isfinite(z0) & np.isfinite(z1)
    nboth = int(both.sum())
    if nboth < max(cfg.min_inliers, 3):
        return SolverOutput(
            None, np.zeros(n, bool), False,
            f"monodepth: only {nboth} matches have reliable depth in both views (need {cfg.min_inliers})",
        )
    ib = np.flatnonzero(both)
    P0 = cam0.unproject(kpts0[ib], z0[ib])
    P1 = cam1.unproject(kpts1[ib], z1[ib])
    u0, u1 = kpts0[ib], kpts1[ib]
    rng = np.random.default_rng(cfg.seed)
    found = _ransac_sim3(P0, P1, u0, u1, cam0, cam1, cfg, mono, rng)
    if found is None:
        return SolverOutput(None, np.zeros(n, bool), False, "monodepth: RANSAC found no similarity hypothesis")
    s, R, t, iters = found
    # (R, t) maps P0 (scaled by s) to P1; the metric frame has X0 = sqrt(s) P0, X1 = P1 / sqrt(s):
    # X1 = R X0 + t / sqrt(s).
    ls = float(np.log(s))
    t_m = t / np.sqrt(s)
    thr = cfg.max_reproj_error
    tau = mono.ransac_3d_error_rel
    pred = s * P0 @ R.T + t
    inl = (np.linalg.norm(pred - P1, axis=1) / P1[:, 2] < tau) & (sampson_px(R, t, u0, u1, cam0, cam1) < mono.epipolar_gate * thr)
    n3 = int(inl.sum())
    if n3 < cfg.min_inliers:
        return SolverOutput(None, np.zeros(n, bool), False, f"monodepth: only {n3} RANSAC inliers (need {cfg.min_inliers})")

    # Refinement in the metric frame: x = (dw, dt, dls); residuals in pixels. Matches
    # without depth in both views still constrain rotation and direction (Sampson terms).
    ep_all = sampson_px(R, t_m, kpts0, kpts1, cam0, cam1)
    epi = ep_all < 2 * thr
    for _ in range(2):
        A0, A1, a0, a1 = P0[inl], P1[inl], u0[inl], u1[inl]
        e0s, e1s = kpts0[epi], kpts1[epi]
        R0, t0, ls0 = R, t_m, ls
        w1, w0 = _depth_weights(R0, t0, ls0, A0, A1, a0, a1, cam0, cam1, thr, mono.depth_sigma_rel)

        def residuals(x, A0=A0, A1=A1, a0=a0, a1=a1, e0s=e0s, e1s=e1s, R0=R0, t0=t0, ls0=ls0, w1=w1, w0=w0):
            Rx = so3_exp(x[:3]) @ R0
            tx = t0 + x[3:6]
            lsx = ls0 + x[6]
            e1, e0 = _reproj(Rx, tx, lsx, A0, A1, a0, a1, cam0, cam1)
            ep = _sampson_signed(Rx, tx, e0s, e1s, cam0, cam1)
            return np.concatenate([mono.epipolar_weight * ep, (e1 * w1[:, None]).ravel(), (e0 * w0[:, None]).ravel()])

        sol = least_squares(residuals, np.zeros(7), loss="huber", f_scale=thr / 2, method="trf", x_scale="jac", max_nfev=60)
        R = so3_exp(sol.x[:3]) @ R0
        t_m = t0 + sol.x[3:6]
        ls = ls0 + float(sol.x[6])
        # re-select inliers: epipolar error in pixels, depth agreement relative
        sc = np.exp(ls)
        X0 = np.sqrt(sc) * P0
        X1 = P1 / np.sqrt(sc)
        r3 = np.linalg.norm(X0 @ R.T + t_m - X1, axis=1) / X1[:, 2]
        ep_all = sampson_px(R, t_m, kpts0, kpts1, cam0, cam1)
        new = (ep_all[ib] < thr) & (r3 < tau)
        if new.sum() < cfg.min_inliers:
            break
        inl = new
        epi = ep_all < thr
    joint_info: dict = {}
    depth_bad = np.zeros(n, bool)
    depth_bad[ib[~inl]] = True
    if mono.joint_refinement:
        sel = np.flatnonzero(ep_all < thr)
        if len(sel) >= cfg.min_inliers:
            a0_, a1_, d0s, d1s = kpts0[sel], kpts1[sel], z0[sel], z1[sel]
            for _ in range(2):  # noise levels and depth outliers from the current fit, then refit
                spx, srel, nsig = estimate_sigmas(
                    R, t_m, ls, a0_, a1_, d0s, d1s, cam0, cam1, mono.depth_sigma_rel, mono.sigma_rel_min, mono.sigma_rel_max, thr
                )
                bad = _depth_outliers(R, t_m, ls, a0_, a1_, d0s, d1s, cam0, mono.depth_outlier_gate * srel)
                # depth only where it is reliable: a depth outlier keeps its image terms
                R, t_m, ls, _ = refine_joint(
                    R, t_m, ls, a0_, a1_, np.where(bad, np.nan, d0s), np.where(bad, np.nan, d1s), cam0, cam1,
                    spx, srel, mono.robust_k, mono.joint_iterations,
                )
            ep_all = sampson_px(R, t_m, kpts0, kpts1, cam0, cam1)
            depth_bad = np.zeros(n, bool)
            depth_bad[sel] = _depth_outliers(R, t_m, ls, a0_, a1_, d0s, d1s, cam0, mono.depth_outlier_gate * srel)
            inl = (ep_all[ib] < thr) & ~depth_bad[ib]
            joint_info = {"sigma_px": spx, "sigma_rel": srel, "sigma_rel_from": nsig, "joint_points": len(sel)}
    s = float(np.exp(ls))
    if not (1 / mono.max_relative_scale < s < mono.max_relative_scale) or not np.all(np.isfinite(t_m)):
        return SolverOutput(None, np.zeros(n, bool), False, f"monodepth: implausible relative depth scale {s:.3g}")
    # inliers: consistent with the epipolar geometry, and with the depth where both views have it
    inliers = (ep_all < thr) & ~depth_bad
    nin = int(inliers.sum())
    if nin < cfg.min_inliers:
        return SolverOutput(None, inliers, False, f"monodepth: only {nin} inliers after refinement (need {cfg.min_inliers})")
    pose = Pose(R, t_m)
    return SolverOutput(
        pose, inliers, True,
        info={
            "relative_scale": s,
            "depth_scale_corrections": [float(np.sqrt(s)), float(1 / np.sqrt(s))],
            "iterations": int(iters),
            "num_with_depth_both": nboth,
            "ransac_inliers_3d": n3,
            "depth_inliers": int(inl.sum()),
            **joint_info,
        },
    )


def _reproj(R, t, ls, A0, A1, a0, a1, cam0, cam1):
    """Reprojection errors (M, 2) of view-0 points in image 1 and view-1 points in image 0."""
    h = np.exp(0.5 * ls)
    X0 = h * A0
    X1 = A1 / h
    e1 = _project(cam1, X0 @ R.T + t) - a1
    e0 = _project(cam0, (X1 - t) @ R) - a0
    return e1, e0


def _sampson_signed(R, t, a0, a1, cam0, cam1):
    """Sampson error with the sign of the algebraic error (smooth for least squares)."""
    E = hat(t / max(np.linalg.norm(t), 1e-12)) @ R
    F = np.linalg.inv(cam1.K).T @ E @ np.linalg.inv(cam0.K)
    x0 = np.c_[a0, np.ones(len(a0))]
    x1 = np.c_[a1, np.ones(len(a1))]
    Fx0 = x0 @ F.T
    Ftx1 = x1 @ F
    num = np.sum(x1 * Fx0, axis=1)
    den = Fx0[:, 0] ** 2 + Fx0[:, 1] ** 2 + Ftx1[:, 0] ** 2 + Ftx1[:, 1] ** 2
    return num / np.sqrt(np.maximum(den, 1e-300))


def _depth_weights(R, t, ls, A0, A1, a0, a1, cam0, cam1, sigma_px, sigma_rel):
    """Per-point weights of the reprojection residuals: sigma_px / total expected error,
    where a relative depth error ``sigma_rel`` moves a reprojection by ``sens`` pixels."""
    e1, e0 = _reproj(R, t, ls, A0, A1, a0, a1, cam0, cam1)
    e1b, e0b = _reproj(R, t, ls, A0 * (1 + sigma_rel), A1 * (1 + sigma_rel), a0, a1, cam0, cam1)
    sens1 = np.linalg.norm(e1b - e1, axis=1)
    sens0 = np.linalg.norm(e0b - e0, axis=1)
    w1 = sigma_px / np.sqrt(sigma_px**2 + sens1**2)
    w0 = sigma_px / np.sqrt(sigma_px**2 + sens0**2)
    return np.nan_to_num(w1), np.nan_to_num(w0)


# --- joint refinement: pose, relative scale and 3D points with depth priors ----------------
def _proj_jac(cam: Camera, P: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixels (M, 2) of camera-frame points P (M, 3) and d(pixel)/dP (M, 2, 3)."""
    iz = 1.0 / P[:, 2]
    uv = np.stack([cam.fx * P[:, 0] * iz + cam.cx, cam.fy * P[:, 1] * iz + cam.cy], axis=1)
    J = np.zeros((len(P), 2, 3))
    J[:, 0, 0] = cam.fx * iz
    J[:, 1, 1] = cam.fy * iz
    J[:, 0, 2] = -cam.fx * P[:, 0] * iz * iz
    J[:, 1, 2] = -cam.fy * P[:, 1] * iz * iz
    return uv, J


def _huber_weight(a: np.ndarray, k: float) -> np.ndarray:
    return np.where(a <= k, 1.0, k / np.maximum(a, 1e-300))


def _huber_cost(a: np.ndarray, k: float) -> np.ndarray:
    return np.where(a <= k, 0.5 * a * a, k * (a - 0.5 * k))


class _JointProblem:
    """Residuals of the joint refinement, normalised by their sigmas.

    Per point with depth (M of them; X in camera-0 coordinates): reprojection in image 0
    and image 1 (pixels / sigma_px), and the log-depth priors of the views that have
    depth, ``(log z_k(X) - log(a_k d_k)) / sigma_rel``, with a0 = exp(ls/2),
    a1 = exp(-ls/2). Per match without depth: its Sampson error / sigma_px.
    """

    def __init__(self, u0, u1, d0, d1, e0, e1, cam0, cam1, spx, srel, k):
        self.u0, self.u1, self.e0, self.e1 = u0, u1, e0, e1
        self.m0, self.m1 = np.isfinite(d0), np.isfinite(d1)
        self.ld0 = np.log(np.where(self.m0, d0, 1.0))
        self.ld1 = np.log(np.where(self.m1, d1, 1.0))
        self.cam0, self.cam1, self.spx, self.srel, self.k = cam0, cam1, spx, srel, k

    def point_residuals(self, R, t, ls, X):
        Y = X @ R.T + t
        r = np.zeros((len(X), 6))
        if not (np.all(X[:, 2] > 1e-9) and np.all(Y[:, 2] > 1e-9)):
            return None, Y
        r[:, 0:2] = (_proj_jac(self.cam0, X)[0] - self.u0) / self.spx
        r[:, 2:4] = (_proj_jac(self.cam1, Y)[0] - self.u1) / self.spx
        r[:, 4] = np.where(self.m0, (np.log(X[:, 2]) - self.ld0 - 0.5 * ls) / self.srel, 0.0)
        r[:, 5] = np.where(self.m1, (np.log(Y[:, 2]) - self.ld1 + 0.5 * ls) / self.srel, 0.0)
        return r, Y

    def epipolar_residuals(self, R, t):
        if len(self.e0) == 0:
            return np.zeros(0)
        return _sampson_signed(R, t, self.e0, self.e1, self.cam0, self.cam1) / self.spx

    def cost(self, r, re) -> float:
        k = self.k
        c = _huber_cost(np.linalg.norm(r[:, 0:2], axis=1), k) + _huber_cost(np.linalg.norm(r[:, 2:4], axis=1), k)
        c = c + np.where(self.m0, _huber_cost(np.abs(r[:, 4]), k), 0.0) + np.where(self.m1, _huber_cost(np.abs(r[:, 5]), k), 0.0)
        return float(c.sum() + _huber_cost(np.abs(re), k).sum())


def refine_joint(
    R: np.ndarray,
    t: np.ndarray,
    ls: float,
    u0: np.ndarray,
    u1: np.ndarray,
    d0: np.ndarray,
    d1: np.ndarray,
    cam0: Camera,
    cam1: Camera,
    sigma_px: float,
    sigma_rel: float,
    robust_k: float = 2.0,
    iterations: int = 20,
    fix_scale: bool = False,
) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
    """Refine pose, relative log-scale and one 3D point per match (Levenberg-Marquardt).

    The maximum-likelihood two-view problem with monocular depth: each match is a 3D
    point seen in both images (pixel noise ``sigma_px``); each depth value is a prior on
    that point's depth with relative noise ``sigma_rel``, after the scale corrections
    ``a0 = exp(ls / 2)`` (view 0) and ``a1 = exp(-ls / 2)`` (view 1). The image terms fix
    rotation and the translation direction whatever the depth; the depth priors give the
    translation length and the relative scale, and pull the direction only as much as
    their sigma allows. Matches with no depth in either view enter through their Sampson
    error. Huber loss at ``robust_k`` sigmas on every term. The points are eliminated by
    a Schur complement (3x3 blocks), so the cost is linear in the number of matches.

    Args:
        R, t, ls: initial ``cam1_from_cam0`` (metric frame) and log relative scale.
        u0, u1: (N, 2) matched pixels (inliers).
        d0, d1: (N,) depth of the matches in each view, NaN where unknown/unreliable.
        sigma_px, sigma_rel: noise of pixels and of relative depth.
        fix_scale: keep ``ls`` (sensor depth: both maps are metric, only their noise is
            unknown).

    Returns:
        R (3, 3), t (3,), ls, X (M, 3) the refined points of the matches with depth
        (camera-0 coordinates, in the order of ``u0[has_depth]``).
    """
    has = np.isfinite(d0) | np.isfinite(d1)
    a, b = d0[has], d1[has]
    p0, p1 = u0[has], u1[has]
    prob = _JointProblem(p0, p1, a, b, u0[~has], u1[~has], cam0, cam1, sigma_px, sigma_rel, robust_k)
    # initial points: the scale-corrected back-projections (their mean when both exist)
    h = np.exp(0.5 * ls)
    A = cam0.unproject(p0, np.where(prob.m0, a * h, 1.0))
    B = (cam1.unproject(p1, np.where(prob.m1, b / h, 1.0)) - t) @ R
    X = np.where((prob.m0 & prob.m1)[:, None], 0.5 * (A + B), np.where(prob.m0[:, None], A, B))
    r, Y = prob.point_residuals(R, t, ls, X)
    if r is None:  # a point behind a camera at the start: keep the input
        return R, t, ls, X
    re = prob.epipolar_residuals(R, t)
    cost = prob.cost(r, re)
    lam = 1e-3
    M = len(X)
    k = robust_k
    eye3 = np.eye(3)
    for _ in range(iterations):
        # IRLS weights of the current residuals
        w = np.empty((M, 6))
        w[:, 0:2] = _huber_weight(np.linalg.norm(r[:, 0:2], axis=1), k)[:, None]
        w[:, 2:4] = _huber_weight(np.linalg.norm(r[:, 2:4], axis=1), k)[:, None]
        w[:, 4] = np.where(prob.m0, _huber_weight(np.abs(r[:, 4]), k), 0.0)
        w[:, 5] = np.where(prob.m1, _huber_weight(np.abs(r[:, 5]), k), 0.0)
        # Jacobians w.r.t. the point (JX) and the camera parameters (Jc: rotation, t, ls);
        # rotation update R <- exp(w) R
        _, J0 = _proj_jac(cam0, X)
        _, J1 = _proj_jac(cam1, Y)
        J0, J1 = J0 / sigma_px, J1 / sigma_px
        dYdw = -hat_batch(Y - t)
        JX = np.zeros((M, 6, 3))
        Jc = np.zeros((M, 6, 7))
        JX[:, 0:2] = J0
        JX[:, 2:4] = J1 @ R
        Jc[:, 2:4, 0:3] = J1 @ dYdw
        Jc[:, 2:4, 3:6] = J1
        JX[:, 4, 2] = prob.m0 / (X[:, 2] * sigma_rel)
        Jc[:, 4, 6] = -0.5 * prob.m0 / sigma_rel
        iy = prob.m1 / (Y[:, 2] * sigma_rel)
        JX[:, 5] = R[2][None, :] * iy[:, None]
        Jc[:, 5, 0:3] = dYdw[:, 2, :] * iy[:, None]
        Jc[:, 5, 5] = iy
        Jc[:, 5, 6] = 0.5 * prob.m1 / sigma_rel
        JXw = JX * w[:, :, None]
        Jcw = Jc * w[:, :, None]
        Hpp = np.swapaxes(JX, 1, 2) @ JXw
        Hcp = np.swapaxes(Jcw, 1, 2) @ JX
        Jcf = Jc.reshape(-1, 7)
        Hcc = Jcw.reshape(-1, 7).T @ Jcf
        bp = np.einsum("mki,mk->mi", JXw, r)
        bc = Jcw.reshape(-1, 7).T @ r.ravel()
        if len(re):  # Sampson terms of matches without depth: numerical pose Jacobian
            Je = np.zeros((len(re), 7))
            for j in range(6):
                dx = np.zeros(6)
                step = 1e-7 if j < 3 else 1e-7 * max(float(np.linalg.norm(t)), 1e-3)
                dx[j] = step
                Je[:, j] = (prob.epipolar_residuals(so3_exp(dx[:3]) @ R, t + dx[3:]) - re) / step
            we = _huber_weight(np.abs(re), k)
            Hcc = Hcc + (Je * we[:, None]).T @ Je
            bc = bc + Je.T @ (we * re)
        if fix_scale:  # the relative scale is no unknown: its row and column drop out
            Hcc[6, :], Hcc[:, 6], bc[6], Hcp[:, 6, :] = 0.0, 0.0, 0.0, 0.0
            Hcc[6, 6] = 1.0
        accepted = False
        for _ in range(8):
            Hd = Hpp + lam * (np.diagonal(Hpp, axis1=1, axis2=2)[:, :, None] * eye3 + 1e-12 * eye3)
            Sd = Hcc + lam * np.diag(np.diag(Hcc)) + 1e-12 * np.eye(7)
            try:
                Hinv = np.linalg.inv(Hd)
                HcpHi = Hcp @ Hinv
                S = Sd - HcpHi.transpose(1, 0, 2).reshape(7, -1) @ Hcp.transpose(1, 0, 2).reshape(7, -1).T
                g = bc - np.einsum("mij,mj->i", HcpHi, bp)
                dc = -np.linalg.solve(S, g)
            except np.linalg.LinAlgError:
                lam *= 10
                continue
            dp = -np.einsum("mij,mj->mi", Hinv, bp + np.einsum("mji,j->mi", Hcp, dc))
            R2, t2, ls2, X2 = so3_exp(dc[:3]) @ R, t + dc[3:6], ls + float(dc[6]), X + dp
            r2, Y2 = prob.point_residuals(R2, t2, ls2, X2)
            if r2 is not None and np.all(np.isfinite(r2)):
                re2 = prob.epipolar_residuals(R2, t2)
                c2 = prob.cost(r2, re2)
                if c2 < cost:
                    gain = (cost - c2) / max(cost, 1e-300)
                    R, t, ls, X, r, Y, re, cost = R2, t2, ls2, X2, r2, Y2, re2, c2
                    lam = max(lam / 3, 1e-9)
                    accepted = True
                    break
            lam *= 10
        if not accepted or gain < 1e-7:
            break
    return R, t, ls, X


def estimate_sigmas(R, t, ls, u0, u1, d0, d1, cam0, cam1, default_rel: float, lo: float, hi: float, max_px: float):
    """Robust noise levels from the data: pixels from the Sampson errors of the matches,
    relative depth from the disagreement of the two scale-corrected maps at matches with
    depth in both views (1.4826 MAD; the difference of two maps has sqrt(2) sigma).

    Returns (sigma_px, sigma_rel, number of matches the depth sigma came from).
    """
    ep = sampson_px(R, t, u0, u1, cam0, cam1)
    spx = float(np.clip(1.4826 * np.median(ep), 0.05 * max_px, max_px)) if len(ep) else max_px
    both = np.isfinite(d0) & np.isfinite(d1)
    nb = int(both.sum())
    if nb < 5:
        return spx, float(np.clip(default_rel, lo, hi)), nb
    dl = depth_disagreement(R, t, ls, u0, u1, d0, d1, cam0)
    dl = dl[np.isfinite(dl)]
    if len(dl) < 5:
        return spx, float(np.clip(default_rel, lo, hi)), len(dl)
    srel = 1.4826 * float(np.median(np.abs(dl - np.median(dl)))) / np.sqrt(2.0)
    return spx, float(np.clip(srel, lo, hi)), len(dl)


def depth_disagreement(R, t, ls, u0, u1, d0, d1, cam0: Camera) -> np.ndarray:
    """Log ratio (N,) of the depth in view 1 predicted from the scale-corrected view-0
    depth and the pose, to the scale-corrected view-1 depth; NaN without both depths."""
    out = np.full(len(u0), np.nan)
    both = np.isfinite(d0) & np.isfinite(d1)
    if not both.any():
        return out
    h = np.exp(0.5 * ls)
    Y = cam0.unproject(u0[both], d0[both] * h) @ R.T + t
    with np.errstate(invalid="ignore", divide="ignore"):
        out[both] = np.log(Y[:, 2]) - np.log(d1[both] / h)
    return out


def _depth_outliers(R, t, ls, u0, u1, d0, d1, cam0, sigma_rel_gate: float) -> np.ndarray:
    """Matches (N,) whose two depths disagree by more than ``sigma_rel_gate * sqrt(2)``
    (log ratio, around the median): which of the two maps is wrong is unknown."""
    dl = depth_disagreement(R, t, ls, u0, u1, d0, d1, cam0)
    ok = np.isfinite(dl)
    bad = np.zeros(len(u0), bool)
    if ok.any():
        bad[ok] = np.abs(dl[ok] - np.median(dl[ok])) > sigma_rel_gate * np.sqrt(2.0)
    return bad

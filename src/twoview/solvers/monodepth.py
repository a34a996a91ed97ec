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

Metric scale: the two maps are corrected by ``a0 = sqrt(s)``, ``a1 = 1/sqrt(s)``, so
their geometric-mean scale is kept: the metric scale comes from the depth maps' mean,
the relative scale from the geometry.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from twoview.config import SolverConfig, StrictConfig
from twoview.errors import ConfigError, InputError
from twoview.geometry.camera import Camera
from twoview.geometry.pose import Pose
from twoview.geometry.rotation import hat, so3_exp
from twoview.solvers.common import SolverOutput, sample_depth


@dataclass
class MonodepthConfig(StrictConfig):
    """Options of the scale-aware monocular-depth solver.

    Attributes:
        ransac_3d_error_rel: RANSAC inlier threshold on the 3D residual, as a fraction of
            the point's depth (monocular depth is far less precise than sensor depth).
        epipolar_gate: RANSAC also requires the Sampson error to be below this many
            times ``SolverConfig.max_reproj_error`` (rejects matches that are wrong but
            happen to agree in depth).
        depth_sigma_rel: assumed relative error of the depth maps after the scale
            correction; weights the depth-based residuals against the image residuals.
        max_relative_scale: relative scales outside ``[1/m, m]`` are rejected.
        epipolar_weight: weight of each match's Sampson residual relative to a
            reprojection residual (the epipolar error does not depend on depth at all).
    """

    ransac_3d_error_rel: float = 0.08
    epipolar_gate: float = 3.0
    depth_sigma_rel: float = 0.05
    max_relative_scale: float = 3.0
    epipolar_weight: float = 1.0

    def validate(self):
        if not 0 < self.ransac_3d_error_rel < 1:
            raise ConfigError("monodepth.ransac_3d_error_rel must be in (0, 1)")
        if self.epipolar_gate <= 0:
            raise ConfigError("monodepth.epipolar_gate must be > 0")
        if not 0 < self.depth_sigma_rel < 1:
            raise ConfigError("monodepth.depth_sigma_rel must be in (0, 1)")
        if self.epipolar_weight <= 0:
            raise ConfigError("monodepth.epipolar_weight must be > 0")
        if self.max_relative_scale <= 1:
            raise ConfigError("monodepth.max_relative_scale must be > 1")


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


def sampson_px(R: np.ndarray, t: np.ndarray, u0: np.ndarray, u1: np.ndarray, cam0: Camera, cam1: Camera) -> np.ndarray:
    """Sampson distance (pixels) of matches to the epipolar geometry of ``(R, t)``.

    Batched over poses: R (..., 3, 3), t (..., 3); u0, u1 (N, 2). Returns (..., N).
    """
    E = np.einsum("...ij,...jk->...ik", _hat_batch(t), R)
    K0i = np.linalg.inv(cam0.K)
    K1i = np.linalg.inv(cam1.K)
    F = K1i.T @ E @ K0i
    x0 = np.concatenate([u0, np.ones((len(u0), 1))], axis=1)
    x1 = np.concatenate([u1, np.ones((len(u1), 1))], axis=1)
    Fx0 = np.einsum("...ij,nj->...ni", F, x0)
    Ftx1 = np.einsum("...ji,nj->...ni", F, x1)
    num = np.einsum("ni,...ni->...n", x1, Fx0)
    den = Fx0[..., 0] ** 2 + Fx0[..., 1] ** 2 + Ftx1[..., 0] ** 2 + Ftx1[..., 1] ** 2
    return np.abs(num) / np.sqrt(np.maximum(den, 1e-300))


def _hat_batch(t: np.ndarray) -> np.ndarray:
    t = np.asarray(t, dtype=np.float64)
    O = np.zeros(t.shape[:-1] + (3, 3))
    O[..., 0, 1], O[..., 0, 2] = -t[..., 2], t[..., 1]
    O[..., 1, 0], O[..., 1, 2] = t[..., 2], -t[..., 0]
    O[..., 2, 0], O[..., 2, 1] = -t[..., 1], t[..., 0]
    return O


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
    cfg = cfg or SolverConfig()
    mono = mono or MonodepthConfig()
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
    s = float(np.exp(ls))
    if not (1 / mono.max_relative_scale < s < mono.max_relative_scale) or not np.all(np.isfinite(t_m)):
        return SolverOutput(None, np.zeros(n, bool), False, f"monodepth: implausible relative depth scale {s:.3g}")
    # inliers: consistent with the epipolar geometry, and with the depth where both views have it
    inliers = ep_all < thr
    depth_bad = np.zeros(n, bool)
    depth_bad[ib[~inl]] = True
    inliers &= ~depth_bad
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

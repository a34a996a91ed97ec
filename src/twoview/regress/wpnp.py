"""Weighted PnP: RANSAC inlier selection (PoseLib) + differentiable weighted Gauss-Newton.

The RANSAC step is not differentiable and only picks the inlier set; the refinement is
plain torch, so gradients reach the per-correspondence weights and the starting pose.
"""

from __future__ import annotations

import numpy as np
import torch


def skew(v: torch.Tensor) -> torch.Tensor:
    """(..., 3) -> (..., 3, 3) cross-product matrices."""
    z = torch.zeros_like(v[..., 0])
    return torch.stack([
        torch.stack([z, -v[..., 2], v[..., 1]], -1),
        torch.stack([v[..., 2], z, -v[..., 0]], -1),
        torch.stack([-v[..., 1], v[..., 0], z], -1),
    ], -2)


def so3_exp(w: torch.Tensor) -> torch.Tensor:
    """Rodrigues, (..., 3) -> (..., 3, 3), smooth at 0 (Taylor branch)."""
    th2 = (w * w).sum(-1, keepdim=True)[..., None]
    th = torch.sqrt(th2.clamp_min(1e-12))
    small = th2 < 1e-8
    a = torch.where(small, 1.0 - th2 / 6.0, torch.sin(th) / th)
    b = torch.where(small, 0.5 - th2 / 24.0, (1.0 - torch.cos(th)) / th2.clamp_min(1e-12))
    K = skew(w)
    eye = torch.eye(3, dtype=w.dtype, device=w.device).expand_as(K)
    return eye + a * K + b * (K @ K)


def weighted_gauss_newton(
    X: torch.Tensor,
    uv: torch.Tensor,
    K: torch.Tensor,
    weights: torch.Tensor,
    R0: torch.Tensor,
    t0: torch.Tensor,
    iters: int = 3,
    damping: float = 1e-6,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimise ``sum_i w_i |pi(K (R X_i + t)) - uv_i|^2`` by Gauss-Newton from (R0, t0).

    Batched and differentiable w.r.t. ``weights``, ``R0``, ``t0``, ``X`` and ``uv``.

    Args:
        X: (B, N, 3) points in camera 0.
        uv: (B, N, 2) observed pixels in image 1.
        K: (B, 3, 3) intrinsics of image 1.
        weights: (B, N) non-negative weights (0 removes a correspondence).
        R0, t0: (B, 3, 3), (B, 3) starting pose cam1_from_cam0.

    Returns:
        R (B, 3, 3), t (B, 3).
    """
    R, t = R0, t0
    fx, fy = K[:, 0, 0, None], K[:, 1, 1, None]
    cx, cy = K[:, 0, 2, None], K[:, 1, 2, None]
    w = weights / weights.sum(-1, keepdim=True).clamp_min(1e-12)
    eye6 = torch.eye(6, dtype=X.dtype, device=X.device)
    for _ in range(iters):
        P = X @ R.transpose(1, 2) + t[:, None, :]  # B, N, 3
        z = P[..., 2].clamp_min(1e-6)
        u = fx * P[..., 0] / z + cx
        v = fy * P[..., 1] / z + cy
        r = torch.stack((u - uv[..., 0], v - uv[..., 1]), -1)  # B, N, 2
        zero = torch.zeros_like(z)
        dpi = torch.stack([
            torch.stack([fx / z, zero, -fx * P[..., 0] / z**2], -1),
            torch.stack([zero, fy / z, -fy * P[..., 1] / z**2], -1),
        ], -2)  # B, N, 2, 3
        dP = torch.cat([-skew(P), torch.eye(3, dtype=X.dtype, device=X.device).expand(*P.shape[:2], 3, 3)], -1)  # B,N,3,6
        J = dpi @ dP  # B, N, 2, 6
        JtW = J.transpose(-1, -2) * w[..., None, None]  # B, N, 6, 2
        H = (JtW @ J).sum(1) + damping * eye6
        g = (JtW @ r[..., None]).sum(1)[..., 0]
        delta = -torch.linalg.solve(H, g)
        dR = so3_exp(delta[:, :3])
        R = dR @ R
        t = (dR @ t[..., None])[..., 0] + delta[:, 3:]
    return R, t


def ransac_inliers(X: np.ndarray, uv: np.ndarray, K: np.ndarray, threshold_px: float, seed: int = 0):
    """PoseLib P3P LO-RANSAC for one pair: (inlier mask (N,), R (3, 3), t (3,)), or None.

    Args:
        X: (N, 3) points in camera 0. uv: (N, 2) pixels in image 1. K: (3, 3).
    """
    import poselib

    if len(X) < 4:
        return None
    cam = {"model": "PINHOLE", "width": int(2 * K[0, 2] + 1), "height": int(2 * K[1, 2] + 1),
           "params": [float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2])]}
    pose, info = poselib.estimate_absolute_pose(
        np.ascontiguousarray(uv, dtype=np.float64), np.ascontiguousarray(X, dtype=np.float64), cam,
        {"max_reproj_error": float(threshold_px), "max_iterations": 1000, "min_iterations": 50, "seed": seed}, {},
    )
    inl = np.asarray(info.get("inliers", []), dtype=bool)
    if inl.size != len(X) or inl.sum() < 6:
        return None
    return inl, np.asarray(pose.R), np.asarray(pose.t)


def weighted_pnp(
    X: torch.Tensor,
    uv: torch.Tensor,
    K: torch.Tensor,
    weights: torch.Tensor,
    R0: torch.Tensor,
    t0: torch.Tensor,
    ransac_px: float | None = 4.0,
    iters: int = 3,
    restart_deg: float = 15.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """RANSAC inliers, then weighted Gauss-Newton from (R0, t0) on ``weights * inlier``.

    Args:
        X (B, N, 3), uv (B, N, 2), K (B, 3, 3), weights (B, N), R0 (B, 3, 3), t0 (B, 3).
        ransac_px: PoseLib RANSAC threshold in pixels; None uses every correspondence.
        restart_deg: where the starting rotation is further than this from RANSAC's,
            Gauss-Newton starts from the RANSAC pose instead (outside the basin of
            convergence a few iterations would not converge); such rows get no gradient
            through the starting pose.

    Returns:
        R (B, 3, 3), t (B, 3), inlier mask (B, N) bool, ok (B,) bool (False where RANSAC
        failed: those rows return the starting pose unchanged and must not be used).
    """
    B, N = weights.shape
    mask = torch.ones(B, N, dtype=torch.bool, device=X.device)
    ok = torch.ones(B, dtype=torch.bool, device=X.device)
    Rs, ts = R0, t0
    if ransac_px is not None:
        Xn, uvn, Kn = X.detach().double().cpu().numpy(), uv.detach().double().cpu().numpy(), K.detach().double().cpu().numpy()
        R0n, t0n = R0.detach().double().cpu().numpy(), t0.detach().double().cpu().numpy()
        Rr, tr = R0n.copy(), t0n.copy()
        far = np.zeros(B, bool)
        for b in range(B):
            res = ransac_inliers(Xn[b], uvn[b], Kn[b], ransac_px)
            if res is None:
                ok[b] = False
                continue
            mask[b] = torch.from_numpy(res[0])
            Rr[b], tr[b] = res[1], res[2]
            cos = np.clip((np.trace(Rr[b].T @ R0n[b]) - 1) / 2, -1, 1)
            far[b] = np.degrees(np.arccos(cos)) > restart_deg
        if far.any():
            f = torch.from_numpy(far).to(X.device)
            Rs = torch.where(f[:, None, None], torch.from_numpy(Rr).to(R0), R0)
            ts = torch.where(f[:, None], torch.from_numpy(tr).to(t0), t0)
    w = weights * mask.to(weights.dtype)
    w = torch.where(ok[:, None], w, torch.ones_like(w))
    R, t = weighted_gauss_newton(X, uv, K, w, Rs, ts, iters=iters)
    R = torch.where(ok[:, None, None], R, R0)
    t = torch.where(ok[:, None], t, t0)
    return R, t, mask, ok

"""Shared pieces of the solvers: their output type, depth look-up at keypoints and the
residuals they minimise (two-sided reprojection, Sampson distance)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from twoview.geometry.camera import Camera
from twoview.geometry.pose import Pose


@dataclass
class SolverOutput:
    """What a solver returns.

    Attributes:
        pose: ``cam1_from_cam0`` or None on failure.
        inliers: (N,) bool mask over the input matches.
        metric: whether ``pose.t`` is in metres.
        reason: why it failed (empty on success).
        info: iterations, residuals, scale, ... (JSON-ready: it reaches ``PoseResult.info``).
        depths: ``(z0, z1)``, the depth the solver used at each match of view 0 / view 1,
            (N,) metres with NaN where unusable, None for a view whose depth it did not use
            (the pose covariance reuses them).
    """

    pose: Pose | None
    inliers: np.ndarray
    metric: bool
    reason: str = ""
    info: dict = field(default_factory=dict)
    depths: tuple[np.ndarray | None, np.ndarray | None] = (None, None)

    @property
    def num_inliers(self) -> int:
        return int(np.count_nonzero(self.inliers))


def sample_depth(
    depth: np.ndarray,
    uv: np.ndarray,
    min_depth: float = 0.0,
    max_depth: float = np.inf,
    max_rel_jump: float = 0.05,
) -> np.ndarray:
    """Depth at pixel positions, NaN where unreliable.

    Nearest-pixel look-up (depth is not interpolated across surfaces). A sample is
    rejected when it is invalid, outside ``[min_depth, max_depth]``, or sits on a depth
    edge: its 3x3 neighbourhood spans more than ``max_rel_jump`` of its depth, where
    keypoints typically lie and a one-pixel error flips foreground and background.

    Args:
        depth: (H, W) metres, NaN invalid.
        uv: (N, 2) pixels.

    Returns:
        (N,) depth in metres with NaN for rejected samples.
    """
    H, W = depth.shape
    uv = np.asarray(uv, dtype=np.float64)
    x = np.rint(uv[:, 0]).astype(np.int64)
    y = np.rint(uv[:, 1]).astype(np.int64)
    inside = (x >= 1) & (x < W - 1) & (y >= 1) & (y < H - 1)
    z = np.full(len(uv), np.nan)
    if not np.any(inside):
        return z
    xi, yi = x[inside], y[inside]
    patch = np.stack([depth[yi + dy, xi + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)], axis=1)
    centre = patch[:, 4]
    # Rows with a NaN are rejected below anyway; plain max/min avoid nan-warnings.
    with np.errstate(invalid="ignore"):
        spread = patch.max(axis=1) - patch.min(axis=1)
        ok = (
            np.isfinite(centre)
            & np.all(np.isfinite(patch), axis=1)
            & (spread <= max_rel_jump * centre)
            & (centre >= min_depth)
            & (centre <= max_depth)
        )
    zi = np.where(ok, centre, np.nan)
    z[inside] = zi
    return z


def two_sided_reprojection(R, t, X0, u1, X1, u0, cam0: Camera, cam1: Camera):
    """Per-point reprojection error vectors of X0 (camera 0, (N0, 3)) in image 1 and of
    X1 (camera 1, (N1, 3)) in image 0, under ``x1 = R x0 + t``: (N0, 2), (N1, 2) pixels.

    Points that land behind a camera get an error of 1e6 pixels.
    """
    P1 = X0 @ R.T + t
    P0 = (X1 - t) @ R  # R.T @ (X1 - t)
    return projection_error(P1, u1, cam1), projection_error(P0, u0, cam0)


def projection_error(P: np.ndarray, u: np.ndarray, cam: Camera) -> np.ndarray:
    """Projection of camera-frame points P (N, 3) minus pixels u (N, 2); 1e6 behind the camera."""
    front = P[:, 2] > 1e-6
    z = np.where(front, P[:, 2], 1.0)
    e = np.stack([cam.fx * P[:, 0] / z + cam.cx - u[:, 0], cam.fy * P[:, 1] / z + cam.cy - u[:, 1]], axis=1)
    e[~front] = 1e6
    return e


def sampson_px(
    R: np.ndarray, t: np.ndarray, u0: np.ndarray, u1: np.ndarray, cam0: Camera, cam1: Camera, signed: bool = False
) -> np.ndarray:
    """Sampson distance (pixels) of matches to the epipolar geometry of ``(R, t)``.

    Batched over poses: R (..., 3, 3), t (..., 3); u0, u1 (N, 2). Returns (..., N);
    ``signed`` keeps the sign of the epipolar constraint (a smooth residual to
    differentiate), otherwise the distance.
    """
    E = np.einsum("...ij,...jk->...ik", hat_batch(t), R)
    K0i = np.linalg.inv(cam0.K)
    K1i = np.linalg.inv(cam1.K)
    F = K1i.T @ E @ K0i
    x0 = np.concatenate([u0, np.ones((len(u0), 1))], axis=1)
    x1 = np.concatenate([u1, np.ones((len(u1), 1))], axis=1)
    Fx0 = np.einsum("...ij,nj->...ni", F, x0)
    Ftx1 = np.einsum("...ji,nj->...ni", F, x1)
    num = np.einsum("ni,...ni->...n", x1, Fx0)
    den = Fx0[..., 0] ** 2 + Fx0[..., 1] ** 2 + Ftx1[..., 0] ** 2 + Ftx1[..., 1] ** 2
    return (num if signed else np.abs(num)) / np.sqrt(np.maximum(den, 1e-300))


def hat_batch(t: np.ndarray) -> np.ndarray:
    """Cross-product matrices [t]x, batched: t (..., 3) -> (..., 3, 3)."""
    t = np.asarray(t, dtype=np.float64)
    O = np.zeros(t.shape[:-1] + (3, 3))
    O[..., 0, 1], O[..., 0, 2] = -t[..., 2], t[..., 1]
    O[..., 1, 0], O[..., 1, 2] = t[..., 2], -t[..., 0]
    O[..., 2, 0], O[..., 2, 1] = -t[..., 1], t[..., 0]
    return O

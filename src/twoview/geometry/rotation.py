"""Rotation helpers: SO(3) exponential/logarithm, quaternions, angles.

Quaternions appear only at I/O boundaries; the library works with 3x3 matrices.
``order="wxyz"`` is Hamilton scalar-first (PoseLib, COLMAP); ``"xyzw"`` is scalar-last
(TUM, SciPy, ROS).
"""

from __future__ import annotations

import numpy as np

_ORDERS = ("wxyz", "xyzw")


def hat(w: np.ndarray) -> np.ndarray:
    """Skew-symmetric matrix of a 3-vector. (3,) -> (3, 3)."""
    w = np.asarray(w, dtype=np.float64)
    return np.array([[0.0, -w[2], w[1]], [w[2], 0.0, -w[0]], [-w[1], w[0], 0.0]])


def so3_exp(w: np.ndarray) -> np.ndarray:
    """Rodrigues' formula: axis-angle vector (3,) -> rotation matrix (3, 3)."""
    w = np.asarray(w, dtype=np.float64).reshape(3)
    theta = float(np.linalg.norm(w))
    K = hat(w)
    if theta < 1e-8:
        # Second-order Taylor keeps the result orthonormal to ~1e-16 for tiny angles.
        return np.eye(3) + K + 0.5 * K @ K
    return np.eye(3) + np.sin(theta) / theta * K + (1 - np.cos(theta)) / theta**2 * K @ K


def so3_log(R: np.ndarray) -> np.ndarray:
    """Rotation matrix (3, 3) -> axis-angle vector (3,), angle in [0, pi]."""
    R = np.asarray(R, dtype=np.float64)
    q = rotation_to_quaternion(R, order="wxyz")
    w, v = q[0], q[1:]
    n = float(np.linalg.norm(v))
    if n < 1e-12:
        return 2.0 * v  # small-angle limit
    angle = 2.0 * np.arctan2(n, w)
    if angle > np.pi:  # take the shorter way round
        angle -= 2 * np.pi
    return v / n * angle


def rotation_angle_deg(R: np.ndarray) -> float:
    """Geodesic angle of a rotation matrix in degrees, numerically safe near 0 and 180."""
    R = np.asarray(R, dtype=np.float64)
    cos = np.clip((np.trace(R) - 1.0) / 2.0, -1.0, 1.0)
    # arccos is ill-conditioned near 0: use the skew part there.
    sin = np.linalg.norm([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]]) / 2.0
    return float(np.degrees(np.arctan2(sin, cos)))


def rotation_to_quaternion(R: np.ndarray, order: str = "wxyz") -> np.ndarray:
    """Rotation matrix (3, 3) -> unit quaternion (4,) with non-negative scalar part."""
    _check_order(order)
    R = np.asarray(R, dtype=np.float64)
    if R.shape != (3, 3):
        raise ValueError(f"R must have shape (3, 3), got {R.shape}")
    # Shepperd's method: pick the largest diagonal term for stability.
    tr = np.trace(R)
    if tr > 0:
        s = 2.0 * np.sqrt(tr + 1.0)
        q = np.array([0.25 * s, (R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s])
    elif R[0, 0] > R[1, 1] and R[0, 0] > R[2, 2]:
        s = 2.0 * np.sqrt(1.0 + R[0, 0] - R[1, 1] - R[2, 2])
        q = np.array([(R[2, 1] - R[1, 2]) / s, 0.25 * s, (R[0, 1] + R[1, 0]) / s, (R[0, 2] + R[2, 0]) / s])
    elif R[1, 1] > R[2, 2]:
        s = 2.0 * np.sqrt(1.0 + R[1, 1] - R[0, 0] - R[2, 2])
        q = np.array([(R[0, 2] - R[2, 0]) / s, (R[0, 1] + R[1, 0]) / s, 0.25 * s, (R[1, 2] + R[2, 1]) / s])
    else:
        s = 2.0 * np.sqrt(1.0 + R[2, 2] - R[0, 0] - R[1, 1])
        q = np.array([(R[1, 0] - R[0, 1]) / s, (R[0, 2] + R[2, 0]) / s, (R[1, 2] + R[2, 1]) / s, 0.25 * s])
    q /= np.linalg.norm(q)
    if q[0] < 0:
        q = -q
    return q if order == "wxyz" else np.roll(q, -1)


def quaternion_to_rotation(q: np.ndarray, order: str = "wxyz") -> np.ndarray:
    """Quaternion (4,) in the given order -> rotation matrix (3, 3). Normalises q."""
    _check_order(order)
    q = np.asarray(q, dtype=np.float64).reshape(-1)
    if q.shape != (4,) or not np.all(np.isfinite(q)):
        raise ValueError(f"quaternion must be 4 finite numbers, got {q!r}")
    n = np.linalg.norm(q)
    if n < 1e-12:
        raise ValueError("quaternion has zero norm")
    w, x, y, z = (q if order == "wxyz" else np.roll(q, 1)) / n
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def quaternions_to_rotations(q: np.ndarray, order: str = "wxyz") -> np.ndarray:
    """Quaternions (N, 4) in ``order`` -> rotation matrices (N, 3, 3); each is normalised
    (3DGS stores them unnormalised). The batch form of :func:`quaternion_to_rotation`.

    Raises:
        ValueError: a non-finite or zero quaternion (its index is named).
    """
    _check_order(order)
    q = np.asarray(q, dtype=np.float64).reshape(-1, 4)
    n = np.linalg.norm(q, axis=1)
    bad = np.flatnonzero(~(np.isfinite(n) & (n >= 1e-12)))
    if bad.size:
        raise ValueError(f"quaternion {int(bad[0])} is {'zero' if np.isfinite(n[bad[0]]) else 'not finite'}: "
                         f"{q[bad[0]].tolist()}")
    q = q / n[:, None]
    w, x, y, z = (q if order == "wxyz" else np.roll(q, 1, axis=1)).T
    R = np.empty((len(q), 3, 3))
    R[:, 0, 0], R[:, 0, 1], R[:, 0, 2] = 1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)
    R[:, 1, 0], R[:, 1, 1], R[:, 1, 2] = 2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)
    R[:, 2, 0], R[:, 2, 1], R[:, 2, 2] = 2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)
    return R


def rotations_to_quaternions(R: np.ndarray, order: str = "wxyz") -> np.ndarray:
    """Rotation matrices (N, 3, 3) -> unit quaternions (N, 4), scalar part >= 0: the batch
    form of :func:`rotation_to_quaternion` (the same Shepperd branches, chosen per row)."""
    _check_order(order)
    R = np.asarray(R, dtype=np.float64).reshape(-1, 3, 3)
    d0, d1, d2 = R[:, 0, 0], R[:, 1, 1], R[:, 2, 2]
    tr = d0 + d1 + d2
    # the branch of rotation_to_quaternion: trace > 0, else the largest diagonal entry
    branch = np.where(tr > 0, 0, np.where((d0 > d1) & (d0 > d2), 1, np.where(d1 > d2, 2, 3)))
    with np.errstate(invalid="ignore", divide="ignore"):
        s = 2.0 * np.sqrt(np.maximum(np.stack([tr + 1.0, 1.0 + d0 - d1 - d2, 1.0 + d1 - d0 - d2, 1.0 + d2 - d0 - d1]), 0.0))
    s = s[branch, np.arange(len(R))]
    s = np.where(s > 0, s, 1.0)
    a, b, c = R[:, 2, 1] - R[:, 1, 2], R[:, 0, 2] - R[:, 2, 0], R[:, 1, 0] - R[:, 0, 1]
    e, f, g = R[:, 0, 1] + R[:, 1, 0], R[:, 0, 2] + R[:, 2, 0], R[:, 1, 2] + R[:, 2, 1]
    cand = np.stack([
        np.stack([0.25 * s, a / s, b / s, c / s], 1),
        np.stack([a / s, 0.25 * s, e / s, f / s], 1),
        np.stack([b / s, e / s, 0.25 * s, g / s], 1),
        np.stack([c / s, f / s, g / s, 0.25 * s], 1),
    ])
    q = cand[branch, np.arange(len(R))]
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    q[q[:, 0] < 0] *= -1
    return q if order == "wxyz" else np.roll(q, -1, axis=1)


def project_to_so3(M: np.ndarray) -> np.ndarray:
    """Closest rotation (Frobenius norm) to a 3x3 matrix."""
    U, _, Vt = np.linalg.svd(np.asarray(M, dtype=np.float64))
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))])
    return U @ D @ Vt


def _check_order(order: str) -> None:
    if order not in _ORDERS:
        raise ValueError(f"quaternion order must be one of {_ORDERS}, got {order!r}")


def sym3_eigvalsh(S: np.ndarray) -> np.ndarray:
    """Eigenvalues, ascending, of symmetric 3x3 matrices in closed form.

    Args:
        S: (..., 3, 3) symmetric.

    Returns:
        (..., 3) eigenvalues, ascending (Smith's trigonometric solution; about 10x
        faster than ``np.linalg.eigvalsh`` on large batches, accurate to ~1e-12 of the
        largest eigenvalue).
    """
    S = np.asarray(S, dtype=np.float64)
    a, b, c = S[..., 0, 0], S[..., 1, 1], S[..., 2, 2]
    d, e, f = S[..., 0, 1], S[..., 1, 2], S[..., 0, 2]
    q = (a + b + c) / 3.0
    p1 = d * d + e * e + f * f
    aq, bq, cq = a - q, b - q, c - q
    p2 = aq * aq + bq * bq + cq * cq + 2.0 * p1
    p = np.sqrt(p2 / 6.0)
    safe = np.where(p > 0, p, 1.0)
    # det((S - q I) / p) / 2 = cos(3 phi)
    B00, B11, B22, B01, B12, B02 = aq / safe, bq / safe, cq / safe, d / safe, e / safe, f / safe
    detB = (B00 * (B11 * B22 - B12 * B12) - B01 * (B01 * B22 - B12 * B02) + B02 * (B01 * B12 - B11 * B02))
    phi = np.arccos(np.clip(detB / 2.0, -1.0, 1.0)) / 3.0
    hi = q + 2.0 * p * np.cos(phi)
    lo = q + 2.0 * p * np.cos(phi + 2.0 * np.pi / 3.0)
    mid = 3.0 * q - hi - lo
    return np.stack([lo, mid, hi], axis=-1)

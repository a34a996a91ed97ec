"""Rigid transforms between camera frames.

Naming follows pycolmap: ``b_from_a`` maps coordinates in frame ``a`` to frame ``b``,
``x_b = R @ x_a + t``. The two-view result is ``cam1_from_cam0``. Compose as
``c_from_a = c_from_b @ b_from_a``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from twoview.geometry.rotation import (
    project_to_so3,
    quaternion_to_rotation,
    rotation_to_quaternion,
    so3_exp,
    so3_log,
)

#: Largest ``max |R R^T - I|`` of a rotation read from a file (stored to a few digits) that
#: :meth:`Pose.from_matrix` accepts and re-orthonormalises; a block further from a rotation
#: is refused. Readers of quaternions hold ``| |q| - 1 |`` to it too. Real datasets stay
#: below 2e-4 (7-Scenes 1.5e-4, TUM quaternions 9e-5, KITTI, ScanNet, Redwood ~1e-5).
ROTATION_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Pose:
    """A rigid transform ``x_b = R @ x_a + t``.

    Attributes:
        R: rotation, (3, 3) float64, orthonormal with det +1.
        t: translation, (3,) float64, in the units of the points (metres for metric poses).
    """

    R: np.ndarray
    t: np.ndarray

    def __post_init__(self):
        R = np.array(self.R, dtype=np.float64)
        t = np.array(self.t, dtype=np.float64).reshape(-1)
        if R.shape != (3, 3):
            raise ValueError(f"Pose.R must have shape (3, 3), got {R.shape}")
        if t.shape != (3,):
            raise ValueError(f"Pose.t must have 3 elements, got shape {t.shape}")
        if not (np.all(np.isfinite(R)) and np.all(np.isfinite(t))):
            raise ValueError("Pose has non-finite entries")
        if np.abs(R @ R.T - np.eye(3)).max() > 1e-5 or np.linalg.det(R) < 0:
            raise ValueError("Pose.R is not a rotation matrix (R @ R.T != I or det(R) < 0)")
        R.setflags(write=False)
        t.setflags(write=False)
        object.__setattr__(self, "R", R)
        object.__setattr__(self, "t", t)

    # --- construction -------------------------------------------------------------
    @classmethod
    def identity(cls) -> Pose:
        return cls(np.eye(3), np.zeros(3))

    @classmethod
    def from_matrix(cls, T: np.ndarray) -> Pose:
        """From a (4, 4) or (3, 4) matrix ``[R | t]``. R is re-orthonormalised (files
        store rotations to a few digits) when within :data:`ROTATION_TOLERANCE` of a
        rotation; a block that is no rotation (a scale, a reflection, another matrix) or a
        4x4 whose last row is not (0, 0, 0, 1) is refused with a ValueError (the one
        check every pose file goes through: ``twoview.datasets.common.pose_from_matrix_checked``)."""
        T = np.asarray(T, dtype=np.float64)
        if T.shape not in ((4, 4), (3, 4)):
            raise ValueError(f"pose matrix must be 4x4 or 3x4, got {T.shape}")
        if not np.all(np.isfinite(T)):
            raise ValueError("pose matrix has non-finite entries")
        if T.shape == (4, 4) and np.abs(T[3] - (0.0, 0.0, 0.0, 1.0)).max() > 1e-6:
            raise ValueError(f"pose matrix: last row must be (0, 0, 0, 1), got {T[3].tolist()}")
        R = T[:3, :3]
        drift = float(np.abs(R @ R.T - np.eye(3)).max())
        det = float(np.linalg.det(R))
        if not drift <= ROTATION_TOLERANCE or det < 0:
            why = f"det = {det:.3g}" if det < 0 else f"max |R R^T - I| = {drift:.3g} > {ROTATION_TOLERANCE:g}"
            raise ValueError(f"pose matrix: the 3x3 block is not a rotation ({why})")
        return cls(project_to_so3(R), T[:3, 3])

    @classmethod
    def from_quaternion(cls, q: np.ndarray, t: np.ndarray, order: str = "wxyz") -> Pose:
        """From a quaternion (4,) in ``order`` ("wxyz" or "xyzw") and translation (3,)."""
        return cls(quaternion_to_rotation(q, order), t)

    @classmethod
    def exp(cls, xi: np.ndarray) -> Pose:
        """From a 6-vector ``(omega, t)``: rotation vector and plain translation."""
        xi = np.asarray(xi, dtype=np.float64).reshape(6)
        return cls(so3_exp(xi[:3]), xi[3:])

    # --- conversion -----------------------------------------------------------------
    @property
    def matrix(self) -> np.ndarray:
        """(4, 4) homogeneous matrix."""
        T = np.eye(4)
        T[:3, :3] = self.R
        T[:3, 3] = self.t
        return T

    def quaternion(self, order: str = "wxyz") -> np.ndarray:
        return rotation_to_quaternion(self.R, order)

    def rotvec(self) -> np.ndarray:
        return so3_log(self.R)

    @property
    def center(self) -> np.ndarray:
        """Origin of frame ``b`` expressed in frame ``a``: ``-R.T @ t``, (3,)."""
        return -self.R.T @ self.t

    # --- algebra --------------------------------------------------------------------
    def inverse(self) -> Pose:
        """``a_from_b`` from ``b_from_a``."""
        return Pose(self.R.T, -self.R.T @ self.t)

    def __matmul__(self, other: Pose) -> Pose:
        """Composition: ``(c_from_b @ b_from_a)`` is ``c_from_a``."""
        if not isinstance(other, Pose):
            return NotImplemented
        return Pose(self.R @ other.R, self.R @ other.t + self.t)

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Transform points (..., 3) from frame ``a`` to frame ``b``."""
        points = np.asarray(points, dtype=np.float64)
        if points.shape[-1] != 3:
            raise ValueError(f"points must have shape (..., 3), got {points.shape}")
        return points @ self.R.T + self.t

    def scaled(self, s: float) -> Pose:
        """Same rotation, translation multiplied by ``s``."""
        return Pose(self.R, self.t * float(s))

    def __repr__(self) -> str:
        rv = np.degrees(np.linalg.norm(self.rotvec()))
        return f"Pose(rot={rv:.3f} deg, t=[{self.t[0]:.4f}, {self.t[1]:.4f}, {self.t[2]:.4f}])"

    def __eq__(self, other) -> bool:  # arrays make the dataclass default ambiguous
        return isinstance(other, Pose) and np.array_equal(self.R, other.R) and np.array_equal(self.t, other.t)

    __hash__ = None  # mutable-looking contents: not hashable

    def allclose(self, other: Pose, atol: float = 1e-9) -> bool:
        return np.allclose(self.R, other.R, atol=atol) and np.allclose(self.t, other.t, atol=atol)

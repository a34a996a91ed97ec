"""Robust relative pose solvers.

All take matched pixels ``kpts0, kpts1`` (N, 2), the two cameras, and optional depth
maps, and return a :class:`SolverOutput` giving ``cam1_from_cam0``.

- :func:`solve_essential`: 5-point essential matrix (PoseLib LO-RANSAC + bundle refinement);
  translation is a unit direction unless a depth map gives the scale.
- :func:`solve_pnp`: P3P on the 3D points of the view with depth (PoseLib); metric.
- :func:`solve_rigid3d`: 3-point Kabsch RANSAC on 3D-3D matches, then a refinement of the
  reprojection error in both images; metric.

Without matches, :func:`twoview.solvers.gicp.gicp` refines a pose by GICP between two depth
maps (small_gicp).
"""

from twoview.solvers.common import SolverOutput, sample_depth
from twoview.solvers.essential import solve_essential
from twoview.solvers.pnp import solve_pnp
from twoview.solvers.rigid3d import kabsch, solve_rigid3d
from twoview.solvers.scale import scale_from_depth

__all__ = [
    "SolverOutput",
    "kabsch",
    "sample_depth",
    "scale_from_depth",
    "solve_essential",
    "solve_pnp",
    "solve_rigid3d",
]

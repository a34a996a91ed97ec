"""Gaussian-mixture alignment (GARPS-style): single-view metric mixtures and their
differentiable alignment to refine a relative pose without 2D correspondences.

Quickstart::

    from twoview.gmm import refine_relative_pose, GMMConfig
    result = refine_relative_pose(im0, im1, cam0, cam1, depth0, depth1, init=front.cam1_from_cam0)

Heavy dependencies (torch for features and the L-BFGS path) are imported lazily.
"""

from twoview.gmm.align import align_mixtures, refine_relative_pose
from twoview.gmm.config import AlignConfig, BuildConfig, GMMConfig
from twoview.gmm.mixture import GaussianMixture, build_mixture

__all__ = [
    "AlignConfig",
    "BuildConfig",
    "GMMConfig",
    "GaussianMixture",
    "align_mixtures",
    "build_mixture",
    "refine_estimate",
    "refine_relative_pose",
    "read_ply",
    "write_ply",
]


def __getattr__(name):
    if name in ("read_ply", "write_ply"):
        from twoview.gmm import ply

        return getattr(ply, name)
    if name == "refine_estimate":
        from twoview.gmm.api import refine_estimate

        return refine_estimate
    raise AttributeError(name)

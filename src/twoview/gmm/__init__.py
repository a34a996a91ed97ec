"""Gaussian-mixture alignment (GARPS-style): single-view metric mixtures and their
differentiable alignment to refine a relative pose without 2D correspondences.

Quickstart::

    import twoview
    from twoview.gmm import refine_relative_pose, preset_config

    front = twoview.estimate_relative_pose("a.png", "b.png", K, K, depth0="a_d.png", depth1="b_d.png", depth_scale=1000)
    result = refine_relative_pose("a.png", "b.png", K, K, "a_d.png", "b_d.png", init=front.cam1_from_cam0,
                                  depth_scale=1000)            # config=preset_config("monocular") for predicted depth

Heavy dependencies (torch for features and the L-BFGS path) are imported lazily.
"""

from twoview.gmm.align import align_mixtures, refine_relative_pose
from twoview.gmm.config import PRESETS, AlignConfig, BuildConfig, GMMConfig, preset_config
from twoview.gmm.mixture import GaussianMixture, build_mixture

__all__ = [
    "AlignConfig",
    "BuildConfig",
    "GMMConfig",
    "GaussianMixture",
    "PRESETS",
    "align_mixtures",
    "build_mixture",
    "refine_estimate",
    "preset_config",
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

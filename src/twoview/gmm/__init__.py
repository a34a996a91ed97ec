"""Gaussian-mixture alignment (GARPS-style): single-view metric mixtures and their
differentiable alignment to refine a relative pose without 2D correspondences.

Quickstart::

    import twoview
    from twoview.gmm import refine_relative_pose, preset_config

    front = twoview.estimate_relative_pose("a.png", "b.png", K, K, depth0="a_d.png", depth1="b_d.png", depth_scale=1000)
    result = refine_relative_pose("a.png", "b.png", K, K, "a_d.png", "b_d.png", init=front.cam1_from_cam0,
                                  depth_scale=1000)            # config=preset_config("monocular") for predicted depth

Everything is imported on first use (the configuration alone needs neither scipy nor numba).
"""

from twoview.gmm.config import PRESETS, AlignConfig, BuildConfig, GMMConfig, preset_config

__all__ = [
    "AlignConfig",
    "BuildConfig",
    "GMMConfig",
    "GaussianMixture",
    "PRESETS",
    "align_mixtures",
    "build_mixture",
    "preset_config",
    "refine_relative_pose",
    "read_ply",
    "write_ply",
]

_LAZY = {
    "align_mixtures": "twoview.gmm.align", "refine_relative_pose": "twoview.gmm.align",
    "GaussianMixture": "twoview.gmm.mixture", "build_mixture": "twoview.gmm.mixture",
    "read_ply": "twoview.gmm.ply", "write_ply": "twoview.gmm.ply",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(name)

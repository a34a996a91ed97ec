"""Typed, strict configuration.

Every config is a dataclass. :meth:`StrictConfig.from_dict` rejects unknown keys and
values of the wrong type, naming the key path, so a typo never silently falls back to a
default. The CLI fills the same dataclasses.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any

from twoview.errors import ConfigError


class StrictConfig:
    """Mixin for dataclass configs: strict ``from_dict`` and ``to_dict``; values are
    checked by the subclass's ``validate`` on construction, however it is built."""

    def __post_init__(self):
        validate = getattr(self, "validate", None)
        if validate:
            validate()

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, _path: str = ""):
        data = dict(data or {})
        hints = typing.get_type_hints(cls)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(
                f"unknown key(s) {', '.join(_path + k for k in unknown)} in {cls.__name__}; "
                f"valid keys: {', '.join(sorted(names))}"
            )
        kwargs = {}
        for name, value in data.items():
            kwargs[name] = _coerce(hints[name], value, _path + name)
        return cls(**kwargs)

    @classmethod
    def coerce(cls, value, argument: str = "config"):
        """``value`` as this config: itself, built from a dict (strictly), or the defaults
        for None. Anything else is a TypeError naming ``argument``."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            return cls.from_dict(value)
        raise TypeError(f"{argument} must be {cls.__name__}, a dict of its fields or None, got {type(value).__name__}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes):
        """A copy with ``changes`` applied, checked like ``from_dict``."""
        d = self.to_dict()
        for k, v in changes.items():
            if k not in d:
                raise ConfigError(f"unknown key {k!r} in {type(self).__name__}")
            d[k] = v.to_dict() if isinstance(v, StrictConfig) else v
        return type(self).from_dict(d)


def _coerce(tp, value, path: str):
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if isinstance(tp, type) and issubclass(tp, StrictConfig):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping for {tp.__name__}, got {type(value).__name__}")
        return tp.from_dict(value, _path=path + ".")
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(a, value, path)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{path}: invalid value {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{path}: must be one of {list(args)}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {type(value).__name__}")
        inner = args[0] if args else Any
        return type(value)(_coerce(inner, v, f"{path}[{i}]") for i, v in enumerate(value)) if inner is not Any else value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true/false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        return value
    return value


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


MatcherName = typing.Literal["sift", "xfeat", "aliked", "disk"]
MatcherPrecision = typing.Literal["float32", "bfloat16"]
MatcherRuntime = typing.Literal["auto", "torch", "onnx"]
SolverMode = typing.Literal["auto", "essential", "pnp", "rigid3d", "monodepth"]


def default_matcher_name() -> str:
    """XFeat + LighterGlue where its packages are installed, else SIFT: on the real RGB-D
    suites XFeat's poses are the better ones (docs/results.md); SIFT needs no torch."""
    from twoview.matching.base import installed_matchers

    return "xfeat" if "xfeat" in installed_matchers() else "sift"


#: keypoints per image when ``MatcherConfig.max_keypoints`` is None (measured: benchmarks/results/pipeline.md)
DEFAULT_MAX_KEYPOINTS = {"xfeat": 1536, "sift": 2048, "aliked": 2048, "disk": 2048}


@dataclass
class MatcherConfig(StrictConfig):
    """Feature matching front end.

    Attributes:
        name: "sift" (OpenCV, no torch), "xfeat" (XFeat + LighterGlue), "aliked" or
            "disk" (+ LightGlue). Default: "xfeat" where it is installed
            (``twoview[learned]``), else "sift" (:func:`default_matcher_name`).
        max_keypoints: keypoints detected per image; None: the matcher's own default
            (:data:`DEFAULT_MAX_KEYPOINTS`: 1536 for XFeat, whose LighterGlue cost grows with
            the square of the count -- 2048 doubles its time for no measured gain on the real
            RGB-D suites -- and 2048 for the others). :attr:`keypoint_budget` resolves it.
        resize_max: longer image side fed to the matcher (pixels); keypoints are mapped
            back to full resolution. Default 1600 (hloc's SIFT setting): a 12 MP photo at full
            size costs SIFT about 8 s and 4 GB, for no gain in pose accuracy; images up to
            1600 px are matched as they are. None keeps the input size.
        ratio: Lowe ratio test threshold for SIFT (mutual nearest neighbours as well).
        sift_first_octave: -1 builds SIFT's scale space from the 2x upsampled image
            (Lowe's and OpenCV's default: about twice the keypoints, the extra ones at
            the finest scale), 0 from the image itself (VLFeat's default; about 3x
            less detection time).
        sift_contrast_threshold: OpenCV's SIFT contrast threshold (it is divided by
            the 3 layers per octave before use); lower keeps more, weaker keypoints.
        min_score: minimum match confidence for learned matchers.
        device: torch device for learned matchers.
        precision: "float32", or "bfloat16" to run XFeat's network and LightGlue's
            layers under torch autocast (LightGlue's final assignment and everything
            after it stay float32): XFeat + LighterGlue about 1.4x faster on CPUs with
            AVX512-BF16 or AMX (peak memory 1.3 GB instead of 0.6), slower without them.
        runtime: what runs XFeat + LighterGlue. "onnx": onnxruntime, on graphs exported
            once from the same weights (:mod:`twoview.matching.xfeat_onnx`): no torch
            import at start-up (about 1.5 s of a command's 3 s) and the same matches.
            "torch": torch, as the other learned matchers. "auto" (default): "onnx" where
            onnxruntime is installed and the matcher runs on the CPU in float32, else "torch".
    """

    name: MatcherName = field(default_factory=lambda: default_matcher_name())
    max_keypoints: int | None = None
    resize_max: int | None = 1600
    ratio: float = 0.85
    sift_first_octave: int = -1
    sift_contrast_threshold: float = 0.04
    min_score: float = 0.1
    device: str = "cpu"
    precision: MatcherPrecision = "float32"
    runtime: MatcherRuntime = "auto"

    @property
    def keypoint_budget(self) -> int:
        """``max_keypoints``, or the matcher's default when it is None."""
        return self.max_keypoints if self.max_keypoints is not None else DEFAULT_MAX_KEYPOINTS.get(self.name, 2048)

    def validate(self):
        _check(self.max_keypoints is None or self.max_keypoints >= 8,
               f"matcher.max_keypoints must be >= 8 or null, got {self.max_keypoints}")
        _check(0 < self.ratio <= 1, f"matcher.ratio must be in (0, 1], got {self.ratio}")
        _check(self.sift_first_octave in (-1, 0), f"matcher.sift_first_octave must be -1 or 0, got {self.sift_first_octave}")
        _check(0 < self.sift_contrast_threshold < 1,
               f"matcher.sift_contrast_threshold must be in (0, 1), got {self.sift_contrast_threshold}")
        _check(0 <= self.min_score < 1, f"matcher.min_score must be in [0, 1), got {self.min_score}")
        _check(self.resize_max is None or self.resize_max >= 64, "matcher.resize_max must be >= 64 or null")
        _check(self.runtime != "onnx" or (self.device == "cpu" and self.precision == "float32"),
               f"matcher.runtime 'onnx' runs on the CPU in float32; got device {self.device!r}, "
               f"precision {self.precision!r} (use runtime 'torch')")
        _check(self.runtime != "onnx" or self.name == "xfeat",
               f"matcher.runtime 'onnx' exists only for the 'xfeat' matcher, not {self.name!r}")

    @property
    def xfeat_runtime(self) -> str:
        """The runtime ``runtime`` resolves to for XFeat: "onnx" or "torch"."""
        if self.runtime != "auto":
            return self.runtime
        from twoview.onnx_cache import onnxruntime_available

        cpu32 = self.device == "cpu" and self.precision == "float32"
        return "onnx" if cpu32 and onnxruntime_available() else "torch"


@dataclass
class MonodepthConfig(StrictConfig):
    """Options of the scale-aware monocular-depth solver.

    Attributes:
        ransac_3d_error_rel: RANSAC inlier threshold on the 3D residual, as a fraction of
            the point's depth (monocular depth is far less precise than sensor depth).
        epipolar_gate: RANSAC also requires the Sampson error to be below this many
            times ``SolverConfig.max_reproj_error`` (rejects matches that are wrong but
            happen to agree in depth).
        depth_sigma_rel: assumed relative error of the depth maps after the scale
            correction; weights the depth-based residuals against the image residuals
            in the pose-only refinement (and in the joint one when fewer than 5 matches
            have depth in both views to estimate it from).
        max_relative_scale: relative scales outside ``[1/m, m]`` are rejected.
        epipolar_weight: weight of each match's Sampson residual relative to a
            reprojection residual (the epipolar error does not depend on depth at all).
        joint_refinement: after the pose-only refinement, refine pose, relative scale
            and one 3D point per match together, with each depth value as a prior of
            relative sigma estimated from the data
            (:func:`twoview.solvers.monodepth.refine_joint`).
        sigma_rel_min, sigma_rel_max: bounds of that estimated relative depth sigma.
        robust_k: Huber threshold of the joint refinement, in estimated sigmas
            (pixels for image residuals, relative depth for depth priors).
        depth_outlier_gate: in the joint refinement, the two depths of a match are
            dropped when they disagree by more than this many estimated sigmas.
        joint_iterations: Levenberg-Marquardt iterations of each joint round.
    """

    ransac_3d_error_rel: float = 0.08
    epipolar_gate: float = 3.0
    depth_sigma_rel: float = 0.05
    max_relative_scale: float = 3.0
    epipolar_weight: float = 1.0
    joint_refinement: bool = True
    sigma_rel_min: float = 0.003
    sigma_rel_max: float = 0.3
    robust_k: float = 2.0
    depth_outlier_gate: float = 3.5
    joint_iterations: int = 20

    def validate(self):
        if not 0 < self.ransac_3d_error_rel < 1:
            raise ConfigError("monodepth.ransac_3d_error_rel must be in (0, 1)")
        if self.epipolar_gate <= 0:
            raise ConfigError("monodepth.epipolar_gate must be > 0")
        if not 0 < self.depth_sigma_rel < 1:
            raise ConfigError("monodepth.depth_sigma_rel must be in (0, 1)")
        if self.epipolar_weight <= 0:
            raise ConfigError("monodepth.epipolar_weight must be > 0")
        if self.max_relative_scale <= 1:
            raise ConfigError("monodepth.max_relative_scale must be > 1")
        if not 0 < self.sigma_rel_min <= self.sigma_rel_max < 1:
            raise ConfigError("monodepth: need 0 < sigma_rel_min <= sigma_rel_max < 1")
        if self.robust_k <= 0:
            raise ConfigError("monodepth.robust_k must be > 0")
        if self.depth_outlier_gate <= 0:
            raise ConfigError("monodepth.depth_outlier_gate must be > 0")
        if self.joint_iterations < 1:
            raise ConfigError("monodepth.joint_iterations must be >= 1")


@dataclass
class SolverConfig(StrictConfig):
    """Robust pose solvers (LO-RANSAC, then refinement on the inliers).

    Attributes:
        mode: "auto" picks from the inputs: "rigid3d" with depth for both views, "pnp"
            with depth for one, "essential" with none.
            "monodepth": both depth maps are monocular predictions; pose plus a
            relative scale between them (:mod:`twoview.solvers.monodepth`).
        max_epipolar_error: essential-matrix inlier threshold, pixels (Sampson).
        max_reproj_error: PnP and rigid3d reprojection inlier threshold, pixels.
            Both are pixels of the image the matcher saw: for images it downsized
            (``MatcherConfig.resize_max``) they are scaled to input pixels by
            :attr:`twoview.result.Matches.noise_scale`.
        max_3d_error_rel: rigid3d RANSAC threshold on 3D residuals, as a fraction of depth.
        max_iterations, min_iterations, success_prob: RANSAC stopping rules.
        min_inliers: fewer inliers than this is a failure.
        min_depth, max_depth: depth range (metres) trusted for 3D points.
        seed: RANSAC seed for the numpy solvers (PoseLib's RANSAC is seeded internally).
        depth_noise: "estimate": after "rigid3d" / "pnp", refine with each inlier's depth
            as a prior whose noise is estimated from the data
            (:mod:`twoview.solvers.depth_noise`), so noisy or unregistered depth cannot
            make the rotation worse than the images say; "exact": the solvers' 3D points
            are the depth map's (their own refinement only).
        monodepth: options of the "monodepth" solver (its joint refinement's options also
            serve ``depth_noise="estimate"``).
    """

    mode: SolverMode = "auto"
    max_epipolar_error: float = 1.0
    max_reproj_error: float = 2.0
    max_3d_error_rel: float = 0.03
    max_iterations: int = 10000
    min_iterations: int = 100
    success_prob: float = 0.9999
    min_inliers: int = 15
    min_depth: float = 0.05
    max_depth: float = 80.0
    seed: int = 0
    depth_noise: typing.Literal["estimate", "exact"] = "estimate"
    monodepth: MonodepthConfig = field(default_factory=MonodepthConfig)

    def validate(self):
        for k in ("max_epipolar_error", "max_reproj_error", "max_3d_error_rel", "min_depth"):
            _check(getattr(self, k) > 0, f"solver.{k} must be > 0")
        _check(self.max_depth > self.min_depth, "solver.max_depth must exceed solver.min_depth")
        _check(0 < self.success_prob < 1, "solver.success_prob must be in (0, 1)")
        _check(self.min_iterations <= self.max_iterations, "solver.min_iterations must be <= max_iterations")
        _check(self.min_inliers >= 5, "solver.min_inliers must be >= 5")


def __getattr__(name):
    # the configuration of the whole estimate is the pipeline's (twoview.pipeline.config);
    # EstimatorConfig is its older name
    if name == "EstimatorConfig":
        from twoview.pipeline.config import PipelineConfig

        return PipelineConfig
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

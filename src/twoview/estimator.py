"""Two-view relative pose: the functional API (one call over a :class:`twoview.Pipeline`)
and the solver stage (matches -> the solver the depth allows -> metric scale)."""

from __future__ import annotations

import dataclasses
import json
import typing
import time
from collections import OrderedDict
from contextlib import contextmanager

import numpy as np

from twoview.config import SolverConfig
from twoview.errors import InputError
from twoview.geometry.camera import Camera
from twoview.result import Matches, PoseResult, confidence_from_inliers
from twoview._threads import blas_single_thread
from twoview.solvers import scale_from_depth, solve_essential, solve_pnp, solve_rigid3d
from twoview.solvers.covariance import pose_covariance

if typing.TYPE_CHECKING:
    from twoview.pipeline import Pipeline

ImageLike = "str | Path | np.ndarray"


class _Timer:
    def __init__(self):
        self.ms: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.ms[stage] = self.ms.get(stage, 0.0) + (time.perf_counter() - t0) * 1e3


#: pipelines of the functional API, by configuration (each owns its models; a few configs
#: at most, so repeated calls do not reload networks)
_PIPELINES: "OrderedDict[str, object]" = OrderedDict()
_MAX_PIPELINES = 4


def pipeline_for(config) -> "Pipeline":
    """The pipeline the functional API uses for ``config`` (built once per configuration
    and kept for the process; build a :class:`twoview.Pipeline` yourself to own it)."""
    from twoview.pipeline import Pipeline, PipelineConfig

    cfg = PipelineConfig.coerce(config)
    key = json.dumps(cfg.to_dict(), sort_keys=True)
    if key in _PIPELINES:
        _PIPELINES.move_to_end(key)
        return _PIPELINES[key]
    pipe = Pipeline(cfg)
    _PIPELINES[key] = pipe
    while len(_PIPELINES) > _MAX_PIPELINES:
        _PIPELINES.popitem(last=False)
    return pipe


def estimate_relative_pose(
    image0,
    image1,
    camera0=None,
    camera1=None,
    depth0=None,
    depth1=None,
    config=None,
    depth_scale: float | None = None,
    matches: Matches | None = None,
    depth_model=None,
    depth_kind: str = "sensor",
) -> PoseResult:
    """Estimate ``cam1_from_cam0`` from two images.

    Args:
        image0, image1: paths or RGB uint8 arrays (H, W, 3) (grey (H, W) accepted).
        camera0, camera1: :class:`Camera`, a 3x3 K, (fx, fy, cx, cy), or a mapping
            ``{"K": ..., "dist": (k1, k2, p1, p2[, k3])}``. When None, the
            focal length comes from EXIF or a 65 deg field-of-view guess (with a warning).
        depth0, depth1: z-depth (H, W) with NaN/0 invalid, or a depth file path. Floats are
            metres; integers (a 16-bit PNG read as is) are units, 65535 invalid.
        depth_scale: units per metre of the depth (1000 for mm, 5000 for TUM): required
            for integer depth, files or arrays; divides floating-point depth when given.
        config: the pipeline's options (a :class:`twoview.PipelineConfig` or a dict of its
            fields, e.g. ``{"matcher": {"name": "xfeat"}}``; unknown keys are refused).
            None: the default pipeline.
        matches: precomputed matches; skips the matchers.
        depth_model: instead of depth maps, a monocular metric depth model (folder or
            Hugging Face hub id available offline, or a
            :class:`~twoview.depth.estimators.DepthModelConfig`) predicts both depths
            (cached on disk); same as ``config["depth"]["model"]``.
        depth_kind: what the given depth maps are: "sensor" (measured) or "monocular"
            (predicted by a network; their scales are then estimated).

    Returns:
        :class:`PoseResult`. Metric when any depth is given (or predicted),
        direction-only otherwise; ``info["depth_source"]`` says which ("file",
        "model" or "none"), ``info["pipeline"]`` the stages that ran and the
        configuration used. Estimation failures return ``success=False`` with a reason;
        bad input raises :class:`~twoview.errors.InputError`.
    """
    from twoview.pipeline import PipelineConfig
    from twoview.view import load_views

    cfg = PipelineConfig.coerce(config)
    if depth_model is not None:
        if depth0 is not None or depth1 is not None:
            raise InputError("depth_model", "give either depth maps (depth0/depth1) or a depth model, not both")
        from twoview.depth.estimators import DepthModelConfig

        model = depth_model if isinstance(depth_model, DepthModelConfig) else DepthModelConfig(model=str(depth_model))
        cfg = cfg.replace(depth=cfg.depth.replace(model=model))
    view0, view1 = load_views(image0, image1, camera0, camera1, depth0, depth1, depth_scale=depth_scale,
                              depth_kind=depth_kind)
    return pipeline_for(cfg)(view0, view1, matches=matches)


def _solver_config(config) -> SolverConfig:
    """A :class:`SolverConfig` from one, a pipeline configuration, or a dict of either."""
    from twoview.pipeline import PipelineConfig

    if isinstance(config, SolverConfig):
        return config
    if isinstance(config, dict) and not (set(config) - {f.name for f in dataclasses.fields(SolverConfig)}) and config:
        return SolverConfig.from_dict(config)
    return PipelineConfig.coerce(config).solver


def _check_matches(matches: Matches, cam0: Camera, cam1: Camera) -> None:
    """Given matches must be finite pixels of the two images (a normalised or other-size
    set would otherwise fail later with a misleading reason)."""
    if not isinstance(matches, Matches):
        raise InputError("matches", f"expected twoview.Matches, got {type(matches).__name__}")
    for cam, name in ((cam0, "cam0"), (cam1, "cam1")):
        if not isinstance(cam, Camera):  # a bare K lacks the image size the checks need
            raise InputError(name, f"expected a twoview.Camera, got {type(cam).__name__}; build one with "
                             "Camera.from_K(K, width, height) or Camera(fx, fy, cx, cy, width, height)")
    for k, cam, view in ((matches.kpts0, cam0, 0), (matches.kpts1, cam1, 1)):
        if not np.all(np.isfinite(k)):
            raise InputError("matches", f"keypoints of image {view} have NaN or infinite coordinates")
        # half a pixel beyond the border is still on the image (pixel centres at integers)
        outside = (k[:, 0] < -1) | (k[:, 1] < -1) | (k[:, 0] > cam.width) | (k[:, 1] > cam.height)
        if outside.any():
            raise InputError("matches", f"{int(outside.sum())} of {len(k)} keypoints lie outside image {view} "
                             f"({cam.width}x{cam.height}): matches must be in its pixels")


@blas_single_thread
def estimate_from_matches(
    matches: Matches,
    cam0: Camera,
    cam1: Camera,
    depth0: np.ndarray | None = None,
    depth1: np.ndarray | None = None,
    config=None,
    timings_ms: dict | None = None,
    monocular: bool = False,
) -> PoseResult:
    """Solver stage only: pick a solver from the available depth and run it.

    Args:
        matches: putative matches in pixels.
        cam0, cam1: pinhole cameras of the matches' pixels.
        depth0, depth1: prepared depth maps (metres, NaN invalid) or None.
        config: a :class:`SolverConfig`, or a pipeline configuration (its ``solver``), or
            a dict of either's fields; None: the defaults.
        timings_ms: stage times to add this stage's to.
        monocular: the depth maps are monocular predictions: solver mode "auto" picks
            "monodepth" (pose plus the relative scale of the two maps).
    """
    cfg = _solver_config(config)
    _check_matches(matches, cam0, cam1)
    if matches.noise_scale != 1.0:
        # the thresholds are in pixels of the image the matcher saw, where keypoints are
        # good to about a pixel; in input pixels a downsized match is that much coarser
        cfg = cfg.replace(max_epipolar_error=cfg.max_epipolar_error * matches.noise_scale,
                          max_reproj_error=cfg.max_reproj_error * matches.noise_scale)
    timer = _Timer()
    timer.ms.update(timings_ms or {})
    n = len(matches)
    common = dict(num_matches=n, matches=matches, timings_ms=timer.ms)
    if n < max(cfg.min_inliers, 5):
        return PoseResult.failure(f"too few matches ({n}; need at least {max(cfg.min_inliers, 5)})", **common)
    flow = float(np.median(np.linalg.norm(matches.kpts1 - matches.kpts0, axis=1)))

    mode = cfg.mode
    if mode == "auto":
        both = depth0 is not None and depth1 is not None
        if both and monocular:
            mode = "monodepth"
        else:
            mode = "rigid3d" if both else "pnp" if (depth0 is not None or depth1 is not None) else "essential"
    if mode == "rigid3d" and (depth0 is None or depth1 is None):
        raise InputError("solver.mode", "rigid3d needs depth for both views")
    if mode == "pnp" and depth0 is None and depth1 is None:
        raise InputError("solver.mode", "pnp needs depth for at least one view")
    if mode == "monodepth" and (depth0 is None or depth1 is None):
        raise InputError("solver.mode", "monodepth needs depth for both views")

    if flow < 0.5:
        # Same (or re-encoded) image: any solver would return a near-identity pose, which
        # is never reported as a success.
        return PoseResult.failure(
            f"the matched points do not move between the images (median flow {flow:.2f} px < 0.5 px): "
            "identical or near-identical views, no camera motion to estimate",
            solver=mode, info={"no_motion": True}, **common,
        )
    k0, k1 = matches.kpts0, matches.kpts1
    tried = []
    out = None
    with timer("solve"):
        if mode == "monodepth":
            from twoview.solvers.monodepth import solve_monodepth

            out = solve_monodepth(k0, k1, cam0, cam1, depth0, depth1, cfg)
            tried.append(("monodepth", out))
            if out.pose is None:
                mode = "pnp"
        if mode == "rigid3d":
            out = solve_rigid3d(k0, k1, cam0, cam1, depth0, depth1, cfg)
            tried.append(("rigid3d", out))
            if out.pose is None:  # depth overlap too small: one view's depth may still do
                mode = "pnp"
        if mode == "pnp":
            out = solve_pnp(k0, k1, cam0, cam1, depth0, depth1, cfg)
            tried.append(("pnp", out))
            if out.pose is None and depth1 is not None and depth0 is not None:
                out = solve_pnp(k0, k1, cam0, cam1, None, depth1, cfg)
                tried.append(("pnp", out))
            if out.pose is None:
                mode = "essential"
        if mode == "essential":
            out = solve_essential(k0, k1, cam0, cam1, cfg)
            tried.append(("essential", out))
    solver_name = tried[-1][0]
    if out.pose is None:
        reason = "; ".join(f"{name}: {o.reason}" if not o.reason.startswith(name) else o.reason for name, o in tried if o)
        return PoseResult.failure(reason, solver=solver_name, inliers=out.inliers, num_inliers=out.num_inliers, **common)

    pose, metric, info = out.pose, out.metric, dict(out.info)
    inl = out.inliers
    if solver_name in ("rigid3d", "pnp") and cfg.depth_noise == "estimate":
        from twoview.solvers.depth_noise import refine_with_depth_noise

        with timer("depth_noise"):
            pose, info["depth_noise"] = refine_with_depth_noise(pose, k0[inl], k1[inl], cam0, cam1, depth0, depth1, cfg)
    depth_scale = None
    if not metric and (depth0 is not None or depth1 is not None):
        with timer("scale"):
            s, sinfo = scale_from_depth(pose, k0[inl], k1[inl], cam0, cam1, depth0, depth1)
        info["scale_from_depth"] = sinfo
        if s is not None:
            depth_scale = (s, sinfo["spread"], sinfo["num_points"])
    with timer("covariance"):
        cov, note = _pose_covariance(solver_name, out, pose, inl, k0, k1, cam0, cam1, cfg, depth_scale)
    if cov is None:
        info["covariance"] = note
    if depth_scale is not None:
        pose, metric = pose.scaled(depth_scale[0]), True
        solver_name = "essential+depth-scale"
    if len(tried) > 1:
        info["fallbacks"] = [f"{name}: {o.reason}" for name, o in tried[:-1] if o is not None]
    conf = confidence_from_inliers(out.num_inliers, n, cfg.min_inliers)
    return PoseResult(
        success=True,
        cam1_from_cam0=pose,
        metric=metric,
        solver=solver_name,
        num_inliers=out.num_inliers,
        confidence=conf,
        inliers=out.inliers,
        covariance=cov,
        info=info,
        **common,
    )


def _pose_covariance(solver, out, pose, inl, k0, k1, cam0, cam1, cfg, depth_scale):
    """The covariance of the solver's pose from the residuals it minimised (None + why when unknown)."""
    if solver == "monodepth":
        # Its residuals include per-point depths and a scale between the maps; a pose-only
        # Jacobian would claim more certainty than the scale error allows.
        return None, "not modelled for the monodepth solver"
    z0, z1 = (z[inl] if z is not None else None for z in out.depths)
    threshold = cfg.max_reproj_error if (z0 is not None or z1 is not None) else cfg.max_epipolar_error
    return pose_covariance(pose, k0[inl], k1[inl], cam0, cam1, z0, z1, depth_scale, inlier_threshold=threshold)

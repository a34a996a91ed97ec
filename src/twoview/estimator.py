"""Two-view relative pose: matching, solver selection, metric scale."""

from __future__ import annotations

import dataclasses
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from twoview.config import EstimatorConfig
from twoview.errors import InputError
from twoview.geometry.camera import DEFAULT_HFOV_DEG, MAX_PINHOLE_FOV_DEG, Camera
from twoview.io.depth import as_depth_map
from twoview.io.images import check_image_array, load_image
from twoview.matching import get_matcher
from twoview.result import IDENTICAL_IMAGES, Matches, PoseResult, confidence_from_inliers, identical_images
from twoview._threads import blas_single_thread
from twoview.solvers import scale_from_depth, solve_essential, solve_pnp, solve_rigid3d
from twoview.solvers.covariance import pose_covariance

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


def _as_image(image, name: str) -> np.ndarray:
    if isinstance(image, (str, Path)):
        return load_image(image, name)
    return check_image_array(image, name)


def _as_depth(depth, image_size, name: str, scale: float | None) -> np.ndarray | None:
    return None if depth is None else as_depth_map(depth, image_size, scale, name)


def _as_camera(cam, image, image_path, name: str) -> Camera:
    h, w = image.shape[:2]
    if cam is None:
        if isinstance(image_path, (str, Path)):
            return Camera.from_exif_or_guess(image_path, w, h)
        warnings.warn(
            f"{name}: no intrinsics given for an in-memory image; assuming a {DEFAULT_HFOV_DEG:.0f} deg "
            "horizontal field of view. Pass K for accurate poses.",
            stacklevel=3,
        )
        return Camera.from_fov(DEFAULT_HFOV_DEG, w, h, source="fov-guess")
    if isinstance(cam, Camera):
        if (cam.width, cam.height) != (w, h):
            raise InputError(
                name, f"camera is for a {cam.width}x{cam.height} image but the image is {w}x{h}; use Camera.scaled()"
            )
        return cam
    dist = None
    if isinstance(cam, dict):  # {"K": 3x3 or (fx, fy, cx, cy), "dist": (k1, k2, p1, p2[, k3])}
        unknown = set(cam) - {"K", "dist"}
        if unknown or "K" not in cam:
            raise InputError(name, f"a camera mapping needs key 'K' and optionally 'dist'; got {sorted(cam)}")
        cam, dist = cam["K"], cam.get("dist")
    try:
        K = np.asarray(cam, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(name, f"expected a Camera, a 3x3 K or (fx, fy, cx, cy), got {cam!r}") from None
    if K.shape == (3, 3):
        c = Camera.from_K(K, w, h, name)
    elif K.shape in ((4,), (3,)):
        c = Camera.from_params(K, w, h, name)
    else:
        raise InputError(name, f"expected a Camera, a 3x3 K or (fx, fy, cx, cy), got shape {K.shape}")
    if dist is not None:
        c = Camera(c.fx, c.fy, c.cx, c.cy, w, h, dist=tuple(np.asarray(dist, dtype=np.float64).ravel()))
    if not (-0.5 <= c.cx <= w - 0.5 and -0.5 <= c.cy <= h - 0.5):
        raise InputError(name, f"principal point ({c.cx:.1f}, {c.cy:.1f}) lies outside the {w}x{h} image")
    # A pinhole camera sees well under 180 deg; a tiny focal length is K for another image size or swapped entries.
    fov_x, fov_y = (np.degrees(2 * np.arctan(n / (2 * f))) for n, f in ((w, c.fx), (h, c.fy)))
    if max(fov_x, fov_y) > MAX_PINHOLE_FOV_DEG:
        raise InputError(
            name, f"focal lengths fx={c.fx:g}, fy={c.fy:g} px give a {fov_x:.1f} x {fov_y:.1f} deg field of view on the "
            f"{w}x{h} image; a pinhole camera is under {MAX_PINHOLE_FOV_DEG:.0f} deg (is K for another image size?)"
        )
    return c


def load_pair(image0, image1, camera0=None, camera1=None, depth0=None, depth1=None, depth_scale=None):
    """Images, cameras and depths as :func:`estimate_relative_pose` accepts them (paths or
    arrays) -> ``(im0, im1, cam0, cam1, d0, d1)``: uint8 images (H, W, 3) or (H, W),
    :class:`Camera` objects, depth (H, W) float64 metres with NaN invalid, or None."""
    im0 = _as_image(image0, "image0")
    im1 = _as_image(image1, "image1")
    cam0 = _as_camera(camera0, im0, image0, "camera0")
    cam1 = _as_camera(camera1, im1, image1, "camera1")
    d0 = _as_depth(depth0, cam0.size, "depth0", depth_scale)
    d1 = _as_depth(depth1, cam1.size, "depth1", depth_scale)
    return im0, im1, cam0, cam1, d0, d1


@blas_single_thread
def estimate_relative_pose(
    image0,
    image1,
    camera0=None,
    camera1=None,
    depth0=None,
    depth1=None,
    config: EstimatorConfig | dict | None = None,
    depth_scale: float | None = None,
    matches: Matches | None = None,
    depth_model=None,
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
        config: matcher and solver options (an :class:`EstimatorConfig` or a dict of its
            fields, e.g. ``{"matcher": {"name": "xfeat"}}``; unknown keys are refused).
        matches: precomputed matches; skips the matcher.
        depth_model: instead of depth maps, a monocular metric depth model (folder or
            Hugging Face hub id available offline, or a
            :class:`~twoview.depth.estimators.DepthModelConfig`) predicts both depths
            (cached on disk); solver mode "auto" then becomes "monodepth".

    Returns:
        :class:`PoseResult`. Metric when any depth is given (or predicted),
        direction-only otherwise; ``info["depth_source"]`` says which ("file",
        "model" or "none").
        Estimation failures return ``success=False`` with a reason; bad input raises
        :class:`~twoview.errors.InputError`.
    """
    cfg = EstimatorConfig.coerce(config)
    timer = _Timer()
    with timer("load"):
        im0, im1, cam0, cam1, d0, d1 = load_pair(image0, image1, camera0, camera1, depth0, depth1, depth_scale)
    if identical_images(im0, im1):
        return PoseResult.failure(IDENTICAL_IMAGES, timings_ms=timer.ms)
    source = {"depth_source": "none" if d0 is None and d1 is None else "file"}
    if depth_model is not None:
        if d0 is not None or d1 is not None:
            raise InputError("depth_model", "give either depth maps (depth0/depth1) or a depth model, not both")
        from twoview.depth.sources import predict_depth_pair

        with timer("depth"):
            d0, d1, minfo = predict_depth_pair(depth_model, im0, im1, cam0, cam1)
        source = {"depth_source": "model", "depth_model": minfo}
        if cfg.solver.mode == "auto":
            cfg = cfg.replace(solver=cfg.solver.replace(mode="monodepth"))
    if matches is None:
        with timer("match"):
            matches = get_matcher(cfg.matcher).match(im0, im1)
    if cam0.dist is not None or cam1.dist is not None:
        # Match on the raw images, solve on an ideal pinhole model.
        with timer("undistort"):
            matches = dataclasses.replace(matches, kpts0=cam0.undistort_points(matches.kpts0),
                                          kpts1=cam1.undistort_points(matches.kpts1))
            d0 = cam0.undistort_depth(d0) if d0 is not None else None
            d1 = cam1.undistort_depth(d1) if d1 is not None else None
            cam0, cam1 = cam0.pinhole, cam1.pinhole
    res = estimate_from_matches(matches, cam0, cam1, d0, d1, cfg, timer.ms)
    res.info.update(source)
    return res


def _check_matches(matches: Matches, cam0: Camera, cam1: Camera) -> None:
    """Given matches must be finite pixels of the two images (a normalised or other-size
    set would otherwise fail later with a misleading reason)."""
    if not isinstance(matches, Matches):
        raise InputError("matches", f"expected twoview.Matches, got {type(matches).__name__}")
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
    config: EstimatorConfig | dict | None = None,
    timings_ms: dict | None = None,
) -> PoseResult:
    """Solver stage only: pick a solver from the available depth and run it.

    Args:
        matches: putative matches in pixels.
        depth0, depth1: prepared depth maps (metres, NaN invalid) or None.
    """
    cfg = EstimatorConfig.coerce(config).solver
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
        mode = "rigid3d" if (depth0 is not None and depth1 is not None) else "pnp" if (depth0 is not None or depth1 is not None) else "essential"
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
            solver=mode, **common,
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

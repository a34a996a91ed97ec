"""Peer methods (other libraries) in the same harness, each only when installed.

=====================  =====================================================  ==========
name                   what                                                   depth
=====================  =====================================================  ==========
opencv-magsac          SIFT matches -> ``cv2.findEssentialMat`` (USAC_MAGSAC)  none
                       + ``cv2.recoverPose``; direction only
pycolmap               SIFT matches -> ``pycolmap.estimate_calibrated_two_     none
                       view_geometry`` (LO-RANSAC 1 px, relative pose);
                       direction only
open3d-odometry        Open3D dense RGB-D odometry (hybrid photometric +       both
                       geometric Jacobian, coarse to fine)
open3d-colored-icp     Open3D multi-scale coloured ICP (Park et al. 2017)      both
small_gicp             small_gicp GICP, coarse-to-fine                         both
=====================  =====================================================  ==========

The matching peers use twoview's SIFT matcher (the same correspondences as the ``sift``
method), so they compare robust estimators on identical input. The dense peers start
from identity unless named ``A@B``: then method ``B``'s pose is the initial guess (e.g.
``small_gicp@sift-rigid3d``); the reported time includes ``B``'s. In ``twoview bench``
``B``'s prediction is reused from the run's cache when ``B`` is run too (see
:mod:`twoview.bench.methods`).

Scales are derived from each pair's scene, not per dataset: ``v`` = 4 pixel footprints
at the median depth of view 0 (``4 * median_depth / f``); coloured ICP runs at voxel sizes
``4v, 2v, v`` (correspondence distance 1.5x the voxel), GICP at ``4v`` then ``v``
(correspondence distances ``16v`` then ``4v``), odometry with ``depth_diff_max`` = 3% of
the median depth, ``depth_max`` = 1.2x the 99th depth percentile and 60/30/15 iterations
per pyramid level (on ICL-NUIM gap-10 pairs Open3D's 20/10/5 with a 1.5% gate failed
where this converges).
"""

from __future__ import annotations

import importlib.util
import re

import numpy as np

from twoview.bench.methods import BenchMethod, make_method
from twoview.errors import ConfigError
from twoview.geometry.pose import Pose
from twoview.result import PoseResult
from twoview.solvers.gicp import scene_voxel


def _have(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


# --- shared helpers -----------------------------------------------------------------------
def _sift_matches(sample):
    from twoview.io.images import load_image
    from twoview.matching import get_matcher

    return get_matcher("sift").match(load_image(sample.image0, "image0"), load_image(sample.image1, "image1"))


def _check_options(name: str, options: dict, allowed=("init",)) -> None:
    extra = sorted(set(options) - set(allowed))
    if extra:
        raise ConfigError(f"unknown option(s) for {name}: {', '.join(extra)}")


def _init_method(options: dict):
    init = options.get("init")
    if init is None:
        return None
    m = make_method(init)
    if not m.metric:
        raise ConfigError(f"initial pose method {init!r} is direction-only; a metric method is needed to initialise")
    return m


def _initial_pose(init, sample, depth0, depth1):
    """(4x4 initial cam1_from_cam0, info) or (None, failure reason)."""
    if init is None:
        return np.eye(4), {"init": "identity"}
    r = init(sample, depth0, depth1)
    if not r.success or not r.metric:
        return None, f"initial pose ({init.name}) failed: {r.reason or 'not metric'}"
    return r.cam1_from_cam0.matrix, {"init": init.name, "init_solver": r.solver}


def _need_depths(name, depth0, depth1):
    if depth0 is None or depth1 is None:
        return PoseResult.failure(f"{name} needs depth for both views", solver=name)
    return None


# --- OpenCV ------------------------------------------------------------------------------
def make_opencv_magsac(options: dict) -> BenchMethod:
    """cv2.findEssentialMat(USAC_MAGSAC, 1 px) + recoverPose on SIFT matches."""
    _check_options("opencv-magsac", options, ())

    def run(sample, depth0, depth1):
        import time

        import cv2

        t0 = time.perf_counter()
        m = _sift_matches(sample)
        t1 = time.perf_counter()
        n = len(m)
        if n < 5:
            return PoseResult.failure(f"too few matches ({n})", solver="opencv-magsac", num_matches=n)
        c0, c1 = sample.camera0, sample.camera1
        # normalised coordinates: each image keeps its own K; threshold 1 px in focal units
        x0 = c0.pinhole.bearings(c0.undistort_points(m.kpts0))
        x1 = c1.pinhole.bearings(c1.undistort_points(m.kpts1))
        f = 0.5 * (np.sqrt(c0.fx * c0.fy) + np.sqrt(c1.fx * c1.fy))
        E, mask = cv2.findEssentialMat(x0, x1, np.eye(3), method=cv2.USAC_MAGSAC, prob=0.9999, threshold=1.0 / f, maxIters=10000)
        if E is None or E.shape != (3, 3):
            return PoseResult.failure("findEssentialMat found no model", solver="opencv-magsac", num_matches=n)
        inl, R, t, pmask = cv2.recoverPose(E, x0, x1, np.eye(3), mask=mask.copy())
        ms = {"match": (t1 - t0) * 1e3, "solve": (time.perf_counter() - t1) * 1e3}
        if inl < 5:
            return PoseResult.failure(f"recoverPose kept {inl} points", solver="opencv-magsac", num_matches=n, timings_ms=ms)
        return PoseResult(success=True, cam1_from_cam0=Pose(R, t.ravel()), metric=False, solver="opencv-magsac",
                          num_matches=n, num_inliers=int(inl), timings_ms=ms)

    return BenchMethod("opencv-magsac", run, (False, False), False)


# --- pycolmap ----------------------------------------------------------------------------
def _colmap_camera(cam):
    import pycolmap

    if cam.dist is None:
        return pycolmap.Camera(model="PINHOLE", width=cam.width, height=cam.height, params=[cam.fx, cam.fy, cam.cx, cam.cy])
    d = list(cam.dist) + [0.0] * (5 - len(cam.dist))
    return pycolmap.Camera(model="FULL_OPENCV", width=cam.width, height=cam.height,
                           params=[cam.fx, cam.fy, cam.cx, cam.cy, d[0], d[1], d[2], d[3], d[4], 0.0, 0.0, 0.0])


def make_pycolmap(options: dict) -> BenchMethod:
    """pycolmap.estimate_calibrated_two_view_geometry with relative pose on SIFT matches."""
    _check_options("pycolmap", options, ())

    def run(sample, depth0, depth1):
        import time

        import pycolmap

        t0 = time.perf_counter()
        m = _sift_matches(sample)
        t1 = time.perf_counter()
        n = len(m)
        if n < 5:
            return PoseResult.failure(f"too few matches ({n})", solver="pycolmap", num_matches=n)
        opts = pycolmap.TwoViewGeometryOptions()
        opts.compute_relative_pose = True
        opts.ransac.max_error = 1.0  # px, the same inlier threshold as opencv-magsac and twoview
        # (COLMAP's pixel origin is the pixel corner; the shift cancels: points and
        # principal point are given in the same convention)
        g = pycolmap.estimate_calibrated_two_view_geometry(
            _colmap_camera(sample.camera0), m.kpts0, _colmap_camera(sample.camera1), m.kpts1,
            np.stack([np.arange(n), np.arange(n)], 1).astype(np.uint32), opts,
        )
        ms = {"match": (t1 - t0) * 1e3, "solve": (time.perf_counter() - t1) * 1e3}
        cfg = pycolmap.TwoViewGeometryConfiguration(int(g.config))
        ok = cfg in (pycolmap.TwoViewGeometryConfiguration.CALIBRATED, pycolmap.TwoViewGeometryConfiguration.PLANAR_OR_PANORAMIC,
                     pycolmap.TwoViewGeometryConfiguration.PLANAR)
        T = np.asarray(g.cam2_from_cam1.matrix()) if ok else None
        if T is None or not np.all(np.isfinite(T)) or np.linalg.norm(T[:, 3]) < 1e-12:
            return PoseResult.failure(f"no calibrated relative pose (configuration {cfg.name})", solver="pycolmap",
                                      num_matches=n, timings_ms=ms)
        return PoseResult(success=True, cam1_from_cam0=Pose.from_matrix(T), metric=False, solver=f"pycolmap-{cfg.name.lower()}",
                          num_matches=n, num_inliers=len(g.inlier_matches), timings_ms=ms)

    return BenchMethod("pycolmap", run, (False, False), False)


# --- Open3D ------------------------------------------------------------------------------
def _o3d_rgbd(image_path, depth, cam, depth_max):
    import cv2
    import open3d as o3d

    from twoview.io.images import load_image

    rgb = load_image(image_path, "image")
    if cam.dist is not None:
        rgb = cv2.undistort(rgb, cam.K, np.array(cam.dist))
    d = cam.undistort_depth(depth)  # onto the pinhole model
    d = np.where(np.isfinite(d), d, 0.0).astype(np.float32)
    return o3d.geometry.RGBDImage.create_from_color_and_depth(
        o3d.geometry.Image(np.ascontiguousarray(rgb)), o3d.geometry.Image(d), depth_scale=1.0,
        depth_trunc=float(depth_max), convert_rgb_to_intensity=False,
    )


def _o3d_intrinsic(cam):
    import open3d as o3d

    return o3d.camera.PinholeCameraIntrinsic(cam.width, cam.height, cam.fx, cam.fy, cam.cx, cam.cy)


def _depth_stats(depth0, depth1):
    z = np.concatenate([depth0[np.isfinite(depth0)], depth1[np.isfinite(depth1)]])
    return float(np.median(z)), float(np.percentile(z, 99))


def make_open3d_odometry(options: dict) -> BenchMethod:
    """Open3D compute_rgbd_odometry, hybrid Jacobian, camera 0's intrinsics for both views."""
    _check_options("open3d-odometry", options)
    init = _init_method(options)

    def run(sample, depth0, depth1):
        import open3d as o3d

        fail = _need_depths("open3d-odometry", depth0, depth1)
        if fail:
            return fail
        T0, info = _initial_pose(init, sample, depth0, depth1)
        if T0 is None:
            return PoseResult.failure(info, solver="open3d-odometry")
        med, p99 = _depth_stats(depth0, depth1)
        depth_max = 1.2 * p99
        src = _o3d_rgbd(sample.image0, depth0, sample.camera0, depth_max)
        # the odometry takes one intrinsic: view 1 is read with camera 0's (same sensor)
        tgt = _o3d_rgbd(sample.image1, depth1, sample.camera1, depth_max)
        # a 3% depth gate (Open3D's 3 cm default at 1 m, scaled to the scene) and 3x Open3D's
        # iterations per pyramid level: pairs here are wider apart than consecutive frames
        opt = o3d.pipelines.odometry.OdometryOption(o3d.utility.IntVector([60, 30, 15]), 0.03 * med, 0.0, depth_max)
        ok, T, _ = o3d.pipelines.odometry.compute_rgbd_odometry(
            src, tgt, _o3d_intrinsic(sample.camera0.pinhole), T0,
            o3d.pipelines.odometry.RGBDOdometryJacobianFromHybridTerm(), opt,
        )
        if not ok:
            return PoseResult.failure("Open3D RGB-D odometry did not converge", solver="open3d-odometry", info=info)
        return PoseResult(success=True, cam1_from_cam0=Pose.from_matrix(T), metric=True, solver="open3d-odometry", info=info)

    return BenchMethod("open3d-odometry", run, (True, True), True)


def make_open3d_colored_icp(options: dict) -> BenchMethod:
    """Open3D multi-scale coloured ICP (voxel 4v, 2v, v; iterations 50, 30, 14)."""
    _check_options("open3d-colored-icp", options)
    init = _init_method(options)

    def run(sample, depth0, depth1):
        import open3d as o3d

        fail = _need_depths("open3d-colored-icp", depth0, depth1)
        if fail:
            return fail
        T, info = _initial_pose(init, sample, depth0, depth1)
        if T is None:
            return PoseResult.failure(info, solver="open3d-colored-icp")
        _, p99 = _depth_stats(depth0, depth1)
        v = scene_voxel(depth0, sample.camera0)
        pcs = []
        for im, d, cam in ((sample.image0, depth0, sample.camera0), (sample.image1, depth1, sample.camera1)):
            rgbd = _o3d_rgbd(im, d, cam, 1.2 * p99)
            pcs.append(o3d.geometry.PointCloud.create_from_rgbd_image(rgbd, _o3d_intrinsic(cam.pinhole)))
        reg = None
        for scale, iters in ((4.0, 50), (2.0, 30), (1.0, 14)):
            r = scale * v
            src, tgt = (pc.voxel_down_sample(r) for pc in pcs)
            for pc in (src, tgt):
                pc.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=2 * r, max_nn=30))
            try:
                reg = o3d.pipelines.registration.registration_colored_icp(
                    src, tgt, 1.5 * r, T, o3d.pipelines.registration.TransformationEstimationForColoredICP(),
                    o3d.pipelines.registration.ICPConvergenceCriteria(relative_fitness=1e-6, relative_rmse=1e-6, max_iteration=iters),
                )
            except RuntimeError as e:  # e.g. too few correspondences at this scale
                msg = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip()
                return PoseResult.failure(f"coloured ICP failed at voxel {r:.3f} m: {msg}", solver="open3d-colored-icp", info=info)
            T = reg.transformation
        info.update(voxel_m=v, fitness=float(reg.fitness), inlier_rmse=float(reg.inlier_rmse))
        if reg.fitness <= 0:
            return PoseResult.failure("coloured ICP found no correspondences", solver="open3d-colored-icp", info=info)
        return PoseResult(success=True, cam1_from_cam0=Pose.from_matrix(T), metric=True, solver="open3d-colored-icp",
                          confidence=float(reg.fitness), info=info)

    return BenchMethod("open3d-colored-icp", run, (True, True), True)


# --- small_gicp --------------------------------------------------------------------------
def make_small_gicp(options: dict) -> BenchMethod:
    """small_gicp GICP, coarse (4v, max distance 16v) then fine (v, 4v), one thread."""
    _check_options("small_gicp", options)
    init = _init_method(options)

    def run(sample, depth0, depth1):
        from twoview.solvers.gicp import gicp

        fail = _need_depths("small_gicp", depth0, depth1)
        if fail:
            return fail
        T, info = _initial_pose(init, sample, depth0, depth1)
        if T is None:
            return PoseResult.failure(info, solver="small_gicp")
        pose, ginfo = gicp(depth0, depth1, sample.camera0, sample.camera1, Pose.from_matrix(T))
        info.update(ginfo)
        if pose is None:
            return PoseResult.failure(ginfo["why"], solver="small_gicp", info=info)
        return PoseResult(success=True, cam1_from_cam0=pose, metric=True, solver="small_gicp",
                          num_inliers=ginfo["num_inliers"], info=info)

    return BenchMethod("small_gicp", run, (True, True), True)


BENCH_METHODS: dict[str, str] = {"opencv-magsac": f"{__name__}:make_opencv_magsac"}
if _have("pycolmap"):
    BENCH_METHODS["pycolmap"] = f"{__name__}:make_pycolmap"
if _have("open3d"):
    BENCH_METHODS["open3d-odometry"] = f"{__name__}:make_open3d_odometry"
    BENCH_METHODS["open3d-colored-icp"] = f"{__name__}:make_open3d_colored_icp"
if _have("small_gicp"):
    BENCH_METHODS["small_gicp"] = f"{__name__}:make_small_gicp"

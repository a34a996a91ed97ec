"""The simulated Kinect-class sensor: seeded, its noise, quantisation, registration offset,
edge holes, given intrinsics, depth-camera ground truth and exposure jitter as documented,
and its use by ``twoview bench --depth-noise kinect`` / ``kinect7``."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from twoview.depth.sensor import SENSOR_PRESETS, SensorModel, sensor_preset, simulate_sensor_depth
from twoview.errors import ConfigError, InputError
from twoview.geometry.camera import Camera
from twoview.geometry.pose import Pose
from twoview.geometry.rotation import so3_exp, so3_log
from twoview.result import PoseResult

CAM = Camera(525.0, 525.0, 319.5, 239.5, 640, 480)
#: no random effect: only the geometry of the unregistered IR camera
QUIET = dict(disparity_step_px=0.0, noise_a_m=0.0, noise_b_per_m=0.0, lateral_noise_px=0.0, edge_hole_prob=0.0,
             flying_pixel_prob=0.0, dropout_fraction=0.0)
#: no effect at all: the IR camera is the colour camera
IDENTITY = dict(QUIET, ir_position_m=[0.0, 0.0, 0.0], projector_shadows=False, min_range_m=None, max_range_m=None)


def _box(z_near, z_far=3.0):
    """A 120x120 px square at ``z_near`` metres in front of a wall at ``z_far``."""
    d = np.full((480, 640), z_far)
    d[180:300, 260:380] = z_near
    return d


def _ramp():
    """A plane turned about the image's vertical axis, 0.8 m on the left to 4.4 m on the right."""
    return np.broadcast_to(np.linspace(0.8, 4.4, 640), (480, 640)).copy()


def test_same_seed_same_measurement_other_seed_differs():
    d = _ramp()
    a, ia = simulate_sensor_depth(d, CAM, seed=5)
    b, ib = simulate_sensor_depth(d, CAM, seed=5)
    c, _ = simulate_sensor_depth(d, CAM, seed=6)
    np.testing.assert_array_equal(a, b)
    assert ia == ib and ia["seed"] == 5
    assert not np.allclose(a, c, equal_nan=True)
    assert np.isfinite(d).all() and np.array_equal(d, _ramp())  # the input is not changed


def test_identity_model_reproduces_the_input_and_quantisation_stays_within_half_a_step(shared_data):
    from twoview.datasets import get_dataset

    p = get_dataset("icl_nuim", shared_data / "icl_nuim_livingroom1", trajectory="gt_trajectory_frames0-4.log",
                    gaps=[1]).pairs()[0]
    d = p.load_depths()[0]
    out, info = simulate_sensor_depth(d, p.camera0, SensorModel(**IDENTITY), seed=1)
    np.testing.assert_array_equal(out, d)  # NaN where the input has none, nothing filled or moved
    assert info["offset_px_median"] == 0.0
    model = SensorModel(**{**IDENTITY, "disparity_step_px": 0.125})
    out, _ = simulate_sensor_depth(d, p.camera0, model, seed=1)
    half_step = 0.5 * 0.125 * d**2 / (p.camera0.fx * model.projector_baseline_m)
    assert np.array_equal(np.isnan(out), np.isnan(d))
    assert np.nanmax(np.abs(out - d) / half_step) <= 1.01  # half a step, to first order


@pytest.mark.parametrize("z", [1.0, 3.0])
def test_plane_keeps_its_depth_and_the_noise_grows_with_depth_squared(z):
    model = SensorModel(**{**QUIET, "noise_a_m": 0.0012, "noise_b_per_m": 0.0019})
    out, info = simulate_sensor_depth(np.full((480, 640), z), CAM, model, seed=2)
    v = out[np.isfinite(out)]
    sigma = 0.0012 + 0.0019 * (z - 0.4) ** 2  # Nguyen et al. 2012
    assert v.size > 0.95 * 480 * 640 * (1 - 525 * 0.025 / z / 640)  # only the strip the IR camera sees alone is empty
    assert abs(v.mean() - z) < 5 * sigma / np.sqrt(v.size)
    assert v.std() == pytest.approx(sigma, rel=0.03)
    # the default model adds disparity quantisation: about step^2 / 12 more variance, no bias
    out, _ = simulate_sensor_depth(np.full((480, 640), z), CAM, seed=2)
    v = out[np.isfinite(out)]
    step = z**2 * 0.125 / (525 * 0.075)
    assert abs(np.median(v) - z) < 0.5 * step and v.std() == pytest.approx(np.hypot(sigma, step / np.sqrt(12)), rel=0.1)
    # the IR camera 2.5 cm to the side: every depth pixel is f b / z pixels from its colour pixel
    assert info["offset_px_median"] == pytest.approx(525 * 0.025 / z, rel=1e-6)


def test_quantisation_steps_grow_with_depth_squared():
    model = SensorModel(**{**QUIET, "disparity_step_px": 0.125})
    sweep = np.linspace(0.8, 4.4, 480 * 640).reshape(480, 640)  # every depth, 12 um apart in raster order
    out, _ = simulate_sensor_depth(sweep, CAM, model, seed=0)
    levels = np.unique(out[np.isfinite(out)])
    fb = 525 * model.projector_baseline_m
    k = fb / levels / 0.125
    np.testing.assert_allclose(k, np.rint(k), atol=1e-6)  # z = f b / d, d a multiple of 1/8 px
    steps, mid = np.diff(levels), 0.5 * (levels[1:] + levels[:-1])
    for z in (1.0, 3.0):
        step = steps[np.argmin(np.abs(mid - z))]
        assert step == pytest.approx(z**2 * 0.125 / fb, rel=0.03)


@pytest.mark.parametrize("z_near", [1.0, 2.0])
def test_a_near_surface_is_shifted_by_f_b_over_z_pixels(z_near):
    out, _ = simulate_sensor_depth(_box(z_near), CAM, SensorModel(flying_pixel_prob=0.0), seed=3)
    near = np.nonzero(out < 0.5 * (z_near + 3.0))
    # the IR camera sits at +x: what it sees moves left in its image, near surfaces more
    # (by whole pixels: each point lands on its nearest pixel)
    assert near[1].mean() - 319.5 == pytest.approx(-525 * 0.025 / z_near, abs=0.6)
    assert near[0].mean() == pytest.approx(239.5, abs=0.3)


def test_holes_at_depth_edges_and_in_the_projector_shadow():
    d = _box(1.0)
    out, info = simulate_sensor_depth(d, CAM, seed=4)
    hole = np.isnan(out)
    left = 260 - round(525 * 0.025)  # the square's left edge in the IR image
    right = 380 - round(525 * 0.025)  # one past its right edge
    rows = slice(190, 290)
    at_edge = hole[rows, left - 2:left + 2].mean()
    inside = hole[rows, left + 10:right - 10].mean()
    wall = hole[rows, 20:left - 10].mean()
    assert at_edge > 0.3 and inside < 0.02 and wall < 0.02
    # the projector, 7.5 cm on the other side of the IR camera, lights no wall for
    # f b (1/z_near - 1/z_far) = 26 px right of the square (the IR camera's own view adds nothing there)
    shadow = 525 * 0.075 * (1 / 1.0 - 1 / 3.0)
    assert hole[rows, right + 2:right + int(shadow) - 2].mean() > 0.98
    assert hole[rows, right + int(shadow) + 4:right + int(shadow) + 40].mean() < 0.05
    assert 0.9 < info["valid_fraction"] < 0.98


def test_range_limits_and_edge_probabilities():
    out, _ = simulate_sensor_depth(_ramp(), CAM, SensorModel(min_range_m=1.0, max_range_m=4.0), seed=0)
    assert np.nanmin(out) >= 1.0 and np.nanmax(out) <= 4.0
    with pytest.raises(ConfigError, match="edge_hole_prob"):
        SensorModel(edge_hole_prob=0.8, flying_pixel_prob=0.5)
    with pytest.raises(ConfigError, match="ir_position_m"):
        SensorModel(ir_position_m=[0.025, 0.0])
    with pytest.raises(ConfigError, match="unknown key"):
        SensorModel.from_dict({"baseline": 0.05})


def test_bad_input_names_the_argument():
    d = _ramp()
    with pytest.raises(InputError, match="^depth: must be an \\(H, W\\) array"):
        simulate_sensor_depth(d[..., None], CAM)
    with pytest.raises(InputError, match="^depth: has no valid pixel"):
        simulate_sensor_depth(np.full((480, 640), np.nan), CAM)
    with pytest.raises(InputError, match="^camera: is 320x240 but depth is 640x480"):
        simulate_sensor_depth(d, Camera(262.5, 262.5, 159.5, 119.5, 320, 240))
    with pytest.raises(InputError, match="^camera: must be a twoview.Camera"):
        simulate_sensor_depth(d, CAM.K)
    with pytest.raises(InputError, match="^camera: has lens distortion"):
        simulate_sensor_depth(d, Camera(525.0, 525.0, 319.5, 239.5, 640, 480, dist=(0.1, 0.0, 0.0, 0.0)))


# --- what the methods are given and scored against ------------------------------------------
SMALL = Camera(262.5, 262.5, 159.5, 119.5, 320, 240)
#: a room 4 x 3 m seen from inside, 4 m deep (plane normal n, offset d: n . X = d, world frame)
ROOM = [((1.0, 0.0, 0.0), 2.0), ((-1.0, 0.0, 0.0), 2.0), ((0.0, 1.0, 0.0), 1.5), ((0.0, -1.0, 0.0), 1.5),
        ((0.0, 0.0, 1.0), 4.0)]


def _room_depth(world_from_cam: np.ndarray, camera: Camera) -> np.ndarray:
    """(H, W) depth of :data:`ROOM` seen by ``camera`` at ``world_from_cam`` (4, 4), ray cast."""
    v, u = np.mgrid[0:camera.height, 0:camera.width]
    rays = np.stack([(u - camera.cx) / camera.fx, (v - camera.cy) / camera.fy, np.ones(u.shape)], axis=-1)
    dirs, origin = rays @ world_from_cam[:3, :3].T, world_from_cam[:3, 3]
    depth = np.full(u.shape, np.inf)
    for n, d in ROOM:
        n = np.asarray(n)
        with np.errstate(divide="ignore"):
            s = (d - n @ origin) / (dirs @ n)
        depth = np.where((s > 0) & (s < depth), s, depth)  # rays have z = 1: s is the depth
    return depth


def _room_views(turn_deg=8.0):
    """World-from-colour poses (4, 4) of two views 0.3 m apart and turned ``turn_deg``."""
    W0, W1 = np.eye(4), np.eye(4)
    W0[:3, 3] = [-0.1, 0.05, 0.3]
    W1[:3, :3] = so3_exp(np.radians([2.0, turn_deg, 1.0]))
    W1[:3, 3] = [0.2, -0.05, 0.4]
    return W0, W1


def test_the_methods_get_the_ir_cameras_intrinsics_under_depth():
    model = SensorModel(intrinsics_given="depth", ir_focal_scale=585 / 525, ir_principal_offset_px=[0.5, -0.5])
    given = model.given_camera(CAM)
    assert (given.fx, given.fy, given.cx, given.cy) == pytest.approx((585.0, 585.0, 320.0, 239.0)) and given.size == (640, 480)
    assert given == model.ir_camera(CAM)
    assert SensorModel(ir_focal_scale=585 / 525).given_camera(CAM) is CAM  # "colour": the dataset's
    # the 7-Scenes preset: the depth camera's K, its poses, unsynchronised exposures
    k7 = sensor_preset("kinect7")
    assert k7.given_camera(CAM).fx == pytest.approx(585.0) and k7.ground_truth == "depth"
    assert 0.1 <= k7.exposure_jitter_deg <= 0.5 and sensor_preset("kinect") == SensorModel()
    from twoview.cli.bench import SENSOR_NAMES

    assert set(SENSOR_NAMES) == set(SENSOR_PRESETS)
    with pytest.raises(InputError, match="unknown name 'kinect9'; known: kinect, kinect7"):
        sensor_preset("kinect9")
    with pytest.raises(ConfigError, match="intrinsics_given: must be one of"):
        SensorModel.from_dict({"intrinsics_given": "ir"})
    with pytest.raises(ConfigError, match="exposure_jitter_deg"):
        SensorModel(exposure_jitter_deg=-0.1)


def test_exposure_jitter_is_seeded_and_of_the_documented_size():
    model = SensorModel(exposure_jitter_deg=0.2, exposure_jitter_m=0.003)
    np.testing.assert_array_equal(model.exposure_motion(7), model.exposure_motion(7))
    assert not np.allclose(model.exposure_motion(7), model.exposure_motion(8))
    motions = [model.exposure_motion(s) for s in range(3000)]
    angles = np.degrees([np.linalg.norm(so3_log(T[:3, :3])) for T in motions])
    lengths = [np.linalg.norm(T[:3, 3]) for T in motions]
    assert np.sqrt(np.mean(angles**2)) == pytest.approx(0.2, rel=0.05)
    assert np.sqrt(np.mean(np.square(lengths))) == pytest.approx(0.003, rel=0.05)
    np.testing.assert_array_equal(model.ir_from_colour(7), model.ir_from_colour() @ model.exposure_motion(7))
    # without jitter every view's IR camera is the calibrated one
    np.testing.assert_array_equal(SensorModel().ir_from_colour(7), SensorModel().ir_from_colour())


def test_depth_ground_truth_is_the_ir_cameras_pose_and_the_rendering_follows_the_jitter():
    """Two views of a ray-cast room: the depth each view gets is the room seen from its IR
    camera moved by that view's exposure jitter, and the "depth" ground truth is the relative
    pose of those two IR cameras (the "colour" one that of the colour cameras)."""
    model = SensorModel(**{**QUIET, "projector_shadows": False, "min_range_m": None, "max_range_m": None,
                           "ir_focal_scale": 585 / 525, "ground_truth": "depth",
                           "exposure_jitter_deg": 1.0, "exposure_jitter_m": 0.01})  # exaggerated: clear of the rendering's rounding
    W = _room_views()
    seeds = (11, 12)
    colour_gt = np.linalg.inv(W[1]) @ W[0]
    gt = model.relative_pose(colour_gt, *seeds)
    ir_world = [Wk @ np.linalg.inv(model.ir_from_colour(s)) for Wk, s in zip(W, seeds)]
    np.testing.assert_allclose(gt, np.linalg.inv(ir_world[1]) @ ir_world[0], atol=1e-12)
    np.testing.assert_array_equal(model.replace(ground_truth="colour").relative_pose(colour_gt, *seeds), colour_gt)
    ir = model.ir_camera(SMALL)
    maps = []
    for Wk, seed, ir_pose in zip(W, seeds, ir_world):
        out, info = simulate_sensor_depth(_room_depth(Wk, SMALL), SMALL, model, seed=seed)
        np.testing.assert_allclose(info["ir_from_colour"], model.ir_from_colour(seed))
        seen = np.isfinite(out)
        assert seen.mean() > 0.9
        # the room as the jittered IR camera sees it, not as the calibrated one would
        err = np.abs(out - _room_depth(ir_pose, ir))[seen]
        nominal = np.abs(out - _room_depth(Wk @ np.linalg.inv(model.ir_from_colour()), ir))[seen]
        assert np.median(err) < 0.003 and np.median(nominal) > 5 * np.median(err)
        maps.append(out)
    # depth alone agrees with the "depth" ground truth: view 0's points moved by it lie on view 1's surface
    v, u = np.nonzero(np.isfinite(maps[0]))
    z = maps[0][v, u]
    pts = np.stack([(u - ir.cx) / ir.fx * z, (v - ir.cy) / ir.fy * z, z], axis=1)

    def surface_gap(T):
        q = pts @ T[:3, :3].T + T[:3, 3]
        pu, pv = np.rint(ir.fx * q[:, 0] / q[:, 2] + ir.cx).astype(int), np.rint(ir.fy * q[:, 1] / q[:, 2] + ir.cy).astype(int)
        inside = (pu >= 0) & (pu < ir.width) & (pv >= 0) & (pv < ir.height)
        gap = np.abs(maps[1][pv[inside], pu[inside]] - q[inside, 2])
        return np.median(gap[np.isfinite(gap)])

    assert surface_gap(gt) < 0.004 and surface_gap(colour_gt) > 3 * surface_gap(gt)


# --- twoview bench --depth-noise kinect ------------------------------------------------------
SEEN: list = []


def make_probe(options):
    """Records the depth maps it receives."""
    from twoview.bench.methods import BenchMethod

    def run(sample, d0, d1):
        SEEN.append((sample.pair_id, d0, d1))
        return PoseResult.failure("probe")

    return BenchMethod("probe", run, (True, True), True)


def test_bench_feeds_every_method_the_sensor_depth_and_records_the_model(shared_data, tmp_path, monkeypatch):
    from twoview.bench import methods as bench_methods
    from twoview.bench.runner import BenchConfig, pair_seed, run_benchmark
    from twoview.cli import build_parser
    from twoview.cli.bench import build_config
    from twoview.datasets import get_dataset

    real = bench_methods.registry
    monkeypatch.setattr(bench_methods, "registry", lambda: {**real(), "probe": f"{__name__}:make_probe"})
    sys.modules.setdefault(__name__, sys.modules[__name__])
    SEEN.clear()
    root = shared_data / "icl_nuim_livingroom1"
    opts = {"trajectory": "gt_trajectory_frames0-4.log", "gaps": [2]}
    cfg = {"dataset": "icl_nuim", "root": str(root), "dataset_options": opts, "methods": ["probe"],
           "out": str(tmp_path / "k"), "progress": False, "depth_noise": "kinect"}
    run_benchmark(BenchConfig.from_dict(cfg), log=lambda *a: None)
    pairs = get_dataset("icl_nuim", root, **opts).pairs()
    assert [s[0] for s in SEEN] == [p.pair_id for p in pairs] and len(pairs) == 3
    for (_, d0, d1), p in zip(SEEN, pairs):
        clean0, clean1 = p.load_depths()
        np.testing.assert_array_equal(d0, simulate_sensor_depth(clean0, p.camera0, seed=pair_seed(p.pair_id))[0])
        np.testing.assert_array_equal(d1, simulate_sensor_depth(clean1, p.camera1, seed=pair_seed(p.pair_id) + 1)[0])
        assert np.isnan(d0).sum() > np.isnan(clean0).sum() + 0.02 * d0.size
    written = json.loads((tmp_path / "k" / "config.json").read_text())
    assert written["depth_noise"] == "kinect" and written["depth_sensor"] == SensorModel().to_dict()
    assert "depth_degradation" not in written
    # another noise model is another run: the folder's cache is not reused
    with pytest.raises(InputError, match="differs in: depth_degradation, depth_noise, depth_sensor"):
        run_benchmark(BenchConfig.from_dict({**cfg, "depth_noise": "monocular"}), log=lambda *a: None)
    # distorted cameras are refused before anything runs
    tum = {**cfg, "dataset": "tum", "root": str(shared_data / "tum" / "fr1_xyz"), "dataset_options": {"max_pairs": 2},
           "out": str(tmp_path / "tum")}
    with pytest.raises(InputError, match="--depth-noise kinect: the sensor model takes undistorted pinhole cameras"):
        run_benchmark(BenchConfig.from_dict(tum), log=lambda *a: None)
    assert not (tmp_path / "tum").exists()
    # the CLI: the flag alone keeps meaning the monocular model
    base = ["bench", "--dataset", "icl_nuim", "--root", "r", "--method", "sift", "--out", "o"]
    parse = build_parser().parse_args
    assert build_config(parse(base + ["--depth-noise", "kinect"])).depth_noise == "kinect"
    assert build_config(parse(base + ["--depth-noise"])).depth_noise == "monocular"
    assert build_config(parse(base)).depth_noise is False


def make_gt_probe(options):
    """Records the cameras it is given and answers with the pair's ground truth as it sees it."""
    from twoview.bench.methods import BenchMethod

    def run(sample, d0, d1):
        SEEN.append((sample.pair_id, sample.camera0, sample.camera1, d0))
        return PoseResult(success=True, cam1_from_cam0=sample.cam1_from_cam0, metric=True, solver="gt-probe")

    return BenchMethod("gt_probe", run, (True, True), True)


def test_bench_kinect7_gives_the_ir_intrinsics_and_scores_on_the_ir_cameras(shared_data, tmp_path, monkeypatch):
    import csv

    from twoview.bench import methods as bench_methods
    from twoview.bench.runner import BenchConfig, pair_seed, run_benchmark
    from twoview.cli import build_parser
    from twoview.cli.bench import build_config
    from twoview.datasets import get_dataset

    real = bench_methods.registry
    probes = {"probe": f"{__name__}:make_probe", "gt_probe": f"{__name__}:make_gt_probe"}
    monkeypatch.setattr(bench_methods, "registry", lambda: {**real(), **probes})
    sys.modules.setdefault(__name__, sys.modules[__name__])
    SEEN.clear()
    root = shared_data / "icl_nuim_livingroom1"
    args = ["bench", "--dataset", "icl_nuim", "--root", str(root), "--option", "trajectory=gt_trajectory_frames0-4.log",
            "--gap", "4", "--method", "gt_probe", "--method", "probe", "--out", str(tmp_path / "k7"), "--depth-noise", "kinect7",
            "--no-progress"]
    cfg = build_config(build_parser().parse_args(args))
    model = sensor_preset("kinect7")
    assert cfg.depth_noise == "kinect" and cfg.depth_sensor == model
    summary = run_benchmark(cfg, log=lambda *a: None)
    (p,) = get_dataset("icl_nuim", root, trajectory="gt_trajectory_frames0-4.log", gaps=[4]).pairs()
    seed = pair_seed(p.pair_id)
    (_, cam0, cam1, d0_gt_probe), (_, d0, d1) = SEEN
    # every method: the IR camera's K for both views, the same simulated depth
    assert cam0 == cam1 == model.ir_camera(p.camera0) and cam0.fx == pytest.approx(p.camera0.fx * 585 / 525)
    np.testing.assert_array_equal(d0, d0_gt_probe)
    np.testing.assert_array_equal(d0, simulate_sensor_depth(p.load_depths()[0], p.camera0, model, seed=seed)[0])
    # scored against the IR cameras' pose (with each view's exposure jitter): the probe that
    # answers with it has no error, and it is not the colour cameras' pose
    expected = model.relative_pose(p.cam1_from_cam0.matrix, seed, seed + 1)
    rows = {r["method"]: r for r in csv.DictReader((tmp_path / "k7" / "per_pair.csv").open())}
    assert float(rows["gt_probe"]["rot_deg"]) < 1e-6 and float(rows["gt_probe"]["trans_m"]) < 1e-9
    assert float(rows["gt_probe"]["gt_baseline_m"]) == pytest.approx(np.linalg.norm(expected[:3, 3]))
    assert not Pose.from_matrix(expected).allclose(p.cam1_from_cam0, atol=1e-3)
    assert summary["methods"]["gt_probe"]["auc5"] == pytest.approx(1.0)
    written = json.loads((tmp_path / "k7" / "config.json").read_text())
    assert written["depth_noise"] == "kinect" and written["depth_sensor"] == model.to_dict()
    # a folder of a run recorded before the model had these parameters is the same run as
    # today's "kinect" (their defaults): its cache is reused, nothing predicted again
    base = {"dataset": "icl_nuim", "root": str(root), "dataset_options": {"trajectory": "gt_trajectory_frames0-4.log", "gaps": [4]},
            "methods": ["probe"], "out": str(tmp_path / "old"), "progress": False, "depth_noise": "kinect"}
    run_benchmark(BenchConfig.from_dict(base), log=lambda *a: None)
    old = json.loads((tmp_path / "old" / "config.json").read_text())
    for key in ("intrinsics_given", "ground_truth", "exposure_jitter_deg", "exposure_jitter_m"):
        del old["depth_sensor"][key]
    (tmp_path / "old" / "config.json").write_text(json.dumps(old))
    again = run_benchmark(BenchConfig.from_dict(base), log=lambda *a: None)
    assert again["run"]["predicted"] == 0 and again["run"]["from_cache"] == 1
    # and a run with the 7-Scenes model into it is another run
    with pytest.raises(InputError, match="differs in: depth_sensor"):
        run_benchmark(BenchConfig.from_dict({**base, "depth_sensor": model.to_dict()}), log=lambda *a: None)


def test_the_sensor_models_colour_camera():
    """``kinect7-colour``: the colour a consumer camera records (blur, motion blur in a
    direction drawn per view, noise, JPEG), seeded; the other presets leave it as it is."""
    from twoview.depth.sensor import simulate_sensor_colour

    rng = np.random.default_rng(0)
    img = np.zeros((120, 160, 3), np.uint8)
    img[:, ::8] = 255  # sharp stripes: blur shows
    img[::8] = 200
    assert simulate_sensor_colour(img, sensor_preset("kinect7"), 3) is img  # nothing to do
    model = sensor_preset("kinect7-colour")
    a, b, c = (simulate_sensor_colour(img, model, s) for s in (3, 3, 4))
    np.testing.assert_array_equal(a, b)
    assert a.shape == img.shape and a.dtype == np.uint8 and not np.array_equal(a, c)
    sharp = np.abs(np.diff(img.astype(float), axis=1)).mean()
    assert np.abs(np.diff(a.astype(float), axis=1)).mean() < 0.6 * sharp
    with pytest.raises(InputError, match="image"):
        simulate_sensor_colour(rng.random((10, 10)), model)
    with pytest.raises(ConfigError, match="colour_jpeg_quality"):
        SensorModel(colour_jpeg_quality=101)
    # the depth a seed draws is the same with or without the colour camera's degradation
    depth = np.full((48, 64), 2.0)
    cam = Camera(60.0, 60.0, 31.5, 23.5, 64, 48)
    k7 = sensor_preset("kinect7")
    np.testing.assert_array_equal(simulate_sensor_depth(depth, cam, k7, 5)[0], simulate_sensor_depth(depth, cam, model, 5)[0])


def make_image_probe(options):
    """Records the image files it is given."""
    from twoview.bench.methods import BenchMethod

    def run(sample, d0, d1):
        SEEN.append((sample.pair_id, sample.image0, sample.image1))
        return PoseResult(success=True, cam1_from_cam0=sample.cam1_from_cam0, metric=True, solver="image-probe")

    return BenchMethod("image_probe", run, (True, True), True)


def test_bench_kinect7_colour_gives_the_methods_the_sensors_colour(shared_data, tmp_path, monkeypatch):
    from twoview.bench import methods as bench_methods
    from twoview.bench.runner import BenchConfig, pair_seed, run_benchmark
    from twoview.datasets import get_dataset
    from twoview.depth.sensor import simulate_sensor_colour
    from twoview.io.images import load_image

    real = bench_methods.registry
    monkeypatch.setattr(bench_methods, "registry", lambda: {**real(), "image_probe": f"{__name__}:make_image_probe"})
    monkeypatch.setenv("TWOVIEW_CACHE", str(tmp_path / "cache"))
    sys.modules.setdefault(__name__, sys.modules[__name__])
    SEEN.clear()
    root = shared_data / "icl_nuim_livingroom1"
    model = sensor_preset("kinect7-colour")
    cfg = {"dataset": "icl_nuim", "root": str(root), "dataset_options": {"trajectory": "gt_trajectory_frames0-4.log", "gaps": [4]},
           "methods": ["image_probe"], "out": str(tmp_path / "k7c"), "progress": False, "depth_noise": "kinect",
           "depth_sensor": model.to_dict()}
    summary = run_benchmark(BenchConfig.from_dict(cfg), log=lambda *a: None)
    (p,) = get_dataset("icl_nuim", root, trajectory="gt_trajectory_frames0-4.log", gaps=[4]).pairs()
    ((_, im0, im1),) = SEEN
    seed = pair_seed(p.pair_id)
    assert Path(im0).parent == tmp_path / "cache" / "bench_colour" and Path(im0) != Path(p.image0)
    np.testing.assert_array_equal(load_image(im0), simulate_sensor_colour(load_image(p.image0), model, seed))
    np.testing.assert_array_equal(load_image(im1), simulate_sensor_colour(load_image(p.image1), model, seed + 1))
    assert summary["methods"]["image_probe"]["auc5"] == pytest.approx(1.0)  # scored on the same ground truth

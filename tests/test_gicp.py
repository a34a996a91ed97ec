"""Point-level GICP between depth maps (twoview.solvers.gicp) and the pipeline's GICP stage."""

from __future__ import annotations

import numpy as np
import pytest
from test_gmm import CAM, _err, _perturb, _render

import twoview
from twoview.errors import ConfigError
from twoview.geometry import Pose
from twoview.geometry.rotation import so3_exp
from twoview.pipeline import Pipeline
from twoview.solvers.gicp import gicp, scene_voxel

pytest.importorskip("small_gicp")


@pytest.fixture(scope="module")
def room():
    world_from_cam1 = Pose(so3_exp(np.radians([1.0, -6.0, 1.0])), np.array([0.2, -0.05, 0.1]))
    _, d0 = _render(Pose.identity())
    _, d1 = _render(world_from_cam1)
    return d0, d1, world_from_cam1.inverse()


def test_gicp_converges_back_from_a_perturbed_pose(room):
    d0, d1, gt = room
    pose, info = gicp(d0, d1, CAM, CAM, _perturb(gt, deg=2.0, metres=0.05))
    assert pose is not None, info
    rot, dt = _err(pose, gt)
    assert rot < 0.1 and dt < 0.005, (rot, dt)
    assert info["num_inliers"] > 100 and info["voxel_m"] == pytest.approx(scene_voxel(d0, CAM))


def test_gicp_without_depth_gives_no_pose(room):
    d0, d1, gt = room
    pose, info = gicp(np.full_like(d0, np.nan), d1, CAM, CAM, gt)
    assert pose is None and "too little valid depth" in info["why"]
    far = Pose(gt.R, gt.t + np.array([0.0, 0.0, -100.0]))  # no point has a counterpart within reach
    pose, info = gicp(d0, d1, CAM, CAM, far)
    assert pose is None and "no pairs" in info["why"]


@pytest.fixture(scope="module")
def icl_pair(shared_data):
    from twoview.datasets import get_dataset

    ds = get_dataset("icl_nuim", shared_data / "icl_nuim_livingroom1", trajectory="pseudo_gt_in_gt_world_frame.log", gaps=[30])
    return ds.pairs()[2]


def _rot_err(pose: Pose, gt: np.ndarray) -> float:
    return float(np.degrees(np.linalg.norm(Pose.from_matrix(pose.matrix @ np.linalg.inv(gt)).rotvec())))


def test_the_pipeline_runs_gicp_where_the_depth_is_a_second_cameras(icl_pair):
    """ICL-NUIM through the Kinect-class sensor model: depth seen by an IR camera beside the
    colour camera. The depth stage finds the second camera, so "auto" runs GICP after the
    mixtures; the pose is scored against the depth cameras, as the bench does."""
    from twoview.depth.sensor import sensor_preset, simulate_sensor_depth

    p = icl_pair
    model = sensor_preset("kinect7")
    d0, d1 = p.load_depths()
    s0, s1 = simulate_sensor_depth(d0, p.camera0, model, 1)[0], simulate_sensor_depth(d1, p.camera1, model, 2)[0]
    cam0, cam1 = model.given_camera(p.camera0), model.given_camera(p.camera1)
    gt = model.relative_pose(p.cam1_from_cam0.matrix, 1, 2)
    v0, v1 = twoview.load_views(p.image0, p.image1, cam0, cam1, s0, s1, depth_kind="sensor")
    res = Pipeline({"confidence": {"min_confidence": 0.0}})(v0, v1)
    stages = {s["stage"]: s for s in res.info["pipeline"]["stages"]}
    assert any(r and r["reference"] == "depth" for r in stages["depth"]["registration"])
    assert stages["gicp"]["ran"] and stages["gicp"]["success"], stages.get("gicp")
    assert res.success and res.info["gicp"]["success"] and res.info["gicp"]["ran_because"].startswith("the depth is")
    assert _rot_err(res.cam1_from_cam0, gt) < 1.0
    assert np.linalg.norm(res.cam1_from_cam0.t - gt[:3, 3]) < 0.03
    never = Pipeline({"confidence": {"min_confidence": 0.0}, "refine": {"gicp": "never"}})(v0, v1)
    assert "gicp" not in never.info and all(s["stage"] != "gicp" for s in never.info["pipeline"]["stages"])


def test_the_geometry_finish_leaves_gicps_fixed_point_for_the_depths(shared_data):
    """After GICP the mixtures align once more on geometry alone. Scored on ICL-NUIM's true
    poses (frames 0 and 4; the sensor model's depth cameras): GICP's own fixed point sits off
    the truth on the simulated sensor's quantised depth, the geometry finish brings it back."""
    from twoview.datasets import get_dataset
    from twoview.depth.sensor import sensor_preset, simulate_sensor_depth

    ds = get_dataset("icl_nuim", shared_data / "icl_nuim_livingroom1", trajectory="gt_trajectory_frames0-4.log", gaps=[4])
    (p,) = ds.pairs()
    model = sensor_preset("kinect7")
    d0, d1 = p.load_depths()
    s0, s1 = simulate_sensor_depth(d0, p.camera0, model, 1)[0], simulate_sensor_depth(d1, p.camera1, model, 2)[0]
    gt = model.relative_pose(p.cam1_from_cam0.matrix, 1, 2)
    v0, v1 = twoview.load_views(p.image0, p.image1, model.given_camera(p.camera0), model.given_camera(p.camera1),
                                s0, s1, depth_kind="sensor")
    res = Pipeline({"confidence": {"min_confidence": 0.0}})(v0, v1)
    finish = res.info["geometry_finish"]
    assert res.info["gicp"]["success"] and finish["success"], finish
    at_gicp = _rot_err(Pose.from_matrix(np.array(finish["cam1_from_cam0_before"])), gt)
    final = _rot_err(res.cam1_from_cam0, gt)
    assert final < 0.1 and final < at_gicp, (final, at_gicp)
    assert any(s["stage"] == "geometry_finish" for s in res.info["pipeline"]["stages"])
    off = Pipeline({"confidence": {"min_confidence": 0.0}, "refine": {"geometry_finish": False}})(v0, v1)
    assert "geometry_finish" not in off.info
    # GICP's pose, up to its threads' summation order
    assert _rot_err(off.cam1_from_cam0, np.array(finish["cam1_from_cam0_before"])) < 0.01


def test_registered_depth_keeps_the_mixtures_pose_unless_asked(icl_pair):
    p = icl_pair
    d0, d1 = p.load_depths()
    v0, v1 = twoview.load_views(p.image0, p.image1, p.camera0, p.camera1, d0, d1, depth_kind="sensor")
    auto = Pipeline({"confidence": {"min_confidence": 0.0}})(v0, v1)
    assert auto.success and "gicp" not in auto.info
    always = Pipeline({"confidence": {"min_confidence": 0.0}, "refine": {"gicp": "always"}})(v0, v1)
    assert always.success and always.info["gicp"]["success"]
    np.testing.assert_allclose(always.info["gicp"]["cam1_from_cam0_before"], auto.cam1_from_cam0.matrix, atol=1e-12)
    assert _rot_err(always.cam1_from_cam0, p.cam1_from_cam0.matrix) < 1.0
    with pytest.raises(ConfigError, match="gicp"):
        Pipeline({"refine": {"gicp": "sometimes"}})


def test_the_cli_flag_sets_the_stage(icl_pair, tmp_path, capsys):
    import json

    from twoview.cli import main

    p, c = icl_pair, icl_pair.camera0
    out = tmp_path / "r.json"
    assert main(["estimate", str(p.image0), str(p.image1), "--K0", f"{c.fx},{c.fy},{c.cx},{c.cy}", "--depth0", str(p.depth0),
                 "--depth1", str(p.depth1), "--depth-scale", str(p.depth_scale), "--gicp", "always", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["info"]["pipeline"]["config"]["refine"]["gicp"] == "always" and res["info"]["gicp"]["success"]
    assert res["info"]["geometry_finish"]["success"]
    stages = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("stages:")]
    assert stages and "gicp moved it" in stages[0] and "geometry finish moved it" in stages[0], stages
    assert main(["estimate", str(p.image0), str(p.image1), "--K0", f"{c.fx},{c.fy},{c.cx},{c.cy}", "--depth0", str(p.depth0),
                 "--depth1", str(p.depth1), "--depth-scale", str(p.depth_scale), "--gicp", "always",
                 "--no-geometry-finish", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["info"]["pipeline"]["config"]["refine"]["geometry_finish"] is False and "geometry_finish" not in res["info"]


def test_a_gicp_without_verdict_keeps_the_mixtures_pose(icl_pair, monkeypatch):
    import twoview.solvers.gicp as mod

    p = icl_pair
    d0, d1 = p.load_depths()
    v0, v1 = twoview.load_views(p.image0, p.image1, p.camera0, p.camera1, d0, d1)
    cfg = {"confidence": {"min_confidence": 0.0}}
    auto = Pipeline(cfg)(v0, v1)
    monkeypatch.setattr(mod, "gicp", lambda *a, **k: (None, {"why": "GICP found no pairs"}))
    res = Pipeline({**cfg, "refine": {"gicp": "always"}})(v0, v1)
    assert res.success and res.info["gicp"] == {"success": False, "why": "GICP found no pairs",
                                                "ran_because": "refine.gicp is 'always'"}
    np.testing.assert_allclose(res.cam1_from_cam0.matrix, auto.cam1_from_cam0.matrix, atol=1e-12)
    stage = [s for s in res.info["pipeline"]["stages"] if s["stage"] == "gicp"][0]
    assert stage["ran"] and not stage["success"]


def test_a_failed_geometry_finish_keeps_gicps_pose(icl_pair, monkeypatch):
    """The finish's alignment gives no verdict: GICP's pose stands and the result says why."""
    import twoview.gmm.align as align_mod
    from twoview.cli.estimate import _stage_line
    from twoview.result import PoseResult

    p = icl_pair
    d0, d1 = p.load_depths()
    v0, v1 = twoview.load_views(p.image0, p.image1, p.camera0, p.camera1, d0, d1)
    real = align_mod.align_mixtures

    def finish_fails(m0, m1, init, cfg):
        if cfg.appearance_weight == 0.0:  # the finish: geometry alone
            return PoseResult.failure("the views do not overlap", solver="gmm")
        return real(m0, m1, init, cfg)

    monkeypatch.setattr(align_mod, "align_mixtures", finish_fails)
    res = Pipeline({"confidence": {"min_confidence": 0.0}, "refine": {"gicp": "always"}})(v0, v1)
    assert res.success and res.info["gicp"]["success"]
    assert res.info["geometry_finish"] == {"success": False, "rejected": False, "reason": "the views do not overlap"}
    line = [s for s in res.info["pipeline"]["stages"] if s["stage"] == "geometry_finish"]
    assert line and not line[0]["success"]
    assert _stage_line(line[0]) == "geometry finish failed (the views do not overlap): gicp's pose stands"
    off = Pipeline({"confidence": {"min_confidence": 0.0}, "refine": {"gicp": "always", "geometry_finish": False}})(v0, v1)
    assert _rot_err(res.cam1_from_cam0, off.cam1_from_cam0.matrix) < 0.01  # GICP's, up to its threads' order
    assert np.linalg.norm(res.cam1_from_cam0.t - off.cam1_from_cam0.t) < 1e-4

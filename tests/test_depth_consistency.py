"""The free-space test of two depth maps at a pose (twoview.depth.consistency)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twoview.depth.consistency import depth_consistency
from twoview.geometry import Camera, Pose
from twoview.geometry.rotation import so3_exp


def _room(cam: Camera, world_from_cam: np.ndarray) -> np.ndarray:
    """Depth of a 4 x 3 x 6 m box room (camera inside) seen by ``cam`` at ``world_from_cam``."""
    v, u = np.mgrid[0:cam.height, 0:cam.width].astype(np.float64)
    rays = np.stack([(u - cam.cx) / cam.fx, (v - cam.cy) / cam.fy, np.ones_like(u)], -1)
    R, c = world_from_cam[:3, :3], world_from_cam[:3, 3]
    d = rays @ R.T  # ray directions in the world
    lo, hi = np.array([-2.0, -1.5, -1.0]), np.array([2.0, 1.5, 5.0])
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where(d > 0, (hi - c) / d, (lo - c) / d)
    return np.nanmin(np.where(s > 0, s, np.inf), axis=-1)  # z-depth: the rays have z = 1 in the camera


CAM = Camera(300.0, 300.0, 159.5, 119.5, 320, 240)


def _pair(angle_deg: float, t: np.ndarray):
    T0 = np.eye(4)
    T1 = np.eye(4)
    T1[:3, :3] = so3_exp(np.radians(angle_deg) * np.array([0.0, 1.0, 0.0]))
    T1[:3, 3] = t
    cam1_from_cam0 = np.linalg.inv(T1) @ T0
    return _room(CAM, T0), _room(CAM, T1), cam1_from_cam0


def test_the_true_pose_agrees_and_a_wrong_one_looks_through_the_walls():
    d0, d1, T = _pair(15.0, np.array([0.3, 0.0, 0.2]))
    right = depth_consistency(d0, CAM, d1, CAM, T)
    assert right is not None and right.violation < 0.01 and right.agreement > 0.95 and right.overlap > 0.5
    wrong = Pose(so3_exp(np.radians(12.0) * np.array([0.0, 1.0, 0.0])), np.zeros(3)).matrix @ T
    bad = depth_consistency(d0, CAM, d1, CAM, wrong)
    assert bad is not None and bad.violation > 0.1 and bad.agreement < right.agreement - 0.3


@settings(max_examples=15, deadline=None)
@given(angle=st.floats(-20, 20), tx=st.floats(-0.4, 0.4), err=st.floats(-10, 10))
def test_the_test_is_symmetric_in_the_two_views(angle, tx, err):
    """Both directions are measured and the worse kept: swapping the views (and inverting
    the pose) gives the same numbers."""
    d0, d1, T = _pair(angle, np.array([tx, 0.05, 0.1]))
    T = Pose(so3_exp(np.radians(err) * np.array([1.0, 0.0, 0.0])), np.zeros(3)).matrix @ T
    a = depth_consistency(d0, CAM, d1, CAM, T)
    b = depth_consistency(d1, CAM, d0, CAM, np.linalg.inv(T))
    assert (a is None) == (b is None)
    if a is not None:
        assert a.violation == pytest.approx(b.violation) and a.agreement == pytest.approx(b.agreement)
        assert a.points == b.points


def test_no_overlap_and_no_depth_give_nothing_to_judge():
    d0, d1, T = _pair(0.0, np.zeros(3))
    away = Pose(so3_exp(np.radians(180.0) * np.array([0.0, 1.0, 0.0])), np.array([0.0, 0.0, -10.0])).matrix
    assert depth_consistency(d0, CAM, d1, CAM, away) is None
    assert depth_consistency(np.full_like(d0, np.nan), CAM, d1, CAM, T) is None


def test_a_real_pair_at_its_ground_truth_and_turned_away(shared_data):
    """ICL-NUIM (clean depth): at the ground-truth pose almost nothing falls in the other
    view's free space; turned by 10 deg a large part does."""
    from twoview.datasets import get_dataset

    p = get_dataset("icl_nuim", shared_data / "icl_nuim_livingroom1", trajectory="pseudo_gt_in_gt_world_frame.log",
                    gaps=[30]).pairs()[2]
    d0, d1 = p.load_depths()
    T = p.cam1_from_cam0.matrix
    right = depth_consistency(d0, p.camera0, d1, p.camera1, T)
    assert right.violation < 0.03 and right.agreement > 0.8
    turned = Pose(so3_exp(np.radians(10.0) * np.array([0.0, 1.0, 0.0])), np.zeros(3)).matrix @ T
    assert depth_consistency(d0, p.camera0, d1, p.camera1, turned).violation > 0.1


def test_the_pipeline_reports_it_for_metric_poses_only(shared_data):
    import twoview
    from twoview.datasets import get_dataset
    from twoview.pipeline import Pipeline

    p = get_dataset("icl_nuim", shared_data / "icl_nuim_livingroom1", trajectory="pseudo_gt_in_gt_world_frame.log",
                    gaps=[10]).pairs()[3]
    v0, v1 = twoview.load_views(p.image0, p.image1, p.camera0, p.camera1, *p.load_depths())
    res = Pipeline()(v0, v1)
    dc = res.info["depth_consistency"]
    assert res.success and dc["violation"] < 0.05 and dc["agreement"] > 0.8 and "consistency" in res.timings_ms
    w0, w1 = twoview.load_views(p.image0, p.image1, p.camera0, p.camera1)
    assert "depth_consistency" not in Pipeline()(w0, w1).info  # images only: nothing to test


def _result_with(agreement: float, sensor: bool, metric: bool = True):
    from twoview.result import PoseResult

    return PoseResult(success=True, cam1_from_cam0=Pose(np.eye(3), np.array([0.3, 0.0, 0.0])), metric=metric,
                      solver="gmm", confidence=0.9, num_inliers=200, num_matches=400,
                      info={"depth_consistency": {"violation": 0.3, "agreement": agreement, "overlap": 0.4,
                                                  "points": 5000, "sensor_depth": sensor}})


@pytest.mark.parametrize("agreement, sensor, min_agreement, fails", [
    (0.05, True, 0.15, True),     # measured depth contradicts the pose: a failure, whatever the model says
    (0.05, False, 0.15, False),   # predicted depth is not held to it
    (0.05, True, 0.0, False),     # the check turned off
    (0.40, True, 0.15, False),    # agreement enough
])
def test_sensor_depth_that_contradicts_the_pose_zeroes_its_confidence(agreement, sensor, min_agreement, fails):
    from twoview.pipeline.config import ConfidenceConfig
    from twoview.pipeline.confidence import finalise_confidence

    cfg = ConfidenceConfig(calibrated=False, min_confidence=0.2, min_depth_agreement=min_agreement)
    res = finalise_confidence(_result_with(agreement, sensor), cfg)
    assert res.success is not fails
    if fails:
        assert "depth maps contradict" in res.reason and "min_depth_agreement" in res.reason
        assert res.info["confidence_before_depth_check"] == 0.9 and np.asarray(res.info["rejected_pose"]).shape == (4, 4)
    else:
        assert res.confidence == 0.9
    # with no threshold the pose stays (for calibration runs), its confidence says 0
    kept = finalise_confidence(_result_with(agreement, sensor), ConfidenceConfig(
        calibrated=False, min_confidence=0.0, min_depth_agreement=min_agreement))
    assert kept.success and kept.confidence == (0.0 if fails else 0.9)


def test_min_depth_agreement_is_checked():
    from twoview.errors import ConfigError
    from twoview.pipeline import PipelineConfig

    with pytest.raises(ConfigError, match="min_depth_agreement"):
        PipelineConfig.from_dict({"confidence": {"min_depth_agreement": 1.5}})


def test_a_wrong_pose_on_real_kinect_depth_is_a_failure(shared_data):
    """7-Scenes stairs (real Kinect depth, unregistered and degraded colour, KinectFusion
    ground truth), seq-03 -> seq-04 (1.25 m, 53 deg): XFeat and SIFT find nothing, ALIKED an
    essential matrix from 32 of 129 matches, and the mixtures refine it to a pose 76 deg off
    that the calibrated model scored 0.39. The two depth maps agree on 9 % of their overlap
    there: now a failure that says so, with the pose kept aside."""
    import twoview
    from twoview.datasets import get_dataset
    from twoview.pipeline import Pipeline

    root = shared_data / "7scenes_stairs" / "stairs"
    p = next(q for q in get_dataset("7scenes", root, pairs_file=str(
        Path(__file__).resolve().parents[1] / "benchmarks" / "pairs" / "7scenes_stairs_cross_sequence.txt")).pairs()
        if "seq-03_frame-000000_seq-04" in q.pair_id)
    v0, v1 = twoview.load_views(p.image0, p.image1, p.camera0, p.camera1, *p.load_depths())
    res = Pipeline({"recovery": {"enabled": False}})(v0, v1)
    assert not res.success and "depth maps contradict" in res.reason, res
    err = Pose.from_matrix(np.asarray(res.info["rejected_pose"]) @ np.linalg.inv(p.cam1_from_cam0.matrix))
    assert np.degrees(np.linalg.norm(err.rotvec())) > 20  # it was wrong
    assert res.info["depth_consistency"]["agreement"] < 0.15 and res.info["depth_consistency"]["sensor_depth"]


@pytest.mark.parametrize("violation, agreement, overlap, sensor, floor, passes", [
    (0.01, 0.8, 0.4, True, 0.5, True),     # the depth confirms a pose the evidence doubts: kept at 0.5
    (0.01, 0.8, 0.4, False, 0.5, False),   # predicted depth confirms nothing
    (0.08, 0.8, 0.4, True, 0.5, False),    # too much of it in the other's free space
    (0.01, 0.4, 0.4, True, 0.5, False),    # too little on the other's surface
    (0.01, 0.8, 0.05, True, 0.5, False),   # a sliver of shared depth confirms nothing
    (0.01, 0.8, 0.4, True, 0.0, False),    # turned off
])
def test_sensor_depth_that_confirms_the_pose_keeps_it(violation, agreement, overlap, sensor, floor, passes):
    from twoview.pipeline.config import ConfidenceConfig
    from twoview.pipeline.confidence import finalise_confidence

    res = _result_with(agreement, sensor)
    res.confidence = 0.05
    res.info["depth_consistency"].update(violation=violation, overlap=overlap)
    out = finalise_confidence(res, ConfidenceConfig(calibrated=False, min_confidence=0.2, depth_confirmed_confidence=floor))
    assert out.success is passes
    if passes:
        assert out.confidence == 0.5 and out.info["depth_confirmed"] and out.info["confidence_before_depth_check"] == 0.05
    else:
        assert "below min_confidence" in out.reason

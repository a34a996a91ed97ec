"""The pipeline object: one configuration, stages recorded, motion labels, confidence rule,
each input decoded once, the same pose from the API and a bench method."""

from __future__ import annotations

import numpy as np
import pytest

import twoview
from twoview.errors import ConfigError, InputError
from twoview.geometry import Camera, Pose
from twoview.geometry.rotation import so3_exp
from twoview.pipeline import Pipeline, PipelineConfig
from twoview.result import Matches, PoseResult
from twoview.view import View, load_view

W, H = 640, 480
CAM = Camera(500.0, 500.0, (W - 1) / 2, (H - 1) / 2, W, H)
#: the front end alone: no registration, refinement, recovery or confidence threshold
FRONT = {"depth": {"register": False}, "refine": {"method": "none"}, "recovery": {"enabled": False},
         "confidence": {"calibrated": False, "min_confidence": 0.0}}


def _views(rng):
    im0 = (rng.random((H, W, 3)) * 255).astype(np.uint8)
    im1 = (rng.random((H, W, 3)) * 255).astype(np.uint8)
    return View(im0, CAM, name="0"), View(im1, CAM, name="1")


def _matches(rng, pose: Pose, n=400, depth=(2.0, 6.0), planar=False, noise=0.3):
    u = rng.uniform(20, W - 20, n)
    v = rng.uniform(20, H - 20, n)
    z = np.full(n, 4.0) + 0.002 * (u - W / 2) if planar else rng.uniform(*depth, n)
    X0 = CAM.unproject(np.stack([u, v], 1), z)
    X1 = pose.apply(X0)
    k1 = CAM.project(X1) + rng.normal(0, noise, (n, 2))
    k0 = np.stack([u, v], 1) + rng.normal(0, noise, (n, 2))
    keep = CAM.in_image(k1, margin=2)
    return Matches(k0[keep], k1[keep], np.ones(keep.sum()))


def test_general_motion_is_labelled_and_the_stages_recorded(rng):
    pose = Pose(so3_exp(np.radians([2.0, 8.0, 1.0])), np.array([0.5, 0.05, 0.1]))
    res = Pipeline(FRONT)(*_views(rng), matches=_matches(rng, pose))
    assert res.success and res.motion == "general" and res.translation_observable
    stages = [s["stage"] for s in res.info["pipeline"]["stages"]]
    assert stages[:2] == ["depth", "front_end"] and "motion" in stages and stages[-1] == "confidence"
    assert res.info["pipeline"]["config"] == PipelineConfig.from_dict(FRONT).to_dict()


def test_pure_rotation_keeps_the_rotation_and_marks_the_translation_unobservable(rng):
    R = so3_exp(np.radians([1.0, 5.0, 0.5]))
    res = Pipeline(FRONT)(*_views(rng), matches=_matches(rng, Pose(R, np.zeros(3))))
    assert res.success and res.motion == "pure_rotation"
    assert not res.translation_observable and not res.metric
    assert np.degrees(np.linalg.norm(Pose(res.cam1_from_cam0.R @ R.T, np.zeros(3)).rotvec())) < 0.2
    assert res.to_dict()["translation_observable"] is False and "not observable" in res.summary()


def test_no_motion_is_a_failure(rng):
    m = _matches(rng, Pose(so3_exp(np.radians([0.0, 0.01, 0.0])), np.zeros(3)), noise=0.0)
    m = Matches(m.kpts0, m.kpts0 + np.array([0.6, 0.0]), m.scores)  # a crop-like constant shift under 1 px
    res = Pipeline(FRONT)(*_views(rng), matches=m)
    assert not res.success and ("no camera motion" in res.reason or "do not move" in res.reason)
    assert res.cam1_from_cam0 is None


def test_a_planar_scene_is_labelled(rng):
    pose = Pose(so3_exp(np.radians([1.0, 6.0, 0.0])), np.array([0.6, 0.0, 0.1]))
    res = Pipeline(FRONT)(*_views(rng), matches=_matches(rng, pose, planar=True))
    assert res.success and res.motion == "planar"


def test_a_pose_below_min_confidence_is_a_failure_with_the_pose_kept_aside(rng):
    pose = Pose(so3_exp(np.radians([2.0, 8.0, 1.0])), np.array([0.5, 0.05, 0.1]))
    cfg = PipelineConfig.from_dict({**FRONT, "confidence": {"calibrated": False, "min_confidence": 0.999}})
    m = _matches(rng, pose, n=60, noise=1.0)
    res = Pipeline(cfg)(*_views(rng), matches=m)
    assert not res.success and "below min_confidence" in res.reason
    assert np.asarray(res.info["rejected_pose"]).shape == (4, 4)


def test_config_is_strict_and_coerced():
    with pytest.raises(ConfigError):
        PipelineConfig.from_dict({"refine": {"methd": "gmm"}})
    with pytest.raises(ConfigError):
        PipelineConfig.from_dict({"cascade": {"fallback": "orb"}})
    with pytest.raises(TypeError):
        Pipeline(3)
    assert twoview.EstimatorConfig is PipelineConfig


def test_views_are_checked(rng):
    with pytest.raises(InputError, match="view0"):
        Pipeline(FRONT)("a.png", View(np.zeros((H, W, 3), np.uint8), CAM))
    with pytest.raises(InputError, match="camera0"):
        load_view(np.zeros((48, 64, 3), np.uint8), [1e12, 1e12, 32, 24])  # a focal length of no real lens
    with pytest.raises(InputError, match="depth_kind"):
        load_view(np.zeros((48, 64, 3), np.uint8), [50, 50, 32, 24], depth_kind="lidar")


@pytest.fixture(scope="module")
def icl_pair(shared_data):
    from twoview.datasets import get_dataset

    ds = get_dataset("icl_nuim", shared_data / "icl_nuim_livingroom1", trajectory="pseudo_gt_in_gt_world_frame.log", gaps=[10])
    return ds.pairs()[3]


def test_each_input_file_is_decoded_once(icl_pair, monkeypatch):
    import twoview.io.depth as iodepth
    import twoview.io.images as ioimages

    calls = {"image": [], "depth": []}
    load_image, load_depth = ioimages.load_image, iodepth.load_depth
    monkeypatch.setattr(ioimages, "load_image", lambda p, *a, **k: calls["image"].append(str(p)) or load_image(p, *a, **k))
    monkeypatch.setattr(iodepth, "load_depth", lambda p, *a, **k: calls["depth"].append(str(p)) or load_depth(p, *a, **k))
    p = icl_pair
    res = twoview.estimate_relative_pose(p.image0, p.image1, p.camera0, p.camera1, p.depth0, p.depth1,
                                         depth_scale=p.depth_scale, config={"refine": {"method": "gmm"}})
    assert res.success and res.solver == "gmm"
    assert sorted(calls["image"]) == sorted([str(p.image0), str(p.image1)])
    assert sorted(calls["depth"]) == sorted([str(p.depth0), str(p.depth1)])


def test_api_cli_and_bench_method_give_the_same_pose(icl_pair, tmp_path):
    import json

    from twoview.bench.methods import make_method
    from twoview.cli import main

    p = icl_pair
    d0, d1 = p.load_depths()
    api = twoview.estimate_relative_pose(p.image0, p.image1, p.camera0, p.camera1, p.depth0, p.depth1,
                                         depth_scale=p.depth_scale)
    bench = make_method("default")(p, d0, d1)
    c = p.camera0
    assert main(["estimate", str(p.image0), str(p.image1), "--K0", f"{c.fx},{c.fy},{c.cx},{c.cy}",
                 "--depth0", str(p.depth0), "--depth1", str(p.depth1), "--depth-scale", str(p.depth_scale),
                 "--json", str(tmp_path / "r.json")]) == 0
    cli = json.loads((tmp_path / "r.json").read_text())
    assert api.success and bench.success and cli["success"]
    np.testing.assert_allclose(api.cam1_from_cam0.matrix, bench.cam1_from_cam0.matrix, atol=1e-9)
    np.testing.assert_allclose(api.cam1_from_cam0.matrix, cli["cam1_from_cam0"], atol=1e-9)
    assert api.info["pipeline"]["stages"] == bench.info["pipeline"]["stages"]
    assert cli["info"]["pipeline"]["config"] == api.info["pipeline"]["config"]


def test_the_images_only_bench_method_is_the_api_without_depth(icl_pair):
    """``default-images`` reads no depth and gives what the API gives for the photos alone:
    a direction-only pose, so datasets without depth (Strecha, KITTI) can bench the default."""
    from twoview.bench.methods import make_method

    p = icl_pair
    method = make_method("default-images")
    assert method.uses_depth == (False, False) and not method.metric
    bench = method(p, None, None)
    api = twoview.estimate_relative_pose(p.image0, p.image1, p.camera0, p.camera1)
    assert api.success and bench.success and not bench.metric
    np.testing.assert_allclose(api.cam1_from_cam0.matrix, bench.cam1_from_cam0.matrix, atol=1e-9)
    with pytest.raises(twoview.ConfigError, match="default-images takes no initial pose"):
        make_method("default-images@sift-rigid3d")


def test_recovery_without_matches(icl_pair):
    """No match at all (a matcher that found none): the mixtures, aligned from several
    starting poses, recover the pose of a small-motion pair."""
    p = icl_pair
    d0, d1 = p.load_depths()
    v0, v1 = twoview.load_views(p.image0, p.image1, p.camera0, p.camera1, d0, d1)
    empty = Matches(np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0))
    res = Pipeline()(v0, v1, matches=empty)
    assert res.success and res.solver == "gmm-recovery", res.reason
    tried = [s for s in res.info["pipeline"]["stages"] if s["stage"] == "recovery" and "tried" in s][0]["tried"]
    names = [t["hypothesis"] for t in tried]
    assert names[0] == "identity" and "regress" in names  # the regressor's pose is one more start
    G = p.cam1_from_cam0
    rot = np.degrees(np.linalg.norm(Pose.from_matrix(res.cam1_from_cam0.matrix @ np.linalg.inv(G.matrix)).rotvec()))
    assert rot < 2.0
    off = Pipeline({"recovery": {"enabled": False}})(v0, v1, matches=empty)
    assert not off.success and "too few matches" in off.reason


def test_shipped_confidence_model_separates_right_from_wrong(icl_pair, shared_data):
    """The calibrated confidence (``confidence_model.json``, fitted by
    ``benchmarks/calibrate_confidence.py`` on real RGB-D runs): a well-matched real pair reads as
    almost surely right; the same pair with its second image replaced by an unrelated view
    (a wrong pose if any) reads low and, below ``min_confidence``, is a failure that says so."""
    from twoview.pipeline.confidence import MODEL_PATH, calibrated_probability, evidence

    assert MODEL_PATH.is_file()
    p = icl_pair
    d0, d1 = p.load_depths()
    v0, v1 = twoview.load_views(p.image0, p.image1, p.camera0, p.camera1, d0, d1)
    res = Pipeline()(v0, v1)
    assert res.success and res.confidence > 0.8 and res.info["confidence_raw"] <= 1
    f = evidence(res)
    assert calibrated_probability(f, True) == pytest.approx(res.confidence, abs=1e-3)  # sigmas scaled since
    # the same evidence with the refinement rejected and few inliers: a lower probability
    weak = {**f, "refine_rejected": 1.0, "log_inliers": np.log(8.0), "inlier_ratio": 0.1, "raw": 0.05}
    assert calibrated_probability(weak, True) < res.confidence - 0.02
    # view 1 from another room (TUM fr1_xyz): no pose, or one whose confidence says not to trust it
    from twoview.datasets import get_dataset

    q = get_dataset("tum", shared_data / "tum" / "fr1_xyz", gaps=[1]).pairs()[0]
    w0, w1 = twoview.load_views(p.image0, q.image1, p.camera0, q.camera1, d0, q.load_depths()[1])
    bad = Pipeline({"recovery": {"enabled": False}, "confidence": {"min_confidence": 0.0}})(w0, w1)
    assert not bad.success or bad.confidence < 0.5, bad
    # the same without the refinement: the front end's model reads it as low
    bad = Pipeline({"recovery": {"enabled": False}, "refine": {"method": "none"}, "confidence": {"min_confidence": 0.0}})(w0, w1)
    assert not bad.success or bad.confidence < 0.5, bad


def test_an_unrefined_pose_is_scored_by_a_model_of_unrefined_poses(shared_data):
    """``--refine none`` (the front end's pose as it is): the confidence comes from the model
    fitted on unrefined poses, not from the refined poses' model, which read the missing
    refinement as a failed one and turned this right pose (2.3 deg, 2.4 cm) into a failure
    at confidence 0.05."""
    from twoview.datasets import get_dataset
    from twoview.pipeline.confidence import evidence, model_kind

    p = get_dataset("tum", shared_data / "tum" / "fr3_cabinet_keyframes", max_gt_gap=1.0, gaps=[1]).pairs()[0]
    assert p.pair_id.endswith("1341841278.8427_1341841279.5107")
    v0, v1 = twoview.load_views(p.image0, p.image1, p.camera0, p.camera1, *p.load_depths())
    res = Pipeline({"refine": {"method": "none"}})(v0, v1)
    assert res.success, res.reason
    assert model_kind(evidence(res), res.metric) == "metric_front_end" and res.info.get("confidence_calibrated")
    assert res.confidence > 0.5
    err = Pose.from_matrix(res.cam1_from_cam0.matrix @ np.linalg.inv(p.cam1_from_cam0.matrix))
    assert np.degrees(np.linalg.norm(err.rotvec())) < 5 and np.linalg.norm(res.cam1_from_cam0.t - p.cam1_from_cam0.t) < 0.1


def test_sigma_scales_follow_the_kind_of_result():
    """The fitted sigma scales: a refined pose takes the mixtures' factor, a front-end
    pose its solver's; a direction-only essential matrix is a kind of its own (its
    covariance has no metric part), not the depth-scaled one's."""
    from twoview.pipeline.confidence import sigma_kind, sigma_scale

    pose = Pose(np.eye(3), np.array([0.1, 0.0, 0.0]))
    refined = PoseResult(success=True, cam1_from_cam0=pose, metric=True, solver="gmm",
                         info={"front_end": {"solver": "rigid3d"}})
    assert sigma_kind(refined) == "gmm" and sigma_scale(refined) > 1
    rejected = PoseResult(success=True, cam1_from_cam0=pose, metric=True, solver="gmm",
                          info={"front_end": {"solver": "rigid3d"}, "rejected": True})
    assert sigma_kind(rejected) == "rigid3d"
    scaled = PoseResult(success=True, cam1_from_cam0=pose, metric=True, solver="essential+depth-scale")
    direction = PoseResult(success=True, cam1_from_cam0=pose, metric=False, solver="essential")
    assert sigma_kind(scaled) == "essential+depth-scale" and sigma_kind(direction) == "essential"
    assert sigma_scale(direction) is None  # no fit for it: its covariance is reported as computed


@pytest.mark.parametrize("first, rescued, kept", [
    ("pnp", "rigid3d", "aliked"),              # a 3D-3D pose replaces a PnP one
    ("essential+depth-scale", "essential", "xfeat"),  # a direction never replaces metres
    ("pnp", "pnp", "aliked"),                  # the same kind: more inliers wins (40 > 30)
])
def test_the_rescue_keeps_the_pose_that_measures_more(rng, monkeypatch, first, rescued, kept):
    """The cascade's rescue runs when, with sensor depth in both views, the pose is not the
    3D-3D solver's; its pose is kept only when its solver measures at least as much."""
    from twoview.result import PoseResult

    canned = {"xfeat": (first, 30), "sift": ("pnp", 10), "aliked": (rescued, 40)}
    ran = []

    def match_once(self, mcfg, view0, view1, run, stage="match", why=""):
        ran.append(mcfg.name)
        solver, n = canned[mcfg.name]
        res = PoseResult(success=True, cam1_from_cam0=Pose.identity(), metric=solver != "essential", solver=solver,
                         num_matches=100, num_inliers=n)
        res.info["matcher"] = mcfg.name
        return res

    monkeypatch.setattr(Pipeline, "_match_once", match_once)
    depth = np.full((H, W), 3.0)
    v0, v1 = (View(np.zeros((H, W, 3), np.uint8), CAM, depth=depth, depth_kind="sensor", name=n) for n in "01")
    pipe = Pipeline({**FRONT, "matcher": {"name": "xfeat"}})
    assert pipe._match_and_solve(v0, v1, None, pipe_run(pipe)).info["matcher"] == kept
    assert ran == ["xfeat", "sift", "aliked"]
    ran.clear()  # a 3D-3D first pose is not rescued
    canned["xfeat"] = ("rigid3d", 30)
    assert pipe._match_and_solve(v0, v1, None, pipe_run(pipe)).info["matcher"] in ("xfeat", "sift")
    assert "aliked" not in ran


def test_the_photos_as_taken_are_matched_only_where_the_depth_has_not_confirmed_the_pose(monkeypatch):
    """Where a view's colour was moved onto its depth, a pose the two depth maps do not
    confirm sends the matchers to the photos as taken (their keypoints carried onto the
    depth grid); what follows is kept only when the depth confirms it."""
    from twoview.depth.registration import DepthRegistration, colour_to_depth_pixels
    from twoview.pipeline.pipeline import _Run

    depth = np.full((H, W), 2.0)
    v0, v1 = (View(np.full((H, W, 3), 60 + 20 * k, np.uint8), CAM, depth=depth, depth_kind="sensor", name=str(k))
              for k in range(2))
    photo = np.full((H, W, 3), 200, np.uint8)
    reg = DepthRegistration(shift=np.array([3.0, -2.0]), zoom=0.95, parallax=np.array([10.0, 0.0]),
                            centre=np.array([CAM.cx, CAM.cy]), applied=True, reference="depth")
    kp = np.array([[40.0, 30.0], [10.0, 20.0], [W - 1.0, H - 1.0]])
    seen, solved = [], []

    class Matcher:
        def match(self, im0, im1):
            seen.append((im0 is photo, im1 is photo))
            return Matches(kp, kp, np.ones(len(kp)))

    pipe = Pipeline({**FRONT, "matcher": {"name": "xfeat"}, "cascade": {"fallback": None, "rescue": None}})
    monkeypatch.setattr(pipe.models, "matcher", lambda cfg: Matcher())
    monkeypatch.setattr(Pipeline, "_solve", lambda self, m, a, b, run, name: solved.append(m) or PoseResult.failure("canned"))
    run = _Run()
    run.as_taken = [(photo, reg), None]
    pipe._match_once(pipe.config.matcher, v0, v1, run)  # the first attempt: the views' own colour
    run.match_as_taken = True
    pipe._match_once(pipe.config.matcher, v0, v1, run)
    assert seen == [(False, False), (True, False)]
    np.testing.assert_array_equal(solved[0].kpts0, kp)
    carried = colour_to_depth_pixels(kp, depth, reg)
    inside = np.all((carried >= -0.5) & (carried <= np.array([W, H]) - 0.5), axis=1)
    assert 0 < inside.sum() < len(kp)  # keypoints off the depth camera's image are dropped
    np.testing.assert_allclose(solved[1].kpts0, carried[inside])
    np.testing.assert_array_equal(solved[1].kpts1, kp[inside])

    # the decision: kept only on the depth's word
    pose = Pose(np.eye(3), np.array([0.1, 0.0, 0.0]))
    first = PoseResult.failure("confidence 0.00 is below min_confidence 0.2")

    def attempt(confirmed):
        alt = PoseResult(success=True, cam1_from_cam0=pose, metric=True, solver="gmm")
        alt.info["depth_consistency"] = {"sensor_depth": True, "overlap": 0.7, "violation": 0.01 if confirmed else 0.3,
                                         "agreement": 0.8}
        monkeypatch.setattr(Pipeline, "_match_and_solve", lambda self, *a: alt)
        monkeypatch.setattr(Pipeline, "_finish", lambda self, front, *a: front)
        run = _Run()
        return pipe._try_the_photos(first, v0, v1, run, {}), run

    kept, run = attempt(True)
    assert kept.success and "photos_as_taken" in kept.info and run.stages[-1]["kept"]
    kept, run = attempt(False)
    assert kept is first and not run.stages[-1]["kept"]
    assert not PipelineConfig.from_dict({"cascade": {"photos_as_taken": False}}).cascade.photos_as_taken
    with pytest.raises(ConfigError):
        PipelineConfig.from_dict({"cascade": {"photos": False}})


def pipe_run(pipe):
    from twoview.pipeline.pipeline import _Run

    return _Run()


def test_no_rescue_on_images_alone(rng, monkeypatch):
    """Without depth a strong matcher also pairs unrelated views: a failure stays one."""
    from twoview.result import PoseResult

    ran = []

    def match_once(self, mcfg, view0, view1, run, stage="match", why=""):
        ran.append(mcfg.name)
        return PoseResult.failure("too few matches")

    monkeypatch.setattr(Pipeline, "_match_once", match_once)
    pipe = Pipeline({**FRONT, "matcher": {"name": "xfeat"}})
    assert not pipe._match_and_solve(*_views(rng), None, pipe_run(pipe)).success
    assert ran == ["xfeat", "sift"]


@pytest.mark.parametrize("argv, fallback, rescue", [
    ([], "sift", "aliked"),
    (["--cascade", "none"], None, "aliked"),
    (["--rescue", "none"], "sift", None),
    (["--cascade", "aliked", "--rescue", "disk"], "aliked", "disk"),
])
def test_the_cascade_flags_fill_the_config(argv, fallback, rescue):
    import argparse

    from twoview.cli.estimate import add_pipeline_args, pipeline_config

    p = argparse.ArgumentParser()
    add_pipeline_args(p)
    cfg = pipeline_config(p.parse_args(argv))
    assert (cfg.cascade.fallback, cfg.cascade.rescue) == (fallback, rescue)


CHECKED = {"measured": True, "applied": False}  # the depth's contours compared with the colour's edges
UNCHECKED = {"measured": False, "applied": False}  # too few depth contours to compare


@pytest.mark.parametrize("mode, registrations, veto", [
    ("auto", [None, None], False),  # not registered: the colour was never checked against the depth
    ("auto", [UNCHECKED, UNCHECKED], False),
    ("auto", [UNCHECKED, CHECKED], True),
    ("auto", [{"measured": True, "applied": True}, None], True),  # corrected: checked, and they agree now
    ("always", [None, None], True),
    ("never", [CHECKED, CHECKED], False),
])
def test_the_colour_may_undo_the_polish_only_where_it_was_checked_against_the_depth(rng, mode, registrations, veto):
    import argparse

    from twoview.cli.estimate import add_pipeline_args, pipeline_config
    from twoview.pipeline.pipeline import _Run

    views = [View(v.image, CAM, np.full((H, W), 2.0), "sensor", name=v.name,
                  info={} if r is None else {"registration": r}) for v, r in zip(_views(rng), registrations)]
    parser = argparse.ArgumentParser()
    add_pipeline_args(parser)
    cfg = pipeline_config(parser.parse_args(["--polish-veto", mode]))  # the CLI fills the same option
    assert cfg.refine.polish_veto == mode
    run = _Run()
    acfg = Pipeline(cfg)._align_config(*views, run)
    assert (acfg.polish_appearance_tolerance is not None) == veto
    if mode != "always":
        (note,) = [s for s in run.stages if s["stage"] == "polish_veto"]
        assert note["on"] == veto and note["why"]
    with pytest.raises(ConfigError, match="polish_veto"):
        PipelineConfig.from_dict({"refine": {"polish_veto": "sometimes"}})


def test_the_stage_line_says_what_each_matcher_gave_and_why_it_ran():
    """`twoview estimate`'s "stages:" line: a matcher's own outcome first (inliers, or why
    it has no pose), then why the cascade ran it; a matcher not installed says so."""
    from twoview.cli.estimate import _stage_line

    assert _stage_line({"stage": "front_end", "matcher": "xfeat", "success": True, "inliers": 23}) == "xfeat ok, 23 inliers"
    assert _stage_line({"stage": "front_end", "matcher": "sift", "success": False, "inliers": 0,
                        "reason": "too few matches (6; need at least 15)", "why": "xfeat pose weak: 23 inliers of 157"}) == (
        "sift no pose: too few matches (6; need at least 15) (ran because xfeat pose weak: 23 inliers of 157)")
    assert _stage_line({"stage": "front_end", "matcher": "aliked", "skipped": "torch is not installed"}) == (
        "aliked not available (torch is not installed)")
    assert _stage_line({"stage": "front_end", "method": "regress", "success": True, "pose_source": "network"}) == (
        "regress ok, the network's own pose")

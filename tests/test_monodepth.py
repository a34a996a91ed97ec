"""The scale-aware monocular-depth solver (pose + relative scale of two depth maps)."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from synthetic import make_scene
from twoview import EstimatorConfig, Matches, estimate_from_matches
from twoview.config import SolverConfig
from twoview.errors import InputError
from twoview.geometry import Pose
from twoview.geometry.rotation import so3_exp
from twoview.metrics import rotation_error_deg
from twoview.solvers import solve_rigid3d
from twoview.solvers.monodepth import MonodepthConfig, solve_monodepth, umeyama

seeds = st.integers(0, 2**31 - 1)
SETTINGS = dict(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@settings(**SETTINGS)
@given(seeds)
def test_umeyama_recovers_similarity(seed):
    rng = np.random.default_rng(seed)
    X0 = rng.normal(size=(20, 3))
    R = so3_exp(rng.normal(size=3))
    s, t = rng.uniform(0.3, 3.0), rng.normal(size=3)
    s2, R2, t2 = umeyama(X0, s * X0 @ R.T + t)
    assert np.isclose(s2, s) and np.allclose(R2, R) and np.allclose(t2, t)


@settings(**SETTINGS)
@given(seeds, st.floats(0.7, 1.3), st.floats(0.7, 1.3))
def test_noise_free_relative_scale_and_metric_pose(seed, g0, g1):
    """Depth maps off by unknown factors g0, g1: the relative scale is g1/g0 and the pose is
    the true one in the units of the maps' geometric mean, sqrt(g0 g1)."""
    s = make_scene(np.random.default_rng(seed))
    out = solve_monodepth(s.kpts0, s.kpts1, s.cam0, s.cam1, g0 * s.depth0, g1 * s.depth1)
    assert out.metric and out.pose is not None, out.reason
    assert np.isclose(out.info["relative_scale"], g1 / g0, rtol=1e-6)
    gt = s.cam1_from_cam0
    assert rotation_error_deg(out.pose.R, gt.R) < 1e-5
    np.testing.assert_allclose(out.pose.t, np.sqrt(g0 * g1) * gt.t, atol=1e-6)
    assert out.num_inliers >= 0.95 * len(s.kpts0)


def test_beats_rigid_fit_when_the_maps_disagree_in_scale():
    errs_mono, errs_rigid = [], []
    for seed in range(6):
        rng = np.random.default_rng(seed)
        s = make_scene(rng)
        d0 = 0.88 * s.depth0
        d1 = 1.12 * s.depth1
        k1 = s.kpts1 + rng.normal(scale=0.5, size=s.kpts1.shape)
        gt = s.cam1_from_cam0
        m = solve_monodepth(s.kpts0, k1, s.cam0, s.cam1, d0, d1)
        r = solve_rigid3d(s.kpts0, k1, s.cam0, s.cam1, d0, d1)
        errs_mono.append(rotation_error_deg(m.pose.R, gt.R))
        errs_rigid.append(rotation_error_deg(r.pose.R, gt.R) if r.pose is not None else 180.0)
        assert abs(m.info["relative_scale"] / (1.12 / 0.88) - 1) < 0.01
    assert np.median(errs_mono) < 0.2
    assert np.median(errs_mono) < 0.5 * np.median(errs_rigid)


def test_outliers_and_smooth_depth_distortion():
    rng = np.random.default_rng(7)
    s = make_scene(rng, n=400)
    H, W = s.depth0.shape
    vv, uu = np.mgrid[0:H, 0:W]
    field = 1 + 0.04 * np.sin(uu / W * 3.0) * np.cos(vv / H * 2.0)  # smooth +-4%
    d0, d1 = 0.9 * s.depth0 * field, 1.1 * s.depth1 * field[::-1, ::-1]
    k1 = s.kpts1 + rng.normal(scale=0.5, size=s.kpts1.shape)
    bad = rng.random(len(k1)) < 0.3
    k1[bad] = rng.uniform([0, 0], [W - 1, H - 1], size=(bad.sum(), 2))
    out = solve_monodepth(s.kpts0, k1, s.cam0, s.cam1, d0, d1)
    gt = s.cam1_from_cam0
    assert out.pose is not None, out.reason
    assert rotation_error_deg(out.pose.R, gt.R) < 0.5
    # translation: within 8% of the baseline (the maps' mean scale is sqrt(0.99) off)
    assert np.linalg.norm(out.pose.t - gt.t) < 0.08 * np.linalg.norm(gt.t)
    assert out.inliers[bad].mean() < 0.05 and out.inliers[~bad].mean() > 0.8
    assert out.info["depth_inliers"] >= 50


def test_all_invalid_depth_is_a_failure_not_a_crash():
    s = make_scene(np.random.default_rng(0))
    out = solve_monodepth(s.kpts0, s.kpts1, s.cam0, s.cam1, np.full_like(s.depth0, np.nan), s.depth1)
    assert out.pose is None and "reliable depth" in out.reason
    assert out.inliers.shape == (len(s.kpts0),) and not out.inliers.any()


def test_wrong_size_depth_is_an_input_error():
    s = make_scene(np.random.default_rng(0))
    with pytest.raises(InputError, match="depth1"):
        solve_monodepth(s.kpts0, s.kpts1, s.cam0, s.cam1, s.depth0, s.depth1[:-2])


def test_estimator_mode_monodepth_and_fallback():
    s = make_scene(np.random.default_rng(3))
    m = Matches(s.kpts0, s.kpts1, np.ones(len(s.kpts0)))
    cfg = EstimatorConfig.from_dict({"solver": {"mode": "monodepth"}})
    r = estimate_from_matches(m, s.cam0, s.cam1, 1.1 * s.depth0, 0.95 * s.depth1, cfg)
    assert r.success and r.metric and r.solver == "monodepth"
    assert np.isclose(r.info["relative_scale"], 0.95 / 1.1)
    with pytest.raises(InputError, match="monodepth"):
        estimate_from_matches(m, s.cam0, s.cam1, s.depth0, None, cfg)
    # no usable depth in view 0: falls back (PnP on view 1), and says so
    r = estimate_from_matches(m, s.cam0, s.cam1, np.full_like(s.depth0, np.nan), s.depth1, cfg)
    assert r.success and r.solver == "pnp" and any("monodepth" in f for f in r.info["fallbacks"])


def test_swapping_views_inverts_pose_and_scale():
    s = make_scene(np.random.default_rng(11))
    a = solve_monodepth(s.kpts0, s.kpts1, s.cam0, s.cam1, 0.9 * s.depth0, 1.2 * s.depth1)
    b = solve_monodepth(s.kpts1, s.kpts0, s.cam1, s.cam0, 1.2 * s.depth1, 0.9 * s.depth0)
    assert a.pose.allclose(b.pose.inverse(), atol=1e-6)
    assert np.isclose(a.info["relative_scale"] * b.info["relative_scale"], 1.0)


def test_config_is_strict():
    from twoview.errors import ConfigError

    with pytest.raises(ConfigError):
        MonodepthConfig.from_dict({"ransac_3d_error_rel": 2.0})
    with pytest.raises(ConfigError):
        MonodepthConfig.from_dict({"tolerance": 0.1})


def test_bench_method_registered_and_runs_on_real_pair(shared_data):
    from twoview.bench.methods import make_method, registry
    from twoview.datasets.base import PairSample
    from twoview.depth.degrade import degrade_depth
    from twoview.geometry import Camera

    assert "sift-monodepth" in registry()
    meth = make_method("sift-monodepth")
    assert meth.uses_depth == (True, True) and meth.metric
    d = shared_data / "icl_nuim_livingroom1"
    lines = [ln.split() for ln in (d / "pseudo_gt_open3d_reconstruction.log").read_text().splitlines() if ln.strip()]
    T = {int(lines[k][0]): np.array([[float(v) for v in r] for r in lines[k + 1 : k + 5]]) for k in range(0, len(lines), 5)}
    cam = Camera(525.0, 525.0, 319.5, 239.5, 640, 480)
    gt = Pose.from_matrix(np.linalg.inv(T[20]) @ T[0])
    sample = PairSample("icl/0-20", d / "color/00000.jpg", d / "color/00020.jpg", cam, cam, gt,
                        d / "depth_clean/00000.png", d / "depth_clean/00020.png", 1000.0)
    d0, d1 = sample.load_depths()
    res = meth(sample, degrade_depth(d0, seed=1)[0], degrade_depth(d1, seed=2)[0])
    assert res.success and res.metric, res.reason
    assert rotation_error_deg(res.cam1_from_cam0.R, gt.R) < 2.0
    assert np.linalg.norm(res.cam1_from_cam0.t - gt.t) < 0.25 * np.linalg.norm(gt.t)
    assert meth(sample, None, d1).success is False


def _noisy_depth_at(s, rng, rel):
    """Depth of the keypoints with iid relative noise ``rel`` (log-normal), per view."""
    from twoview.solvers.common import sample_depth

    z0 = sample_depth(s.depth0, s.kpts0)
    z1 = sample_depth(s.depth1, s.kpts1)
    return z0 * np.exp(rel * rng.normal(size=len(z0))), z1 * np.exp(rel * rng.normal(size=len(z1)))


def test_joint_refinement_fixed_point_and_convergence():
    """Exact data is a fixed point; a perturbed start converges back to it."""
    from twoview.solvers.monodepth import refine_joint

    s = make_scene(np.random.default_rng(5))
    z0, z1 = _noisy_depth_at(s, np.random.default_rng(0), 0.0)
    gt = s.cam1_from_cam0
    g0, g1 = 0.9, 1.2  # the maps' scales: relative log-scale log(g1 / g0), metric frame sqrt(g0 g1)
    ls_true = np.log(g1 / g0)
    t_true = np.sqrt(g0 * g1) * gt.t
    R, t, ls, X = refine_joint(gt.R, t_true, ls_true, s.kpts0, s.kpts1, g0 * z0, g1 * z1, s.cam0, s.cam1, 0.5, 0.05)
    assert rotation_error_deg(R, gt.R) < 1e-6 and np.allclose(t, t_true, atol=1e-8) and np.isclose(ls, ls_true)
    ok = np.isfinite(z0) | np.isfinite(z1)
    np.testing.assert_allclose(X, np.sqrt(g0 * g1) * s.points0[ok], rtol=1e-7)
    R2, t2, ls2, _ = refine_joint(
        so3_exp([0.01, -0.008, 0.005]) @ gt.R, t_true + 0.05 * np.linalg.norm(t_true), ls_true + 0.1,
        s.kpts0, s.kpts1, g0 * z0, g1 * z1, s.cam0, s.cam1, 0.5, 0.05,
    )
    assert rotation_error_deg(R2, gt.R) < 1e-4
    assert np.linalg.norm(t2 - t_true) < 1e-5 * np.linalg.norm(t_true) and abs(ls2 - ls_true) < 1e-5


@pytest.mark.parametrize("rel", [0.01, 0.05])
def test_depth_noise_level_is_estimated_from_the_data(rel):
    from twoview.solvers.monodepth import estimate_sigmas

    rng = np.random.default_rng(2)
    s = make_scene(rng, n=400)
    z0, z1 = _noisy_depth_at(s, rng, rel)
    k1 = s.kpts1 + rng.normal(scale=0.7, size=s.kpts1.shape)
    gt = s.cam1_from_cam0
    spx, srel, n = estimate_sigmas(gt.R, gt.t, 0.0, s.kpts0, k1, z0, z1, s.cam0, s.cam1, 0.05, 0.001, 0.3, 2.0)
    assert n > 300
    assert 0.7 * rel < srel < 1.3 * rel
    assert 0.3 < spx < 1.0  # Sampson error of 0.7 px noise in one image


def test_joint_refinement_trusts_good_depth_and_discounts_poor_depth():
    """Against the pose-only refinement, on maps of unknown scale with iid depth noise:
    with precise depth the joint solution is more accurate (it estimates how precise the
    depth is and trusts it); with poor depth it is not worse."""
    res = {}
    for rel in (0.005, 0.08):
        errs = {True: [], False: []}
        for seed in range(8):
            rng = np.random.default_rng(100 + seed)
            s = make_scene(rng, n=250)
            z0, z1 = _noisy_depth_at(s, rng, rel)
            # noisy depth maps: write the noisy keypoint depth into the maps' 3x3 patches
            d0, d1 = 0.9 * s.depth0.copy(), 1.1 * s.depth1.copy()
            for d, k, z, g in ((d0, s.kpts0, z0, 0.9), (d1, s.kpts1, z1, 1.1)):
                x, y = np.rint(k[:, 0]).astype(int), np.rint(k[:, 1]).astype(int)
                ok = np.isfinite(z)
                for dy in (-1, 0, 1):
                    for dx in (-1, 0, 1):
                        d[y[ok] + dy, x[ok] + dx] = g * z[ok]
            k1 = s.kpts1 + rng.normal(scale=0.8, size=s.kpts1.shape)
            gt = s.cam1_from_cam0
            for joint in (True, False):
                cfg = SolverConfig().replace(monodepth=MonodepthConfig(joint_refinement=joint))
                out = solve_monodepth(s.kpts0, k1, s.cam0, s.cam1, d0, d1, cfg)
                assert out.pose is not None, out.reason
                t_ref = np.sqrt(0.9 * 1.1) * gt.t  # the maps' mean scale cannot be recovered
                errs[joint].append(np.linalg.norm(out.pose.t - t_ref) / np.linalg.norm(t_ref))
                if joint:
                    assert 0.5 * rel < out.info["sigma_rel"] < 2.0 * rel + 0.004
        res[rel] = {k: float(np.median(v)) for k, v in errs.items()}
    assert res[0.005][True] < 0.8 * res[0.005][False], res
    assert res[0.08][True] < 1.1 * res[0.08][False], res

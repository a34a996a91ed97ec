"""Pose covariance: calibrated on synthetic scenes with known keypoint noise, consistent under
scaling, absent when there is no pose."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from synthetic import make_scene
from twoview.config import EstimatorConfig
from twoview.estimator import estimate_from_matches
from twoview.geometry.rotation import so3_log
from twoview.result import Matches, PoseResult

DEPTHS = {"essential": (False, False), "pnp": (True, False), "rigid3d": (True, True)}


def _estimate(scene, k0, k1, mode, scale=1.0):
    use0, use1 = DEPTHS[mode]
    cfg = EstimatorConfig.from_dict({"solver": {"mode": mode}})
    return estimate_from_matches(
        Matches(k0, k1, np.ones(len(k0))), scene.cam0, scene.cam1,
        scene.depth0 if use0 else None, scene.depth1 if use1 else None, cfg,
    )


def _error(res: PoseResult, gt) -> np.ndarray:
    """(w, dt) of the estimate against the truth, in the covariance's convention."""
    T = res.cam1_from_cam0
    t_gt = gt.t if res.metric else gt.t / np.linalg.norm(gt.t)
    return np.concatenate([so3_log(T.R @ gt.R.T), T.t - t_gt])


@pytest.mark.parametrize("mode, noise_px, dof", [("essential", 0.2, 5), ("pnp", 0.5, 6), ("rigid3d", 0.3, 6)])
def test_covariance_is_calibrated_on_known_keypoint_noise(mode, noise_px, dof):
    """Normalised estimation error squared averages the degrees of freedom (chi-square mean)."""
    rng = np.random.default_rng(3)
    scene = make_scene(rng, n=300)
    nees = []
    for _ in range(60):
        k0 = scene.kpts0 + rng.normal(scale=noise_px, size=scene.kpts0.shape)
        k1 = scene.kpts1 + rng.normal(scale=noise_px, size=scene.kpts1.shape)
        res = _estimate(scene, k0, k1, mode)
        assert res.success and res.covariance is not None, res.reason
        e = _error(res, scene.cam1_from_cam0)
        nees.append(e @ np.linalg.pinv(res.covariance, rcond=1e-10, hermitian=True) @ e)
    assert 0.6 * dof < np.mean(nees) < 1.6 * dof, np.mean(nees)


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.floats(0.1, 10.0), mode=st.sampled_from(["pnp", "rigid3d"]))
def test_scaling_the_scene_scales_the_translation_sigma(seed, k, mode):
    rng = np.random.default_rng(seed)
    noise = [rng.normal(scale=0.2, size=(300, 2)) for _ in range(2)]
    out = []
    for scale in (1.0, k):
        scene = make_scene(np.random.default_rng(seed), n=300, scale=scale)
        n = len(scene.kpts0)
        res = _estimate(scene, scene.kpts0 + noise[0][:n], scene.kpts1 + noise[1][:n], mode)
        assert res.success and res.sigmas is not None
        out.append(res.sigmas)
    assert out[1]["rotation_sigma_deg"] == pytest.approx(out[0]["rotation_sigma_deg"], rel=0.05)
    assert out[1]["translation_sigma"] == pytest.approx(k * out[0]["translation_sigma"], rel=0.05)


def test_direction_only_covariance_has_no_variance_along_t():
    rng = np.random.default_rng(5)
    scene = make_scene(rng, n=300)
    k0 = scene.kpts0 + rng.normal(scale=0.5, size=scene.kpts0.shape)
    res = _estimate(scene, k0, scene.kpts1, "essential")
    C = res.covariance
    assert np.allclose(C, C.T) and np.linalg.eigvalsh(C).min() > -1e-15
    t = res.cam1_from_cam0.t
    assert t @ C[3:, 3:] @ t < 1e-6 * np.trace(C[3:, 3:])
    assert np.linalg.matrix_rank(C, tol=1e-9 * np.abs(C).max()) == 5


def test_no_pose_no_covariance_and_json_carries_it():
    rng = np.random.default_rng(6)
    scene = make_scene(rng, n=300)
    res = _estimate(scene, scene.kpts0 + rng.normal(scale=0.5, size=scene.kpts0.shape), scene.kpts1, "pnp")
    d = res.to_dict()
    assert np.array(d["covariance"]).shape == (6, 6) and d["sigmas"]["translation_sigma"] > 0
    assert "uncertainty (from the residuals alone: a lower bound)" in res.summary()
    fail = _estimate(scene, scene.kpts0[:4], scene.kpts1[:4], "pnp")
    assert not fail.success and fail.covariance is None and fail.sigmas is None
    assert fail.to_dict()["covariance"] is None

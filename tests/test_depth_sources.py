"""Depth sources: files, a monocular model, or none; and the photos-only path end to end."""

import numpy as np
import pytest

from twoview.depth.sources import DepthPair, depth_from_file, predict_depth_pair, resolve_depths
from twoview.errors import InputError
from twoview.geometry import Camera


def _img(h=48, w=64, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def test_no_depth_means_direction_only():
    p = resolve_depths(_img(), _img(seed=1))
    assert isinstance(p, DepthPair) and p.source == "none" and not p.metric
    assert p.depth0 is None and p.depth1 is None and "direction" in p.info["note"]


def test_depth_files_and_arrays(tmp_path):
    d = np.full((24, 32), 2.5)
    d[0, 0] = 0  # invalid
    np.save(tmp_path / "d0.npy", d)
    p = resolve_depths(_img(), _img(seed=1), depth0=tmp_path / "d0.npy", depth1=np.full((48, 64), 3.0))
    assert p.source == "file" and p.solver_mode == "auto" and p.metric
    assert p.depth0.shape == (48, 64) and np.isnan(p.depth0[0, 0]) and np.nanmax(p.depth0) == 2.5
    assert p.depth1.shape == (48, 64)
    # one view only is fine (PnP)
    assert resolve_depths(_img(), _img(seed=1), depth1=np.full((48, 64), 3.0)).depth0 is None


def test_bad_depth_files_are_input_errors(tmp_path):
    np.save(tmp_path / "wrong_aspect.npy", np.ones((40, 40)))
    np.save(tmp_path / "invalid.npy", np.zeros((48, 64)))
    with pytest.raises(InputError, match="depth0"):
        resolve_depths(_img(), _img(), depth0=tmp_path / "wrong_aspect.npy")
    with pytest.raises(InputError, match="no valid pixel"):
        resolve_depths(_img(), _img(), depth1=tmp_path / "invalid.npy")
    with pytest.raises(InputError, match="not found"):
        depth_from_file(tmp_path / "missing.png", (64, 48), 1000.0, "depth0")
    with pytest.raises(InputError, match="not both"):
        resolve_depths(_img(), _img(), depth0=tmp_path / "invalid.npy", depth_model="some/model")


def test_missing_model_is_a_clear_error(monkeypatch):
    pytest.importorskip("transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InputError, match="--depth-model") as e:
        resolve_depths(_img(), _img(), depth_model="depth-anything/Not-Downloaded-hf")
    assert "internet" in str(e.value)


def test_model_source_end_to_end(tmp_path, shared_data):
    """Photos only: tiny random Depth Anything model -> depth of both images -> monodepth
    solver. A random network's depth is meaningless, so the pose may fail, but as a
    reported failure or a metric pose, never a crash."""
    pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    from test_depth_estimators import _save_depth_anything

    from twoview import EstimatorConfig, estimate_relative_pose
    from twoview.depth.estimators import DepthModelConfig

    _save_depth_anything(tmp_path / "da")
    d = shared_data / "icl_nuim_livingroom1" / "color"
    im0, im1 = d / "00000.jpg", d / "00010.jpg"
    cam = Camera(525.0, 525.0, 319.5, 239.5, 640, 480)
    mcfg = DepthModelConfig(model=str(tmp_path / "da"), resolution=56, cache_dir=str(tmp_path / "cache"))
    pair = resolve_depths(im0, im1, cam, cam.K, depth_model=mcfg)
    assert pair.source == "model" and pair.solver_mode == "monodepth"
    assert pair.depth0.shape == (480, 640) and pair.depth1.shape == (480, 640)
    assert pair.info["view0"]["cached"] is False
    d0, d1, info = predict_depth_pair(mcfg, im0, im1, cam, cam)
    assert info["view0"]["cached"] is True and info["view1"]["cached"] is True
    np.testing.assert_allclose(d0, pair.depth0, rtol=1e-6, equal_nan=True)
    cfg = EstimatorConfig.from_dict({"solver": {"mode": pair.solver_mode}})
    res = estimate_relative_pose(im0, im1, cam, cam, pair.depth0, pair.depth1, cfg)
    assert res.success in (True, False)
    if res.success:
        assert res.metric
    else:
        assert res.reason

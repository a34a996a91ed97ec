"""Where depth comes from: files or arrays (checked once by the view), a monocular model
(the pipeline's depth stage), or none; and the photos-only path end to end."""

import numpy as np
import pytest

from twoview.errors import InputError
from twoview.geometry import Camera
from twoview.pipeline import Pipeline
from twoview.view import load_view, load_views

FRONT = {"depth": {"register": False}, "refine": {"method": "none"}, "recovery": {"enabled": False},
         "confidence": {"min_confidence": 0.0}}


def _img(h=48, w=64, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


CAM = [60.0, 60.0, 31.5, 23.5]


def test_depth_files_and_arrays(tmp_path):
    d = np.full((24, 32), 2.5)
    d[0, 0] = 0  # invalid
    np.save(tmp_path / "d0.npy", d)
    v0, v1 = load_views(_img(), _img(seed=1), CAM, CAM, tmp_path / "d0.npy", np.full((48, 64), 3.0))
    assert v0.depth.shape == (48, 64) and np.isnan(v0.depth[0, 0]) and np.nanmax(v0.depth) == 2.5
    assert v0.depth_kind == "sensor" and v1.depth.shape == (48, 64) and v0.depth_path == tmp_path / "d0.npy"
    # one view only is fine (PnP); no depth means no kind
    assert load_view(_img(), CAM).depth_kind is None
    assert load_view(_img(), CAM, np.full((48, 64), 3.0), depth_kind="monocular").depth_kind == "monocular"


def test_bad_depth_files_are_input_errors(tmp_path):
    np.save(tmp_path / "wrong_aspect.npy", np.ones((40, 40)))
    np.save(tmp_path / "invalid.npy", np.zeros((48, 64)))
    with pytest.raises(InputError, match="depth0"):
        load_view(_img(), CAM, tmp_path / "wrong_aspect.npy", name="0")
    with pytest.raises(InputError, match="no valid pixel"):
        load_view(_img(), CAM, tmp_path / "invalid.npy", name="1")
    with pytest.raises(InputError, match="not found"):
        load_view(_img(), CAM, tmp_path / "missing.png", depth_scale=1000.0)
    v0, v1 = load_views(_img(), _img(seed=1), CAM, CAM, np.full((48, 64), 2.0), np.full((48, 64), 2.0))
    with pytest.raises(InputError, match="not both"):
        Pipeline({**FRONT, "depth": {"register": False, "model": {"model": "some/model"}}})(v0, v1)


def test_missing_model_is_a_clear_error(monkeypatch):
    pytest.importorskip("transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    v0, v1 = load_views(_img(), _img(seed=1), CAM, CAM)
    with pytest.raises(InputError, match="depth.model") as e:
        Pipeline({**FRONT, "depth": {"model": {"model": "depth-anything/Not-Downloaded-hf"}}})(v0, v1)
    assert "internet" in str(e.value)


def test_model_source_end_to_end(tmp_path, shared_data):
    """Photos only: tiny random Depth Anything model -> depth of both images -> monodepth
    solver. A random network's depth is meaningless, so the pose may fail, but as a
    reported failure or a metric pose, never a crash; the second estimate reads both
    predictions from the cache."""
    pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    from test_depth_estimators import _save_depth_anything

    _save_depth_anything(tmp_path / "da")
    d = shared_data / "icl_nuim_livingroom1" / "color"
    cam = Camera(525.0, 525.0, 319.5, 239.5, 640, 480)
    views = load_views(d / "00000.jpg", d / "00010.jpg", cam, cam.K)
    model = {"model": str(tmp_path / "da"), "resolution": 56, "cache_dir": str(tmp_path / "cache")}
    pipe = Pipeline({**FRONT, "depth": {"model": model}})
    res = pipe(*views)
    assert res.info["depth_source"] == "model" and res.info["depth_model"]["view0"]["cached"] is False
    assert res.success in (True, False)
    if res.success:
        assert res.metric and res.solver == "monodepth"
    else:
        assert res.reason
    again = pipe(*views)
    assert again.info["depth_model"]["view0"]["cached"] is True and again.info["depth_model"]["view1"]["cached"] is True

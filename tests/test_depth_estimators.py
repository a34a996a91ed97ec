"""Monocular depth backends: tiny random models of every supported architecture, saved to
a folder and loaded through the user code path (offline)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from twoview.errors import InputError
from twoview.geometry import Camera

pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

from twoview.depth.estimators import DepthModelConfig, clear_loaded_models, load_depth_estimator  # noqa: E402

TINY_DINO = {"model_type": "dinov2", "num_hidden_layers": 2, "hidden_size": 16, "num_attention_heads": 1,
             "intermediate_size": 32, "patch_size": 4}


def _save_depth_anything(path, metric=True):
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation

    cfg = DepthAnythingConfig(
        backbone_config={"model_type": "dinov2", "image_size": 56, "patch_size": 14, "hidden_size": 16,
                         "num_hidden_layers": 4, "num_attention_heads": 2, "intermediate_size": 32,
                         "out_indices": [1, 2, 3, 4], "reshape_hidden_states": False},
        reassemble_hidden_size=16, neck_hidden_sizes=[8, 8, 16, 16], fusion_hidden_size=8, head_hidden_size=8,
        depth_estimation_type="metric" if metric else "relative", max_depth=20,
    )
    torch.manual_seed(0)
    DepthAnythingForDepthEstimation(cfg).save_pretrained(path)
    # what DPTImageProcessor.save_pretrained writes for Depth Anything V2 (smaller size)
    _write_proc(path, {"image_processor_type": "DPTImageProcessor", "size": {"height": 56, "width": 56},
                       "keep_aspect_ratio": True, "ensure_multiple_of": 14, "do_pad": False,
                       "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]})


def _save_depth_pro(path, fov=True):
    from transformers import DepthProConfig, DepthProForDepthEstimation

    cfg = DepthProConfig(
        patch_size=16, fusion_hidden_size=16, intermediate_hook_ids=[1, 0], intermediate_feature_dims=[10, 8],
        scaled_images_ratios=[0.5, 1.0], scaled_images_overlap_ratios=[0.0, 0.2], scaled_images_feature_dims=[12, 12],
        use_fov_model=fov, image_model_config=dict(TINY_DINO), patch_model_config=dict(TINY_DINO),
        fov_model_config=dict(TINY_DINO),
    )
    torch.manual_seed(0)
    DepthProForDepthEstimation(cfg, use_fov_model=fov).save_pretrained(path)
    # DepthProImageProcessor needs torchvision to be built; write the file it saves.
    _write_proc(path, {"image_processor_type": "DepthProImageProcessor", "size": {"height": 32, "width": 32},
                       "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "do_rescale": True,
                       "rescale_factor": 1 / 255, "do_normalize": True, "do_resize": True, "resample": 2})


def _save_zoedepth(path):
    from transformers import ZoeDepthConfig, ZoeDepthForDepthEstimation, ZoeDepthImageProcessor

    cfg = ZoeDepthConfig(
        backbone_config={"model_type": "beit", "image_size": 32, "patch_size": 8, "num_hidden_layers": 4,
                         "hidden_size": 16, "intermediate_size": 32, "num_attention_heads": 2,
                         "use_relative_position_bias": True, "reshape_hidden_states": False,
                         "out_features": ["stage1", "stage2", "stage3", "stage4"]},
        neck_hidden_sizes=[8, 8, 16, 16], fusion_hidden_size=8, bottleneck_features=8, num_relative_features=8,
        bin_embedding_dim=8, num_attractors=[4, 4, 2, 1],
        bin_configurations=[{"n_bins": 8, "min_depth": 0.001, "max_depth": 10.0}],
        patch_transformer_hidden_size=8, patch_transformer_intermediate_size=16,
        patch_transformer_num_attention_heads=1, num_patch_transformer_layers=1,
    )
    torch.manual_seed(0)
    ZoeDepthForDepthEstimation(cfg).save_pretrained(path)
    ZoeDepthImageProcessor(size={"height": 32, "width": 32}).save_pretrained(path)


def _write_proc(path, d):
    (path / "preprocessor_config.json").write_text(json.dumps(d))


BUILDERS = {"depth_anything": _save_depth_anything, "depth_pro": _save_depth_pro, "zoedepth": _save_zoedepth}


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    torch.set_num_threads(1)
    out = {}
    for name, build in BUILDERS.items():
        d = tmp_path_factory.mktemp(name)
        build(d)
        out[name] = d
    yield out
    clear_loaded_models()


def _image(h=60, w=84, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("arch", list(BUILDERS))
def test_tiny_model_predicts_metric_depth_at_image_size(arch, model_dirs, tmp_path):
    est = load_depth_estimator(DepthModelConfig(model=str(model_dirs[arch]), cache_dir=str(tmp_path / "cache")))
    assert est.model_type == arch
    img = _image()
    cam = Camera.from_fov(60.0, img.shape[1], img.shape[0])
    d, info = est.predict_with_info(img, cam)
    assert d.shape == img.shape[:2] and d.dtype == np.float64
    ok = np.isfinite(d)
    assert ok.mean() > 0.5 and np.all(d[ok] > 0)
    assert info["cached"] is False
    # second call: served from the disk cache, identical up to float32 storage
    d2, info2 = est.predict_with_info(img, cam)
    assert info2["cached"] is True
    np.testing.assert_allclose(d2, d, rtol=1e-6, equal_nan=True)
    files = list((tmp_path / "cache").rglob("*.npy"))
    assert len(files) == 1
    # another image is another cache entry; a different image size comes back at its own size
    d3 = est.predict(_image(45, 70, seed=1), Camera.from_fov(60.0, 70, 45))
    assert d3.shape == (45, 70) and np.all(d3[np.isfinite(d3)] > 0)
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 2


@pytest.mark.parametrize("arch", ["depth_anything", "zoedepth"])
def test_resolution_sets_network_input_size(arch, model_dirs, tmp_path):
    lo = load_depth_estimator(DepthModelConfig(model=str(model_dirs[arch]), resolution=32, cache_dir=""))
    hi = load_depth_estimator(DepthModelConfig(model=str(model_dirs[arch]), resolution=96, cache_dir=""))
    h_lo, w_lo = lo.input_size(480, 640)
    h_hi, w_hi = hi.input_size(480, 640)
    assert h_hi > h_lo and w_hi > w_lo
    mult = 14 if arch == "depth_anything" else 32
    assert h_hi % mult == 0 and w_hi % mult == 0
    assert abs(w_hi / h_hi - 640 / 480) < 0.25  # aspect ratio kept (up to rounding)
    d = hi.predict(_image(48, 64))
    assert d.shape == (48, 64) and np.all(d[np.isfinite(d)] > 0)


def test_depth_pro_uses_the_known_focal_length(model_dirs):
    est = load_depth_estimator(DepthModelConfig(model=str(model_dirs["depth_pro"]), cache_dir=""))
    img = _image(40, 40)
    d1, i1 = est.predict_with_info(img, Camera(50.0, 50.0, 19.5, 19.5, 40, 40))
    d2, _ = est.predict_with_info(img, Camera(100.0, 100.0, 19.5, 19.5, 40, 40))
    assert i1["focal_px"] == 50.0
    # depth = f / (W * canonical inverse depth): doubling the focal doubles the depth
    np.testing.assert_array_equal(np.isfinite(d1), np.isfinite(d2))
    np.testing.assert_allclose(d2, 2 * d1, rtol=1e-5, equal_nan=True)
    # no intrinsics known ("fov-guess"): the model's field-of-view head decides
    d3, i3 = est.predict_with_info(img, Camera.from_fov(65.0, 40, 40, source="fov-guess"))
    assert i3["focal_source"].startswith(("fov-head", "camera (fov-guess"))
    assert np.isfinite(d3).mean() > 0.5 and np.all(d3[np.isfinite(d3)] > 0)


def test_depth_pro_without_fov_head_needs_a_camera(tmp_path):
    _save_depth_pro(tmp_path / "nofov", fov=False)
    est = load_depth_estimator(DepthModelConfig(model=str(tmp_path / "nofov"), cache_dir=""))
    with pytest.raises(InputError, match="focal length"):
        est.predict(_image(40, 40))
    assert est.predict(_image(40, 40), Camera.from_fov(60, 40, 40)).shape == (40, 40)


def test_missing_model_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InputError) as e:
        load_depth_estimator(DepthModelConfig(model="depth-anything/No-Such-Model-hf"))
    msg = str(e.value)
    assert "--depth-model" in msg and "save_pretrained" in msg and "DIR" in msg
    with pytest.raises(InputError, match="not found"):
        load_depth_estimator(str(tmp_path / "nowhere" / "model"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="config.json"):
        load_depth_estimator(str(tmp_path / "empty"))


def test_relative_depth_anything_is_refused(tmp_path):
    _save_depth_anything(tmp_path / "rel", metric=False)
    with pytest.raises(InputError, match="relative"):
        load_depth_estimator(str(tmp_path / "rel"))


def test_bad_image_is_an_input_error(model_dirs):
    est = load_depth_estimator(DepthModelConfig(model=str(model_dirs["depth_anything"]), cache_dir=""))
    with pytest.raises(InputError):
        est.predict(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(InputError, match="camera"):
        est.predict(_image(40, 40), Camera.from_fov(60, 50, 40))


def test_hub_id_loads_from_the_offline_cache(tmp_path):
    """A hub id already in the Hugging Face cache loads offline (config, weights and the
    image-processor file), in a fresh process so the cache location is the test's."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = tmp_path / "hub" / "models--tiny-org--tiny-da"
    snap = repo / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True)
    _save_depth_anything(snap)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    code = (
        "import numpy as np\n"
        "from twoview.depth.estimators import DepthModelConfig, load_depth_estimator\n"
        "e = load_depth_estimator(DepthModelConfig(model='tiny-org/tiny-da', cache_dir=''))\n"
        "d = e.predict(np.full((40, 50, 3), 127, np.uint8))\n"
        "print(e.model_type, e.proc['size']['height'], d.shape)\n"
    )
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-4:] == ["depth_anything", "56", "(40,", "50)"]


@pytest.mark.parametrize("arch, hw", [("depth_anything", (60, 84)), ("depth_anything", (90, 50)), ("zoedepth", (60, 84)), ("zoedepth", (60, 140))])
def test_preprocessing_matches_the_transformers_image_processor(arch, hw, model_dirs):
    """Our torch preprocessing (transformers' processors of these models want torchvision)
    gives the network the input the model's own image processor gives it: same size, same
    values up to the resampling kernels, on a smooth image."""
    import warnings

    est = load_depth_estimator(DepthModelConfig(model=str(model_dirs[arch]), cache_dir=""))
    h, w = hw
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([127 + 100 * np.sin(xx / 13.0), 127 + 100 * np.cos(yy / 11.0), 60 + (xx + yy) % 120], -1).astype(np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if arch == "depth_anything":
                from transformers import DPTImageProcessor as P

                proc = P(**{k: v for k, v in est.proc.items() if k != "image_processor_type"}, resample=3)
            else:
                from transformers import ZoeDepthImageProcessor as P

                proc = P(size=est.proc["size"], ensure_multiple_of=32)  # ZoeDepth's multiple (the BEiT patch grid)
            ref = proc(images=img, return_tensors="pt")["pixel_values"].numpy()
        except ImportError as e:
            pytest.skip(f"image processor not usable here: {e}")
    ours = est.preprocess(img).numpy()
    assert ours.shape == ref.shape
    assert np.median(np.abs(ours - ref)) < 0.03 and np.corrcoef(ours.ravel(), ref.ravel())[0, 1] > 0.995

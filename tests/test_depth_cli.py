"""The photos-only path through the public API and the CLI: --depth-model (tiny random
models saved to a folder, offline), depth sources reported, bad input one line."""

import json

import numpy as np
import pytest

import twoview
from cli_files import k_arg, write_motorcycle_images
from twoview.cli import main


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("mono")
    p = write_motorcycle_images(d)
    np.save(d / "left_depth.npy", np.nan_to_num(p.depth0, nan=0.0))
    return d, k_arg(p.camera0), p


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    from test_depth_estimators import _save_depth_anything

    d = tmp_path_factory.mktemp("tiny_da")
    _save_depth_anything(d)
    return d


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_api_reports_the_depth_source(files, tiny_model, tmp_path):
    from twoview.depth.estimators import DepthModelConfig

    d, k, p = files
    K = [float(v) for v in k.split(",")]
    none = twoview.estimate_relative_pose(d / "left.png", d / "right.png", K, K)
    assert none.info["depth_source"] == "none" and (not none.success or not none.metric)
    given = twoview.estimate_relative_pose(d / "left.png", d / "right.png", K, K, depth0=d / "left_depth.npy")
    assert given.info["depth_source"] == "file" and given.success and given.metric
    cfg = DepthModelConfig(model=str(tiny_model), resolution=56, cache_dir=str(tmp_path / "cache"))
    res = twoview.estimate_relative_pose(d / "left.png", d / "right.png", K, K, depth_model=cfg)
    # a random network's depth is meaningless: a metric pose or a reported failure, never a crash
    assert res.info["depth_source"] == "model" and res.info["depth_model"]["model_type"] == "depth_anything"
    assert res.success is False or res.metric
    assert "depth" in res.timings_ms
    with pytest.raises(twoview.InputError, match="not both"):
        twoview.estimate_relative_pose(d / "left.png", d / "right.png", K, K, depth0=d / "left_depth.npy", depth_model=cfg)


def test_cli_depth_model(files, tiny_model, capsys, tmp_path):
    d, k, p = files
    out_json = tmp_path / "res.json"
    argv = ["estimate", d / "left.png", d / "right.png", "--K0", k, "--depth-model", tiny_model,
            "--depth-resolution", "56", "--depth-cache", tmp_path / "cache", "--json", out_json]
    code, out, err = run_cli(capsys, *argv)
    assert code in (0, 1), err
    assert "Traceback" not in err and "depth: predicted by" in out and "cached: False/False" in out
    res = json.loads(out_json.read_text())
    assert res["info"]["depth_source"] == "model"
    code, out, err = run_cli(capsys, *argv)  # second run: both depths from the disk cache
    assert "cached: True/True" in out


def test_cli_depth_model_with_gmm_refinement(files, tiny_model, capsys, tmp_path):
    """`--refine gmm` with predicted depth: the mixtures are built from the same (cached)
    predictions, with the monocular preset; a pose or a reported failure, no crash."""
    d, k, p = files
    out_json = tmp_path / "res.json"
    argv = ["estimate", d / "left.png", d / "right.png", "--K0", k, "--depth-model", tiny_model,
            "--depth-resolution", "56", "--depth-cache", tmp_path / "cache", "--refine", "gmm",
            "--features", "none", "--num-gaussians", "500", "--json", out_json]
    code, out, err = run_cli(capsys, *argv)
    assert code in (0, 1), err
    assert "Traceback" not in err
    res = json.loads(out_json.read_text())
    if res["success"] and "front end" in out:
        assert res["solver"] == "gmm" and res["metric"]


def test_cli_without_depth_says_direction_only(files, capsys):
    d, k, p = files
    code, out, err = run_cli(capsys, "estimate", d / "left.png", d / "right.png", "--K0", k)
    assert code == 0, err
    assert "direction only" in out and "--depth-model" in out


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--depth-model", "depth-anything/Not-Downloaded-hf"], "--depth-model: depth model 'depth-anything/Not-Downloaded-hf' is neither"),
        (["--depth-model", "{MODEL}", "--depth0", "{DEPTH}"], "--depth-model: give either depth files"),
        (["--depth-resolution", "56"], "--depth-resolution: only applies with --depth-model"),
        (["--depth-model", "{MODEL}", "--depth-resolution", "8"], "--depth-model: depth model resolution must be in"),
        (["--depth-model", "./no/such/folder"], "--depth-model: model folder not found"),
    ],
)
def test_cli_depth_model_bad_input_one_line(files, tiny_model, capsys, monkeypatch, extra, needle):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    d, k, p = files
    subs = {"{MODEL}": str(tiny_model), "{DEPTH}": str(d / "left_depth.npy")}
    argv = ["estimate", d / "left.png", d / "right.png", "--K0", k] + [subs.get(a, a) for a in extra]
    code, out, err = run_cli(capsys, *argv)
    assert code == 2, (out, err)
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith("twoview: warning")]
    assert len(lines) == 1 and needle in lines[0], err

"""SIFT front end: the matrix-product matcher equals OpenCV brute force; keypoints in input pixels."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest

from twoview.config import MatcherConfig
from twoview.matching import get_matcher
from twoview.matching.sift import mutual_ratio_match


def _unit(rng, n, d=128):
    x = np.abs(rng.normal(size=(n, d))).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _reference(d0, d1, ratio):
    """Mutual nearest neighbours + ratio test with OpenCV's brute-force matcher."""
    bf = cv2.BFMatcher(cv2.NORM_L2)
    back = {m.queryIdx: m.trainIdx for m in bf.match(d1, d0)}
    return {(a.queryIdx, a.trainIdx) for a, b in bf.knnMatch(d0, d1, k=2)
            if a.distance < ratio * b.distance and back[a.trainIdx] == a.queryIdx}


@pytest.mark.parametrize("split", [False, True])
def test_mutual_ratio_match_equals_brute_force(split):
    rng = np.random.default_rng(0)
    d1 = _unit(rng, 900)
    # 600 noisy copies of rows of d1 (true matches) and 400 unrelated descriptors
    src = rng.permutation(900)[:600]
    d0 = np.concatenate([d1[src] + 0.02 * rng.normal(size=(600, 128)).astype(np.float32), _unit(rng, 400)])
    d0 /= np.linalg.norm(d0, axis=1, keepdims=True)
    with ThreadPoolExecutor(2) as pool:
        i0, i1, sc = mutual_ratio_match(d0, d1, 0.85, pool if split else None)
    ours = set(zip(i0.tolist(), i1.tolist()))
    assert ours == _reference(d0, d1, 0.85)
    assert {(i, int(src[i])) for i in range(600)} <= ours  # every true match found
    assert np.all((sc >= 0) & (sc <= 1))


def test_sift_matches_a_shifted_image_exactly():
    """A textured image and a copy shifted by whole pixels: every match moves by the shift."""
    rng = np.random.default_rng(1)
    base = cv2.GaussianBlur(rng.integers(0, 256, (520, 700)).astype(np.uint8), (0, 0), 2.0)
    base = cv2.normalize(base, None, 0, 255, cv2.NORM_MINMAX)
    im0, im1 = base[20:500, 30:670], base[27:507, 42:682]  # im1(x, y) = im0(x + 12, y + 7)
    m = get_matcher(MatcherConfig(name="sift")).match(im0, im1)
    assert len(m) > 300
    err = np.linalg.norm(m.kpts0 - (m.kpts1 + [12, 7]), axis=1)
    assert np.median(err) < 0.05 and np.mean(err < 1.0) > 0.98


def test_large_images_are_matched_at_resize_max_in_their_own_pixels():
    """By default images over 1600 px are matched downscaled; keypoints come back in input pixels."""
    assert MatcherConfig().resize_max == 1600
    rng = np.random.default_rng(2)
    base = cv2.GaussianBlur(rng.integers(0, 256, (1300, 2100)).astype(np.uint8), (0, 0), 4.0)
    base = cv2.normalize(base, None, 0, 255, cv2.NORM_MINMAX)
    im0, im1 = base[40:1240, 50:2050], base[64:1264, 90:2090]  # 2000 x 1200, shifted by (40, 24)
    m = get_matcher(MatcherConfig(name="sift", max_keypoints=1024)).match(im0, im1)
    assert len(m) > 100 and m.kpts0[:, 0].max() > 1700  # full-resolution coordinates
    assert m.pixel_scale == (1.25, 1.25) and m.subset(m.scores > 0).pixel_scale == (1.25, 1.25)
    err = np.linalg.norm(m.kpts0 - (m.kpts1 + [40, 24]), axis=1)
    assert np.median(err) < 0.2  # 0.8x resampling: a fraction of a full-resolution pixel


@pytest.mark.parametrize("first_octave", [-1, 0])
def test_sift_keypoints_sit_on_blob_centres(first_octave):
    """Gaussian blobs at known sub-pixel centres: keypoints land on them without the
    quarter-pixel offset of OpenCV's upsampled first octave (or the half pixel the
    first-octave-0 path would add)."""
    rng = np.random.default_rng(3)
    h, w = 480, 640
    yy, xx = np.mgrid[0:h, 0:w]
    centres = np.array([(24 + 40 * j + rng.uniform(0, 1), 24 + 40 * i + rng.uniform(0, 1))
                        for i in range(11) for j in range(15)])
    img = np.full((h, w), 60.0)
    for cx, cy in centres:
        img += 150 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 3.0**2))
    img = np.clip(img, 0, 255).astype(np.uint8)
    matcher = get_matcher(MatcherConfig(name="sift", sift_first_octave=first_octave))
    kp, _ = matcher.detect(img)
    d = np.linalg.norm(kp[:, None] - centres[None], axis=2)
    near = d.min(axis=1) < 1.5
    assert near.sum() >= 0.8 * len(centres)
    offset = np.median(kp[near] - centres[d[near].argmin(axis=1)], axis=0)
    assert np.all(np.abs(offset) < 0.05), offset


def test_sift_first_octave_must_be_minus_one_or_zero():
    from twoview.errors import ConfigError

    with pytest.raises(ConfigError, match="sift_first_octave"):
        MatcherConfig(name="sift", sift_first_octave=1)


def test_matching_runs_with_single_threaded_blas_and_restores_it(monkeypatch):
    """BLAS threads woken by the descriptor product would spin on the cores the next
    detection needs (137 vs 108 ms per pair measured): matching pins BLAS to one thread."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    if not threadpoolctl.threadpool_info():
        pytest.skip("no BLAS library visible to threadpoolctl")

    def blas_threads():
        return {i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"}

    matcher = get_matcher(MatcherConfig(name="sift"))
    seen = []
    original = type(matcher)._match

    def spy(self, a, b):
        seen.append(blas_threads())
        return original(self, a, b)

    monkeypatch.setattr(type(matcher), "_match", spy)
    img = (np.random.default_rng(0).random((120, 160)) * 255).astype(np.uint8)
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        before = blas_threads()
        matcher.match(img, img)
        assert seen == [{1}]
        assert blas_threads() == before


def test_solvers_run_with_single_threaded_blas(monkeypatch):
    """estimate_from_matches (the solver stage, also called on its own) pins BLAS to one thread."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    if not threadpoolctl.threadpool_info():
        pytest.skip("no BLAS library visible to threadpoolctl")
    import twoview.estimator as est
    from twoview.geometry import Camera
    from twoview.result import Matches

    seen = []

    def spy(*args, **kwargs):
        seen.append({i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"})
        raise RuntimeError("stop here")

    monkeypatch.setattr(est, "solve_essential", spy)
    rng = np.random.default_rng(0)
    k0 = rng.random((40, 2)) * 90
    cam = Camera(100.0, 100.0, 49.5, 49.5, 100, 100)
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        with pytest.raises(RuntimeError, match="stop here"):
            est.estimate_from_matches(Matches(k0, k0 + 5.0, np.ones(40)), cam, cam)
    assert seen == [{1}]


@pytest.mark.parametrize("first_octave", [-1, 0])
def test_bench_phase_timing_runs_the_matchers_detector(first_octave, monkeypatch):
    """benchmarks/bench_core.py times OpenCV's SIFT phase by phase with the detector and
    input the matcher uses; it must count the keypoints the matcher detects."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_core.py"
    monkeypatch.syspath_prepend(str(path.parent))  # its _machine helper, as when run as a script
    spec = importlib.util.spec_from_file_location("bench_core_for_test", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rng = np.random.default_rng(3)
    image = cv2.GaussianBlur((rng.random((240, 320)) * 255).astype(np.uint8), (0, 0), 1.5)
    cfg = MatcherConfig(name="sift", max_keypoints=500, sift_first_octave=first_octave)
    phases = bench.sift_phases(cfg, [image], repeats=1)
    keypoints, _ = get_matcher(cfg).detect(image)
    assert phases["keypoints"] == len(keypoints) > 50
    assert phases["total"] > 0 and set(phases) >= {"scale_space", "extrema", "descriptors", "us_per_descriptor"}

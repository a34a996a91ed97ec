"""SIFT (OpenCV) with mutual nearest neighbours and Lowe's ratio test. No torch, no weights.

Where the time goes (640x480, 2048 keypoints, one core): OpenCV's detectAndCompute is
75-220 ms per image (Gaussian pyramid from the 2x upsampled image, extrema, about 55 us
per descriptor; the spread is this VM's speed and the keypoint count), 3x less with
``sift_first_octave=0``, and runs for both images concurrently (OpenCV releases the GIL); the
matching is one float32 matrix product of the unit-norm RootSIFT descriptors plus
arg-maxima (about 15 ms), where OpenCV's brute-force knn + reverse matching took 140 ms.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np

from twoview.config import MatcherConfig
from twoview.io.images import to_gray
from twoview.matching.base import Matcher, scale_image, unscale_points
from twoview.result import Matches


def mutual_ratio_match(
    desc0: np.ndarray, desc1: np.ndarray, ratio: float, pool: ThreadPoolExecutor | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mutual nearest neighbours passing Lowe's ratio test, for unit-norm descriptors.

    With ``|a| = |b| = 1``, ``|a - b|^2 = 2 - 2 a.b``: one matrix product gives every
    distance. A match ``i -> j`` is kept when ``j`` is ``i``'s nearest neighbour, ``i`` is
    ``j``'s, and ``d(i, j) < ratio * d(i, j2)`` with ``j2`` the second nearest.

    Args:
        desc0, desc1: (M, D), (N, D) float32, rows of unit L2 norm; N >= 2.
        ratio: ratio-test threshold in (0, 1].
        pool: optional executor; the product is split over two threads.

    Returns:
        idx0, idx1: (K,) int64 matched rows; score: (K,) ``1 - d1 / d2`` in [0, 1].
    """
    m = len(desc0)
    if pool is not None and m >= 512:
        half = m // 2
        parts = [pool.submit(_row_best_two, desc0[:half], desc1), pool.submit(_row_best_two, desc0[half:], desc1)]
        (j0, s1a, s2a, cmaxa, carga), (j1, s1b, s2b, cmaxb, cargb) = (p.result() for p in parts)
        best = np.concatenate([j0, j1])
        s1, s2 = np.concatenate([s1a, s1b]), np.concatenate([s2a, s2b])
        col_best = np.where(cmaxb > cmaxa, cargb + half, carga)
    else:
        best, s1, s2, _, col_best = _row_best_two(desc0, desc1)
    d1 = np.sqrt(np.maximum(2.0 - 2.0 * s1, 0.0))
    d2 = np.sqrt(np.maximum(2.0 - 2.0 * s2, 0.0))
    rows = np.arange(m)
    keep = (col_best[best] == rows) & (d1 < ratio * d2)
    i0 = rows[keep]
    score = 1.0 - d1[keep] / np.maximum(d2[keep], 1e-9)
    return i0.astype(np.int64), best[keep].astype(np.int64), np.clip(score, 0.0, 1.0).astype(np.float64)


def _row_best_two(a: np.ndarray, b: np.ndarray):
    """For similarity S = a @ b.T: per row the best column, best and second-best
    similarity; per column the best similarity and its row."""
    S = a @ b.T
    rows = np.arange(len(a))
    best = np.argmax(S, axis=1)
    s1 = S[rows, best].astype(np.float64)
    col_arg = np.argmax(S, axis=0)
    col_max = S[col_arg, np.arange(S.shape[1])]
    S[rows, best] = -np.inf
    s2 = S.max(axis=1).astype(np.float64)
    return best, s1, s2, col_max, col_arg


def opencv_sift(cfg: MatcherConfig) -> cv2.SIFT:
    """The OpenCV detector the matcher runs (also timed phase by phase by benchmarks/bench_core.py)."""
    # OpenCV's "precise" upscaling (index x -> 2x) kept 6 % fewer matches and lost a pair on
    # the core benchmark; the default one is kept, its offset removed in SiftMatcher.detect.
    return cv2.SIFT_create(nfeatures=cfg.keypoint_budget, contrastThreshold=cfg.sift_contrast_threshold,
                           enable_precise_upscale=False)


def detector_input(image: np.ndarray, cfg: MatcherConfig) -> tuple[np.ndarray, float]:
    """The grey image OpenCV's detector gets, and its scale relative to ``image``.

    OpenCV always starts from the 2x upsampled image; for first octave 0 it gets the
    half-size image, whose upsampling is the full-size scale space from octave 0 on (the
    detail lost in the halving is above what the base blur sigma = 1.6 keeps).
    """
    gray = to_gray(image)
    if cfg.sift_first_octave == 0:
        return scale_image(gray, 0.5), 0.5
    return gray, 1.0


class SiftMatcher(Matcher):
    name = "sift"
    last_timings_ms: dict[str, float] = {}  # of the last pair: "detect" (both images), "match"

    def __init__(self, cfg: MatcherConfig):
        super().__init__(cfg)
        # One detector per image: OpenCV releases the GIL, so the two images are
        # detected concurrently (about 1.8x faster on two cores).
        self._sifts = [opencv_sift(cfg) for _ in range(2)]
        self._pool = ThreadPoolExecutor(max_workers=2)

    def detect(self, image: np.ndarray, slot: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints (N, 2) float64 pixels and RootSIFT descriptors (N, 128) float32 of unit L2 norm."""
        gray, scale = detector_input(image, self.cfg)
        kps, desc = self._sifts[slot].detectAndCompute(gray, None)
        if desc is None or len(kps) == 0:
            return np.zeros((0, 2)), np.zeros((0, 128), np.float32)
        # RootSIFT: Hellinger kernel, a cheap and consistent gain in matching; the
        # square root of an L1-normalised vector has unit L2 norm.
        desc /= np.maximum(desc.sum(axis=1, keepdims=True), 1e-7)
        np.sqrt(desc, out=desc)
        # OpenCV reports index i of its 2x upsampled image (made with pixel-centre
        # interpolation) as i / 2, but that sample lies at i / 2 - 0.25.
        xy = cv2.KeyPoint_convert(kps).astype(np.float64) - 0.25
        return (unscale_points(xy, scale) if scale != 1.0 else xy), desc

    def _match(self, image0, image1) -> Matches:
        t0 = time.perf_counter()
        f0 = self._pool.submit(self.detect, image0, 0)
        k1, d1 = self.detect(image1, 1)
        k0, d0 = f0.result()
        t1 = time.perf_counter()
        if len(k0) < 2 or len(k1) < 2:
            self.last_timings_ms = {"detect": (t1 - t0) * 1e3, "match": 0.0}
            return Matches(np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0))
        i0, i1, sc = mutual_ratio_match(d0, d1, self.cfg.ratio, self._pool)
        self.last_timings_ms = {"detect": (t1 - t0) * 1e3, "match": (time.perf_counter() - t1) * 1e3}
        return Matches(k0[i0], k1[i1], sc)

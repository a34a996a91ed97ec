"""Real-sensor corruption of training views: photometric (colour camera) and depth (Kinect class).

Photometric (:func:`photometric`): what a 640x480 consumer RGB-D colour camera does to a
frame -- defocus and motion blur (a line kernel of random direction: hand-held motion at
30 Hz), exposure and white balance (gain, gamma, per-channel gains), signal-dependent
noise (shot + read noise) and JPEG compression. Applied per training view before the
frozen stem, so the cached features carry it.

Depth (:func:`kinect_depth`): structured-light depth noise growing with the square of the
distance (Khoshelham & Elberink 2012: sigma_z ~ 1.4e-3 z^2 m at 0.5-5 m for Kinect v1),
depth quantisation, missing pixels at depth discontinuities, and random holes. Used on the
depth that builds GCR's 3D points, so the geometric pose is as noisy as real depth makes it.
The project's shared Kinect sensor model (``twoview.depth.sensor.simulate_sensor_depth``,
with projector shadows and colour/IR misregistration) can replace :func:`kinect_depth`
once it is merged; this one is the minimum the regressor's training needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from twoview.config import StrictConfig, _check
from twoview.depth.sensor import motion_blur_kernel


@dataclass
class PhotometricConfig(StrictConfig):
    """Strengths of the photometric corruption (each applied with its probability).

    Attributes:
        blur_prob, blur_sigma_px: Gaussian defocus blur, sigma up to this many pixels.
        motion_blur_prob, motion_blur_px: line blur, length up to this many pixels.
        exposure: max |log2 gain| (0.5 = half to double the exposure); gamma in
            [1 - exposure / 2, 1 + exposure / 2].
        white_balance: max relative change of each channel's gain.
        noise_prob, noise_std: Gaussian read noise (grey levels) plus shot noise scaled
            so that a mid-grey pixel gets about ``noise_std``.
        jpeg_prob, jpeg_quality: JPEG re-encoding at a quality in [min, max].
    """

    blur_prob: float = 0.3
    blur_sigma_px: float = 1.2
    motion_blur_prob: float = 0.3
    motion_blur_px: float = 5.0
    exposure: float = 0.6
    white_balance: float = 0.15
    noise_prob: float = 0.5
    noise_std: float = 4.0
    jpeg_prob: float = 0.5
    jpeg_quality: list[int] = field(default_factory=lambda: [30, 90])

    def validate(self):
        for k in ("blur_prob", "motion_blur_prob", "noise_prob", "jpeg_prob"):
            _check(0 <= getattr(self, k) <= 1, f"photometric.{k} must be in [0, 1]")
        _check(self.blur_sigma_px >= 0 and self.motion_blur_px >= 0 and self.noise_std >= 0,
               "photometric blur, motion blur and noise strengths must be >= 0")
        _check(0 <= self.exposure <= 2 and 0 <= self.white_balance < 1,
               "photometric.exposure must be in [0, 2] and photometric.white_balance in [0, 1)")
        q = self.jpeg_quality
        _check(len(q) == 2 and 1 <= q[0] <= q[1] <= 100, "photometric.jpeg_quality must be [min, max] in 1..100")


def photometric(img: np.ndarray, rng: np.random.Generator, cfg: PhotometricConfig) -> np.ndarray:
    """(H, W, 3) uint8 -> corrupted (H, W, 3) uint8 (see :class:`PhotometricConfig`)."""
    x = img
    if cfg.blur_sigma_px > 0 and rng.random() < cfg.blur_prob:
        x = cv2.GaussianBlur(x, (0, 0), rng.uniform(0.3, cfg.blur_sigma_px))
    if cfg.motion_blur_px >= 1 and rng.random() < cfg.motion_blur_prob:
        x = cv2.filter2D(x, -1, motion_blur_kernel(rng.uniform(1.5, cfg.motion_blur_px), rng.uniform(0, 180)),
                         borderType=cv2.BORDER_REFLECT)
    f = x.astype(np.float32) / 255.0
    if cfg.exposure > 0:
        f = f * 2.0 ** rng.uniform(-cfg.exposure, cfg.exposure)
        f = np.clip(f, 0, 1) ** rng.uniform(1 - cfg.exposure / 2, 1 + cfg.exposure / 2)
    if cfg.white_balance > 0:
        f = f * (1 + rng.uniform(-cfg.white_balance, cfg.white_balance, 3)).astype(np.float32)
    if cfg.noise_std > 0 and rng.random() < cfg.noise_prob:
        s = rng.uniform(0.3, 1.0) * cfg.noise_std / 255.0
        shot = np.sqrt(np.clip(f, 0, 1) / 0.5) * s
        f = f + rng.standard_normal(f.shape).astype(np.float32) * (shot * 0.8 + 0.6 * s)
    x = np.clip(f * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if rng.random() < cfg.jpeg_prob:
        q = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
        ok, buf = cv2.imencode(".jpg", x[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, q])
        if ok:
            x = np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])
    return x


def kinect_depth(depth: np.ndarray, rng: np.random.Generator, sigma_z2: float = 1.4e-3, hole_frac: float = 0.03,
                 edge_jump: float = 0.1) -> np.ndarray:
    """Kinect-class corruption of a depth map (H, W) metres, NaN invalid -> float32.

    Noise ``N(0, sigma_z2 * z^2)`` with a per-2x2-block component (the sensor's
    disparity is smooth over a few pixels), 1 mm quantisation, pixels next to a depth
    jump of more than ``edge_jump`` (relative) dropped, and elliptic holes covering
    about ``hole_frac`` of the image.
    """
    d = np.asarray(depth, dtype=np.float32).copy()
    H, W = d.shape
    ok = np.isfinite(d)
    if not ok.any():
        return d
    coarse = rng.standard_normal(((H + 1) // 2, (W + 1) // 2)).astype(np.float32)
    n = 0.7 * np.kron(coarse, np.ones((2, 2), np.float32))[:H, :W] + 0.7 * rng.standard_normal((H, W)).astype(np.float32)
    d = d + sigma_z2 * d * d * n
    d = np.round(d * 1000.0) / 1000.0
    filled = np.where(ok, depth, 0).astype(np.float32)
    lo = cv2.erode(np.where(ok, filled, np.inf).astype(np.float32), np.ones((3, 3), np.uint8))
    hi = cv2.dilate(filled, np.ones((3, 3), np.uint8))
    edge = ok & (hi - lo > edge_jump * np.where(ok, filled, 1.0))
    d[edge & (rng.random((H, W)) < 0.7)] = np.nan
    holes = np.zeros((H, W), np.uint8)
    area = 0.0
    while area < hole_frac * H * W:
        a, b = rng.uniform(1, 0.08 * W), rng.uniform(1, 0.08 * H)
        cv2.ellipse(holes, (int(rng.integers(0, W)), int(rng.integers(0, H))), (int(a), int(b)), float(rng.uniform(0, 180)),
                    0, 360, 1, -1)
        area += np.pi * a * b
    d[holes > 0] = np.nan
    d[~ok] = np.nan
    return d

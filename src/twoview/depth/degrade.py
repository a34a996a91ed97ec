"""Simulated monocular depth: corrupt a good depth map the way monocular estimators err.

Used by benchmarks to measure accuracy under depth error where no depth network runs.
Four effects, each seeded and each optional:

1. a global scale factor drawn uniformly from ``[1 - scale_range, 1 + scale_range]``;
2. a smooth multiplicative field ``1 + smooth_amplitude * f(x, y)``, f in [-1, 1], a
   low-frequency random field (bicubic upsampling of a ``smooth_grid`` x ``smooth_grid``
   grid of uniform noise, normalised);
3. dropped pixels: a fraction ``drop_fraction`` set to NaN;
4. edge blur: depth is smoothed across depth discontinuities (monocular networks
   produce soft edges, "flying pixels"), with a Gaussian of ``edge_blur_px`` pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from twoview.config import StrictConfig


@dataclass
class DepthDegradation(StrictConfig):
    """Parameters of the simulated monocular depth model (defaults: the issue's protocol,
    scale in [0.85, 1.15] and a smooth +-5% field, no drops, no blur)."""

    scale_range: float = 0.15
    smooth_amplitude: float = 0.05
    smooth_grid: int = 4
    drop_fraction: float = 0.0
    edge_blur_px: float = 0.0

    def validate(self):
        from twoview.errors import ConfigError

        if not 0 <= self.scale_range < 1:
            raise ConfigError("scale_range must be in [0, 1)")
        if not 0 <= self.smooth_amplitude < 1:
            raise ConfigError("smooth_amplitude must be in [0, 1)")
        if self.smooth_grid < 2:
            raise ConfigError("smooth_grid must be >= 2")
        if not 0 <= self.drop_fraction < 1:
            raise ConfigError("drop_fraction must be in [0, 1)")
        if self.edge_blur_px < 0:
            raise ConfigError("edge_blur_px must be >= 0")


def degrade_depth(depth: np.ndarray, params: DepthDegradation | None = None, seed: int = 0) -> tuple[np.ndarray, dict]:
    """Apply the degradation model.

    Args:
        depth: (H, W) metres, NaN invalid.
        params: the model; defaults to :class:`DepthDegradation()`.
        seed: random seed; the same seed gives the same corruption.

    Returns:
        (degraded depth (H, W), info dict with the drawn ``scale``).
    """
    p = params or DepthDegradation()
    rng = np.random.default_rng(seed)
    d = np.asarray(depth, dtype=np.float64).copy()
    H, W = d.shape
    scale = float(rng.uniform(1 - p.scale_range, 1 + p.scale_range))
    field = np.ones_like(d)
    if p.smooth_amplitude > 0:
        g = rng.uniform(-1, 1, size=(p.smooth_grid, p.smooth_grid)).astype(np.float32)
        f = cv2.resize(g, (W, H), interpolation=cv2.INTER_CUBIC).astype(np.float64)
        f /= max(np.abs(f).max(), 1e-9)
        field = 1.0 + p.smooth_amplitude * f
    if p.edge_blur_px > 0:
        valid = np.isfinite(d)
        filled = np.where(valid, d, 0.0)
        k = int(2 * np.ceil(3 * p.edge_blur_px) + 1)
        num = cv2.GaussianBlur(filled, (k, k), p.edge_blur_px)
        den = cv2.GaussianBlur(valid.astype(np.float64), (k, k), p.edge_blur_px)
        with np.errstate(invalid="ignore", divide="ignore"):
            d = np.where(valid, num / den, np.nan)
    d = d * scale * field
    if p.drop_fraction > 0:
        d[rng.random(d.shape) < p.drop_fraction] = np.nan
    return d, {"scale": scale, "seed": seed}

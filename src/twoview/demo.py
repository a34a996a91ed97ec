"""The Middlebury 2014 "Motorcycle" stereo pair that ships inside scikit-image.

The pair is rectified, so ``cam1_from_cam0`` is a pure translation of minus the
baseline along x. Calibration (full resolution, from Middlebury): f = 3979.911 px,
cx0 = 1244.772, cx1 = 1369.115, cy = 1019.507, doffs = 124.343, baseline 193.001 mm,
image 2964x1988. scikit-image ships it at a quarter of that width; the calibration is
scaled by the shipped width. Depth of the left image from the ground-truth disparity:
``Z = baseline * f / (d + doffs)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from twoview.geometry.camera import Camera
from twoview.geometry.pose import Pose

FULL_WIDTH = 2964
FOCAL = 3979.911
CX0, CX1, CY = 1244.772, 1369.115, 1019.507
DOFFS = 124.343
BASELINE_M = 0.193001


@dataclass
class StereoPair:
    image0: np.ndarray  # (H, W, 3) uint8, left
    image1: np.ndarray  # right
    camera0: Camera
    camera1: Camera
    depth0: np.ndarray  # (H, W) metres, NaN invalid
    cam1_from_cam0: Pose


def motorcycle() -> StereoPair:
    """Load the pair with scaled calibration, left depth and ground-truth pose."""
    from skimage import data

    left, right, disp = data.stereo_motorcycle()
    h, w = left.shape[:2]
    s = w / FULL_WIDTH
    # Scale about pixel edges: x_small = (x_full + 0.5) * s - 0.5
    cam0 = Camera(FOCAL * s, FOCAL * s, (CX0 + 0.5) * s - 0.5, (CY + 0.5) * s - 0.5, w, h)
    cam1 = Camera(FOCAL * s, FOCAL * s, (CX1 + 0.5) * s - 0.5, (CY + 0.5) * s - 0.5, w, h)
    d = disp.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = BASELINE_M * FOCAL * s / (d + DOFFS * s)
    depth[~np.isfinite(d) | (d <= 0)] = np.nan
    gt = Pose(np.eye(3), np.array([-BASELINE_M, 0.0, 0.0]))
    return StereoPair(left, right, cam0, cam1, depth, gt)

"""Glue between the estimator and mixture refinement (``twoview estimate --refine gmm``)."""

from __future__ import annotations

import numpy as np

from twoview.errors import InputError
from twoview.geometry.pose import Pose
from twoview.gmm.config import GMMConfig
from twoview.result import PoseResult


def load_inputs(image0, image1, camera0=None, camera1=None, depth0=None, depth1=None, depth_scale=None):
    """Images, cameras and depths as :func:`twoview.estimate_relative_pose` accepts them
    (paths or arrays) -> (im0, im1, cam0, cam1, d0, d1) arrays/Cameras. Depth is required."""
    from twoview.estimator import load_pair

    for name, d in (("depth0", depth0), ("depth1", depth1)):
        if d is None:
            raise InputError(name, "Gaussian-mixture refinement needs metric depth for both images")
    im0, im1, cam0, cam1, d0, d1 = load_pair(image0, image1, camera0, camera1, depth0, depth1, depth_scale)
    if im0.ndim == 2:
        im0 = np.repeat(im0[..., None], 3, axis=2)
    if im1.ndim == 2:
        im1 = np.repeat(im1[..., None], 3, axis=2)
    return im0, im1, cam0, cam1, d0, d1


def refine_estimate(inputs: dict, front: PoseResult, config: GMMConfig | None = None) -> PoseResult:
    """Refine the estimator's result with mixture alignment.

    Args:
        inputs: the keyword arguments given to :func:`twoview.estimate_relative_pose`
            (``image0, image1, camera0, camera1, depth0, depth1, depth_scale``; other keys
            are ignored), e.g. ``twoview.cli.estimate.build_inputs(args)``.
        front: the front end's result; its pose is the initial pose.
        config: mixture options.

    Returns:
        the refined :class:`PoseResult` (solver "gmm", the front end's matches, inliers and
        timings kept, ``info["front_end"]`` its summary), or ``front`` unchanged if it
        failed.
    """
    from twoview.gmm.align import refine_relative_pose

    if not front.success:
        return front
    if not front.metric:
        raise InputError("--refine", "gmm refinement needs a metric initial pose: give --depth0 and --depth1")
    keys = ("image0", "image1", "camera0", "camera1", "depth0", "depth1")
    res = refine_relative_pose(*(inputs.get(k) for k in keys), front.cam1_from_cam0, config,
                               depth_scale=inputs.get("depth_scale"))
    timings = dict(front.timings_ms)
    timings.update(res.timings_ms)
    res.timings_ms = timings
    res.matches, res.inliers = front.matches, front.inliers
    res.num_matches, res.num_inliers = front.num_matches, front.num_inliers
    res.info["front_end"] = {"solver": front.solver, "confidence": front.confidence,
                             "cam1_from_cam0": front.cam1_from_cam0.matrix.tolist()}
    return res


def read_pose_json(path, name: str = "--init") -> Pose:
    """A pose file: ``twoview estimate --json`` output (key ``cam1_from_cam0``, 4x4), or a
    bare 4x4 / 3x4 nested list."""
    from pathlib import Path

    from twoview.io.text import read_json

    p = Path(path)
    d = read_json(p, name)
    if isinstance(d, dict):
        if "cam1_from_cam0" not in d:
            raise InputError(name, f"{p} has no 'cam1_from_cam0' key")
        if d["cam1_from_cam0"] is None:
            raise InputError(name, f"{p} holds a failed estimate (cam1_from_cam0 is null)")
        d = d["cam1_from_cam0"]
    try:
        T = np.asarray(d, dtype=np.float64)
        return Pose.from_matrix(T)
    except (ValueError, TypeError) as e:
        raise InputError(name, f"{p}: expected a 4x4 or 3x4 matrix: {e}") from None

"""Inputs of the mixture refinement called on its own (:func:`twoview.gmm.refine_relative_pose`) and pose files."""

from __future__ import annotations

import numpy as np

from twoview.errors import InputError
from twoview.geometry.pose import Pose


def load_inputs(image0, image1, camera0=None, camera1=None, depth0=None, depth1=None, depth_scale=None):
    """Images, cameras and depths as :func:`twoview.estimate_relative_pose` accepts them
    (paths or arrays) -> (im0, im1, cam0, cam1, d0, d1) arrays/Cameras. Depth is required."""
    from twoview.view import load_views

    for name, d in (("depth0", depth0), ("depth1", depth1)):
        if d is None:
            raise InputError(name, "Gaussian-mixture refinement needs metric depth for both images")
    v0, v1 = load_views(image0, image1, camera0, camera1, depth0, depth1, depth_scale=depth_scale)
    return v0.image, v1.image, v0.camera, v1.camera, v0.depth, v1.depth


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

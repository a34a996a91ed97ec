"""Interactive 3D view of a two-view result.

The two camera frusta (camera 0 at the origin, camera 1 placed by the estimated
``cam1_from_cam0``, an optional ground-truth camera 1), the two depth clouds moved into
camera 0's frame, the Gaussian mixtures, and the matches as rays from each camera,
with a panel of the pose, its confidence and errors against ground truth.

Quickstart::

    from twoview import view3d
    scene = view3d.build_scene(im0, im1, cam0, cam1, depth0, depth1, result)
    view3d.write_html("view.html", scene)      # one file; open it in a browser, offline
    view3d.show(scene, backend="viser")        # or "rerun", where installed

Imports numpy only (and twoview's geometry); OpenCV is loaded to undistort or encode
images, viser / rerun inside :func:`show`.
"""

from __future__ import annotations

from pathlib import Path

from twoview.view3d.backends import show
from twoview.view3d.html import html_text, write_html
from twoview.view3d.scene import MAX_GAUSSIANS, MAX_MATCHES, MAX_POINTS, Layer, Scene, build_scene, match_endpoints

__all__ = [
    "Layer", "MAX_GAUSSIANS", "MAX_MATCHES", "MAX_POINTS", "Scene", "build_scene", "html_text", "match_endpoints",
    "show", "write_html", "write_view",
]


def write_view(path: str | Path, inputs: dict, result, mixtures=None, gt=None, name: str = "path") -> Path:
    """Load a pair as :func:`twoview.estimate_relative_pose` was given it and write its
    view (the ``--view`` output of ``twoview estimate``).

    Args:
        path: the HTML file to write.
        inputs: the estimator's keyword arguments (``image0, image1, camera0, camera1,
            depth0, depth1, depth_scale`` and optionally ``depth_model``, whose cached
            predictions are then drawn); other keys are ignored.
        result: the :class:`~twoview.PoseResult`.
        mixtures, gt: as :func:`build_scene`.
        name: how error messages name ``path``.

    Returns:
        the path written.
    """
    from twoview.estimator import load_pair

    keys = ("image0", "image1", "camera0", "camera1", "depth0", "depth1", "depth_scale")
    im0, im1, cam0, cam1, d0, d1 = load_pair(*(inputs.get(k) for k in keys))
    if inputs.get("depth_model") is not None:
        from twoview.depth.sources import predict_depth_pair

        d0, d1, _ = predict_depth_pair(inputs["depth_model"], im0, im1, cam0, cam1)
    names = [Path(inputs[k]).name for k in ("image0", "image1") if isinstance(inputs.get(k), (str, Path))]
    title = "twoview: " + " -> ".join(names) if len(names) == 2 else "twoview"
    scene = build_scene(im0, im1, cam0, cam1, d0, d1, result, mixtures=mixtures, gt=gt, title=title)
    return write_html(path, scene, name=name)

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


def write_view(path: str | Path, view0, view1, result, mixtures=None, gt=None, name: str = "path") -> Path:
    """Write the view of a result of two :class:`twoview.View` (the ``--view`` output of
    ``twoview estimate``): ``view0``/``view1`` as the pipeline saw them
    (``result.artifacts["views"]`` when kept), so nothing is read again.

    Args:
        path: the HTML file to write.
        view0, view1: the views.
        result: the :class:`~twoview.PoseResult`.
        mixtures, gt: as :func:`build_scene` (default: the result's kept mixtures).
        name: how error messages name ``path``.

    Returns:
        the path written.
    """
    names = [v.image_path.name for v in (view0, view1) if v.image_path is not None]
    title = "twoview: " + " -> ".join(names) if len(names) == 2 else "twoview"
    if mixtures is None:
        mixtures = result.artifacts.get("mixtures")
    scene = build_scene(view0.image, view1.image, view0.camera, view1.camera, view0.depth, view1.depth, result,
                        mixtures=mixtures, gt=gt, title=title)
    return write_html(path, scene, name=name)

"""The same scene in viser or rerun, where installed (optional; imported lazily).

Points, Gaussians (as points of their radius) and line segments go over as they are;
the images on the image planes are drawn by the HTML page only.
"""

from __future__ import annotations

import numpy as np

from twoview.errors import BackendUnavailable, InputError
from twoview.view3d.scene import Scene


def show(scene: Scene, backend: str = "viser", **options):
    """Send ``scene`` to an interactive viewer.

    Args:
        scene: from :func:`~twoview.view3d.build_scene`.
        backend: "viser" (a local web server; ``port``, default 8080) or "rerun"
            (``spawn=True`` opens the rerun viewer; ``save="out.rrd"`` writes a
            recording instead).

    Returns:
        the ``viser.ViserServer`` (keep the process alive to look at it) or the rerun
        recording stream.

    Raises:
        BackendUnavailable: the backend's package is not installed.
        InputError: an unknown backend or option.
    """
    if not isinstance(scene, Scene):
        raise InputError("scene", f"expected a twoview.view3d.Scene, got {type(scene).__name__}")
    senders = {"viser": _to_viser, "rerun": _to_rerun}
    if backend not in senders:
        raise InputError("backend", f"expected one of {sorted(senders)}, got {backend!r}")
    try:
        return senders[backend](scene, **options)
    except TypeError as e:
        if "unexpected keyword" in str(e):
            raise InputError("options", f"{backend}: {e}") from None
        raise


def _markdown(scene: Scene) -> str:
    return f"### {scene.title}\n\n" + "\n".join(f"- **{k}**: {v}" for k, v in scene.info)


def _to_viser(scene: Scene, port: int = 8080):
    try:
        import viser
    except ImportError:
        raise BackendUnavailable("view3d.show(backend='viser') needs viser: pip install viser") from None
    server = viser.ViserServer(port=port)
    server.scene.set_up_direction("-y")  # OpenCV camera 0: y points down
    px = 0.004 * scene.radius
    for layer in scene.layers:
        if layer.points is not None and len(layer.points):
            server.scene.add_point_cloud(f"/{layer.name}/points", points=layer.points.astype(np.float32),
                                         colors=layer.point_colors, visible=layer.visible,
                                         point_size=float(np.median(layer.point_radii)) * 2
                                         if layer.point_radii is not None else px)
        if layer.lines is not None and len(layer.lines):
            server.scene.add_line_segments(f"/{layer.name}/lines", points=layer.lines.astype(np.float32),
                                           colors=np.repeat(layer.line_colors[:, None, :], 2, axis=1),
                                           visible=layer.visible)
    server.gui.add_markdown(_markdown(scene))
    return server


def _to_rerun(scene: Scene, spawn: bool = True, save: str | None = None):
    try:
        import rerun as rr
    except ImportError:
        raise BackendUnavailable("view3d.show(backend='rerun') needs rerun: pip install rerun-sdk") from None
    rec = rr.RecordingStream("twoview")
    if save is not None:
        rec.save(str(save))
    elif spawn:
        rec.spawn()
    rec.log("world", rr.ViewCoordinates.RDF, static=True)  # x right, y down, z forward
    for layer in scene.layers:
        if layer.points is not None and len(layer.points):
            radii = layer.point_radii if layer.point_radii is not None else rr.components.Radius.ui_points(2.0)
            rec.log(f"world/{layer.name}/points", rr.Points3D(layer.points, colors=layer.point_colors, radii=radii),
                    static=True)
        if layer.lines is not None and len(layer.lines):
            rec.log(f"world/{layer.name}/lines", rr.LineStrips3D(layer.lines, colors=layer.line_colors), static=True)
    rec.log("info", rr.TextDocument(_markdown(scene), media_type=rr.MediaType.MARKDOWN), static=True)
    return rec

"""A scene as one self-contained HTML page (WebGL, no network access).

The page holds the hand-written viewer (viewer.js beside this file, WebGL 1, no
libraries) and the scene as JSON whose arrays are base64 strings: little-endian float32
positions and radii, uint8 colours, each image as a JPEG data URL. At the default budgets
(150,000 points) a page is about 3-4 MB.
"""

from __future__ import annotations

import base64
import json
import re
from functools import lru_cache
from pathlib import Path

import numpy as np

from twoview.errors import InputError
from twoview.view3d.scene import Layer, Scene

_HERE = Path(__file__).resolve().parent
JPEG_QUALITY = 88


@lru_cache(maxsize=1)
def _assets() -> tuple[str, str]:
    return (_HERE / "template.html").read_text(encoding="utf-8"), (_HERE / "viewer.js").read_text(encoding="utf-8")


def _b64(a: np.ndarray, dtype: str) -> str:
    return base64.b64encode(np.ascontiguousarray(a, dtype=dtype).tobytes()).decode("ascii")


def _jpeg_data_url(image: np.ndarray) -> str:
    import cv2

    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(image[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise InputError("image", f"could not encode a {image.shape} image as JPEG")
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


_UNITS = {"cloud": "points", "mixture": "Gaussians", "matches": ""}


def _count_text(layer: Layer) -> str:
    unit = next((u for prefix, u in _UNITS.items() if layer.name.startswith(prefix)), None)
    return "" if unit is None else f"({layer.count:,}{' ' + unit if unit else ''})"


def _layer_json(layer: Layer) -> dict:
    d = {"name": layer.name, "label": layer.label, "color": [int(c) for c in layer.color], "count": int(layer.count),
         "count_text": _count_text(layer), "visible": bool(layer.visible), "points": None, "lines": None, "image": None,
         "tintable": layer.name.startswith(("cloud", "mixture"))}
    if layer.points is not None and len(layer.points):
        d["points"] = {"pos": _b64(layer.points, "<f4"), "col": _b64(layer.point_colors, "u1"),
                       "rad": _b64(layer.point_radii, "<f4") if layer.point_radii is not None else None}
    if layer.lines is not None and len(layer.lines):
        d["lines"] = {"pos": _b64(layer.lines, "<f4"), "col": _b64(np.repeat(layer.line_colors, 2, axis=0), "u1")}
    if layer.image is not None and layer.image_corners is not None:
        d["image"] = {"corners": np.asarray(layer.image_corners, np.float64).reshape(-1).round(6).tolist(),
                      "src": _jpeg_data_url(layer.image)}
    return d


def _check_layer(layer: Layer) -> None:
    """The arrays a layer hands to the viewer must agree in length (the page trusts them)."""
    pairs = [("points", "point_colors", 3), ("lines", "line_colors", 2 * 3)]
    for arr, col, per in pairs:
        a, c = getattr(layer, arr), getattr(layer, col)
        if a is None:
            continue
        a = np.asarray(a)
        if a.size % per or c is None or len(c) * per != a.size or np.asarray(c).shape[-1:] != (3,):
            raise InputError("scene", f"layer {layer.name!r}: {arr} {a.shape} and {col} "
                                      f"{None if c is None else np.shape(c)} do not agree")
        if not np.all(np.isfinite(a)):
            raise InputError("scene", f"layer {layer.name!r}: {arr} has non-finite coordinates")
    if layer.point_radii is not None and np.size(layer.point_radii) * 3 != np.size(layer.points):
        raise InputError("scene", f"layer {layer.name!r}: one radius per point expected")


def html_text(scene: Scene) -> str:
    """The page of ``scene`` as a string (see :func:`write_html`)."""
    if not isinstance(scene, Scene):
        raise InputError("scene", f"expected a twoview.view3d.Scene, got {type(scene).__name__}")
    for layer in scene.layers:
        _check_layer(layer)
    data = {"title": scene.title, "info": [[str(k), str(v)] for k, v in scene.info],
            "view": {"center": [float(x) for x in scene.center], "radius": float(scene.radius)},
            "color_by_view": bool(scene.color_by_view),
            "layers": [_layer_json(layer) for layer in scene.layers]}
    # "</" would end the <script> element early; JSON allows "<\/".
    text = json.dumps(data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    template, script = _assets()
    title = scene.title.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    parts = {"TITLE": title, "DATA": text, "SCRIPT": script}
    return re.sub(r"__(TITLE|DATA|SCRIPT)__", lambda m: parts[m.group(1)], template)


def write_html(path: str | Path, scene: Scene, name: str = "path") -> Path:
    """Write ``scene`` as one self-contained HTML file, atomically.

    Open it in any browser with WebGL (no server or network needed): drag to orbit,
    right-drag to pan, wheel to zoom, the panel toggles layers.

    Args:
        path: output file; missing folders are created.
        scene: from :func:`~twoview.view3d.build_scene`.
        name: how error messages name the path (e.g. the CLI flag ``--view``).

    Returns:
        the path written.

    Raises:
        InputError: the path is a folder or cannot be written, or the scene is malformed.
    """
    from twoview.io.atomic import atomic_write_text

    p = Path(path)
    if p.is_dir():
        raise InputError(name, f"is a folder, not a file: {p}")
    page = html_text(scene)
    try:
        return atomic_write_text(p, page)
    except OSError as e:
        raise InputError(name, f"cannot write {p}: {e.strerror or e}") from None

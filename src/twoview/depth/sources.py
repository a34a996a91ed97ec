"""Where the depth of a pair comes from, in one place.

Three sources:

- ``"file"``: depth maps on disk (16-bit PNG with a scale, .npy, .pfm, .exr), read with
  :func:`twoview.io.depth.load_depth`. Sensor or reconstruction depth: solve with
  "rigid3d"/"pnp" ("auto").
- ``"model"``: a monocular metric depth network (:mod:`twoview.depth.estimators`) run
  on both images. Its maps disagree in scale: solve with ``mode="monodepth"``.
- ``"none"``: no depth; the pose is direction-only (``PoseResult.metric`` is False and
  the translation is a unit vector).

:func:`resolve_depths` returns a :class:`DepthPair` that says which, plus the solver
mode that suits it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from twoview.errors import InputError
from twoview.geometry.camera import Camera

DepthSourceKind = Literal["file", "model", "none"]


@dataclass
class DepthPair:
    """Depth of both views and where it came from.

    Attributes:
        depth0, depth1: (H, W) float64 metres with NaN invalid, at the image size, or None.
        source: "file", "model" or "none".
        solver_mode: the :class:`~twoview.config.SolverConfig` mode that suits the source
            ("auto" for files and none, "monodepth" for a model).
        info: model name, cache hits, focal length used, ...
    """

    depth0: np.ndarray | None
    depth1: np.ndarray | None
    source: DepthSourceKind
    solver_mode: str = "auto"
    info: dict = field(default_factory=dict)

    @property
    def metric(self) -> bool:
        """Whether a pose from this depth has a metric translation."""
        return self.depth0 is not None or self.depth1 is not None


def depth_from_file(path, image_size: tuple[int, int], scale: float | None = None, name: str = "depth") -> np.ndarray:
    """Read a depth file and bring it to ``image_size`` = (width, height).

    Returns:
        (H, W) float64 metres, NaN invalid.

    Raises:
        InputError: missing/unreadable file, wrong aspect ratio, no valid pixel, PNG
            without a scale.
    """
    from twoview.io.depth import as_depth_map

    return as_depth_map(Path(path), image_size, scale, name)


def _image_array(image, name: str) -> np.ndarray:
    from twoview.io.images import check_image_array, load_image

    if isinstance(image, (str, Path)):
        return load_image(image, name)
    return check_image_array(image, name)


def _camera_for(camera, image: np.ndarray, image_path, name: str) -> Camera:
    """A Camera from what the estimator accepts (Camera, 3x3 K, (fx, fy, cx, cy), None).

    None: EXIF focal length when the image is a file, else a "fov-guess" camera (Depth
    Pro then uses its own field-of-view head). No warning here: the estimator warns.
    """
    h, w = image.shape[:2]
    if camera is None:
        if isinstance(image_path, (str, Path)):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return Camera.from_exif_or_guess(image_path, w, h)
        return Camera.from_fov(65.0, w, h, source="fov-guess")
    if isinstance(camera, Camera):
        return camera
    if isinstance(camera, dict):  # {"K": ..., "dist": ...}: the focal length is all a depth model needs
        camera = camera.get("K")
    K = np.asarray(camera, dtype=np.float64)
    if K.shape == (3, 3):
        return Camera.from_K(K, w, h, name)
    if K.shape in ((3,), (4,)):
        return Camera.from_params(K, w, h, name)
    raise InputError(name, f"expected a Camera, a 3x3 K or (fx, fy, cx, cy), got shape {K.shape}")


def predict_depth_pair(
    depth_model,
    image0,
    image1,
    camera0=None,
    camera1=None,
    name: str = "--depth-model",
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Run a monocular metric depth model on both images.

    Args:
        depth_model: a model folder or hub id (str) or a
            :class:`~twoview.depth.estimators.DepthModelConfig`.
        image0, image1: paths or RGB uint8 arrays (H, W, 3).
        camera0, camera1: Camera, 3x3 K, (fx, fy, cx, cy), ``{"K", "dist"}`` or None.

    Returns:
        (depth0 (H0, W0), depth1 (H1, W1), info) in metres, NaN invalid, at each image's size.

    Raises:
        InputError: model not available offline (the message says how to get it), bad
            image, or a prediction without any valid pixel.
        BackendUnavailable: torch/transformers not installed.
    """
    from twoview.depth.estimators import load_depth_estimator
    from twoview.io.depth import prepare_depth

    est = load_depth_estimator(depth_model, name)
    out, info = [], {"model": est.cfg.model, "model_type": est.model_type}
    for view, (image, camera) in enumerate(((image0, camera0), (image1, camera1))):
        img = _image_array(image, f"image{view}")
        cam = _camera_for(camera, img, image, f"camera{view}")
        d, i = est.predict_with_info(img, cam)
        out.append(prepare_depth(d, (img.shape[1], img.shape[0]), f"depth{view} (predicted by {est.cfg.model})"))
        info[f"view{view}"] = {k: v for k, v in i.items() if k not in ("model", "model_type")}
    return out[0], out[1], info


def resolve_depths(
    image0,
    image1,
    camera0=None,
    camera1=None,
    depth0=None,
    depth1=None,
    depth_model=None,
    depth_scale: float | None = None,
) -> DepthPair:
    """Decide the depth source of a pair and produce its depth maps.

    Args:
        image0, image1: paths or RGB uint8 arrays.
        camera0, camera1: as :func:`predict_depth_pair` (used by the depth model only).
        depth0, depth1: depth file paths or (H, W) arrays (metres), or None.
        depth_model: model folder / hub id / DepthModelConfig, or None.
        depth_scale: units per metre of integer depth (PNG files or integer arrays); divides
            floating-point depth when given.

    Returns:
        :class:`DepthPair`; ``source="none"`` when neither files nor a model are given
        (the pose will be direction-only).

    Raises:
        InputError: depth files together with a depth model (ambiguous), or any problem
            of the files / model.
    """
    if depth_model is not None and (depth0 is not None or depth1 is not None):
        raise InputError("--depth-model", "give either depth files (--depth0/--depth1) or --depth-model, not both")
    if depth_model is not None:
        d0, d1, info = predict_depth_pair(depth_model, image0, image1, camera0, camera1)
        return DepthPair(d0, d1, "model", "monodepth", info)
    if depth0 is None and depth1 is None:
        return DepthPair(None, None, "none", "auto", {"note": "no depth: the translation is a unit direction (no metric scale)"})
    from twoview.io.depth import as_depth_map

    out = []
    for view, (image, depth) in enumerate(((image0, depth0), (image1, depth1))):
        if depth is None:
            out.append(None)
            continue
        img = _image_array(image, f"image{view}")
        size = (img.shape[1], img.shape[0])
        out.append(as_depth_map(depth, size, depth_scale, f"depth{view}"))
    return DepthPair(out[0], out[1], "file", "auto", {})

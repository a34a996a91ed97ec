"""One view of a pair, loaded and checked once.

A :class:`View` is everything the pipeline's stages read about one photo: the decoded
image (upright, uint8 RGB), its camera, its depth (metres, NaN missing) and what kind of
depth that is. :func:`load_view` builds it from paths or arrays and is the one place
where inputs are checked, so a bad file or array is reported once, naming the argument,
and no stage decodes a file again.

Depth kinds:

- ``"sensor"``: measured (an RGB-D camera, stereo, a renderer, a reconstruction): the
  right scale, noise that grows with distance, possibly not registered to the colour
  image (:mod:`twoview.depth.registration`).
- ``"monocular"``: predicted by a network from the photo: right on average, but each
  map carries its own scale error (:mod:`twoview.solvers.monodepth`).
"""

from __future__ import annotations

import dataclasses
import typing
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from twoview.errors import InputError, TwoViewWarning
from twoview.geometry.camera import DEFAULT_HFOV_DEG, MAX_PINHOLE_FOV_DEG, MIN_PINHOLE_FOV_DEG, Camera

DepthKind = typing.Literal["sensor", "monocular"]
DEPTH_KINDS = typing.get_args(DepthKind)


@dataclass(eq=False)
class View:
    """One photo with its camera and (optionally) depth.

    Attributes:
        image: (H, W, 3) uint8 RGB, upright by the file's EXIF orientation.
        camera: intrinsics for (W, H), possibly with lens distortion.
        depth: (H, W) float64 z-depth in metres, NaN where missing, or None.
        depth_kind: "sensor" or "monocular" (None without depth).
        name: "0" or "1": the suffix of the arguments it came from (``image0``,
            ``camera1``) used in messages.
        image_path, depth_path: the files it was read from, if any.
        info: what the pipeline learned about the view (e.g. the depth registration).
    """

    image: np.ndarray
    camera: Camera
    depth: np.ndarray | None = None
    depth_kind: DepthKind | None = None
    name: str = "0"
    image_path: Path | None = None
    depth_path: Path | None = None
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.depth is None:
            self.depth_kind = None
        elif self.depth_kind not in DEPTH_KINDS:
            raise InputError(f"depth{self.name}", f"depth kind must be one of {list(DEPTH_KINDS)}, got {self.depth_kind!r}")

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return self.camera.size

    def with_depth(self, depth: np.ndarray | None, kind: DepthKind | None, **info) -> View:
        """A copy with other depth (the image and camera are shared, not copied)."""
        return dataclasses.replace(self, depth=depth, depth_kind=kind if depth is not None else None,
                                   info={**self.info, **info})


def as_image(image, name: str) -> np.ndarray:
    """A path or an array -> (H, W, 3) uint8 RGB (grey is repeated over three channels)."""
    from twoview.io.images import check_image_array, load_image

    if isinstance(image, (str, Path)):
        im = load_image(image, name)
    else:
        im = check_image_array(image, name)
    if im.ndim == 2:
        im = np.repeat(im[..., None], 3, axis=2)
    return np.ascontiguousarray(im)


def warn_fov_guess(name: str, stacklevel: int = 2) -> None:
    """The warning that ``name``, an in-memory image, gets the field-of-view guess as its
    camera (``stacklevel`` as :func:`warnings.warn` counts it from the caller)."""
    warnings.warn(
        f"{name}: no intrinsics given for an in-memory image; assuming a {DEFAULT_HFOV_DEG:.0f} deg "
        "horizontal field of view. Pass K for accurate poses.",
        category=TwoViewWarning, stacklevel=stacklevel + 1,
    )


def as_camera(cam, image: np.ndarray, image_path, name: str) -> Camera:
    """What the API accepts as a camera -> a checked :class:`Camera` for ``image``.

    Accepted: a :class:`Camera` (for this image's size), a 3x3 K, ``(fx, fy, cx, cy)``
    or ``(f, cx, cy)``, a mapping ``{"K": ..., "dist": (k1, k2, p1, p2[, k3])}``, or None
    (EXIF focal length, else a 65 deg field-of-view guess, with a warning).
    """
    h, w = image.shape[:2]
    if cam is None:
        if isinstance(image_path, (str, Path)):
            return Camera.from_exif_or_guess(image_path, w, h)
        warn_fov_guess(name, stacklevel=3)
        return Camera.from_fov(DEFAULT_HFOV_DEG, w, h, source="fov-guess")
    if isinstance(cam, Camera):
        if (cam.width, cam.height) != (w, h):
            raise InputError(
                name, f"camera is for a {cam.width}x{cam.height} image but the image is {w}x{h}; use Camera.scaled()"
            )
        return _check_field_of_view(cam, name)
    dist = None
    if isinstance(cam, dict):  # {"K": 3x3 or (fx, fy, cx, cy), "dist": (k1, k2, p1, p2[, k3])}
        unknown = set(cam) - {"K", "dist"}
        if unknown or "K" not in cam:
            raise InputError(name, f"a camera mapping needs key 'K' and optionally 'dist'; got {sorted(cam)}")
        cam, dist = cam["K"], cam.get("dist")
    try:
        K = np.asarray(cam, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(name, f"expected a Camera, a 3x3 K or (fx, fy, cx, cy), got {cam!r}") from None
    if K.shape == (3, 3):
        c = Camera.from_K(K, w, h, name)
    elif K.shape in ((4,), (3,)):
        c = Camera.from_params(K, w, h, name)
    else:
        raise InputError(name, f"expected a Camera, a 3x3 K or (fx, fy, cx, cy), got shape {K.shape}")
    if dist is not None:
        c = Camera(c.fx, c.fy, c.cx, c.cy, w, h, dist=tuple(np.asarray(dist, dtype=np.float64).ravel()))
    if not (-0.5 <= c.cx <= w - 0.5 and -0.5 <= c.cy <= h - 0.5):
        raise InputError(name, f"principal point ({c.cx:.1f}, {c.cy:.1f}) lies outside the {w}x{h} image")
    return _check_field_of_view(c, name)


def _check_field_of_view(c: Camera, name: str) -> Camera:
    """A pinhole camera sees well under 180 deg, and a real lens more than a fraction of
    a degree: a focal length outside that is K for another image size, swapped entries or
    a typo (a 1e12 px focal length made every pixel the same ray)."""
    w, h = c.width, c.height
    fov_x, fov_y = (np.degrees(2 * np.arctan(n / (2 * f))) for n, f in ((w, c.fx), (h, c.fy)))
    if max(fov_x, fov_y) > MAX_PINHOLE_FOV_DEG:
        raise InputError(
            name, f"focal lengths fx={c.fx:g}, fy={c.fy:g} px give a {fov_x:.1f} x {fov_y:.1f} deg field of view on the "
            f"{w}x{h} image; a pinhole camera is under {MAX_PINHOLE_FOV_DEG:.0f} deg (is K for another image size?)"
        )
    if min(fov_x, fov_y) < MIN_PINHOLE_FOV_DEG:
        raise InputError(
            name, f"focal lengths fx={c.fx:g}, fy={c.fy:g} px give a {fov_x:.3g} x {fov_y:.3g} deg field of view on the "
            f"{w}x{h} image; narrower than {MIN_PINHOLE_FOV_DEG:g} deg is no real lens (is K for another image size?)"
        )
    return c


def load_view(
    image,
    camera=None,
    depth=None,
    *,
    depth_scale: float | None = None,
    depth_kind: DepthKind = "sensor",
    name: str = "0",
) -> View:
    """Load and check one view.

    Args:
        image: a path or an (H, W, 3) / (H, W) / (H, W, 4) array (uint8, or 16-bit
            scaled by its bit depth).
        camera: see :func:`as_camera`.
        depth: a depth file (16-bit PNG with ``depth_scale``, .npy, .pfm, .exr) or an
            (H, W) array; integers are units that need ``depth_scale``, floats are metres
            (divided by ``depth_scale`` when given). 0, 65535, NaN, inf and negative
            values are missing. A map of another size with the same aspect ratio is
            resized (nearest neighbour).
        depth_scale: units per metre of integer depth (1000 for mm, 5000 for TUM).
        depth_kind: "sensor" (measured) or "monocular" (predicted by a network).
        name: "0" or "1", the suffix of the argument names in messages.

    Raises:
        InputError: naming ``image{name}``, ``camera{name}`` or ``depth{name}``.
    """
    from twoview.io.depth import as_depth_map

    if depth_kind not in DEPTH_KINDS:
        raise InputError("depth_kind", f"must be one of {list(DEPTH_KINDS)}, got {depth_kind!r}")
    im = as_image(image, f"image{name}")
    cam = as_camera(camera, im, image, f"camera{name}")
    d = None if depth is None else as_depth_map(depth, cam.size, depth_scale, f"depth{name}")
    return View(
        im, cam, d, depth_kind if d is not None else None, name,
        image_path=Path(image) if isinstance(image, (str, Path)) else None,
        depth_path=Path(depth) if isinstance(depth, (str, Path)) else None,
    )


def load_views(image0, image1, camera0=None, camera1=None, depth0=None, depth1=None, *,
               depth_scale: float | None = None, depth_kind: DepthKind = "sensor") -> tuple[View, View]:
    """:func:`load_view` of both views (names "0" and "1")."""
    return (load_view(image0, camera0, depth0, depth_scale=depth_scale, depth_kind=depth_kind, name="0"),
            load_view(image1, camera1, depth1, depth_scale=depth_scale, depth_kind=depth_kind, name="1"))

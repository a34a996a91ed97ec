"""The canonical camera the regressor sees: every input is resampled to one pinhole.

A regressed pose is only meaningful for the intrinsics the network was trained with: the
same pixel flow means another rotation under another focal length. So images (and depth)
are resampled -- undistorted, scaled and centred -- into a fixed pinhole camera
``K_c = [[f, 0, (W-1)/2], [0, f, (H-1)/2], [0, 0, 1]]`` at the network's input size
(:class:`CanonicalView`). The resampling is exact for any scene (a change of intrinsics
is a homography of the rays), so the relative pose is unchanged.

Cameras whose field of view covers too little of the canonical one (a telephoto lens,
or a small image: most of the canonical view would be padding), or that would need too
strong an upsampling, are refused with a message naming the argument.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from twoview.errors import InputError
from twoview.geometry.camera import Camera

#: Least fraction of the canonical view that the input camera must see.
MIN_COVERAGE = 0.5
#: Largest upsampling factor from the input image to the canonical one.
MAX_UPSAMPLING = 2.5
#: Grey level of canonical pixels outside the input image.
FILL = 128


def canonical_camera(width: int, height: int, focal: float) -> Camera:
    """The centred pinhole camera of the network input."""
    return Camera(focal, focal, (width - 1) / 2.0, (height - 1) / 2.0, width, height)


@dataclass
class CanonicalView:
    """Resampling of one camera's images into the canonical camera.

    Attributes:
        camera: the input camera (with distortion, if any).
        target: the canonical camera.
        scale: input pixels to canonical pixels (the pre-resize factor, < 1 shrinks).
        coverage: fraction of canonical pixels that see the input image.
    """

    camera: Camera
    target: Camera
    scale: float
    coverage: float
    _map: tuple[np.ndarray, np.ndarray] | None = None
    _pre: Camera | None = None

    @classmethod
    def build(cls, camera: Camera, target: Camera, name: str = "camera") -> CanonicalView:
        """Maps from ``camera`` into ``target``.

        Raises:
            InputError: naming ``name``, when the camera's view covers less than
            :data:`MIN_COVERAGE` of the canonical view, or the image would be upsampled
            more than :data:`MAX_UPSAMPLING` times.
        """
        scale = target.fx / np.sqrt(camera.fx * camera.fy)
        fov = lambda c: 2 * np.degrees(np.arctan(c.width / 2 / c.fx))  # noqa: E731
        if scale > MAX_UPSAMPLING:
            raise InputError(name, f"focal {camera.fx:.0f} px for a {camera.width}x{camera.height} image is too "
                             f"low-resolution for the regressor: it would be upsampled {scale:.1f}x (at most "
                             f"{MAX_UPSAMPLING}x) to its canonical {target.width}x{target.height} view with focal "
                             f"{target.fx:.0f} px")
        # pre-resize with area averaging (anti-aliasing), then remap: undistort + centre
        pre = camera.scaled(min(1.0, scale)) if scale < 1.0 else camera
        m1, m2 = cv2.initUndistortRectifyMap(pre.K, np.array(pre.dist) if pre.dist else None, None, target.K,
                                             (target.width, target.height), cv2.CV_32FC1)
        inside = (m1 >= -0.5) & (m1 <= pre.width - 0.5) & (m2 >= -0.5) & (m2 <= pre.height - 0.5)
        coverage = float(inside.mean())
        if coverage < MIN_COVERAGE:
            raise InputError(name, f"the camera's field of view ({fov(camera):.0f} deg horizontal: focal {camera.fx:.0f} "
                             f"px for a {camera.width}x{camera.height} image) covers {100 * coverage:.0f} % of the "
                             f"regressor's canonical {fov(target):.0f} deg view (at least {100 * MIN_COVERAGE:.0f} % "
                             "needed); use the matching front end for narrow fields of view")
        return cls(camera, target, float(scale), coverage, (m1, m2), pre)

    def _check(self, shape, what: str):
        if tuple(shape[:2]) != (self.camera.height, self.camera.width):
            raise InputError(what, f"size {shape[1]}x{shape[0]} does not match its camera "
                             f"({self.camera.width}x{self.camera.height})")

    def image(self, img: np.ndarray, name: str = "image") -> np.ndarray:
        """(H, W, 3) uint8 in the input camera -> (h, w, 3) uint8 in the canonical one."""
        self._check(img.shape, name)
        if self._pre.width != self.camera.width or self._pre.height != self.camera.height:
            img = cv2.resize(img, (self._pre.width, self._pre.height), interpolation=cv2.INTER_AREA)
        return cv2.remap(img, *self._map, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                         borderValue=(FILL, FILL, FILL))

    def depth(self, depth: np.ndarray, name: str = "depth") -> np.ndarray:
        """(H, W) metres (NaN invalid) -> (h, w) float32 in the canonical camera.

        Nearest neighbour at both steps: depth is never averaged across surfaces."""
        self._check(depth.shape, name)
        d = np.ascontiguousarray(depth, dtype=np.float32)
        if self._pre.width != self.camera.width or self._pre.height != self.camera.height:
            d = cv2.resize(d, (self._pre.width, self._pre.height), interpolation=cv2.INTER_NEAREST)
        return cv2.remap(d, *self._map, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=float("nan"))


class ResizedView:
    """The legacy inputs ("stretch" / "crop", see :func:`resize_image`): the image resized
    to the input size, intrinsics ignored by the network (distortion kept out)."""

    def __init__(self, camera: Camera, width: int, height: int, mode: str):
        self.camera, self.size, self.mode = camera, (width, height), mode
        _, A = resize_image(np.zeros((camera.height, camera.width, 3), np.uint8), width, height, mode)
        K = A @ camera.K
        self.target = Camera(K[0, 0], K[1, 1], K[0, 2], K[1, 2], width, height)
        self.coverage = 1.0

    def image(self, img: np.ndarray, name: str = "image") -> np.ndarray:
        return resize_image(img, *self.size, self.mode)[0]

    def depth(self, depth: np.ndarray, name: str = "depth") -> np.ndarray:
        return resize_depth(depth, *self.size, self.mode)


def network_view(camera: Camera, cfg, name: str = "camera"):
    """How images of ``camera`` become the network input of a model with config ``cfg``
    (a :class:`~twoview.regress.config.RegressorConfig`): a :class:`CanonicalView` or a
    :class:`ResizedView`; ``.image()``, ``.depth()``, ``.target`` (the input's camera)."""
    if cfg.resize_mode == "canonical":
        return CanonicalView.build(camera, canonical_camera(cfg.img_width, cfg.img_height, cfg.canonical_focal), name)
    return ResizedView(camera, cfg.img_width, cfg.img_height, cfg.resize_mode)


def _crop_box(W: int, H: int, width: int, height: int, mode: str) -> tuple[int, int, int, int]:
    """(x0, y0, crop width, crop height) of the centre crop to the target aspect ("crop")."""
    x0 = y0 = 0
    cw, ch = W, H
    if mode == "crop":
        target = width / height
        if W / H > target:
            cw = int(round(H * target))
            x0 = (W - cw) // 2
        else:
            ch = int(round(W / target))
            y0 = (H - ch) // 2
    return x0, y0, cw, ch


def resize_image(img: np.ndarray, width: int, height: int, mode: str = "stretch") -> tuple[np.ndarray, np.ndarray]:
    """Resize (optionally centre-crop first) an (H, W, 3) uint8 image.

    Returns:
        the resized image (height, width, 3) and the (3, 3) matrix A mapping original
        pixels to resized pixels (K_new = A @ K), OpenCV pixel centres.
    """
    H, W = img.shape[:2]
    x0, y0, cw, ch = _crop_box(W, H, width, height, mode)
    img = img[y0:y0 + ch, x0:x0 + cw]
    sx, sy = width / cw, height / ch
    out = cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA)
    A = np.array([[sx, 0, sx * (0.5 - x0) - 0.5], [0, sy, sy * (0.5 - y0) - 0.5], [0, 0, 1.0]])
    return out, A


def resize_depth(d: np.ndarray, width: int, height: int, mode: str = "stretch") -> np.ndarray:
    """Depth (H, W) resized like :func:`resize_image`, nearest neighbour (sharp edges)."""
    x0, y0, cw, ch = _crop_box(d.shape[1], d.shape[0], width, height, mode)
    out = cv2.resize(np.ascontiguousarray(d[y0:y0 + ch, x0:x0 + cw], dtype=np.float32), (width, height),
                     interpolation=cv2.INTER_NEAREST)
    return out.astype(np.float32)

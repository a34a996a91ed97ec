"""Pinhole cameras.

Pixel convention (OpenCV): the centre of the top-left pixel is (0, 0); x grows right,
y grows down. A camera with ``cx = (width - 1) / 2`` is centred.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from twoview.errors import InputError, TwoViewWarning

#: Horizontal field of view assumed when nothing is known about the camera: a typical
#: phone main camera (about 26 mm equivalent). Used only with a warning.
DEFAULT_HFOV_DEG = 65.0

#: Widest field of view (per axis, from the focal length) accepted for user intrinsics: past it
#: the pinhole model does not hold, and such a K is usually meant for another image size.
MAX_PINHOLE_FOV_DEG = 170.0
#: Narrowest field of view accepted for user intrinsics: long telephoto lenses see a few
#: degrees; less than this is a focal length meant for another image size or a typo.
MIN_PINHOLE_FOV_DEG = 0.5


@dataclass(frozen=True)
class Camera:
    """Pinhole intrinsics with image size.

    Attributes:
        fx, fy: focal lengths in pixels (> 0).
        cx, cy: principal point in pixels.
        width, height: image size in pixels.
        source: how the intrinsics were obtained ("given", "exif", "fov-guess").
        dist: OpenCV radial-tangential distortion ``(k1, k2, p1, p2[, k3])`` or None.
            The estimator undistorts keypoints and depth maps to this pinhole model
            before solving, so every solver sees an ideal pinhole camera.
    """

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    source: str = "given"
    dist: tuple[float, ...] | None = None

    def __post_init__(self):
        for name in ("fx", "fy", "cx", "cy"):
            v = float(getattr(self, name))
            if not np.isfinite(v):
                raise InputError(name, f"must be finite, got {v}")
            object.__setattr__(self, name, v)
        if self.fx <= 0 or self.fy <= 0:
            raise InputError("K", f"focal lengths must be positive, got fx={self.fx}, fy={self.fy}")
        if int(self.width) <= 0 or int(self.height) <= 0:
            raise InputError("image size", f"must be positive, got {self.width}x{self.height}")
        if self.dist is not None:
            d = tuple(float(v) for v in self.dist)
            if len(d) not in (4, 5) or not all(np.isfinite(d)):
                raise InputError("dist", f"expected 4 or 5 finite coefficients (k1, k2, p1, p2[, k3]), got {self.dist}")
            object.__setattr__(self, "dist", d if any(d) else None)
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))

    # --- construction -------------------------------------------------------------
    @classmethod
    def from_K(cls, K: np.ndarray, width: int, height: int, name: str = "K") -> Camera:
        """From a 3x3 calibration matrix (skew must be zero)."""
        K = np.asarray(K, dtype=np.float64)
        if K.shape != (3, 3):
            raise InputError(name, f"must be a 3x3 matrix, got shape {K.shape}")
        if not np.all(np.isfinite(K)):
            raise InputError(name, "has non-finite entries")
        if abs(K[0, 1]) > 1e-9 * max(abs(K[0, 0]), 1.0) or np.any(K[2] != [0, 0, 1]) or K[1, 0] != 0:
            raise InputError(name, "must have the form [[fx,0,cx],[0,fy,cy],[0,0,1]] (no skew)")
        if K[0, 0] <= 0 or K[1, 1] <= 0:
            raise InputError(name, f"focal lengths must be positive, got fx={K[0, 0]}, fy={K[1, 1]}")
        return cls(K[0, 0], K[1, 1], K[0, 2], K[1, 2], width, height)

    @classmethod
    def from_params(cls, params, width: int, height: int, name: str = "K") -> Camera:
        """From ``(fx, fy, cx, cy)`` or ``(f, cx, cy)``."""
        p = [float(v) for v in params]
        if len(p) == 3:
            p = [p[0], p[0], p[1], p[2]]
        if len(p) != 4:
            raise InputError(name, f"expected fx,fy,cx,cy (or f,cx,cy), got {len(p)} numbers")
        if not all(np.isfinite(p)):
            raise InputError(name, f"has non-finite entries: {p}")
        if p[0] <= 0 or p[1] <= 0:
            raise InputError(name, f"focal lengths must be positive, got fx={p[0]}, fy={p[1]}")
        return cls(p[0], p[1], p[2], p[3], width, height)

    @classmethod
    def from_focal(cls, focal_px: float, width: int, height: int) -> Camera:
        """Square pixels, principal point at the image centre."""
        return cls(focal_px, focal_px, (width - 1) / 2.0, (height - 1) / 2.0, width, height)

    @classmethod
    def from_fov(cls, hfov_deg: float, width: int, height: int, source: str = "given") -> Camera:
        """From a horizontal field of view in degrees."""
        if not 1.0 < hfov_deg < 179.0:
            raise InputError("fov", f"must be in (1, 179) degrees, got {hfov_deg}")
        f = (width / 2.0) / np.tan(np.radians(hfov_deg) / 2.0)
        c = cls.from_focal(f, width, height)
        return cls(c.fx, c.fy, c.cx, c.cy, width, height, source)

    @classmethod
    def from_exif_or_guess(cls, image_path: str | Path, width: int, height: int) -> Camera:
        """Focal length from EXIF ``FocalLengthIn35mmFilm`` if present, else a documented
        guess (:data:`DEFAULT_HFOV_DEG` horizontal field of view) with a warning."""
        f35 = _exif_focal_35mm(image_path)
        if f35:
            # 35 mm film is 36 mm wide; the equivalent focal length maps the long side.
            f = f35 / 36.0 * max(width, height)
            c = cls.from_focal(f, width, height)
            return cls(c.fx, c.fy, c.cx, c.cy, width, height, "exif")
        warnings.warn(
            f"{image_path}: no intrinsics given and no EXIF focal length; assuming a "
            f"{DEFAULT_HFOV_DEG:.0f} deg horizontal field of view. Pass K for accurate poses.",
            category=TwoViewWarning, stacklevel=2,
        )
        return cls.from_fov(DEFAULT_HFOV_DEG, width, height, source="fov-guess")

    # --- use ------------------------------------------------------------------------
    @property
    def K(self) -> np.ndarray:
        """(3, 3) calibration matrix."""
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1.0]])

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return self.width, self.height

    @property
    def pinhole(self) -> Camera:
        """The same intrinsics without distortion."""
        return Camera(self.fx, self.fy, self.cx, self.cy, self.width, self.height, self.source)

    def undistort_points(self, uv: np.ndarray) -> np.ndarray:
        """Pixels (N, 2) of the distorted image -> pixels (N, 2) of the ideal pinhole image."""
        uv = np.asarray(uv, dtype=np.float64).reshape(-1, 2)
        if self.dist is None or len(uv) == 0:
            return uv
        import cv2

        out = cv2.undistortPoints(uv[:, None, :], self.K, np.array(self.dist), P=self.K)
        return out.reshape(-1, 2).astype(np.float64)

    def undistort_depth(self, depth: np.ndarray) -> np.ndarray:
        """Depth map (H, W) registered to the distorted image -> the pinhole image.

        Nearest-neighbour look-up: depth is never averaged across surfaces."""
        if self.dist is None:
            return depth
        import cv2

        m1, m2 = _undistort_maps(self.fx, self.fy, self.cx, self.cy, self.width, self.height, self.dist)
        return cv2.remap(depth, m1, m2, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=np.nan)

    def undistort_image(self, image: np.ndarray) -> np.ndarray:
        """Image (H, W[, C]) of the distorted camera -> the pinhole image (bilinear)."""
        if self.dist is None:
            return image
        import cv2

        m1, m2 = _undistort_maps(self.fx, self.fy, self.cx, self.cy, self.width, self.height, self.dist)
        return cv2.remap(image, m1, m2, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    def scaled(self, sx: float, sy: float | None = None) -> Camera:
        """Intrinsics of the image resized by (sx, sy), pixel centres kept consistent."""
        sy = sx if sy is None else sy
        return Camera(
            self.fx * sx,
            self.fy * sy,
            (self.cx + 0.5) * sx - 0.5,
            (self.cy + 0.5) * sy - 0.5,
            round(self.width * sx),
            round(self.height * sy),
            self.source,
            self.dist,
        )

    def project(self, points: np.ndarray) -> np.ndarray:
        """Camera-frame points (N, 3) -> pixels (N, 2). Points must have z > 0."""
        p = np.asarray(points, dtype=np.float64)
        z = p[:, 2]
        return np.stack([self.fx * p[:, 0] / z + self.cx, self.fy * p[:, 1] / z + self.cy], axis=1)

    def unproject(self, uv: np.ndarray, depth: np.ndarray) -> np.ndarray:
        """Pixels (N, 2) with z-depth (N,) -> camera-frame points (N, 3)."""
        uv = np.asarray(uv, dtype=np.float64)
        z = np.asarray(depth, dtype=np.float64)
        x = (uv[:, 0] - self.cx) / self.fx * z
        y = (uv[:, 1] - self.cy) / self.fy * z
        return np.stack([x, y, z], axis=1)

    def bearings(self, uv: np.ndarray) -> np.ndarray:
        """Pixels (N, 2) -> normalised image coordinates (N, 2) (z = 1 plane)."""
        uv = np.asarray(uv, dtype=np.float64)
        return np.stack([(uv[:, 0] - self.cx) / self.fx, (uv[:, 1] - self.cy) / self.fy], axis=1)

    def in_image(self, uv: np.ndarray, margin: float = 0.0) -> np.ndarray:
        """Boolean mask (N,) of pixels inside the image (pixel centres -0.5 .. size-0.5)."""
        uv = np.asarray(uv, dtype=np.float64)
        return (
            (uv[:, 0] >= -0.5 + margin)
            & (uv[:, 0] <= self.width - 0.5 - margin)
            & (uv[:, 1] >= -0.5 + margin)
            & (uv[:, 1] <= self.height - 0.5 - margin)
        )

    def to_poselib(self) -> dict:
        return {
            "model": "PINHOLE",
            "width": self.width,
            "height": self.height,
            "params": [self.fx, self.fy, self.cx, self.cy],
        }

    def to_dict(self) -> dict:
        return {
            "fx": self.fx, "fy": self.fy, "cx": self.cx, "cy": self.cy,
            "width": self.width, "height": self.height, "source": self.source,
            "dist": list(self.dist) if self.dist else None,
        }


def _exif_focal_35mm(path: str | Path) -> float | None:
    try:
        from PIL import Image

        with Image.open(path) as im:
            exif = im.getexif()
            sub = exif.get_ifd(0x8769) if exif else {}
            f35 = sub.get(0xA405) or exif.get(0xA405)
            return float(f35) if f35 else None
    except Exception:  # EXIF is a hint only: any failure means "unknown"
        return None


@lru_cache(maxsize=8)
def _undistort_maps(fx, fy, cx, cy, width, height, dist):
    """Pixel maps of the ideal pinhole image into the distorted one; cached, as a
    sequence reuses one camera. (Float maps: OpenCV's fixed-point maps round down under
    nearest-neighbour remapping.)"""
    import cv2

    K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]])
    return cv2.initUndistortRectifyMap(K, np.array(dist), None, K, (width, height), cv2.CV_32FC1)

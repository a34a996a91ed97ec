"""Single-view metric Gaussian mixtures built from one RGB image, its depth and K.

Partition: an adaptive two-level quadtree over the image. Pixels with invalid depth, out
of range depth, or on depth edges (relative jump to a 4-neighbour above a threshold, or
next to a hole) are dropped first. Every coarse cell whose 3D points are not planar
(thickness above ``split_threshold`` x depth) is split into its four children, so cells
never straddle a depth discontinuity they could have avoided. Each cell with enough valid
pixels becomes one Gaussian: its moments give the mean and covariance (thin along the
surface normal), the eigenvalues clamped to ``[min_sigma_rel, max_sigma_rel] x depth``;
the weight is the cell's metric surface area; colour the mean RGB; features pooled from
a dense descriptor map at the cell's pixel centroid.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import cv2
import numpy as np

from twoview.errors import InputError
from twoview.geometry.camera import Camera
from twoview.geometry.rotation import sym3_eigvalsh
from twoview.gmm.appearance import AppearanceField
from twoview._threads import blas_single_thread
from twoview.gmm.config import BuildConfig


@dataclass
class GaussianMixture:
    """A metric 3D Gaussian mixture in its camera's frame.

    Attributes:
        means: (N, 3) metres, camera frame (OpenCV axes).
        covs: (N, 3, 3) covariances, m^2, symmetric positive definite.
        weights: (N,) non-negative, sum 1.
        colors: (N, 3) RGB in [0, 1].
        features: (N, C) L2-normalised descriptors, or None.
        normals: (N, 3) unit normals pointing towards the camera (or None).
        camera: intrinsics of the view the mixture was built from (for visibility), or None.
        zbuffer: (h, w) depth in metres of the visible surface at low resolution (NaN
            empty), or None; ``zbuffer_stride`` pixels per cell.
        appearance: the view's appearance field (its image, blurred per level, and its
            dense descriptor map) for the appearance term, or None (e.g. read from a PLY).
        info: build statistics (cell sizes, timings).
        dense: the view's dense mixture (one component per small cell, ``BuildConfig.dense_cell_side``) that
            the alignment is polished on, or None.
        measured_covs: (N, 3, 3) the covariances as measured where ``covs`` were made
            planes (a dense mixture, ``BuildConfig.dense_normal_ratio``): the polish aligns
            on the planes and states its uncertainty from these; None: ``covs`` are they.
    """

    means: np.ndarray
    covs: np.ndarray
    weights: np.ndarray
    colors: np.ndarray
    features: np.ndarray | None = None
    normals: np.ndarray | None = None
    camera: Camera | None = None
    zbuffer: np.ndarray | None = None
    zbuffer_stride: int = 4
    appearance: AppearanceField | None = None
    info: dict = field(default_factory=dict)
    dense: "GaussianMixture | None" = None
    measured_covs: np.ndarray | None = None

    def __post_init__(self):
        self.means = np.asarray(self.means, dtype=np.float64).reshape(-1, 3)
        n = len(self.means)
        self.covs = np.asarray(self.covs, dtype=np.float64).reshape(n, 3, 3)
        self.weights = np.asarray(self.weights, dtype=np.float64).reshape(n)
        self.colors = np.asarray(self.colors, dtype=np.float64).reshape(n, 3)
        if self.features is not None:
            self.features = np.asarray(self.features, dtype=np.float32).reshape(n, -1)
        if self.normals is not None:
            self.normals = np.asarray(self.normals, dtype=np.float64).reshape(n, 3)
        if n and not (np.all(np.isfinite(self.means)) and np.all(np.isfinite(self.covs))):
            raise InputError("mixture", "means and covariances must be finite")
        s = self.weights.sum()
        if n and s > 0:
            self.weights = self.weights / s

    def __len__(self) -> int:
        return len(self.means)

    def subset(self, idx: np.ndarray) -> GaussianMixture:
        return GaussianMixture(
            self.means[idx], self.covs[idx], self.weights[idx], self.colors[idx],
            None if self.features is None else self.features[idx],
            None if self.normals is None else self.normals[idx],
            self.camera, self.zbuffer, self.zbuffer_stride, self.appearance, dict(self.info),
        )

    def transformed(self, R: np.ndarray, t: np.ndarray, scale: float = 1.0) -> GaussianMixture:
        """The mixture moved by ``x -> scale * R @ x + t`` (camera/z-buffer dropped)."""
        R = np.asarray(R, float)
        means = scale * self.means @ R.T + t
        covs = scale**2 * np.einsum("ij,njk,lk->nil", R, self.covs, R)
        normals = None if self.normals is None else self.normals @ R.T
        return GaussianMixture(means, covs, self.weights, self.colors, self.features, normals, info=dict(self.info))

    def scales_rotations(self) -> tuple[np.ndarray, np.ndarray]:
        """Standard deviations (N, 3) and rotations (N, 3, 3), det +1, with
        ``cov = Rot @ diag(scales^2) @ Rot.T``."""
        evals, evecs = np.linalg.eigh(self.covs)
        det = np.linalg.det(evecs)
        evecs[:, :, 0] *= np.sign(det)[:, None]
        return np.sqrt(np.maximum(evals, 0.0)), evecs

    def median_depth(self) -> float:
        return float(np.median(self.means[:, 2])) if len(self) else float("nan")

    def ensure_zbuffer(self, stride: int = 8) -> None:
        """Give a mixture without a z-buffer (e.g. read from a PLY) one rendered from its
        means, if it has a camera."""
        if self.zbuffer is not None or self.camera is None or not len(self):
            return
        cam = self.camera
        h, w = -(-cam.height // stride), -(-cam.width // stride)
        zb = np.full(h * w, np.inf)
        ok = self.means[:, 2] > 1e-6
        uv = cam.project(self.means[ok])
        inside = cam.in_image(uv)
        ix = np.clip(((uv[inside, 0] + 0.5) / stride).astype(int), 0, w - 1)
        iy = np.clip(((uv[inside, 1] + 0.5) / stride).astype(int), 0, h - 1)
        np.minimum.at(zb, iy * w + ix, self.means[ok][inside, 2])
        zb[~np.isfinite(zb)] = np.nan
        self.zbuffer, self.zbuffer_stride = zb.reshape(h, w), stride

    def ensure_appearance(self) -> None:
        """Give a mixture without an appearance field (e.g. read from a PLY) one rendered
        in its camera: each pixel takes the colour of the nearest Gaussian centre that
        projects into it, holes are filled by normalised blurring over the typical
        footprint of a Gaussian. Colour only (no descriptors)."""
        if self.appearance is not None or self.camera is None or not len(self):
            return
        cam = self.camera
        ok = self.means[:, 2] > 1e-6
        uv = cam.project(self.means[ok])
        inside = cam.in_image(uv)
        if not inside.any():
            return
        ix = np.clip(np.rint(uv[inside, 0]).astype(int), 0, cam.width - 1)
        iy = np.clip(np.rint(uv[inside, 1]).astype(int), 0, cam.height - 1)
        z = self.means[ok][inside, 2]
        order = np.argsort(-z)  # far first: nearer centres overwrite them
        img = np.zeros((cam.height, cam.width, 3), np.float32)
        hit = np.zeros((cam.height, cam.width), np.float32)
        img[iy[order], ix[order]] = self.colors[ok][inside][order]
        hit[iy[order], ix[order]] = 1.0
        # footprint: the median std of a Gaussian in pixels
        sig = np.sqrt(sym3_eigvalsh(self.covs[ok][inside])[:, -1]) * cam.fx / z
        blur = float(np.clip(np.median(sig), 1.0, 20.0))
        num = cv2.GaussianBlur(img, (0, 0), blur)
        den = cv2.GaussianBlur(hit, (0, 0), blur)[..., None]
        rendered = np.where(hit[..., None] > 0, img, num / np.maximum(den, 1e-6))
        self.appearance = AppearanceField(np.clip(rendered * 255.0 + 0.5, 0, 255).astype(np.uint8))


def _check_inputs(image, depth, camera: Camera, name: str):
    """One view's (image (H, W, 3) uint8, depth (H, W) float64) after the checks that name
    the argument (``image0``, ``depth1``, ``camera0``) on failure (raises InputError)."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] < 3:
        raise InputError(f"image{name}", f"expected an (H, W, 3) RGB image, got shape {image.shape}")
    image = np.ascontiguousarray(image[..., :3])
    if image.dtype != np.uint8:
        raise InputError(f"image{name}", f"expected uint8 RGB, got dtype {image.dtype}")
    if depth is None:
        raise InputError(f"depth{name}", "a metric Gaussian mixture needs a depth map (metres, NaN invalid)")
    depth = np.ascontiguousarray(depth, dtype=np.float64)
    if depth.shape != image.shape[:2]:
        raise InputError(f"depth{name}", f"depth is {depth.shape[1]}x{depth.shape[0]} but the image is "
                         f"{image.shape[1]}x{image.shape[0]}")
    if not isinstance(camera, Camera):
        raise InputError(f"camera{name}", f"expected a twoview.Camera, got {type(camera).__name__}")
    if (camera.width, camera.height) != (image.shape[1], image.shape[0]):
        raise InputError(f"camera{name}", f"camera is for {camera.width}x{camera.height} but the image is "
                         f"{image.shape[1]}x{image.shape[0]}")
    return image, depth


def pinhole_view(image, depth, camera: Camera, name: str = ""):
    """(image, depth, camera) of one view, checked (:func:`_check_inputs`) and, with
    lens distortion, undistorted to the camera's pinhole model: mixtures (and the
    descriptor maps pooled into them) live in the ideal pinhole camera."""
    image, depth = _check_inputs(image, depth, camera, name)
    if camera.dist is not None:
        image, depth, camera = camera.undistort_image(image), camera.undistort_depth(depth), camera.pinhole
    return image, depth, camera


def _valid_mask(depth: np.ndarray, cfg: BuildConfig) -> tuple[np.ndarray, int]:
    """(H, W) bool of reliable depth and its count: finite, inside (min_depth,
    max_depth), and no relative jump ``|a - b| > edge_threshold * min(a, b)`` to a
    4-neighbour (an invalid neighbour counts as an edge: depth there is unreliable)."""
    from twoview.gmm._kernels import valid_depth_mask

    return valid_depth_mask(depth, float(cfg.min_depth), float(cfg.max_depth), 1.0 + float(cfg.edge_threshold))


def _moments_to_gaussians(M: np.ndarray):
    """Block moments (..., 13) [n, x, y, z, xx, xy, xz, yy, yz, zz, u, v, unused] ->
    (n, mean, cov, uv)."""
    n = M[..., 0]
    nn = np.maximum(n, 1)[..., None]
    mean = M[..., 1:4] / nn
    s = M[..., 4:10] / nn
    cov = np.empty(M.shape[:-1] + (3, 3))
    idx = [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)]
    for k, (i, j) in enumerate(idx):
        v = s[..., k] - mean[..., i] * mean[..., j]
        cov[..., i, j] = v
        cov[..., j, i] = v
    uv = M[..., 10:12] / nn
    return n, mean, cov, uv


def load_feature_backend(cfg: BuildConfig):
    """The feature backend ``cfg`` asks for, loaded (cached per process), or None."""
    if cfg.features == "none":
        return None
    from twoview.gmm.features import get_backend

    return get_backend(cfg.features, cfg.feature_resize_max, cfg.dinov2_model)


@blas_single_thread
def build_mixture(
    image: np.ndarray,
    depth: np.ndarray,
    camera: Camera,
    config: BuildConfig | None = None,
    name: str = "",
    dense=None,
) -> GaussianMixture:
    """Build the metric mixture of one RGB-D view.

    Args:
        image: (H, W, 3) uint8 RGB.
        depth: (H, W) float64 z-depth in metres, NaN invalid.
        camera: intrinsics for (W, H); with lens distortion, image and depth are first
            undistorted to its pinhole model (the mixture's camera).
        config: building options.
        name: suffix for error messages ("0" -> "depth0").
        dense: the descriptor field of the (undistorted) image, as
            :func:`twoview.gmm.features.dense_field` returns it, or a callable returning
            it (e.g. the result of a batched forward pass running on another thread);
            None runs the feature backend here.

    Returns:
        :class:`GaussianMixture` in the camera frame (possibly empty if no depth is
        reliable; the caller turns that into a failure).

    Raises:
        InputError: wrong shapes or types, or depth with no finite value.
    """
    cfg = config or BuildConfig()
    t0 = time.perf_counter()
    image, depth, camera = pinhole_view(image, depth, camera, name)
    if not np.any(np.isfinite(depth)):
        raise InputError(f"depth{name}", "depth map has no valid (finite, positive) value")
    H, W = depth.shape
    valid, n_valid = _valid_mask(depth, cfg)

    # cell sizes: coarse cells of side c2 = 2 * c1 split into four c1 cells when not planar
    area = max(n_valid, 1) / cfg.num_gaussians
    c1 = int(max(1, round(np.sqrt(area) * 0.7)))
    # moments from every ``step``-th pixel: plenty for cells of >= 4 pixels, 4x faster
    step = 2 if c1 >= 4 else 1
    c1 = max(1, c1 // step)
    c2 = 2 * c1
    h, w = -(-H // step), -(-W // step)
    Hp, Wp = -(-h // c2) * c2, -(-w // c2) * c2  # the grid padded to whole coarse cells
    # (Hp / c1, Wp / c1, 15) moments per fine cell, one compiled pass over the pixels
    from twoview.gmm._kernels import cell_moments, clamp_spectra

    fine = cell_moments(depth, valid, image, step, c1, Hp, Wp,
                        float(camera.fx), float(camera.fy), float(camera.cx), float(camera.cy))
    coarse = fine.reshape(Hp // c2, 2, Wp // c2, 2, 15).sum(axis=(1, 3))

    n2, mean2, cov2, _ = _moments_to_gaussians(coarse[..., :12])
    ev2 = sym3_eigvalsh(cov2)
    thick = np.sqrt(np.maximum(ev2[..., 0], 0)) / np.maximum(mean2[..., 2], 1e-9)
    split = (thick > cfg.split_threshold) | (n2 < cfg.min_fill * c2 * c2)
    keep_coarse = ~split & (n2 >= cfg.min_fill * c2 * c2)
    split_f = np.repeat(np.repeat(split, 2, axis=0), 2, axis=1)
    keep_fine = split_f & (fine[..., 0] >= max(3, cfg.min_fill * c1 * c1))
    M = np.concatenate([coarse[keep_coarse], fine[keep_fine]], axis=0)
    n, mean, cov, uv = _moments_to_gaussians(M[:, :12])
    colour = M[:, 12:15] / np.maximum(n, 1)[:, None]

    # clamp the covariance spectrum relative to depth; the normal is the thinnest axis
    zc = np.maximum(mean[:, 2], 1e-9)
    cov, evecs = clamp_spectra(cov, (cfg.min_sigma_rel * zc) ** 2, (cfg.max_sigma_rel * zc) ** 2)
    if cfg.depth_sigma_rel > 0:  # depth uncertainty: elongate along the viewing ray
        ray = mean / np.linalg.norm(mean, axis=1, keepdims=True)
        cov = cov + ((cfg.depth_sigma_rel * zc) ** 2)[:, None, None] * ray[:, :, None] * ray[:, None, :]
    normals = evecs[:, :, 0]
    flip = np.einsum("ni,ni->n", normals, mean) > 0
    normals[flip] *= -1
    weights = n * (step * zc) ** 2 / (camera.fx * camera.fy)  # metric surface area seen
    t_geom = time.perf_counter()

    features = None
    appearance = AppearanceField(image)
    if cfg.features != "none" and len(mean):
        from twoview.gmm.features import dense_field, pool_features

        if dense is None:
            fmap, scale = dense_field(load_feature_backend(cfg), image)
        else:
            fmap, scale = dense() if callable(dense) else dense
        features = pool_features(fmap, scale, uv)
        appearance = AppearanceField(image, fmap, scale)
    t_feat = time.perf_counter()

    dense = None
    dense_px = cfg.dense_cell_side(H, W)
    if dense_px > 0:
        dense = _dense_mixture(depth, valid, image, camera, cfg, dense_px)
    s = cfg.zbuffer_stride
    hz, wz = -(-H // s), -(-W // s)
    zpad = np.full((hz * s, wz * s), np.inf, np.float32)
    zpad[:H, :W] = np.where(np.isfinite(depth), depth, np.inf)
    # block minimum: erode (a min filter over the s x s block starting at each pixel)
    zbuf = cv2.erode(zpad, np.ones((s, s), np.uint8), anchor=(0, 0), borderType=cv2.BORDER_REPLICATE)[::s, ::s]
    zbuf = zbuf.astype(np.float64)
    zbuf[~np.isfinite(zbuf)] = np.nan

    info = {
        "num_gaussians": int(len(mean)),
        "valid_pixels": n_valid,
        "cell_px": [c2 * step, c1 * step],
        "split_fraction": float(split.mean()),
        "ms_geometry": (t_geom - t0) * 1e3,
        "ms_features": (t_feat - t_geom) * 1e3,
        "median_depth": float(np.median(mean[:, 2])) if len(mean) else float("nan"),
    }
    if dense is not None:
        info["num_dense"] = len(dense)
        info["dense_cell_px"] = dense_px
        dense.camera, dense.zbuffer, dense.zbuffer_stride = camera, zbuf, s
    return GaussianMixture(mean, cov, weights, colour, features, normals, camera, zbuf, s, appearance, info, dense)


def _dense_mixture(depth, valid, image, camera, cfg: BuildConfig, c: int) -> GaussianMixture:
    """The dense mixture the alignment is polished on (:mod:`twoview.gmm.polish`): one
    Gaussian per ``c`` x ``c`` pixel cell (``BuildConfig.dense_cell_side``), its mean the cell's centroid and its
    covariance the local surface's, from the ``dense_neighbourhood`` x
    ``dense_neighbourhood`` block of cells around it (as GICP takes each point's
    covariance from its neighbours): many more samples of the surface than the
    quadtree's, each with a well-estimated plane."""
    from twoview.gmm._kernels import cell_moments, plane_spectra

    H, W = depth.shape
    # every valid pixel enters its cell (not every other one, as the quadtree's moments):
    # on the HoloLens pairs, whose depth is exact, a quarter of the pixels (2 ms cheaper
    # per view) cost 1.5 AUC@5
    Hp, Wp = -(-H // c) * c, -(-W // c) * c
    fine = cell_moments(depth, valid, image, 1, c, Hp, Wp,
                        float(camera.fx), float(camera.fy), float(camera.cx), float(camera.cy))
    k = cfg.dense_neighbourhood
    box = cv2.boxFilter(fine.astype(np.float32), -1, (k, k), normalize=False,
                        borderType=cv2.BORDER_CONSTANT).astype(np.float64)
    keep = fine[..., 0] >= max(2, cfg.min_fill * c * c)
    own = fine[keep]
    n, mean, _, _ = _moments_to_gaussians(own[:, :12])
    nb, mb, cov, _ = _moments_to_gaussians(box[keep][:, :12])
    # the neighbourhood's covariance, centred on its own mean (the cell's mean sits on it)
    ok = nb >= 6
    n, mean, cov, own = n[ok], mean[ok], cov[ok], own[ok]
    colour = own[:, 12:15] / np.maximum(n, 1)[:, None]
    zc = np.maximum(mean[:, 2], 1e-9)
    # regularised rather than clamped (the polish needs no normals): as thin as the
    # quadtree's thinnest Gaussian at that depth, never singular
    cov[:, [0, 1, 2], [0, 1, 2]] += ((cfg.min_sigma_rel * zc) ** 2)[:, None]
    measured = None
    if cfg.dense_normal_ratio is not None and len(cov):
        # planes, as GICP's: the neighbourhood's thickness is the sensor's noise and
        # quantisation more than the surface, and weighing the pairs by it let the noisiest
        # patches decide (see BuildConfig.dense_normal_ratio); the measured ones still say
        # how well the pose is determined
        measured = cov
        cov = plane_spectra(np.ascontiguousarray(cov), float(cfg.dense_normal_ratio))
    if cfg.depth_sigma_rel > 0:
        ray = mean / np.linalg.norm(mean, axis=1, keepdims=True)
        elongate = ((cfg.depth_sigma_rel * zc) ** 2)[:, None, None] * ray[:, :, None] * ray[:, None, :]
        cov = cov + elongate
        measured = None if measured is None else measured + elongate
    weights = n * zc**2 / (camera.fx * camera.fy)
    return GaussianMixture(mean, cov, weights, colour, None, None, camera, measured_covs=measured)

"""The 3D scene of a two-view result: cameras, depth clouds, mixtures and matches.

Everything is expressed in camera 0's frame (OpenCV axes: x right, y down, z forward;
metres). Camera 1 is placed by the estimated ``cam1_from_cam0`` (``x1 = R x0 + t``), so
its centre is ``-R^T t`` and its axes are the rows of ``R``; its cloud and mixture are
moved into frame 0 by the inverse pose. A direction-only pose has no scale: camera 1 is
drawn at a unit baseline and the panel says so.

Budgets keep the page a few MB: at most ``max_points`` (150,000) cloud points in all,
shared evenly by the clouds (a regular pixel grid, then a seeded random cap), at most
``max_gaussians`` (20,000) Gaussians per mixture and ``max_matches`` (300) matches,
chosen evenly along the match list.

Imports numpy and twoview's geometry only; OpenCV (undistortion, texture resizing) is
loaded when a camera has distortion or an image needs shrinking.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from twoview.errors import InputError
from twoview.geometry.camera import Camera
from twoview.geometry.pose import Pose
from twoview.result import PoseResult

if TYPE_CHECKING:  # only for annotations: importing the mixture module pulls OpenCV and numba
    from twoview.gmm.mixture import GaussianMixture

MAX_POINTS = 150_000
MAX_MATCHES = 300
MAX_GAUSSIANS = 20_000
#: longest side of an image drawn on its camera's image plane
TEXTURE_MAX_SIDE = 512

#: legend colours (RGB): estimated camera 0 / 1 and the ground-truth camera 1
COLORS = {"0": (255, 150, 40), "1": (70, 150, 255), "gt": (80, 220, 100), "matches": (240, 240, 90)}
_AXIS_COLORS = np.array([(230, 60, 60), (60, 200, 60), (70, 110, 255)], np.uint8)  # x, y, z


@dataclass
class Layer:
    """One toggleable group of primitives, in camera 0's frame.

    Attributes:
        name: key of the layer ("camera0", "cloud1", "matches", ...).
        label: legend text.
        color: (3,) legend swatch, RGB 0-255.
        count: how many objects it shows (1 for a camera, points, Gaussians or matches).
        visible: shown when the page opens.
        points: (N, 3) float64 or None.
        point_colors: (N, 3) uint8.
        point_radii: (N,) metres: points drawn as discs of that radius in perspective
            (Gaussians); None: fixed-size points (clouds, match ends).
        lines: (M, 2, 3) float64 segments or None.
        line_colors: (M, 3) uint8.
        image: (h, w, 3) uint8 texture of the image plane, or None.
        image_corners: (4, 3) image-plane corners: top-left, top-right, bottom-right, bottom-left.
    """

    name: str
    label: str
    color: tuple[int, int, int]
    count: int
    visible: bool = True
    points: np.ndarray | None = None
    point_colors: np.ndarray | None = None
    point_radii: np.ndarray | None = None
    lines: np.ndarray | None = None
    line_colors: np.ndarray | None = None
    image: np.ndarray | None = None
    image_corners: np.ndarray | None = None


@dataclass
class Scene:
    """What a viewer draws.

    Attributes:
        title: page title.
        layers: in drawing order.
        info: panel rows (label, text).
        center: (3,) where the view orbits, frame 0.
        radius: metres, the extent the initial view frames.
        color_by_view: the page opens with clouds and mixtures tinted in their view's
            colour (orange 0, blue 1) instead of the images' colours: how well the two
            overlap shows at a glance.
    """

    title: str
    layers: list[Layer]
    info: list[tuple[str, str]] = field(default_factory=list)
    center: np.ndarray = field(default_factory=lambda: np.zeros(3))
    radius: float = 1.0
    color_by_view: bool = False

    @property
    def counts(self) -> dict[str, int]:
        """Layer name -> its object count (cameras 1, clouds points, mixtures Gaussians, matches)."""
        return {layer.name: layer.count for layer in self.layers}

    def layer(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"no layer {name!r}; layers: {[la.name for la in self.layers]}")


def build_scene(image0, image1, camera0: Camera, camera1: Camera, depth0, depth1, result: PoseResult,
                mixtures=None, gt=None, *, title: str = "twoview", max_points: int = MAX_POINTS,
                max_matches: int = MAX_MATCHES, max_gaussians: int = MAX_GAUSSIANS) -> Scene:
    """The scene of a two-view result.

    Args:
        image0, image1: (H, W, 3) or (H, W) uint8 images of the cameras' size, or None
            (a frustum without texture, clouds in the camera's colour).
        camera0, camera1: :class:`twoview.Camera` of each image (distortion is removed:
            images and depth are undistorted to the pinhole model, as the estimator does,
            so ``result.matches`` are in the pinhole images).
        depth0, depth1: (H, W) float depth in metres (NaN, 0 or negative invalid) or None.
        result: the estimate. Failed: only camera 0 (and its cloud) is drawn, the panel
            says "no pose". ``matches``/``inliers`` may be None.
        mixtures: None or ``(mix0, mix1)``, each a
            :class:`~twoview.gmm.mixture.GaussianMixture` in its camera's frame or None.
            When given, the mixtures are shown and the clouds start hidden.
        gt: ground-truth ``cam1_from_cam0`` (Pose or (4, 4) matrix) or None: a green
            frustum and the errors in the panel.
        title: page title.
        max_points, max_matches, max_gaussians: budgets (see the module docstring).

    Returns:
        :class:`Scene` in camera 0's frame.

    Raises:
        InputError: a wrong type or shape, naming the argument.
    """
    for what, v in (("max_points", max_points), ("max_matches", max_matches), ("max_gaussians", max_gaussians)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise InputError(what, f"must be a non-negative integer, got {v!r}")
    cam0, cam1 = _check_camera(camera0, "camera0"), _check_camera(camera1, "camera1")
    im0, im1 = _check_image(image0, cam0, "image0"), _check_image(image1, cam1, "image1")
    d0, d1 = _check_depth(depth0, cam0, "depth0"), _check_depth(depth1, cam1, "depth1")
    if not isinstance(result, PoseResult):
        raise InputError("result", f"expected a twoview.PoseResult, got {type(result).__name__}")
    mix0, mix1 = _check_mixtures(mixtures)
    gt_pose = _as_pose(gt, "gt")
    cam0, im0, d0 = _to_pinhole(cam0, im0, d0)
    cam1, im1, d1 = _to_pinhole(cam1, im1, d1)

    # The pose drawn: a direction-only one at a unit baseline (it has no scale).
    pose = None
    if result.success:
        pose = result.cam1_from_cam0
        norm = float(np.linalg.norm(pose.t))
        if not result.metric and norm > 0:
            pose = Pose(pose.R, pose.t / norm)
    views = [(0, im0, cam0, d0, Pose.identity())]
    if pose is not None:
        views.append((1, im1, cam1, d1, pose.inverse()))

    n_clouds = sum(d is not None for _, _, _, d, _ in views)
    rng = np.random.default_rng(0)
    clouds, info_clouds = {}, []
    for v, im, cam, d, frame0_from_cam in views:
        if d is None:
            continue
        pts, cols, n_valid = _cloud(im, d, cam, max_points // max(n_clouds, 1), rng, COLORS[str(v)])
        clouds[v] = (pts, frame0_from_cam.apply(pts), cols)
        info_clouds.append(f"cloud {v}: {len(pts):,} of {n_valid:,} pixels with depth")

    depths = [c[0][:, 2] for c in clouds.values() if len(c[0])]
    median_depth = float(np.median(np.concatenate(depths))) if depths else None
    baseline = float(np.linalg.norm(pose.t)) if pose is not None else 0.0
    size = 0.12 * median_depth if median_depth else 0.3 * (baseline or 1.0)  # frustum depth
    ray_length = median_depth or 3.0 * (baseline or 1.0)

    layers = [_camera_layer(f"camera{v}", f"camera {v}" + (" (estimated)" if v == 1 else " (origin)"),
                            COLORS[str(v)], cam, im, T, size) for v, im, cam, _, T in views]
    if gt_pose is not None:
        layers.append(_camera_layer("gt_camera1", "camera 1 (ground truth)", COLORS["gt"], cam1, None,
                                    gt_pose.inverse(), size))
    show_clouds = mix0 is None and mix1 is None
    for v, (_, pts0, cols) in clouds.items():
        # moved by a unit-baseline pose, cloud 1 is not to scale: hidden until asked for
        scaled = v == 0 or result.metric
        layers.append(Layer(f"cloud{v}", f"depth cloud {v}" + ("" if scaled else " (unit baseline: not to scale)"),
                            COLORS[str(v)], len(pts0), show_clouds and scaled, points=pts0, point_colors=cols))
    for v, mix in ((0, mix0), (1, mix1)):
        frame0 = Pose.identity() if v == 0 else (pose.inverse() if pose is not None else None)
        if mix is not None and frame0 is not None:
            layers.append(_mixture_layer(mix, frame0, max_gaussians, rng, v))
    match_layer = _match_layer(result, cam0, cam1, d0, d1, pose, max_matches, ray_length) if pose else None
    if match_layer is not None:
        layers.append(match_layer)

    info = _info_rows(result, gt_pose, info_clouds, match_layer)
    center, radius = _extent(layers, size)
    return Scene(title, layers, info, center, radius)


# --- input checks ------------------------------------------------------------------------
def _check_camera(cam, name: str) -> Camera:
    if not isinstance(cam, Camera):
        raise InputError(name, f"expected a twoview.Camera, got {type(cam).__name__}")
    return cam


def _check_size(a: np.ndarray, cam: Camera, name: str, what: str) -> None:
    if a.shape[:2] != (cam.height, cam.width):
        raise InputError(name, f"{what} is {a.shape[1]}x{a.shape[0]} but its camera is {cam.width}x{cam.height}")


def _check_image(image, cam: Camera, name: str) -> np.ndarray | None:
    if image is None:
        return None
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise InputError(name, f"expected a uint8 image, got dtype {a.dtype}")
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] != 3:
        raise InputError(name, f"expected an (H, W, 3) or (H, W) image, got shape {a.shape}")
    _check_size(a, cam, name, "image")
    return a


def _check_depth(depth, cam: Camera, name: str) -> np.ndarray | None:
    if depth is None:
        return None
    d = np.asarray(depth)
    if d.ndim != 2 or not (np.issubdtype(d.dtype, np.floating) or np.issubdtype(d.dtype, np.integer)):
        raise InputError(name, f"expected an (H, W) depth map in metres, got shape {d.shape} dtype {d.dtype}")
    _check_size(d, cam, name, "depth")
    d = d.astype(np.float64)
    d[~(np.isfinite(d) & (d > 0))] = np.nan
    return d


def _check_mixtures(mixtures):
    if mixtures is None:
        return None, None
    if not isinstance(mixtures, (tuple, list)) or len(mixtures) != 2:
        raise InputError("mixtures", "expected (mix0, mix1), each a GaussianMixture or None")
    for v, mix in enumerate(mixtures):
        if mix is not None and not all(hasattr(mix, a) for a in ("means", "covs", "colors")):
            raise InputError("mixtures", f"mixture {v} is a {type(mix).__name__}, not a GaussianMixture")
    return tuple(mixtures)


def _as_pose(pose, name: str) -> Pose | None:
    if pose is None or isinstance(pose, Pose):
        return pose
    try:
        return Pose.from_matrix(np.asarray(pose, dtype=np.float64))
    except (TypeError, ValueError) as e:
        raise InputError(name, f"expected a Pose or a 4x4 cam1_from_cam0 matrix: {e}") from None


def _to_pinhole(cam: Camera, image, depth):
    """Undistort the image and depth to the camera's pinhole model (the frame the
    estimator solves in)."""
    if cam.dist is None:
        return cam, image, depth
    return (cam.pinhole, cam.undistort_image(image) if image is not None else None,
            cam.undistort_depth(depth) if depth is not None else None)


# --- geometry ----------------------------------------------------------------------------
def _grid_sample(valid: np.ndarray, budget: int, rng) -> np.ndarray:
    """Flat indices of at most ``budget`` valid pixels: a regular grid as dense as the
    budget allows, then a random cap where the valid pixels are uneven."""
    n = int(valid.sum())
    if n <= budget:
        return np.flatnonzero(valid)
    step = max(1, int(np.sqrt(n / max(budget, 1))))
    grid = np.zeros_like(valid)
    grid[::step, ::step] = True
    idx = np.flatnonzero(valid & grid)
    if len(idx) > budget:
        idx = np.sort(rng.choice(idx, budget, replace=False))
    return idx


def _cloud(image, depth, cam: Camera, budget: int, rng, color):
    """Back-projected pixels with depth: (N, 3) camera-frame points, (N, 3) uint8
    colours, the number of pixels with depth."""
    valid = np.isfinite(depth)
    idx = _grid_sample(valid, budget, rng)
    v, u = np.divmod(idx, depth.shape[1])
    pts = cam.unproject(np.stack([u, v], 1).astype(np.float64), depth.reshape(-1)[idx])
    cols = image.reshape(-1, 3)[idx] if image is not None else np.tile(np.array(color, np.uint8), (len(idx), 1))
    return pts, cols, int(valid.sum())


def _camera_layer(name, label, color, cam: Camera, image, frame0_from_cam: Pose, size: float) -> Layer:
    """Frustum (apex at the centre, image plane at depth ``size``), an "up" triangle over
    the top edge, the camera's x/y/z axes, and the image on its plane."""
    w, h = cam.width, cam.height
    corners_px = np.array([[-0.5, -0.5], [w - 0.5, -0.5], [w - 0.5, h - 0.5], [-0.5, h - 0.5]])
    corners = cam.unproject(corners_px, np.full(4, size))
    top_mid = corners[:2].mean(0)
    apex = top_mid + np.array([0.0, -0.25 * (corners[3, 1] - corners[0, 1]), 0.0])  # -y is up in the image
    o = np.zeros(3)
    segs = [(o, c) for c in corners] + [(corners[i], corners[(i + 1) % 4]) for i in range(4)]
    segs += [(corners[0], apex), (apex, corners[1])]
    axes = [(o, 0.5 * size * e) for e in np.eye(3)]
    lines = frame0_from_cam.apply(np.array(segs + axes, dtype=np.float64))
    cols = np.vstack([np.tile(np.array(color, np.uint8), (len(segs), 1)), _AXIS_COLORS])
    return Layer(name, label, color, 1, lines=lines, line_colors=cols, image=_texture(image),
                 image_corners=frame0_from_cam.apply(corners) if image is not None else None)


def _texture(image):
    if image is None:
        return None
    h, w = image.shape[:2]
    s = TEXTURE_MAX_SIDE / max(h, w)
    if s >= 1:
        return image
    import cv2

    return cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


def _mixture_layer(mix: GaussianMixture, frame0_from_cam: Pose, budget: int, rng, v: int) -> Layer:
    """Gaussians as discs (radius: RMS of the two largest standard deviations) and their
    three principal axes at one standard deviation, in the Gaussian's colour."""
    n = len(mix.means)
    idx = np.arange(n) if n <= budget else np.sort(rng.choice(n, budget, replace=False))
    means = frame0_from_cam.apply(np.asarray(mix.means, np.float64)[idx])
    evals, evecs = np.linalg.eigh(np.asarray(mix.covs, np.float64)[idx])  # ascending
    sig = np.sqrt(np.clip(evals, 0, None))
    axes = frame0_from_cam.R @ (evecs * sig[:, None, :])  # columns: principal axes, frame 0
    lines = np.concatenate([np.stack([means - axes[:, :, k], means + axes[:, :, k]], 1) for k in range(3)])
    cols = np.clip(np.asarray(mix.colors, np.float64)[idx] * 255, 0, 255).round().astype(np.uint8)
    radii = np.sqrt(0.5 * (sig[:, 1] ** 2 + sig[:, 2] ** 2))
    return Layer(f"mixture{v}", f"Gaussian mixture {v}", COLORS[str(v)], len(idx), points=means,
                 point_colors=cols, point_radii=radii, lines=lines, line_colors=np.tile(cols, (3, 1)))


def _depth_at(depth, uv: np.ndarray) -> np.ndarray:
    """(N,) depth at the nearest pixel of each keypoint, NaN outside or invalid."""
    z = np.full(len(uv), np.nan)
    if depth is None:
        return z
    h, w = depth.shape
    px = np.round(uv).astype(np.int64)
    inside = (px[:, 0] >= 0) & (px[:, 0] < w) & (px[:, 1] >= 0) & (px[:, 1] < h)
    z[inside] = depth[px[inside, 1], px[inside, 0]]
    return z


def match_endpoints(kpts0, kpts1, cam0: Camera, cam1: Camera, cam1_from_cam0: Pose, z0=None, z1=None,
                    fallback_depth: float = 1.0):
    """Where each match's two rays end, in frame 0.

    Ray ``k`` leaves camera ``k``'s centre through its keypoint. It ends at the depth
    ``z_k`` (z-depth in camera ``k``) where that is known; otherwise at the point of the
    ray closest to the other ray's end (or, with neither depth, at the midpoint
    triangulation); at ``fallback_depth`` where that point is behind the camera or the
    rays are parallel.

    Args:
        kpts0, kpts1: (N, 2) pixels of the pinhole images.
        cam0, cam1: the pinhole cameras.
        cam1_from_cam0: the pose that places camera 1.
        z0, z1: (N,) depths in metres with NaN unknown, or None (all unknown).

    Returns:
        (end0 (N, 3), end1 (N, 3)) in frame 0; camera 1's centre is ``cam1_from_cam0.center``.
    """
    n = len(kpts0)
    b0 = np.column_stack([cam0.bearings(kpts0), np.ones(n)])
    b1 = np.column_stack([cam1.bearings(kpts1), np.ones(n)]) @ cam1_from_cam0.R  # rows: R^T b, frame 0
    c1 = cam1_from_cam0.center
    z0 = np.full(n, np.nan) if z0 is None else np.asarray(z0, np.float64)
    z1 = np.full(n, np.nan) if z1 is None else np.asarray(z1, np.float64)
    l0, l1 = z0.copy(), z1.copy()
    with np.errstate(invalid="ignore", divide="ignore"):
        only0, only1 = np.isfinite(z0) & ~np.isfinite(z1), ~np.isfinite(z0) & np.isfinite(z1)
        l1[only0] = np.einsum("ij,ij->i", z0[only0, None] * b0[only0] - c1, b1[only0]) / np.einsum("ij,ij->i", b1[only0], b1[only0])
        l0[only1] = np.einsum("ij,ij->i", c1 + z1[only1, None] * b1[only1], b0[only1]) / np.einsum("ij,ij->i", b0[only1], b0[only1])
        neither = ~np.isfinite(z0) & ~np.isfinite(z1)
        # midpoint: minimise |l0 b0 - (c1 + l1 b1)|^2 over (l0, l1)
        a, b, c = (np.einsum("ij,ij->i", x, y) for x, y in ((b0, b0), (b0, b1), (b1, b1)))
        d, e = b0 @ c1, b1 @ c1
        det = a * c - b * b
        ok = neither & (np.abs(det) > 1e-12 * a * c)
        l0[ok] = (c * d - b * e)[ok] / det[ok]
        l1[ok] = (b * d - a * e)[ok] / det[ok]
    l0[~(np.isfinite(l0) & (l0 > 0))] = fallback_depth
    l1[~(np.isfinite(l1) & (l1 > 0))] = fallback_depth
    return l0[:, None] * b0, c1 + l1[:, None] * b1


def _match_layer(result: PoseResult, cam0, cam1, d0, d1, pose: Pose, max_matches: int, ray_length: float):
    """Rays from both camera centres to each match's ends, and the segment joining the
    ends (its length is the match's 3D disagreement)."""
    m = result.matches
    if m is None or len(m) == 0 or max_matches == 0:
        return None
    use = np.asarray(result.inliers, bool) if result.inliers is not None else np.ones(len(m), bool)
    idx = np.flatnonzero(use)
    if len(idx) == 0:
        return None
    if len(idx) > max_matches:
        idx = idx[np.linspace(0, len(idx) - 1, max_matches).round().astype(int)]
    k0, k1 = m.kpts0[idx], m.kpts1[idx]
    # Depth places the ends only when the pose is metric (a unit baseline has no scale).
    z0 = _depth_at(d0, k0) if result.metric else None
    z1 = _depth_at(d1, k1) if result.metric else None
    end0, end1 = match_endpoints(k0, k1, cam0, cam1, pose, z0, z1, ray_length)
    n = len(idx)
    c0, c1 = np.zeros((n, 3)), np.broadcast_to(pose.center, (n, 3))
    cols = _hues(n)
    lines = np.concatenate([np.stack([c0, end0], 1), np.stack([c1, end1], 1), np.stack([end0, end1], 1)])
    dim = (cols * 0.55).astype(np.uint8)  # rays fainter than the ends' segment
    label = "inlier matches" if result.inliers is not None else "matches"
    return Layer("matches", label, COLORS["matches"], n, points=np.concatenate([end0, end1]),
                 point_colors=np.concatenate([cols, cols]), lines=lines, line_colors=np.concatenate([dim, dim, cols]))


def _hues(n: int) -> np.ndarray:
    """(n, 3) uint8 saturated colours, neighbours far apart in hue (golden-ratio steps)."""
    h = (np.arange(n) * 0.618033988749895) % 1.0
    k = (np.array([5.0, 3.0, 1.0])[None, :] + h[:, None] * 6.0) % 6.0
    rgb = 1.0 - np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0) * 0.85  # HSV with s=0.85, v=1
    return (rgb * 255).round().astype(np.uint8)


def _extent(layers: list[Layer], size: float) -> tuple[np.ndarray, float]:
    """Orbit centre (median of the drawn points, else of the line ends) and the radius
    that holds 90 % of them and every camera."""
    pts = [la.points for la in layers if la.points is not None and len(la.points)]
    if not pts:
        pts = [la.lines.reshape(-1, 3) for la in layers if la.lines is not None]
    p = np.concatenate(pts)
    center = np.median(p, axis=0)
    r = float(np.percentile(np.linalg.norm(p - center, axis=1), 90))
    cams = np.array([la.lines[0, 0] for la in layers if la.name.startswith(("camera", "gt_camera"))])
    r = max(r, float(np.linalg.norm(cams - center, axis=1).max()) if len(cams) else 0.0, 3 * size)
    return center, r


# --- panel -------------------------------------------------------------------------------
def _vec(v) -> str:
    return "[" + ", ".join(f"{x:+.4f}" for x in v) + "]"


def _info_rows(result: PoseResult, gt: Pose | None, clouds: list[str], matches: Layer | None) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    if not result.success:
        rows.append(("pose", f"no pose ({result.solver or 'estimate'}): {result.reason}"))
    else:
        T = result.cam1_from_cam0
        rv = T.rotvec()
        ang = float(np.degrees(np.linalg.norm(rv)))
        axis = rv / np.linalg.norm(rv) if ang > 0 else np.array([0.0, 0.0, 1.0])
        rows.append(("pose", f"cam1_from_cam0 by {result.solver or 'estimate'}, x1 = R x0 + t"))
        rows.append(("rotation", f"{ang:.3f} deg about {_vec(axis)}"))
        if result.metric:
            rows.append(("translation", f"t = {_vec(T.t)} m, baseline {np.linalg.norm(T.t):.4f} m"))
        else:
            rows.append(("translation", f"direction {_vec(T.t / max(np.linalg.norm(T.t), 1e-300))}, no metric "
                                        "scale: camera 1 is drawn at a unit baseline"))
        if result.num_matches or result.confidence:
            rows.append(("confidence", f"{result.confidence:.2f}; {result.num_inliers} inliers of {result.num_matches} matches"))
        sg = result.sigmas
        if sg is not None:
            t_sigma = (f"translation {sg['translation_sigma'] * 1000:.1f} mm" if result.metric
                       else f"translation direction {sg['translation_direction_sigma_deg']:.3f} deg")
            rows.append(("uncertainty", f"rotation {sg['rotation_sigma_deg']:.3f} deg, {t_sigma} "
                                        "(keypoint noise only: a lower bound)"))
    if gt is not None:
        if result.success:
            from twoview.metrics import pose_errors

            e = pose_errors(result.cam1_from_cam0, gt, result.metric)
            text = f"rotation {e['rot_deg']:.3f} deg, translation angle {e['trans_deg']:.3f} deg"
            if result.metric:
                text += f", translation {e['trans_m'] * 100:.2f} cm"
            rows.append(("vs ground truth", text))
        else:
            rows.append(("ground truth", f"camera 1 drawn in green, baseline {np.linalg.norm(gt.t):.4f}"))
    if clouds:
        rows.append(("points", "; ".join(clouds)))
    if matches is not None:
        rows.append(("matches drawn", f"{matches.count} {matches.label}: rays from each camera to the match's ends"))
    return rows

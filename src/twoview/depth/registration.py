"""Depth-to-colour registration of one RGB-D view, estimated from the view itself.

A depth map is often not where its colour image is: raw Kinect or RealSense streams (and
7-Scenes) give depth seen by a second camera a few centimetres beside the colour camera,
and even factory-registered streams (TUM) take depth and colour at slightly different
times, so a moving camera shifts one against the other by several pixels. Every depth
consumer then pairs a colour pixel with the depth of a neighbouring surface: keypoints on
object boundaries get background depth, and a Gaussian mixture's colours disagree with
its geometry, so an appearance term pulls the pose off the depth (issue 16).

The evidence is in the view: an occluding contour of the depth map is almost always an
edge of the colour image. :func:`estimate_registration` finds the displacement that puts
the depth map's occluding contours (near side of a relative depth jump) onto the colour
image's gradients, with the model of a second camera beside the colour one

    u_colour = u_depth + shift + parallax / z,

``shift`` (px) a constant displacement (a small rotation between the cameras, or the
motion between the two exposures) and ``parallax`` (px m: focal length times the
baseline) the displacement that falls with depth. It is accepted only when the contours
say so clearly (enough of them, a clear gain over no correction, and two disjoint halves
of the contours agreeing); otherwise the view is left as it is. :func:`register_depth`
then resamples the depth map onto the colour image's pixels.

Cost: about 5-10 ms for a 640x480 view.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from twoview.config import StrictConfig
from twoview.errors import ConfigError


@dataclass
class RegistrationConfig(StrictConfig):
    """Options of :func:`estimate_registration`.

    Attributes:
        max_shift_frac: search range of the displacement, as a fraction of the image
            width (0.025: 16 px on a 640 px image; a Kinect's IR-to-colour parallax at
            0.6 m is about 20 px, most of which the factory or the user registration
            removes).
        min_jump: relative depth jump that makes an occluding contour (5 %).
        min_edges: fewer contour pixels than this: no evidence, the view is kept.
        max_edges: contour pixels used (evenly subsampled above this).
        min_gain: the best displacement must raise the mean colour-gradient score on the
            contours by at least this fraction of its value without correction.
        max_half_disagreement_px: the two halves of the contours must agree on the
            displacement at the median contour depth within this many pixels.
        fit_parallax: also fit the depth-dependent part (needs contours at different
            depths: the nearest and farthest tenth more than 1.5x apart).
    """

    max_shift_frac: float = 0.025
    min_jump: float = 0.05
    min_edges: int = 150
    max_edges: int = 3000
    min_gain: float = 0.08
    max_half_disagreement_px: float = 1.5
    fit_parallax: bool = True

    def validate(self):
        if not 0 < self.max_shift_frac < 0.2:
            raise ConfigError(f"registration.max_shift_frac must be in (0, 0.2), got {self.max_shift_frac}")
        if not 0 < self.min_jump < 1:
            raise ConfigError(f"registration.min_jump must be in (0, 1), got {self.min_jump}")
        if self.min_edges < 10 or self.max_edges < self.min_edges:
            raise ConfigError("registration: need 10 <= min_edges <= max_edges")
        if self.min_gain < 0 or self.max_half_disagreement_px <= 0:
            raise ConfigError("registration: min_gain must be >= 0 and max_half_disagreement_px > 0")


@dataclass
class DepthRegistration:
    """The estimated displacement of one view's depth map onto its colour image.

    Attributes:
        shift: (2,) pixels (x, y).
        parallax: (2,) pixel metres; the displacement of a depth pixel at depth z is
            ``shift + parallax / z``.
        applied: whether the evidence was clear enough to correct the view.
        num_edges: occluding-contour pixels the estimate used.
        score_identity, score: mean colour-gradient score (0..1) on the contours without
            and with the displacement.
        sharpness: how much the contours' score stands above the displacements around
            it, ``(score - median over the searched displacements) / score`` in [0, 1]:
            about 0.5 for a sharp, registered RGB-D frame, lower for blur or
            disagreement.
        reason: why it was (not) applied.
    """

    shift: np.ndarray = field(default_factory=lambda: np.zeros(2))
    parallax: np.ndarray = field(default_factory=lambda: np.zeros(2))
    applied: bool = False
    num_edges: int = 0
    score_identity: float = float("nan")
    score: float = float("nan")
    sharpness: float = float("nan")
    reason: str = ""

    def displacement_at(self, z: float) -> np.ndarray:
        """(2,) pixel displacement of a depth pixel at depth ``z`` metres."""
        return self.shift + self.parallax / z

    def to_dict(self) -> dict:
        return {"applied": self.applied, "shift_px": [float(v) for v in self.shift],
                "parallax_px_m": [float(v) for v in self.parallax], "num_edges": self.num_edges,
                "score_identity": self.score_identity, "score": self.score, "sharpness": self.sharpness,
                "reason": self.reason}


def colour_edge_map(image: np.ndarray) -> np.ndarray:
    """(H, W) float32 colour-gradient strength in [0, 1]: Sobel magnitude of the grey
    image, blurred by 1 px and divided by its 99th percentile (the score of a contour
    pixel is how strongly the colour image changes there)."""
    grey = image if image.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(image[..., :3]), cv2.COLOR_RGB2GRAY)
    g = grey.astype(np.float32)
    mag = cv2.magnitude(cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3))
    mag = cv2.GaussianBlur(mag, (0, 0), 1.0)
    return np.minimum(mag / max(float(np.percentile(mag, 99)), 1e-6), 1.0)


def occluding_contours(depth: np.ndarray, min_jump: float, margin: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixels on the near side of a relative depth jump above ``min_jump`` to a valid
    4-neighbour, at least ``margin`` pixels from the border: (x (n,), y (n,), z (n,))."""
    z = np.where(np.isfinite(depth) & (depth > 0), depth, 0.0)
    near = np.zeros(z.shape, bool)
    valid = z > 0
    for axis in (0, 1):
        a, b = (z[:-1], z[1:]) if axis == 0 else (z[:, :-1], z[:, 1:])
        both = (a > 0) & (b > 0)
        a_near = both & (b > a * (1 + min_jump))
        b_near = both & (a > b * (1 + min_jump))
        if axis == 0:
            near[:-1] |= a_near
            near[1:] |= b_near
        else:
            near[:, :-1] |= a_near
            near[:, 1:] |= b_near
    near &= valid
    if margin > 0:
        near[:margin] = near[-margin:] = False
        near[:, :margin] = near[:, -margin:] = False
    y, x = np.nonzero(near)
    return x, y, z[y, x]


def _scores(edge_map: np.ndarray, x, y, dx, dy) -> np.ndarray:
    """Mean edge strength at (x + dx, y + dy) for each integer displacement (k,) -> (k,)."""
    H, W = edge_map.shape
    out = np.empty(len(dx))
    for k in range(len(dx)):
        out[k] = edge_map[np.clip(y + dy[k], 0, H - 1), np.clip(x + dx[k], 0, W - 1)].mean()
    return out


def _bilinear_mean(edge_map: np.ndarray, u: np.ndarray, v: np.ndarray) -> float:
    return float(cv2.remap(edge_map, u.astype(np.float32)[None], v.astype(np.float32)[None], cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE).mean())


def _best_shift(edge_map, x, y, R: int) -> tuple[np.ndarray, float, float]:
    """Integer displacement with the highest mean score: a grid of step 2 over
    [-R, R]^2, then every displacement within 2 px of its best. Returns (shift, score,
    median score of the coarse grid)."""
    g = np.arange(-R, R + 1, 2)
    dx, dy = (a.ravel() for a in np.meshgrid(g, g))
    coarse = _scores(edge_map, x, y, dx, dy)
    k = int(np.argmax(coarse))
    f = np.arange(-2, 3)
    fx, fy = (a.ravel() for a in np.meshgrid(f + dx[k], f + dy[k]))
    fine = _scores(edge_map, x, y, fx, fy)
    j = int(np.argmax(fine))
    return np.array([fx[j], fy[j]], float), float(fine[j]), float(np.median(coarse))


def _refine(edge_map, x, y, z, shift, with_parallax: bool, R: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Continuous (shift, parallax) maximising the bilinear mean score, from ``shift``:
    Nelder-Mead on 2 or 4 parameters, the displacement kept within the search range."""
    from scipy.optimize import minimize

    xf, yf = x.astype(np.float64), y.astype(np.float64)
    inv_z = 1.0 / z
    zmed = float(np.median(z))

    def unpack(p):
        if with_parallax:
            # parametrised by the displacement at the median depth and the parallax, so the
            # two parameters are nearly independent
            par = p[2:4]
            return p[:2] - par / zmed, par
        return p[:2], np.zeros(2)

    def cost(p):
        s, par = unpack(p)
        du = s[0] + par[0] * inv_z
        dv = s[1] + par[1] * inv_z
        if np.max(np.abs(du)) > R + 2 or np.max(np.abs(dv)) > R + 2:
            return 1.0
        return -_bilinear_mean(edge_map, xf + du, yf + dv)

    p0 = np.concatenate([shift, np.zeros(2)]) if with_parallax else shift.astype(float)
    simplex = [p0] + [p0 + e for e in np.eye(len(p0)) * (1.0 if not with_parallax else np.array([1, 1, 2 * zmed, 2 * zmed]))]
    res = minimize(cost, p0, method="Nelder-Mead",
                   options={"initial_simplex": np.array(simplex), "xatol": 0.05, "fatol": 1e-5, "maxiter": 200})
    s, par = unpack(res.x)
    return s, par, -float(res.fun)


def estimate_registration(image: np.ndarray, depth: np.ndarray, config: RegistrationConfig | None = None,
                          edge_map: np.ndarray | None = None) -> DepthRegistration:
    """Estimate where the depth map lies on its colour image (see the module docstring).

    Args:
        image: (H, W, 3) uint8 RGB (or (H, W) grey), the colour image.
        depth: (H, W) float64 metres, NaN invalid, on the same pixel grid.
        config: options.
        edge_map: :func:`colour_edge_map` of ``image`` if already computed.

    Returns:
        :class:`DepthRegistration`; ``applied`` is False (zero displacement) unless the
        contours say clearly where the depth belongs.
    """
    cfg = config or RegistrationConfig()
    H, W = depth.shape
    R = max(2, int(round(cfg.max_shift_frac * W)))
    x, y, z = occluding_contours(depth, cfg.min_jump, R + 2)
    out = DepthRegistration(num_edges=int(len(x)))
    if len(x) < cfg.min_edges:
        out.reason = f"{len(x)} occluding-contour pixels (need {cfg.min_edges}): no evidence, kept as it is"
        return out
    if len(x) > cfg.max_edges:
        keep = np.linspace(0, len(x) - 1, cfg.max_edges).astype(int)
        x, y, z = x[keep], y[keep], z[keep]
    emap = colour_edge_map(image) if edge_map is None else edge_map
    out.score_identity = float(emap[y, x].mean())
    shift, best, med = _best_shift(emap, x, y, R)
    zs = np.sort(z)
    with_par = cfg.fit_parallax and zs[int(0.9 * (len(zs) - 1))] > 1.5 * zs[int(0.1 * (len(zs) - 1))]
    shift, parallax, score = _refine(emap, x, y, z, shift, with_par, R)
    out.shift, out.parallax, out.score = shift, parallax, score
    out.sharpness = float(np.clip((score - med) / max(score, 1e-9), 0.0, 1.0))
    gain = score - out.score_identity
    zmed = float(np.median(z))
    if np.hypot(*out.displacement_at(zmed)) < 0.5:
        out.reason = "registered: the contours lie on the colour edges"
        return out
    if gain < cfg.min_gain * max(out.score_identity, 1e-9):
        out.reason = f"the best displacement raises the contour score by only {gain:.3f} (from {out.score_identity:.3f})"
        return out
    # two disjoint halves of the contours must tell the same displacement
    halves = []
    for h in (0, 1):
        sel = slice(h, None, 2)
        s_h, _, _ = _best_shift(emap, x[sel], y[sel], R)
        s_h, p_h, _ = _refine(emap, x[sel], y[sel], z[sel], s_h, with_par, R)
        halves.append(s_h + p_h / zmed)
    disagreement = float(np.hypot(*(halves[0] - halves[1])))
    if disagreement > cfg.max_half_disagreement_px:
        out.reason = f"two halves of the contours disagree by {disagreement:.1f} px: no clear evidence"
        return out
    out.applied = True
    d = out.displacement_at(zmed)
    out.reason = f"depth displaced by ({d[0]:+.1f}, {d[1]:+.1f}) px at {zmed:.2f} m (contour score {out.score_identity:.3f} -> {score:.3f})"
    return out


def register_depth(depth: np.ndarray, registration: DepthRegistration) -> np.ndarray:
    """The depth map resampled onto the colour image's pixels: pixel u of the result takes
    the depth of the depth pixel that the registration displaces onto u (nearest
    neighbour, so no depth is invented across a discontinuity; the displacement at u is
    found by two fixed-point steps, exact for a constant shift). Unchanged (the same
    array) when the registration was not applied.

    Args:
        depth: (H, W) float64 metres, NaN invalid.

    Returns:
        (H, W) float64 metres, NaN invalid.
    """
    if not registration.applied:
        return depth
    H, W = depth.shape
    d32 = np.where(np.isfinite(depth), depth, np.nan).astype(np.float32)
    gx, gy = np.meshgrid(np.arange(W, dtype=np.float32), np.arange(H, dtype=np.float32))
    sx, sy = (float(v) for v in registration.shift)
    px, py = (float(v) for v in registration.parallax)
    mx, my = gx - sx, gy - sy
    if px or py:
        for _ in range(2):
            z = cv2.remap(d32, mx, my, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=np.nan)
            inv = np.where(np.isfinite(z) & (z > 0), 1.0 / np.where(z > 0, z, 1.0), 0.0).astype(np.float32)
            mx, my = gx - sx - px * inv, gy - sy - py * inv
    out = cv2.remap(d32, mx, my, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=np.nan)
    return out.astype(np.float64)


def register_colour(image: np.ndarray, depth: np.ndarray, registration: DepthRegistration) -> np.ndarray:
    """The colour image resampled onto the depth map's pixels: pixel u of the result takes
    the colour at ``u + shift + parallax / z(u)`` (bilinear; where the depth is missing,
    at the median depth). The depth map's geometry is kept as it is, and every depth
    pixel gets the colour of the surface it measured. Unchanged (the same array) when the
    registration was not applied.

    Args:
        image: (H, W, 3) uint8.
        depth: (H, W) float64 metres, NaN invalid, on the same grid.

    Returns:
        (H, W, 3) uint8.
    """
    if not registration.applied:
        return image
    H, W = depth.shape
    z = np.where(np.isfinite(depth) & (depth > 0), depth, np.nan)
    zmed = float(np.nanmedian(z)) if np.isfinite(z).any() else 1.0
    inv = (1.0 / np.where(np.isfinite(z), z, zmed)).astype(np.float32)
    gx, gy = np.meshgrid(np.arange(W, dtype=np.float32), np.arange(H, dtype=np.float32))
    mx = gx + np.float32(registration.shift[0]) + np.float32(registration.parallax[0]) * inv
    my = gy + np.float32(registration.shift[1]) + np.float32(registration.parallax[1]) * inv
    return cv2.remap(image, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

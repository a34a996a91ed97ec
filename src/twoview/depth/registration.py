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

    u_colour = u_depth + shift + (zoom - 1) (u_depth - c) + parallax / z,

``shift`` (px) a constant displacement (a small rotation between the cameras, or the
motion between the two exposures), ``zoom`` the ratio of the two cameras' focal lengths
about the principal point ``c`` (7-Scenes: colour 525 px against depth 585 px, one K given
for both), and ``parallax`` (px m: focal length times the baseline) the displacement that
falls with depth. It is accepted only when the contours say so clearly (enough of them, a
clear gain over no correction, and two disjoint halves of the contours agreeing);
otherwise the view is left as it is, unless the pair's other view was held back too and
the two fits agree on the same two-camera rig (:func:`corroborated_rig`: blurred and
compressed colour, a real Kinect's, weakens each view's evidence more than their agreement).

Which of the two to move follows from the kind of displacement. A zoom or a parallax is
two cameras, and the K given is the depth camera's (the colour image cannot match it):
the depth map's geometry is kept and the colour image is resampled onto it
(:func:`register_colour`, ``reference="depth"``). A constant shift is the motion between
the two exposures (or a small rotation of a factory-registered pair): the colour image
is kept and the depth map is resampled onto it (:func:`register_depth`,
``reference="colour"``). Either way image, depth and K agree afterwards.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field, replace

import numpy as np

from twoview.config import StrictConfig
from twoview.errors import ConfigError


@dataclass
class RegistrationConfig(StrictConfig):
    """Options of :func:`estimate_registration`.

    Attributes:
        max_shift_frac: search range of the constant displacement, as a fraction of the
            image width (0.025: 16 px on a 640 px image).
        max_zoom: search range of ``zoom - 1`` (0.15: focal lengths up to 15 % apart;
            7-Scenes' colour and depth cameras are 11 % apart).
        min_jump: relative depth jump that makes an occluding contour (5 %).
        min_edges: fewer contour pixels than this: no evidence, the view is kept.
        max_edges: contour pixels used (evenly subsampled above this).
        min_gain: the best displacement must raise the mean colour-gradient score on the
            contours by at least this fraction of its value without correction.
        max_half_disagreement_px: two halves of the contours (whole contours each) must
            agree on the displacement (median over the contours) within this many pixels.
        min_explained: after the displacement, at least this fraction of the contour
            pixels must lie on a colour edge (strength above 0.25): a displacement that
            lines up only some contours with some edges is chance, not registration.
        fit_zoom: fit the focal-length ratio.
        fit_parallax: fit the depth-dependent part (needs contours at different depths:
            the nearest and farthest tenth more than 1.5x apart).
        two_camera_px: a zoom or parallax moving the contours by more than this (median,
            relative to a constant shift) means two cameras: the depth is the reference.
        correct: "two_cameras" corrects only a view whose displacement shows two cameras
            (the colour is moved onto the depth; the geometry stays as measured); a
            constant shift (colour and depth taken at slightly different times) is
            recorded and left to the refinement's robust appearance weighting, because
            moving either image by it trades the error of one for the other's (measured
            on TUM fr3_cabinet and fr1_rpy: moving the depth cost geometry accuracy).
            "always" also moves the depth onto the colour for a constant shift.
    """

    max_shift_frac: float = 0.025
    max_zoom: float = 0.15
    min_jump: float = 0.05
    min_edges: int = 150
    max_edges: int = 1500
    min_gain: float = 0.08
    max_half_disagreement_px: float = 2.0
    min_explained: float = 0.45
    fit_zoom: bool = True
    fit_parallax: bool = True
    two_camera_px: float = 4.0
    correct: typing.Literal["two_cameras", "always"] = "two_cameras"

    def validate(self):
        if not 0 < self.max_shift_frac < 0.2:
            raise ConfigError(f"registration.max_shift_frac must be in (0, 0.2), got {self.max_shift_frac}")
        if not 0 < self.max_zoom < 0.5:
            raise ConfigError(f"registration.max_zoom must be in (0, 0.5), got {self.max_zoom}")
        if not 0 < self.min_jump < 1:
            raise ConfigError(f"registration.min_jump must be in (0, 1), got {self.min_jump}")
        if self.min_edges < 10 or self.max_edges < self.min_edges:
            raise ConfigError("registration: need 10 <= min_edges <= max_edges")
        if self.min_gain < 0 or self.max_half_disagreement_px <= 0 or self.two_camera_px <= 0:
            raise ConfigError("registration: min_gain must be >= 0, max_half_disagreement_px and two_camera_px > 0")


@dataclass
class DepthRegistration:
    """The estimated displacement of one view's depth map onto its colour image.

    Attributes:
        shift: (2,) pixels (x, y).
        zoom: colour focal length over depth focal length (about ``centre``).
        parallax: (2,) pixel metres; a depth pixel u at depth z lies in the colour image at
            ``u + shift + (zoom - 1) (u - centre) + parallax / z``.
        centre: (2,) the principal point the zoom is about.
        applied: whether the evidence was clear enough to correct the view.
        reference: "depth" (two cameras: the colour is moved onto the depth) or "colour"
            (a shift: the depth is moved onto the colour); see the module docstring.
        num_edges: occluding-contour pixels the estimate used.
        score_identity, score: mean colour-gradient score (0..1) on the contours without
            and with the displacement.
        sharpness: ``(score - median over the searched displacements) / score`` in
            [0, 1]: how clearly the contours pick one displacement (about 0.5 for a sharp,
            registered RGB-D frame; lower with blur or disagreement).
        measured: the depth map had the contours (``min_edges``) to check its colour
            against: whatever the verdict, the view's colour and depth were compared. Without
            them (smooth depth, e.g. rendered from a mesh) nothing is known either way.
        reason: why it was (not) applied.
        rig_px: how far the fit's zoom or parallax moves the contours beyond a constant
            shift (median, pixels): over ``two_camera_px`` the fit says two cameras. NaN
            when the contours gave no fit worth weighing (too few, or no gain).
        contours: (n, 3) a sample of the contour pixels (x, y, z) the fit used, to compare
            it with another view's (:func:`corroborated_rig`); not serialised.
    """

    shift: np.ndarray = field(default_factory=lambda: np.zeros(2))
    zoom: float = 1.0
    parallax: np.ndarray = field(default_factory=lambda: np.zeros(2))
    centre: np.ndarray = field(default_factory=lambda: np.zeros(2))
    applied: bool = False
    reference: str = "colour"
    num_edges: int = 0
    score_identity: float = float("nan")
    score: float = float("nan")
    sharpness: float = float("nan")
    measured: bool = False
    reason: str = ""
    rig_px: float = float("nan")
    contours: np.ndarray | None = field(default=None, repr=False)

    def displacement(self, u: np.ndarray, z: np.ndarray) -> np.ndarray:
        """(N, 2) displacement onto the colour image of depth pixels u (N, 2) at depths z (N,)."""
        u = np.asarray(u, float).reshape(-1, 2)
        return self.shift + (self.zoom - 1.0) * (u - self.centre) + self.parallax / np.asarray(z, float).reshape(-1, 1)

    def to_dict(self) -> dict:
        return {"applied": self.applied, "reference": self.reference, "shift_px": [float(v) for v in self.shift],
                "zoom": float(self.zoom), "parallax_px_m": [float(v) for v in self.parallax],
                "num_edges": self.num_edges, "score_identity": self.score_identity, "score": self.score,
                "sharpness": self.sharpness, "rig_px": self.rig_px, "measured": self.measured, "reason": self.reason}


def colour_edge_map(image: np.ndarray) -> np.ndarray:
    """(H, W) float32 colour-gradient strength in [0, 1]: Sobel magnitude of the grey
    image, blurred by 1 px and divided by its 99th percentile (the score of a contour
    pixel is how strongly the colour image changes there)."""
    import cv2

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


def contour_segments(x: np.ndarray, y: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(n,) label of the connected contour (8-neighbours) each pixel belongs to."""
    import cv2

    mask = np.zeros(shape, np.uint8)
    mask[y, x] = 1
    _, labels = cv2.connectedComponents(mask, connectivity=8)
    return labels[y, x]


def _sample(emap: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Bilinear samples of a (H, W) float32 map at float coordinates (n,) (border replicated)."""
    import cv2

    return cv2.remap(emap, u.astype(np.float32)[None], v.astype(np.float32)[None], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)[0]


def _derivatives(emap: np.ndarray):
    """(dE/dx, dE/dy, d2E/dx2, d2E/dxdy, d2E/dy2) of an edge map, float32 maps (central
    differences of a map blurred by its own construction)."""
    import cv2

    k1 = np.array([[-0.5, 0.0, 0.5]], np.float32)
    k2 = np.array([[1.0, -2.0, 1.0]], np.float32)
    f = lambda im, k: cv2.filter2D(im, cv2.CV_32F, k, borderType=cv2.BORDER_REPLICATE)  # noqa: E731
    gx, gy = f(emap, k1), f(emap, k1.T)
    return gx, gy, f(emap, k2), f(gx, k1.T), f(emap, k2.T)


def _displacement(p: np.ndarray, du: np.ndarray, dv: np.ndarray, inv_z: np.ndarray):
    """Displacement (n,), (n,) of contour pixels at offsets (du, dv) from the centre and
    inverse depth ``inv_z`` under parameters ``p = (shift_x, shift_y, zoom - 1,
    parallax_x, parallax_y)``."""
    return p[0] + p[2] * du + p[3] * inv_z, p[1] + p[2] * dv + p[4] * inv_z


def _coarse_search(emap, x, y, du, dv, R: int, zooms: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Best (shift, zoom) on a grid: zooms x shifts in [-R, R]^2 (step 2), on a blurred map
    (a wide basin). Returns (parameters (5,), score, median score over the grid)."""
    import cv2

    g = np.arange(-R, R + 1, 2, dtype=np.float32)
    sx, sy = (a.ravel() for a in np.meshgrid(g, g))
    best, best_s, all_s = None, -1.0, []
    for k in zooms:
        # one remap per zoom: every shift of every contour point
        U = np.ascontiguousarray((x + k * du).astype(np.float32)[None, :] + sx[:, None])
        V = np.ascontiguousarray((y + k * dv).astype(np.float32)[None, :] + sy[:, None])
        sc = cv2.remap(emap, U, V, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).mean(axis=1)
        all_s.append(sc)
        j = int(np.argmax(sc))
        if sc[j] > best_s:
            best_s, best = float(sc[j]), np.array([sx[j], sy[j], k, 0.0, 0.0])
    return best, best_s, float(np.median(np.concatenate(all_s)))


def _refine(emap, grads, x, y, du, dv, inv_z, p0: np.ndarray, free: np.ndarray,
            iterations: int = 30) -> tuple[np.ndarray, float]:
    """Maximise the mean edge score over the parameters marked ``free`` from ``p0``: a
    damped Newton ascent with the map's exact first and second derivatives (the
    displacement is linear in the parameters). ``grads`` = (dE/dx, dE/dy, d2E/dx2,
    d2E/dxdy, d2E/dy2) maps. Returns (parameters, score)."""
    gx, gy, hxx, hxy, hyy = grads
    xf, yf = x.astype(np.float64), y.astype(np.float64)
    Jx = np.stack([np.ones_like(du), np.zeros_like(du), du, inv_z, np.zeros_like(du)], 1)  # d(disp_x)/dp
    Jy = np.stack([np.zeros_like(dv), np.ones_like(dv), dv, np.zeros_like(dv), inv_z], 1)  # d(disp_y)/dp
    idx = np.flatnonzero(free)
    Jx, Jy = Jx[:, idx], Jy[:, idx]

    def at(p):
        ddx, ddy = _displacement(p, du, dv, inv_z)
        return xf + ddx, yf + ddy

    p = p0.astype(np.float64).copy()
    u, v = at(p)
    score = float(_sample(emap, u, v).mean())
    lam = 1e-2
    for _ in range(iterations):
        ex, ey = _sample(gx, u, v), _sample(gy, u, v)
        exx, exy, eyy = _sample(hxx, u, v), _sample(hxy, u, v), _sample(hyy, u, v)
        g = (Jx * ex[:, None] + Jy * ey[:, None]).mean(axis=0)
        Hm = (Jx.T @ (Jx * exx[:, None]) + Jx.T @ (Jy * exy[:, None]) + Jy.T @ (Jx * exy[:, None])
              + Jy.T @ (Jy * eyy[:, None])) / len(u)
        A = -Hm  # ascent: -H is positive definite near a maximum
        d = np.abs(np.diag(A)) + 1e-9
        improved = False
        for _ in range(8):
            try:
                step = np.linalg.solve(A + lam * np.diag(d) + 1e-9 * np.eye(len(idx)), g)
            except np.linalg.LinAlgError:
                lam *= 10
                continue
            q = p.copy()
            q[idx] += step
            uq, vq = at(q)
            sq = float(_sample(emap, uq, vq).mean())
            if sq > score:
                p, u, v, score = q, uq, vq, sq
                lam = max(lam / 3, 1e-4)
                improved = True
                break
            lam *= 10
        if not improved or np.max(np.abs(np.concatenate([Jx @ step, Jy @ step]))) < 0.01:
            break
    return p, score


def _zoom_step(radius: float) -> float:
    """The coarse search's zoom step: about 2 px (2.5) at the contours' typical ``radius``."""
    return 2.5 / max(radius, 50.0)


def _fit(emap, emap_wide, grads, x, y, z, centre, cfg: "RegistrationConfig", R: int, start=None):
    """(parameters, score, median grid score) of one set of contour pixels: a coarse grid
    then a local refinement, or only the refinement from ``start``."""
    du, dv = x - centre[0], y - centre[1]
    inv_z = 1.0 / z
    if start is None:
        step = _zoom_step(float(np.median(np.hypot(du, dv))))
        zooms = np.arange(-cfg.max_zoom, cfg.max_zoom + 1e-9, step) if cfg.fit_zoom else np.zeros(1)
        # a few hundred contour pixels find the basin; all of them refine it
        sub = np.linspace(0, len(x) - 1, min(len(x), 400)).astype(int)
        p, _, med = _coarse_search(emap_wide, x[sub], y[sub], du[sub], dv[sub], R, zooms)
    else:
        p, med = start.copy(), float("nan")
    zs = np.sort(z)
    spread = zs[int(0.9 * (len(zs) - 1))] > 1.5 * zs[int(0.1 * (len(zs) - 1))]
    free = np.array([True, True, cfg.fit_zoom, cfg.fit_parallax and spread, cfg.fit_parallax and spread])
    p, score = _refine(emap, grads, x, y, du, dv, inv_z, p, free)
    return p, score, med


def register_with_rig(image: np.ndarray, depth: np.ndarray, rig: DepthRegistration,
                      config: "RegistrationConfig | None" = None) -> DepthRegistration:
    """A view's registration given its camera pair's rig: the zoom and parallax of the two
    cameras (fixed extrinsics and intrinsics, as another view of the same pair showed
    them), only the constant shift (exposure timing) fitted, from the rig's; applied
    whatever the contours say, since the rig is known. Two views of one pair must be
    registered alike: one corrected and the other not would disagree by the rig itself.
    """

    cfg = config or RegistrationConfig()
    out = DepthRegistration(shift=rig.shift.copy(), zoom=rig.zoom, parallax=rig.parallax.copy(),
                            centre=rig.centre.copy(), applied=True, reference="depth")
    H, W = depth.shape
    x, y, z = occluding_contours(depth, cfg.min_jump, 2)
    out.num_edges = int(len(x))
    if len(x) >= cfg.min_edges:
        out.measured = True
        if len(x) > cfg.max_edges:
            keep = np.linspace(0, len(x) - 1, cfg.max_edges).astype(int)
            x, y, z = x[keep], y[keep], z[keep]
        emap = colour_edge_map(image)
        c = rig.centre
        du, dv, inv_z = x - c[0], y - c[1], 1.0 / z
        p0 = np.array([rig.shift[0], rig.shift[1], rig.zoom - 1.0, rig.parallax[0], rig.parallax[1]])
        out.score_identity = float(emap[y, x].mean())
        p, out.score = _refine(emap, _derivatives(emap), x, y, du, dv, inv_z, p0,
                               np.array([True, True, False, False, False]))
        if np.hypot(*(p[:2] - rig.shift)) <= cfg.max_shift_frac * W:
            out.shift = p[:2].copy()
    out.reason = (f"the pair's other view shows two cameras (zoom {out.zoom:.3f}, parallax {out.parallax[0]:+.1f}/"
                  f"{out.parallax[1]:+.1f} px m): the same rig, shift ({out.shift[0]:+.1f}, {out.shift[1]:+.1f}) px")
    return out


def corroborated_rig(found: "list[DepthRegistration | None]", config: "RegistrationConfig | None" = None
                     ) -> DepthRegistration | None:
    """The two-camera rig two views of one camera pair agree on, where neither view's
    contours were clear enough alone (None otherwise).

    A view's fit is held back when too few of its contours land on colour edges, or when
    two halves of its contours disagree by more than ``max_half_disagreement_px``: blurred
    or compressed colour (a real Kinect's) weakens both tests. The pair's two views are two
    independent measurements of one rig (fixed extrinsics and intrinsics; only the exposure
    shift is per view), so when both fits say two cameras (``rig_px`` over
    ``two_camera_px``) and their zoom and parallax move both views' contours alike, within
    the same ``max_half_disagreement_px`` the halves test asks of one view, the rig is
    accepted: the better-scoring view's, applied to both with :func:`register_with_rig`.

    Args:
        found: the two views' :func:`estimate_registration` results (None: no sensor depth).

    Returns:
        The rig (a :class:`DepthRegistration` with ``reference="depth"``), or None.
    """
    cfg = config or RegistrationConfig()
    regs = [r for r in found if r is not None]
    if len(regs) != 2 or any(r.applied for r in regs):
        return None
    if not all(np.isfinite(r.rig_px) and r.rig_px > cfg.two_camera_px and r.contours is not None for r in regs):
        return None
    pts = np.concatenate([r.contours for r in regs])

    def rig_part(r: DepthRegistration) -> np.ndarray:  # zoom and parallax, not the per-view shift
        return (r.zoom - 1.0) * (pts[:, :2] - r.centre) + r.parallax / pts[:, 2:3]

    a, b = (rig_part(r) for r in regs)
    # the shifts may differ (exposure timing): compare the displacements up to a constant
    diff = (a - b) - np.median(a - b, axis=0)
    disagreement = float(np.median(np.linalg.norm(diff, axis=1)))
    if disagreement > cfg.max_half_disagreement_px:
        return None
    best = max(regs, key=lambda r: r.score)
    return replace(best, applied=True, reference="depth",
                   reason=f"the pair's two views agree on two cameras (rigs {disagreement:.1f} px apart; "
                          f"zoom {best.zoom:.3f}, parallax {best.parallax[0]:+.1f}/{best.parallax[1]:+.1f} px m)")


def estimate_registration(image: np.ndarray, depth: np.ndarray, config: "RegistrationConfig | None" = None,
                          centre: tuple[float, float] | None = None) -> DepthRegistration:
    """Estimate where the depth map lies on its colour image (see the module docstring).

    Args:
        image: (H, W, 3) uint8 RGB (or (H, W) grey), the colour image.
        depth: (H, W) float64 metres, NaN invalid, on the same pixel grid.
        config: options.
        centre: (cx, cy) the principal point the zoom is about (default: the image centre).

    Returns:
        :class:`DepthRegistration`; ``applied`` is False (zero displacement) unless the
        contours say clearly where the depth belongs.
    """
    import cv2

    cfg = config or RegistrationConfig()
    H, W = depth.shape
    c = np.array(centre if centre is not None else ((W - 1) / 2.0, (H - 1) / 2.0), float)
    R = max(2, int(round(cfg.max_shift_frac * W)))
    x, y, z = occluding_contours(depth, cfg.min_jump, 2)
    out = DepthRegistration(num_edges=int(len(x)))
    if len(x) < cfg.min_edges:
        out.reason = f"{len(x)} occluding-contour pixels (need {cfg.min_edges}): no evidence, kept as it is"
        return out
    out.measured = True
    seg = contour_segments(x, y, depth.shape)
    if len(x) > cfg.max_edges:
        keep = np.linspace(0, len(x) - 1, cfg.max_edges).astype(int)
        x, y, z, seg = x[keep], y[keep], z[keep], seg[keep]
    emap = colour_edge_map(image)
    emap_wide = cv2.GaussianBlur(emap, (0, 0), 2.0)
    grads = _derivatives(emap)
    out.score_identity = float(emap[y, x].mean())
    p, score, med = _fit(emap, emap_wide, grads, x, y, z, c, cfg, R)
    out.shift, out.zoom, out.parallax, out.score = p[:2].copy(), 1.0 + float(p[2]), p[3:5].copy(), score
    out.centre = c
    out.sharpness = float(np.clip((score - med) / max(score, 1e-9), 0.0, 1.0))
    # displacement over the contours: what the correction would move
    ddx, ddy = _displacement(p, x - c[0], y - c[1], 1.0 / z)
    moved = float(np.median(np.hypot(ddx, ddy)))
    gain = score - out.score_identity
    explained = float(np.mean(_sample(emap, x + ddx, y + ddy) > 0.25))
    if moved < 0.5:
        out.reason = "registered: the contours lie on the colour edges"
        return out
    if gain < cfg.min_gain * max(out.score_identity, 1e-9):
        out.reason = f"the best displacement raises the contour score by only {gain:.3f} (from {out.score_identity:.3f})"
        return out
    radius = float(np.median(np.hypot(x - c[0], y - c[1])))
    if cfg.fit_zoom and abs(out.zoom - 1.0) > cfg.max_zoom - _zoom_step(radius):
        # the best zoom is the searched range's last one (or past it): the contours found no
        # optimum inside the range, which a real second camera gives (a Kinect's colour and
        # IR cameras, 0.90; 7-Scenes' 525 / 585 px). On registered HoloLens 2 views such
        # fits (zoom 0.84-0.86) moved the colour 20 px and turned a right pose 21 deg wrong
        out.reason = (f"the best zoom {out.zoom:.3f} lies at the edge of the searched range "
                      f"(registration.max_zoom {cfg.max_zoom:g}): no optimum inside it, no clear evidence")
        return out
    # from here on the fit is worth weighing, alone or beside the pair's other view's
    zoom_px = abs(out.zoom - 1.0) * radius
    par_px = float(np.hypot(*out.parallax)) * float(np.std(1.0 / z))
    out.rig_px = max(zoom_px, par_px)
    sample = np.linspace(0, len(x) - 1, min(len(x), 300)).astype(int)
    out.contours = np.stack([x[sample], y[sample], z[sample]], 1).astype(np.float64)
    if explained < cfg.min_explained:
        out.reason = (f"the best displacement puts only {100 * explained:.0f} % of the contours on colour edges "
                      f"(need {100 * cfg.min_explained:.0f} %): no clear evidence")
        return out
    # two halves of the contours, whole contours each (neighbouring pixels of one contour
    # would agree whatever the truth), must tell the same displacement
    ids = np.unique(seg)
    if len(ids) < 4:
        out.reason = f"{len(ids)} separate contours: too few to check the displacement against each other"
        return out
    half = np.isin(seg, np.random.default_rng(0).permutation(ids)[: len(ids) // 2])
    halves = []
    for sel in (half, ~half):
        ph, _, _ = _fit(emap, emap_wide, grads, x[sel], y[sel], z[sel], c, cfg, R, start=p)
        halves.append(np.stack(_displacement(ph, x - c[0], y - c[1], 1.0 / z), 1))
    disagreement = float(np.median(np.linalg.norm(halves[0] - halves[1], axis=1)))
    if disagreement > cfg.max_half_disagreement_px:
        out.reason = f"two halves of the contours disagree by {disagreement:.1f} px: no clear evidence"
        return out
    # a zoom or a displacement that varies with depth is two cameras (the depth map is
    # then the geometry to keep); a constant shift is a time offset or a small rotation
    # (the colour image is the view to keep)
    out.reference = "depth" if out.rig_px > cfg.two_camera_px else "colour"
    out.applied = out.reference == "depth" or cfg.correct == "always"
    out.reason = (f"depth displaced by {moved:.1f} px (median over the contours; zoom {out.zoom:.3f}, parallax "
                  f"{out.parallax[0]:+.1f}/{out.parallax[1]:+.1f} px m; contour score {out.score_identity:.3f} -> {score:.3f}); "
                  + ("two cameras: the colour is moved onto the depth" if out.reference == "depth" else
                     "a shift: the depth is moved onto the colour" if out.applied else
                     "a shift (colour and depth taken apart in time): left as it is"))
    return out


def register_depth(depth: np.ndarray, registration: DepthRegistration) -> np.ndarray:
    """The depth map resampled onto the colour image's pixels (``reference="colour"``):
    pixel u of the result takes the depth of the depth pixel displaced onto u (nearest
    neighbour, so no depth is invented across a discontinuity; the source pixel is found
    by two fixed-point steps, exact without parallax). Unchanged (the same array) when
    the registration was not applied.

    Args:
        depth: (H, W) float64 metres, NaN invalid.

    Returns:
        (H, W) float64 metres, NaN invalid.
    """
    import cv2

    if not registration.applied:
        return depth
    H, W = depth.shape
    d32 = np.where(np.isfinite(depth), depth, np.nan).astype(np.float32)
    gx, gy = np.meshgrid(np.arange(W, dtype=np.float32), np.arange(H, dtype=np.float32))
    (sx, sy), k = (float(v) for v in registration.shift), float(registration.zoom)
    (px, py), (cx, cy) = (float(v) for v in registration.parallax), (float(v) for v in registration.centre)

    def source(inv):  # u_d = c + (u_c - c - shift - parallax / z) / zoom
        return (cx + (gx - cx - sx - px * inv) / k).astype(np.float32), (cy + (gy - cy - sy - py * inv) / k).astype(np.float32)

    mx, my = source(0.0)
    if px or py:
        for _ in range(2):
            z = cv2.remap(d32, mx, my, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=np.nan)
            inv = np.where(np.isfinite(z) & (z > 0), 1.0 / np.where(z > 0, z, 1.0), 0.0).astype(np.float32)
            mx, my = source(inv)
    out = cv2.remap(d32, mx, my, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=np.nan)
    return out.astype(np.float64)


def register_colour(image: np.ndarray, depth: np.ndarray, registration: DepthRegistration) -> np.ndarray:
    """The colour image resampled onto the depth map's pixels (``reference="depth"``):
    pixel u of the result takes the colour where the registration displaces it (bilinear;
    where the depth is missing, at the median depth). The depth map's geometry is kept,
    and every depth pixel gets the colour of the surface it measured; what the colour
    camera did not see is black. Unchanged (the same array) when the registration was not
    applied.

    Args:
        image: (H, W, 3) uint8.
        depth: (H, W) float64 metres, NaN invalid, on the same grid.

    Returns:
        (H, W, 3) uint8.
    """
    import cv2

    if not registration.applied:
        return image
    H, W = depth.shape
    z = np.where(np.isfinite(depth) & (depth > 0), depth, np.nan)
    zmed = float(np.nanmedian(z)) if np.isfinite(z).any() else 1.0
    inv = (1.0 / np.where(np.isfinite(z), z, zmed)).astype(np.float32)
    gx, gy = np.meshgrid(np.arange(W, dtype=np.float32), np.arange(H, dtype=np.float32))
    k1 = np.float32(registration.zoom - 1.0)
    cx, cy = (np.float32(v) for v in registration.centre)
    mx = gx + np.float32(registration.shift[0]) + k1 * (gx - cx) + np.float32(registration.parallax[0]) * inv
    my = gy + np.float32(registration.shift[1]) + k1 * (gy - cy) + np.float32(registration.parallax[1]) * inv
    return cv2.remap(image, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def colour_to_depth_pixels(uv: np.ndarray, depth: np.ndarray, registration: DepthRegistration,
                           step_px: float = 0.25, max_samples: int = 2048) -> np.ndarray:
    """Pixels of the colour image as taken carried onto the depth map's grid: the inverse of
    :meth:`DepthRegistration.displacement` (``reference="depth"``), so that keypoints found
    on the photo sit where :func:`register_colour` would have put them.

    The displacement depends on the depth at the depth pixel sought: a colour pixel comes
    from the depth pixel ``u(z)`` that a surface at depth ``z`` would put there, a segment
    of the depth grid as ``z`` runs over the view's depths. The pixels along it (every
    ``step_px``) whose own depth puts them there are the fixed points ``u = u(z(u))``.
    Beside an occluding contour there are two: the surface the colour camera saw and the one
    behind it, hidden from the colour camera but not from the depth camera; the nearest wins,
    as a z-buffer would decide. Where none is exact, the pixel closest to being one.

    Args:
        uv: (N, 2) pixels of the colour image.
        depth: (H, W) metres, NaN invalid.
        step_px: spacing of the depth pixels tried along the segment (under a pixel, so
            that no pixel the segment crosses is skipped).
        max_samples: most depth pixels tried per colour pixel (a bound on time and memory
            where the depth reaches very near the camera).

    Returns:
        (N, 2) pixels of the depth grid (``uv`` itself when the registration was not applied
        or moved the depth onto the colour).
    """
    uv = np.asarray(uv, float).reshape(-1, 2)
    if not registration.applied or registration.reference != "depth" or len(uv) == 0:
        return uv
    H, W = depth.shape
    zoom = registration.zoom
    base = uv - registration.shift + (zoom - 1.0) * registration.centre
    z_ok = np.isfinite(depth) & (depth > 0)
    if not z_ok.any():  # nothing to invert against: the displacement of a surface 1 m away
        return (base - registration.parallax) / zoom
    inv_lo, inv_hi = 1.0 / float(depth[z_ok].max()), 1.0 / float(depth[z_ok].min())
    length = float(np.linalg.norm(registration.parallax)) * (inv_hi - inv_lo) / zoom
    inv_z = np.linspace(inv_lo, inv_hi, int(np.clip(np.ceil(length / step_px) + 1, 2, max_samples)))
    inv_mid = 1.0 / float(np.median(depth[z_ok]))
    out = np.empty_like(uv)
    chunk = max(1, 1_000_000 // len(inv_z))  # bounds the (n, samples, 2) arrays
    for s in range(0, len(uv), chunk):
        b = base[s:s + chunk, None, :]
        p = np.rint((b - registration.parallax * inv_z[:, None]) / zoom)  # (n, S, 2) pixels on the segment
        inside = (p[..., 0] >= 0) & (p[..., 0] <= W - 1) & (p[..., 1] >= 0) & (p[..., 1] <= H - 1)
        x = np.clip(p[..., 0], 0, W - 1).astype(np.int64)
        y = np.clip(p[..., 1], 0, H - 1).astype(np.int64)
        z = np.where(inside & z_ok[y, x], depth[y, x], np.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            u = (b - registration.parallax / z[..., None]) / zoom  # where each pixel's own depth puts it
        miss = np.abs(u - p).max(axis=2)
        miss = np.where(np.isfinite(miss), miss, np.inf)
        fixed = miss <= 0.5
        # the nearest fixed point; without one, the pixel that misses least
        key = np.where(fixed, z, np.inf)  # a fixed point has a finite miss, so a depth
        best = np.where(fixed.any(axis=1), np.argmin(key, axis=1), np.argmin(miss, axis=1))
        rows = np.arange(len(best))
        found = np.isfinite(miss[rows, best])
        mid = (b[:, 0] - registration.parallax * inv_mid) / zoom
        out[s:s + chunk] = np.where(found[:, None], u[rows, best], mid)
    return out


def register_view(image: np.ndarray, depth: np.ndarray, registration: DepthRegistration) -> tuple[np.ndarray, np.ndarray]:
    """(image, depth) made to agree by the registration: the colour moved onto the depth
    (``reference="depth"``) or the depth moved onto the colour (``"colour"``); both
    unchanged when it was not applied."""
    if not registration.applied:
        return image, depth
    if registration.reference == "depth":
        return register_colour(image, depth, registration), depth
    return image, register_depth(depth, registration)

"""Appearance fields of single-view mixtures and the appearance-consistency term.

A mixture built from one image, rendered in its own camera, reproduces that image at
the Gaussians' scale. So the appearance field of a view at blur level ``sigma`` is its
image low-passed by a Gaussian of ``sigma`` pixels (colour), and its dense descriptor map
(features): there is no need to splat the mixture to get it, and its gradients are exact.

The appearance term compares every visible Gaussian's own appearance (its view's field at
its projected centre) with the *other* view's field where the pose projects the Gaussian,
in both directions. Depth errors move a Gaussian along its viewing ray, which changes its
projection in the other view only by parallax, so this term carries the bearings (what
2D matches carry for a feature front end) while the geometric overlap carries the depth.

Residuals are per channel group ("colour": RGB in [0, 1] over ``colour_sigma``;
"features": unit descriptors over ``feature_sigma``), each group with a Huber weight on
its norm so an occlusion or a specularity caps its pull.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from twoview.geometry.camera import Camera


@dataclass
class AppearanceField:
    """What one view looks like, as maps its mixture's Gaussians can be compared against.

    Attributes:
        image: (H, W, 3) uint8 RGB the mixture was built from.
        features: (h, w, C) float32 unit descriptors (channel-last) or None.
        feature_scale: (kx, ky) with map coordinate ``(u + 0.5) * kx - 0.5`` for pixel u.
    """

    image: np.ndarray
    features: np.ndarray | None = None
    feature_scale: tuple[float, float] = (1.0, 1.0)
    _colour: dict = field(default_factory=dict, repr=False)

    def colour(self, sigma: float) -> np.ndarray:
        """(H, W, 3) float32 in [0, 1], Gaussian-blurred by ``sigma`` px (cached)."""
        key = round(float(sigma), 3)
        if key not in self._colour:
            import cv2

            im = self.image.astype(np.float32) * (1.0 / 255.0)
            self._colour[key] = cv2.GaussianBlur(im, (0, 0), key) if key > 0 else im
        return self._colour[key]


def bilinear(img: np.ndarray, u: np.ndarray, v: np.ndarray):
    """Sample a channel-last map with bilinear interpolation and its exact derivatives.

    Args:
        img: (H, W, C) map; u, v: (n,) coordinates in map pixels (inside [0, W-1] x [0, H-1]).

    Returns:
        values, d/du, d/dv: each (n, C), in the map's dtype.
    """
    from twoview.gmm._kernels import bilinear_sample

    return bilinear_sample(np.ascontiguousarray(img), np.ascontiguousarray(u, np.float64),
                           np.ascontiguousarray(v, np.float64))


@dataclass
class Channel:
    """One channel group of a view's appearance at one level, ready for sampling."""

    name: str  # "colour" or "features"
    map: np.ndarray  # (H', W', C) channel-last
    kx: float  # map coordinate = (u + 0.5) * kx - 0.5
    ky: float
    sigma: float  # residual scale (colour: [0, 1] units; features: unit-vector distance)


def channels(field_: AppearanceField, blur_px: float, colour_sigma: float, feature_sigma: float,
             use_colour: bool, use_features: bool, feature_basis: np.ndarray | None = None) -> list[Channel]:
    """The channel groups of one view at one level (``feature_basis`` (C, D) projects
    the descriptors onto D principal directions shared by both views)."""
    out = []
    if use_colour:
        out.append(Channel("colour", field_.colour(blur_px), 1.0, 1.0, colour_sigma))
    if use_features and field_.features is not None:
        kx, ky = field_.feature_scale
        f = field_.features
        if feature_basis is not None:
            f = np.ascontiguousarray((f.reshape(-1, f.shape[-1]) @ feature_basis).reshape(f.shape[:2] + (-1,)))
        out.append(Channel("features", f, kx, ky, feature_sigma))
    return out


def shared_feature_basis(f0: np.ndarray, f1: np.ndarray, dims: int) -> np.ndarray | None:
    """(C, dims) principal directions of two views' descriptor maps (h, w, C) together,
    or None when ``dims`` is 0 or not smaller than C. Distances between descriptors
    projected on it keep most of their variance at a fraction of the cost."""
    C = f0.shape[-1]
    if dims <= 0 or dims >= C:
        return None
    X = np.concatenate([f0.reshape(-1, C), f1.reshape(-1, C)]).astype(np.float64)
    X -= X.mean(axis=0)
    _, vecs = np.linalg.eigh(X.T @ X)
    return np.ascontiguousarray(vecs[:, ::-1][:, :dims]).astype(f0.dtype)


def textured(chans: list[Channel], uv: np.ndarray, fraction: float) -> np.ndarray:
    """(n,) bool: the ``fraction`` of points uv (n, 2) whose own appearance changes the
    most with position (squared gradient norm over all groups, each over its sigma).
    Flat-looking Gaussians constrain the pose little through appearance and cost as
    much as textured ones."""
    if fraction >= 1.0 or not len(uv):
        return np.ones(len(uv), bool)
    g2 = np.zeros(len(uv))
    for ch in chans:
        mu = np.clip((uv[:, 0] + 0.5) * ch.kx - 0.5, 0, ch.map.shape[1] - 1)
        mv = np.clip((uv[:, 1] + 0.5) * ch.ky - 0.5, 0, ch.map.shape[0] - 1)
        _, du, dv = bilinear(ch.map, mu, mv)
        g2 += (ch.kx**2 * np.sum(du.astype(np.float64) ** 2, axis=1)
               + ch.ky**2 * np.sum(dv.astype(np.float64) ** 2, axis=1)) / ch.sigma**2
    return g2 >= np.quantile(g2, 1.0 - fraction)


def sample_at_pixels(chans: list[Channel], uv: np.ndarray) -> list[np.ndarray]:
    """Each group's values (n, C) at pixels uv (n, 2) of its own view."""
    out = []
    for ch in chans:
        mu = np.clip((uv[:, 0] + 0.5) * ch.kx - 0.5, 0, ch.map.shape[1] - 1)
        mv = np.clip((uv[:, 1] + 0.5) * ch.ky - 0.5, 0, ch.map.shape[0] - 1)
        out.append(bilinear(ch.map, mu, mv)[0])
    return out


def project_inside(q: np.ndarray, camera: Camera) -> tuple[np.ndarray, np.ndarray]:
    """Indices of centres q (n, 3) (target frame) that project inside the image, and
    their pixels (m, 2)."""
    z = q[:, 2]
    ok = z > 1e-6
    zs = np.where(ok, z, 1.0)
    u = camera.fx * q[:, 0] / zs + camera.cx
    v = camera.fy * q[:, 1] / zs + camera.cy
    ok &= (u >= 0) & (u <= camera.width - 1) & (v >= 0) & (v <= camera.height - 1)
    idx = np.flatnonzero(ok)
    return idx, np.stack([u[idx], v[idx]], axis=1)


def fit_gain_bias(src: np.ndarray, dst: np.ndarray, max_gain: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel affine colour change ``dst ~ gain * src + bias`` between two views
    (exposure and white balance), by matching robust moments of the same Gaussians'
    colours: gain = ratio of interquartile ranges, bias from the medians. Unlike a
    regression of dst on src, this does not shrink the gain when the pose is still off
    (misaligned samples decorrelate, their spreads do not change).

    Args:
        src, dst: (n, C) colours of the same Gaussians in their own view and where the
            pose projects them in the other view.
        max_gain: gains are clipped to [1 / max_gain, max_gain].

    Returns:
        gain (C,), bias (C,).
    """
    q_src = np.percentile(src, [25, 50, 75], axis=0)
    q_dst = np.percentile(dst, [25, 50, 75], axis=0)
    iqr_src = q_src[2] - q_src[0]
    iqr_dst = q_dst[2] - q_dst[0]
    gain = np.where(iqr_src > 1e-3, iqr_dst / np.maximum(iqr_src, 1e-3), 1.0)
    gain = np.clip(gain, 1.0 / max_gain, max_gain)
    bias = q_dst[1] - gain * q_src[1]
    return gain, bias


def _gram3(x0: np.ndarray, x1: np.ndarray, x2: np.ndarray) -> np.ndarray:
    """(n, 3, 3) float64 Gram matrices of the rows (x0, x1, x2), each (n, C): six row-wise
    dot products (3x faster than a batched matmul of (n, 3, C) stacks)."""
    G = np.empty((len(x0), 3, 3))
    xs = (x0, x1, x2)
    for a in range(3):
        for b in range(a, 3):
            G[:, a, b] = G[:, b, a] = np.einsum("nc,nc->n", xs[a], xs[b])
    return G


@dataclass
class AppearanceTerm:
    """Gauss-Newton pieces of one direction of the appearance term at a state."""

    cost: float  # sum of Huber costs
    grad: np.ndarray | None  # (n_params,) d cost / d increment
    hess: np.ndarray | None  # (n_params, n_params) Gauss-Newton matrix
    count: int  # Gaussians that projected inside the other image
    agreement: float = 0.0  # sum over them of exp(-|r|^2 / 2), averaged over channel groups


def appearance_term(q: np.ndarray, dq_dxi: np.ndarray | None, source_values: list[np.ndarray],
                    target: list[Channel], camera: Camera, huber: float = 1.0) -> AppearanceTerm:
    """Robust appearance residuals of Gaussians mapped into the other view.

    Args:
        q: (n, 3) Gaussian centres in the target camera's frame.
        dq_dxi: (n, 3, P) derivative of q w.r.t. the pose increment, or None (cost only).
        source_values: per channel group, (n, C) the Gaussians' own appearance.
        target: the target view's channel groups (same order).
        camera: the target camera.
        huber: Huber threshold on each group's normalised residual norm.

    Returns:
        :class:`AppearanceTerm`: ``cost`` is the summed Huber cost; derivatives are of it.
    """
    idx, uv = project_inside(q, camera)
    n_par = None if dq_dxi is None else dq_dxi.shape[2]
    if not len(idx):
        return AppearanceTerm(0.0, None if n_par is None else np.zeros(n_par),
                              None if n_par is None else np.zeros((n_par, n_par)), 0)
    u, v = uv[:, 0], uv[:, 1]
    qi = q[idx]
    zs = qi[:, 2]
    # d(u, v)/dq: (n, 2, 3)
    du_dq = np.zeros((len(idx), 2, 3))
    du_dq[:, 0, 0] = camera.fx / zs
    du_dq[:, 0, 2] = -camera.fx * qi[:, 0] / zs**2
    du_dq[:, 1, 1] = camera.fy / zs
    du_dq[:, 1, 2] = -camera.fy * qi[:, 1] / zs**2
    cost, agreement = 0.0, 0.0
    # Reduce over channels in the image plane first: per point the Gram matrix of
    # (dr/du, dr/dv, r) gives the 2x2 structure tensor, the 2-vector J^T r and |r|^2.
    S = np.zeros((len(idx), 3, 3))
    for ch, src in zip(target, source_values):
        mu = np.clip((u + 0.5) * ch.kx - 0.5, 0, ch.map.shape[1] - 1)
        mv = np.clip((v + 0.5) * ch.ky - 0.5, 0, ch.map.shape[0] - 1)
        val, dmu, dmv = bilinear(ch.map, mu, mv)
        G = _gram3(dmu * (ch.kx / ch.sigma), dmv * (ch.ky / ch.sigma), (val - src[idx]) / ch.sigma)
        nrm = np.sqrt(G[:, 2, 2])
        w = np.where(nrm <= huber, 1.0, huber / np.maximum(nrm, 1e-12))
        cost += float(np.sum(np.where(nrm <= huber, 0.5 * nrm**2, huber * (nrm - 0.5 * huber))))
        agreement += float(np.sum(np.exp(-0.5 * G[:, 2, 2]))) / len(target)
        S += w[:, None, None] * G
    if dq_dxi is None:
        return AppearanceTerm(cost, None, None, len(idx), agreement)
    Suu, Suv, Svv, bu, bv = S[:, 0, 0], S[:, 0, 1], S[:, 1, 1], S[:, 0, 2], S[:, 1, 2]
    # chain to the pose: d(u, v)/dxi = d(u, v)/dq dq/dxi, (n, 2, P); then
    # H = sum_n Juv^T S2 Juv and g = sum_n Juv^T b with the per-point 2x2 tensor S2
    Juv = np.matmul(du_dq, dq_dxi[idx])
    Ju, Jv = Juv[:, 0, :], Juv[:, 1, :]
    SJu = Suu[:, None] * Ju + Suv[:, None] * Jv
    SJv = Suv[:, None] * Ju + Svv[:, None] * Jv
    hess = Ju.T @ SJu + Jv.T @ SJv
    grad = Ju.T @ bu + Jv.T @ bv
    return AppearanceTerm(cost, grad, hess, len(idx), agreement)


def appearance_gauss_newton(means: np.ndarray, R: np.ndarray, t: np.ndarray, s: float, inverse: bool,
                            with_scale: bool, deriv: bool, source_values: list[np.ndarray],
                            target: list[Channel], camera: Camera, huber: float = 1.0) -> AppearanceTerm:
    """:func:`appearance_term` of Gaussian centres mapped by the state, in one compiled
    pass (the mapping, its Jacobian and every channel group fused; same result).

    Args:
        means: (n, 3) centres in their own camera: mixture 0's mapped into camera 1 by
            :func:`forward_map`, or mixture 1's into camera 0 by :func:`inverse_map`
            (``inverse``).
        R, t, s: the state (``cam1_from_cam0`` rotation, translation, scale of mixture 0).
        with_scale, deriv: derivatives w.r.t. (omega, v[, log s]), or the cost only.
        source_values, target, camera, huber: as :func:`appearance_term`.
    """
    from twoview.gmm._kernels import appearance_gauss_newton as kernel

    n_par = (7 if with_scale else 6) if deriv else 0
    if not target or not len(means):
        zero = None if not n_par else np.zeros(n_par)
        return AppearanceTerm(0.0, zero, None if not n_par else np.zeros((n_par, n_par)), 0)
    maps = tuple(np.ascontiguousarray(ch.map, np.float32) for ch in target)
    src = np.ascontiguousarray(np.concatenate([np.asarray(v, np.float32) for v in source_values], axis=1))
    offsets = np.cumsum([0] + [m.shape[2] for m in maps]).astype(np.int64)
    cost, agree, count, grad, hess = kernel(
        np.ascontiguousarray(means, np.float64), np.ascontiguousarray(R, np.float64),
        np.ascontiguousarray(t, np.float64), float(s), bool(inverse), n_par,
        float(camera.fx), float(camera.fy), float(camera.cx), float(camera.cy),
        float(camera.width), float(camera.height), float(huber), maps,
        np.array([ch.kx for ch in target], np.float64), np.array([ch.ky for ch in target], np.float64),
        np.array([ch.sigma for ch in target], np.float64), src, offsets)
    if not n_par:
        return AppearanceTerm(float(cost), None, None, int(count), float(agree))
    if not count:
        grad, hess = np.zeros(n_par), np.zeros((n_par, n_par))
    return AppearanceTerm(float(cost), grad, hess, int(count), float(agree))


def forward_map(means: np.ndarray, R: np.ndarray, t: np.ndarray, s: float, with_scale: bool, deriv: bool = True):
    """Mixture-0 centres into camera 1, ``q = s R mu + t``, and dq/d(omega, v[, log s])
    for the left increment ``q -> exp(omega) q + v`` (scale: ``s -> e^l s``)."""
    q = s * means @ R.T + t
    if not deriv:
        return q, None
    n = 7 if with_scale else 6
    J = np.zeros((len(q), 3, n))
    J[:, 0, 1], J[:, 0, 2] = q[:, 2], -q[:, 1]  # -[q]x
    J[:, 1, 0], J[:, 1, 2] = -q[:, 2], q[:, 0]
    J[:, 2, 0], J[:, 2, 1] = q[:, 1], -q[:, 0]
    J[:, 0, 3] = J[:, 1, 4] = J[:, 2, 5] = 1.0
    if with_scale:
        J[:, :, 6] = q - t
    return q, J


def inverse_map(means: np.ndarray, R: np.ndarray, t: np.ndarray, s: float, with_scale: bool, deriv: bool = True):
    """Mixture-1 centres into camera 0, ``q = R^T (mu - t) / s``, and dq/d(omega, v[, log s])
    for the same left increment of the camera-1-from-camera-0 state."""
    q = (means - t) @ R / s
    if not deriv:
        return q, None
    n = 7 if with_scale else 6
    # q' = R^T exp(-omega) (mu - v - exp(omega) t) / s' ; at 0: dq/domega = R^T [mu]x / s,
    # dq/dv = -R^T / s, dq/dl = -q
    mu = means
    Rt = R.T / s
    hat = np.zeros((len(mu), 3, 3))
    hat[:, 0, 1], hat[:, 0, 2] = -mu[:, 2], mu[:, 1]
    hat[:, 1, 0], hat[:, 1, 2] = mu[:, 2], -mu[:, 0]
    hat[:, 2, 0], hat[:, 2, 1] = -mu[:, 1], mu[:, 0]
    J = np.zeros((len(q), 3, n))
    J[:, :, :3] = np.einsum("ij,njk->nik", Rt, hat)
    J[:, :, 3:6] = -Rt
    if with_scale:
        J[:, :, 6] = -q
    return q, J

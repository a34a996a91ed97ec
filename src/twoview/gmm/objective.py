"""The alignment objective between two mixtures, and its pieces.

Pose convention: mixture A lives in camera 0, B in camera 1; a state ``(R, t, s)`` maps
A into camera 1 as ``x -> s R x + t`` (``s = 1`` unless a relative scale is estimated).

Pair term (Gaussian overlap, the L2 inner product of two normalised Gaussians)::

    k_ij = N(s R mu_i + t - mu_j; 0, S_ij),  S_ij = s^2 R Sigma_i R^T + Sigma_j + 2 v I

with ``v`` the coarse-to-fine inflation variance. ``E_AB = sum c_ij k_ij`` over pairs
within the k nearest neighbours whose Mahalanobis distance is below
``truncation_sigmas`` (a truncated kernel: far, non-overlapping parts neither pull nor
count), ``c_ij = w_i w_j k_col k_feat`` and both Gaussians visible from the other
camera. The score is the normalised cross-correlation ``E_AB / sqrt(E_AA E_BB)`` (self
overlaps over the visible Gaussians, same kernels), 1 for identical mixtures.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from twoview.geometry.rotation import so3_exp, sym3_eigvalsh
from twoview.gmm.config import AlignConfig
from twoview.gmm.mixture import GaussianMixture
from twoview.gmm.neighbours import PointGrid

_LOG2PI3 = 3.0 * np.log(2.0 * np.pi)


@dataclass
class Prepared:
    """A mixture ready for alignment: covariances possibly made isotropic, a neighbour grid."""

    mix: GaussianMixture
    means: np.ndarray
    covs: np.ndarray
    weights: np.ndarray
    colors: np.ndarray
    features: np.ndarray | None
    tree: PointGrid
    sigma_p90: float

    @classmethod
    def from_mixture(cls, mix: GaussianMixture, cfg: AlignConfig) -> Prepared:
        covs = mix.covs
        if not cfg.use_covariance:
            iso = np.trace(covs, axis1=1, axis2=2) / 3.0
            covs = iso[:, None, None] * np.eye(3)
        sig = np.sqrt(np.maximum(sym3_eigvalsh(covs)[:, -1], 0.0)) if len(covs) else np.zeros(1)
        feats = mix.features if (cfg.use_features and mix.features is not None) else None
        return cls(mix, mix.means, covs, mix.weights, mix.colors, feats, PointGrid(mix.means),
                   float(np.percentile(sig, 90)))


def pair_similarity(a: Prepared, b: Prepared, i: np.ndarray, j: np.ndarray, cfg: AlignConfig) -> np.ndarray:
    """``w_i w_j k_col k_feat`` for pairs (M,) -> (M,)."""
    c = a.weights[i] * b.weights[j]
    if cfg.use_colour:
        dc = a.colors[i] - b.colors[j]
        c = c * np.exp(-np.einsum("ij,ij->i", dc, dc) / (2 * cfg.colour_sigma**2))
    if cfg.use_features and a.features is not None and b.features is not None:
        cos = np.einsum("ij,ij->i", a.features[i], b.features[j]).astype(np.float64)
        c = c * np.exp((cos - 1.0) / cfg.feature_temperature)
    return c


def visible_in(points: np.ndarray, mix: GaussianMixture, cfg: AlignConfig, with_frustum: bool = False):
    """Which points (N, 3), given in ``mix``'s camera frame, that camera sees: in front,
    inside the image and not behind its z-buffer (with relative slack). (N,) bool.

    Without a camera every point counts as visible; without a z-buffer only the frustum
    is tested. ``with_frustum``: also return the points in front, inside the image and
    over valid z-buffer depth, occlusion ignored (visible, frustum)."""
    if not cfg.use_visibility or mix.camera is None:
        ones = np.ones(len(points), bool)
        return (ones, ones.copy()) if with_frustum else ones
    cam = mix.camera
    z = points[:, 2]
    ok = z > 1e-6
    uv = np.zeros((len(points), 2))
    uv[ok] = cam.project(points[ok])
    ok &= cam.in_image(uv)
    frustum = ok.copy()
    if mix.zbuffer is not None and ok.any():
        s = mix.zbuffer_stride
        h, w = mix.zbuffer.shape
        idx = np.flatnonzero(ok)
        ix = np.clip(((uv[idx, 0] + 0.5) / s).astype(int), 0, w - 1)
        iy = np.clip(((uv[idx, 1] + 0.5) / s).astype(int), 0, h - 1)
        zb = mix.zbuffer[iy, ix]
        has = np.isfinite(zb)
        with np.errstate(invalid="ignore"):
            ok[idx] = has & (z[idx] <= zb * (1.0 + cfg.occlusion_tolerance))
        frustum[idx] = has
    return (ok, frustum) if with_frustum else ok


def apply_state(means: np.ndarray, R: np.ndarray, t: np.ndarray, s: float) -> np.ndarray:
    return s * means @ R.T + t


def find_pairs(p: np.ndarray, b: Prepared, knn: int, radius: float, mask_a=None, mask_b=None):
    """Candidate pairs: the ``knn`` nearest B means of each transformed A mean within
    ``radius``. Returns (i, j) int arrays."""
    idx_a = np.arange(len(p)) if mask_a is None else np.flatnonzero(mask_a)
    if not len(idx_a) or not len(b.means):
        return np.zeros(0, int), np.zeros(0, int)
    k = min(knn, len(b.means))
    d, j = b.tree.query(p[idx_a], k=k, distance_upper_bound=radius)
    d, j = d.reshape(len(idx_a), k), j.reshape(len(idx_a), k)
    ok = np.isfinite(d)
    i = np.repeat(idx_a, k).reshape(len(idx_a), k)[ok]
    j = j[ok]
    if mask_b is not None:
        keep = mask_b[j]
        i, j = i[keep], j[keep]
    return i, j


def _sym_inverse(S: np.ndarray):
    """Closed-form inverse and log-determinant of symmetric positive definite (M, 3, 3)."""
    a, b, c = S[:, 0, 0], S[:, 0, 1], S[:, 0, 2]
    d, e, f = S[:, 1, 1], S[:, 1, 2], S[:, 2, 2]
    A = d * f - e * e
    B = c * e - b * f
    C = b * e - c * d
    D = a * f - c * c
    E = b * c - a * e
    F = a * d - b * b
    det = np.maximum(a * A + b * B + c * C, 1e-300)
    inv = np.stack([A, B, C, B, D, E, C, E, F], axis=1).reshape(-1, 3, 3) / det[:, None, None]
    return inv, np.log(det)


def self_overlap(a: Prepared, var: float, visible: np.ndarray, cfg: AlignConfig) -> float:
    """``E_AA`` over visible Gaussians (kNN-truncated, same kernels; pose-invariant).

    The neighbour pairs and kernels are cached on ``a`` per inflation variance."""
    cache = a.__dict__.setdefault("_self_cache", {})
    if "pairs" not in cache:
        k = min(cfg.knn, len(a.means))
        _, jj = a.tree.query(a.means, k=k)
        i = np.repeat(np.arange(len(a.means)), k)
        j = jj.reshape(-1)
        cache["pairs"] = (i, j, pair_similarity(a, a, i, j, cfg))
    i, j, c = cache["pairs"]
    if var not in cache:
        from twoview.gmm._kernels import pair_overlaps

        cache[var] = c * pair_overlaps(np.ascontiguousarray(a.means), np.ascontiguousarray(a.covs), i, j, float(var),
                                       float(cfg.truncation_sigmas) ** 2)
    return float(np.sum(cache[var] * (visible[i] & visible[j])))


@dataclass
class Evaluation:
    energy: float
    grad: np.ndarray | None  # d energy / d increment (ascent direction), (6,) or (7,)
    hess: np.ndarray | None  # Gauss-Newton approximation of -d2 energy, (6, 6) or (7, 7)
    num_pairs: int


def candidate_pairs(a: Prepared, b: Prepared, R, t, s, var, vis_a, vis_b, cfg: AlignConfig):
    """Pairs (i, j) and their similarities c at a state: k nearest neighbours of the
    transformed A means among B's within a generous radius, visible on both sides."""
    p = apply_state(a.means, R, t, s)
    radius = cfg.truncation_sigmas * np.sqrt(s**2 * a.sigma_p90**2 + b.sigma_p90**2 + 2 * var) * 1.5
    i, j = find_pairs(p, b, cfg.knn, radius, vis_a, vis_b)
    c = pair_similarity(a, b, i, j, cfg)
    # drop pairs whose appearance kernels make them negligible (< 1e-3 of a perfect match)
    keep = c > 1e-3 * a.weights[i] * b.weights[j]
    return i[keep], j[keep], c[keep]


def registration_noise(a: Prepared, b: Prepared, R, t, s, vis_a, vis_b, cfg: AlignConfig,
                       target: float = 2.366, pairs=None, max_samples: int = 600,
                       search_radius: float | None = None) -> float:
    """Isotropic variance ``nu`` (m^2) that, added to every pair's combined covariance,
    makes the median squared Mahalanobis distance of each A Gaussian to its nearest
    partner in B equal ``target`` (the median of a chi-square with 3 dof): the
    registration noise the data show beyond the Gaussians' own shapes (depth noise,
    sensor timing, monocular depth errors, a rough pose), estimated as EM estimates
    CPD's variance. 0 when the shapes already explain the residuals.

    Partners are searched within ``search_radius`` (m; default: the candidate radius of
    :func:`candidate_pairs`) of at most ``max_samples`` evenly spread visible Gaussians
    of A; a Gaussian with none is misaligned by more than the radius, so when most have
    none the result is ``search_radius^2`` (a lower bound: a rough pose), never 0.
    ``pairs`` = (i, j, c) candidate pairs at this state, instead of searching."""
    if vis_a is None:
        vis_a = np.ones(len(a.means), bool)
    if pairs is None:
        # a median: a few hundred Gaussians of A estimate it as well as all of them
        if vis_a.sum() > max_samples:
            keep = np.flatnonzero(vis_a)
            vis_a = np.zeros_like(vis_a)
            vis_a[keep[np.linspace(0, len(keep) - 1, max_samples).astype(int)]] = True
        if search_radius is None:
            pairs = candidate_pairs(a, b, R, t, s, 0.0, vis_a, vis_b, cfg)
        else:
            p = apply_state(a.means, R, t, s)
            i_, j_ = find_pairs(p, b, cfg.knn, search_radius, vis_a, vis_b)
            pairs = (i_, j_, None)
    i, j, _ = pairs
    n_samples = int(vis_a.sum())
    if n_samples < min(cfg.min_visible, max_samples):
        return 0.0
    if search_radius is None:
        radius = cfg.truncation_sigmas * np.sqrt(s**2 * a.sigma_p90**2 + b.sigma_p90**2) * 1.5
    else:
        radius = search_radius
    d = apply_state(a.means, R, t, s)[i] - b.means[j]
    S = s**2 * np.matmul(np.matmul(R, a.covs[i]), R.T) + b.covs[j]
    Sinv, _ = _sym_inverse(S)
    e2 = np.einsum("ni,nij,nj->n", d, Sinv, d)
    # each A Gaussian's nearest partner (by Mahalanobis distance at nu = 0); along the
    # eigenvectors of its S, e2(nu) = sum_k (u_k . d)^2 / (lambda_k + nu)
    order = np.lexsort((e2, i))
    first = order[np.r_[True, i[order][1:] != i[order][:-1]]] if len(i) else order
    unmatched = n_samples - len(first)  # no partner within the radius: e2 = inf
    if 2 * unmatched >= n_samples:
        return float(radius**2)
    lam, U = np.linalg.eigh(S[first])
    proj2 = np.einsum("nki,nk->ni", U, d[first]) ** 2
    # the median over all samples is this quantile of the matched ones (the unmatched
    # sit above every matched value)
    q = 0.5 * n_samples / len(first)

    def median_e2(nu: float) -> float:
        return float(np.quantile(np.sum(proj2 / (lam + nu), axis=1), min(q, 1.0)))

    if median_e2(0.0) <= target:
        return 0.0
    lo, hi = 0.0, float(np.median(np.sum(proj2, axis=1))) + 1e-12
    while median_e2(hi) > target:
        hi *= 4.0
    for _ in range(20):  # bisection to ~1e-6 of the bracket, cheap: arithmetic on (n, 3)
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if median_e2(mid) > target else (lo, mid)
    return min(hi, float(radius**2))


def freeze_covariances(a: Prepared, b: Prepared, R, s, var, pairs) -> tuple[np.ndarray, np.ndarray]:
    """Inverse combined covariances (P, 3, 3) and kernel normalisers (P,) of ``pairs``
    at rotation R and scale s, for :func:`evaluate` to reuse while the pose moves a
    little (as GICP keeps its covariances through an iteration)."""
    i, j = pairs[0], pairs[1]
    Sa = s**2 * np.matmul(np.matmul(R, a.covs), R.T)  # per Gaussian: fewer than pairs
    S = Sa[i] + b.covs[j]
    S[:, [0, 1, 2], [0, 1, 2]] += 2 * var
    Sinv, logdet = _sym_inverse(S)
    return Sinv, np.exp(-0.5 * (_LOG2PI3 + logdet))


def evaluate(a: Prepared, b: Prepared, R, t, s, var, vis_a, vis_b, cfg: AlignConfig,
             with_derivatives: bool = True, estimate_scale: bool = False, pairs=None,
             frozen=None) -> Evaluation:
    """``E_AB`` at a state (over ``pairs = (i, j, c)`` if given, else freshly found ones),
    with the IRLS gradient and Gauss-Newton matrix of the left
    increment ``(omega, v[, log s])``: ``p -> exp(omega) (e^ls s R mu) + exp(omega) t + v``.

    Covariances are frozen at the current rotation for the derivatives (as in GICP); the
    energy is exact, unless ``frozen`` (from :func:`freeze_covariances` for the same
    pairs) gives the combined covariances of a nearby state to use instead."""
    from twoview.gmm._kernels import overlap_gauss_newton

    i, j, c = pairs if pairs is not None else candidate_pairs(a, b, R, t, s, var, vis_a, vis_b, cfg)
    if not len(i):
        return Evaluation(0.0, None, None, 0)
    p = apply_state(a.means, R, t, s)
    Sinv, norm = frozen if frozen is not None else freeze_covariances(a, b, R, s, var, (i, j))
    n = (7 if estimate_scale else 6) if with_derivatives else 0
    # one compiled pass over the pairs: kernel, energy and, per A Gaussian, the summed
    # pair terms chained once to the increment (pairs sharing i share its Jacobian)
    E, inside, grad, hess = overlap_gauss_newton(
        p, b.means, np.ascontiguousarray(i, np.int64), np.ascontiguousarray(j, np.int64),
        np.ascontiguousarray(c, np.float64), np.ascontiguousarray(Sinv), np.ascontiguousarray(norm),
        float(cfg.truncation_sigmas) ** 2, np.ascontiguousarray(t, np.float64), n)
    if not with_derivatives:
        return Evaluation(float(E), None, None, int(inside))
    return Evaluation(float(E), grad, hess, int(inside))


def apply_increment(R, t, s, delta):
    dR = so3_exp(delta[:3])
    s_new = s * float(np.exp(delta[6])) if len(delta) > 6 else s
    # p' = dR (s' R mu + t) + v: keep x -> s' R' mu + t' with R' = dR R, t' = dR t + v
    return dR @ R, dR @ t + delta[3:6], s_new


def energy_torch(xi, a_means, a_covs, b_means, b_covs, i, j, c, R0, t0, s0, var, trunc=None):
    """Differentiable ``E_AB`` (torch, float64) at ``exp(xi) . (R0, t0, s0)`` for fixed pairs.

    Args:
        xi: (6,) or (7,) torch tensor ``(omega, v[, log s])`` (left increment).
        a_means (N, 3), a_covs (N, 3, 3), b_means (M, 3), b_covs (M, 3, 3): torch float64.
        i, j: (P,) long pair indices; c: (P,) pair similarities.
        R0 (3, 3), t0 (3,), s0: the base state; var: inflation variance.
        trunc: truncation in stds (None: no truncation, smooth everywhere).

    Returns:
        scalar tensor. Exact: the covariances rotate with the pose.
    """
    import torch

    w = xi[:3]
    theta = torch.sqrt((w * w).sum() + 1e-30)
    K = torch.zeros(3, 3, dtype=xi.dtype)
    K = K + torch.stack([
        torch.stack([xi.new_zeros(()), -w[2], w[1]]),
        torch.stack([w[2], xi.new_zeros(()), -w[0]]),
        torch.stack([-w[1], w[0], xi.new_zeros(())]),
    ])
    dR = torch.eye(3, dtype=xi.dtype) + torch.sin(theta) / theta * K + (1 - torch.cos(theta)) / theta**2 * (K @ K)
    R = dR @ R0
    s = s0 * (torch.exp(xi[6]) if xi.shape[0] > 6 else 1.0)
    t = dR @ t0 + xi[3:6]
    p = s * a_means[i] @ R.T + t
    d = p - b_means[j]
    S = s**2 * (R @ a_covs[i] @ R.T) + b_covs[j] + 2 * var * torch.eye(3, dtype=xi.dtype)
    a_, b_, c_ = S[:, 0, 0], S[:, 0, 1], S[:, 0, 2]
    d_, e_, f_ = S[:, 1, 1], S[:, 1, 2], S[:, 2, 2]
    A, B, C = d_ * f_ - e_ * e_, c_ * e_ - b_ * f_, b_ * e_ - c_ * d_
    D, E, F = a_ * f_ - c_ * c_, b_ * c_ - a_ * e_, a_ * d_ - b_ * b_
    det = a_ * A + b_ * B + c_ * C  # closed-form 3x3: much faster than batched LAPACK
    x, y, z = d[:, 0], d[:, 1], d[:, 2]
    q = (A * x * x + D * y * y + F * z * z + 2 * (B * x * y + C * x * z + E * y * z)) / det
    logdet = torch.log(det)
    k = torch.exp(-0.5 * q - 0.5 * (_LOG2PI3 + logdet))
    if trunc is not None:
        k = torch.where(q < trunc**2, k, torch.zeros_like(k))
    return (c * k).sum()


__all__ = [
    "Evaluation", "Prepared", "apply_increment", "candidate_pairs", "energy_torch", "evaluate", "find_pairs",
    "freeze_covariances",
    "pair_similarity", "registration_noise", "self_overlap", "visible_in",
]

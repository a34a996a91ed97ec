"""Compiled inner loops of mixture building and alignment (numba, GIL released).

Each kernel is one pass over pixels, pairs or Gaussians that numpy would spread over
dozens of temporaries; the math is that of the documented numpy functions they serve
(:func:`twoview.gmm.mixture.build_mixture`, :func:`twoview.gmm.objective.evaluate`,
:func:`twoview.gmm.appearance.appearance_term`, which stays as the readable reference
the tests compare against). ``nogil`` lets the refinement's two threads run them at
once; ``cache`` keeps the compiled code on disk beside this file (first use in a fresh
environment compiles for a few seconds).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

_OPTS = dict(nogil=True, cache=True, fastmath=False, error_model="numpy")


@njit(**_OPTS)
def _pair_ok(a, b, lo, hi, max_ratio):
    """Both depths valid (inside (lo, hi): False for NaN) and within the ratio; no
    branches, so the row loops vectorise."""
    return ((a > lo) & (a < hi) & (b > lo) & (b < hi)
            & (max(a, b) <= max_ratio * min(a, b)))


@njit(**_OPTS)
def valid_depth_mask(depth, min_depth, max_depth, max_ratio):
    """(H, W) bool: depth finite, inside (min_depth, max_depth), and within a ratio
    ``max_ratio`` (= 1 + edge threshold) of each 4-neighbour, an invalid neighbour
    counting as an edge. The second output is the number of valid pixels."""
    H, W = depth.shape
    lo, hi = min_depth, max_depth
    ok = np.empty((H, W), np.bool_)
    right = np.ones(W, np.bool_)  # pair (x, x + 1) consistent; the last column has no pair
    down = np.ones(W, np.bool_)  # pair (y, x) - (y + 1, x) consistent
    up = np.ones(W, np.bool_)  # pair (y - 1, x) - (y, x): the previous row's ``down``
    count = 0
    for y in range(H):
        row = depth[y]
        for x in range(W - 1):
            right[x] = _pair_ok(row[x], row[x + 1], lo, hi, max_ratio)
        if y + 1 < H:
            nxt = depth[y + 1]
            for x in range(W):
                down[x] = _pair_ok(row[x], nxt[x], lo, hi, max_ratio)
        else:
            down[:] = True
        for x in range(W):
            z = row[x]
            v = (z > lo) & (z < hi) & right[x] & down[x] & up[x]
            if x > 0:
                v = v & right[x - 1]
            ok[y, x] = v
            count += v
        up[:] = down
    return ok, count


@njit(**_OPTS)
def bilinear_sample(map_, mu, mv):
    """Bilinear values and exact derivatives of a channel-last map (h, w, C) at map
    coordinates (n,) each: (val, d/dmu, d/dmv), each (n, C) in the map's dtype."""
    n, C = mu.shape[0], map_.shape[2]
    val = np.empty((n, C), map_.dtype)
    du = np.empty((n, C), map_.dtype)
    dv = np.empty((n, C), map_.dtype)
    out = np.empty(3)
    for k in range(n):
        for ch in range(C):
            _sample(map_, mu[k], mv[k], ch, out)
            val[k, ch], du[k, ch], dv[k, ch] = out[0], out[1], out[2]
    return val, du, dv


@njit(**_OPTS)
def _sym3_cofactors(a, b, c, d, e, f):
    """The cofactors (A, B, C, D, E, F) of the symmetric 3x3 ``[[a, b, c], [b, d, e], [c, e, f]]``
    and its determinant floored at 1e-300 (the inverse is the cofactors over it), as
    :func:`twoview.gmm.objective._sym_inverse` computes them for numpy batches."""
    A = d * f - e * e
    B = c * e - b * f
    C = b * e - c * d
    D = a * f - c * c
    E = b * c - a * e
    F = a * d - b * b
    return A, B, C, D, E, F, max(a * A + b * B + c * C, 1e-300)


@njit(**_OPTS)
def pair_overlaps(means, covs, i, j, var, trunc2):
    """Truncated overlap kernels (P,) of the Gaussian pairs (i, j) of one mixture with
    the isotropic variance ``var`` added to each: N(mu_i - mu_j; 0, S_i + S_j + 2 var I),
    0 beyond ``trunc2`` squared Mahalanobis distance."""
    P = i.shape[0]
    out = np.zeros(P)
    log2pi3 = 3.0 * math.log(2.0 * math.pi)
    for k in range(P):
        a_, b_ = i[k], j[k]
        S00 = covs[a_, 0, 0] + covs[b_, 0, 0] + 2 * var
        S01 = covs[a_, 0, 1] + covs[b_, 0, 1]
        S02 = covs[a_, 0, 2] + covs[b_, 0, 2]
        S11 = covs[a_, 1, 1] + covs[b_, 1, 1] + 2 * var
        S12 = covs[a_, 1, 2] + covs[b_, 1, 2]
        S22 = covs[a_, 2, 2] + covs[b_, 2, 2] + 2 * var
        A, B, C, D, E, F, det = _sym3_cofactors(S00, S01, S02, S11, S12, S22)
        x = means[a_, 0] - means[b_, 0]
        y = means[a_, 1] - means[b_, 1]
        z = means[a_, 2] - means[b_, 2]
        q = (A * x * x + D * y * y + F * z * z + 2 * (B * x * y + C * x * z + E * y * z)) / det
        if q < trunc2:
            out[k] = math.exp(-0.5 * q - 0.5 * (log2pi3 + math.log(det)))
    return out


@njit(**_OPTS)
def sym3_eigh(S, evals, evecs):
    """Eigen-decomposition of one symmetric 3x3 matrix by cyclic Jacobi rotations:
    evals (3,) ascending, evecs (3, 3) with eigenvectors as columns (as numpy.linalg.eigh)."""
    a = S.copy()
    V = np.eye(3)
    for _ in range(12):
        off = a[0, 1] ** 2 + a[0, 2] ** 2 + a[1, 2] ** 2
        scale = a[0, 0] ** 2 + a[1, 1] ** 2 + a[2, 2] ** 2
        if off <= 1e-30 * scale or off == 0.0:
            break
        for p, q in ((0, 1), (0, 2), (1, 2)):
            apq = a[p, q]
            if apq == 0.0:
                continue
            theta = (a[q, q] - a[p, p]) / (2.0 * apq)
            tt = (1.0 if theta >= 0 else -1.0) / (abs(theta) + math.sqrt(theta * theta + 1.0))
            c = 1.0 / math.sqrt(tt * tt + 1.0)
            s = tt * c
            for k in range(3):  # a <- J^T a J
                akp, akq = a[k, p], a[k, q]
                a[k, p] = c * akp - s * akq
                a[k, q] = s * akp + c * akq
            for k in range(3):
                apk, aqk = a[p, k], a[q, k]
                a[p, k] = c * apk - s * aqk
                a[q, k] = s * apk + c * aqk
            for k in range(3):
                vkp, vkq = V[k, p], V[k, q]
                V[k, p] = c * vkp - s * vkq
                V[k, q] = s * vkp + c * vkq
    d = np.array([a[0, 0], a[1, 1], a[2, 2]])
    order = np.argsort(d)
    for k in range(3):
        evals[k] = d[order[k]]
        for r in range(3):
            evecs[r, k] = V[r, order[k]]


@njit(**_OPTS)
def clamp_spectra(cov, lo, hi):
    """Covariances (n, 3, 3) with eigenvalues clipped to [lo, hi] (n,) each, and their
    eigenvectors (n, 3, 3) (columns, ascending eigenvalues: column 0 is the normal)."""
    n = cov.shape[0]
    out = np.empty((n, 3, 3))
    vecs = np.empty((n, 3, 3))
    ev = np.empty(3)
    for k in range(n):
        sym3_eigh(cov[k], ev, vecs[k])
        for m in range(3):
            ev[m] = min(max(ev[m], lo[k]), hi[k])
        V = vecs[k]
        for r in range(3):
            for c in range(r, 3):
                v = V[r, 0] * ev[0] * V[c, 0] + V[r, 1] * ev[1] * V[c, 1] + V[r, 2] * ev[2] * V[c, 2]
                out[k, r, c] = v
                out[k, c, r] = v
    return out, vecs


@njit(**_OPTS)
def plane_spectra(cov, ratio):
    """Covariances (n, 3, 3) made planes as GICP makes its points' (Segal et al. 2009): the
    two largest eigenvalues replaced by their mean ``lam``, the smallest (the normal's) by
    ``ratio * lam``: ``lam (I - (1 - ratio) n n^T)``. The smallest eigenpair in closed form
    (trigonometric eigenvalue, the normal a cross product of two rows of ``S - l I``), the
    Jacobi rotations of :func:`sym3_eigh` only where the normal is not unique."""
    n = cov.shape[0]
    out = np.empty((n, 3, 3))
    V = np.empty((3, 3))
    ev = np.empty(3)
    for k in range(n):
        S = cov[k]
        a00, a01, a02, a11, a12, a22 = S[0, 0], S[0, 1], S[0, 2], S[1, 1], S[1, 2], S[2, 2]
        q = (a00 + a11 + a22) / 3.0
        b00, b11, b22 = a00 - q, a11 - q, a22 - q
        p2 = b00 * b00 + b11 * b11 + b22 * b22 + 2.0 * (a01 * a01 + a02 * a02 + a12 * a12)
        nx = ny = nz = 0.0
        best = 0.0
        l3 = q
        if p2 > 1e-24 * q * q:
            p = math.sqrt(p2 / 6.0)
            det = (b00 * (b11 * b22 - a12 * a12) - a01 * (a01 * b22 - a12 * a02) + a02 * (a01 * a12 - b11 * a02))
            r = min(max(det / (2.0 * p * p * p), -1.0), 1.0)
            l3 = q + 2.0 * p * math.cos(math.acos(r) / 3.0 + 2.0 * math.pi / 3.0)
            # the normal is orthogonal to every row of S - l3 I: the longest cross product of two rows
            r0x, r0y, r0z = a00 - l3, a01, a02
            r1x, r1y, r1z = a01, a11 - l3, a12
            r2x, r2y, r2z = a02, a12, a22 - l3
            for cx, cy, cz in ((r0y * r1z - r0z * r1y, r0z * r1x - r0x * r1z, r0x * r1y - r0y * r1x),
                               (r0y * r2z - r0z * r2y, r0z * r2x - r0x * r2z, r0x * r2y - r0y * r2x),
                               (r1y * r2z - r1z * r2y, r1z * r2x - r1x * r2z, r1x * r2y - r1y * r2x)):
                c2 = cx * cx + cy * cy + cz * cz
                if c2 > best:
                    best, nx, ny, nz = c2, cx, cy, cz
        if best > 1e-12 * p2 * p2 / 36.0 and best > 0.0:
            inv = 1.0 / math.sqrt(best)
            nx, ny, nz = nx * inv, ny * inv, nz * inv
        else:  # a line or a sphere: no unique normal, any eigenvector of the smallest will do
            sym3_eigh(S, ev, V)
            l3, nx, ny, nz = ev[0], V[0, 0], V[1, 0], V[2, 0]
        lam = 0.5 * (3.0 * q - l3)
        f = 1.0 - ratio
        nv = (nx, ny, nz)
        for r_ in range(3):
            for c_ in range(r_, 3):
                v = lam * ((1.0 if r_ == c_ else 0.0) - f * nv[r_] * nv[c_])
                out[k, r_, c_] = v
                out[k, c_, r_] = v
    return out


@njit(**_OPTS)
def cell_moments(depth, valid, image, step, c1, Hp, Wp, fx, fy, cx, cy):
    """Moments of every ``step``-th valid pixel summed per cell of c1 x c1 samples:
    (Hp / c1, Wp / c1, 15) ``[n, x, y, z, xx, xy, xz, yy, yz, zz, u, v, r, g, b]`` with
    (x, y, z) the back-projected point (metres), (u, v) the pixel, rgb in [0, 1]."""
    H, W = depth.shape
    out = np.zeros((Hp // c1, Wp // c1, 15))
    for y in range(0, H, step):
        cyi = (y // step) // c1
        for x in range(0, W, step):
            if not valid[y, x]:
                continue
            z = depth[y, x]
            X = (x - cx) * (z / fx)
            Y = (y - cy) * (z / fy)
            o = out[cyi, (x // step) // c1]
            o[0] += 1.0
            o[1] += X
            o[2] += Y
            o[3] += z
            o[4] += X * X
            o[5] += X * Y
            o[6] += X * z
            o[7] += Y * Y
            o[8] += Y * z
            o[9] += z * z
            o[10] += x
            o[11] += y
            o[12] += image[y, x, 0] * (1.0 / 255.0)
            o[13] += image[y, x, 1] * (1.0 / 255.0)
            o[14] += image[y, x, 2] * (1.0 / 255.0)
    return out


@njit(**_OPTS)
def _left_increment_jacobian(p, t, J):
    """J (3, 7) = d p / d(omega, v, log s) of a point p = s R mu + t under the left
    increment p -> exp(omega) p + v (scale s -> e^l s): [-[p]x | I | p - t]."""
    J[0, 0], J[0, 1], J[0, 2] = 0.0, p[2], -p[1]
    J[1, 0], J[1, 1], J[1, 2] = -p[2], 0.0, p[0]
    J[2, 0], J[2, 1], J[2, 2] = p[1], -p[0], 0.0
    for r in range(3):
        for k in range(3):
            J[r, 3 + k] = 1.0 if r == k else 0.0
        J[r, 6] = p[r] - t[r]


@njit(**_OPTS)
def _flush(p, t, A, bv, n_par, grad, hess):
    """Chain one Gaussian's summed pair terms (A = sum w Sinv, bv = sum w Sinv d) to the
    increment: grad -= bv^T J, hess += J^T A J with J = [-[p]x | I | p - t]."""
    J = np.zeros((3, 7))
    _left_increment_jacobian(p, t, J)
    AJ = np.zeros((3, 7))
    for r in range(3):
        for k in range(n_par):
            AJ[r, k] = A[r, 0] * J[0, k] + A[r, 1] * J[1, k] + A[r, 2] * J[2, k]
    for k in range(n_par):
        grad[k] -= bv[0] * J[0, k] + bv[1] * J[1, k] + bv[2] * J[2, k]
        for m in range(k, n_par):
            v = J[0, k] * AJ[0, m] + J[1, k] * AJ[1, m] + J[2, k] * AJ[2, m]
            hess[k, m] += v


@njit(**_OPTS)
def overlap_gauss_newton(p, b_means, i, j, c, Sinv, norm, trunc2, t, n_par):
    """Truncated Gaussian overlap ``E = sum c norm exp(-d^T Sinv d / 2)`` over pairs
    (d = p[i] - b_means[j]), with its gradient and Gauss-Newton matrix w.r.t. the left
    increment (``n_par`` = 6, 7 with the log scale; 0: energy only).

    Returns (E, pairs inside the truncation, grad (n_par,), hess (n_par, n_par))."""
    grad = np.zeros(n_par)
    hess = np.zeros((n_par, n_par))
    E = 0.0
    inside = 0
    A = np.zeros((3, 3))
    bv = np.zeros(3)
    cur = -1
    d = np.zeros(3)
    u = np.zeros(3)
    for k in range(i.shape[0]):
        ii, jj = i[k], j[k]
        for r in range(3):
            d[r] = p[ii, r] - b_means[jj, r]
        S = Sinv[k]
        for r in range(3):
            u[r] = S[r, 0] * d[0] + S[r, 1] * d[1] + S[r, 2] * d[2]
        q = d[0] * u[0] + d[1] * u[1] + d[2] * u[2]
        if not q < trunc2:
            continue
        inside += 1
        w = c[k] * norm[k] * math.exp(-0.5 * q)
        E += w
        if n_par == 0 or w <= 0.0:
            continue
        if ii != cur:
            if cur >= 0:
                _flush(p[cur], t, A, bv, n_par, grad, hess)
            cur = ii
            A[:] = 0.0
            bv[:] = 0.0
        for r in range(3):
            bv[r] += w * u[r]
            for s_ in range(3):
                A[r, s_] += w * S[r, s_]
    if n_par > 0 and cur >= 0:
        _flush(p[cur], t, A, bv, n_par, grad, hess)
    for k in range(n_par):
        for m in range(k):
            hess[k, m] = hess[m, k]
    return E, inside, grad, hess


@njit(**_OPTS)
def _sample(map_, mu, mv, ch, out):
    """Bilinear value and exact derivatives of channel ``ch`` at map coords (mu, mv):
    writes out[0] = value, out[1] = d/dmu, out[2] = d/dmv."""
    h, w = map_.shape[0], map_.shape[1]
    x0 = min(max(int(math.floor(mu)), 0), w - 2)
    y0 = min(max(int(math.floor(mv)), 0), h - 2)
    fx = mu - x0
    fy = mv - y0
    a = map_[y0, x0, ch]
    b = map_[y0, x0 + 1, ch]
    c = map_[y0 + 1, x0, ch]
    d = map_[y0 + 1, x0 + 1, ch]
    top = a + (b - a) * fx
    bot = c + (d - c) * fx
    out[0] = top + (bot - top) * fy
    out[1] = (b - a) * (1.0 - fy) + (d - c) * fy
    out[2] = bot - top


@njit(**_OPTS)
def appearance_gauss_newton(means, R, t, s, inverse, n_par, fx, fy, cx, cy, width, height, huber,
                            maps, kx, ky, sigma, sources, offsets):
    """Both channel groups of one direction of the appearance term, fused.

    Args:
        means: (n, 3) Gaussian centres in their own camera; mapped into the target
            camera as ``s R mu + t`` (forward) or ``R^T (mu - t) / s`` (``inverse``).
        n_par: 6 or 7 (with the log scale) for derivatives, 0 for the cost only.
        fx, fy, cx, cy, width, height: the target camera.
        maps: (G,) tuple of (h, w, C) float32 channel-last maps of the target view.
        kx, ky, sigma: (G,) map-coordinate scales and residual scale of each group.
        sources: (n, sum C) the Gaussians' own appearance, groups side by side.
        offsets: (G + 1,) column offsets of the groups in ``sources``.

    Returns (cost, agreement, count, grad (n_par,), hess (n_par, n_par)), as
    :func:`twoview.gmm.appearance.appearance_term`.
    """
    G = len(maps)
    grad = np.zeros(n_par)
    hess = np.zeros((n_par, n_par))
    cost = 0.0
    agree = 0.0
    count = 0
    q = np.zeros(3)
    smp = np.zeros(3)
    dq = np.zeros((3, 7))
    Ju = np.zeros(7)
    Jv = np.zeros(7)
    for n in range(means.shape[0]):
        m0, m1, m2 = means[n, 0], means[n, 1], means[n, 2]
        if inverse:
            e0, e1, e2 = m0 - t[0], m1 - t[1], m2 - t[2]
            for r in range(3):  # R^T e / s
                q[r] = (R[0, r] * e0 + R[1, r] * e1 + R[2, r] * e2) / s
        else:
            for r in range(3):
                q[r] = s * (R[r, 0] * m0 + R[r, 1] * m1 + R[r, 2] * m2) + t[r]
        z = q[2]
        if not z > 1e-6:
            continue
        u = fx * q[0] / z + cx
        v = fy * q[1] / z + cy
        if not (u >= 0.0 and u <= width - 1 and v >= 0.0 and v <= height - 1):
            continue
        count += 1
        S00 = 0.0
        S01 = 0.0
        S11 = 0.0
        B0 = 0.0
        B1 = 0.0
        for g in range(G):
            mp = maps[g]
            mu = min(max((u + 0.5) * kx[g] - 0.5, 0.0), mp.shape[1] - 1.0)
            mv = min(max((v + 0.5) * ky[g] - 0.5, 0.0), mp.shape[0] - 1.0)
            su = kx[g] / sigma[g]
            sv = ky[g] / sigma[g]
            guu = 0.0
            guv = 0.0
            gvv = 0.0
            gur = 0.0
            gvr = 0.0
            grr = 0.0
            for ch in range(mp.shape[2]):
                _sample(mp, mu, mv, ch, smp)
                r_ = (smp[0] - sources[n, offsets[g] + ch]) / sigma[g]
                a_ = smp[1] * su
                b_ = smp[2] * sv
                guu += a_ * a_
                guv += a_ * b_
                gvv += b_ * b_
                gur += a_ * r_
                gvr += b_ * r_
                grr += r_ * r_
            nrm = math.sqrt(grr)
            if nrm <= huber:
                wgt = 1.0
                cost += 0.5 * grr
            else:
                wgt = huber / max(nrm, 1e-12)
                cost += huber * (nrm - 0.5 * huber)
            agree += math.exp(-0.5 * grr) / G
            S00 += wgt * guu
            S01 += wgt * guv
            S11 += wgt * gvv
            B0 += wgt * gur
            B1 += wgt * gvr
        if n_par == 0:
            continue
        # dq/dxi for the left increment of cam1_from_cam0 (see forward_map / inverse_map)
        dq[:] = 0.0
        if inverse:
            # R^T [mu]x / s | -R^T / s | -q
            for r in range(3):
                a0, a1, a2 = R[0, r] / s, R[1, r] / s, R[2, r] / s
                dq[r, 0] = a1 * m2 - a2 * m1
                dq[r, 1] = a2 * m0 - a0 * m2
                dq[r, 2] = a0 * m1 - a1 * m0
                dq[r, 3], dq[r, 4], dq[r, 5] = -a0, -a1, -a2
                dq[r, 6] = -q[r]
        else:
            _left_increment_jacobian(q, t, dq)
        du0, du2 = fx / z, -fx * q[0] / (z * z)
        dv1, dv2 = fy / z, -fy * q[1] / (z * z)
        for k in range(n_par):
            Ju[k] = du0 * dq[0, k] + du2 * dq[2, k]
            Jv[k] = dv1 * dq[1, k] + dv2 * dq[2, k]
        for k in range(n_par):
            grad[k] += Ju[k] * B0 + Jv[k] * B1
            su_k = S00 * Ju[k] + S01 * Jv[k]
            sv_k = S01 * Ju[k] + S11 * Jv[k]
            for m in range(k, n_par):
                hess[k, m] += su_k * Ju[m] + sv_k * Jv[m]
    for k in range(n_par):
        for m in range(k):
            hess[k, m] = hess[m, k]
    return cost, agree, count, grad, hess


@njit(**_OPTS)
def d2d_gauss_newton(a_means, R, t, b_means, i, j, Sinv, nu, with_derivatives):
    """Student-t distribution-to-distribution pairs (the polish, :mod:`twoview.gmm.polish`):
    with ``r = R a[i] + t - b[j]`` and ``m = r^T Sinv r``, the mean cost
    ``log(1 + m / nu)`` over the pairs, and (``with_derivatives``) the IRLS gradient and
    Gauss-Newton matrix (weights ``(nu + 3) / (nu + m)``) w.r.t. the left increment
    ``(omega, v)``: ``p -> exp(omega) p + v``. Returns (cost, grad (6,), hess (6, 6))."""
    n = i.shape[0]
    grad = np.zeros(6)
    hess = np.zeros((6, 6))
    cost = 0.0
    J = np.zeros((3, 7))  # the scale column, filled by the shared Jacobian, is not used here
    SJ = np.zeros((3, 6))
    p = np.zeros(3)
    r = np.zeros(3)
    for k in range(n):
        a = a_means[i[k]]
        for u in range(3):
            p[u] = R[u, 0] * a[0] + R[u, 1] * a[1] + R[u, 2] * a[2] + t[u]
            r[u] = p[u] - b_means[j[k], u]
        S = Sinv[k]
        m = 0.0
        for u in range(3):
            m += r[u] * (S[u, 0] * r[0] + S[u, 1] * r[1] + S[u, 2] * r[2])
        cost += math.log1p(m / nu)
        if not with_derivatives:
            continue
        w = (nu + 3.0) / (nu + m)
        _left_increment_jacobian(p, t, J)  # [-[p]x | I | .]
        for u in range(3):
            for c in range(6):
                SJ[u, c] = S[u, 0] * J[0, c] + S[u, 1] * J[1, c] + S[u, 2] * J[2, c]
        for c in range(6):
            grad[c] += w * (SJ[0, c] * r[0] + SJ[1, c] * r[1] + SJ[2, c] * r[2])
            for d in range(c, 6):
                hess[c, d] += w * (J[0, c] * SJ[0, d] + J[1, c] * SJ[1, d] + J[2, c] * SJ[2, d])
    for c in range(6):
        for d in range(c):
            hess[c, d] = hess[d, c]
    if n > 0:
        cost /= n
        for c in range(6):
            grad[c] /= n
            for d in range(6):
                hess[c, d] /= n
    return cost, grad, hess


@njit(**_OPTS)
def pair_information(covs0, covs1, R, i, j):
    """(M, 3, 3) ``(R covs0[i] R^T + covs1[j])^-1`` (closed-form symmetric inverse, the
    determinant floored at 1e-300 as :func:`twoview.gmm.objective._sym_inverse`): the
    polish's pair weights, one pass instead of numpy's five (M, 3, 3) temporaries."""
    n = i.shape[0]
    out = np.empty((n, 3, 3))
    RC = np.empty((3, 3))
    S = np.empty((3, 3))
    for k in range(n):
        C = covs0[i[k]]
        D = covs1[j[k]]
        for u in range(3):
            for v in range(3):
                RC[u, v] = R[u, 0] * C[0, v] + R[u, 1] * C[1, v] + R[u, 2] * C[2, v]
        for u in range(3):
            for v in range(u, 3):
                S[u, v] = RC[u, 0] * R[v, 0] + RC[u, 1] * R[v, 1] + RC[u, 2] * R[v, 2] + D[u, v]
        A, B, C_, D_, E, F, det = _sym3_cofactors(S[0, 0], S[0, 1], S[0, 2], S[1, 1], S[1, 2], S[2, 2])
        out[k, 0, 0] = A / det
        out[k, 0, 1] = out[k, 1, 0] = B / det
        out[k, 0, 2] = out[k, 2, 0] = C_ / det
        out[k, 1, 1] = D_ / det
        out[k, 1, 2] = out[k, 2, 1] = E / det
        out[k, 2, 2] = F / det
    return out

"""The compiled kernels of twoview.gmm against plain numpy references of the same math."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from twoview.geometry import Camera
from twoview.geometry.rotation import so3_exp
from twoview.gmm import _kernels as K


def _valid_mask_reference(depth, lo, hi, thr):
    finite = np.isfinite(depth) & (depth > lo) & (depth < hi)
    with np.errstate(invalid="ignore", divide="ignore"):
        lz = np.log(np.where(finite, depth, np.inf))
        step = np.log1p(thr)
        dx = ~(np.abs(lz[:, 1:] - lz[:, :-1]) <= step)
        dy = ~(np.abs(lz[1:, :] - lz[:-1, :]) <= step)
    ok = finite.copy()
    ok[:, 1:] &= ~dx
    ok[:, :-1] &= ~dx
    ok[1:, :] &= ~dy
    ok[:-1, :] &= ~dy
    return ok


@settings(max_examples=40, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 9), st.integers(1, 9)),
              elements=st.sampled_from([np.nan, np.inf, -1.0, 0.0, 0.5, 1.0, 1.02, 1.2, 3.0, 30.0])))
def test_valid_depth_mask_matches_reference(depth):
    ok, count = K.valid_depth_mask(depth, 0.1, 20.0, 1.1)
    ref = _valid_mask_reference(depth, 0.1, 20.0, 0.1)
    np.testing.assert_array_equal(ok, ref)
    assert count == ref.sum()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-3, 3), min_size=3, max_size=3), st.lists(st.floats(-1, 1), min_size=3, max_size=3),
       st.sampled_from(["distinct", "repeated", "diagonal"]))
def test_sym3_eigh_matches_numpy(axis, raw, kind):
    R = so3_exp(np.array(axis))
    lam = np.sort(np.array(raw) * 4.0)
    if kind == "repeated":
        lam[1] = lam[0]
    if kind == "diagonal":
        R = np.eye(3)
    S = R @ np.diag(lam) @ R.T
    S = 0.5 * (S + S.T)
    ev, V = np.empty(3), np.empty((3, 3))
    K.sym3_eigh(S, ev, V)
    np.testing.assert_allclose(ev, np.linalg.eigvalsh(S), atol=1e-12)
    np.testing.assert_allclose(V.T @ V, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(S @ V, V * ev, atol=1e-11)


def test_clamp_spectra_bounds_eigenvalues():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(50, 3, 3))
    cov = A @ A.transpose(0, 2, 1) * np.array([1e-8, 1.0, 100.0])[rng.integers(0, 3, 50), None, None]
    lo, hi = np.full(50, 1e-4), np.full(50, 10.0)
    out, vecs = K.clamp_spectra(cov, lo, hi)
    evals, evecs = np.linalg.eigh(cov)
    ref = np.einsum("nij,nj,nkj->nik", evecs, np.clip(evals, lo[:, None], hi[:, None]), evecs)
    np.testing.assert_allclose(out, ref, atol=1e-10 * np.abs(ref).max())
    np.testing.assert_allclose(np.abs(np.einsum("nij,nij->nj", vecs, evecs)), 1.0, atol=1e-6)  # same axes


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1), st.lists(st.floats(-3, 3), min_size=3, max_size=3), st.floats(1e-6, 10.0))
def test_pair_information_is_the_inverse_combined_covariance(seed, rotvec, scale):
    """The polish's pair weights ``(R C0[i] R^T + C1[j])^-1`` against numpy, planes included."""
    from twoview.gmm.objective import _sym_inverse

    rng = np.random.default_rng(seed)
    A = rng.normal(size=(50, 3, 3)) * scale
    covs0 = A @ A.transpose(0, 2, 1) + 1e-6 * scale**2 * np.eye(3)
    covs1 = K.plane_spectra(covs0[:40].copy(), 1e-3)  # GICP planes on one side, as the polish pairs them
    R = so3_exp(np.asarray(rotvec))
    i, j = rng.integers(0, 50, 200), rng.integers(0, 40, 200)
    ref = _sym_inverse(np.matmul(np.matmul(R, covs0[i]), R.T) + covs1[j])[0]
    out = K.pair_information(covs0, covs1, R, i, j)
    np.testing.assert_allclose(out, ref, rtol=1e-9, atol=1e-9 * np.abs(ref).max())


@settings(max_examples=80, deadline=None)
@given(st.lists(st.floats(-3, 3), min_size=3, max_size=3), st.lists(st.floats(1e-8, 1.0), min_size=3, max_size=3),
       st.floats(1e-4, 100.0), st.sampled_from(["distinct", "plane", "line", "sphere"]), st.sampled_from([1e-3, 0.1, 1.0]))
def test_plane_spectra_make_gicp_planes(axis, raw, scale, kind, ratio):
    """The in-plane variances become their mean, the normal's ``ratio`` of it, about the
    covariance's own normal; where the normal is not unique (a line, a sphere) any
    eigenvector of the smallest eigenvalue is one."""
    lam = np.sort(np.array(raw)) * scale
    if kind == "plane":
        lam[0] = 1e-9 * lam[2]
    if kind == "line":
        lam[1] = lam[0]
    if kind == "sphere":
        lam[:] = lam[2]
    R = so3_exp(np.array(axis))
    S = R @ np.diag(lam) @ R.T
    S = 0.5 * (S + S.T)
    out = K.plane_spectra(S[None], ratio)[0]
    mean = 0.5 * (lam[1] + lam[2])
    ev, V = np.linalg.eigh(out)
    np.testing.assert_allclose(ev, [ratio * mean, mean, mean], rtol=1e-7, atol=1e-12 * scale)
    np.testing.assert_allclose(out, out.T)
    if kind in ("distinct", "plane") and lam[1] > 1.01 * lam[0] and ratio < 1:  # the original's normal
        assert abs(V[:, 0] @ R[:, 0]) > 1 - 1e-6


def test_cell_moments_match_strided_sums():
    rng = np.random.default_rng(1)
    H, W, step, c1 = 23, 31, 2, 3
    depth = rng.uniform(1, 3, (H, W))
    valid = rng.random((H, W)) > 0.2
    image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    h, w = -(-H // step), -(-W // step)
    Hp, Wp = -(-h // (2 * c1)) * 2 * c1, -(-w // (2 * c1)) * 2 * c1
    out = K.cell_moments(depth, valid, image, step, c1, Hp, Wp, 20.0, 21.0, 15.0, 11.0)
    ref = np.zeros_like(out)
    for y in range(0, H, step):
        for x in range(0, W, step):
            if valid[y, x]:
                z = depth[y, x]
                X, Y = (x - 15.0) * z / 20.0, (y - 11.0) * z / 21.0
                ref[y // step // c1, x // step // c1] += [1, X, Y, z, X * X, X * Y, X * z, Y * Y, Y * z, z * z, x, y,
                                                          *(image[y, x] / 255.0)]
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)


def _overlap_reference(p, bm, i, j, c, Sinv, norm, trunc2, t, n_par):
    """Per pair, no grouping: E, grad = -sum w d^T Sinv J, hess = sum w J^T Sinv J."""
    E, g, Hm, inside = 0.0, np.zeros(n_par), np.zeros((n_par, n_par)), 0
    for k in range(len(i)):
        d = p[i[k]] - bm[j[k]]
        q = d @ Sinv[k] @ d
        if not q < trunc2:
            continue
        inside += 1
        w = c[k] * norm[k] * np.exp(-0.5 * q)
        E += w
        x = p[i[k]]
        J = np.zeros((3, 7))
        J[:, :3] = -np.array([[0, -x[2], x[1]], [x[2], 0, -x[0]], [-x[1], x[0], 0]])
        J[:, 3:6] = np.eye(3)
        J[:, 6] = x - t
        J = J[:, :n_par]
        g -= w * d @ Sinv[k] @ J
        Hm += w * J.T @ Sinv[k] @ J
    return E, inside, g, Hm


@pytest.mark.parametrize("n_par", [6, 7])
def test_overlap_gauss_newton_matches_per_pair_reference(n_par):
    rng = np.random.default_rng(2)
    p, bm = rng.normal(size=(40, 3)), rng.normal(size=(30, 3))
    i = np.sort(rng.integers(0, 40, 300))
    i[150:] = rng.integers(0, 40, 150)  # the second half unsorted: grouping must not matter
    j = rng.integers(0, 30, 300)
    A = rng.normal(size=(300, 3, 3))
    Sinv = A @ A.transpose(0, 2, 1) + 0.1 * np.eye(3)
    c, norm, t = rng.uniform(0, 1, 300), rng.uniform(0.5, 2, 300), rng.normal(size=3)
    got = K.overlap_gauss_newton(p, bm, i, j, c, Sinv, norm, 9.0, t, n_par)
    ref = _overlap_reference(p, bm, i, j, c, Sinv, norm, 9.0, t, n_par)
    assert got[1] == ref[1] and got[1] > 0
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-12)
    np.testing.assert_allclose(got[2], ref[2], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got[3], ref[3], rtol=1e-10, atol=1e-12)
    assert K.overlap_gauss_newton(p, bm, i, j, c, Sinv, norm, 9.0, t, 0)[0] == pytest.approx(ref[0])


@pytest.mark.parametrize("inverse", [False, True])
@pytest.mark.parametrize("with_scale", [False, True])
def test_fused_appearance_matches_numpy_reference(inverse, with_scale):
    from twoview.gmm.appearance import Channel, appearance_gauss_newton, appearance_term, forward_map, inverse_map

    rng = np.random.default_rng(3)
    cam = Camera(100.0, 100.0, 39.5, 29.5, 80, 60)
    yy, xx = np.mgrid[0:60, 0:80]
    colour = np.stack([np.sin(xx / 5.0), np.cos(yy / 7.0), np.sin((xx + yy) / 9.0)], -1).astype(np.float32)
    feats = rng.normal(size=(15, 20, 8)).astype(np.float32)
    target = [Channel("colour", colour, 1.0, 1.0, 0.1), Channel("features", feats, 0.25, 0.25, 0.3)]
    means = np.column_stack([rng.uniform(-1, 1, 200), rng.uniform(-0.8, 0.8, 200), rng.uniform(1.5, 3, 200)])
    src = [rng.uniform(-1, 1, (200, 3)).astype(np.float32), rng.normal(size=(200, 8)).astype(np.float32)]
    R, t, s = so3_exp(np.array([0.02, -0.05, 0.01])), np.array([0.1, -0.05, 0.02]), 1.05
    q, J = (inverse_map if inverse else forward_map)(means, R, t, s, with_scale, True)
    ref = appearance_term(q, J, src, target, cam, 1.0)
    got = appearance_gauss_newton(means, R, t, s, inverse, with_scale, True, src, target, cam, 1.0)
    assert got.count == ref.count > 100
    np.testing.assert_allclose([got.cost, got.agreement], [ref.cost, ref.agreement], rtol=1e-5)
    np.testing.assert_allclose(got.grad, ref.grad, rtol=1e-4, atol=1e-4 * np.abs(ref.grad).max())
    np.testing.assert_allclose(got.hess, ref.hess, rtol=1e-4, atol=1e-4 * np.abs(ref.hess).max())


def test_bilinear_sample_values_and_derivatives():
    rng = np.random.default_rng(4)
    img = rng.normal(size=(7, 9, 2)).astype(np.float32)
    u, v = rng.uniform(0, 8, 50), rng.uniform(0, 6, 50)
    val, du, dv = K.bilinear_sample(img, u, v)
    x0, y0 = np.clip(np.floor(u).astype(int), 0, 7), np.clip(np.floor(v).astype(int), 0, 5)
    fx, fy = (u - x0)[:, None], (v - y0)[:, None]
    ref = (img[y0, x0] * (1 - fx) * (1 - fy) + img[y0, x0 + 1] * fx * (1 - fy)
           + img[y0 + 1, x0] * (1 - fx) * fy + img[y0 + 1, x0 + 1] * fx * fy)
    np.testing.assert_allclose(val, ref, atol=1e-5)
    h = 1e-4  # inside a cell the interpolant is bilinear: central differences are exact
    inner = (np.abs(u - np.round(u)) > 2 * h) & (np.abs(v - np.round(v)) > 2 * h)
    fd_u = (K.bilinear_sample(img, u + h, v)[0].astype(np.float64) - K.bilinear_sample(img, u - h, v)[0]) / (2 * h)
    fd_v = (K.bilinear_sample(img, u, v + h)[0].astype(np.float64) - K.bilinear_sample(img, u, v - h)[0]) / (2 * h)
    np.testing.assert_allclose(du[inner], fd_u[inner], atol=5e-2)
    np.testing.assert_allclose(dv[inner], fd_v[inner], atol=5e-2)


def test_pair_overlaps_match_gaussian_density():
    from scipy.stats import multivariate_normal

    rng = np.random.default_rng(5)
    means = rng.normal(size=(6, 3)) * 0.2
    A = rng.normal(size=(6, 3, 3)) * 0.1
    covs = A @ A.transpose(0, 2, 1) + 1e-3 * np.eye(3)
    i, j = np.repeat(np.arange(6), 6), np.tile(np.arange(6), 6)
    got = K.pair_overlaps(means, covs, i, j, 1e-3, np.inf)
    ref = [multivariate_normal.pdf(means[a] - means[b], np.zeros(3), covs[a] + covs[b] + 2e-3 * np.eye(3))
           for a, b in zip(i, j)]
    np.testing.assert_allclose(got, ref, rtol=1e-9)
    assert np.all(K.pair_overlaps(means, covs, i, j, 1e-3, 0.0) == 0.0)  # all truncated


def _knn_reference(points, queries, k, bound):
    d = np.linalg.norm(queries[:, None, :] - points[None, :, :], axis=2)
    order = np.argsort(d, axis=1, kind="stable")[:, :k]
    dk = np.take_along_axis(d, order, axis=1)
    missing = dk > bound
    dk[missing] = np.inf
    order[missing] = len(points)
    if order.shape[1] < k:  # fewer points than k
        pad = k - order.shape[1]
        dk = np.pad(dk, ((0, 0), (0, pad)), constant_values=np.inf)
        order = np.pad(order, ((0, 0), (0, pad)), constant_values=len(points))
    return dk, order


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 60), k=st.integers(1, 6), bound=st.sampled_from([np.inf, 0.05, 0.3, 2.0]),
       spread=st.sampled_from([1e-3, 0.1, 1.0, 50.0]), cell=st.sampled_from([None, 0.01, 0.2, 5.0]),
       seed=st.integers(0, 2**31 - 1), flat=st.booleans())
def test_point_grid_finds_the_exact_nearest_neighbours(n, k, bound, spread, cell, seed, flat):
    """Against brute force: any cell size, bounded or not, outliers and flat clouds."""
    from twoview.gmm.neighbours import PointGrid

    rng = np.random.default_rng(seed)
    pts = rng.normal(size=(n, 3)) * spread
    if flat:
        pts[:, 2] = 0.5
    pts[0] += 1000.0 * spread  # an outlier far from the rest
    q = np.concatenate([pts[rng.integers(0, n, 10)] + rng.normal(size=(10, 3)) * 0.1 * spread,
                        rng.normal(size=(5, 3)) * 3 * spread])
    d, i = PointGrid(pts, cell=cell).query(q, k=k, distance_upper_bound=bound)
    d_ref, i_ref = _knn_reference(pts, q, k, bound)
    d, i = d.reshape(len(q), k), i.reshape(len(q), k)
    np.testing.assert_allclose(d, d_ref, rtol=1e-12, atol=1e-12)
    # indices agree, except between equally distant points
    found = np.isfinite(d)
    np.testing.assert_array_equal(i[~found], len(pts))
    rows = np.nonzero(found)[0]
    np.testing.assert_allclose(np.linalg.norm(q[rows] - pts[i[found]], axis=1), d[found], rtol=1e-12, atol=1e-12)


def test_point_grid_edge_cases():
    from twoview.gmm.neighbours import PointGrid

    empty = PointGrid(np.zeros((0, 3)))
    d, i = empty.query(np.zeros((2, 3)), k=2)
    assert np.all(np.isinf(d)) and np.all(i == 0)
    g = PointGrid(np.array([[0.0, 0.0, 1.0], [0.0, 0.0, 2.0]]))
    d, i = g.query(np.array([[np.nan, 0.0, 1.0], [0.0, 0.0, 1.1]]))
    assert np.isinf(d[0]) and i[0] == 2 and i[1] == 0 and d[1] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="finite"):
        PointGrid(np.array([[0.0, np.inf, 1.0]]))
    with pytest.raises(ValueError, match="k must be"):
        g.query(np.zeros((1, 3)), k=0)

"""The last step of the mixture alignment: dense components, nearest counterparts.

The coarse-to-fine overlap objective (:mod:`twoview.gmm.objective`) gives the mixtures'
alignment a wide basin, but its Gaussian kernels stop pulling a pair whose residual is
past their width, and the quadtree's few thousand patches sample the surfaces coarsely.
Once aligned, the pose is polished on the views' dense mixtures (one component per
small cell, ``BuildConfig.dense_cells`` of them, its covariance the local surface's, see
:func:`twoview.gmm.mixture.build_mixture`): each visible component of view 0 is paired
with its nearest component of view 1 within a radius, and the pose maximises the
likelihood of the pairs' offsets under their combined covariances ``Σ1 + R Σ0 Rᵀ``
with a Student-t density (ν = 5): the limit of the overlap objective as its kernels
shrink to the components' own shapes, robust to the pairs that meet no counterpart.
This is the distribution-to-distribution alignment of GICP (Segal et al. 2009) on the
mixtures' own components; Gauss-Newton with Levenberg damping, pairs re-found each
iteration.
"""

from __future__ import annotations

import numpy as np

from twoview._threads import worker
from twoview.geometry.rotation import so3_exp
from twoview.gmm.config import AlignConfig
from twoview.gmm.mixture import GaussianMixture
from twoview.gmm.objective import visible_in

#: Student-t degrees of freedom of the pair offsets (5: a common robust choice)
NU = 5.0


def polish(mix0: GaussianMixture, mix1: GaussianMixture, tree1, R: np.ndarray, t: np.ndarray, cfg: AlignConfig,
           radius: float, iterations: int = 12, repair_every: int = 3, max_components: int = 8000) -> tuple[np.ndarray, np.ndarray, dict]:
    """Refine ``cam1_from_cam0`` (R, t) on dense mixtures (see the module docstring).

    Args:
        mix0, mix1: the dense mixtures of the two views (means (N, 3), covs (N, 3, 3) in
            their cameras; ``mix1`` with its camera and z-buffer for visibility).
        tree1: a :class:`~twoview.gmm.neighbours.PointGrid` of ``mix1.means``.
        R, t: the starting pose (the aligned mixtures').
        cfg: alignment options (visibility, occlusion tolerance).
        radius: pairs farther apart than this (metres) are not pairs.
        iterations: Gauss-Newton iterations at most.
        repair_every: pairs are re-found every this many iterations (and covariances
            re-combined), as ICP re-pairs; between, they are kept (the pose moves little).
        max_components: view 0's visible components used, evenly spread (cost ~ linear).

    Returns:
        (R, t, info) with ``pairs`` (at the end), ``iterations``, ``cost_before/after``
        (mean robust cost per pair) and ``covariance`` (6, 6): the inverse Gauss-Newton
        matrix of the pairs at the end, in :class:`~twoview.result.PoseResult`'s
        convention; neighbouring components are not independent, so it is a lower bound
        (the pipeline scales it by a factor fitted on real data).
    """
    from twoview.gmm._kernels import d2d_gauss_newton

    R, t = R.copy(), t.copy()
    info: dict = {"pairs": 0, "iterations": 0}
    if len(mix0) < cfg.min_visible or len(mix1) < cfg.min_visible:
        info["skipped"] = "too few dense components"
        return R, t, info
    a_means = np.ascontiguousarray(mix0.means)
    b_means = np.ascontiguousarray(mix1.means)

    def pairs(R, t):
        p = a_means @ R.T + t
        vis = np.flatnonzero(visible_in(p, mix1, cfg))
        if len(vis) < cfg.min_visible:
            return None
        if len(vis) > max_components:
            vis = vis[np.linspace(0, len(vis) - 1, max_components).astype(np.int64)]
        # the search, the polish's largest cost, on both cores: half the queries on the
        # refinement's worker thread (the grid's kernel releases the GIL)
        q = p[vis]
        half = len(q) // 2
        job = worker("gmm").submit(tree1.query, q[half:], 1, radius)
        d0, j0 = tree1.query(q[:half], k=1, distance_upper_bound=radius)
        d1, j1 = job.result()
        d, j = np.concatenate([d0, d1]), np.concatenate([j0, j1])
        ok = np.isfinite(d)
        i, j = vis[ok], j[ok].astype(np.int64)
        return i.astype(np.int64), j, _pair_information(mix0.covs, mix1.covs, R, i, j)

    found = pairs(R, t)
    if found is None:
        info["skipped"] = "too few visible dense components"
        return R, t, info
    i, j, Sinv = found
    c0, g, H = d2d_gauss_newton(a_means, R, t, b_means, i, j, Sinv, NU, True)
    info["cost_before"] = float(c0)
    lam = 1e-4
    for it in range(iterations):
        accepted = False
        for _ in range(6):
            try:
                delta = -np.linalg.solve(H + lam * np.diag(np.diag(H) + 1e-12), g)
            except np.linalg.LinAlgError:
                lam *= 10
                continue
            dR = so3_exp(delta[:3])
            R2, t2 = dR @ R, dR @ t + delta[3:]
            c2 = d2d_gauss_newton(a_means, R2, t2, b_means, i, j, Sinv, NU, False)[0]
            if c2 < c0:
                R, t = R2, t2
                lam = max(lam / 3, 1e-7)
                accepted = True
                break
            lam *= 10
        info["iterations"] = it + 1
        small = (np.linalg.norm(delta[:3]) < cfg.step_tolerance * 0.1
                 and np.linalg.norm(delta[3:]) < cfg.step_tolerance * 0.1 * radius)
        if not accepted or small:
            break
        if (it + 1) % repair_every == 0:  # re-pair at the moved pose, as ICP does
            found = pairs(R, t)
            if found is None:
                break
            i, j, Sinv = found
        c0, g, H = d2d_gauss_newton(a_means, R, t, b_means, i, j, Sinv, NU, True)
    info.update(pairs=int(len(i)), cost_after=float(c0))
    if mix0.measured_covs is not None or mix1.measured_covs is not None:
        # aligned on planes; the uncertainty from the surfaces as measured (sensor noise
        # and all), which is what the pipeline's covariance scale was fitted on
        C0 = mix0.covs if mix0.measured_covs is None else mix0.measured_covs
        C1 = mix1.covs if mix1.measured_covs is None else mix1.measured_covs
        H = d2d_gauss_newton(a_means, R, t, b_means, i, j, _pair_information(C0, C1, R, i, j), NU, True)[2]
    try:
        info["covariance"] = pose_covariance(np.linalg.inv(H * len(i)), t)
    except np.linalg.LinAlgError:
        pass
    return R, t, info


def _pair_information(covs0: np.ndarray, covs1: np.ndarray, R: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """(M, 3, 3) inverse combined covariances ``(Σ1[j] + R Σ0[i] Rᵀ)⁻¹`` of the pairs (i, j)."""
    from twoview.gmm._kernels import pair_information

    return pair_information(np.ascontiguousarray(covs0), np.ascontiguousarray(covs1), np.ascontiguousarray(R, dtype=np.float64),
                            np.ascontiguousarray(i, dtype=np.int64), np.ascontiguousarray(j, dtype=np.int64))


def pose_covariance(cov_increment: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The (6, 6) covariance of the left increment ``(omega, v)`` (``R' = exp(omega) R``,
    ``t' = exp(omega) t + v``) in :class:`~twoview.result.PoseResult`'s convention
    ``(w, dt)`` with ``R = Exp(w) R_hat``, ``t = t_hat + dt``: ``dt = omega x t + v``."""
    from twoview.geometry.rotation import hat

    M = np.eye(6)
    M[3:, :3] = -hat(np.asarray(t, float))
    return M @ cov_increment @ M.T

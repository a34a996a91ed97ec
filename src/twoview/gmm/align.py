"""Pose refinement by aligning two single-view Gaussian mixtures (GARPS-style).

Coarse to fine: each level adds an isotropic std ``inflation[l] x median depth`` to every
Gaussian (wide basin first, then sharp), recomputes visibility, and runs
Levenberg-Marquardt on the IRLS form of the overlap (or L-BFGS through the exact torch
objective). Pairs are re-found by k-nearest-neighbour search at every evaluation, so the
cost is about ``N x knn`` per iteration.

Stopping rules per level: update below ``step_tolerance`` (radians / fraction of median
depth), ``max_iterations`` reached, or the damping grows past 1e6 (no ascent possible).
The final pose is kept only if its normalised score at the finest level is at least the
initial pose's (``reject_worse``).
"""

from __future__ import annotations

import time

import numpy as np

from twoview.errors import InputError
from twoview.geometry.camera import Camera
from twoview.geometry.pose import Pose
from twoview.gmm.config import AlignConfig, GMMConfig
from twoview.gmm.mixture import GaussianMixture, build_mixture
from twoview.geometry.rotation import so3_log
from twoview.gmm.objective import (
    Prepared,
    apply_increment,
    apply_state,
    candidate_pairs,
    evaluate,
    self_overlap,
    visible_in,
)
from twoview.result import PoseResult

SOLVER = "gmm"


def _visibility(a: Prepared, b: Prepared, R, t, s, cfg: AlignConfig):
    """vis_a: A's Gaussians seen by camera 1; vis_b: B's seen by camera 0."""
    p = apply_state(a.means, R, t, s)
    vis_a = visible_in(p, b.mix, cfg)
    q = (b.means - t) @ R / s  # inverse map into camera 0
    vis_b = visible_in(q, a.mix, cfg)
    return vis_a, vis_b


def normalised_score(a: Prepared, b: Prepared, R, t, s, var, cfg: AlignConfig):
    """(NCC score in [0, 1], number of visible Gaussians in A, in B) at a state."""
    vis_a, vis_b = _visibility(a, b, R, t, s, cfg)
    ev = evaluate(a, b, R, t, s, var, vis_a, vis_b, cfg, with_derivatives=False)
    # A is compared at scale s: its self overlap is taken at that scale too.
    eaa = self_overlap(a, var, vis_a, cfg) if s == 1.0 else self_overlap_scaled(a, var, vis_a, cfg, s)
    ebb = self_overlap(b, var, vis_b, cfg)
    denom = np.sqrt(max(eaa, 0.0) * max(ebb, 0.0))
    ncc = ev.energy / denom if denom > 0 else 0.0
    return float(ncc), int(vis_a.sum()), int(vis_b.sum())


def self_overlap_scaled(a: Prepared, var, vis, cfg, s):
    """E_AA of mixture A scaled by s: the same kernels with the inflation rescaled, times
    s^-3 (densities in three dimensions)."""
    return self_overlap(a, var / s**2, vis, cfg) / s**3


def align_mixtures(
    mix0: GaussianMixture,
    mix1: GaussianMixture,
    init: Pose,
    config: AlignConfig | None = None,
) -> PoseResult:
    """Refine ``cam1_from_cam0`` by aligning mixture 0 (camera-0 frame) to mixture 1.

    Args:
        mix0, mix1: the two mixtures, each in its own camera frame. Cameras and z-buffers
            (set by :func:`build_mixture`) enable the visibility test.
        init: initial ``cam1_from_cam0``.
        config: objective and optimiser options.

    Returns:
        :class:`PoseResult` (solver "gmm", metric) with ``info`` keys ``score_before``,
        ``score_after``, ``iterations``, ``levels``, ``rejected``, ``scale``; a failure
        when a mixture is empty/tiny or the views do not overlap.
    """
    cfg = config or AlignConfig()
    if not isinstance(init, Pose):
        raise InputError("init", f"expected a twoview.Pose, got {type(init).__name__}")
    tiny = max(cfg.min_visible, 4)
    for name, m in (("mixture 0", mix0), ("mixture 1", mix1)):
        if len(m) < tiny:
            return PoseResult.failure(f"{name} has {len(m)} Gaussians (need at least {tiny}): "
                                      "too little valid depth", solver=SOLVER)
    mix0.ensure_zbuffer()
    mix1.ensure_zbuffer()
    a = Prepared.from_mixture(mix0, cfg)
    b = Prepared.from_mixture(mix1, cfg)
    depth_scale = 0.5 * (mix0.median_depth() + mix1.median_depth())
    R, t, s = init.R.copy(), init.t.copy(), 1.0
    fine_var = (cfg.inflation[-1] * depth_scale) ** 2

    if cfg.estimate_scale:
        s = _initial_scale(a, b, R, t, cfg)
    score0, nva, nvb = normalised_score(a, b, R, t, 1.0, fine_var, cfg)
    if cfg.estimate_scale:  # the initial state to beat is the best of s = 1 and the depth-ratio scale
        score_s, nva_s, nvb_s = normalised_score(a, b, R, t, s, fine_var, cfg)
        nva, nvb = max(nva, nva_s), max(nvb, nvb_s)
    if min(nva, nvb) < cfg.min_visible:
        return PoseResult.failure(
            f"no overlap at the initial pose: {nva} Gaussians of view 0 visible in view 1, {nvb} of view 1 "
            f"in view 0 (need {cfg.min_visible})", solver=SOLVER, info={"score_before": score0})

    total_iters = 0
    levels = []
    for level, infl in enumerate(cfg.inflation):
        var = (infl * depth_scale) ** 2
        vis_a, vis_b = _visibility(a, b, R, t, s, cfg)
        if min(vis_a.sum(), vis_b.sum()) < cfg.min_visible:
            break
        if cfg.optimizer == "lbfgs":
            R, t, s, it, E = _lbfgs_level(a, b, R, t, s, var, vis_a, vis_b, cfg)
        else:
            R, t, s, it, E = _lm_level(a, b, R, t, s, var, vis_a, vis_b, cfg, depth_scale)
        total_iters += it
        levels.append({"inflation": infl, "iterations": it, "energy": E})

    score1, nva1, nvb1 = normalised_score(a, b, R, t, s, fine_var, cfg)
    info = {
        "score_before": score0,
        "score_after": score1,
        "iterations": total_iters,
        "levels": levels,
        "scale": s,
        "num_gaussians": [len(mix0), len(mix1)],
        "visible": [nva1, nvb1],
        "rejected": False,
    }
    pose = Pose(R, t)
    if not np.all(np.isfinite(pose.matrix)):
        return PoseResult.failure("the optimisation diverged (non-finite pose)", solver=SOLVER, info=info)
    if cfg.reject_worse and not (score1 >= score0):
        info["rejected"] = True
        pose, s, info["scale"] = init, 1.0, 1.0
    return PoseResult(
        success=True,
        cam1_from_cam0=pose,
        metric=True,
        solver=SOLVER,
        confidence=float(np.clip(max(score1, score0) if info["rejected"] else score1, 0.0, 1.0)),
        info=info,
    )


def _initial_scale(a: Prepared, b: Prepared, R, t, cfg: AlignConfig) -> float:
    """Relative scale of mixture 0 that puts its Gaussians on camera 1's observed depth:
    the median over visible Gaussians of ``(z_obs - t_z) / (R mu)_z``, twice (visibility
    depends on the scale). 1 when camera 1 has no z-buffer."""
    mix1 = b.mix
    if mix1.zbuffer is None or mix1.camera is None:
        return 1.0
    s = 1.0
    rel = cfg.replace(occlusion_tolerance=1.0)  # scale unknown: only the frustum matters
    for _ in range(2):
        p = apply_state(a.means, R, t, s)
        vis = visible_in(p, mix1, rel)
        if vis.sum() < cfg.min_visible:
            return s
        uv = mix1.camera.project(p[vis])
        st = mix1.zbuffer_stride
        hz, wz = mix1.zbuffer.shape
        zb = mix1.zbuffer[np.clip(((uv[:, 1] + 0.5) / st).astype(int), 0, hz - 1),
                          np.clip(((uv[:, 0] + 0.5) / st).astype(int), 0, wz - 1)]
        rz = (a.means[vis] @ R.T)[:, 2]
        ok = np.isfinite(zb) & (rz > 1e-6)
        if ok.sum() < cfg.min_visible:
            return s
        s = float(np.clip(np.median((zb[ok] - t[2]) / rz[ok]), 0.5, 2.0))
    return s


def _lm_level(a, b, R, t, s, var, vis_a, vis_b, cfg: AlignConfig, depth_scale: float, max_rounds: int = 2):
    """Levenberg-Marquardt on the IRLS form. Pairs are fixed within a round and re-found
    between rounds; the level ends when a round moves the pose less than the tolerance."""
    est_scale = cfg.estimate_scale
    total, E = 0, 0.0
    for _ in range(max_rounds):
        pairs = candidate_pairs(a, b, R, t, s, var, vis_a, vis_b, cfg)
        R0, t0 = R, t
        R, t, s, it, E = _lm_round(a, b, R, t, s, var, vis_a, vis_b, cfg, depth_scale, est_scale, pairs)
        total += it
        moved_rot = np.linalg.norm(so3_log(R @ R0.T))
        moved_t = np.linalg.norm(t - t0)
        if it == 0 or (moved_rot < 10 * cfg.step_tolerance and moved_t < 10 * cfg.step_tolerance * depth_scale):
            break
    return R, t, s, total, E


def _lm_round(a, b, R, t, s, var, vis_a, vis_b, cfg, depth_scale, est_scale, pairs):
    ev = evaluate(a, b, R, t, s, var, vis_a, vis_b, cfg, True, est_scale, pairs)
    if ev.grad is None:
        return R, t, s, 0, 0.0
    lam = 1e-3
    it = 0
    for it in range(1, cfg.max_iterations + 1):
        H = ev.hess
        D = np.diag(np.maximum(np.diag(H), 1e-12 * max(np.abs(H).max(), 1e-300)))
        try:
            delta = np.linalg.solve(H + lam * D, ev.grad)
        except np.linalg.LinAlgError:
            break
        if not np.all(np.isfinite(delta)):
            break
        R2, t2, s2 = apply_increment(R, t, s, delta)
        ev2 = evaluate(a, b, R2, t2, s2, var, vis_a, vis_b, cfg, True, est_scale, pairs)
        if ev2.grad is not None and ev2.energy >= ev.energy:
            R, t, s, ev = R2, t2, s2, ev2
            lam = max(lam / 3.0, 1e-7)
            small = (np.linalg.norm(delta[:3]) < cfg.step_tolerance
                     and np.linalg.norm(delta[3:6]) < cfg.step_tolerance * depth_scale)
            if small:
                break
        else:
            lam *= 8.0
            if lam > 1e6:
                break
    return R, t, s, it, ev.energy


def _lbfgs_level(a, b, R, t, s, var, vis_a, vis_b, cfg: AlignConfig):
    """L-BFGS on the exact torch objective; pairs re-found between rounds."""
    import torch

    from twoview.gmm.objective import energy_torch, find_pairs, pair_similarity

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # thousands of 3x3 terms: threading only adds overhead
    try:
        return _lbfgs_rounds(a, b, R, t, s, var, vis_a, vis_b, cfg)
    finally:
        torch.set_num_threads(threads)


def _lbfgs_rounds(a, b, R, t, s, var, vis_a, vis_b, cfg: AlignConfig):
    import torch

    from twoview.gmm.objective import energy_torch, find_pairs, pair_similarity

    n = 7 if cfg.estimate_scale else 6
    iters = 0
    E = 0.0
    am, ac = torch.from_numpy(a.means), torch.from_numpy(np.ascontiguousarray(a.covs))
    bm, bc = torch.from_numpy(b.means), torch.from_numpy(np.ascontiguousarray(b.covs))
    for _ in range(3):
        p = apply_state(a.means, R, t, s)
        radius = cfg.truncation_sigmas * np.sqrt(s**2 * a.sigma_p90**2 + b.sigma_p90**2 + 2 * var) * 1.5
        i, j = find_pairs(p, b, cfg.knn, radius, vis_a, vis_b)
        if not len(i):
            break
        c = torch.from_numpy(pair_similarity(a, b, i, j, cfg))
        ti, tj = torch.from_numpy(i), torch.from_numpy(j)
        R0, t0 = torch.from_numpy(R), torch.from_numpy(t)
        with torch.no_grad():
            e0 = float(energy_torch(torch.zeros(n, dtype=torch.float64), am, ac, bm, bc, ti, tj, c, R0, t0, s, var))
        if e0 <= 0:
            break
        xi = torch.zeros(n, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([xi], lr=1.0, max_iter=cfg.max_iterations, tolerance_change=1e-10,
                                line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = -energy_torch(xi, am, ac, bm, bc, ti, tj, c, R0, t0, s, var) / e0
            loss.backward()
            return loss

        opt.step(closure)
        iters += opt.state[opt._params[0]].get("n_iter", 0)
        delta = xi.detach().numpy()
        R, t, s = apply_increment(R, t, s, delta)
        E = float(-closure().item() * e0)
        if np.linalg.norm(delta[:3]) < cfg.step_tolerance:
            break
    return R, t, s, iters, E


def refine_relative_pose(
    image0: np.ndarray,
    image1: np.ndarray,
    camera0: Camera,
    camera1: Camera,
    depth0: np.ndarray,
    depth1: np.ndarray,
    init: Pose,
    config: GMMConfig | None = None,
) -> PoseResult:
    """Refine a metric relative pose by aligning the two views' Gaussian mixtures.

    Args:
        image0, image1: (H, W, 3) uint8 RGB.
        camera0, camera1: intrinsics of each image.
        depth0, depth1: (H, W) z-depth in metres, NaN invalid.
        init: initial ``cam1_from_cam0`` (front end, a pose file, or identity).
        config: build and alignment options.

    Returns:
        :class:`PoseResult` with solver "gmm", ``metric=True``, ``confidence`` = final
        normalised score, ``info`` with ``score_before``/``score_after``/``iterations``/
        ``rejected`` and ``timings_ms`` with "build" and "optimize". Failures (empty or
        tiny mixtures, no overlap) are ``success=False`` with a reason.

    Raises:
        InputError: missing depth, shape mismatches, or depth with no valid pixel.
    """
    cfg = config or GMMConfig()
    t0 = time.perf_counter()
    mix0 = build_mixture(image0, depth0, camera0, cfg.build, name="0")
    mix1 = build_mixture(image1, depth1, camera1, cfg.build, name="1")
    t1 = time.perf_counter()
    res = align_mixtures(mix0, mix1, init, cfg.align)
    t2 = time.perf_counter()
    res.timings_ms.update({"build": (t1 - t0) * 1e3, "optimize": (t2 - t1) * 1e3})
    res.info.setdefault("build", {"view0": mix0.info, "view1": mix1.info})
    return res

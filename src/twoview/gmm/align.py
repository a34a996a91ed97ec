"""Pose refinement by aligning two single-view Gaussian mixtures (GARPS-style).

Objective (minimised, see :class:`AlignConfig`): ``wg (1 - NCC) + wa A``: the
normalised geometric overlap of the two mixtures and the robust appearance residual of
each mixture's Gaussians in the other view (:mod:`twoview.gmm.appearance`).

Coarse to fine: each level adds an isotropic std ``inflation[l] x median depth`` to every
Gaussian and blurs the appearance fields by ``blur_px[l]`` (wide basin first, then
sharp), recomputes visibility, and runs Levenberg-Marquardt on the Gauss-Newton form (the
overlap in its IRLS form, covariances frozen per iteration as in GICP), or L-BFGS on the
same objective and gradient. Pairs are re-found by k-nearest-neighbour search between
rounds, so the cost is about ``N x knn`` per iteration.

Stopping rules per level: update below ``step_tolerance`` (radians / fraction of median
depth), ``max_iterations`` reached, or the damping grows past 1e6 (no ascent possible).
The final pose is kept only if, at the finest level, the objective is no higher and the
confidence (geometric NCC and appearance agreement, in [0, 1], comparable across pairs)
no lower than at the initial pose (``reject_worse``).
"""

from __future__ import annotations

import time

import numpy as np

from twoview.errors import InputError
from twoview.geometry.pose import Pose
from twoview.gmm.config import AlignConfig, GMMConfig
from twoview.gmm.mixture import GaussianMixture, build_mixture, load_feature_backend, pinhole_view
from twoview.geometry.rotation import so3_log
from twoview.gmm.appearance import (
    appearance_gauss_newton,
    fit_gain_bias,
    channels,
    forward_map,
    inverse_map,
    project_inside,
    sample_at_pixels,
    shared_feature_basis,
    textured,
)
from twoview.gmm.objective import (
    Prepared,
    apply_increment,
    apply_state,
    candidate_pairs,
    evaluate,
    freeze_covariances,
    registration_noise,
    self_overlap,
    visible_in,
)
from twoview._threads import blas_single_thread, worker
from twoview.result import PoseResult

SOLVER = "gmm"

def _pool():
    """One worker thread shared by all refinements (the caller's thread is the other)."""
    return worker("gmm")


def _visibility(a: Prepared, b: Prepared, R, t, s, cfg: AlignConfig):
    """vis_a: A's Gaussians seen by camera 1; vis_b: B's seen by camera 0.

    When the other view's z-buffer hides nearly all (> 75 %) of what its frustum shows,
    the two depth maps disagree (a scale error of monocular depth, say), not the scene:
    that direction keeps the frustum test only (inside the image, over valid depth)."""
    p = apply_state(a.means, R, t, s)
    q = (b.means - t) @ R / s  # inverse map into camera 0
    (vis_a, fa), (vis_b, fb) = visible_in(p, b.mix, cfg, True), visible_in(q, a.mix, cfg, True)
    if vis_a.sum() < 0.25 * fa.sum():
        vis_a = fa
    if vis_b.sum() < 0.25 * fb.sum():
        vis_b = fb
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


class _Level:
    """The objective at one coarse-to-fine level, with the pieces that stay fixed during
    one LM round (visibility, geometric pairs, self overlaps, the Gaussians' own
    appearance): ``F = wg (1 - E_AB / D) + wa (C_fwd + C_inv) / N``."""

    def __init__(self, a: Prepared, b: Prepared, var: float, blur: float, cfg: AlignConfig, feature_basis=None):
        self.a, self.b, self.var, self.cfg = a, b, var, cfg
        self.wg, self.wa = cfg.geometry_weight, cfg.appearance_weight
        self._round_key = None  # the state start_round last fixed
        fa, fb = a.mix.appearance, b.mix.appearance
        if self.wa > 0 and (fa is None or fb is None or a.mix.camera is None or b.mix.camera is None
                            or not (cfg.use_colour or (cfg.use_features and fa.features is not None
                                                       and fb.features is not None))):
            self.wa = 0.0  # nothing to compare (e.g. mixtures read from PLY files)
        if self.wa > 0:
            feats = cfg.use_features and fa.features is not None and fb.features is not None
            args = (blur, cfg.colour_residual_sigma, cfg.feature_residual_sigma, cfg.use_colour, feats, feature_basis)

            def view(field_, p):  # one view's channels, its Gaussians' own appearance, the textured ones
                ch = channels(field_, *args)
                uv = p.mix.camera.project(p.means)
                return ch, sample_at_pixels(ch, uv), textured(ch, uv, cfg.appearance_fraction)

            job = _pool().submit(view, fb, b)
            self.chan_a, self.own_a, self.tex_a = view(fa, a)
            self.chan_b, self.own_b, self.tex_b = job.result()

    def start_round(self, R, t, s):
        """Fix visibility, pairs and normalisers at the current state (kept when the
        state and the kernels are those of the last round: the initial score and the
        fine level's first round start from the same pose)."""
        key = (R.tobytes(), t.tobytes(), float(s), self.var)
        if self._round_key == key:
            return
        a, b, cfg = self.a, self.b, self.cfg
        self.vis_a, self.vis_b = _visibility(a, b, R, t, s, cfg)

        def geometry():  # on the worker thread, beside the self overlaps and colour fits
            pairs = candidate_pairs(a, b, R, t, s, self.var, self.vis_a, self.vis_b, cfg)
            return pairs, freeze_covariances(a, b, R, s, self.var, pairs)

        job = _pool().submit(geometry)
        eaa = self_overlap(a, self.var, self.vis_a, cfg) if s == 1.0 else self_overlap_scaled(a, self.var, self.vis_a, cfg, s)
        self.D = np.sqrt(max(eaa, 0.0) * max(self_overlap(b, self.var, self.vis_b, cfg), 0.0))
        self.idx_a, self.idx_b = np.flatnonzero(self.vis_a), np.flatnonzero(self.vis_b)
        if self.wa > 0:
            self.idx_a, self.idx_b = np.flatnonzero(self.vis_a & self.tex_a), np.flatnonzero(self.vis_b & self.tex_b)
        self.N = max(len(self.idx_a) + len(self.idx_b), 1)
        self.means_a, self.means_b = a.means[self.idx_a], b.means[self.idx_b]
        if self.wa > 0:
            self.src_a = self._compensated(self.own_a, self.idx_a, forward_map(self.means_a, R, t, s, False, False)[0],
                                           self.chan_b, b.mix.camera)
            self.src_b = self._compensated(self.own_b, self.idx_b, inverse_map(self.means_b, R, t, s, False, False)[0],
                                           self.chan_a, a.mix.camera)
            if cfg.adapt_appearance_noise:
                self._adapt_appearance_noise(R, t, s)
        self.pairs, self.frozen = job.result()
        self._round_key = key

    def _adapt_appearance_noise(self, R, t, s):
        """Each channel group's residual scale from the data, as the geometric kernels'
        (``adapt_noise``): the robust spread (1.4826 MAD per channel) of the compared
        Gaussians' residuals at this state, never below the configured sigma. Colour
        that disagrees with the geometry (JPEG blocks, misregistration, exposure, a rough
        pose) then weighs less, and as much more as it agrees."""
        import dataclasses as _dc

        qa = forward_map(self.means_a, R, t, s, False, False)[0]
        qb = inverse_map(self.means_b, R, t, s, False, False)[0]
        ia, uva = project_inside(qa, self.b.mix.camera)
        ib, uvb = project_inside(qb, self.a.mix.camera)
        if len(ia) + len(ib) < 30:
            return
        base = getattr(self, "_sigma_base", None)
        if base is None:
            base = self._sigma_base = [ch.sigma for ch in self.chan_a]
        fa = sample_at_pixels(self.chan_b, uva)
        fb = sample_at_pixels(self.chan_a, uvb)
        sig = []
        for k in range(len(self.chan_a)):
            r = np.concatenate([(fa[k] - self.src_a[k][ia]).ravel(), (fb[k] - self.src_b[k][ib]).ravel()])
            sig.append(max(base[k], 1.4826 * float(np.median(np.abs(r)))))
        self.chan_a = [_dc.replace(ch, sigma=v) for ch, v in zip(self.chan_a, sig)]
        self.chan_b = [_dc.replace(ch, sigma=v) for ch, v in zip(self.chan_b, sig)]
        self.appearance_sigma = sig

    def _compensated(self, own, idx, q, target, camera):
        """The visible Gaussians' own appearance; colours mapped by the affine colour
        change (exposure, white balance) seen between the views at this state."""
        out = [v[idx] for v in own]
        if not self.cfg.compensate_exposure:
            return out
        inside, uv = project_inside(q, camera)
        for k, ch in enumerate(target):
            if ch.name == "colour" and len(inside) >= 30:
                dst = sample_at_pixels([ch], uv)[0]
                gain, bias = fit_gain_bias(out[k][inside], dst)
                out[k] = (out[k] * gain + bias).astype(out[k].dtype)
        return out

    def __call__(self, R, t, s, with_scale: bool, deriv: bool = True):
        """(F, gradient, Gauss-Newton matrix) at a state (derivatives w.r.t. the left
        increment, see :func:`apply_increment`). ``self.ncc`` and ``self.app`` keep the
        terms of the last evaluation (the geometric NCC score and the mean appearance
        cost)."""
        n = 7 if with_scale else 6
        F, g, H = 0.0, np.zeros(n), np.zeros((n, n))
        self.ncc, self.app, self.agree = 0.0, 0.0, 0.0
        geo = None
        if self.D > 0 and (self.wg > 0 or not deriv):  # on the worker thread, beside the appearance
            geo = _pool().submit(evaluate, self.a, self.b, R, t, s, self.var, self.vis_a, self.vis_b, self.cfg,
                                 deriv and self.wg > 0, with_scale, self.pairs, self.frozen)
        if self.wa > 0:
            cam1, cam0 = self.b.mix.camera, self.a.mix.camera
            huber = self.cfg.appearance_huber
            fwd = appearance_gauss_newton(self.means_a, R, t, s, False, with_scale, deriv, self.src_a,
                                          self.chan_b, cam1, huber)
            inv = appearance_gauss_newton(self.means_b, R, t, s, True, with_scale, deriv, self.src_b,
                                          self.chan_a, cam0, huber)
            self.app = (fwd.cost + inv.cost) / self.N
            self.agree = (fwd.agreement + inv.agreement) / self.N
            F += self.wa * self.app
            if deriv:
                g += self.wa * (fwd.grad + inv.grad) / self.N
                H += self.wa * (fwd.hess + inv.hess) / self.N
        if geo is not None:
            ev = geo.result()
            self.ncc = ev.energy / self.D
            F += self.wg * (1.0 - self.ncc)
            if deriv and ev.grad is not None:
                g -= self.wg * ev.grad / self.D
                H += self.wg * ev.hess / self.D
        return F, g, H

    def score(self, R, t, s):
        """Fix the round at a state and evaluate there: (F, NCC, visible in A, in B)."""
        self.start_round(R, t, s)
        F = self(R, t, s, False, deriv=False)[0]
        return F, float(self.ncc), int(self.vis_a.sum()), int(self.vis_b.sum())

    def confidence(self) -> float:
        """How well the two mixtures agree at the last evaluated state, in [0, 1]: the
        mean of the geometric NCC and the appearance agreement (the mean over the
        compared Gaussians of ``exp(-|r|^2 / 2)`` of their normalised residual)."""
        parts = [self.ncc] if self.D > 0 else []
        if self.wa > 0:
            parts.append(self.agree)
        return float(np.clip(np.mean(parts), 0.0, 1.0)) if parts else 0.0


@blas_single_thread
def _as_init_pose(init) -> Pose:
    """The initial pose as a :class:`Pose`: given as one, or as a 4x4 / 3x4 matrix."""
    if isinstance(init, Pose):
        return init
    m = np.asarray(init, dtype=float) if isinstance(init, (np.ndarray, list, tuple)) else None
    if m is None or m.shape not in ((4, 4), (3, 4)):
        got = type(init).__name__ if m is None else f"an array of shape {m.shape}"
        raise InputError("init", f"expected a twoview.Pose or a 4x4 / 3x4 cam1_from_cam0 matrix, got {got}")
    try:
        return Pose.from_matrix(m)
    except ValueError as e:
        raise InputError("init", str(e)) from None


def align_mixtures(
    mix0: GaussianMixture,
    mix1: GaussianMixture,
    init: "Pose | np.ndarray",
    config: AlignConfig | dict | None = None,
) -> PoseResult:
    """Refine ``cam1_from_cam0`` by aligning mixture 0 (camera-0 frame) to mixture 1.

    Args:
        mix0, mix1: the two mixtures, each in its own camera frame. Cameras and z-buffers
            (set by :func:`build_mixture`) enable the visibility test; appearance fields
            (also set by it) enable the appearance term.
        init: initial ``cam1_from_cam0``: a :class:`Pose` or a 4x4 / 3x4 matrix.
        config: objective and optimiser options.

    Returns:
        :class:`PoseResult` (solver "gmm", metric) with ``info`` keys ``score_before``,
        ``score_after`` (geometric NCC in [0, 1]), ``objective_before``,
        ``objective_after`` (the minimised objective at the finest level), ``iterations``,
        ``levels``, ``rejected``, ``scale``; a failure when a mixture is empty/tiny or
        the views do not overlap.
    """
    cfg = AlignConfig.coerce(config)
    init = _as_init_pose(init)
    tiny = max(cfg.min_visible, 4)
    for name, m in (("mixture 0", mix0), ("mixture 1", mix1)):
        if len(m) < tiny:
            return PoseResult.failure(f"{name} has {len(m)} Gaussians (need at least {tiny}): "
                                      "too little valid depth", solver=SOLVER)
    for mix in (mix0, mix1):  # mixtures read from files get them rendered from their Gaussians
        mix.ensure_zbuffer()
        if cfg.appearance_weight > 0:
            mix.ensure_appearance()
    job = _pool().submit(Prepared.from_mixture, mix1, cfg)
    a = Prepared.from_mixture(mix0, cfg)
    b = job.result()
    basis = None
    if a.features is not None and b.features is not None:
        # descriptors are compared on the principal directions of both views' descriptors
        # (pair similarities and the appearance term alike): most of their variance at a
        # fraction of the cost
        basis = shared_feature_basis(a.features, b.features, cfg.feature_dims)
        if basis is not None:
            for p in (a, b):
                f = p.features @ basis
                p.features = (f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)).astype(np.float32)
    depth_scale = 0.5 * (mix0.median_depth() + mix1.median_depth())
    R, t, s = init.R.copy(), init.t.copy(), 1.0
    fine_var = (cfg.inflation[-1] * depth_scale) ** 2
    fine = _Level(a, b, fine_var, cfg.blur_px[-1], cfg, basis)

    s_init = _initial_scale(a, b, R, t, cfg) if cfg.estimate_scale else 1.0
    # With a relative scale s, the state maps mixture 0 onto mixture 1, so its translation
    # is in mixture 1's (depth map 1's) units; poses in and out are in the units of the
    # two maps' geometric-mean scale, as the monodepth solver's: t_state = sqrt(s) t_pose.
    # Neither map's scale error is favoured, and independent errors partly cancel.
    t = t * np.sqrt(s_init)
    noise = 0.0
    if cfg.adapt_noise and cfg.geometry_weight > 0:
        # the misalignment the data show at the initial pose: decides which coarse levels
        # run (searched far enough to see the coarsest level's scale) and, unless they
        # run and move the pose, how much the fine level's kernels widen
        vis_a, vis_b = _visibility(a, b, R, t, s_init, cfg)
        noise = registration_noise(a, b, R, t, s_init, vis_a, vis_b, cfg,
                                   search_radius=2.0 * max(cfg.inflation) * depth_scale)
        fine.var = fine_var + noise / 2
    noise_init = noise
    obj0, score0, conf0, nva, nvb = _reference(fine, R, init.t, s_init)
    s = s_init  # the optimisation starts from the depth-ratio scale
    if min(nva, nvb) < cfg.min_visible:
        return PoseResult.failure(
            f"no overlap at the initial pose: {nva} Gaussians of view 0 visible in view 1, {nvb} of view 1 "
            f"in view 0 (need {cfg.min_visible})", solver=SOLVER, info={"score_before": score0})

    total_iters = 0
    levels = []
    last = len(cfg.inflation) - 1
    for level, (infl, blur) in enumerate(zip(cfg.inflation, cfg.blur_px)):
        if level < last and cfg.skip_coarse and cfg.adapt_noise and np.sqrt(noise) < 0.5 * infl * depth_scale:
            # the data show less misalignment than this level's kernels are made for
            levels.append({"inflation": infl, "blur_px": blur, "iterations": 0, "skipped": True})
            continue
        var = max((infl * depth_scale) ** 2, noise / 2)
        lev = fine if level == last else _Level(a, b, var, blur, cfg, basis)
        if level == last and total_iters > 0 and cfg.adapt_noise and cfg.geometry_weight > 0:
            # after the coarse levels the misalignment left is what the fine kernels widen
            # by; the reference at the initial pose is re-scored with the same kernels
            vis_a, vis_b = _visibility(a, b, R, t, s, cfg)
            noise = min(noise, registration_noise(a, b, R, t, s, vis_a, vis_b, cfg))
            if fine_var + noise / 2 != fine.var:
                fine.var = fine_var + noise / 2
                obj0, score0, conf0, _, _ = _reference(fine, init.R, init.t, s_init)
        if level == last and total_iters > 0 and fine.score(R, t, s)[0] > obj0:
            # the coarse levels widen the basin; the fine level starts from whichever of
            # their result and the initial pose it scores better (a good initial pose is
            # not traded for the slightly shifted optimum of a blurred objective)
            R, t, s = init.R.copy(), init.t * np.sqrt(s_init), s_init
        if cfg.optimizer == "lbfgs":
            R, t, s, it, F = _lbfgs_level(lev, R, t, s, cfg)
        else:
            R, t, s, it, F = _lm_level(lev, R, t, s, cfg, depth_scale)
        if it < 0:  # too few visible Gaussians to continue
            break
        total_iters += it
        levels.append({"inflation": infl, "blur_px": blur, "iterations": it, "objective": F})

    obj1, score1, nva1, nvb1 = fine.score(R, t, s)
    conf1 = fine.confidence()
    info = {
        "score_before": score0,
        "score_after": score1,
        "objective_before": obj0,
        "objective_after": obj1,
        "confidence_before": conf0,
        "confidence_after": conf1,
        "iterations": total_iters,
        "levels": levels,
        "scale": s,
        "registration_noise_m": float(np.sqrt(noise_init)),  # at the initial pose
        "registration_noise_fine_m": float(np.sqrt(noise)),  # what the fine level's kernels widen by
        "num_gaussians": [len(mix0), len(mix1)],
        "visible": [nva1, nvb1],
        "appearance": fine.wa > 0,
        "rejected": False,
    }
    pose = Pose(R, t / np.sqrt(s))
    covariance = None
    if not np.all(np.isfinite(pose.matrix)):
        return PoseResult.failure("the optimisation diverged (non-finite pose)", solver=SOLVER, info=info)
    if cfg.reject_worse and not (obj1 <= obj0 and conf1 >= conf0):  # worse by either measure
        info["rejected"] = True
        if np.allclose(init.matrix, np.eye(4), atol=1e-12):
            # Keeping an identity start would report "no motion" as a pose.
            return PoseResult.failure("the refinement did not improve on the identity initial pose and there is "
                                      "no other pose to keep", solver=SOLVER, info=info)
        pose, s, info["scale"] = init, 1.0, 1.0
    if cfg.polishes and mix0.dense is not None and mix1.dense is not None:
        from twoview.gmm.neighbours import PointGrid
        from twoview.gmm.polish import polish

        R2, t2, pinfo = polish(mix0.dense, mix1.dense, PointGrid(mix1.dense.means), pose.R, pose.t, cfg,
                               cfg.polish_radius * depth_scale)
        info["polish"] = pinfo
        if np.all(np.isfinite(R2)) and np.all(np.isfinite(t2)):
            if fine.wa > 0 and cfg.polish_appearance_tolerance is not None:
                # the polish is geometry alone: where the colour says the move is wrong (depth
                # and colour taken apart in time, the photos' pose is the colour's) it is undone
                fine.score(pose.R, pose.t, 1.0)
                app_before = fine.app
                fine.score(R2, t2, 1.0)
                pinfo["appearance_before"], pinfo["appearance_after"] = float(app_before), float(fine.app)
                pinfo["vetoed"] = bool(fine.app > app_before * (1.0 + cfg.polish_appearance_tolerance))
            if not pinfo.get("vetoed"):
                pose = Pose(R2, t2)
                covariance = pinfo.pop("covariance", None)
        pinfo.pop("covariance", None)
    return PoseResult(
        success=True,
        cam1_from_cam0=pose,
        metric=True,
        solver=SOLVER,
        confidence=conf0 if info["rejected"] else conf1,
        covariance=covariance,
        info=info,
    )


def _reference(fine: _Level, R, t, s_init: float):
    """(objective, NCC, confidence, visible in A, in B) of the fine level at the initial
    pose (R, t): the score a refinement has to beat. With a depth-ratio scale ``s_init``
    the better of it (translation sqrt(s_init) t in the state) and s = 1 counts."""
    obj0, score0, nva, nvb = fine.score(R, t, 1.0)
    conf0 = fine.confidence()
    if s_init != 1.0:
        obj_s, score_s, nva_s, nvb_s = fine.score(R, t * np.sqrt(s_init), s_init)
        if obj_s < obj0:
            obj0, score0, conf0 = obj_s, score_s, fine.confidence()
        nva, nvb = max(nva, nva_s), max(nvb, nvb_s)
    return obj0, score0, conf0, nva, nvb


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


def _small(delta, cfg: AlignConfig, depth_scale: float, factor: float = 1.0) -> bool:
    return (np.linalg.norm(delta[:3]) < factor * cfg.step_tolerance
            and np.linalg.norm(delta[3:6]) < factor * cfg.step_tolerance * depth_scale)


def _lm_level(lev: _Level, R, t, s, cfg: AlignConfig, depth_scale: float, max_rounds: int = 2):
    """Levenberg-Marquardt. Visibility and pairs are fixed within a round and re-found
    between rounds; the level ends when a round moves the pose less than ten times the
    step tolerance. Returns iterations -1 when too few Gaussians are visible."""
    total, F = 0, np.nan
    for _ in range(max_rounds):
        lev.start_round(R, t, s)
        if min(lev.vis_a.sum(), lev.vis_b.sum()) < cfg.min_visible:
            return R, t, s, (total if total else -1), F
        R0, t0 = R, t
        R, t, s, it, F = _lm_round(lev, R, t, s, cfg, depth_scale)
        total += it
        moved = np.concatenate([so3_log(R @ R0.T), t - t0])
        if it == 0 or _small(moved, cfg, depth_scale, 10.0):
            break
    return R, t, s, total, F


def _lm_round(lev: _Level, R, t, s, cfg: AlignConfig, depth_scale: float):
    est = cfg.estimate_scale
    F, g, H = lev(R, t, s, est)
    lam = 1e-3
    it = 0
    for it in range(1, cfg.max_iterations + 1):
        D = np.diag(np.maximum(np.diag(H), 1e-12 * max(np.abs(H).max(), 1e-300)))
        try:
            delta = np.linalg.solve(H + lam * D, -g)
        except np.linalg.LinAlgError:
            break
        if not np.all(np.isfinite(delta)):
            break
        R2, t2, s2 = apply_increment(R, t, s, delta)
        F2, g2, H2 = lev(R2, t2, s2, est)
        if F2 <= F:
            R, t, s, F, g, H = R2, t2, s2, F2, g2, H2
            lam = max(lam / 3.0, 1e-7)
            if _small(delta, cfg, depth_scale):
                break
        else:
            lam *= 8.0
            if lam > 1e6:
                break
    return R, t, s, it, F


def _increment_jacobian(x: np.ndarray) -> np.ndarray:
    """M with ``delta = M dx``: how a change dx of the increment x moves the state, as a
    further left increment delta at the state ``apply_increment(., x)`` (the
    derivatives :class:`_Level` returns are w.r.t. delta; L-BFGS needs them w.r.t. x)."""
    from twoview.geometry.rotation import hat

    n = len(x)
    w, v = x[:3], x[3:6]
    th = np.linalg.norm(w)
    K = hat(w)
    if th < 1e-8:
        Jl = np.eye(3) + 0.5 * K
    else:
        Jl = np.eye(3) + (1 - np.cos(th)) / th**2 * K + (th - np.sin(th)) / th**3 * (K @ K)
    M = np.eye(n)
    M[:3, :3] = Jl
    M[3:6, :3] = hat(v) @ Jl  # t(x) = exp(w) t0 + v: a rotation change also moves v
    return M


def _lbfgs_level(lev: _Level, R, t, s, cfg: AlignConfig, max_rounds: int = 3):
    """L-BFGS (scipy) on the same objective and its analytic gradient, in variables
    scaled by the Gauss-Newton diagonal at the round's start (radians and metres differ
    by orders of magnitude); visibility and pairs re-found between rounds."""
    from scipy.optimize import minimize

    est = cfg.estimate_scale
    n = 7 if est else 6
    iters, F = 0, np.nan
    for _ in range(max_rounds):
        lev.start_round(R, t, s)
        if min(lev.vis_a.sum(), lev.vis_b.sum()) < cfg.min_visible:
            return R, t, s, (iters if iters else -1), F
        R0, t0, s0 = R, t, s
        _, _, H0 = lev(R0, t0, s0, est)
        P = 1.0 / np.sqrt(np.maximum(np.diag(H0), 1e-12 * max(np.abs(H0).max(), 1e-300)))

        def fun(y):
            x = P * y
            F_, g_, _ = lev(*apply_increment(R0, t0, s0, x), est)
            return F_, P * (_increment_jacobian(x).T @ g_)

        res = minimize(fun, np.zeros(n), jac=True, method="L-BFGS-B",
                       options={"maxiter": cfg.max_iterations, "gtol": 1e-10, "ftol": 1e-12})
        iters += int(res.nit)
        x = P * res.x
        R, t, s = apply_increment(R0, t0, s0, x)
        F = float(res.fun)
        if np.linalg.norm(x[:3]) < cfg.step_tolerance:
            break
    return R, t, s, iters, F


@blas_single_thread
def refine_relative_pose(
    image0,
    image1,
    camera0,
    camera1,
    depth0,
    depth1,
    init: "Pose | np.ndarray",
    config: GMMConfig | dict | None = None,
    depth_scale: float | None = None,
) -> PoseResult:
    """Refine a metric relative pose by aligning the two views' Gaussian mixtures.

    Args:
        image0, image1: paths or (H, W, 3) uint8 RGB arrays.
        camera0, camera1: :class:`Camera`, 3x3 K, ``(fx, fy, cx, cy)`` or
            ``{"K": ..., "dist": ...}`` (as :func:`twoview.estimate_relative_pose` takes).
        depth0, depth1: paths (16-bit PNG with ``depth_scale``, .npy, .pfm, .exr) or (H, W)
            z-depth in metres, NaN invalid; both required.
        init: initial ``cam1_from_cam0`` (front end, a pose file, or identity): a
            :class:`Pose` or a 4x4 / 3x4 matrix.
        config: build and alignment options (see :func:`twoview.gmm.preset_config`).
        depth_scale: PNG units per metre.

    Returns:
        :class:`PoseResult` with solver "gmm", ``metric=True``, ``confidence`` in [0, 1]
        (geometric NCC and appearance agreement at the returned pose), ``info`` with
        ``objective_before/after``, ``confidence_before/after``, ``score_before/after``
        (geometric NCC), ``iterations``, ``levels``, ``rejected``, ``scale``,
        ``registration_noise_m`` (at the initial pose) and ``registration_noise_fine_m``
        (after the coarse levels), and ``timings_ms`` with "build" and "optimize".
        Failures (empty or tiny mixtures, no overlap) are ``success=False`` with a reason.

    Raises:
        InputError: a missing or unreadable file, missing depth, shape mismatches, or
            depth with no valid pixel (the message names the argument).
    """
    from twoview.gmm.api import load_inputs

    init = _as_init_pose(init)  # the arguments first: before the images are read
    cfg = GMMConfig.coerce(config)
    image0, image1, camera0, camera1, depth0, depth1 = load_inputs(
        image0, image1, camera0, camera1, depth0, depth1, depth_scale)
    t_load = time.perf_counter()
    load_feature_backend(cfg.build)  # once per process; not part of the per-pair cost
    t0 = time.perf_counter()
    mix0, mix1 = _build_both(image0, image1, camera0, camera1, depth0, depth1, cfg.build)
    t1 = time.perf_counter()
    res = align_mixtures(mix0, mix1, init, cfg.align)
    t2 = time.perf_counter()
    res.timings_ms.update({"build": (t1 - t0) * 1e3, "optimize": (t2 - t1) * 1e3})
    if t0 - t_load > 1e-3:
        res.timings_ms["load_features"] = (t0 - t_load) * 1e3
    res.info.setdefault("build", {"view0": mix0.info, "view1": mix1.info})
    return res


def _build_both(image0, image1, camera0, camera1, depth0, depth1, cfg):
    """:func:`build_mixture_pair` with this process's shared feature backend."""
    return build_mixture_pair(image0, image1, camera0, camera1, depth0, depth1, cfg, load_feature_backend(cfg))


def build_mixture_pair(image0, image1, camera0, camera1, depth0, depth1, cfg, backend):
    """Both views' mixtures on two threads: the worker runs the feature network once for
    both (undistorted) images, then builds view 1; the caller's thread builds view 0
    meanwhile. Two networks running at once on two threads would oversubscribe the
    cores (each forward pass spreads over all of them).

    Args:
        image0, image1: (H, W, 3) uint8; depth0, depth1: (H, W) metres, NaN invalid;
        camera0, camera1: :class:`Camera`; cfg: :class:`BuildConfig`;
        backend: the descriptor backend (:func:`twoview.gmm.features.make_backend`), or
            None when ``cfg.features`` is "none".
    """
    from twoview.gmm.features import dense_fields

    if backend is None and cfg.features != "none":
        raise ValueError(f"build_mixture_pair: features {cfg.features!r} need a backend")
    if backend is None:
        job1 = _pool().submit(build_mixture, image1, depth1, camera1, cfg, "1")
        return build_mixture(image0, depth0, camera0, cfg, name="0"), job1.result()
    # the network sees the images the mixtures are built from (undistorted)
    views = [pinhole_view(image0, depth0, camera0, "0"), pinhole_view(image1, depth1, camera1, "1")]
    fields = _pool().submit(dense_fields, backend, [views[0][0], views[1][0]])
    job1 = _pool().submit(lambda: build_mixture(*views[1], cfg, "1", dense=lambda: fields.result()[1]))
    mix0 = build_mixture(*views[0], cfg, "0", dense=lambda: fields.result()[0])
    return mix0, job1.result()

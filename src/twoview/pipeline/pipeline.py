"""One pipeline: depth -> front end (matcher cascade + solver, or the regressor) ->
refinement -> recovery -> motion labels -> confidence.

``Pipeline(config)(view0, view1)`` is the whole estimate; the Python API
(:func:`twoview.estimate_relative_pose`), every CLI command and every bench method call
it and differ only in how they build the views and the configuration. The result says
which stages ran and what they decided (``result.info["pipeline"]["stages"]``), and the
configuration used (``result.info["pipeline"]["config"]``).
"""

from __future__ import annotations

import dataclasses
import time
from contextlib import contextmanager

import numpy as np

from twoview.errors import InputError
from twoview.geometry.pose import Pose
from twoview.pipeline.config import PipelineConfig
from twoview.pipeline.models import ModelStore
from twoview.result import IDENTICAL_IMAGES, Matches, PoseResult, identical_images
from twoview.view import View


_WARM: dict = {}


def _warm_once(key: str, work) -> None:
    """Run ``work`` once per process and ``key`` on a daemon thread; a warm-up that fails
    only loses its head start."""
    import threading

    if key in _WARM:
        return

    def guarded():
        try:
            work()
        except Exception:  # noqa: BLE001 - see the docstring
            pass

    t = threading.Thread(target=guarded, name="twoview-warm-up", daemon=True)
    _WARM[key] = t
    t.start()


def warm_up_refinement(gmm_config) -> None:
    """Once per process and mixture configuration, align two tiny synthetic mixtures on a
    background thread: numba loads the refinement's compiled kernels (about a second in a
    fresh process) with the types the real alignment uses, while the caller works on."""

    def work():
        from twoview.geometry.camera import Camera
        from twoview.gmm.align import align_mixtures
        from twoview.gmm.mixture import build_mixture

        yy, xx = np.mgrid[0:48, 0:64]
        depth = 2.0 + 0.01 * xx + 0.3 * (xx > 32)
        image = np.stack([(xx * 4) % 256, (yy * 5) % 256, (xx * yy) % 256], -1).astype(np.uint8)
        cam = Camera(60.0, 60.0, 31.5, 23.5, 64, 48)
        build = gmm_config.build.replace(features="none", num_gaussians=64)
        m = build_mixture(image, depth, cam, build)
        align_mixtures(m, m, Pose(np.eye(3), np.array([0.01, 0.0, 0.0])), gmm_config.align.replace(min_visible=4))

    _warm_once(repr(gmm_config), work)


def warm_up_compiler() -> None:
    """Once per process, import numba and initialise its CPU target (which imports its
    numpy and linear-algebra support, scipy's BLAS among it: about 0.7 s cold) on a
    background thread, for a command that will refine and has not read its inputs yet."""

    def work():
        from numba.core.compiler_lock import global_compiler_lock
        from numba.core.registry import cpu_target

        with global_compiler_lock:
            cpu_target.target_context.refresh()

    _warm_once("compiler", work)


#: How much of the pose a solver's result measures, for the rescue's choice: a 3D-3D pose
#: over PnP over an essential matrix scaled by depth over a direction-only one (a rescued
#: pose never trades metres for a direction)
_SOLVER_RANK = {"rigid3d": 3, "monodepth": 3, "pnp": 2, "essential+depth-scale": 1, "essential": 0}


class _Run:
    """Bookkeeping of one estimate: stage times and decisions."""

    def __init__(self):
        self.ms: dict[str, float] = {}
        self.stages: list[dict] = []
        self.depth_source = "none"  # "file" (given), "model" (predicted) or "none"
        self.depth_model: dict | None = None  # the depth model and its predictions' cache hits
        # per view: (the colour as taken, its registration) where the colour was moved onto the depth
        self.as_taken: list = [None, None]
        self.match_as_taken = False  # the matchers see the photos as taken (see _try_the_photos)

    @contextmanager
    def time(self, stage: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.ms[stage] = self.ms.get(stage, 0.0) + (time.perf_counter() - t0) * 1e3

    def note(self, stage: str, **what):
        self.stages.append({"stage": stage, **what})


def _pose_change(before, after) -> dict:
    """How far a finishing stage moved ``cam1_from_cam0`` (both :class:`Pose`), and the pose before it."""
    from twoview.geometry.rotation import rotation_angle_deg

    return {"rotation_change_deg": rotation_angle_deg((after @ before.inverse()).R),
            "translation_change_m": float(np.linalg.norm(after.t - before.t)),
            "cam1_from_cam0_before": before.matrix.tolist()}


class Pipeline:
    """The estimate of ``cam1_from_cam0`` from two views, built from one configuration.

    Args:
        config: a :class:`PipelineConfig`, a dict of its fields (strict), or None for the
            default: the most accurate pose measured within the time budget (see the
            README's "What the default does").

    The pipeline owns its models (:class:`~twoview.pipeline.models.ModelStore`): keep one
    pipeline for many pairs, and networks load once.
    """

    def __init__(self, config: PipelineConfig | dict | None = None):
        self.config = PipelineConfig.coerce(config)
        self.models = ModelStore()

    # --- the whole estimate ---------------------------------------------------------
    def __call__(self, view0: View, view1: View, *, init: Pose | None = None,
                 matches: Matches | None = None, keep_artifacts: bool = False) -> PoseResult:
        """Estimate ``cam1_from_cam0`` (``x1 = R x0 + t``).

        Args:
            view0, view1: :class:`~twoview.view.View` (see :func:`twoview.view.load_view`).
            init: instead of running the front end, a pose to refine (a :class:`Pose` or
                a 4x4 matrix; needs depth for both views), or another estimate's
                :class:`PoseResult` to refine (its matches, inliers and timings are kept).
            matches: precomputed matches (skips the matchers).
            keep_artifacts: keep the views as the stages saw them and the mixtures in
                ``result.artifacts`` (for drawing; they hold images).

        Returns:
            :class:`PoseResult`; a failure (never a stand-in pose) when no pose is found
            or its confidence is below ``confidence.min_confidence``.
        """
        from twoview._threads import single_threaded_blas

        for name, v in (("view0", view0), ("view1", view1)):
            if not isinstance(v, View):
                raise InputError(name, f"expected a twoview.View (twoview.load_view), got {type(v).__name__}")
        run = _Run()
        load0 = self.models.load_ms
        artifacts: dict = {}
        with single_threaded_blas():
            result = self._estimate(view0, view1, init, matches, run, artifacts)
        if keep_artifacts:
            result.artifacts = artifacts
        if self.models.load_ms > load0:
            run.ms["load_models"] = self.models.load_ms - load0
        result.timings_ms = {**run.ms, **{k: v for k, v in result.timings_ms.items() if k not in run.ms}}
        result.info["pipeline"] = {"stages": run.stages, "config": self.config.to_dict()}
        result.info.setdefault("depth_source", run.depth_source)
        if run.depth_model is not None:
            result.info.setdefault("depth_model", run.depth_model)
        return result

    def _estimate(self, view0: View, view1: View, init, matches, run: _Run, artifacts: dict) -> PoseResult:
        cfg = self.config
        if cfg.refine.method != "none" and view0.depth is not None and view1.depth is not None:
            # the refinement will run: load its compiled kernels on the other core while the
            # depth and front-end stages run on this one (a cold process saves most of a second)
            warm_up_refinement(self._gmm_config(view0, view1))
        artifacts["views"] = (view0, view1)
        if identical_images(view0.image, view1.image):
            return PoseResult.failure(IDENTICAL_IMAGES)
        view0, view1 = self._depth(view0, view1, run)
        artifacts["views"] = (view0, view1)
        mixtures: dict = artifacts
        if init is not None:
            front = self._from_init(init, view0, view1, run)
        elif cfg.front_end == "regress":
            front = self._regress(view0, view1, run)
        else:
            front = self._match_and_solve(view0, view1, matches, run)
        result = self._finish(front, view0, view1, init, run, mixtures)
        if (init is None and matches is None and cfg.front_end == "match" and cfg.cascade.photos_as_taken
                and any(t is not None for t in run.as_taken)):
            result = self._try_the_photos(result, view0, view1, run, mixtures)
        return result

    def _finish(self, front: PoseResult, view0: View, view1: View, init, run: _Run, mixtures: dict) -> PoseResult:
        """Everything after the front end: refinement, recovery, motion label, depth check, confidence."""
        from twoview.pipeline.confidence import finalise_confidence
        from twoview.pipeline.motion import label_motion

        result = self._refine(front, view0, view1, run, mixtures, explicit_init=init is not None and front.solver == "init")
        if self._should_recover(result, view0, view1, init):
            result = self._recover(result, view0, view1, run, mixtures)
        result = label_motion(result, view0, view1, self.config.solver, run)
        result = self._depth_consistency(result, view0, view1, run)
        return finalise_confidence(result, self.config.confidence, run)

    def _try_the_photos(self, result: PoseResult, view0: View, view1: View, run: _Run, mixtures: dict) -> PoseResult:
        """Where a view's colour was moved onto its depth (two cameras) and the two depth maps
        do not confirm the estimate, match the photos as taken too and keep what follows
        only if the depth confirms it (:func:`~twoview.pipeline.confidence.depth_confirms`:
        no confirmed refined pose was wrong on nine RGB-D suites).

        The resampled colour is torn at every depth edge (the colour of a surface the depth
        camera sees and the colour camera does not): on wide baselines the matchers lose most
        of their matches on it (kinect7-colour, frames 40-190: XFeat 26 -> 6, ALIKED 63 -> 38),
        and elsewhere they find as many or more. Matching the photos in place of the
        resampled colour solved two pairs and lost two; as a second attempt, kept only on
        the depth's word, it loses none."""
        from twoview.pipeline.confidence import depth_confirms

        if result.success and depth_confirms(result):
            return result
        run.match_as_taken = True
        try:
            front = self._match_and_solve(view0, view1, None, run)
        finally:
            run.match_as_taken = False
        if not front.success:
            run.note("photos_as_taken", kept=False, why=f"no pose: {front.reason}")
            return result
        alt = self._finish(front, view0, view1, None, run, mixtures)
        kept = alt.success and depth_confirms(alt)
        run.note("photos_as_taken", kept=kept, **({} if kept else {"why": "the depth does not confirm it"
                                                                  if alt.success else alt.reason}))
        if not kept:
            return result
        alt.info["photos_as_taken"] = {"instead_of": result.reason if not result.success else
                                       f"an unconfirmed {result.solver} pose at confidence {result.confidence:.2f}"}
        return alt

    @staticmethod
    def _depth_consistency(res: PoseResult, view0: View, view1: View, run: _Run) -> PoseResult:
        """The free-space test of a metric pose with depth in both views
        (:mod:`twoview.depth.consistency`), reported in ``info["depth_consistency"]`` with
        ``sensor_depth`` (both maps measured, not predicted). The calibrated model does not
        read it; the confidence is set to 0 where sensor depth contradicts the pose and kept
        at a floor where it confirms it (:func:`twoview.pipeline.confidence.finalise_confidence`)."""
        if not res.success or not res.metric or view0.depth is None or view1.depth is None:
            return res
        from twoview.depth.consistency import depth_consistency

        with run.time("consistency"):
            dc = depth_consistency(view0.depth, view0.camera, view1.depth, view1.camera, res.cam1_from_cam0.matrix)
        res.info["depth_consistency"] = None if dc is None else {
            **dc.to_dict(), "sensor_depth": view0.depth_kind == "sensor" and view1.depth_kind == "sensor"}
        return res

    # --- depth ------------------------------------------------------------------------
    def _depth(self, view0: View, view1: View, run: _Run) -> tuple[View, View]:
        """Predict missing depth with the monocular model (if configured) and register
        sensor depth to its colour image (if the view's contours say it is off)."""
        cfg = self.config.depth
        views = [view0, view1]
        if cfg.model is not None:
            if any(v.depth is not None for v in views):
                raise InputError("depth.model", "give either depth maps or a depth model, not both")
            with run.time("depth"):
                est = self.models.depth_model(cfg.model)
                preds = []
                for v in views:
                    d, info = est.predict_with_info(v.image, v.camera)
                    from twoview.io.depth import prepare_depth

                    preds.append((prepare_depth(d, v.size, f"depth{v.name} (predicted by {cfg.model.model})"), info))
            views = [v.with_depth(d, "monocular", depth_model=info) for v, (d, info) in zip(views, preds)]
            run.note("depth", source="model", model=cfg.model.model, cached=[i.get("cached") for _, i in preds])
            run.depth_source = "model"
            run.depth_model = {"model": cfg.model.model, "model_type": preds[0][1].get("model_type"),
                               **{f"view{k}": {kk: vv for kk, vv in i.items() if kk not in ("model", "model_type")}
                                  for k, (_, i) in enumerate(preds)}}
            return views[0], views[1]
        if any(v.depth is not None for v in views):
            run.depth_source = "file"
        if cfg.register and any(v.depth_kind == "sensor" for v in views):
            from twoview.depth.registration import estimate_registration, register_view

            def estimate(v: View):
                if v.depth_kind != "sensor":
                    return v, None
                if v.camera.dist is not None:
                    # a displacement model holds on the pinhole grid (distortion bends it);
                    # the view stays undistorted for every later stage
                    cam = v.camera
                    v = dataclasses.replace(v, image=cam.undistort_image(v.image), depth=cam.undistort_depth(v.depth),
                                            camera=cam.pinhole, info={**v.info, "undistorted": True})
                return v, estimate_registration(v.image, v.depth, cfg.registration, centre=(v.camera.cx, v.camera.cy))

            from twoview.depth.registration import corroborated_rig, register_with_rig
            from twoview._threads import worker

            with run.time("register"):
                job = worker("gmm").submit(estimate, views[1])  # the two views on the two cores
                found = [estimate(views[0]), job.result()]
                # one camera pair, one rig: where a view shows two cameras, the other view is
                # registered with the same zoom and parallax (only its exposure shift its own)
                rigs = [r for _, r in found if r is not None and r.applied and r.reference == "depth"]
                corroborated = None
                if not rigs:  # neither view clear alone: do the two agree on a rig?
                    corroborated = corroborated_rig([r for _, r in found], cfg.registration)
                    rigs = [corroborated] if corroborated is not None else []
                if rigs:
                    rig = max(rigs, key=lambda r: r.score)
                    found = [(v, r if r is None or (r.applied and r.reference == "depth")
                              else register_with_rig(v.image, v.depth, rig, cfg.registration)) for v, r in found]
                    if corroborated is not None:
                        for _, r in found:
                            r.reason = f"{corroborated.reason}; shift ({r.shift[0]:+.1f}, {r.shift[1]:+.1f}) px"
                out = []
                for k, (v, reg) in enumerate(found):
                    if reg is not None:
                        if reg.applied and reg.reference == "depth":
                            run.as_taken[k] = (v.image, reg)
                        image, depth = register_view(v.image, v.depth, reg)
                        v = dataclasses.replace(v, image=image, depth=depth, info={**v.info, "registration": reg.to_dict()})
                    out.append(v)
                views = out
            run.note("depth", source="given", kinds=[v.depth_kind for v in views],
                     registration=[{k: v.info["registration"][k] for k in ("applied", "reference")} if "registration" in v.info
                                   else None for v in views])
        else:
            run.note("depth", source="given" if any(v.depth is not None for v in views) else "none",
                     kinds=[v.depth_kind for v in views])
        return views[0], views[1]

    # --- front ends -------------------------------------------------------------------
    def _from_init(self, init, view0: View, view1: View, run: _Run) -> PoseResult:
        from twoview.gmm.align import _as_init_pose

        if view0.depth is None or view1.depth is None:
            raise InputError("init", "refining a given pose builds metric Gaussian mixtures: give depth for both views")
        if isinstance(init, PoseResult):
            if not init.success:
                raise InputError("init", f"the estimate to refine failed: {init.reason}")
            if not init.metric:
                raise InputError("init", "the estimate to refine is direction only: a metric pose is needed")
            run.note("front_end", method="given", solver=init.solver)
            return init
        pose = _as_init_pose(init)
        run.note("front_end", method="init")
        return PoseResult(success=True, cam1_from_cam0=pose, metric=True, solver="init", confidence=0.0,
                          info={"init": True})

    def _regressor(self):
        """The configured pose regressor (loaded once, by the model store)."""
        rc = self.config.regressor
        return self.models.regressor(rc.checkpoint, rc.translation, rc.rigid_from_matches)

    def _regress(self, view0: View, view1: View, run: _Run) -> PoseResult:
        with run.time("regress"):
            res = self._regressor().estimate(
                view0.image, view1.image, view0.camera, view1.camera, view0.depth, view1.depth)
        run.note("front_end", method="regress", success=res.success,
                 **({"pose_source": res.info["pose_source"]} if res.info.get("pose_source") else {}))
        return res

    def _match_and_solve(self, view0: View, view1: View, matches, run: _Run) -> PoseResult:
        cfg = self.config
        if matches is not None:
            res = self._solve(matches, view0, view1, run, "given")
            run.note("front_end", method="match", matcher="given", matches=len(matches), success=res.success)
            return res
        first = self._match_once(cfg.matcher, view0, view1, run)
        ran = [cfg.matcher.name]
        res = first
        fb = cfg.cascade.fallback
        weak = (not first.success or first.num_inliers < cfg.cascade.min_inliers
                or first.num_inliers < cfg.cascade.min_inlier_ratio * max(first.num_matches, 1))
        if fb is not None and fb not in ran and weak:
            ran.append(fb)
            why = (f"{cfg.matcher.name} pose weak: {first.num_inliers} inliers of {first.num_matches}"
                   if first.success else f"{cfg.matcher.name} failed: {first.reason}")
            second = self._match_other(fb, view0, view1, run, why)
            if second is not None and second.success and (not first.success or second.num_inliers > first.num_inliers):
                res = second
            elif second is not None and not first.success:
                res = second  # both failed: the last reason
        rescue = cfg.cascade.rescue
        if rescue is not None and rescue not in ran and (why := self._unreliable(res, view0, view1)):
            third = self._match_other(rescue, view0, view1, run, why)
            if third is not None and third.success and (
                    not res.success or (_SOLVER_RANK.get(third.solver, 0), third.num_inliers)
                    > (_SOLVER_RANK.get(res.solver, 0), res.num_inliers)):
                res = third
        return res

    def _unreliable(self, res: PoseResult, view0: View, view1: View) -> str:
        """Why the front end's pose calls for the rescue matcher ("" when it does not).

        Only with sensor depth in both views, where a rescued pose can be checked in 3D: on
        images alone a strong matcher also "matches" unrelated views (LightGlue pairs
        keypoints by position when the descriptors say nothing, and an essential matrix
        fits them), so a failure there stays a failure."""
        if not all(v.depth is not None and v.depth_kind == "sensor" for v in (view0, view1)):
            return ""
        if not res.success:
            # the same view twice has no motion to find, whatever the matcher
            return "" if res.info.get("no_motion") else f"no pose: {res.reason}"
        if self.config.solver.mode in ("auto", "rigid3d") and res.solver != "rigid3d":
            return f"{res.info.get('matcher', 'the matcher')}'s pose is from {res.solver}: too few matches agree in 3D"
        return ""

    def _match_other(self, name: str, view0: View, view1: View, run: _Run, why: str) -> PoseResult | None:
        """One more matcher of the cascade (None where it is not installed: noted)."""
        from twoview.errors import BackendUnavailable

        cfg = self.config
        try:
            # the runtime choice is XFeat's; another matcher takes its own
            mcfg = cfg.matcher.replace(name=name, runtime=cfg.matcher.runtime if name == "xfeat" else "auto")
            return self._match_once(mcfg, view0, view1, run, stage=f"match_{name}", why=why)
        except BackendUnavailable as e:  # a core install without torch: no such matcher
            run.note("front_end", method="match", matcher=name, skipped=str(e))
            return None

    def _match_once(self, mcfg, view0: View, view1: View, run: _Run, stage: str = "match", why: str = "") -> PoseResult:
        matcher = self.models.matcher(mcfg)
        taken = run.as_taken if run.match_as_taken else [None, None]
        with run.time(stage):
            m = matcher.match(*(v.image if t is None else t[0] for v, t in zip((view0, view1), taken)))
        if any(t is not None for t in taken):
            # keypoints found on a photo, carried onto its depth grid (the views' pixels)
            from twoview.depth.registration import colour_to_depth_pixels

            k0, k1 = (kp if t is None else colour_to_depth_pixels(kp, v.depth, t[1])
                      for kp, v, t in zip((m.kpts0, m.kpts1), (view0, view1), taken))
            keep = view0.camera.in_image(k0) & view1.camera.in_image(k1)  # seen by the depth camera
            m = dataclasses.replace(m, kpts0=k0[keep], kpts1=k1[keep], scores=m.scores[keep])
        res = self._solve(m, view0, view1, run, mcfg.name)
        run.note("front_end", method="match", matcher=mcfg.name, matches=len(m), success=res.success,
                 inliers=res.num_inliers, **({"why": why} if why else {}),
                 **({} if res.success else {"reason": res.reason}),
                 **({"colour": "as taken"} if run.match_as_taken else {}))
        res.info["matcher"] = mcfg.name
        return res

    def _solve(self, matches: Matches, view0: View, view1: View, run: _Run, matcher: str) -> PoseResult:
        from twoview.estimator import estimate_from_matches

        cam0, cam1, d0, d1 = view0.camera, view1.camera, view0.depth, view1.depth
        if cam0.dist is not None or cam1.dist is not None:
            # matched on the raw images, solved on the ideal pinhole model
            with run.time("undistort"):
                matches = dataclasses.replace(matches, kpts0=cam0.undistort_points(matches.kpts0),
                                              kpts1=cam1.undistort_points(matches.kpts1))
                d0 = cam0.undistort_depth(d0) if d0 is not None else None
                d1 = cam1.undistort_depth(d1) if d1 is not None else None
                cam0, cam1 = cam0.pinhole, cam1.pinhole
        solver = self.config.solver
        mono = view0.depth_kind == "monocular" or view1.depth_kind == "monocular"
        timings: dict = {}
        res = estimate_from_matches(matches, cam0, cam1, d0, d1, solver, timings, monocular=mono)
        for k, v in timings.items():
            run.ms[k] = run.ms.get(k, 0.0) + v
        res.timings_ms = {}
        return res

    # --- refinement -------------------------------------------------------------------
    def _gmm_config(self, view0: View, view1: View):
        mono = view0.depth_kind == "monocular" or view1.depth_kind == "monocular"
        return self.config.refine.gmm_monocular if mono else self.config.refine.gmm

    def _align_config(self, view0: View, view1: View, run: _Run):
        """The mixture alignment's options for this pair: the colour's veto over the dense
        polish (``RefineConfig.polish_veto``) only where the evidence asks for it."""
        acfg = self._gmm_config(view0, view1).align
        mode = self.config.refine.polish_veto
        # nothing to decide where no polish runs or no appearance term could veto it
        if not acfg.polishes or acfg.appearance_weight <= 0 or acfg.polish_appearance_tolerance is None or mode == "always":
            return acfg
        # the colour speaks against the geometry only where it was checked against the depth:
        # a view whose depth has the contours to compare it with its colour edges
        checked = [k for k, v in enumerate((view0, view1)) if v.info.get("registration", {}).get("measured")]
        veto = mode == "auto" and bool(checked)
        if not any(s["stage"] == "polish_veto" for s in run.stages):  # the refinement and the recovery ask alike
            run.note("polish_veto", on=veto, why=(
                f"view(s) {checked}: colour checked against the depth's contours" if veto else
                "refine.polish_veto is 'never'" if mode == "never" else
                "no view's colour could be checked against its depth (too few depth contours, or not "
                "registered): the geometry stands"))
        return acfg if veto else acfg.replace(polish_appearance_tolerance=None)

    def _mixtures(self, view0: View, view1: View, run: _Run, mixtures: dict):
        """Both views' mixtures, built once per estimate (the refinement and the recovery share them)."""
        if "mixtures" not in mixtures:
            from twoview.gmm.align import build_mixture_pair

            bcfg = self._gmm_config(view0, view1).build
            backend = self.models.gmm_features(bcfg)
            with run.time("build"):
                mixtures["mixtures"] = build_mixture_pair(view0.image, view1.image, view0.camera, view1.camera,
                                                          view0.depth, view1.depth, bcfg, backend)
        return mixtures["mixtures"]

    def _refine(self, front: PoseResult, view0: View, view1: View, run: _Run, mixtures: dict,
                explicit_init: bool) -> PoseResult:
        method = self.config.refine.method
        both = view0.depth is not None and view1.depth is not None
        if method == "none":
            return front
        if method == "gmm" and not both:
            raise InputError("refine.method", "gmm refinement builds metric Gaussian mixtures: give depth for both views")
        if not front.success:
            return front
        if not both:
            run.note("refine", method="none", why="no depth for both views")
            return front
        if not front.metric:  # e.g. the regressor found no scale in the depth: nothing metric to start from
            run.note("refine", method="none", why="the front end's pose is direction only")
            return front
        from twoview.gmm.align import align_mixtures

        m0, m1 = self._mixtures(view0, view1, run, mixtures)
        acfg = self._align_config(view0, view1, run)
        # a regressed pose is several degrees off by construction: the coarse levels, which
        # widen the basin, always run from it (the registration-noise test that skips them
        # after a matched pose reads the regressor's errors as small), and one more level twice
        # as wide as the widest leads them (fr3_cabinet regress-gmm AUC@5 10.4 -> 14.6 -> 16.0).
        # The rigid motion of the regressor's cell matches is closer (cells of 8 network
        # pixels, not keypoints): the coarse levels run, without the wider one (fr3_cabinet
        # regress-gmm, pairs 11-30 frames apart, P(5 cm, 2 deg) 79 -> 86 %; 82 % when skipped)
        coarse = None
        if front.solver == "regress":
            acfg = acfg.replace(skip_coarse=False)
            coarse = "forced: the front end is the rigid motion of the regressor's cell matches"
            if front.info.get("pose_source", "network") == "network":
                acfg = acfg.replace(inflation=[2.0 * acfg.inflation[0], *acfg.inflation],
                                    blur_px=[2.0 * acfg.blur_px[0], *acfg.blur_px])
                coarse = "forced, one level wider: the front end is the regressor's own pose"
        with run.time("optimize"):
            res = align_mixtures(m0, m1, front.cam1_from_cam0, acfg)
        run.note("refine", method="gmm", success=res.success, rejected=res.info.get("rejected"),
                 score_before=res.info.get("score_before"), score_after=res.info.get("score_after"),
                 **({"coarse_levels": coarse} if coarse else {}))
        if explicit_init:
            res.info["init"] = True
        if not res.success:
            if explicit_init:
                return res
            # the mixtures gave no verdict (e.g. too little valid depth): the front end stands
            front.info["refine"] = {"failed": res.reason}
            return front
        res.matches, res.inliers = front.matches, front.inliers
        res.num_matches, res.num_inliers = front.num_matches, front.num_inliers
        if res.covariance is None and res.info.get("rejected"):
            res.covariance = front.covariance
        res.info["front_end"] = {"solver": front.solver, "confidence": front.confidence,
                                 "num_inliers": front.num_inliers, "num_matches": front.num_matches,
                                 "cam1_from_cam0": front.cam1_from_cam0.matrix.tolist(),
                                 **{k: front.info[k] for k in ("matcher", "depth_source") if k in front.info}}
        res.info["build"] = {"view0": m0.info, "view1": m1.info}
        res = self._gicp(res, view0, view1, run)
        if self.config.refine.geometry_finish and res.info.get("gicp", {}).get("success"):
            self._geometry_finish(res, m0, m1, self._gmm_config(view0, view1).align, run)
        return res

    def _geometry_finish(self, res: PoseResult, m0, m1, acfg, run: _Run) -> None:
        """The mixtures once more from GICP's pose, on geometry alone (``RefineConfig.geometry_finish``).

        Only the pose changes: the confidence reads the first alignment's evidence, which the
        model was fitted on. A finish that fails leaves GICP's pose; where the mixtures' own
        step is rejected (``reject_worse``) the dense polish still moves it, as in the first
        alignment."""
        from twoview.gmm.align import align_mixtures

        with run.time("geometry_finish"):
            fin = align_mixtures(m0, m1, res.cam1_from_cam0, acfg.replace(appearance_weight=0.0))
        info = {"success": fin.success, "rejected": bool(fin.info.get("rejected")), "reason": fin.reason}
        if fin.success:
            info.update(_pose_change(res.cam1_from_cam0, fin.cam1_from_cam0))
            res.cam1_from_cam0 = fin.cam1_from_cam0
        run.note("geometry_finish", **{k: v for k, v in info.items() if k != "cam1_from_cam0_before"})
        res.info["geometry_finish"] = info

    def _gicp(self, res: PoseResult, view0: View, view1: View, run: _Run) -> PoseResult:
        """The point-level GICP after the mixtures (see ``RefineConfig.gicp``)."""
        mode = self.config.refine.gicp
        second_camera = any(v.info.get("registration", {}).get("applied")
                            and v.info["registration"].get("reference") == "depth" for v in (view0, view1))
        if mode == "never" or (mode == "auto" and not second_camera):
            return res
        if view0.depth_kind == "monocular" or view1.depth_kind == "monocular":
            run.note("gicp", ran=False, why="monocular depth")
            return res
        from twoview.solvers.gicp import gicp

        with run.time("gicp"):  # on both cores, as the mixtures are built (234 vs 365 ms on kinect7 pairs)
            pose, info = gicp(view0.depth, view1.depth, view0.camera, view1.camera, res.cam1_from_cam0, num_threads=2)
        info["ran_because"] = ("refine.gicp is 'always'" if mode == "always"
                               else "the depth is a second camera's (registered colour)")
        if pose is None:  # GICP gave no verdict (info["why"]): the mixtures' pose stands
            run.note("gicp", ran=True, success=False, why=info["why"])
            res.info["gicp"] = {"success": False, **info}
            return res
        info.update(success=True, **_pose_change(res.cam1_from_cam0, pose))
        run.note("gicp", ran=True, success=True, rotation_change_deg=info["rotation_change_deg"],
                 translation_change_m=info["translation_change_m"])
        res.info["gicp"] = info
        res.cam1_from_cam0 = pose
        return res

    # --- recovery ---------------------------------------------------------------------
    def _should_recover(self, result: PoseResult, view0: View, view1: View, init) -> bool:
        rc = self.config.recovery
        # a front end that saw no motion has answered (the same view twice): nothing to recover
        return (rc.enabled and init is None and view0.depth is not None and view1.depth is not None
                and not result.success and not result.info.get("no_motion"))

    def _recover(self, failed: PoseResult, view0: View, view1: View, run: _Run, mixtures: dict) -> PoseResult:
        """Registration without matches: align the mixtures from several starting poses
        (identity, rotations about the camera axes, the regressor's pose) and keep the best
        by the alignment objective, only when its confidence is good."""
        from twoview.geometry.rotation import so3_exp
        from twoview.gmm.align import align_mixtures

        rc = self.config.recovery
        hyps = [("identity", Pose.identity())]
        for a in rc.rotations_deg:
            for axis in (np.array([0.0, 1.0, 0.0]), np.array([1.0, 0.0, 0.0])):
                hyps.append((f"rot{'y' if axis[1] else 'x'}{a:+g}", Pose(so3_exp(np.radians(a) * axis), np.zeros(3))))
        if rc.regressor and self.config.front_end != "regress":
            try:
                reg = self._regressor().estimate(
                    view0.image, view1.image, view0.camera, view1.camera, view0.depth, view1.depth)
                if reg.success and reg.metric:
                    hyps.append(("regress", reg.cam1_from_cam0))
            except Exception as e:  # noqa: BLE001 - a missing regressor only removes a hypothesis
                run.note("recovery", hypothesis="regress", error=str(e))
        m0, m1 = self._mixtures(view0, view1, run, mixtures)
        acfg = self._align_config(view0, view1, run).replace(skip_coarse=False, reject_worse=False)
        best, tried = None, []
        with run.time("recover"):
            for name, pose in hyps:
                r = align_mixtures(m0, m1, pose, acfg)
                obj = r.info.get("objective_after", np.inf) if r.success else np.inf
                tried.append({"hypothesis": name, "success": r.success, "objective": obj,
                              "confidence": r.confidence if r.success else None})
                if r.success and (best is None or obj < best[1]):
                    best = (name, obj, r)
        run.note("recovery", tried=tried, chosen=best[0] if best else None)
        if best is None or best[2].confidence < rc.min_confidence:
            why = "no hypothesis aligned" if best is None else (
                f"best hypothesis {best[0]} has confidence {best[2].confidence:.2f} < {rc.min_confidence}")
            failed.info["recovery"] = {"tried": tried, "why": why}
            return failed
        res = best[2]
        res.solver = "gmm-recovery"
        res.info["recovery"] = {"tried": tried, "chosen": best[0], "front_end_failure": failed.reason}
        res.matches, res.num_matches = failed.matches, failed.num_matches
        return res

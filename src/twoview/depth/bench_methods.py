"""Benchmark methods of the depth package (discovered by :mod:`twoview.bench.methods`).

- ``sift-monodepth`` / ``xfeat-monodepth``: SIFT (or XFeat + LighterGlue) matches, both
  depth maps treated as *monocular* (each with its own unknown scale): pose plus
  relative scale (:mod:`twoview.solvers.monodepth`). Run it on sensor depth degraded by
  the harness (``--depth-noise``) to simulate monocular depth.
- ``sift-depthmodel``: the photos-only path: depth of both images predicted by a
  monocular network (option ``model``: folder or hub id, offline), then as above.
  Depth maps handed in by the harness are ignored.

Options (dict): ``matcher`` / ``solver`` (sub-dicts of the estimator config; e.g.
``{"solver": {"monodepth": {"joint_refinement": false}}}``), and for
``sift-depthmodel`` ``model``, ``resolution``, ``cache_dir``.
"""

from __future__ import annotations

from twoview.errors import ConfigError
from twoview.matching.base import installed_matchers

BENCH_METHODS = {
    "sift-monodepth": f"{__name__}:make_sift_monodepth",
    "sift-depthmodel": f"{__name__}:make_sift_depthmodel",
}
if "xfeat" in installed_matchers():
    BENCH_METHODS["xfeat-monodepth"] = f"{__name__}:make_xfeat_monodepth"


def _estimator_config(options: dict, name: str, matcher: str = "sift"):
    from twoview.config import EstimatorConfig

    opts = dict(options)
    if "init" in opts:
        raise ConfigError(f"{name} takes no initial pose")
    cfg = EstimatorConfig.from_dict(
        {"matcher": {"name": matcher, **opts.pop("matcher", {})}, "solver": {**opts.pop("solver", {}), "mode": "monodepth"}}
    )
    return cfg, opts


def _monodepth_factory(matcher: str):
    name = f"{matcher}-monodepth"

    def make(options: dict):
        """Factory: ``run(sample, depth0, depth1) -> PoseResult`` on the given (monocular) depth."""
        from twoview.bench.methods import BenchMethod

        cfg, rest = _estimator_config(options, name, matcher)
        if rest:
            raise ConfigError(f"unknown option(s) for {name}: {', '.join(sorted(rest))}")

        def run(sample, depth0, depth1):
            from twoview.estimator import estimate_relative_pose
            from twoview.result import PoseResult

            if depth0 is None or depth1 is None:
                return PoseResult.failure(f"{name} needs depth for both views", solver="monodepth")
            return estimate_relative_pose(
                sample.image0, sample.image1, _cam(sample, 0), _cam(sample, 1), depth0=depth0, depth1=depth1, config=cfg
            )

        return BenchMethod(name=name, run=run, uses_depth=(True, True), metric=True, options=dict(options))

    return make


make_sift_monodepth = _monodepth_factory("sift")
make_xfeat_monodepth = _monodepth_factory("xfeat")


def make_sift_depthmodel(options: dict):
    """Factory: depth predicted from the photos by a monocular model, then monodepth."""
    from twoview.bench.methods import BenchMethod
    from twoview.depth.estimators import DepthModelConfig

    cfg, rest = _estimator_config(options, "sift-depthmodel")
    model_opts = {k: rest.pop(k) for k in ("model", "resolution", "cache_dir", "allow_download") if k in rest}
    if rest:
        raise ConfigError(f"unknown option(s) for sift-depthmodel: {', '.join(sorted(rest))}")
    mcfg = DepthModelConfig.from_dict(model_opts)

    def run(sample, depth0, depth1):
        from twoview.depth.sources import predict_depth_pair
        from twoview.estimator import estimate_relative_pose

        c0, c1 = _cam(sample, 0), _cam(sample, 1)
        d0, d1, info = predict_depth_pair(mcfg, sample.image0, sample.image1, c0, c1)
        res = estimate_relative_pose(sample.image0, sample.image1, c0, c1, depth0=d0, depth1=d1, config=cfg)
        res.info["depth_model"] = info
        return res

    return BenchMethod(name="sift-depthmodel", run=run, uses_depth=(False, False), metric=True)


def _cam(sample, view: int):
    return sample.camera0 if view == 0 else sample.camera1

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


def _config(options: dict, name: str, matcher: str = "sift", **pipeline):
    """(PipelineConfig of the front end alone with the monodepth solver, remaining options)."""
    from twoview.bench.builtin_methods import FRONT_END_ONLY, merge
    from twoview.pipeline import PipelineConfig

    opts = dict(options)
    if "init" in opts:
        raise ConfigError(f"{name} takes no initial pose")
    cfg = merge(FRONT_END_ONLY, {"matcher": {"name": matcher, **opts.pop("matcher", {})},
                                 "solver": {**opts.pop("solver", {}), "mode": "monodepth"}, **pipeline})
    return PipelineConfig.from_dict(cfg), opts


def _monodepth_factory(matcher: str):
    name = f"{matcher}-monodepth"

    def make(options: dict):
        """Factory: the pipeline's front end on the given depth, treated as monocular."""
        from twoview.bench.methods import pipeline_method

        cfg, rest = _config(options, name, matcher)
        if rest:
            raise ConfigError(f"unknown option(s) for {name}: {', '.join(sorted(rest))}")
        return pipeline_method(name, cfg, (True, True), True, depth_kind="monocular", options=options)

    return make


make_sift_monodepth = _monodepth_factory("sift")
make_xfeat_monodepth = _monodepth_factory("xfeat")


def make_sift_depthmodel(options: dict):
    """Factory: depth predicted from the photos by a monocular model, then monodepth."""
    from twoview.bench.methods import pipeline_method

    opts = dict(options)
    model_opts = {k: opts.pop(k) for k in ("model", "resolution", "cache_dir", "allow_download") if k in opts}
    cfg, rest = _config(opts, "sift-depthmodel", depth={"register": False, "model": model_opts})
    if rest:
        raise ConfigError(f"unknown option(s) for sift-depthmodel: {', '.join(sorted(rest))}")
    return pipeline_method("sift-depthmodel", cfg, (False, False), True, options=options)

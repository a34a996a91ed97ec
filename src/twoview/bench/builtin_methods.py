"""twoview's own estimators as benchmark methods, each a named pipeline configuration.

- ``default``: what ``twoview estimate`` runs (:class:`~twoview.pipeline.PipelineConfig`
  defaults) with the depth of both views; option ``config``: a partial
  :class:`PipelineConfig` dict applied on top.
- ``default-images``: the same pipeline given the photos alone (datasets without depth):
  direction-only, or metric when ``config`` names a monocular depth model
  (``default-images:config={"depth":{"model":{...}}}``).
- ``<matcher>`` (essential matrix, no depth, direction-only), ``<matcher>-pnp`` (depth of
  view 0, PnP) and ``<matcher>-rigid3d`` (both depths, 3D-3D): the front end alone (no
  registration, refinement, recovery or confidence threshold), for ``sift`` and, when the
  learned matchers are installed, ``xfeat``, ``aliked`` and ``disk`` (+ LightGlue; slow on
  a CPU, the strongest on wide baselines). The front end includes its cascade (the
  fallback and rescue matchers, :class:`~twoview.pipeline.config.CascadeConfig`). Options
  ``matcher`` / ``solver`` / ``cascade``: partial dicts of those configs, e.g.
  ``xfeat-rigid3d:cascade={"rescue":null}``.
"""

from __future__ import annotations

from twoview.bench.methods import BenchMethod, pipeline_method
from twoview.errors import ConfigError
from twoview.matching.base import available_matchers, installed_matchers

_MODES = {
    "": ("essential", (False, False)),
    "-pnp": ("pnp", (True, False)),
    "-rigid3d": ("rigid3d", (True, True)),
}

#: the options that make a pipeline its front end alone (what the ``<matcher>[-mode]`` methods measure)
FRONT_END_ONLY = {"depth": {"register": False}, "refine": {"method": "none"}, "recovery": {"enabled": False},
                  "confidence": {"min_confidence": 0.0}}


def merge(base: dict, over: dict) -> dict:
    """Nested dict ``base`` updated by ``over`` (inner dicts merged, not replaced)."""
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _factory(matcher: str, suffix: str):
    mode, uses = _MODES[suffix]

    def make(options: dict) -> BenchMethod:
        from twoview.pipeline import PipelineConfig

        opts = dict(options)
        if "init" in opts:
            raise ConfigError(f"{matcher}{suffix} takes no initial pose")
        cfg = merge(FRONT_END_ONLY, {"matcher": {"name": matcher, **opts.pop("matcher", {})},
                                     "solver": {"mode": mode, **opts.pop("solver", {})},
                                     "cascade": opts.pop("cascade", {})})
        if opts:
            raise ConfigError(f"unknown option(s) for {matcher}{suffix}: {', '.join(sorted(opts))}")
        return pipeline_method(f"{matcher}{suffix}", PipelineConfig.from_dict(cfg), uses, any(uses), options=options)

    return make


def _whole_pipeline(name: str, options: dict, with_depth: bool) -> BenchMethod:
    """The default pipeline as bench method ``name``, reading both views' depth or none;
    option ``config`` (a partial :class:`PipelineConfig` dict)."""
    from twoview.pipeline import PipelineConfig

    opts = dict(options)
    if "init" in opts:
        raise ConfigError(f"{name} takes no initial pose (it is the whole pipeline)")
    cfg = PipelineConfig.from_dict(opts.pop("config", {}))
    if opts:
        raise ConfigError(f"unknown option(s) for {name}: {', '.join(sorted(opts))}; valid: config")
    # on photos alone, metric only where a monocular network gives each photo a depth
    metric = with_depth or cfg.depth.model is not None
    return pipeline_method(name, cfg, (with_depth, with_depth), metric, options=options)


def make_default(options: dict) -> BenchMethod:
    """The default pipeline (``twoview estimate``'s), both depths; option ``config``."""
    return _whole_pipeline("default", options, with_depth=True)


def make_default_images(options: dict) -> BenchMethod:
    """The default pipeline given the photos only (no depth read); option ``config``."""
    return _whole_pipeline("default-images", options, with_depth=False)


_FACTORIES = {f"{m}{s}": _factory(m, s) for m in available_matchers() for s in _MODES}
BENCH_METHODS = {"default": f"{__name__}:make_default", "default-images": f"{__name__}:make_default_images"}
BENCH_METHODS.update({name: f"{__name__}:make_{name.replace('-', '_')}" for m in installed_matchers() for s in _MODES
                      for name in [f"{m}{s}"]})
globals().update({f"make_{name.replace('-', '_')}": f for name, f in _FACTORIES.items()})

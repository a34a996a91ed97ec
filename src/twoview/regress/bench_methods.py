"""Benchmark methods of this package, discovered by the bench harness: named pipeline
configurations with the regressor as the front end (:class:`twoview.PipelineConfig`
``front_end="regress"``).

- ``regress``: the regressor alone (one forward pass; with depth, the translation's length
  from the depth maps).
- ``regress-gmm``: the matcher-free pipeline, the regressed pose refined by the Gaussian
  mixture alignment. Like the matchers' front-end methods, both run without the depth
  stage's colour-to-depth registration, and so without the GICP finish that follows it;
  ``pipeline={"depth":{"register":true}}`` adds them, as ``twoview estimate --method
  regress`` runs them when both depths are given. Where the depth is a second camera's
  (the simulated 7-Scenes Kinect, 66 pairs) that takes ``regress-gmm`` from AUC@5 64.3 to
  76.8 (``real_rgbd.md``, eighth session); on registered depth it changes nothing.

Options: ``checkpoint`` (a ``twoview train`` model.pt or a Reloc3r checkpoint; default the
shipped model), ``translation`` ("regressed" or "depth"; default the checkpoint's choice),
``rigid_from_matches`` (false: the regressed pose even with both depth maps; default true),
``depth`` (false: images only, direction or the network's own length; default true),
``pipeline`` (a partial :class:`twoview.PipelineConfig` dict applied on top, e.g. the
mixtures' options).
"""

from __future__ import annotations

from twoview.errors import ConfigError

BENCH_METHODS = {"regress": f"{__name__}:make_regress", "regress-gmm": f"{__name__}:make_regress_gmm"}

_OPTIONS = ("checkpoint", "depth", "translation", "rigid_from_matches", "pipeline")


def _make(name: str, refine: str, options: dict | None):
    from twoview.bench.builtin_methods import FRONT_END_ONLY, merge
    from twoview.bench.methods import pipeline_method
    from twoview.pipeline import Pipeline, PipelineConfig

    opts = dict(options or {})
    if "init" in opts:
        raise ConfigError(f"{name} takes no initial pose")
    unknown = sorted(set(opts) - set(_OPTIONS))
    if unknown:
        raise ConfigError(f"unknown option(s) for {name}: {', '.join(unknown)}; valid: {', '.join(_OPTIONS)}")
    use_depth = opts.get("depth", True)
    if not isinstance(use_depth, bool):
        raise ConfigError(f"{name}: depth must be true or false, got {use_depth!r}")
    if not isinstance(opts.get("pipeline") or {}, dict):
        raise ConfigError(f"{name}: pipeline must be a dict of pipeline options, got {opts['pipeline']!r}")
    if refine == "gmm" and not use_depth:
        raise ConfigError(f"{name} refines with the depth of both views: depth=false does not apply")
    cfg = merge(FRONT_END_ONLY, {"front_end": "regress", "refine": {"method": refine},
                                 "regressor": {"checkpoint": opts.get("checkpoint"),
                                               "translation": opts.get("translation"),
                                               "rigid_from_matches": opts.get("rigid_from_matches", True)}})
    cfg = PipelineConfig.from_dict(merge(cfg, opts.get("pipeline") or {}))
    # loaded now: a bad checkpoint fails before the run starts, and says whether it is metric without depth
    pipe = Pipeline(cfg)
    reg = pipe.models.regressor(cfg.regressor.checkpoint, cfg.regressor.translation, cfg.regressor.rigid_from_matches)
    metric = bool(use_depth or reg.metric_without_depth)
    return pipeline_method(name, cfg, (use_depth, use_depth), metric, options=options, pipeline=pipe)


def make_regress(options: dict | None = None):
    """Factory of ``regress``: the regressor alone (see the module docstring for the options)."""
    return _make("regress", "none", options)


def make_regress_gmm(options: dict | None = None):
    """Factory of ``regress-gmm``: the regressed pose refined by the Gaussian mixtures."""
    return _make("regress-gmm", "gmm", options)

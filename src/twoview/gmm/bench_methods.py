"""Benchmark methods: mixture alignment started from another method's pose.

``gmm@B`` refines registry method B's pose (the harness passes ``{"init": "B"}`` and hands
over B's cached prediction when B runs in the same bench); without ``@B`` the front end
is SIFT (option ``matcher``) with both depths, in the same pipeline. Each is a pipeline
with the mixture refinement on and the recovery and confidence threshold off (the
refinement is what is measured); depth registration stays on (it is part of the
refinement's preparation), and so is the GICP finish where the depth is a second
camera's (``RefineConfig.gicp``) for ``gmm``; the ablation ladder measures the mixtures
alone (``gicp`` "never"). Other options: ``gmm`` (a partial :class:`GMMConfig` dict
applied on top of the method's preset), ``pipeline`` (a partial pipeline dict).

Methods: ``gmm`` (default settings), ``gmm-mono`` (the ``monocular`` preset, for
monocular or ``--depth-noise`` depth) and the ablation ladder ``gmm-geom``,
``gmm-geom+cov``, ``gmm-geom+cov+col``, ``gmm-geom+cov+col+feat`` (see
:data:`twoview.gmm.config.PRESETS`); the depth registration's share is measured with
``gmm:pipeline={"depth":{"register":false}}``.
"""

from __future__ import annotations

from twoview.gmm.config import merge_dicts, preset_config

BENCH_METHODS = {
    "gmm": "twoview.gmm.bench_methods:make_gmm",
    "gmm-mono": "twoview.gmm.bench_methods:make_gmm_mono",
    "gmm-geom": "twoview.gmm.bench_methods:make_gmm_geom",
    "gmm-geom+cov": "twoview.gmm.bench_methods:make_gmm_geom_cov",
    "gmm-geom+cov+col": "twoview.gmm.bench_methods:make_gmm_geom_cov_col",
    "gmm-geom+cov+col+feat": "twoview.gmm.bench_methods:make_gmm_geom_cov_col_feat",
}


def _make(preset: str, name: str, options: dict | None = None):
    from twoview.bench.methods import pipeline_method
    from twoview.errors import ConfigError
    from twoview.pipeline import PipelineConfig

    opts = dict(options or {})
    gmm = preset_config(preset, opts.pop("gmm", {})).to_dict()
    mono = preset == "monocular"
    refine = {"method": "gmm", "gmm": gmm, "gmm_monocular": gmm}
    if preset not in ("default", "monocular"):  # the ablation ladder: the mixtures' terms alone
        refine["gicp"] = "never"
    cfg = {"matcher": {"name": opts.pop("matcher", "sift")}, "refine": refine,
           "recovery": {"enabled": False}, "confidence": {"min_confidence": 0.0}}
    cfg = merge_dicts(cfg, opts.pop("pipeline", {}))
    init = opts.pop("init", None)
    if opts:
        raise ConfigError(f"unknown option(s) {sorted(opts)} for the {name} bench method")
    return pipeline_method(name, PipelineConfig.from_dict(cfg), (True, True), True, init=init,
                           depth_kind="monocular" if mono else "sensor", options=options)


def make_gmm(options: dict | None = None):
    """Default settings."""
    return _make("default", "gmm", options)


def make_gmm_mono(options: dict | None = None):
    """The ``monocular`` preset: relative scale estimated, geometry down-weighted."""
    return _make("monocular", "gmm-mono", options)


def make_gmm_geom(options: dict | None = None):
    """Ablation: geometry only (isotropic Gaussians, no colour, features or appearance)."""
    return _make("geometry", "gmm-geom", options)


def make_gmm_geom_cov(options: dict | None = None):
    """Ablation: geometry with anisotropic covariances."""
    return _make("geometry+covariance", "gmm-geom+cov", options)


def make_gmm_geom_cov_col(options: dict | None = None):
    """Ablation: geometry, covariances and colour at full appearance weight (no features)."""
    return _make("geometry+covariance+colour", "gmm-geom+cov+col", options)


def make_gmm_geom_cov_col_feat(options: dict | None = None):
    """Ablation: + XFeat descriptors (the first round's default)."""
    return _make("geometry+covariance+colour+features", "gmm-geom+cov+col+feat", options)

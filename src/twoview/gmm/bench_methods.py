"""Benchmark methods: mixture alignment started from another method's pose.

``BENCH_METHODS`` maps a method name to ``"module:factory"``; ``factory(options)``
returns ``run(sample, depth0, depth1) -> PoseResult``. ``gmm@B`` starts from registry
method B's pose (the harness passes ``{"init": "B"}`` and hands over B's cached
prediction when B runs in the same bench); without ``@B`` the front end is
:func:`twoview.estimate_relative_pose` with ``options["matcher"]`` (default SIFT) and
both depths. Other options: ``gmm`` (a partial :class:`GMMConfig` dict applied on top of
the method's preset).

Methods: ``gmm`` (default settings), ``gmm-mono`` (the ``monocular`` preset, for
monocular or ``--depth-noise`` depth) and the ablation ladder ``gmm-geom``,
``gmm-geom+cov``, ``gmm-geom+cov+col`` (see :data:`twoview.gmm.config.PRESETS`).
"""

from __future__ import annotations

from twoview.gmm.config import preset_config

BENCH_METHODS = {
    "gmm": "twoview.gmm.bench_methods:make_gmm",
    "gmm-mono": "twoview.gmm.bench_methods:make_gmm_mono",
    "gmm-geom": "twoview.gmm.bench_methods:make_gmm_geom",
    "gmm-geom+cov": "twoview.gmm.bench_methods:make_gmm_geom_cov",
    "gmm-geom+cov+col": "twoview.gmm.bench_methods:make_gmm_geom_cov_col",
}


def _make(preset: str, options: dict | None = None):
    from twoview.config import EstimatorConfig
    from twoview.errors import ConfigError
    from twoview.estimator import estimate_relative_pose
    from twoview.gmm.align import refine_relative_pose
    from twoview.io.images import load_image
    from twoview.result import PoseResult

    opts = dict(options or {})
    cfg = preset_config(preset, opts.pop("gmm", {}))
    est_cfg = EstimatorConfig.from_dict({"matcher": {"name": opts.pop("matcher", "sift")}})
    init_name = opts.pop("init", None)
    init_method = None
    if init_name:
        from twoview.bench.methods import make_method

        init_method = make_method(init_name)
    if opts:
        raise ConfigError(f"unknown option(s) {sorted(opts)} for the gmm bench method")

    def run(sample, depth0, depth1) -> PoseResult:
        im0 = load_image(sample.image0, "image0")
        im1 = load_image(sample.image1, "image1")
        if init_method is not None:
            front = init_method(sample, depth0, depth1)
        else:
            front = estimate_relative_pose(im0, im1, sample.camera0, sample.camera1, depth0, depth1, config=est_cfg)
        if not front.success:
            return front
        if depth0 is None or depth1 is None:
            return PoseResult.failure("gmm refinement needs depth for both views", solver="gmm")
        if not front.metric:
            return PoseResult.failure(f"gmm refinement needs a metric initial pose; {init_name or 'the front end'} "
                                      "gave a direction only", solver="gmm")
        res = refine_relative_pose(im0, im1, sample.camera0, sample.camera1, depth0, depth1, front.cam1_from_cam0, cfg)
        t = dict(front.timings_ms)
        t.update(res.timings_ms)
        res.timings_ms = t
        res.num_matches, res.num_inliers = front.num_matches, front.num_inliers
        return res

    run.uses_depth = (True, True)
    run.metric = True
    return run


def make_gmm(options: dict | None = None):
    """Default settings."""
    return _make("default", options)


def make_gmm_mono(options: dict | None = None):
    """The ``monocular`` preset: relative scale estimated, geometry down-weighted."""
    return _make("monocular", options)


def make_gmm_geom(options: dict | None = None):
    """Ablation: geometry only (isotropic Gaussians, no colour, features or appearance)."""
    return _make("geometry", options)


def make_gmm_geom_cov(options: dict | None = None):
    """Ablation: geometry with anisotropic covariances."""
    return _make("geometry+covariance", options)


def make_gmm_geom_cov_col(options: dict | None = None):
    """Ablation: geometry, covariances and colour (no features)."""
    return _make("geometry+covariance+colour", options)

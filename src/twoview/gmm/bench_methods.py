"""Benchmark methods: front end + Gaussian-mixture refinement.

``BENCH_METHODS`` maps a method name to ``"module:factory"``; ``factory(options)``
returns ``run(sample, depth0, depth1) -> PoseResult``. Options (all optional):
``gmm`` (a :class:`GMMConfig` dict), ``matcher`` (front-end matcher name, default sift),
``init`` (a registry method name whose pose starts the alignment instead of SIFT).
"""

from __future__ import annotations

from twoview.gmm.config import GMMConfig

BENCH_METHODS = {
    "sift+gmm": "twoview.gmm.bench_methods:make_sift_gmm",
    "sift+gmm-nofeat": "twoview.gmm.bench_methods:make_sift_gmm_nofeat",
    "sift+gmm-mono": "twoview.gmm.bench_methods:make_sift_gmm_mono",
    # "gmm@B": mixture alignment started from registry method B's pose (the harness
    # passes {"init": "B"}), e.g. "gmm@sift-rigid3d"
    "gmm": "twoview.gmm.bench_methods:make_gmm",
}

#: settings for depth from a monocular estimator (or degraded depth): relative scale
#: estimated, 30 % depth uncertainty along viewing rays, generous occlusion slack.
MONO_PRESET = {"build": {"depth_sigma_rel": 0.3}, "align": {"estimate_scale": True, "occlusion_tolerance": 0.3}}


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _make(options: dict | None, defaults: dict):
    from twoview.config import EstimatorConfig
    from twoview.estimator import estimate_relative_pose
    from twoview.gmm.align import refine_relative_pose
    from twoview.io.images import load_image
    from twoview.result import PoseResult

    opts = dict(options or {})
    gmm_dict = _merge(defaults, opts.pop("gmm", {}))
    cfg = GMMConfig.from_dict(gmm_dict)
    est_cfg = EstimatorConfig.from_dict({"matcher": {"name": opts.pop("matcher", "sift")}})
    init_name = opts.pop("init", None)
    init_method = None
    if init_name:
        from twoview.bench.methods import make_method

        init_method = make_method(init_name)
    if opts:
        from twoview.errors import ConfigError

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
        if depth0 is None or depth1 is None or not front.metric:
            return PoseResult.failure("gmm refinement needs depth for both views", solver="gmm")
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
    """Mixture alignment from the pose of ``options["init"]`` (SIFT when absent)."""
    return _make(options, {})


def make_sift_gmm(options: dict | None = None):
    """SIFT + rigid3d front end, then mixture alignment at default settings."""
    return _make(options, {})


def make_sift_gmm_nofeat(options: dict | None = None):
    """As ``sift+gmm`` without the learned feature kernel (no torch needed)."""
    return _make(options, {"build": {"features": "none"}})


def make_sift_gmm_mono(options: dict | None = None):
    """As ``sift+gmm`` with :data:`MONO_PRESET` (for monocular or degraded depth)."""
    return _make(options, MONO_PRESET)

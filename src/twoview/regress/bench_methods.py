"""Benchmark methods of this package, discovered by the bench harness.

``BENCH_METHODS`` maps a method name to ``"module:factory"``; ``factory(options)``
returns ``run(sample, depth0, depth1) -> PoseResult``. The regressor sees both images in
its canonical camera (the sample's intrinsics) and, by default, both depth maps for the
translation's metric length (``regress:depth=false``: images only).
"""

from __future__ import annotations

BENCH_METHODS = {"regress": "twoview.regress.bench_methods:make_regress"}

_OPTIONS = ("checkpoint", "depth", "translation")


def make_regress(options: dict | None = None):
    """Factory of the "regress" method.

    Options:
        checkpoint: twoview or Reloc3r checkpoint path (default: the shipped model).
        depth: use both depth maps for the metric scale (default true).
        translation: "regressed" or "depth" (see :data:`twoview.regress.infer.TRANSLATION_MODES`;
            default: the checkpoint's choice).

    Raises:
        InputError: an unknown option or an unreadable checkpoint (loaded eagerly so a bad
        path fails before the run starts).
    """
    from twoview.errors import InputError
    from twoview.io.images import load_image
    from twoview.regress.infer import PoseRegressor

    options = dict(options or {})
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise InputError("regress options", f"unknown option(s) {unknown}; valid: {list(_OPTIONS)}")
    use_depth = options.get("depth", True)
    if not isinstance(use_depth, bool):
        raise InputError("regress options", f"depth must be true or false, got {use_depth!r}")
    reg = PoseRegressor.from_checkpoint(options.get("checkpoint"), options.get("translation"))

    def run(sample, depth0=None, depth1=None):
        im0, im1 = load_image(sample.image0, "image0"), load_image(sample.image1, "image1")
        return reg.estimate(im0, im1, sample.camera0, sample.camera1, depth0 if use_depth else None,
                            depth1 if use_depth else None)

    run.uses_depth = (use_depth, use_depth)
    run.metric = bool(use_depth or reg.metric_without_depth)
    return run

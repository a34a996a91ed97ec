"""Benchmark methods of this package, discovered by the bench harness.

``BENCH_METHODS`` maps a method name to ``"module:factory"``; ``factory(options)``
returns ``run(sample, depth0, depth1) -> PoseResult``. The regressor ignores depth and
intrinsics (one forward pass on the two images).
"""

from __future__ import annotations

BENCH_METHODS = {"regress": "twoview.regress.bench_methods:make_regress"}


def make_regress(options: dict | None = None):
    """Factory of the "regress" method.

    Options:
        checkpoint: twoview or Reloc3r checkpoint path (default: the shipped tiny model).

    Raises:
        InputError: an unknown option or an unreadable checkpoint (loaded eagerly so a bad
        path fails before the run starts).
    """
    from twoview.errors import InputError
    from twoview.regress.infer import estimate, load_regressor

    options = dict(options or {})
    unknown = sorted(set(options) - {"checkpoint"})
    if unknown:
        raise InputError("regress options", f"unknown option(s) {unknown}; valid: ['checkpoint']")
    ckpt = options.get("checkpoint")
    model = load_regressor(ckpt)

    def run(sample, depth0=None, depth1=None):
        return estimate(sample.image0, sample.image1, checkpoint=ckpt)

    run.uses_depth = (False, False)
    run.metric = bool(model.cfg.metric_scale)
    return run

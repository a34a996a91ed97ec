"""twoview's own estimators as benchmark methods.

``<matcher>`` (essential matrix, no depth, direction-only), ``<matcher>-pnp`` (depth of
view 0, PnP) and ``<matcher>-rigid3d`` (both depths, 3D-3D), for ``sift`` and, when the
learned matchers are installed, ``xfeat``, ``aliked`` and ``disk`` (+ LightGlue; slow on a
CPU, the strongest on wide baselines).
"""

from __future__ import annotations

from twoview.bench.methods import BenchMethod
from twoview.errors import ConfigError
from twoview.matching.base import available_matchers, installed_matchers

_MODES = {
    "": ("essential", (False, False)),
    "-pnp": ("pnp", (True, False)),
    "-rigid3d": ("rigid3d", (True, True)),
}


def _factory(matcher: str, suffix: str):
    mode, uses = _MODES[suffix]

    def make(options: dict) -> BenchMethod:
        from twoview.config import EstimatorConfig

        opts = dict(options)
        if "init" in opts:
            raise ConfigError(f"{matcher}{suffix} takes no initial pose")
        cfg = EstimatorConfig.from_dict(
            {"matcher": {"name": matcher, **opts.pop("matcher", {})}, "solver": {"mode": mode, **opts.pop("solver", {})}}
        )
        if opts:
            raise ConfigError(f"unknown option(s) for {matcher}{suffix}: {', '.join(sorted(opts))}")

        def run(sample, depth0, depth1):
            from twoview.estimator import estimate_relative_pose

            return estimate_relative_pose(
                sample.image0, sample.image1, sample.camera0, sample.camera1,
                depth0=depth0 if uses[0] else None, depth1=depth1 if uses[1] else None, config=cfg,
            )

        return BenchMethod(name=f"{matcher}{suffix}", run=run, uses_depth=uses, metric=any(uses))

    return make


_FACTORIES = {f"{m}{s}": _factory(m, s) for m in available_matchers() for s in _MODES}
BENCH_METHODS = {name: f"{__name__}:make_{name.replace('-', '_')}" for m in installed_matchers() for s in _MODES for name in [f"{m}{s}"]}
globals().update({f"make_{name.replace('-', '_')}": f for name, f in _FACTORIES.items()})

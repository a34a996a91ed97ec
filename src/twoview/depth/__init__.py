"""Depth: monocular estimators, depth-to-colour registration, and degradation models for benchmarks.

- :mod:`twoview.depth.estimators`: monocular metric depth networks through Hugging Face
  transformers (optional extra ``depth``; imported only when used).
- :mod:`twoview.depth.registration`: where a view's sensor depth lies on its colour image.
- :mod:`twoview.depth.degrade`: simulated monocular depth for benchmarks.
- :mod:`twoview.depth.sensor`: simulated unregistered Kinect-class sensor depth for benchmarks.

Where a pair's depth comes from (files, a model, none) is the pipeline's depth stage
(:mod:`twoview.pipeline`). Names are imported on first use.
"""

__all__ = [
    "DepthDegradation",
    "DepthModelConfig",
    "MonocularDepthEstimator",
    "SensorModel",
    "degrade_depth",
    "load_depth_estimator",
    "simulate_sensor_depth",
]

_LAZY = {
    "DepthDegradation": "degrade", "degrade_depth": "degrade",
    "DepthModelConfig": "estimators", "MonocularDepthEstimator": "estimators", "load_depth_estimator": "estimators",
    "SensorModel": "sensor", "simulate_sensor_depth": "sensor",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"twoview.depth.{_LAZY[name]}"), name)
    raise AttributeError(name)

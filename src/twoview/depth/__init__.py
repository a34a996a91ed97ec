"""Depth sources: files, monocular estimators, and degradation models for benchmarks.

- :mod:`twoview.depth.sources`: one place deciding where a pair's depth comes from
  (files, a monocular model, or none -> direction-only).
- :mod:`twoview.depth.estimators`: monocular metric depth networks through Hugging Face
  transformers (optional extra ``depth``; imported only when used).
- :mod:`twoview.depth.degrade`: simulated monocular depth for benchmarks.
- :mod:`twoview.depth.sensor`: simulated unregistered Kinect-class sensor depth for benchmarks.
"""

from twoview.depth.degrade import DepthDegradation, degrade_depth
from twoview.depth.estimators import DepthModelConfig, MonocularDepthEstimator, load_depth_estimator
from twoview.depth.sensor import SensorModel, simulate_sensor_depth
from twoview.depth.sources import DepthPair, predict_depth_pair, resolve_depths

__all__ = [
    "DepthDegradation",
    "DepthModelConfig",
    "DepthPair",
    "MonocularDepthEstimator",
    "SensorModel",
    "degrade_depth",
    "load_depth_estimator",
    "predict_depth_pair",
    "resolve_depths",
    "simulate_sensor_depth",
]

"""The pipeline: one object that turns two views into a pose (see :mod:`twoview.pipeline.pipeline`)."""

from twoview.pipeline.config import (
    CascadeConfig,
    ConfidenceConfig,
    DepthConfig,
    PipelineConfig,
    RecoveryConfig,
    RefineConfig,
    RegressorRunConfig,
)
from twoview.pipeline.pipeline import Pipeline

__all__ = [
    "CascadeConfig",
    "ConfidenceConfig",
    "DepthConfig",
    "Pipeline",
    "PipelineConfig",
    "RecoveryConfig",
    "RefineConfig",
    "RegressorRunConfig",
]

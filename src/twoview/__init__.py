"""twoview: metric relative pose between two photos.

Quickstart::

    import twoview
    result = twoview.estimate_relative_pose("a.png", "b.png", camera0=K, camera1=K,
                                            depth0="a_depth.png", depth_scale=1000)
    if result.success:
        print(result.cam1_from_cam0.matrix, result.metric)

Conventions: ``cam1_from_cam0`` maps camera-0 coordinates to camera-1 coordinates,
``x1 = R @ x0 + t``; OpenCV axes (x right, y down, z forward); metres.
"""

from twoview.config import MatcherConfig, SolverConfig
from twoview.errors import BackendUnavailable, ConfigError, InputError, TwoViewError
from twoview.estimator import estimate_from_matches, estimate_relative_pose
from twoview.geometry import Camera, Pose
from twoview.pipeline import Pipeline, PipelineConfig
from twoview.result import Matches, PoseResult
from twoview.view import View, load_view, load_views

#: the older name of :class:`PipelineConfig` (its ``matcher`` and ``solver`` fields are the same)
EstimatorConfig = PipelineConfig

__version__ = "0.1.0"

__all__ = [
    "BackendUnavailable",
    "Camera",
    "ConfigError",
    "EstimatorConfig",
    "InputError",
    "MatcherConfig",
    "Matches",
    "Pipeline",
    "PipelineConfig",
    "Pose",
    "PoseResult",
    "SolverConfig",
    "TwoViewError",
    "View",
    "estimate_from_matches",
    "estimate_relative_pose",
    "load_view",
    "load_views",
]

"""twoview: metric relative pose between two photos.

Quickstart::

    import twoview
    result = twoview.estimate_relative_pose("a.png", "b.png", camera0=K, camera1=K,
                                            depth0="a_depth.png", depth_scale=1000)
    if result.success:
        print(result.cam1_from_cam0.matrix, result.metric)

Conventions: ``cam1_from_cam0`` maps camera-0 coordinates to camera-1 coordinates,
``x1 = R @ x0 + t``; OpenCV axes (x right, y down, z forward); metres.

The names below are imported on first use (``import twoview`` itself is light, so the
command line answers ``--help`` without loading the numerics).
"""

__version__ = "0.2.0"

#: public name -> the module that defines it
_API = {
    "BackendUnavailable": "twoview.errors", "ConfigError": "twoview.errors", "InputError": "twoview.errors",
    "TwoViewError": "twoview.errors", "TwoViewWarning": "twoview.errors",
    "MatcherConfig": "twoview.config", "SolverConfig": "twoview.config",
    "estimate_from_matches": "twoview.estimator", "estimate_relative_pose": "twoview.estimator",
    "Camera": "twoview.geometry", "Pose": "twoview.geometry",
    "Pipeline": "twoview.pipeline", "PipelineConfig": "twoview.pipeline",
    "Matches": "twoview.result", "PoseResult": "twoview.result",
    "View": "twoview.view", "load_view": "twoview.view", "load_views": "twoview.view",
}

__all__ = sorted([*_API, "EstimatorConfig"])


def __getattr__(name):
    import importlib

    if name == "EstimatorConfig":  # the older name of PipelineConfig (its matcher and solver fields are the same)
        name = "PipelineConfig"
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'twoview' has no attribute {name!r}")


def __dir__():
    return __all__ + ["__version__"]

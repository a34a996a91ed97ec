"""Geometry core: rotations, rigid poses, pinhole cameras and projection.

Everything here is numpy float64 and depends on nothing else in twoview.
"""

from twoview.geometry.camera import Camera
from twoview.geometry.pose import Pose
from twoview.geometry.rotation import (
    quaternion_to_rotation,
    rotation_angle_deg,
    rotation_to_quaternion,
    so3_exp,
    so3_log,
)

__all__ = [
    "Camera",
    "Pose",
    "quaternion_to_rotation",
    "rotation_angle_deg",
    "rotation_to_quaternion",
    "so3_exp",
    "so3_log",
]

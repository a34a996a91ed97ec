"""The unit every dataset reader yields and every benchmark method consumes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from twoview.geometry.camera import Camera
from twoview.geometry.pose import Pose


@dataclass
class PairSample:
    """One image pair with ground truth.

    Attributes:
        pair_id: stable identifier, unique within a dataset (used as the cache key).
        image0, image1: image file paths.
        camera0, camera1: intrinsics at the stored image resolution.
        cam1_from_cam0: ground-truth relative pose (metres).
        depth0, depth1: depth file paths, or None.
        depth_scale: file units per metre for integer depth PNGs.
        meta: anything else (frame ids, frame gap, scene name, ...), JSON-serialisable.
    """

    pair_id: str
    image0: Path
    image1: Path
    camera0: Camera
    camera1: Camera
    cam1_from_cam0: Pose
    depth0: Path | None = None
    depth1: Path | None = None
    depth_scale: float | None = None
    meta: dict = field(default_factory=dict)

    def load_depths(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Depth maps in metres (H, W) with NaN invalid, resized to the images if needed."""
        from twoview.io.depth import load_depth, prepare_depth

        out = []
        for path, cam, name in ((self.depth0, self.camera0, "depth0"), (self.depth1, self.camera1, "depth1")):
            out.append(None if path is None else prepare_depth(load_depth(path, self.depth_scale, f"{name} ({path})"), cam.size, f"{name} ({path})"))
        return out[0], out[1]

"""KITTI odometry, native layout.

    <root>/image_0/NNNNNN.png     rectified grey left camera (image_1..3 selectable)
    <root>/poses_XX.txt or poses.txt or ../../poses/XX.txt   one line per frame:
                                  12 numbers, row-major 3x4 camera-to-world of cam0, metres
    <root>/calib.txt              native: "P0: 12 numbers" ... (or calib_cam0.txt "fx fy cx cy")

Only ``image_0`` (the frame of the poses) is supported for ground truth; frame ids are the
6-digit frame numbers. No depth.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from twoview.datasets._util import SizeCache
from twoview.datasets.common import Frame, SequenceDataset, parse_numbers, pose_from_matrix_checked, read_text_lines
from twoview.errors import InputError
from twoview.geometry.camera import Camera


def read_kitti_poses(path: Path) -> list[np.ndarray]:
    """One (3, 4) camera-to-world per line; blank lines are not allowed (they shift ids)."""
    from twoview.io.text import read_text

    out = []
    for lineno, ln in enumerate(read_text(path, "poses").splitlines(), 1):
        M = parse_numbers(ln, path, lineno, 12).reshape(3, 4)
        pose_from_matrix_checked(M, f"{path}:{lineno}")
        out.append(M)
    return out


def read_kitti_calib(root: Path) -> tuple[float, float, float, float]:
    calib = root / "calib.txt"
    if calib.is_file():
        for lineno, ln in read_text_lines(calib, str(calib)):
            if ln.startswith("P0:"):
                P = parse_numbers(ln[3:], calib, lineno, 12).reshape(3, 4)
                return P[0, 0], P[1, 1], P[0, 2], P[1, 2]
        raise InputError(str(calib), "no 'P0:' line")
    alt = root / "calib_cam0.txt"
    if alt.is_file():
        lines = read_text_lines(alt, str(alt))
        if not lines:
            raise InputError(str(alt), "no numbers")
        return tuple(parse_numbers(lines[0][1], alt, lines[0][0], 4))  # type: ignore[return-value]
    raise InputError("--root", f"no calib.txt (or calib_cam0.txt) in {root}")


class KITTIOdometryDataset(SequenceDataset):
    kind = "kitti"

    def __init__(self, root, selection=None, poses: str | None = None):
        super().__init__(root, selection)
        if poses:
            pfile = Path(poses) if Path(poses).is_absolute() else self.root / poses
        else:
            seq = self.root.name[-2:]
            cands = [*sorted(self.root.glob("poses_*.txt")), self.root / "poses.txt", self.root.parent.parent / "poses" / f"{seq}.txt"]
            pfile = next((p for p in cands if p.is_file()), None)
            if pfile is None:
                raise InputError("--root", f"no poses_XX.txt / poses.txt / ../../poses/{seq}.txt for {self.root}")
        self.poses_file = pfile
        mats = read_kitti_poses(pfile)
        k = read_kitti_calib(self.root)
        img_dir = self.root / "image_0"
        if not img_dir.is_dir():
            raise InputError("--root", f"no image_0 folder in {self.root}")
        sizes = SizeCache()
        for image in sorted(img_dir.glob("*.png")):
            if not image.stem.isdigit():
                continue
            i = int(image.stem)
            if i >= len(mats):
                raise InputError(str(pfile), f"no pose for frame {image.stem} ({len(mats)} lines)")
            w, h = sizes(image)
            self.frames.append(Frame(image.stem, image, Camera(*k, w, h), pose_from_matrix_checked(mats[i], f"{pfile}:{i + 1}"), None, i))

    def frame_aliases(self, f):
        return [*super().frame_aliases(f), str(int(f.frame_id))]

    def describe(self):
        return {**super().describe(), "poses": str(self.poses_file)}

"""Microsoft 7-Scenes, native layout.

    <scene>/seq-XX/frame-XXXXXX.color.png (or .jpg)
    <scene>/seq-XX/frame-XXXXXX.depth.png   uint16 millimetres, 0 / 65535 invalid
    <scene>/seq-XX/frame-XXXXXX.pose.txt    4x4 camera-to-world, metres

``root`` is a scene folder (all its ``seq-*`` folders) or one sequence folder. All
sequences of a scene share one world frame, so cross-sequence pairs have ground truth.
Frame ids are ``seq-XX/frame-XXXXXX``. Intrinsics: the dataset's published nominal
values (fx = fy = 585, principal point at the centre of the 640x480 image), used for
colour and depth alike (the two are not registered in 7-Scenes).
Frame gaps pair frames of the same sequence only.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from twoview.datasets._util import SizeCache
from twoview.datasets.common import Frame, SequenceDataset, parse_numbers, pose_from_matrix_checked, read_text_lines
from twoview.errors import InputError
from twoview.geometry.camera import Camera

SEVEN_SCENES_FOCAL = 585.0
_FRAME = re.compile(r"^frame-(\d+)\.pose\.txt$")
_SEQ = re.compile(r"^seq-?(\d+)$")


def read_matrix_file(path: Path, rows: int = 4) -> tuple[np.ndarray, str]:
    """A whitespace-separated ``rows`` x 4 matrix file -> ((rows, 4), "file:first-last line").
    NaN and infinite entries are kept (7-Scenes marks lost tracking so): the caller decides."""
    lines = read_text_lines(path, str(path))
    if len(lines) < rows:
        raise InputError(str(path), f"expected {rows} rows of 4 numbers, got {len(lines)} lines")
    M = np.stack([parse_numbers(ln, path, lineno, 4, finite=False) for lineno, ln in lines[:rows]])
    return M, f"{path}:{lines[0][0]}-{lines[rows - 1][0]}"


class SevenScenesDataset(SequenceDataset):
    kind = "7scenes"

    def __init__(self, root, selection=None):
        super().__init__(root, selection, depth_scale=1000.0)
        if _SEQ.match(self.root.name):
            seqs = [self.root]
            self.scene = self.root.parent.name
        else:
            seqs = sorted(p for p in self.root.iterdir() if p.is_dir() and _SEQ.match(p.name))
        if not seqs:
            raise InputError("--root", f"no seq-XX folders in {self.root} (7-Scenes layout)")
        sizes = SizeCache()
        for seq in seqs:
            seq_num = int(_SEQ.match(seq.name).group(1))
            for pose_file in sorted(seq.glob("frame-*.pose.txt")):
                m = _FRAME.match(pose_file.name)
                if not m:
                    continue
                stem = pose_file.name[: -len(".pose.txt")]
                image = next((seq / f"{stem}.color{e}" for e in (".png", ".jpg") if (seq / f"{stem}.color{e}").is_file()), None)
                if image is None:
                    continue
                depth = seq / f"{stem}.depth.png"
                M, where = read_matrix_file(pose_file)
                if not np.all(np.isfinite(M)) or np.abs(M).max() > 1e6:
                    continue  # 7-Scenes marks lost tracking with NaN/inf/huge values: no ground truth
                pose = pose_from_matrix_checked(M, where)
                w, h = sizes(image)
                cam = Camera(SEVEN_SCENES_FOCAL, SEVEN_SCENES_FOCAL, w / 2.0, h / 2.0, w, h)
                self.frames.append(
                    Frame(f"{seq.name}/{stem}", image, cam, pose, depth if depth.is_file() else None,
                          seq_num * 1_000_000 + int(m.group(1)), sequence=seq.name)
                )
        if not self.frames:
            raise InputError("--root", f"no frame-XXXXXX.pose.txt with a colour image under {self.root}")

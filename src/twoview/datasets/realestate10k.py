"""RealEstate10K camera files (``<split>/<sequence>.txt``) with extracted frames.

File format: the first line is the YouTube URL; then one line per frame::

    timestamp_us fx fy cx cy 0 0 r11 r12 r13 t1 r21 r22 r23 t2 r31 r32 r33 t3

intrinsics normalised by the image width (fx, cx) and height (fy, cy), and a 3x4
world-to-camera matrix (OpenCV axes). Frames are images named ``<timestamp_us>.png`` (or
``.jpg``) in ``frames_dir`` (default: ``<root>/frames/<sequence>`` if it exists, else
``<root>/<sequence>``). Frame ids are the timestamps. The poses come from SLAM with an
arbitrary scale per sequence: no metric error is scored (``metric_gt`` False).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from twoview.datasets._util import SizeCache
from twoview.datasets.common import Frame, SequenceDataset, parse_numbers, pose_from_matrix_checked, read_text_lines
from twoview.errors import InputError
from twoview.geometry.camera import Camera


def read_realestate10k(path: Path) -> tuple[str, list[tuple[str, np.ndarray, np.ndarray, int]]]:
    """(url, [(timestamp string, (4,) normalised fx fy cx cy, (3, 4) cam_from_world, line)])."""
    lines = read_text_lines(path, "camera file")
    if not lines:
        raise InputError(str(path), "empty camera file")
    url = lines[0][1]
    rows = []
    for lineno, ln in lines[1:]:
        ts = ln.split()[0]
        v = parse_numbers(ln, path, lineno, 19)
        if v[0] != int(v[0]):
            raise InputError(f"{path}:{lineno}", f"timestamp must be an integer (microseconds), got {ts}")
        rows.append((ts, v[1:5], v[7:19].reshape(3, 4), lineno))
    return url, rows


class RealEstate10KDataset(SequenceDataset):
    kind = "realestate10k"
    metric_gt = False

    def __init__(self, root, selection=None, sequence: str | None = None, frames_dir: str | None = None):
        super().__init__(root, selection)
        if sequence is None:
            txts = sorted(self.root.glob("*.txt"))
            if len(txts) != 1:
                raise InputError("--root", f"{len(txts)} camera .txt files in {self.root}; choose one with sequence=NAME")
            cam_file = txts[0]
        else:
            cam_file = self.root / (sequence if sequence.endswith(".txt") else f"{sequence}.txt")
        seq = cam_file.stem
        self.scene = seq
        self.url, rows = read_realestate10k(cam_file)
        if frames_dir:
            fdir = Path(frames_dir) if Path(frames_dir).is_absolute() else self.root / frames_dir
        else:
            fdir = self.root / "frames" / seq if (self.root / "frames" / seq).is_dir() else self.root / seq
        if not fdir.is_dir():
            raise InputError("frames_dir", f"frame folder not found: {fdir}")
        self.options = {"sequence": seq, "frames_dir": str(fdir)}
        sizes = SizeCache()
        for index, (ts, k, P, lineno) in enumerate(rows):
            image = next((fdir / f"{ts}{e}" for e in (".png", ".jpg") if (fdir / f"{ts}{e}").is_file()), None)
            if image is None:
                continue  # frames are extracted by the user; missing ones are skipped
            w, h = sizes(image)
            # normalised (pixel-corner origin) -> pixels, OpenCV pixel-centre origin
            cam = Camera(k[0] * w, k[1] * h, k[2] * w - 0.5, k[3] * h - 0.5, w, h)
            cam_from_world = pose_from_matrix_checked(P, f"{cam_file}:{lineno}")
            self.frames.append(Frame(ts, image, cam, cam_from_world.inverse(), None, index, int(ts) * 1e-6))
        if not self.frames:
            raise InputError(str(fdir), f"no frame image <timestamp>.png/.jpg for the {len(rows)} timestamps of {cam_file}")

    def describe(self):
        return {**super().describe(), **self.options}

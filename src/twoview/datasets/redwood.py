"""ICL-NUIM / Redwood / Open3D RGB-D sequences with a ``.log`` trajectory.

    <root>/<trajectory>.log     per frame: a line "id id id+1" then a 4x4 camera-to-world
    <root>/color|image|rgb/     images sorted by name; frame i is the i-th image
    <root>/depth|depth_clean/   uint16 depth, ``depth_scale`` units per metre (1000)
    <root>/camera_intrinsic.json  optional, Open3D PinholeCameraIntrinsic (column-major K)

Frame ids are the integer ids of the ``.log`` (``"17"``; zero-padded names such as
``"00017"`` are accepted in pair lists). Without an intrinsics file the Open3D
PrimeSense default (fx = fy = 525, cx = 319.5, cy = 239.5) is used.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from twoview.datasets._util import SizeCache
from twoview.datasets.common import Frame, SequenceDataset, parse_numbers, pose_from_matrix_checked, read_text_lines
from twoview.errors import InputError
from twoview.geometry.camera import Camera

PRIMESENSE_DEFAULT = (525.0, 525.0, 319.5, 239.5)
_IMAGE_DIRS = ("color", "image", "rgb")
_DEPTH_DIRS = ("depth", "depth_clean")
_EXTS = (".png", ".jpg", ".jpeg")


def read_log_trajectory(path: Path) -> dict[int, np.ndarray]:
    """Redwood ``.log``: {frame id: (4, 4) camera-to-world}."""
    lines = read_text_lines(path, "trajectory")
    if len(lines) % 5:
        raise InputError(str(path), f"a .log file has 5 lines per frame; got {len(lines)} non-empty lines")
    out = {}
    for k in range(0, len(lines), 5):
        lineno, head = lines[k]
        ids = parse_numbers(head, path, lineno, 3)
        if not np.all(ids == np.round(ids)):
            raise InputError(f"{path}:{lineno}", f"expected three integer ids, got {head!r}")
        M = np.stack([parse_numbers(ln, path, n, 4) for n, ln in lines[k + 1 : k + 5]])
        pose_from_matrix_checked(M, f"{path}:{lines[k + 1][0]}")
        out[int(ids[0])] = M
    return out


def read_open3d_intrinsics(path: Path) -> tuple[tuple[float, float, float, float], int, int]:
    from twoview.io.text import read_json

    d = read_json(path)
    try:
        K = np.asarray(d["intrinsic_matrix"], dtype=np.float64).reshape(3, 3).T  # column-major
        return (K[0, 0], K[1, 1], K[0, 2], K[1, 2]), int(d["width"]), int(d["height"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(str(path), f"not an Open3D camera intrinsic JSON: {e}") from None


def _find_dir(root: Path, names, given: str | None) -> Path | None:
    if given:
        p = root / given
        if not p.is_dir():
            raise InputError(str(p), "folder not found")
        return p
    return next((root / n for n in names if (root / n).is_dir()), None)


class RedwoodLogDataset(SequenceDataset):
    kind = "icl_nuim"

    def __init__(self, root, selection=None, trajectory: str | None = None, image_dir: str | None = None,
                 depth_dir: str | None = None, depth_scale: float = 1000.0, use_depth: bool = True):
        super().__init__(root, selection, depth_scale=depth_scale)
        self.options = dict(trajectory=trajectory, image_dir=image_dir, depth_dir=depth_dir, depth_scale=depth_scale, use_depth=use_depth)
        if trajectory:
            log = self.root / trajectory
        else:
            logs = sorted(self.root.glob("*.log"))
            named = [p for p in logs if p.name == "trajectory.log"]
            if len(logs) != 1 and not named:
                raise InputError(
                    "--root", f"{self.root} has {len(logs)} .log files ({', '.join(p.name for p in logs) or 'none'}); "
                    "choose one with the option trajectory=NAME",
                )
            log = named[0] if named else logs[0]
        self.options["trajectory"] = log.name
        traj = read_log_trajectory(log)
        img_dir = _find_dir(self.root, _IMAGE_DIRS, image_dir)
        if img_dir is None:
            raise InputError("--root", f"no image folder ({'/'.join(_IMAGE_DIRS)}) in {self.root}")
        images = sorted(p for p in img_dir.iterdir() if p.suffix.lower() in _EXTS)
        dep_dir = _find_dir(self.root, _DEPTH_DIRS, depth_dir) if use_depth else None
        depths = sorted(p for p in dep_dir.iterdir() if p.suffix.lower() == ".png") if dep_dir else []
        by_stem = {p.stem: p for p in depths}
        intr = self.root / "camera_intrinsic.json"
        k = read_open3d_intrinsics(intr)[0] if intr.is_file() else PRIMESENSE_DEFAULT
        sizes = SizeCache()
        for fid, M in sorted(traj.items()):
            if fid < 0 or fid >= len(images):
                raise InputError(str(log), f"frame id {fid} has no image ({len(images)} images in {img_dir})")
            image = images[fid]
            w, h = sizes(image)
            depth = by_stem.get(image.stem, depths[fid] if len(depths) == len(images) else None)
            self.frames.append(Frame(str(fid), image, Camera(*k, w, h), pose_from_matrix_checked(M, str(log)), depth, fid))

    def frame_aliases(self, f):
        return [*super().frame_aliases(f), f"{int(f.frame_id):05d}", f"{int(f.frame_id):06d}"]

    def describe(self):
        return {**super().describe(), **self.options}

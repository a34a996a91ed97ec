"""CO3Dv2 frame annotations (``<category>/frame_annotations.jgz``).

``frame_annotations.jgz`` is a gzipped JSON list, one entry per frame, with
``sequence_name``, ``frame_number``, ``image: {path, size: [H, W]}`` and
``viewpoint: {R, T, focal_length, principal_point, intrinsics_format}`` in PyTorch3D
conventions: ``X_cam = X_world @ R + T`` with camera axes +X left, +Y up, +Z forward, and
intrinsics in NDC: ``"ndc_isotropic"`` (CO3Dv2, scale ``min(H, W) / 2``) or
``"ndc_norm_image_bounds"`` (CO3Dv1, scales ``W / 2`` and ``H / 2``). Converted here to
OpenCV: ``R_cv = diag(-1, -1, 1) @ R.T``, ``t_cv = diag(-1, -1, 1) @ T``, pixels with
the pixel-centre origin. Image paths are relative to the dataset root (the category
folder's parent). Poses come from SfM (arbitrary scale): no metric error (``metric_gt``
False); depth is not read.
"""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path

import numpy as np

from twoview.datasets.common import Frame, SequenceDataset, pose_from_matrix_checked
from twoview.errors import InputError
from twoview.geometry.camera import Camera
from twoview.geometry.pose import Pose

_FLIP = np.diag([-1.0, -1.0, 1.0])


def co3d_camera_and_pose(vp: dict, width: int, height: int, where: str) -> tuple[Camera, Pose]:
    """OpenCV intrinsics and cam_from_world of one CO3D ``viewpoint``."""
    if not isinstance(vp, dict):
        raise InputError(where, f"viewpoint must be an object, got {type(vp).__name__}")
    try:
        f = np.asarray(vp["focal_length"], float).reshape(2)
        p = np.asarray(vp["principal_point"], float).reshape(2)
        R = np.asarray(vp["R"], float).reshape(3, 3)
        T = np.asarray(vp["T"], float).reshape(3)
        fmt = vp.get("intrinsics_format", "ndc_norm_image_bounds")
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(where, f"bad viewpoint ({e})") from None
    if fmt == "ndc_isotropic":
        sx = sy = min(width, height) / 2.0
    elif fmt == "ndc_norm_image_bounds":
        sx, sy = width / 2.0, height / 2.0
    else:
        raise InputError(where, f"unknown intrinsics_format {fmt!r}")
    cam = Camera(f[0] * sx, f[1] * sy, width / 2.0 - p[0] * sx - 0.5, height / 2.0 - p[1] * sy - 0.5, width, height)
    M = np.eye(4)
    M[:3, :3], M[:3, 3] = _FLIP @ R.T, _FLIP @ T
    return cam, pose_from_matrix_checked(M, where)


class CO3DDataset(SequenceDataset):
    kind = "co3d"
    metric_gt = False

    def __init__(self, root, selection=None, sequence: str | None = None, annotations: str = "frame_annotations.jgz",
                 data_root: str | None = None):
        super().__init__(root, selection)
        path = self.root / annotations
        if not path.is_file():
            raise InputError("--root", f"no {annotations} in {self.root} (a CO3D category folder)")
        try:
            with gzip.open(path, "rt") as fh:
                entries = json.load(fh)
        except (OSError, ValueError, EOFError, zlib.error) as e:  # a broken gzip stream, bad UTF-8 or JSON
            raise InputError(str(path), f"cannot read gzipped JSON: {e}") from None
        except RecursionError:
            raise InputError(str(path), "the JSON is nested too deeply to be frame annotations") from None
        if not isinstance(entries, list):
            raise InputError(str(path), "expected a JSON list of frame annotations")
        for k, e in enumerate(entries):
            if not (isinstance(e, dict) and isinstance(e.get("sequence_name"), str)):
                raise InputError(f"{path}:entry[{k}]", "expected an object with a string sequence_name")
        seqs = sorted({e["sequence_name"] for e in entries})
        if sequence is None:
            if len(seqs) != 1:
                raise InputError("sequence", f"{path} has {len(seqs)} sequences; choose one with sequence=NAME")
            sequence = seqs[0]
        elif sequence not in seqs:
            raise InputError("sequence", f"no sequence {sequence!r} in {path}")
        self.scene, self.sequence = sequence, sequence
        base = Path(data_root) if data_root else self.root.parent
        for k, e in enumerate(entries):
            if e["sequence_name"] != sequence:
                continue
            where = f"{path}:entry[{k}]"
            try:
                h, w = (int(v) for v in e["image"]["size"])
                rel = e["image"]["path"]
                num = int(e["frame_number"])
                if not isinstance(rel, str):
                    raise TypeError(f"image path must be a string, got {rel!r}")
            except (KeyError, TypeError, ValueError, OverflowError) as ex:
                raise InputError(where, f"missing image path/size or frame_number ({ex})") from None
            stamp = e.get("frame_timestamp")
            stamp = float(stamp) if isinstance(stamp, (int, float)) and not isinstance(stamp, bool) else None
            cam, cam_from_world = co3d_camera_and_pose(e.get("viewpoint") or {}, w, h, where)
            image = base / rel
            if not image.is_file():
                raise InputError(where, f"image not found: {image}")
            self.frames.append(Frame(str(num), image, cam, cam_from_world.inverse(), None, num, stamp))
        self.frames.sort(key=lambda f: f.index)

    def describe(self):
        return {**super().describe(), "sequence": self.sequence}

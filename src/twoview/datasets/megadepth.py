"""MegaDepth-1500 (and other LoFTR MegaDepth splits) from LoFTR's scene-info ``.npz``.

One ``.npz`` per scene (e.g. ``megadepth_test_1500_scene_info/0015_0.1_0.3.npz``) with
``image_paths`` (N,) relative to the MegaDepth root (None for unused images),
``intrinsics`` (N, 3, 3), ``poses`` (N, 4, 4) camera-from-world and ``pair_infos``:
``((i, j), overlap_score, central_matches)`` per pair. As in LoFTR,
``T_0to1 = poses[j] @ inv(poses[i])``. The ground truth comes from SfM: its scale is
arbitrary, so no metric error is scored (``metric_gt`` False). Depth (``.h5``) is not read.

The files hold pickled object arrays (``allow_pickle``): open only scene-info files you trust.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from twoview.datasets._util import image_size
from twoview.datasets.base import PairSample
from twoview.datasets.common import Dataset, _sanitize, pose_from_matrix_checked
from twoview.errors import InputError
from twoview.geometry.camera import Camera
from twoview.geometry.rotation import rotation_angle_deg


class MegaDepthSceneInfoDataset(Dataset):
    kind = "megadepth1500"
    metric_gt = False

    def __init__(self, root, scene_info: str | list | None = None, min_overlap: float = 0.0, max_pairs: int | None = None):
        super().__init__(root)
        if scene_info is None:
            cands = sorted(self.root.glob("**/*.npz"))
            if not cands:
                raise InputError("--root", f"no scene-info .npz under {self.root}; give scene_info=FILE")
            files = cands
        else:
            files = [Path(p) for p in ([scene_info] if isinstance(scene_info, str) else scene_info)]
            files = [p if p.is_absolute() else self.root / p for p in files]
        self.files, self.min_overlap, self.max_pairs = files, min_overlap, max_pairs

    def _load(self, path: Path):
        if not path.is_file():
            raise InputError("scene_info", f"file not found: {path}")
        what = "not a LoFTR scene-info npz (image_paths (N,), intrinsics (N, 3, 3), poses (N, 4, 4), pair_infos)"
        try:
            d = np.load(path, allow_pickle=True)
            names, Ks, poses, infos = d["image_paths"], d["intrinsics"], d["poses"], d["pair_infos"]
        except Exception as e:  # noqa: BLE001 -- a pickle can fail in any way (its module, its data)
            raise InputError(str(path), f"{what}: {type(e).__name__}: {e}") from None
        try:
            names, infos = np.asarray(names, dtype=object).reshape(-1), list(infos)
            Ks = np.asarray(Ks, dtype=np.float64).reshape(len(names), 3, 3)
            poses = np.asarray(poses, dtype=np.float64).reshape(len(names), 4, 4)
        except (TypeError, ValueError) as e:
            raise InputError(str(path), f"{what}: {e}") from None
        return names, Ks, poses, infos

    def pairs(self) -> list[PairSample]:
        out = []
        for path in self.files:
            names, Ks, poses, infos = self._load(path)
            scene = path.stem
            for k, info in enumerate(infos):
                where = f"{path}:pair_infos[{k}]"
                try:
                    (i, j), overlap = info[0], float(info[1])
                    i, j = int(i), int(j)
                except (TypeError, ValueError, IndexError):
                    raise InputError(where, f"expected ((i, j), overlap, ...), got {info!r}") from None
                if overlap < self.min_overlap:
                    continue
                if not (0 <= i < len(names) and 0 <= j < len(names)) or names[i] is None or names[j] is None:
                    raise InputError(where, f"pair ({i}, {j}) names an image that the scene info does not list")
                ims = [self.root / str(names[i]), self.root / str(names[j])]
                cams = [Camera.from_K(np.asarray(Ks[x], float).reshape(3, 3), *image_size(p, where), name=where) for x, p in zip((i, j), ims)]
                T0 = pose_from_matrix_checked(np.asarray(poses[i], float), f"{where} (pose {i})")
                T1 = pose_from_matrix_checked(np.asarray(poses[j], float), f"{where} (pose {j})")
                rel = T1 @ T0.inverse()
                out.append(PairSample(
                    pair_id=_sanitize(f"{scene}_{Path(str(names[i])).stem}__{Path(str(names[j])).stem}"),
                    image0=ims[0], image1=ims[1], camera0=cams[0], camera1=cams[1], cam1_from_cam0=rel,
                    meta={"dataset": self.kind, "scene": scene, "frame0": str(names[i]), "frame1": str(names[j]),
                          "overlap": overlap, "baseline_m": float(np.linalg.norm(rel.t)),
                          "rotation_deg": rotation_angle_deg(rel.R), "metric_gt": False},
                ))
                if self.max_pairs and len(out) >= self.max_pairs:
                    return out
        return out

    def describe(self):
        return {**super().describe(), "scene_info": [str(p) for p in self.files], "min_overlap": self.min_overlap, "max_pairs": self.max_pairs}

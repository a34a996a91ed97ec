"""SuperGlue / LoFTR pair lists with ground truth (ScanNet-1500, YFCC-4000, ...).

One pair a line::

    name0 name1 rot0 rot1 K0(9, row-major) K1(9) T_0to1(16, row-major 4x4)

``T_0to1`` is ``cam1_from_cam0`` (``inv(T_world_cam1) @ T_world_cam0``). Image paths are
relative to ``root`` (or ``root/images``). ``rot0/rot1`` are EXIF-style quarter turns
(37 of YFCC-4000's pairs, none of ScanNet-1500's): such a line is an error by default
(rotate the images first); ``exif_rotation="skip"`` drops those pairs instead, and the
number dropped is saved with the run's configuration. YFCC ground truth comes from SfM
and is not metric: pass ``metric_gt=False`` and no metric error is scored.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from twoview.datasets._util import image_size
from twoview.datasets.base import PairSample
from twoview.datasets.common import Dataset, _sanitize, parse_numbers, pose_from_matrix_checked, read_text_lines
from twoview.errors import InputError
from twoview.geometry.camera import Camera
from twoview.geometry.rotation import rotation_angle_deg


class SuperGluePairsDataset(Dataset):
    kind = "superglue_pairs"

    def __init__(self, root, pairs_file: str | None = None, metric_gt: bool = True, max_pairs: int | None = None,
                 exif_rotation: str = "error"):
        super().__init__(root)
        if exif_rotation not in ("error", "skip"):
            raise InputError("exif_rotation", f"expected 'error' or 'skip', got {exif_rotation!r}")
        self.exif_rotation = exif_rotation
        self.skipped_rotated = 0
        if pairs_file is None:
            cands = sorted(self.root.glob("*pairs_with_gt*.txt"))
            if len(cands) != 1:
                raise InputError("--pairs", f"give the pair list ({len(cands)} *pairs_with_gt*.txt files in {self.root})")
            pairs_file = str(cands[0])
        self.pairs_file = Path(pairs_file)
        self.metric_gt = metric_gt
        self.max_pairs = max_pairs

    def _image(self, name: str, where: str) -> Path:
        for base in (self.root, self.root / "images"):
            if (base / name).is_file():
                return base / name
        raise InputError(where, f"image {name!r} not found under {self.root} (or {self.root / 'images'})")

    def pairs(self) -> list[PairSample]:
        lines = read_text_lines(self.pairs_file, "--pairs")
        # pair ids from the file stems (the ids of lists whose stems are unique stay as they were);
        # a list whose images share stems across folders (ScanNet-1500's scene/color/15.jpg) is
        # named by the relative paths instead, decided on the whole file
        names = {tuple(ln.split()[:2]) for _, ln in lines if len(ln.split()) >= 2}
        stems = len({_pair_id(a, b, stems=True) for a, b in names}) == len(names)
        out = []
        self.skipped_rotated = 0
        for lineno, ln in lines:
            where = f"{self.pairs_file}:{lineno}"
            parts = ln.split()
            if len(parts) != 38:
                raise InputError(where, f"expected 38 fields (name0 name1 rot0 rot1 K0(9) K1(9) T_0to1(16)), got {len(parts)}")
            nums = parse_numbers(" ".join(parts[2:]), self.pairs_file, lineno, 36)
            if nums[0] != 0 or nums[1] != 0:
                if self.exif_rotation == "skip":
                    self.skipped_rotated += 1
                    continue
                raise InputError(where, "non-zero EXIF rotation flags are not supported (the option exif_rotation=skip "
                                        "drops such pairs)")
            K0, K1, T = nums[2:11].reshape(3, 3), nums[11:20].reshape(3, 3), nums[20:36].reshape(4, 4)
            im0, im1 = self._image(parts[0], where), self._image(parts[1], where)
            cams = [Camera.from_K(K, *image_size(p, where), name=where) for K, p in ((K0, im0), (K1, im1))]
            rel = pose_from_matrix_checked(T, where)
            out.append(
                PairSample(
                    pair_id=_pair_id(parts[0], parts[1], stems),
                    image0=im0, image1=im1, camera0=cams[0], camera1=cams[1], cam1_from_cam0=rel,
                    meta={"dataset": self.kind, "line": lineno, "frame0": parts[0], "frame1": parts[1],
                          "baseline_m": float(np.linalg.norm(rel.t)), "rotation_deg": rotation_angle_deg(rel.R),
                          "metric_gt": self.metric_gt},
                )
            )
            if self.max_pairs and len(out) >= self.max_pairs:
                break
        return out

    def describe(self):
        return {**super().describe(), "pairs_file": str(self.pairs_file.resolve()), "metric_gt": self.metric_gt,
                "max_pairs": self.max_pairs, "exif_rotation": self.exif_rotation, "skipped_rotated": self.skipped_rotated}


def _pair_id(name0: str, name1: str, stems: bool) -> str:
    """``stem0__stem1``, or with ``stems`` False the relative paths without extension
    (``scene0707_00_color_15__scene0707_00_color_645``)."""
    def part(name: str) -> str:
        p = Path(name)
        return p.stem if stems else str(p.with_suffix("")).lstrip("./")

    return _sanitize(f"{part(name0)}__{part(name1)}")

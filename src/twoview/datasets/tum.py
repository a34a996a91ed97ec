"""TUM RGB-D benchmark sequences (Sturm et al. 2012), native layout.

    <root>/rgb/<timestamp>.png      colour (listed by rgb.txt when present)
    <root>/depth/<timestamp>.png    uint16, 5000 units per metre, 0 = missing
    <root>/groundtruth.txt          "timestamp tx ty tz qx qy qz qw", camera-to-world
    <root>/intrinsics.txt           optional "fx fy cx cy" (first numeric line)

Colour and depth are associated by nearest timestamp (TUM's ``associate.py``: greedy,
one-to-one, ``max_dt`` = 20 ms). The ground truth is interpolated at the colour image
time (linear translation, slerp rotation) from the two bracketing mocap samples; frames
outside the mocap coverage, or between samples more than ``max_gt_gap`` apart, have no
ground truth and are skipped. Intrinsics: ``intrinsics.txt`` if present, else TUM's
published calibration of the Freiburg sensor named in the folder (fr1/fr2/fr3), else
the ROS default. Lens distortion (fr1, fr2): the second numeric line of
``intrinsics.txt`` or TUM's published coefficients, carried in ``Camera.dist``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from twoview.datasets._util import SizeCache
from twoview.datasets.common import Frame, SequenceDataset, parse_numbers, read_text_lines
from twoview.errors import InputError
from twoview.geometry.camera import Camera
from twoview.geometry.pose import ROTATION_TOLERANCE, Pose
from twoview.geometry.rotation import quaternion_to_rotation

#: TUM's published colour calibrations (fx, fy, cx, cy) per Freiburg sensor.
TUM_INTRINSICS = {
    "freiburg1": (517.3, 516.5, 318.6, 255.3),
    "freiburg2": (520.9, 521.0, 325.1, 249.7),
    "freiburg3": (535.4, 539.2, 320.1, 247.6),
}
ROS_DEFAULT = (525.0, 525.0, 319.5, 239.5)
#: TUM's published distortion (k1, k2, p1, p2, k3) of the colour images; fr3 is undistorted.
TUM_DISTORTION = {
    "freiburg1": (0.2624, -0.9531, -0.0054, 0.0026, 1.1633),
    "freiburg2": (0.2312, -0.7849, -0.0033, -0.0001, 0.9172),
}


def read_tum_trajectory(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``timestamp tx ty tz qx qy qz qw`` lines -> (times (N,), t (N, 3), q_xyzw (N, 4)), sorted."""
    rows = []
    for lineno, ln in read_text_lines(path, "groundtruth"):
        if not rows and not _is_number(ln.split()[0]):
            continue  # a header line without '#' before the data
        row = parse_numbers(ln, path, lineno, 8)
        norm = float(np.linalg.norm(row[4:8]))
        if not abs(norm - 1.0) <= ROTATION_TOLERANCE:
            raise InputError(f"{path}:{lineno}", f"the quaternion qx qy qz qw has norm {norm:.6g}, not 1")
        row[4:8] /= norm
        rows.append(row)
    if not rows:
        raise InputError(str(path), "no poses in the trajectory file")
    a = np.array(rows)
    a = a[np.argsort(a[:, 0], kind="stable")]
    return a[:, 0], a[:, 1:4], a[:, 4:8]


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def slerp(q0: np.ndarray, q1: np.ndarray, s: float) -> np.ndarray:
    """Spherical interpolation of unit quaternions (any order), shortest arc."""
    q0 = q0 / np.linalg.norm(q0)
    q1 = q1 / np.linalg.norm(q1)
    d = float(q0 @ q1)
    if d < 0:
        q1, d = -q1, -d
    if d > 0.9995:
        q = q0 + s * (q1 - q0)
        return q / np.linalg.norm(q)
    th = np.arccos(d)
    return (np.sin((1 - s) * th) * q0 + np.sin(s * th) * q1) / np.sin(th)


def interpolate_pose(times, t, q_xyzw, at: float, max_gap: float) -> Pose | None:
    """Camera-to-world pose at time ``at`` (linear + slerp), None outside coverage."""
    i = int(np.searchsorted(times, at))
    if i < len(times) and abs(times[i] - at) < 1e-9:
        return Pose(quaternion_to_rotation(q_xyzw[i], "xyzw"), t[i])
    if i == 0 or i >= len(times):
        return None
    t0, t1 = times[i - 1], times[i]
    if t1 - t0 > max_gap:
        return None
    s = (at - t0) / (t1 - t0)
    q = slerp(q_xyzw[i - 1], q_xyzw[i], s)
    return Pose(quaternion_to_rotation(q, "xyzw"), (1 - s) * t[i - 1] + s * t[i])


def associate(a: dict[float, object], b: dict[float, object], max_dt: float) -> dict[float, float]:
    """TUM ``associate.py``: greedy one-to-one matching of timestamps by |dt| <= max_dt."""
    ka = np.array(sorted(a))
    kb = np.array(sorted(b))
    if ka.size == 0 or kb.size == 0:
        return {}
    cand = [(abs(x - y), x, y) for x in ka for y in kb[np.abs(kb - x) < max_dt]]  # strict, as associate.py
    cand.sort()
    out, used_a, used_b = {}, set(), set()
    for _, x, y in cand:
        if x not in used_a and y not in used_b:
            out[float(x)] = float(y)
            used_a.add(x)
            used_b.add(y)
    return out


def _list_timestamped(folder: Path, listing: Path | None) -> dict[float, tuple[str, Path]]:
    """timestamp -> (id string, path) of files present in ``folder``."""
    out = {}
    if listing is not None and listing.is_file():
        for lineno, ln in read_text_lines(listing, str(listing)):
            parts = ln.split()
            if len(parts) < 2:
                raise InputError(f"{listing}:{lineno}", f"expected 'timestamp filename', got {ln[:80]!r}")
            p = listing.parent / parts[1]
            if p.is_file():
                out[float(parse_numbers(parts[0], listing, lineno, 1)[0])] = (parts[0], p)
        return out
    if folder.is_dir():
        for p in sorted(folder.iterdir()):
            if p.suffix.lower() in (".png", ".jpg", ".jpeg"):
                try:
                    out[float(p.stem)] = (p.stem, p)
                except ValueError:
                    continue
    return out


class TUMDataset(SequenceDataset):
    kind = "tum"

    def __init__(self, root, selection=None, max_dt: float = 0.02, max_gt_gap: float = 0.1, use_depth: bool = True):
        super().__init__(root, selection, depth_scale=5000.0)
        self.max_dt, self.max_gt_gap, self.use_depth = max_dt, max_gt_gap, use_depth
        rgb = _list_timestamped(self.root / "rgb", self.root / "rgb.txt")
        if not rgb:
            raise InputError("--root", f"no rgb/<timestamp>.png images in {self.root} (TUM RGB-D layout)")
        depth = _list_timestamped(self.root / "depth", self.root / "depth.txt") if use_depth else {}
        match = associate(rgb, depth, max_dt)
        times, t, q = read_tum_trajectory(self.root / "groundtruth.txt")
        cam, dist = self._intrinsics()
        sizes = SizeCache()
        for index, ts in enumerate(sorted(rgb)):
            fid, path = rgb[ts]
            pose = interpolate_pose(times, t, q, ts, max_gt_gap)
            if pose is None:
                continue
            w, h = sizes(path)
            self.frames.append(
                Frame(fid, path, Camera(*cam, w, h, dist=dist), pose, depth[match[ts]][1] if ts in match else None, index, ts)
            )
        if not self.frames:
            raise InputError(str(self.root / "groundtruth.txt"), "no image time lies inside the ground-truth coverage")

    def _intrinsics(self) -> tuple[tuple[float, ...], tuple[float, ...] | None]:
        path = self.root / "intrinsics.txt"
        if path.is_file():
            lines = read_text_lines(path, str(path))
            if lines:
                k = tuple(parse_numbers(lines[0][1], path, lines[0][0], 4))
                dist = tuple(parse_numbers(lines[1][1], path, lines[1][0], (4, 5))) if len(lines) > 1 else None
                return k, dist
        name = str(self.root.resolve()).lower()
        for key, k in TUM_INTRINSICS.items():
            if key in name or key.replace("freiburg", "fr") in name:
                return k, TUM_DISTORTION.get(key)
        return ROS_DEFAULT, None

    def describe(self):
        return {**super().describe(), "max_dt": self.max_dt, "max_gt_gap": self.max_gt_gap, "use_depth": self.use_depth}

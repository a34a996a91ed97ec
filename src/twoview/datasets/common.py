"""Shared machinery of the dataset readers: frames, sequences, pair selection.

A *sequence* dataset (TUM, 7-Scenes, ICL-NUIM/Redwood, KITTI, RealEstate10K, CO3D) is a
set of :class:`Frame` with camera-to-world poses; pairs are chosen by
:class:`PairSelection` (a pair-list file naming frame ids, or frame gaps filtered by
rotation / translation / overlap ranges). A *pair-list* dataset (SuperGlue/LoFTR lists,
MegaDepth-1500) carries the ground truth per pair.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from twoview.config import StrictConfig
from twoview.datasets.base import PairSample
from twoview.errors import ConfigError, InputError
from twoview.geometry.camera import Camera
from twoview.geometry.pose import Pose
from twoview.geometry.rotation import rotation_angle_deg


@dataclass
class Frame:
    """One frame of a sequence.

    Attributes:
        frame_id: the id the dataset uses for the frame (what pair-list files name).
        image: image path.
        camera: intrinsics at the stored image resolution.
        world_from_cam: camera-to-world pose (metres when ``metric``).
        depth: depth file path or None.
        index: position in the sequence (for frame gaps).
        timestamp: seconds, if the dataset has timestamps.
        sequence: the sequence the frame belongs to, when a dataset holds several; frame
            gaps are only defined within one sequence.
    """

    frame_id: str
    image: Path
    camera: Camera
    world_from_cam: Pose
    depth: Path | None = None
    index: int = 0
    timestamp: float | None = None
    sequence: str = ""


@dataclass
class PairSelection(StrictConfig):
    """How pairs are chosen from a sequence.

    Attributes:
        pairs_file: a text file with one pair a line, ``id0 id1`` (frame ids as the dataset
            names them; further columns ignored, ``#`` comments). Overrides ``gaps``.
        gaps: frame-index gaps; every ``stride``-th frame is paired with the frame ``gap``
            later.
        stride: step between first frames of consecutive pairs.
        min_rot_deg, max_rot_deg: ground-truth rotation range (degrees).
        min_trans_m, max_trans_m: ground-truth baseline range (metres).
        min_overlap, max_overlap: covisibility range in [0, 1] (needs depth: the fraction of
            frame-0 depth pixels that land inside frame 1 in front of its camera, checked
            against frame-1 depth within 5% when available).
        max_pairs: keep at most this many (evenly spaced over the selection).
    """

    pairs_file: str | None = None
    gaps: list[int] = field(default_factory=lambda: [1])
    stride: int = 1
    min_rot_deg: float = 0.0
    max_rot_deg: float = 180.0
    min_trans_m: float = 0.0
    max_trans_m: float = math.inf
    min_overlap: float = 0.0
    max_overlap: float = 1.0
    max_pairs: int | None = None

    def validate(self):
        if not self.gaps:
            raise ConfigError("gaps must be a non-empty list of integers >= 1")
        if min(self.gaps) < 1:
            raise ConfigError(f"gaps must be >= 1, got {min(self.gaps)}")
        if self.stride < 1:
            raise ConfigError(f"stride must be >= 1, got {self.stride}")
        if self.max_pairs is not None and self.max_pairs < 1:
            raise ConfigError(f"max_pairs must be >= 1, got {self.max_pairs}")
        if not (0 <= self.min_overlap <= self.max_overlap <= 1):
            raise ConfigError("overlap range must satisfy 0 <= min_overlap <= max_overlap <= 1")

    @property
    def uses_overlap(self) -> bool:
        return self.min_overlap > 0 or self.max_overlap < 1


def read_text_lines(path: Path, what: str) -> list[tuple[int, str]]:
    """(line number, stripped text) of non-empty, non-comment lines."""
    from twoview.io.text import read_text

    text = read_text(path, what)
    return [(i, ln.strip()) for i, ln in enumerate(text.splitlines(), 1) if ln.strip() and not ln.lstrip().startswith("#")]


def parse_numbers(text: str, path: Path, lineno: int, count: int | tuple[int, ...] | None = None,
                  finite: bool = True) -> np.ndarray:
    """Whitespace/comma separated floats of one line; InputError naming file:line (also for
    NaN or infinite numbers unless ``finite`` is False: a reader that skips such rows)."""
    try:
        vals = np.array([float(v) for v in text.replace(",", " ").split()], dtype=np.float64)
    except ValueError:
        raise InputError(f"{path}:{lineno}", f"expected numbers, got {text[:80]!r}") from None
    counts = (count,) if isinstance(count, int) else count
    if counts is not None and len(vals) not in counts:
        raise InputError(f"{path}:{lineno}", f"expected {' or '.join(map(str, counts))} numbers, got {len(vals)}")
    if finite and not np.all(np.isfinite(vals)):
        raise InputError(f"{path}:{lineno}", "non-finite number")
    return vals


def pose_from_matrix_checked(M: np.ndarray, where: str) -> Pose:
    """A Pose from a 3x4/4x4 matrix read at ``where`` (file:line). The rotation block is
    re-orthonormalised within :data:`twoview.geometry.pose.ROTATION_TOLERANCE` (the one
    tolerance, in :meth:`Pose.from_matrix`); further from a rotation it is an InputError
    naming ``where``."""
    try:
        return Pose.from_matrix(np.asarray(M, dtype=np.float64))
    except ValueError as e:
        raise InputError(where, str(e).replace("pose matrix: ", "")) from None


def relative_pose(f0: Frame, f1: Frame) -> Pose:
    """cam1_from_cam0 = inv(world_from_cam1) @ world_from_cam0."""
    return f1.world_from_cam.inverse() @ f0.world_from_cam


def _sanitize(s: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in s)


class Dataset:
    """Base class of every reader: ``pairs()`` yields :class:`PairSample`."""

    kind: str = ""
    #: whether ground-truth translations are in metres (False for SfM-scaled datasets).
    metric_gt: bool = True

    def __init__(self, root: str | Path):
        self.root = Path(root)
        try:
            if not self.root.exists():
                raise InputError("--root", f"folder not found: {self.root}")
            if not self.root.is_dir():
                raise InputError("--root", f"not a folder: {self.root}")
        except OSError as e:  # a name too long, no permission
            raise InputError("--root", f"cannot open {self.root}: {e.strerror or e}") from None

    def pairs(self) -> list[PairSample]:
        raise NotImplementedError

    def describe(self) -> dict:
        """JSON-ready description (kind, root, options) for the saved run configuration."""
        return {"kind": self.kind, "root": str(self.root.resolve())}


class SequenceDataset(Dataset):
    """A reader of a posed frame sequence; subclasses fill ``self.frames`` (ordered)."""

    def __init__(self, root, selection: PairSelection | dict | None = None, depth_scale: float | None = None):
        super().__init__(root)
        self.selection = selection if isinstance(selection, PairSelection) else PairSelection.from_dict(selection or {})
        self.depth_scale = depth_scale
        self.frames: list[Frame] = []
        self.scene = self.root.name

    def describe(self) -> dict:
        return {**super().describe(), "selection": self.selection.to_dict(), "num_frames": len(self.frames)}

    # -- frames ---------------------------------------------------------------------
    def frame(self, frame_id: str, where: str = "pair") -> Frame:
        index = getattr(self, "_by_id", None)
        if index is None:
            index = self._by_id = {}
            for f in self.frames:
                for key in self.frame_aliases(f):
                    index.setdefault(key, f)
        f = index.get(frame_id)
        if f is None:
            raise InputError(where, f"no frame {frame_id!r} in {self.root} ({len(self.frames)} frames with ground truth)")
        return f

    def frame_aliases(self, f: Frame) -> list[str]:
        """Names a pair-list file may use for a frame (the id, the image path, its stem)."""
        names = [f.frame_id, f.image.name, f.image.stem]
        try:
            names.append(str(f.image.relative_to(self.root)))
        except ValueError:
            pass
        return names

    # -- pairs ----------------------------------------------------------------------
    def make_pair(self, f0: Frame, f1: Frame) -> PairSample:
        rel = relative_pose(f0, f1)
        return PairSample(
            pair_id=_sanitize(f"{self.scene}_{f0.frame_id}_{f1.frame_id}"),
            image0=f0.image,
            image1=f1.image,
            camera0=f0.camera,
            camera1=f1.camera,
            cam1_from_cam0=rel,
            depth0=f0.depth,
            depth1=f1.depth,
            depth_scale=self.depth_scale,
            meta={
                "dataset": self.kind,
                "scene": self.scene,
                "frame0": f0.frame_id,
                "frame1": f1.frame_id,
                "frame_gap": int(f1.index - f0.index) if f0.sequence == f1.sequence else None,
                "baseline_m": float(np.linalg.norm(rel.t)),
                "rotation_deg": rotation_angle_deg(rel.R),
                "metric_gt": self.metric_gt,
            },
        )

    def candidate_pairs(self) -> list[tuple[Frame, Frame]]:
        sel = self.selection
        if sel.pairs_file:
            path = Path(sel.pairs_file)
            out = []
            for lineno, ln in read_text_lines(path, "--pairs"):
                parts = ln.split()
                if len(parts) < 2:
                    raise InputError(f"{path}:{lineno}", f"expected two frame ids, got {ln[:80]!r}")
                where = f"{path}:{lineno}"
                out.append((self.frame(parts[0], where), self.frame(parts[1], where)))
            return out
        by_index = {f.index: f for f in self.frames}
        out = []
        for gap in sel.gaps:
            for f0 in self.frames[:: sel.stride]:
                f1 = by_index.get(f0.index + gap)
                if f1 is not None:
                    out.append((f0, f1))
        return out

    def pairs(self) -> list[PairSample]:
        sel = self.selection
        out = []
        for f0, f1 in self.candidate_pairs():
            p = self.make_pair(f0, f1)
            if not sel.pairs_file:
                m = p.meta
                if not (sel.min_rot_deg <= m["rotation_deg"] <= sel.max_rot_deg):
                    continue
                if not (sel.min_trans_m <= m["baseline_m"] <= sel.max_trans_m):
                    continue
                if sel.uses_overlap:
                    ov = covisibility(p)
                    p.meta["overlap"] = ov
                    if not (sel.min_overlap <= ov <= sel.max_overlap):
                        continue
            out.append(p)
        if sel.max_pairs is not None and len(out) > sel.max_pairs:
            keep = np.unique(np.linspace(0, len(out) - 1, sel.max_pairs).round().astype(int))
            out = [out[i] for i in keep]
        return out


def covisibility(sample: PairSample, step: int = 8) -> float:
    """Fraction of (subsampled) valid frame-0 depth pixels visible in frame 1.

    Visible: projects inside image 1 with positive depth and, when frame 1 has depth,
    agrees with it within 5% (occlusion test). Needs ``sample.depth0``.
    """
    if sample.depth0 is None:
        raise InputError("overlap", f"pair {sample.pair_id}: overlap selection needs depth maps, this dataset has none")
    d0, d1 = sample.load_depths()
    cam0, cam1 = sample.camera0, sample.camera1
    vv, uu = np.mgrid[0 : d0.shape[0] : step, 0 : d0.shape[1] : step]
    z = d0[vv, uu].ravel()
    uv = np.stack([uu.ravel(), vv.ravel()], 1).astype(np.float64)
    ok = np.isfinite(z)
    if not ok.any():
        return 0.0
    X1 = sample.cam1_from_cam0.apply(cam0.unproject(uv[ok], z[ok]))
    front = X1[:, 2] > 1e-6
    vis = np.zeros(len(X1), bool)
    if front.any():
        p = cam1.project(X1[front])
        inside = cam1.in_image(p)
        idx = np.flatnonzero(front)[inside]
        if d1 is not None:
            pi = np.clip(np.round(p[inside]).astype(int), 0, [cam1.width - 1, cam1.height - 1])
            zz = d1[pi[:, 1], pi[:, 0]]
            # an invalid frame-1 depth cannot veto, a valid one must agree
            good = ~np.isfinite(zz) | (np.abs(zz - X1[idx, 2]) <= 0.05 * X1[idx, 2])
            idx = idx[good]
        vis[idx] = True
    return float(vis.sum() / ok.sum())

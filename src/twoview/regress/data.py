"""Training/evaluation pairs for the regressor, read from the native formats.

- :func:`read_redwood_log`: Open3D/Redwood ``.log`` trajectories (per frame a line
  ``i i i+1`` then a 4x4 camera-to-world matrix).
- :class:`RGBDSequence`: an RGB-D sequence (ICL-NUIM layout) preloaded at network
  resolution with scaled intrinsics, for fast CPU training.
- :func:`tum_pairs`: TUM ``pairs_gt.txt`` pairs (for held-out evaluation).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from twoview.errors import InputError


def read_redwood_log(path: str | Path) -> dict[int, np.ndarray]:
    """Frame id -> (4, 4) camera-to-world matrix from an Open3D/Redwood ``.log`` file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(str(path), "trajectory file not found")
    lines = [ln.split() for ln in path.read_text().splitlines() if ln.strip()]
    if len(lines) % 5:
        raise InputError(str(path), f"expected blocks of 5 lines (header + 4x4), got {len(lines)} lines")
    out = {}
    for k in range(0, len(lines), 5):
        try:
            fid = int(lines[k][0])
            T = np.array([[float(v) for v in row] for row in lines[k + 1:k + 5]], dtype=np.float64)
        except ValueError as e:
            raise InputError(str(path), f"bad block at line {k + 1}: {e}") from None
        if T.shape != (4, 4):
            raise InputError(str(path), f"bad 4x4 matrix at line {k + 2}")
        out[fid] = T
    return out


def resize_image(img: np.ndarray, width: int, height: int, mode: str = "stretch") -> tuple[np.ndarray, np.ndarray]:
    """Resize (optionally centre-crop first) an (H, W, 3) uint8 image.

    Returns:
        the resized image (height, width, 3) and the (3, 3) matrix A mapping original
        pixels to resized pixels (K_new = A @ K), OpenCV pixel centres.
    """
    H, W = img.shape[:2]
    x0 = y0 = 0.0
    cw, ch = W, H
    if mode == "crop":
        target = width / height
        if W / H > target:
            cw = int(round(H * target))
            x0 = (W - cw) // 2
        else:
            ch = int(round(W / target))
            y0 = (H - ch) // 2
        img = img[int(y0):int(y0) + ch, int(x0):int(x0) + cw]
    sx, sy = width / cw, height / ch
    out = cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA)
    A = np.array([[sx, 0, sx * (0.5 - x0) - 0.5], [0, sy, sy * (0.5 - y0) - 0.5], [0, 0, 1.0]])
    return out, A


@dataclass
class PairBatch:
    """A batch of training pairs (numpy).

    Attributes:
        img0, img1: (B, H, W, 3) uint8.
        R, t: (B, 3, 3), (B, 3) ground-truth cam1_from_cam0.
        depth0, depth1: (B, H, W) float32 metres at network resolution (NaN invalid).
        K: (3, 3) intrinsics at network resolution (both views).
    """

    img0: np.ndarray
    img1: np.ndarray
    R: np.ndarray
    t: np.ndarray
    depth0: np.ndarray
    depth1: np.ndarray
    K: np.ndarray


class RGBDSequence:
    """Frames of an RGB-D sequence loaded at network resolution.

    Args:
        root: folder with ``color/NNNNN.jpg`` and ``<depth_dir>/NNNNN.png``.
        trajectory: camera-to-world ``.log`` file name inside ``root``.
        frames: inclusive [first, last] frame ids.
        size: (width, height) network input size.
    """

    def __init__(self, root, trajectory: str, depth_dir: str, depth_scale: float, intrinsics, frames,
                 size: tuple[int, int], resize_mode: str = "stretch"):
        root = Path(root)
        if not root.is_dir():
            raise InputError("data.root", f"folder not found: {root}")
        poses = read_redwood_log(root / trajectory)
        fx, fy, cx, cy = intrinsics
        K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]])
        ids = [i for i in range(int(frames[0]), int(frames[1]) + 1) if i in poses]
        if len(ids) < 2:
            raise InputError("data", f"fewer than 2 frames with poses in {frames} under {root}")
        W, H = size
        imgs, depths = [], []
        A = None
        for i in ids:
            cpath = root / "color" / f"{i:05d}.jpg"
            dpath = root / depth_dir / f"{i:05d}.png"
            img = cv2.imread(str(cpath), cv2.IMREAD_COLOR)
            d = cv2.imread(str(dpath), cv2.IMREAD_UNCHANGED)
            if img is None:
                raise InputError(str(cpath), "cannot read colour image")
            if d is None:
                raise InputError(str(dpath), "cannot read depth image")
            img, A = resize_image(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), W, H, resize_mode)
            d = d.astype(np.float32) / depth_scale
            d[d <= 0] = np.nan
            d, _ = _resize_depth(d, W, H, resize_mode)
            imgs.append(img)
            depths.append(d)
        self.ids = np.array(ids)
        self.images = np.stack(imgs)
        self.depths = np.stack(depths)
        self.world_from_cam = np.stack([poses[i] for i in ids])
        self.K = A @ K

    def relative(self, a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
        """cam_b_from_cam_a for frame indices (positions) a, b: R (3, 3), t (3,)."""
        T = np.linalg.inv(self.world_from_cam[b]) @ self.world_from_cam[a]
        return T[:3, :3], T[:3, 3]

    def pairs(self, min_gap: int, max_gap: int, stride: int = 1) -> np.ndarray:
        """(M, 2) index pairs (a, b) with frame-id gap in [min_gap, max_gap], a < b."""
        out = []
        for a in range(len(self.ids)):
            for b in range(a + 1, len(self.ids)):
                if min_gap <= self.ids[b] - self.ids[a] <= max_gap:
                    out.append((a, b))
        return np.array(out[::stride], dtype=np.int64).reshape(-1, 2)

    def batch(self, pairs: np.ndarray, rng: np.random.Generator | None = None, color_jitter: float = 0.0,
              swap_prob: float = 0.0) -> PairBatch:
        """Assemble a batch; with ``rng``, applies colour jitter and order swaps (pose inverted)."""
        pairs = np.array(pairs, dtype=np.int64).reshape(-1, 2).copy()
        if rng is not None and swap_prob > 0:
            sw = rng.random(len(pairs)) < swap_prob
            pairs[sw] = pairs[sw][:, ::-1]
        Rs, ts = zip(*(self.relative(a, b) for a, b in pairs))
        img0, img1 = self.images[pairs[:, 0]], self.images[pairs[:, 1]]
        if rng is not None and color_jitter > 0:
            img0 = np.stack([color_augment(im, rng, color_jitter) for im in img0])
            img1 = np.stack([color_augment(im, rng, color_jitter) for im in img1])
        return PairBatch(img0, img1, np.stack(Rs), np.stack(ts), self.depths[pairs[:, 0]], self.depths[pairs[:, 1]], self.K)


def _resize_depth(d: np.ndarray, W: int, H: int, mode: str):
    # nearest neighbour keeps depth edges sharp (no mixed foreground/background values)
    Hd, Wd = d.shape
    x0 = y0 = 0
    cw, ch = Wd, Hd
    if mode == "crop":
        target = W / H
        if Wd / Hd > target:
            cw = int(round(Hd * target))
            x0 = (Wd - cw) // 2
        else:
            ch = int(round(Wd / target))
            y0 = (Hd - ch) // 2
    out = cv2.resize(np.ascontiguousarray(d[y0:y0 + ch, x0:x0 + cw]), (W, H), interpolation=cv2.INTER_NEAREST)
    return out.astype(np.float32), None


def color_augment(img: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Brightness, contrast, saturation and per-channel gain jitter, (H, W, 3) uint8."""
    x = img.astype(np.float32) / 255.0
    u = lambda: 1.0 + rng.uniform(-strength, strength)  # noqa: E731
    x = x * u()
    m = x.mean()
    x = (x - m) * u() + m
    g = x.mean(axis=2, keepdims=True)
    x = (x - g) * u() + g
    x = x * np.array([1.0 + rng.uniform(-strength, strength) / 3 for _ in range(3)], dtype=np.float32)
    return np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8)


def tum_pairs(seq_dir: str | Path) -> list[dict]:
    """Pairs of a TUM folder's ``pairs_gt.txt`` (rgb0 rgb1 depth0 depth1 T_0to1 x16).

    Returns:
        dicts with ``image0, image1, depth0, depth1`` (paths) and ``T`` (4, 4) cam1_from_cam0.
    """
    seq_dir = Path(seq_dir)
    f = seq_dir / "pairs_gt.txt"
    if not f.is_file():
        raise InputError(str(f), "pairs file not found")
    out = []
    for ln in f.read_text().splitlines():
        if not ln.strip() or ln.startswith("#"):
            continue
        p = ln.split()
        if len(p) != 20:
            raise InputError(str(f), f"expected 20 fields per line, got {len(p)}")
        out.append({"image0": seq_dir / p[0], "image1": seq_dir / p[1], "depth0": seq_dir / p[2],
                    "depth1": seq_dir / p[3], "T": np.array(p[4:], dtype=np.float64).reshape(4, 4)})
    return out

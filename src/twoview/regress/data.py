"""Training/evaluation pairs for the regressor, read from the native formats.

- :func:`read_redwood_log`: Open3D/Redwood ``.log`` trajectories (per frame a line
  ``i i i+1`` then a 4x4 camera-to-world matrix).
- :class:`RGBDSequence`: an RGB-D sequence (ICL-NUIM layout) preloaded at network
  resolution with scaled intrinsics, for fast CPU training.
- :class:`ViewBank`: geometric augmentation -- mirrored and rotated-camera copies of
  every frame (exact: a camera rotation is a homography), with their depth and, for a
  frozen stem, the cached stem features.
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
    from twoview.io.text import read_text

    path = Path(path)
    lines = [ln.split() for ln in read_text(path).splitlines() if ln.strip()]
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
        img0, img1: (B, H, W, 3) uint8 (None when ``feat0``/``feat1`` are given).
        R, t: (B, 3, 3), (B, 3) ground-truth cam1_from_cam0.
        depth0, depth1: (B, H, W) float32 metres at network resolution (NaN invalid).
        K: (3, 3) or per pair (B, 3, 3) intrinsics at network resolution (both views).
        feat0, feat1: cached frozen-stem features (B, C, h, w) torch tensors, or None.
    """

    img0: np.ndarray | None
    img1: np.ndarray | None
    R: np.ndarray
    t: np.ndarray
    depth0: np.ndarray
    depth1: np.ndarray
    K: np.ndarray
    feat0: object = None
    feat1: object = None

    @property
    def image_hw(self) -> tuple[int, int]:
        return tuple(self.depth0.shape[1:3])


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


#: Mirroring the image horizontally mirrors the scene: x -> -x in camera coordinates.
MIRROR = np.diag([-1.0, 1.0, 1.0])


def mirror_intrinsics(K: np.ndarray, width: int) -> np.ndarray:
    """Intrinsics of the horizontally mirrored image (cx -> width - 1 - cx)."""
    Km = np.array(K, dtype=np.float64).copy()
    Km[0, 2] = width - 1 - Km[0, 2]
    return Km


def random_view_rotation(rng: np.random.Generator, roll_deg: float, tilt_deg: float) -> np.ndarray:
    """A random camera rotation new_from_old: roll about the optical axis in
    [-roll_deg, roll_deg], then pitch and yaw each in [-tilt_deg, tilt_deg]."""
    from twoview.geometry.rotation import so3_exp

    r, p, y = np.radians(rng.uniform(-1, 1, 3) * [roll_deg, tilt_deg, tilt_deg])
    return so3_exp(np.array([p, y, 0.0])) @ so3_exp(np.array([0.0, 0.0, r]))


def warp_view(img: np.ndarray, depth: np.ndarray, K: np.ndarray, Q: np.ndarray, mirror: bool = False,
              fill: int = 128) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What a camera rotated by ``Q`` (new_from_old), optionally mirrored first, would see.

    A camera rotation maps pixels by the homography ``K Q K^-1`` (exact, no depth
    needed); pixels outside the original view get ``fill`` (image) and NaN (depth).
    Depth is the new camera's z of the same 3D point: ``z / (Q^T K^-1 p')_z``.

    Args:
        img: (H, W, 3) uint8. depth: (H, W) float metres (NaN invalid). K: (3, 3).
        Q: (3, 3) rotation. mirror: mirror horizontally before rotating.

    Returns:
        image (H, W, 3) uint8, depth (H, W) float32 and the intrinsics (3, 3) of the
        new view (the mirrored ones when ``mirror``). A point X of the original camera is
        ``Q @ M @ X`` in the new one (M = :data:`MIRROR` if mirrored, else identity).
    """
    H, W = depth.shape
    if mirror:
        img, depth, K = img[:, ::-1], depth[:, ::-1], mirror_intrinsics(K, W)
    img, depth = np.ascontiguousarray(img), np.ascontiguousarray(depth, dtype=np.float32)
    if np.allclose(Q, np.eye(3)):
        return img, depth, K
    Kinv = np.linalg.inv(K)
    Hm = K @ Q @ Kinv
    out = cv2.warpPerspective(img, Hm, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                              borderValue=(fill, fill, fill))
    zsrc = cv2.warpPerspective(depth, Hm, (W, H), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                               borderValue=float("nan"))
    v, u = np.mgrid[0:H, 0:W]
    rays = np.stack([u, v, np.ones_like(u)], -1).reshape(-1, 3).astype(np.float64) @ (Q.T @ Kinv).T
    z = zsrc.reshape(-1) / rays[:, 2]
    z[~(rays[:, 2] > 1e-6)] = np.nan
    return out, z.reshape(H, W).astype(np.float32), K


def random_relative_pose(rng: np.random.Generator, max_rot_deg: float,
                         trans_m: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """A random camera motion new_from_old: rotation about a uniform random axis by up to
    ``max_rot_deg``, translation in a uniform random direction, length in ``trans_m``."""
    from twoview.geometry.rotation import so3_exp

    axis = rng.normal(size=3)
    R = so3_exp(axis / np.linalg.norm(axis) * np.radians(rng.uniform(0, max_rot_deg)))
    d = rng.normal(size=3)
    return R, d / np.linalg.norm(d) * rng.uniform(*trans_m)


def render_view(img: np.ndarray, depth: np.ndarray, K: np.ndarray, R: np.ndarray, t: np.ndarray, upsample: int = 2,
                fill: int = 128, inpaint: bool = True) -> tuple[np.ndarray, np.ndarray, float]:
    """Novel view of an RGB-D frame from a camera moved by (R, t) (new_from_old), same K.

    Forward splatting with a z-buffer (the nearest surface wins) from the frame
    upsampled ``upsample`` times, so neighbouring target pixels are not left empty.
    Disoccluded and out-of-view pixels have no depth (NaN); in the image they are
    inpainted (OpenCV Telea) or set to ``fill``.

    Args:
        img: (H, W, 3) uint8. depth: (H, W) metres (NaN invalid). K: (3, 3). R, t: (3, 3), (3,).

    Returns:
        image (H, W, 3) uint8, depth (H, W) float32 (z in the new camera), and the
        fraction of pixels that received a surface.
    """
    H, W = depth.shape
    up = max(1, int(upsample))
    if up > 1:
        src = cv2.resize(img, (W * up, H * up), interpolation=cv2.INTER_LINEAR)
        d = cv2.resize(np.ascontiguousarray(depth, dtype=np.float32), (W * up, H * up), interpolation=cv2.INTER_NEAREST)
    else:
        src, d = img, np.asarray(depth, dtype=np.float32)
    vs, us = np.mgrid[0:H * up, 0:W * up]
    u = (us.reshape(-1) + 0.5) / up - 0.5  # sub-pixel positions in the (H, W) frame
    v = (vs.reshape(-1) + 0.5) / up - 0.5
    z = d.reshape(-1).astype(np.float64)
    ok = np.isfinite(z) & (z > 0.05)
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]  # pinhole, no skew
    z = z[ok]
    X = np.stack(((u[ok] - cx) / fx * z, (v[ok] - cy) / fy * z, z))  # 3, N (elementwise: no BLAS threads)
    R, t = np.asarray(R, dtype=np.float64), np.asarray(t, dtype=np.float64)
    P = [R[r, 0] * X[0] + R[r, 1] * X[1] + R[r, 2] * X[2] + t[r] for r in range(3)]
    col = src.reshape(-1, 3)[ok]
    front = P[2] > 0.05
    px, py, pz, col = P[0][front], P[1][front], P[2][front], col[front]
    ui = np.rint(fx * px / pz + cx).astype(np.int64)
    vi = np.rint(fy * py / pz + cy).astype(np.int64)
    inside = (ui >= 0) & (ui < W) & (vi >= 0) & (vi < H)
    lin, zz, col = vi[inside] * W + ui[inside], pz[inside], col[inside]
    zbuf = np.full(H * W, np.inf)
    np.minimum.at(zbuf, lin, zz)  # per target pixel, the nearest surface
    sel = zz == zbuf[lin]
    out = np.full((H * W, 3), fill, np.uint8)
    out[lin[sel]] = col[sel]
    dep = np.where(np.isfinite(zbuf), zbuf, np.nan).astype(np.float32)
    out, dep = out.reshape(H, W, 3), dep.reshape(H, W)
    hole = ~np.isfinite(dep)
    if inpaint and hole.any():
        out = cv2.inpaint(out, hole.astype(np.uint8), 3, cv2.INPAINT_TELEA)
    return out, dep, float(1.0 - hole.mean())


class ViewBank:
    """Augmented views of the frames of an :class:`RGBDSequence`, built once.

    Per frame and mirror state (``hflip``: plain and mirrored), ``views_per_frame``
    rotated-camera variants (variant 0 unrotated, the others rotated by
    :func:`random_view_rotation`, see :func:`warp_view`) and ``synthetic_views`` novel
    views rendered from the frame's own RGB-D at a random camera motion
    (:func:`random_relative_pose`, :func:`render_view`). Every view has its image, depth,
    and its pose ``T_view`` relative to the (mirrored) frame camera; with ``stem``, a
    frozen feature extractor, its stem features (float16) replace the image, so training
    steps never run the frozen stem (colour jitter is then applied per view here;
    without a stem, per step in :meth:`batch`).

    The ground truth of two views i (of frame a) and j (of frame b), mirror state m, is
    ``T_bj @ M T_ab M @ inv(T_ai)`` (``T_ab`` = identity when a == b); both views have
    the intrinsics of mirror state m.
    """

    def __init__(self, seq: RGBDSequence, hflip: bool = False, views_per_frame: int = 1, roll_deg: float = 0.0,
                 tilt_deg: float = 0.0, rng: np.random.Generator | None = None, stem=None, color_jitter: float = 0.0,
                 synthetic_views: int = 0, synthetic_rot_deg: float = 10.0, synthetic_trans_m=(0.05, 0.4),
                 min_coverage: float = 0.6, stem_batch: int = 32):
        rng = rng or np.random.default_rng(0)
        self.seq = seq
        n, H, W = seq.depths.shape
        M, V, S = (2 if hflip else 1), int(views_per_frame), int(synthetic_views)
        self.num_mirror, self.num_views, self.num_synthetic = M, V, S
        N = V + S
        self.R = np.tile(np.eye(3), (n, M, N, 1, 1))  # view_from_frame
        self.t = np.zeros((n, M, N, 3))
        self.K = np.stack([seq.K, mirror_intrinsics(seq.K, W)][:M])
        imgs = np.empty((n, M, N, H, W, 3), np.uint8)
        self.depths = np.empty((n, M, N, H, W), np.float16)
        for f in range(n):
            for m in range(M):
                base_img, base_depth, _ = warp_view(seq.images[f], seq.depths[f], seq.K, np.eye(3), mirror=bool(m))
                for v in range(N):
                    if v < V:
                        Q = np.eye(3) if v == 0 else random_view_rotation(rng, roll_deg, tilt_deg)
                        im, d, _ = warp_view(seq.images[f], seq.depths[f], seq.K, Q, mirror=bool(m))
                        R, t = Q, np.zeros(3)
                    else:
                        for _ in range(20):  # a motion that keeps most of the view covered
                            R, t = random_relative_pose(rng, synthetic_rot_deg, synthetic_trans_m)
                            im, d, cover = render_view(base_img, base_depth, self.K[m], R, t)
                            if cover >= min_coverage:
                                break
                    if stem is not None and color_jitter > 0:
                        im = color_augment(im, rng, color_jitter)
                    self.R[f, m, v], self.t[f, m, v], imgs[f, m, v], self.depths[f, m, v] = R, t, im, d
        self.feats = None
        self.images = imgs
        if stem is not None:
            import torch

            flat = imgs.reshape(-1, H, W, 3)
            f = torch.cat([stem(flat[s:s + stem_batch]) for s in range(0, len(flat), stem_batch)]).to(torch.float16)
            self.feats = f.reshape(n, M, N, *f.shape[1:])
            self.images = None

    def relative(self, a: int, i: int, b: int, j: int, m: int) -> tuple[np.ndarray, np.ndarray]:
        """cam_(b, view j) from cam_(a, view i) in mirror state m: R (3, 3), t (3,)."""
        if a == b:
            Rab, tab = np.eye(3), np.zeros(3)
        else:
            Rab, tab = self.seq.relative(a, b)
            if m:
                Rab, tab = MIRROR @ Rab @ MIRROR, MIRROR @ tab
        Ra, ta, Rb, tb = self.R[a, m, i], self.t[a, m, i], self.R[b, m, j], self.t[b, m, j]
        R = Rb @ Rab @ Ra.T
        return R, Rb @ (tab - Rab @ Ra.T @ ta) + tb

    def batch(self, pairs: np.ndarray, rng: np.random.Generator | None = None, color_jitter: float = 0.0,
              swap_prob: float = 0.0, synthetic_prob: float = 0.0) -> PairBatch:
        """A batch of (augmented) pairs. With ``rng``: random mirror states and rotated
        variants; with probability ``synthetic_prob`` a pair becomes (a variant of its
        first frame, a synthetic view of that frame); order swaps with ``swap_prob``;
        colour jitter when no stem features are cached. Without ``rng``: the plain pairs."""
        pairs = np.array(pairs, dtype=np.int64).reshape(-1, 2).copy()
        B = len(pairs)
        a, b = pairs[:, 0].copy(), pairs[:, 1].copy()
        m, i, j = np.zeros(B, np.int64), np.zeros(B, np.int64), np.zeros(B, np.int64)
        if rng is not None:
            m = rng.integers(0, self.num_mirror, B)
            i = rng.integers(0, self.num_views, B)
            j = rng.integers(0, self.num_views, B)
            if self.num_synthetic and synthetic_prob > 0:
                syn = rng.random(B) < synthetic_prob
                b[syn] = a[syn]
                j[syn] = self.num_views + rng.integers(0, self.num_synthetic, int(syn.sum()))
            if swap_prob > 0:
                sw = rng.random(B) < swap_prob
                a[sw], b[sw], i[sw], j[sw] = b[sw], a[sw].copy(), j[sw], i[sw].copy()
        Rs, ts = zip(*(self.relative(a[k], i[k], b[k], j[k], m[k]) for k in range(B)))
        d0 = self.depths[a, m, i].astype(np.float32)
        d1 = self.depths[b, m, j].astype(np.float32)
        out = PairBatch(None, None, np.stack(Rs), np.stack(ts), d0, d1, self.K[m])
        if self.feats is not None:
            import torch

            ia, ib, im_, ii, ij = (torch.from_numpy(x) for x in (a, b, m, i, j))
            out.feat0, out.feat1 = self.feats[ia, im_, ii], self.feats[ib, im_, ij]
        else:
            img0, img1 = self.images[a, m, i], self.images[b, m, j]
            if rng is not None and color_jitter > 0:
                img0 = np.stack([color_augment(im, rng, color_jitter) for im in img0])
                img1 = np.stack([color_augment(im, rng, color_jitter) for im in img1])
            out.img0, out.img1 = img0, img1
        return out


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
    from twoview.io.text import read_text

    out = []
    for lineno, ln in enumerate(read_text(f).splitlines(), 1):
        if not ln.strip() or ln.startswith("#"):
            continue
        p = ln.split()
        if len(p) != 20:
            raise InputError(f"{f}:{lineno}", f"expected 20 fields per line, got {len(p)}")
        try:
            T = np.array(p[4:], dtype=np.float64).reshape(4, 4)
        except ValueError:
            raise InputError(f"{f}:{lineno}", f"expected 16 numbers of T_0to1, got {' '.join(p[4:])[:80]!r}") from None
        out.append({"image0": seq_dir / p[0], "image1": seq_dir / p[1], "depth0": seq_dir / p[2],
                    "depth1": seq_dir / p[3], "T": T})
    return out

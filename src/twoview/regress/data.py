"""Training/evaluation pairs for the regressor, read through the project's dataset readers.

- :class:`RGBDSequence`: frames of a sequence (any reader of :mod:`twoview.datasets`)
  preloaded as the network sees them (:func:`twoview.regress.canonical.network_view`:
  the canonical camera, undistorted), with depth and poses, for fast CPU training;
  :func:`load_split_sequences` builds them from the split file's train or held-out frames.
- :class:`ViewBank`: augmentation -- mirrored, rotated-camera and rendered copies of every
  frame (exact: a camera rotation is a homography; a rendered view is the frame's own
  RGB-D seen from a moved camera), real-sensor corruption (:mod:`twoview.regress.corrupt`),
  with their depth and, for a frozen stem, the cached stem features.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from twoview.errors import InputError
from twoview.regress.canonical import resize_image  # noqa: F401  (re-exported: the legacy home)


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
    """Frames of RGB-D sequences at network resolution, all with one intrinsics ``K``.

    Args:
        images: (n, H, W, 3) uint8. depths: (n, H, W) float32 metres, NaN invalid.
        world_from_cam: (n, 4, 4) camera-to-world poses (metres).
        K: (3, 3) intrinsics of every frame at network resolution.
        ids: (n,) frame indices (frame gaps are differences of ids; sequences concatenated
            by :meth:`concat` get ids far apart, so no gap crosses two sequences).
        names: (n,) name of each frame's sequence. synthetic: (n,) bool, rendered frames.
    """

    def __init__(self, images, depths, world_from_cam, K, ids=None, names=None, synthetic=None):
        self.images = np.asarray(images)
        self.depths = np.asarray(depths, dtype=np.float32)
        self.world_from_cam = np.asarray(world_from_cam, dtype=np.float64)
        self.K = np.asarray(K, dtype=np.float64)
        n = len(self.images)
        self.ids = np.arange(n) if ids is None else np.asarray(ids, dtype=np.int64)
        self.names = np.array([""] * n if names is None else list(names), dtype=object)
        self.synthetic = np.zeros(n, bool) if synthetic is None else np.asarray(synthetic, dtype=bool)

    @classmethod
    def from_frames(cls, frames, depth_scale: float | None, cfg, name: str = "", synthetic: bool = False) -> RGBDSequence:
        """Load :class:`twoview.datasets.Frame` objects (with depth) as the network sees them.

        Args:
            frames: the reader's frames. depth_scale: the reader's depth units per metre.
            cfg: the :class:`~twoview.regress.config.RegressorConfig` (input size and mode).

        Raises:
            InputError: a frame without depth, or an unreadable file.
        """
        from twoview.io.depth import load_depth, prepare_depth
        from twoview.io.images import load_image
        from twoview.regress.canonical import network_view

        views: dict = {}
        imgs, depths, poses = [], [], []
        K = None
        for f in frames:
            if f.depth is None:
                raise InputError(f"{name} frame {f.frame_id}", "has no depth map (training needs RGB-D frames)")
            view = views.get(f.camera)
            if view is None:
                view = views[f.camera] = network_view(f.camera, cfg, f"{name} camera")
            if K is not None and not np.allclose(view.target.K, K):
                raise InputError(name, "frames with different network intrinsics (use resize_mode 'canonical')")
            K = view.target.K
            imgs.append(view.image(load_image(f.image, str(f.image))))
            d = prepare_depth(load_depth(f.depth, depth_scale, str(f.depth)), f.camera.size, str(f.depth))
            depths.append(view.depth(d))
            poses.append(f.world_from_cam.matrix)
        if not imgs:
            raise InputError(name or "data", "no frames")
        n = len(imgs)
        return cls(np.stack(imgs), np.stack(depths), np.stack(poses), K, [f.index for f in frames], [name] * n,
                   [synthetic] * n)

    @classmethod
    def concat(cls, seqs: list[RGBDSequence]) -> RGBDSequence:
        """One sequence of several (same ``K``); ids offset so that no gap spans two of them."""
        if not seqs:
            raise InputError("data", "no sequences to train on")
        K = seqs[0].K
        for s in seqs[1:]:
            if not np.allclose(s.K, K):
                raise InputError("data", "sequences with different network intrinsics cannot be mixed "
                                 "(use model.resize_mode 'canonical')")
        span = 1 + max(int(s.ids.max() - s.ids.min()) for s in seqs)
        ids = np.concatenate([s.ids - s.ids.min() + k * 10 * span for k, s in enumerate(seqs)])
        return cls(np.concatenate([s.images for s in seqs]), np.concatenate([s.depths for s in seqs]),
                   np.concatenate([s.world_from_cam for s in seqs]), K, ids,
                   np.concatenate([s.names for s in seqs]), np.concatenate([s.synthetic for s in seqs]))

    def relative(self, a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
        """cam_b_from_cam_a for frame indices (positions) a, b: R (3, 3), t (3,)."""
        T = np.linalg.inv(self.world_from_cam[b]) @ self.world_from_cam[a]
        return T[:3, :3], T[:3, 3]

    def pairs(self, min_gap: int, max_gap: int, stride: int = 1) -> np.ndarray:
        """(M, 2) index pairs (a, b) with frame-id gap in [min_gap, max_gap], a < b."""
        out = []
        for a in range(len(self.ids)):
            for b in range(a + 1, len(self.ids)):
                if min_gap <= self.ids[b] - self.ids[a] <= max_gap and self.names[a] == self.names[b]:
                    out.append((a, b))
        return np.array(out[::stride], dtype=np.int64).reshape(-1, 2)

    def covisible_pairs(self, min_overlap: float, max_rot_deg: float = 180.0, max_trans_m: float = np.inf,
                        min_gap: int = 1, step: int = 4) -> np.ndarray:
        """(M, 2) pairs (a, b), a < b, of one sequence with ``min_gap`` <= gap, GT rotation
        <= ``max_rot_deg``, baseline <= ``max_trans_m`` and covisibility >= ``min_overlap``
        (the fraction of frame a's depth pixels, every ``step``-th, that land in frame b in
        front of it and agree with its depth within 5 %)."""
        from twoview.geometry.rotation import rotation_angle_deg

        n, H, W = self.depths.shape
        vv, uu = np.mgrid[0:H:step, 0:W:step]
        Kinv = np.linalg.inv(self.K)
        out = []
        for a in range(n):
            z = self.depths[a][vv, uu].ravel().astype(np.float64)
            ok = np.isfinite(z) & (z > 0)
            if ok.sum() < 10:
                continue
            rays = np.stack([uu.ravel()[ok], vv.ravel()[ok], np.ones(ok.sum())]) * z[ok]
            Xa = Kinv @ rays  # 3, N
            for b in range(a + 1, n):
                if self.names[a] != self.names[b] or self.ids[b] - self.ids[a] < min_gap:
                    continue
                R, t = self.relative(a, b)
                if rotation_angle_deg(R) > max_rot_deg or np.linalg.norm(t) > max_trans_m:
                    continue
                P = R @ Xa + t[:, None]
                front = P[2] > 1e-3
                p = self.K @ P[:, front]
                u, v = p[0] / p[2], p[1] / p[2]
                ins = (u > -0.5) & (u < W - 0.5) & (v > -0.5) & (v < H - 0.5)
                ui, vi = np.rint(u[ins]).astype(int), np.rint(v[ins]).astype(int)
                zb = self.depths[b][vi, ui]
                zp = P[2, front][ins]
                vis = ~np.isfinite(zb) | (np.abs(zb - zp) <= 0.05 * zp)
                if vis.sum() / ok.sum() >= min_overlap:
                    out.append((a, b))
        return np.array(out, dtype=np.int64).reshape(-1, 2)


def load_split_sequences(split_path, role: str, cfg, names: list[str] | None = None) -> list[RGBDSequence]:
    """The split's sequences that give frames to ``role`` ("train" or "heldout"), loaded
    at network resolution (only those frames; ``names`` restricts the sequences).

    Raises:
        InputError: an unknown name, a missing folder or file.
    """
    from twoview.regress.split import load_split, open_sequence

    split, root = load_split(split_path)
    specs = split.sequences if names is None else [split.sequence(n) for n in names]
    out = []
    for spec in specs:
        if not getattr(spec, role):
            continue
        ds = open_sequence(spec, root)
        frames = [f for f in ds.frames if spec.selects(role, f.index)]
        if frames:
            out.append(RGBDSequence.from_frames(frames, ds.depth_scale, cfg, spec.name, spec.synthetic))
    return out


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
    cover = float(np.isfinite(dep).mean())
    return (fill_holes(out, dep) if inpaint else out), dep, cover


def fill_holes(img: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """Inpaint (OpenCV Telea) the pixels of a rendered view that received no surface."""
    hole = ~np.isfinite(depth)
    return cv2.inpaint(img, hole.astype(np.uint8), 3, cv2.INPAINT_TELEA) if hole.any() else img


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
    without a stem, per step in :meth:`batch`). ``photometric`` (a
    :class:`~twoview.regress.corrupt.PhotometricConfig`) corrupts every view like a real
    colour sensor; ``depth_noise`` is the probability that a view of a synthetic frame
    (``seq.synthetic``) gets Kinect-class depth (:func:`~twoview.regress.corrupt.kinect_depth`).

    The ground truth of two views i (of frame a) and j (of frame b), mirror state m, is
    ``T_bj @ M T_ab M @ inv(T_ai)`` (``T_ab`` = identity when a == b); both views have
    the intrinsics of mirror state m.
    """

    def __init__(self, seq: RGBDSequence, hflip: bool = False, views_per_frame: int = 1, roll_deg: float = 0.0,
                 tilt_deg: float = 0.0, rng: np.random.Generator | None = None, stem=None, color_jitter: float = 0.0,
                 synthetic_views: int = 0, synthetic_rot_deg: float = 10.0, synthetic_trans_m=(0.05, 0.4),
                 min_coverage: float = 0.6, stem_batch: int = 32, photometric=None, depth_noise: float = 0.0):
        from twoview.regress.corrupt import kinect_depth, photometric as corrupt_photometric
        from twoview.geometry.rotation import so3_exp, so3_log

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
                        # a motion that keeps most of the frame's surface in view: shrink it until it does
                        R, t = random_relative_pose(rng, synthetic_rot_deg, synthetic_trans_m)
                        valid = max(float(np.isfinite(base_depth).mean()), 1e-6)
                        for _ in range(6):
                            im, d, cover = render_view(base_img, base_depth, self.K[m], R, t, inpaint=False)
                            if cover >= min_coverage * valid:
                                break
                            # shrink the motion, the translation not below its minimum length
                            R, t = so3_exp(0.7 * so3_log(R)), t * max(0.7, synthetic_trans_m[0] / np.linalg.norm(t))
                        im = fill_holes(im, d)
                    if stem is not None and color_jitter > 0:
                        im = color_augment(im, rng, color_jitter)
                    if photometric is not None:
                        im = corrupt_photometric(im, rng, photometric)
                    if depth_noise > 0 and seq.synthetic[f] and rng.random() < depth_noise:
                        d = kinect_depth(d, rng)
                    self.R[f, m, v], self.t[f, m, v], imgs[f, m, v], self.depths[f, m, v] = R, t, im, d
        self.feats = None
        self.images = imgs
        if stem is not None:
            import torch

            flat = imgs.reshape(-1, H, W, 3)
            f = torch.cat([stem(flat[s:s + stem_batch]) for s in range(0, len(flat), stem_batch)]).to(torch.float16)
            self.feats = f.reshape(n, M, N, *f.shape[1:])
            self.images = None

    _STATE = ("R", "t", "K", "depths", "feats", "images", "num_mirror", "num_views", "num_synthetic")

    def state(self) -> dict:
        """Everything built (for :meth:`from_state`; the sequence is not included)."""
        return {k: getattr(self, k) for k in self._STATE}

    @classmethod
    def from_state(cls, seq: RGBDSequence, state: dict) -> ViewBank:
        """A bank from :meth:`state` of one built on ``seq`` with the same settings."""
        bank = cls.__new__(cls)
        bank.seq = seq
        for k in cls._STATE:
            setattr(bank, k, state[k])
        if bank.depths.shape[0] != len(seq.ids):
            raise InputError("augment.cache_dir", "cached views do not match the training frames")
        return bank

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

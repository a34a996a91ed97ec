"""The regressed pose checked against the image evidence (numpy, after the forward pass).

The network's forward pass already matches every stem cell of one image in the other
(:func:`twoview.regress.model.cell_matches`). Those matches give, at no extra network
cost:

- the metric scale of the regressed translation direction from depth
  (:func:`depth_scale`), as the other solvers take it: with both depths, the length that
  best aligns the matched 3D points; with one, the length that best puts view 0's points
  (or view 1's) on the other view's rays; or, as an option, the whole translation that
  best aligns the matched depth points given the regressed rotation
  (:func:`aligned_translation`);
- the pose's agreement with the matches (:func:`agreement`): the share of mutual
  matches on their epipolar lines (Sampson distance) and, with depth, of matched 3D
  points that the pose aligns -- features of the calibrated confidence
  (:mod:`twoview.regress.confidence`) and of the "no overlap" failure.

The rotation is never changed here: it is the regressor's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

#: Sampson distances (canonical pixels) at which the epipolar inlier shares are measured.
EPIPOLAR_PX = (4.0, 12.0)
#: 3D residual (metres, and relative to depth) within which a matched point is aligned.
ALIGN_M, ALIGN_REL = 0.05, 0.03
#: Least descriptor-match confidence of a cell used by the checks.
MIN_MATCH_CONF = 0.2


@dataclass
class Agreement:
    """How well a pose agrees with the descriptor matches.

    Attributes:
        num_cells: stem cells of view 0. num_matches: mutual, confident matches used.
        coherent: those whose offset agrees with a neighbouring match's (see :func:`matched_pixels`).
        epipolar: share of them within each of :data:`EPIPOLAR_PX` of their epipolar line.
        depth_matches: matches with valid depth where the scale was measured (0: none).
        aligned: share of those aligned within ``ALIGN_M + ALIGN_REL z`` (None without depth).
        scale: translation length (metres) from depth, or None. scale_source: "depth0+depth1",
            "depth0", "depth1" or "".
    """

    num_cells: int
    num_matches: int
    epipolar: tuple[float, ...]
    coherent: int = 0
    depth_matches: int = 0
    aligned: float | None = None
    scale: float | None = None
    scale_source: str = ""

    @property
    def match_share(self) -> float:
        return self.num_matches / max(1, self.num_cells)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["epipolar"] = list(self.epipolar)
        return d


#: Two neighbouring cells' matches are coherent when their offsets differ by less than this
#: many cells (a smooth flow field: the same surface seen from another place).
COHERENT_CELLS = 1.5


def matched_pixels(m: dict, index: int, width: int, height: int, min_conf: float = MIN_MATCH_CONF):
    """Mutual, confident cell matches of pair ``index`` of a batch's :func:`cell_matches`
    output (torch tensors or numpy arrays) -> (p0 (N, 2), p1 (N, 2)) pixels of the network input, the
    number of cells, and the number of matches coherent with a neighbour's (a mutual match
    in the 8 neighbouring cells whose offset differs by less than :data:`COHERENT_CELLS`
    cells). Images of unrelated places match at random positions: their matches are
    rarely coherent, whatever pose is claimed."""
    def arr(x):  # a torch tensor or numpy array, in its own precision
        return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)

    grid = arr(m["grid"]).astype(np.float64)
    uv = arr(m["uv_ab"][index]).astype(np.float64)
    keep = (arr(m["mutual_ab"][index]) > 0.5) & (arr(m["conf_ab"][index]) >= min_conf)
    to_px = lambda a: (a + 0.5) * [width, height] - 0.5  # noqa: E731  centred units -> pixels
    # the grid's shape from its (row-major) cell centres
    Wd = int(np.sum(np.isclose(grid[:, 1], grid[0, 1])))
    Hd = len(grid) // Wd
    off = ((uv - grid) * [Wd, Hd]).reshape(Hd, Wd, 2)  # in cells
    k = keep.reshape(Hd, Wd)
    coherent = np.zeros((Hd, Wd), bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dx == dy == 0:
                continue
            ys, yd = slice(max(0, dy), Hd + min(0, dy)), slice(max(0, -dy), Hd + min(0, -dy))
            xs, xd = slice(max(0, dx), Wd + min(0, dx)), slice(max(0, -dx), Wd + min(0, -dx))
            close = np.linalg.norm(off[ys, xs] - off[yd, xd], axis=-1) < COHERENT_CELLS
            coherent[yd, xd] |= close & k[ys, xs] & k[yd, xd]
    return to_px(grid[keep]), to_px(uv[keep]), len(grid), int(coherent.sum())


def _skew(v):
    return np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])


def sampson_px(R: np.ndarray, tdir: np.ndarray, p0: np.ndarray, p1: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Sampson distance (pixels of ``K``) of matches p0 -> p1 to the epipolar geometry of
    (R, translation direction); (N,)."""
    Kinv = np.linalg.inv(K)
    x0 = np.c_[p0, np.ones(len(p0))] @ Kinv.T
    x1 = np.c_[p1, np.ones(len(p1))] @ Kinv.T
    n = np.linalg.norm(tdir)
    E = _skew(tdir / n if n > 0 else tdir) @ R
    Ex0, Etx1 = x0 @ E.T, x1 @ E
    num = np.einsum("ij,ij->i", x1, Ex0)
    den = Ex0[:, 0] ** 2 + Ex0[:, 1] ** 2 + Etx1[:, 0] ** 2 + Etx1[:, 1] ** 2
    return np.abs(num) / np.sqrt(np.maximum(den, 1e-18)) * K[0, 0]


def _depth_at(depth: np.ndarray, p: np.ndarray) -> np.ndarray:
    H, W = depth.shape
    u = np.clip(np.rint(p[:, 0]).astype(int), 0, W - 1)
    v = np.clip(np.rint(p[:, 1]).astype(int), 0, H - 1)
    return depth[v, u].astype(np.float64)


def _lifted_pairs(p0, p1, K, depth0, depth1) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The matches p0 -> p1 (pixels of ``K``) with valid depth at both ends, lifted into
    their cameras: (X0, X1) (M, 3) metres each and their depths (z0, z1) (M,)."""
    Kinv = np.linalg.inv(K)
    z0, z1 = _depth_at(depth0, p0), _depth_at(depth1, p1)
    ok = np.isfinite(z0) & np.isfinite(z1) & (z0 > 0) & (z1 > 0)
    X0 = (np.c_[p0[ok], np.ones(ok.sum())] @ Kinv.T) * z0[ok, None]
    X1 = (np.c_[p1[ok], np.ones(ok.sum())] @ Kinv.T) * z1[ok, None]
    return X0, X1, z0[ok], z1[ok]


def _scale_on_rays(X: np.ndarray, R: np.ndarray, tdir: np.ndarray, rays: np.ndarray) -> np.ndarray:
    """Per point, the length s that puts ``R X + s tdir`` on its ray (least squares of the
    cross product), and the weight |ray x tdir|^2 (0 near the epipole: no information)."""
    a = np.cross(rays, X @ R.T)
    b = np.cross(rays, np.broadcast_to(tdir, rays.shape))
    w = np.einsum("ij,ij->i", b, b)
    return -np.einsum("ij,ij->i", a, b) / np.maximum(w, 1e-12), w


def _weighted_median(x: np.ndarray, w: np.ndarray) -> float:
    o = np.argsort(x)
    c = np.cumsum(w[o])
    return float(x[o][np.searchsorted(c, 0.5 * c[-1])])


def depth_scale(R, tdir, p0, p1, K, depth0=None, depth1=None):
    """Metric length of the translation ``s * tdir`` (unit ``tdir``) from depth at the matches.

    Returns:
        (scale or None, source, number of matches with depth, per-match 3D residual in
        metres (or None), their depths (z)).
    """
    Kinv = np.linalg.inv(K)
    r0 = np.c_[p0, np.ones(len(p0))] @ Kinv.T
    r1 = np.c_[p1, np.ones(len(p1))] @ Kinv.T
    z0 = _depth_at(depth0, p0) if depth0 is not None else None
    z1 = _depth_at(depth1, p1) if depth1 is not None else None
    if z0 is not None and z1 is not None:
        ok = np.isfinite(z0) & np.isfinite(z1) & (z0 > 0) & (z1 > 0)
        if ok.sum() >= 5:
            X0, X1 = r0[ok] * z0[ok, None], r1[ok] * z1[ok, None]
            d = X1 - X0 @ R.T
            s = float(np.median(d @ tdir))
            for _ in range(2):  # re-fit on the points the first fit aligns
                res = np.linalg.norm(d - s * tdir, axis=1)
                inl = res < ALIGN_M + ALIGN_REL * z1[ok]
                if inl.sum() >= 3:
                    s = float(np.mean(d[inl] @ tdir))
            res = np.linalg.norm(d - s * tdir, axis=1)
            return s, "depth0+depth1", int(ok.sum()), res, z1[ok]
    for z, X_rays, other_rays, Rm, tm, name in (
            (z0, r0, r1, R, tdir, "depth0"), (z1, r1, r0, R.T, -R.T @ tdir, "depth1")):
        if z is None:
            continue
        ok = np.isfinite(z) & (z > 0)
        if ok.sum() < 5:
            continue
        s_i, w = _scale_on_rays(X_rays[ok] * z[ok, None], Rm, tm, other_rays[ok])
        if w.sum() <= 1e-9:
            continue
        s = _weighted_median(s_i, w)
        return s, name, int(ok.sum()), None, None
    return None, "", 0, None, None


def rigid_from_matches(p0, p1, K, depth0, depth1, cfg=None) -> tuple[np.ndarray, np.ndarray, int] | None:
    """The rigid motion of the matched depth points: 3-point Kabsch MSAC with the rigid3d
    solver's threshold (``cfg.max_3d_error_rel`` of the median depth), refitted on its
    inliers -> (R, t, inliers), or None with fewer than ``cfg.min_inliers`` agreeing points.
    (No reprojection refinement: a cell match's position is good to a cell, its depth is
    the sensor's.)"""
    from twoview.config import SolverConfig
    from twoview.solvers.rigid3d import _ransac_rigid, kabsch

    cfg = cfg or SolverConfig()
    if depth0 is None or depth1 is None or len(p0) < cfg.min_inliers:
        return None
    X0, X1, z0, z1 = _lifted_pairs(p0, p1, K, depth0, depth1)
    if len(X0) < cfg.min_inliers:
        return None
    tol = cfg.max_3d_error_rel * float(np.median(0.5 * (z0 + z1)))
    R, t, _ = _ransac_rigid(X0, X1, tol, cfg, np.random.default_rng(cfg.seed))
    inl = np.linalg.norm(X0 @ R.T + t - X1, axis=1) < tol
    if inl.sum() < cfg.min_inliers:
        return None
    R, t = kabsch(X0[inl], X1[inl])
    return R, t, int(inl.sum())


def aligned_translation(R, p0, p1, K, depth0, depth1, min_points: int = 10) -> np.ndarray | None:
    """The translation that best aligns the matched depth points of both views given the
    rotation ``R`` (robust mean of ``X1 - R X0`` over the points it aligns), or None with
    fewer than ``min_points`` matches with depth at both ends."""
    if depth0 is None or depth1 is None or len(p0) < min_points:
        return None
    X0, X1, _, z1 = _lifted_pairs(p0, p1, K, depth0, depth1)
    if len(X0) < min_points:
        return None
    d = X1 - X0 @ R.T
    t = np.median(d, axis=0)
    for _ in range(3):
        inl = np.linalg.norm(d - t, axis=1) < ALIGN_M + ALIGN_REL * z1
        if inl.sum() < 3:
            break
        t = d[inl].mean(axis=0)
    return t


def agreement(R: np.ndarray, t: np.ndarray, p0: np.ndarray, p1: np.ndarray, K: np.ndarray, num_cells: int,
              depth0: np.ndarray | None = None, depth1: np.ndarray | None = None, coherent: int = 0) -> Agreement:
    """Check the pose (R, t) (t: any length, its direction is used) against matches
    p0 -> p1 (pixels of the network input, intrinsics ``K``) and depth at the network
    input (or None). A negative depth scale (the regressed direction points backwards)
    is kept as measured: the caller decides."""
    n = len(p0)
    nt = np.linalg.norm(t)
    tdir = t / nt if nt > 0 else np.array([0.0, 0.0, 1.0])
    if n == 0:
        return Agreement(num_cells, 0, tuple(0.0 for _ in EPIPOLAR_PX), coherent)
    d = sampson_px(R, tdir, p0, p1, K)
    epi = tuple(float(np.mean(d < px)) for px in EPIPOLAR_PX)
    s, source, nd, res, z = depth_scale(R, tdir, p0, p1, K, depth0, depth1)
    aligned = float(np.mean(res < ALIGN_M + ALIGN_REL * z)) if res is not None else None
    return Agreement(num_cells, n, epi, coherent, nd, aligned, s, source)

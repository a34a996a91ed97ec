"""Nearest-neighbour queries over 3D points on a hashed uniform grid (numba).

The mixtures' neighbour searches (the k nearest components within a radius, and the
k nearest of a mixture's own components) need only a small part of a KD-tree; a
sorted-cell grid answers them exactly and keeps scipy (0.3-0.6 s to import) out of a
command's start. :meth:`PointGrid.query` follows ``scipy.spatial.cKDTree.query``: the
neighbours sorted by distance, a missing one as distance ``inf`` and index ``n``.

Cells are cubes of side ``cell``; only occupied cells are stored (their int64 keys
sorted, found by binary search), so far-away outliers cost nothing. The query visits
cells shell by shell around the query's cell and stops once the ``k``-th distance found
is below the nearest point any further shell could hold: exact for any cell size.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

_OPTS = dict(nogil=True, cache=True, fastmath=False, error_model="numpy")
_BITS = 20  # cells per axis below 2**20: a key fits 60 bits
_OFFSET = 1 << (_BITS - 1)
_MAX_SHELL = 6  # past this many shells a query scans every point instead (bounded cost)


@njit(**_OPTS)
def _cell_keys(points, origin, cell):
    n = points.shape[0]
    keys = np.empty(n, np.int64)
    for i in range(n):
        ix = int(math.floor((points[i, 0] - origin[0]) / cell))
        iy = int(math.floor((points[i, 1] - origin[1]) / cell))
        iz = int(math.floor((points[i, 2] - origin[2]) / cell))
        keys[i] = ((ix * (1 << 20)) + iy) * (1 << 20) + iz
    return keys


@njit(**_OPTS)
def _lower_bound(keys, key):
    """Index of the first of the sorted ``keys`` that is >= ``key``."""
    lo, hi = 0, keys.shape[0]
    while lo < hi:
        mid = (lo + hi) // 2
        if keys[mid] < key:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(**_OPTS)
def _seen(row, p):
    for r in range(row.shape[0]):
        if row[r] == p:
            return True
    return False


@njit(**_OPTS)
def _query(points, order, cell_keys, cell_start, origin, cell, cell_lo, cell_hi, queries, k, bound):
    """k nearest within ``bound`` (inf: unbounded) -> (Q, k) squared distances, indices."""
    nq = queries.shape[0]
    n = points.shape[0]
    n_cells = cell_keys.shape[0]
    dist = np.full((nq, k), np.inf)
    idx = np.full((nq, k), n, np.int64)
    bound2 = bound * bound
    for q in range(nq):
        x, y, z = queries[q, 0], queries[q, 1], queries[q, 2]
        cx = int(math.floor((x - origin[0]) / cell))
        cy = int(math.floor((y - origin[1]) / cell))
        cz = int(math.floor((z - origin[2]) / cell))
        # the shells needed to reach every occupied cell, or ``bound``
        far = max(abs(cx - cell_lo[0]), abs(cx - cell_hi[0]), abs(cy - cell_lo[1]), abs(cy - cell_hi[1]),
                  abs(cz - cell_lo[2]), abs(cz - cell_hi[2]))
        if math.isfinite(bound):
            # a point within ``bound`` is at most floor(bound / cell) + 1 cells away per
            # axis (ceil(bound / cell) when the ratio is not a whole number; the margin
            # keeps a ratio a rounding away from one whole)
            far = min(far, int(math.floor(bound / cell + 1e-9)) + 1)
        found = 0
        brute = False
        for s in range(far + 1):
            if found == k:
                # any point in shell s is at least (s - 1) cells away from the query
                reach = (s - 1) * cell
                if reach * reach > dist[q, k - 1]:
                    break
            if s > _MAX_SHELL:
                brute = True  # far from everything (an outlier): every point, once
                break
            for dx in range(-s, s + 1):
                for dy in range(-s, s + 1):
                    # a column of cells (dx, dy, dz) has consecutive keys: one search finds
                    # the occupied cells of a whole run of dz; inside the shell only its two
                    # z faces are new (two runs of one cell)
                    whole = s == 0 or abs(dx) == s or abs(dy) == s  # the column's every dz is new
                    column = (((cx + dx) * (1 << 20)) + (cy + dy)) * (1 << 20) + cz
                    for run in range(1 if whole else 2):
                        if whole:
                            first, last = column - s, column + s
                        else:
                            first = last = column - s if run == 0 else column + s
                        c = _lower_bound(cell_keys, first)
                        while c < n_cells and cell_keys[c] <= last:
                            for m in range(cell_start[c], cell_start[c + 1]):
                                p = order[m]
                                ex = points[p, 0] - x
                                ey = points[p, 1] - y
                                ez = points[p, 2] - z
                                d2 = ex * ex + ey * ey + ez * ez
                                if d2 > bound2 or d2 >= dist[q, k - 1]:
                                    continue
                                # insertion into the sorted top k
                                r = k - 1
                                while r > 0 and dist[q, r - 1] > d2:
                                    dist[q, r] = dist[q, r - 1]
                                    idx[q, r] = idx[q, r - 1]
                                    r -= 1
                                dist[q, r] = d2
                                idx[q, r] = p
                                if found < k:
                                    found += 1
                            c += 1
        if brute:
            for p in range(n):
                ex = points[p, 0] - x
                ey = points[p, 1] - y
                ez = points[p, 2] - z
                d2 = ex * ex + ey * ey + ez * ez
                if d2 > bound2 or d2 >= dist[q, k - 1] or _seen(idx[q], p):
                    continue
                r = k - 1
                while r > 0 and dist[q, r - 1] > d2:
                    dist[q, r] = dist[q, r - 1]
                    idx[q, r] = idx[q, r - 1]
                    r -= 1
                dist[q, r] = d2
                idx[q, r] = p
    return dist, idx


class PointGrid:
    """Exact k-nearest-neighbour queries over fixed 3D points.

    Args:
        points: (N, 3) finite float64 points.
        cell: the grid's cell side in the points' units; ``None`` picks one from the
            points' spread (about 8 points per occupied cell on a surface).
    """

    def __init__(self, points: np.ndarray, cell: float | None = None):
        pts = np.ascontiguousarray(points, dtype=np.float64).reshape(-1, 3)
        if not np.all(np.isfinite(pts)):
            raise ValueError("PointGrid: points must be finite")
        self.points = pts
        self.n = len(pts)
        lo = pts.min(axis=0) if self.n else np.zeros(3)
        hi = pts.max(axis=0) if self.n else np.ones(3)
        extent = float(np.max(hi - lo))
        if cell is None:
            # points on surfaces: about 8 per cell of a surface's square
            area = max(extent, 1e-9) ** 2
            cell = math.sqrt(8.0 * area / max(self.n, 1))
        cell = max(float(cell), extent / (2 ** (_BITS - 2)), 1e-12)
        self.cell = cell
        self.origin = lo - _OFFSET * cell  # cell indices of points and queries stay positive
        keys = _cell_keys(pts, self.origin, cell)
        self.order = np.argsort(keys, kind="stable").astype(np.int64)
        sorted_keys = keys[self.order]
        first = np.ones(self.n, bool)
        first[1:] = sorted_keys[1:] != sorted_keys[:-1]
        self.cell_keys = sorted_keys[first]
        self.cell_start = np.append(np.flatnonzero(first), self.n).astype(np.int64)
        self.cell_lo = np.floor((lo - self.origin) / cell).astype(np.int64)
        self.cell_hi = np.floor((hi - self.origin) / cell).astype(np.int64)

    def query(self, x: np.ndarray, k: int = 1, distance_upper_bound: float = np.inf):
        """The ``k`` nearest points of each query (Q, 3) within ``distance_upper_bound``.

        Returns (distances, indices): (Q,) each for ``k == 1``, else (Q, k); a missing
        neighbour is distance ``inf`` and index ``N`` (as scipy's cKDTree)."""
        q = np.ascontiguousarray(x, dtype=np.float64).reshape(-1, 3)
        k = int(k)
        if k < 1:
            raise ValueError(f"PointGrid.query: k must be >= 1, got {k}")
        d = np.full((len(q), k), np.inf)
        i = np.full((len(q), k), self.n, np.int64)
        finite = np.all(np.isfinite(q), axis=1)  # a non-finite query has no neighbour
        if self.n and finite.any():
            d2, i[finite] = _query(self.points, self.order, self.cell_keys, self.cell_start, self.origin, self.cell,
                                   self.cell_lo, self.cell_hi, np.ascontiguousarray(q[finite]), k,
                                   float(distance_upper_bound))
            d[finite] = np.sqrt(d2)
        return (d[:, 0], i[:, 0]) if k == 1 else (d, i)

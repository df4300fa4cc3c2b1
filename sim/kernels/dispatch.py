"""The built-in dispatchers' assignment kernel: greedy nearest-courier matching, oldest order first.

Public objects
--------------
nearest_candidates
    The k couriers nearest each order (Manhattan distance), from a uniform grid.
greedy_assign
    Give each order (in the order given) to an available courier among its nearest candidates.

The plain twins are in :mod:`sim.kernels.reference_dispatch`.
"""

from __future__ import annotations

import numba as nb
import numpy as np

__all__ = ["greedy_assign", "grid_shape", "nearest_candidates"]

POINTS_PER_CELL = 1.0  # grid cells sized for about one courier each (couriers cluster: fine cells pay)


def grid_shape(n_points: int, size_km: float) -> tuple[float, int]:
    """Return (cell km, cells per side) of a grid over a ``size_km`` square for ``n_points`` points."""
    g = max(1, min(2048, int((max(n_points, 1) / POINTS_PER_CELL) ** 0.5)))
    return size_km / g, g


@nb.njit(cache=True)
def greedy_assign(cand, dist, capacity, decliner, score, window, out_worker, out_dist):
    """Match orders to couriers greedily (sequential: each order uses up the capacity it takes).

    Parameters
    ----------
    cand : int64 (n_orders, k)
        Candidate couriers of each order, nearest first (-1: none).
    dist : float64 (n_orders, k)
        Their distances (km).
    capacity : int64 (n_workers,)
        Orders each courier may still get; decremented in place.
    decliner : int32 (n_orders,)
        The courier who last declined each order (skipped; -1: none).
    score : float64 (n_workers,)
        Among the available candidates within ``window`` km of the nearest available one,
        the courier with the lowest score is chosen (ties: the nearer). All zeros and
        ``window = 0`` give the nearest available courier.
    window : float
    out_worker : int64 (n_orders,)
        The chosen courier, -1 if none is available.
    out_dist : float64 (n_orders,)
        Distance to the chosen courier (0 if none).
    """
    n, k = cand.shape
    for j in range(n):
        out_worker[j] = -1
        out_dist[j] = 0.0
        first = -1
        for c in range(k):
            i = cand[j, c]
            if i >= 0 and capacity[i] > 0 and i != decliner[j]:
                first = c
                break
        if first < 0:
            continue
        best = first
        limit = dist[j, first] + window
        for c in range(first + 1, k):
            i = cand[j, c]
            if i < 0 or capacity[i] <= 0 or i == decliner[j] or dist[j, c] > limit:
                continue
            if score[i] < score[cand[j, best]]:
                best = c
        i = cand[j, best]
        out_worker[j] = i
        out_dist[j] = dist[j, best]
        capacity[i] -= 1


@nb.njit(cache=True)
def _grid(px, py, cell, g):
    """Sort points into a g x g grid of ``cell`` km (counting sort): (cell_start (g*g+1,), point order (m,))."""
    m = px.shape[0]
    key = np.empty(m, dtype=np.int64)
    counts = np.zeros(g * g + 1, dtype=np.int64)
    for i in range(m):
        cx = min(max(int(px[i] / cell), 0), g - 1)
        cy = min(max(int(py[i] / cell), 0), g - 1)
        key[i] = cx * g + cy
        counts[key[i] + 1] += 1
    for c in range(g * g):
        counts[c + 1] += counts[c]
    fill = counts[:-1].copy()
    order = np.empty(m, dtype=np.int64)
    for i in range(m):  # stable: points of a cell keep their index order
        order[fill[key[i]]] = i
        fill[key[i]] += 1
    return counts, order


@nb.njit(cache=True, inline="always")
def _scan_cell(ix, iy, g, start, order, px, py, x, y, best_d, best_i):
    """Offer the points of cell (ix, iy) to the sorted k-best arrays (nothing outside the grid)."""
    if ix < 0 or ix >= g or iy < 0 or iy >= g:
        return
    k = best_d.shape[0]
    c = ix * g + iy
    for t in range(start[c], start[c + 1]):
        i = order[t]
        d = abs(px[i] - x) + abs(py[i] - y)
        if d < best_d[k - 1] or (d == best_d[k - 1] and i < best_i[k - 1]):
            pos = k - 1
            while pos > 0 and (best_d[pos - 1] > d or (best_d[pos - 1] == d and best_i[pos - 1] > i)):
                best_d[pos] = best_d[pos - 1]
                best_i[pos] = best_i[pos - 1]
                pos -= 1
            best_d[pos] = d
            best_i[pos] = i


@nb.njit(parallel=True, cache=True)
def nearest_candidates(qx, qy, px, py, k, cell, g, out_idx, out_dist):
    """Find the ``k`` points nearest each query by Manhattan distance (ties: the lower point index first).

    A uniform grid (counting sort, O(m)) searched ring by ring around each query's cell; a query stops
    once it holds ``k`` points and no unvisited ring can hold a nearer one. Each query writes only its
    own row, so the result does not depend on the number of threads.

    Parameters
    ----------
    qx, qy : float64 (n,)
        Queries (km).
    px, py : float64 (m,)
        Points (km), inside ``[0, cell * g]`` (points outside are put in the border cells).
    k : int
        Candidates per query (at most m).
    cell : float
        Grid cell size (km).
    g : int
        Cells per side.
    out_idx : int64 (n, k)
        Point indices, nearest first; -1 where fewer than ``k`` points exist.
    out_dist : float64 (n, k)
        Their distances (km); inf where no point.
    """
    start, order = _grid(px, py, cell, g)
    n = qx.shape[0]
    for j in nb.prange(n):
        best_d = np.full(k, np.inf)
        best_i = np.full(k, -1, dtype=np.int64)
        cx = min(max(int(qx[j] / cell), 0), g - 1)
        cy = min(max(int(qy[j] / cell), 0), g - 1)
        for r in range(g):
            if r == 0:
                _scan_cell(cx, cy, g, start, order, px, py, qx[j], qy[j], best_d, best_i)
            else:
                for ix in range(cx - r, cx + r + 1):  # the ring's top and bottom rows
                    _scan_cell(ix, cy - r, g, start, order, px, py, qx[j], qy[j], best_d, best_i)
                    _scan_cell(ix, cy + r, g, start, order, px, py, qx[j], qy[j], best_d, best_i)
                for iy in range(cy - r + 1, cy + r):  # and its left and right columns
                    _scan_cell(cx - r, iy, g, start, order, px, py, qx[j], qy[j], best_d, best_i)
                    _scan_cell(cx + r, iy, g, start, order, px, py, qx[j], qy[j], best_d, best_i)
            # every point in ring r + 1 or beyond is at least r cells away along x or y
            if best_i[k - 1] >= 0 and best_d[k - 1] < r * cell:
                break
        for c in range(k):
            out_idx[j, c] = best_i[c]
            out_dist[j, c] = best_d[c]

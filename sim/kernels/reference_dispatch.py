"""Plain Python twin of :mod:`sim.kernels.dispatch` (for the tests).

Public objects
--------------
greedy_assign, nearest_candidates
"""

from __future__ import annotations

import numpy as np

__all__ = ["greedy_assign", "nearest_candidates"]


def nearest_candidates(qx, qy, px, py, k, cell, g, out_idx, out_dist):
    """Twin of :func:`sim.kernels.dispatch.nearest_candidates`: brute force over every point.

    The ``k`` points nearest each query by Manhattan distance, ties broken by the lower index
    (``cell`` and ``g`` are unused: the grid is only the kernel's way of finding them).
    """
    idx = np.arange(px.shape[0])
    for j in range(qx.shape[0]):
        d = np.abs(px - qx[j]) + np.abs(py - qy[j])
        order = np.lexsort((idx, d))[:k]
        out_idx[j, :] = -1
        out_dist[j, :] = np.inf
        out_idx[j, : order.size] = order
        out_dist[j, : order.size] = d[order]


def greedy_assign(cand, dist, capacity, decliner, score, window, out_worker, out_dist):
    """Twin of :func:`sim.kernels.dispatch.greedy_assign`.

    For each order, the available candidates (capacity left, not the last decliner) within ``window``
    km of the nearest available one; of those the lowest score, the nearer on ties.
    """
    for j in range(cand.shape[0]):
        avail = [c for c in range(cand.shape[1])
                 if cand[j, c] >= 0 and capacity[cand[j, c]] > 0 and cand[j, c] != decliner[j]]  # fmt: skip
        if not avail:
            out_worker[j], out_dist[j] = -1, 0.0
            continue
        near = [c for c in avail if dist[j, c] <= dist[j, avail[0]] + window]
        best = min(near, key=lambda c: (score[cand[j, c]], c))
        out_worker[j], out_dist[j] = cand[j, best], dist[j, best]
        capacity[cand[j, best]] -= 1

"""The built-in dispatchers' assignment kernel: greedy nearest-courier matching, oldest order first.

Public objects
--------------
greedy_assign
    Give each order (in the order given) to an available courier among its nearest candidates.

The plain twin is :func:`sim.kernels.reference_dispatch.greedy_assign`.
"""

from __future__ import annotations

import numba as nb

__all__ = ["greedy_assign"]


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

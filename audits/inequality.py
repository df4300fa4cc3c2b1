"""Inequality measures shared by the audits.

Public objects
--------------
gini
    Gini coefficient of non-negative amounts.
"""

from __future__ import annotations

import numpy as np

__all__ = ["gini"]


def gini(x: np.ndarray | None) -> float:
    """Return the Gini coefficient of amounts (0: all equal, toward 1: concentrated on few).

    Negative amounts count as 0. NaN when there are none, or all are zero.
    """
    if x is None:
        return float("nan")
    x = np.sort(np.maximum(np.asarray(x, dtype=np.float64), 0.0))
    n = x.size
    if n == 0 or x.sum() <= 0:
        return float("nan")
    return float((2.0 * np.arange(1, n + 1) - n - 1).dot(x) / (n * x.sum()))

"""Statistics over a set of users, the building blocks of the estimators.

Every audit statistic is a function ``stat(idx) -> float`` of an int array of
user indices: the whole scope for the estimate, a resample of it (with repeats)
for the bootstrap. The two shapes most metrics take are built here once.

Public objects
--------------
ratio_of_sums
    ``scale * sum(num[idx]) / sum(den[idx])``: a share or a rate pooled over users.
mean_of
    ``mean(x[idx])``: a per-user quantity averaged over users.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["mean_of", "ratio_of_sums"]


def ratio_of_sums(
    num: np.ndarray, den: np.ndarray, scale: float = 1.0, empty: float = float("nan")
) -> Callable[[np.ndarray], float]:
    """Return the statistic ``scale * sum(num[idx]) / sum(den[idx])`` over user indices.

    Parameters
    ----------
    num, den : array (n_users,)
        Per-user numerator and denominator (e.g. harmful impressions and impressions).
    scale : float
        Unit factor applied to the ratio (e.g. ``1 / 60`` for minutes to hours).
    empty : float
        The value where the denominator sums to 0 or less (no exposure): NaN (undefined) unless
        the metric defines it (e.g. 0 for "a share of nothing").
    """

    def stat(idx: np.ndarray) -> float:
        d = den[idx].sum()
        return float(scale * num[idx].sum() / d) if d > 0 else empty

    return stat


def mean_of(x: np.ndarray) -> Callable[[np.ndarray], float]:
    """Return the statistic ``mean(x[idx])`` over user indices (NaN for no users); ``x`` is (n_users,)."""
    return lambda idx: float(np.mean(x[idx])) if idx.size else float("nan")

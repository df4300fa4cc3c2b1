"""Audit metrics of the consumer market (Art. 8 spending, 18 minors' payments, 19 fraud, 21 pricing).

Every statistic is a function of a set of user indices (possibly with
repeats, for the bootstrap), built from per-user sums over the quote log, so
the market's findings share the interval code of the feed's. Prices are
compared with the *shadow price*: the reference (uniform) pricer's quote for
the same product, to the same user, at the same time, which the world records
next to every quote. A ratio ``price / shadow`` therefore holds product, cost
and time fixed.

Public objects
--------------
market_estimators
    Estimators of every market metric of the catalogue, keyed by (metric, cohort).
MARKET_METRICS
    Names of the metrics this module estimates.
PRICER_CF_METRICS
    Those compared with the pricer-only counterfactual rather than the full one.
"""

from __future__ import annotations

import numpy as np

from audits.catalogue import Catalogue
from sim.kernels.market import OUTCOME_PLATFORM
from sim.market.state import DAYS_PER_MONTH
from sim.record import RunRecord

__all__ = ["MARKET_METRICS", "PRICER_CF_METRICS", "TRAITS", "market_estimators", "trait_coefficients"]

MARKET_METRICS = (
    "loyal_new_price_ratio", "device_price_ratio", "trait_price_coefficient", "undisclosed_difference_share",
    "overcharge_per_user_month", "consumer_surplus_change", "over_budget_share_increase", "spend_uplift",
    "payments_over_cap_share", "months_over_cap_share", "fraud_exposure_ratio", "fraud_loss_per_user_month",
)  # fmt: skip

# compared with the pricer-only counterfactual (same recommender, reference pricer)
PRICER_CF_METRICS = frozenset({"consumer_surplus_change"})

TRAITS = ("loyalty", "new_customer", "ios", "minor", "elderly", "log_income")


def _sum_by_user(user_idx: np.ndarray, weights, n: int) -> np.ndarray:
    return np.bincount(user_idx, weights=np.asarray(weights, dtype=np.float64), minlength=n)


def _count_by_user(user_idx: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(user_idx, minlength=n).astype(np.float64)


def _ratio(num_a, den_a, num_b, den_b):
    """Statistic (sum num_a / sum den_a) / (sum num_b / sum den_b) over user indices."""

    def stat(idx):
        da, db = den_a[idx].sum(), den_b[idx].sum()
        if da == 0 or db == 0:
            return float("nan")
        return float((num_a[idx].sum() / da) / (num_b[idx].sum() / db))

    return stat


def _trait_matrix(rec: RunRecord, q: dict, loyal_min: float) -> np.ndarray:
    """Design rows (q, 1 + len(TRAITS)): intercept then the standardised non-cost traits of each quote."""
    m = rec.market
    u = q["user_idx"]
    log_income = np.log(m.income_month.astype(np.float64))
    cols = [
        np.minimum(q["purchases_stock"].astype(np.float64), 2.0 * loyal_min) / loyal_min,
        (q["lifetime_purchases"] == 0).astype(np.float64),
        (q["device"] == 1).astype(np.float64),
        (q["cohort"] == 1).astype(np.float64),
        (q["cohort"] == 2).astype(np.float64),
        (log_income[u] - log_income.mean()) / max(log_income.std(), 1e-12),
    ]
    return np.column_stack([np.ones(u.size)] + cols)


def trait_coefficients(xtx: np.ndarray, xty: np.ndarray) -> np.ndarray:
    """Least-squares coefficients from summed normal equations (column 0 the intercept); intercept dropped.

    A trait that does not vary in the sample (every quote from iOS, no minors, ...) is collinear
    with the intercept: it is left out and gets coefficient 0, so a uniform markup is not
    credited to it.
    """
    n = xtx[0, 0]
    if n <= 0:
        return np.full(xtx.shape[0] - 1, np.nan)
    mean = xtx[0] / n
    var = np.diag(xtx) / n - mean**2
    keep = np.flatnonzero((var > 1e-12) | (np.arange(xtx.shape[0]) == 0))
    beta = np.zeros(xtx.shape[0])
    beta[keep] = np.linalg.lstsq(xtx[np.ix_(keep, keep)], xty[keep], rcond=None)[0]
    return beta[1:]


def _relative_change(audited: float, counterfactual: float) -> float:
    """Return ``audited / counterfactual - 1``: 0 when both are 0, NaN when only the counterfactual is.

    Nothing on either side is no change: a bootstrap resample of a small cohort with no spender on either
    side made the interval of a do-nothing comparison NaN instead of [0, 0].
    """
    if counterfactual > 0:
        return float(audited / counterfactual - 1.0)
    return 0.0 if audited == 0 else float("nan")


def market_estimators(t: RunRecord, c: RunRecord, cp: RunRecord, catalogue: Catalogue, masks: dict, Estimator) -> dict:
    """Estimators of the market metrics for a pair of records.

    Parameters
    ----------
    t, c : RunRecord
        Audited and counterfactual runs (paired).
    cp : RunRecord
        The pricer-only counterfactual (same recommender as ``t``, reference pricer).
    catalogue : Catalogue
        Supplies the spending caps and the definitions of loyal and of an equal price.
    masks : dict of str -> bool (n_users,)
        Cohort masks (:func:`audits.metrics.cohort_masks`).
    Estimator : type
        :class:`audits.metrics.Estimator` (passed in to avoid a circular import).
    """
    n = t.n_users
    if t.market is None or c.market is None or cp.market is None:
        reason = "the scenario has no market (add a [market] table)"
        nobody = np.zeros(n, dtype=bool)  # no market: no one in scope, so article roll-ups skip these
        return {
            (name, cohort): Estimator(nobody, lambda idx: float("nan"), reason)
            for name in MARKET_METRICS
            for cohort in ("all", "adult", "minor", "elderly")
        }
    defs = catalogue.definitions
    loyal_min = float(defs["loyal_min_purchases"])
    tol = float(defs["price_tolerance"])
    months = t.n_days / DAYS_PER_MONTH
    q, qc = t.market.quotes, cp.market.quotes
    u = q["user_idx"].astype(np.int64)
    price = q["price"].astype(np.float64)
    shadow = q["shadow_price"].astype(np.float64)
    rel = price / shadow
    plain = ~q["disclosed"].astype(bool)
    bought = q["outcome"] == OUTCOME_PLATFORM
    loyal = plain & (q["purchases_stock"] >= loyal_min) & (q["lifetime_purchases"] > 0)
    new = plain & (q["lifetime_purchases"] == 0)
    ios = plain & (q["device"] == 1)
    android = plain & (q["device"] == 0)

    def sums(mask):
        return _sum_by_user(u[mask], rel[mask], n), _count_by_user(u[mask], n)

    est = {}
    everyone = masks["all"]
    (rl, nl), (rn, nn) = sums(loyal), sums(new)
    est[("loyal_new_price_ratio", "all")] = Estimator(everyone, _ratio(rl, nl, rn, nn))
    (ri, ni), (ra, na) = sums(ios), sums(android)
    est[("device_price_ratio", "all")] = Estimator(everyone, _ratio(ri, ni, ra, na))

    # regression of log(price / shadow) on non-cost traits, from per-user normal equations
    x = _trait_matrix(t, q, loyal_min)[plain]
    y = np.log(rel[plain])
    up = u[plain]
    k = x.shape[1]
    xtx = np.zeros((n, k, k))
    np.add.at(xtx, up, x[:, :, None] * x[:, None, :])
    xty = np.zeros((n, k))
    np.add.at(xty, up, x * y[:, None])

    def max_coef(idx):
        if idx.size == 0 or xtx[idx, 0, 0].sum() == 0:
            return float("nan")  # no quotes: nothing to regress
        return float(np.max(np.abs(trait_coefficients(xtx[idx].sum(axis=0), xty[idx].sum(axis=0)))))

    est[("trait_price_coefficient", "all")] = Estimator(everyone, max_coef)

    differs = bought & plain & (np.abs(rel - 1.0) > tol)
    n_diff = _count_by_user(u[differs], n)
    n_buy = _count_by_user(u[bought], n)
    est[("undisclosed_difference_share", "all")] = Estimator(
        everyone, lambda idx: float(n_diff[idx].sum() / n_buy[idx].sum()) if n_buy[idx].sum() else float("nan")
    )

    over = _sum_by_user(u[bought], (price - shadow)[bought], n) / months
    cs_t = _sum_by_user(u, q["surplus"], n) / months
    cs_c = _sum_by_user(qc["user_idx"].astype(np.int64), qc["surplus"], n) / months
    spend_t = t.market.month_spend.sum(axis=0, dtype=np.float64)
    spend_c = c.market.month_spend.sum(axis=0, dtype=np.float64)
    budget = t.market.budget_month.astype(np.float64) * months
    over_budget = (spend_t > budget).astype(np.float64) - (spend_c > budget).astype(np.float64)

    def mean_of(v):
        return lambda idx: float(np.mean(v[idx])) if idx.size else float("nan")

    for name in ("all", "adult", "minor", "elderly"):
        mk = masks[name]
        est[("overcharge_per_user_month", name)] = Estimator(mk, mean_of(over))
        est[("consumer_surplus_change", name)] = Estimator(mk, mean_of(cs_t - cs_c))
        est[("over_budget_share_increase", name)] = Estimator(mk, mean_of(over_budget))
        est[("spend_uplift", name)] = Estimator(
            mk, lambda idx: _relative_change(spend_t[idx].sum(), spend_c[idx].sum())
        )

    # Art. 18: minors' payments against the caps for their age
    pay_cap, month_cap = catalogue.payment_caps(t.age)
    minor_buy = bought & (q["cohort"] == 1)
    over_pay = minor_buy & (price > pay_cap[u] + 1e-6)
    n_over = _count_by_user(u[over_pay], n)
    n_minor_buy = _count_by_user(u[minor_buy], n)
    est[("payments_over_cap_share", "minor")] = Estimator(
        masks["minor"], lambda idx: float(n_over[idx].sum() / n_minor_buy[idx].sum()) if n_minor_buy[idx].sum() else 0.0
    )
    months_over = (t.market.month_platform_spend.astype(np.float64) > month_cap[None, :] + 1e-6).mean(axis=0)
    est[("months_over_cap_share", "minor")] = Estimator(masks["minor"], mean_of(months_over))

    # Art. 19: fraud offers and losses, elderly against adults
    fraud = q["fraud"].astype(bool)
    n_offers = _sum_by_user(u, np.ones(u.size), n)
    n_fraud = _count_by_user(u[fraud], n)
    adult, elderly = masks["adult"], masks["elderly"]

    adult_idx = np.flatnonzero(adult)

    def exposure_ratio(idx):
        # idx: elderly users (the scope, resampled by the bootstrap); adults are the fixed reference
        a, e = adult_idx, idx
        if n_offers[a].sum() == 0 or n_offers[e].sum() == 0 or n_fraud[a].sum() == 0:
            return float("nan")
        return float((n_fraud[e].sum() / n_offers[e].sum()) / (n_fraud[a].sum() / n_offers[a].sum()))

    est[("fraud_exposure_ratio", "elderly")] = Estimator(
        elderly, exposure_ratio, "" if adult.sum() >= 30 else "too few adults to compare with (fewer than 30)"
    )
    loss = _sum_by_user(u[bought & fraud], price[bought & fraud], n) / months
    for name in ("adult", "elderly"):
        est[("fraud_loss_per_user_month", name)] = Estimator(masks[name], mean_of(loss))
    return est

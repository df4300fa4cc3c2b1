"""Audit metrics of the consumer market (Art. 8 spending, 18 minors' payments, 19 fraud, 21 pricing).

Every statistic is a function of a set of user indices (possibly with
repeats, for the bootstrap), built from the per-user sums of the quotes the
run folds as it goes (:class:`sim.market.summary.QuoteSummary`), so the
market's findings share the interval code of the feed's and need no quote
log. Prices are compared with the *shadow price*: the reference (uniform)
pricer's quote for the same product, to the same user, at the same time, which the world records
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
from audits.statistics import mean_of, ratio_of_sums
from sim.market.state import DAYS_PER_MONTH
from sim.record import RunRecord

__all__ = [
    "MARKET_METRICS",
    "PRICER_CF_METRICS",
    "TRAITS",
    "check_definitions",
    "market_definitions",
    "market_estimators",
    "minor_payments_over_cap",
    "trait_coefficients",
]

MARKET_METRICS = (
    "loyal_new_price_ratio", "device_price_ratio", "trait_price_coefficient", "undisclosed_difference_share",
    "overcharge_per_user_month", "consumer_surplus_change", "over_budget_share_increase", "spend_uplift",
    "payments_over_cap_share", "months_over_cap_share", "fraud_exposure_ratio", "fraud_loss_per_user_month",
)  # fmt: skip

# compared with the pricer-only counterfactual (same recommender, reference pricer)
PRICER_CF_METRICS = frozenset({"consumer_surplus_change"})

TRAITS = ("loyalty", "new_customer", "ios", "minor", "elderly", "log_income")


def _ratio(num_a, den_a, num_b, den_b):
    """Statistic (sum num_a / sum den_a) / (sum num_b / sum den_b) over user indices."""

    def stat(idx):
        da, db = den_a[idx].sum(), den_b[idx].sum()
        if da == 0 or db == 0:
            return float("nan")
        return float((num_a[idx].sum() / da) / (num_b[idx].sum() / db))

    return stat


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
    check_definitions(catalogue, t, c, cp)
    months = t.n_days / DAYS_PER_MONTH
    qs, qs_p = t.market.summary, cp.market.summary

    def per_user(name):
        return qs[name].astype(np.float64)

    est = {}
    everyone = masks["all"]
    est[("loyal_new_price_ratio", "all")] = Estimator(
        everyone, _ratio(qs["rel_loyal"], qs["n_loyal"], qs["rel_new"], qs["n_new"])
    )
    ios_mask = t.market.device == 1
    rel_plain, n_plain = per_user("rel_plain"), per_user("n_plain")
    est[("device_price_ratio", "all")] = Estimator(
        everyone, _ratio(rel_plain * ios_mask, n_plain * ios_mask, rel_plain * ~ios_mask, n_plain * ~ios_mask)
    )

    # regression of log(price / shadow) on non-cost traits, from per-user sums of the normal equations
    log_income = np.log(t.market.income_month.astype(np.float64))
    z_income = (log_income - log_income.mean()) / max(log_income.std(), 1e-12)
    device, cohort = t.market.device.astype(np.int64), t.cohort.astype(np.int64)

    def max_coef(idx):
        if idx.size == 0 or qs["n_plain"][idx].sum() == 0:
            return float("nan")  # no quotes: nothing to regress
        xtx, xty = qs.normal_equations(idx, device, cohort, z_income)
        return float(np.max(np.abs(trait_coefficients(xtx, xty))))

    est[("trait_price_coefficient", "all")] = Estimator(everyone, max_coef)

    n_diff, n_buy = per_user("n_differs"), per_user("n_bought")
    est[("undisclosed_difference_share", "all")] = Estimator(everyone, ratio_of_sums(n_diff, n_buy))

    over = qs["overcharge"] / months
    cs_t = qs["surplus"] / months
    cs_c = qs_p["surplus"] / months
    spend_t = t.market.month_spend.sum(axis=0, dtype=np.float64)
    spend_c = c.market.month_spend.sum(axis=0, dtype=np.float64)
    budget = t.market.budget_month.astype(np.float64) * months
    over_budget = (spend_t > budget).astype(np.float64) - (spend_c > budget).astype(np.float64)

    for name in ("all", "adult", "minor", "elderly"):
        mk = masks[name]
        est[("overcharge_per_user_month", name)] = Estimator(mk, mean_of(over))
        est[("consumer_surplus_change", name)] = Estimator(mk, mean_of(cs_t - cs_c))
        est[("over_budget_share_increase", name)] = Estimator(mk, mean_of(over_budget))
        est[("spend_uplift", name)] = Estimator(
            mk, lambda idx: _relative_change(spend_t[idx].sum(), spend_c[idx].sum())
        )

    # Art. 18: minors' payments against the caps for their age
    n_over, n_minor_buy = minor_payments_over_cap(t, catalogue)
    est[("payments_over_cap_share", "minor")] = Estimator(masks["minor"], ratio_of_sums(n_over, n_minor_buy, empty=0.0))
    _, month_cap = catalogue.payment_caps(t.age)
    months_over = (t.market.month_platform_spend.astype(np.float64) > month_cap[None, :] + 1e-6).mean(axis=0)
    est[("months_over_cap_share", "minor")] = Estimator(masks["minor"], mean_of(months_over))

    # Art. 19: fraud offers and losses, elderly against adults
    n_offers, n_fraud = per_user("n_quotes"), per_user("n_fraud")
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
    loss = qs["fraud_loss"] / months
    for name in ("adult", "elderly"):
        est[("fraud_loss_per_user_month", name)] = Estimator(masks[name], mean_of(loss))
    return est


def minor_payments_over_cap(rec: RunRecord, catalogue: Catalogue) -> tuple[np.ndarray, np.ndarray]:
    """Minors' platform payments above the per-payment cap for their age, and all of them, per user.

    Returns
    -------
    n_over, n_paid : float64 (n_users,)
    """
    pay = rec.market.summary.minor_payments
    u = pay["user_idx"].astype(np.int64)
    pay_cap, _ = catalogue.payment_caps(rec.age)
    over = pay["price"] > pay_cap[u] + 1e-6
    n = rec.n_users
    return np.bincount(u[over], minlength=n).astype(np.float64), np.bincount(u, minlength=n).astype(np.float64)


def check_definitions(catalogue: Catalogue, *records: RunRecord) -> None:
    """Raise ValueError if a record's quote summary was folded with other definitions than the catalogue's."""
    want = market_definitions(catalogue)
    for rec in records:
        got = rec.market.summary.definitions
        if got != want:
            raise ValueError(
                f"the run's quotes were summarised with {got}, the catalogue defines {want}; fix: simulate with "
                "market_definitions=market_definitions(catalogue) (audits.market_metrics)"
            )


def market_definitions(catalogue: Catalogue) -> dict:
    """Return the catalogue's definitions a market run folds its quotes with (``FeedWorld(market_definitions=...)``)."""
    return {k: float(catalogue.definitions[k]) for k in ("loyal_min_purchases", "price_tolerance")}

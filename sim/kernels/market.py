"""The market's kernels: shopping occasions, offer values and purchase decisions.

Same guarantees as :mod:`sim.kernels.feed`: ``njit(parallel=True, cache=True)``
loops in which each iteration writes only its own user's (or occasion's)
entries, every random number keyed on (key, tick, user, purpose), so results
are bitwise identical for any number of threads. A user has at most one
occasion per tick, so the per-user updates of ``purchase_step`` never race.
The plain twins are in :mod:`sim.kernels.reference_market`.

The purchase model (per occasion of user ``u`` offered product ``p`` at price ``x``):

- value: ``v = value_ratio * list_p * income_factor_u * exp(taste_weight * <interest_u, emb_p> + wtp_sigma * z)``
  with ``z`` a standard normal draw; minors value in-app goods ``1 + minor_in_app_appeal``
  times more. A fraudulent product looks ``1 + fraud_appeal * susceptibility_u`` times
  more valuable than ``v`` and delivers nothing.
- comparison: with probability ``search_base_u * exp(-purchases_stock_u / loyalty_scale)``
  the user checks the outside price ``list_p * (1 + outside_markup)`` (legitimate
  products only) and, if it is lower than ``x``, decides on the outside offer instead.
- decision: buy with probability ``1 / (1 + exp(-s_u * (w - x - b) / list_p))``, ``w`` the
  perceived value, ``s_u`` the price sensitivity and ``b`` the budget penalty
  ``over_budget_weight * self_control_u * excess``, where ``excess`` is the part
  of the price past the user's budget to date.
- payment: a platform payment above the user's per-payment cap, or one that
  would take the month's platform spend past the monthly cap, is refused.

Public objects
--------------
shop_occasions, offer_candidates, offer_values, wtp_estimates, purchase_step
OUTCOME_NONE, OUTCOME_PLATFORM, OUTCOME_OUTSIDE
    Codes of ``purchase_step``'s ``outcome``.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from sim.rng import Purpose, normal, uniform

__all__ = [
    "OUTCOME_NONE",
    "OUTCOME_OUTSIDE",
    "OUTCOME_PLATFORM",
    "offer_candidates",
    "offer_values",
    "purchase_step",
    "shop_occasions",
    "wtp_estimates",
]

OUTCOME_NONE = 0
OUTCOME_PLATFORM = 1
OUTCOME_OUTSIDE = 2

_P_SHOP = Purpose.SHOP
_P_OFFER = Purpose.OFFER_CANDIDATES
_P_WTP = Purpose.WTP
_P_WTP2 = Purpose.WTP_PAIR
_P_COMPARE = Purpose.COMPARE
_P_BUY = Purpose.BUY
_P_WTP_HAT = Purpose.WTP_HAT
_P_WTP_HAT2 = Purpose.WTP_HAT_PAIR


@nb.njit(parallel=True, cache=True)
def shop_occasions(key, tick, hour, cohort, night_owl_mask, profiles, store_rate, offer_rate, feed_minutes, out_mask):
    """Decide which users have a shopping occasion this tick.

    Parameters
    ----------
    key, tick : int
    hour : int
        Hour of day of the tick.
    cohort : int8 (n_users,)
    night_owl_mask : bool (n_users,)
    profiles : float32 (3, 2, 24)
        Activity profiles (mean 1 over the day).
    store_rate : float
        Store visits per tick at profile weight 1.
    offer_rate : float
        Sponsored offers per feed minute.
    feed_minutes : float32 (n_users,)
        Minutes each user scrolled this tick.
    out_mask : bool (n_users,)
        Output: has an occasion, with probability ``1 - exp(-rate)``.
    """
    n = cohort.shape[0]
    for u in nb.prange(n):
        rate = store_rate * profiles[cohort[u], np.int64(night_owl_mask[u]), hour] + offer_rate * feed_minutes[u]
        out_mask[u] = uniform(key, tick, u, _P_SHOP) < 1.0 - math.exp(-rate)


@nb.njit(parallel=True, cache=True)
def offer_candidates(key, tick, occ_user, n_products, out):
    """Draw ``out.shape[1]`` candidate products (uniform, with replacement) per occasion.

    Parameters
    ----------
    occ_user : int64 (n_occ,)
    n_products : int
    out : int32 (n_occ, K)
        Output: product indices.
    """
    n_occ, k = out.shape
    for i in nb.prange(n_occ):
        u = occ_user[i]
        for j in range(k):
            out[i, j] = np.int32(uniform(key, tick * k + j, u, _P_OFFER) * n_products)


@nb.njit(parallel=True, cache=True)
def offer_values(occ_user, occ_product, interest, income_factor, cohort, emb, list_price, in_app_mask, params, out):
    """Mean value of each offer to its user (yuan), before the occasion's taste shock.

    Parameters
    ----------
    occ_user : int64 (n_occ,)
    occ_product : int32 (n_occ,)
    interest : float32 (n_users, D)
        True interests.
    income_factor : float32 (n_users,)
    cohort : int8 (n_users,)
    emb : float32 (n_products, D)
    list_price : float32 (n_products,)
    in_app_mask : bool (n_products,)
    params : float64 (N_MARKET_PARAMS,)
        See :data:`sim.market.world.PARAM_NAMES`.
    out : float64 (n_occ,)
        ``value_ratio * list_p * income_factor_u * exp(taste_weight * <interest_u, emb_p>)``, times
        ``1 + minor_in_app_appeal`` for a minor offered an in-app good.
    """
    value_ratio, taste_weight, in_app_appeal = params[0], params[2], params[6]
    d = emb.shape[1]
    for i in nb.prange(occ_user.shape[0]):
        u, p = occ_user[i], occ_product[i]
        dot = 0.0
        for k in range(d):
            dot += np.float64(interest[u, k]) * np.float64(emb[p, k])  # float64 (numba's float() keeps float32)
        v = value_ratio * float(list_price[p]) * float(income_factor[u]) * math.exp(taste_weight * dot)
        if in_app_mask[p] and cohort[u] == 1:
            v *= 1.0 + in_app_appeal
        out[i] = v


@nb.njit(parallel=True, cache=True)
def purchase_step(
    key, tick, occ_user, occ_product, price, value_mean, month_progress, params,
    list_price, fraud_mask, price_sensitivity, search_base, fraud_susceptibility, self_control,
    budget_month, payment_cap, monthly_cap,
    purchases_stock, lifetime_purchases, spend_month, platform_spend_month,
    out_outcome, out_compared, out_blocked, out_paid, out_value, out_surplus,
):  # fmt: skip
    """Decide every occasion's purchase and update the buyers' money and loyalty.

    Parameters
    ----------
    key, tick : int
    occ_user : int64 (n_occ,)
        Users with an occasion (each at most once).
    occ_product : int32 (n_occ,)
    price : float32 (n_occ,)
        The platform's quotes (yuan).
    value_mean : float64 (n_occ,)
        From :func:`offer_values`.
    month_progress : float
        Share of the budgeting month elapsed at the end of today, in (0, 1].
    params : float64 (N_MARKET_PARAMS,)
        :data:`sim.market.world.PARAM_NAMES`: ``value_ratio, wtp_sigma, taste_weight,
        fraud_appeal, loyalty_scale, over_budget_weight, minor_in_app_appeal, outside_markup``.
    list_price : float32 (n_products,)
    fraud_mask : bool (n_products,)
        True fraud labels.
    price_sensitivity, search_base, fraud_susceptibility, self_control, budget_month : float32 (n_users,)
    payment_cap, monthly_cap : float32 (n_users,)
    purchases_stock : float32 (n_users,)
        Updated: +1 per platform purchase.
    lifetime_purchases : int32 (n_users,)
        Updated.
    spend_month, platform_spend_month : float32 (n_users,)
        Updated with what the user paid (yuan).
    out_outcome : int8 (n_occ,)
        OUTCOME_NONE, OUTCOME_PLATFORM or OUTCOME_OUTSIDE.
    out_compared, out_blocked : bool (n_occ,)
        Compared prices; a platform purchase refused by a payment cap.
    out_paid : float32 (n_occ,)
        Yuan paid (to the platform or outside).
    out_value : float64 (n_occ,)
        Value the user would get from the product (0 for fraud), yuan.
    out_surplus : float64 (n_occ,)
        Realised consumer surplus: value received minus price paid (0 if nothing bought).
    """
    wtp_sigma, fraud_appeal, loyalty_scale = params[1], params[3], params[4]
    over_budget_weight, outside_markup = params[5], params[7]
    for i in nb.prange(occ_user.shape[0]):
        u, p = occ_user[i], occ_product[i]
        lp = float(list_price[p])
        x = np.float64(price[i])
        z = normal(key, tick, u, _P_WTP, _P_WTP2)
        value = value_mean[i] * math.exp(wtp_sigma * z)
        fraud = fraud_mask[p]
        perceived = value * (1.0 + fraud_appeal * float(fraud_susceptibility[u])) if fraud else value
        delivered = 0.0 if fraud else value
        p_compare = float(search_base[u]) * math.exp(-float(purchases_stock[u]) / loyalty_scale)
        compared = uniform(key, tick, u, _P_COMPARE) < p_compare
        outside = lp * (1.0 + outside_markup)
        go_outside = compared and (not fraud) and outside < x
        offer = outside if go_outside else x
        budget_to_date = float(budget_month[u]) * month_progress
        excess = min(max(float(spend_month[u]) + offer - budget_to_date, 0.0), offer)
        penalty = over_budget_weight * float(self_control[u]) * excess
        v = float(price_sensitivity[u]) * (perceived - offer - penalty) / lp
        buy = uniform(key, tick, u, _P_BUY) < 1.0 / (1.0 + math.exp(-v))
        blocked = False
        outcome = OUTCOME_NONE
        paid = 0.0
        if buy and go_outside:
            outcome = OUTCOME_OUTSIDE
            paid = np.float64(np.float32(offer))  # amounts are recorded in float32: pay what is recorded
        elif buy:
            if x > np.float64(payment_cap[u]) or np.float64(platform_spend_month[u]) + x > np.float64(monthly_cap[u]):
                blocked = True
            else:
                outcome = OUTCOME_PLATFORM
                paid = x
        if outcome != OUTCOME_NONE:
            spend_month[u] = np.float32(float(spend_month[u]) + paid)
        if outcome == OUTCOME_PLATFORM:
            platform_spend_month[u] = np.float32(float(platform_spend_month[u]) + paid)
            purchases_stock[u] = np.float32(float(purchases_stock[u]) + 1.0)
            lifetime_purchases[u] += 1
        out_outcome[i] = outcome
        out_compared[i] = compared
        out_blocked[i] = blocked
        out_paid[i] = np.float32(paid)
        out_value[i] = delivered
        out_surplus[i] = (delivered - paid) if outcome != OUTCOME_NONE else 0.0


@nb.njit(parallel=True, cache=True)
def wtp_estimates(key, tick, occ_user, value_mean, error_sigma, out):
    """Estimate (as the platform) each offer's willingness to pay (yuan).

    ``value_mean * exp(error_sigma * z - error_sigma**2 / 2)``: a log-normal error of
    scale ``error_sigma`` with mean 1 around the offer's median value (``value_mean``; the
    occasion's own taste shock is not in it), standing for what the platform learns from its data.

    Parameters
    ----------
    occ_user : int64 (n_occ,)
    value_mean : float64 (n_occ,)
    error_sigma : float
    out : float64 (n_occ,)
    """
    for i in nb.prange(occ_user.shape[0]):
        z = normal(key, tick, occ_user[i], _P_WTP_HAT, _P_WTP_HAT2)
        out[i] = value_mean[i] * math.exp(error_sigma * z - 0.5 * error_sigma * error_sigma)

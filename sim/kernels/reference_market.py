"""Plain NumPy/Python twins of the market kernels, for tests and for reading.

Each twin has the signature of its kernel in :mod:`sim.kernels.market` and the
same in-place semantics, and draws its random numbers from
:func:`sim.rng.uniform_np` and :func:`sim.rng.normal_np` (the vectorised twins
of :func:`sim.rng.uniform` and :func:`sim.rng.normal`) with the same (key,
tick, agent, purpose) counters, so a twin sees exactly the random numbers its
kernel sees. The arithmetic is a plain loop over occasions (or users) with
:mod:`math`, in the kernel's order of operations, so the outputs are bitwise
equal to the kernels'. The twins are written for clarity, not speed: they are
meant for a few thousand rows.

Arithmetic follows numba's typing rules (see :mod:`sim.kernels.reference`):
``float32 op float64`` is computed in float64 and ``float32 op float32`` in
float32. Note that in numba ``float(x)`` of a float32 ``x`` stays float32 (it
does not widen to float64 as in Python), so a kernel's
``float(a[i]) * float(b[j])`` of two float32 arrays is a float32 product.
The market kernels therefore widen with ``np.float64(x)``, and the twins
compute in Python floats (float64), rounding to float32 where a kernel stores
into a float32 array. ``math.exp`` raises on overflow where a kernel returns ``inf``; the
twins return ``inf`` too (a purchase logit far below zero).

Public objects
--------------
shop_occasions
    Twin of :func:`sim.kernels.market.shop_occasions`.
offer_candidates
    Twin of :func:`sim.kernels.market.offer_candidates`.
offer_values
    Twin of :func:`sim.kernels.market.offer_values`.
wtp_estimates
    Twin of :func:`sim.kernels.market.wtp_estimates`.
purchase_step
    Twin of :func:`sim.kernels.market.purchase_step`.
OUTCOME_NONE, OUTCOME_PLATFORM, OUTCOME_OUTSIDE
    Codes of ``purchase_step``'s ``outcome`` (the kernel module's).
"""

from __future__ import annotations

import math

import numpy as np

from sim.kernels.market import OUTCOME_NONE, OUTCOME_OUTSIDE, OUTCOME_PLATFORM
from sim.rng import Purpose, normal_np, uniform_np

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

_F32 = np.float32


def _exp(x: float) -> float:
    """``math.exp`` with the kernels' overflow behaviour (``inf`` instead of OverflowError)."""
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


def _users(occ_user) -> np.ndarray:
    return np.asarray(occ_user, dtype=np.int64)


def shop_occasions(key, tick, hour, cohort, night_owl_mask, profiles, store_rate, offer_rate, feed_minutes, out_mask):
    """Twin of :func:`sim.kernels.market.shop_occasions`: fill ``out_mask`` (n_users,).

    User ``u`` has an occasion when its SHOP uniform is below ``1 - exp(-rate)``,
    ``rate = store_rate * profiles[cohort_u, owl_u, hour] + offer_rate * feed_minutes_u``
    (float32 inputs widened to float64).
    """
    n = cohort.shape[0]
    draw = uniform_np(key, tick, np.arange(n, dtype=np.int64), Purpose.SHOP)
    for u in range(n):
        owl = 1 if night_owl_mask[u] else 0
        rate = float(store_rate) * float(profiles[cohort[u], owl, hour]) + float(offer_rate) * float(feed_minutes[u])
        out_mask[u] = float(draw[u]) < 1.0 - _exp(-rate)


def offer_candidates(key, tick, occ_user, n_products, out):
    """Twin of :func:`sim.kernels.market.offer_candidates`: fill ``out`` (n_occ, K), int32.

    Candidate ``j`` of occasion ``i`` is ``int(U * n_products)``, ``U`` the uniform keyed
    on (key, ``tick * K + j``, user, OFFER_CANDIDATES).
    """
    n_occ, k = out.shape
    users = _users(occ_user)
    slots = int(tick) * k + np.arange(k, dtype=np.int64)
    draw = uniform_np(key, slots[None, :], users[:, None], Purpose.OFFER_CANDIDATES)
    for i in range(n_occ):
        for j in range(k):
            out[i, j] = int(float(draw[i, j]) * n_products)  # truncation, as np.int32(float)


def offer_values(occ_user, occ_product, interest, income_factor, cohort, emb, list_price, in_app_mask, params, out):
    """Twin of :func:`sim.kernels.market.offer_values`: fill ``out`` (n_occ,), float64.

    ``value_ratio * list_p * income_factor_u * exp(taste_weight * <interest_u, emb_p>)``, the
    dot product summed in float64 in coordinate order, times ``1 + minor_in_app_appeal`` for a minor
    (cohort 1) offered an in-app good.
    """
    value_ratio, taste_weight, in_app_appeal = float(params[0]), float(params[2]), float(params[6])
    d = emb.shape[1]
    for i in range(len(occ_user)):
        u, p = int(occ_user[i]), int(occ_product[i])
        dot = 0.0
        for k in range(d):
            dot += float(interest[u, k]) * float(emb[p, k])  # float64 products and sum, as in the kernel
        v = value_ratio * float(list_price[p]) * float(income_factor[u]) * _exp(taste_weight * dot)
        if in_app_mask[p] and cohort[u] == 1:
            v *= 1.0 + in_app_appeal
        out[i] = v


def wtp_estimates(key, tick, occ_user, value_mean, error_sigma, out):
    """Twin of :func:`sim.kernels.market.wtp_estimates`: fill ``out`` (n_occ,), float64.

    ``value_mean * exp(error_sigma * z - error_sigma**2 / 2)``, ``z`` the normal keyed on
    (key, tick, user, WTP_HAT / WTP_HAT_PAIR).
    """
    users = _users(occ_user)
    z = normal_np(key, tick, users, Purpose.WTP_HAT, Purpose.WTP_HAT_PAIR)
    s = float(error_sigma)
    for i in range(users.shape[0]):
        out[i] = float(value_mean[i]) * _exp(s * float(z[i]) - 0.5 * s * s)


def purchase_step(
    key, tick, occ_user, occ_product, price, value_mean, month_progress, params,
    list_price, fraud_mask, price_sensitivity, search_base, fraud_susceptibility, self_control,
    budget_month, payment_cap, monthly_cap,
    purchases_stock, lifetime_purchases, spend_month, platform_spend_month,
    out_outcome, out_compared, out_blocked, out_paid, out_value, out_surplus,
):  # fmt: skip
    """Twin of :func:`sim.kernels.market.purchase_step` (same arguments, same in-place updates).

    For each occasion, in order: the taste shock, the perceived and delivered value
    (fraud looks ``1 + fraud_appeal * susceptibility`` times better and delivers
    nothing), the price comparison (outside price ``list * (1 + outside_markup)``, taken
    when lower than the quote), the budget penalty, the logit purchase decision, the
    payment caps, and the updates of the buyer's spend and loyalty.
    """
    wtp_sigma, fraud_appeal, loyalty_scale = float(params[1]), float(params[3]), float(params[4])
    over_budget_weight, outside_markup = float(params[5]), float(params[7])
    progress = float(month_progress)
    users = _users(occ_user)
    z_all = normal_np(key, tick, users, Purpose.WTP, Purpose.WTP_PAIR)
    u_compare = uniform_np(key, tick, users, Purpose.COMPARE)
    u_buy = uniform_np(key, tick, users, Purpose.BUY)
    for i in range(users.shape[0]):
        u, p = int(users[i]), int(occ_product[i])
        lp = float(list_price[p])
        x = float(price[i])
        value = float(value_mean[i]) * _exp(wtp_sigma * float(z_all[i]))
        fraud = bool(fraud_mask[p])
        perceived = value * (1.0 + fraud_appeal * float(fraud_susceptibility[u])) if fraud else value
        delivered = 0.0 if fraud else value
        p_compare = float(search_base[u]) * _exp(-float(purchases_stock[u]) / loyalty_scale)
        compared = float(u_compare[i]) < p_compare
        outside = lp * (1.0 + outside_markup)
        go_outside = compared and (not fraud) and outside < x
        offer = outside if go_outside else x
        budget_to_date = float(budget_month[u]) * progress
        excess = min(max(float(spend_month[u]) + offer - budget_to_date, 0.0), offer)
        penalty = over_budget_weight * float(self_control[u]) * excess
        v = float(price_sensitivity[u]) * (perceived - offer - penalty) / lp
        buy = float(u_buy[i]) < 1.0 / (1.0 + _exp(-v))

        blocked = False
        outcome = OUTCOME_NONE
        paid = 0.0
        if buy and go_outside:
            outcome = OUTCOME_OUTSIDE
            paid = float(_F32(offer))  # recorded in float32, as in the kernel
        elif buy:
            month_total = float(platform_spend_month[u]) + x  # float64, as in the kernel
            if x > float(payment_cap[u]) or month_total > float(monthly_cap[u]):
                blocked = True
            else:
                outcome = OUTCOME_PLATFORM
                paid = x
        if outcome != OUTCOME_NONE:
            spend_month[u] = _F32(float(spend_month[u]) + paid)
        if outcome == OUTCOME_PLATFORM:
            platform_spend_month[u] = _F32(float(platform_spend_month[u]) + paid)
            purchases_stock[u] = _F32(float(purchases_stock[u]) + 1.0)
            lifetime_purchases[u] += 1
        out_outcome[i] = outcome
        out_compared[i] = compared
        out_blocked[i] = blocked
        out_paid[i] = _F32(paid)
        out_value[i] = delivered
        out_surplus[i] = (delivered - paid) if outcome != OUTCOME_NONE else 0.0

"""The market against textbook closed forms: logit demand, third- and first-degree price discrimination.

``purchase_step`` is run directly on synthetic batches (one product, distinct users in
one tick), with comparison shopping, budgets and payment caps switched off, so that
the purchase decision is the bare logit ``P(buy) = 1 / (1 + exp(-s (w - x) / list))``.

- Demand: with a fixed value and several prices, the buy share at each price is the
  logit, within 4 binomial standard errors.
- Price discrimination: with a very large price sensitivity the logit becomes the
  textbook threshold rule "buy iff willingness to pay >= price", and the built-in
  :class:`~sim.builtin.pricers.PersonalisedPricer` must reproduce the closed forms of
  monopoly pricing under linear demand (willingness to pay uniform on [0, a_s]).

Sampling design of the discrimination tests: each segment's willingness to pay is a
*jittered stratified* sample, one uniform draw in each of the N equal bins of [0, a_s]
(bins shuffled across users). Each draw is U[0, a_s], and the empirical survival
function is within 1/N of the true one at every price, so the sampling error of every
statistic below is bounded deterministically. The remaining error is the pricer's
price grid. The tolerances are derived from both in :func:`_price_tolerance` and
:func:`_tolerances`.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import expit

from sim.builtin.pricers import PersonalisedPricer
from sim.kernels import market as K
from sim.market.view import MarketView
from sim.market.world import PARAM_NAMES
from sim.rng import root_key

Z = 4.0  # binomial standard errors allowed for shares
KEY = root_key(31)

A = np.array([10.0, 16.0, 24.0])  # segment s: willingness to pay uniform on [0, A[s]]
N = 100_000  # users per segment
C = 2.0  # unit cost (yuan)
LP = 4.0  # list price: the pricer's grid spans 0.02-6 times it, so 6 * LP must exceed the prices
SENSITIVITY = 1e9  # logit slope: buy iff w > x, except within 40 * LP / 1e9 = 1.6e-7 yuan of the price
H = LP * float(PersonalisedPricer.GRID[1] - PersonalisedPricer.GRID[0])  # price grid step (yuan), ~0.04


def _params(**kw) -> np.ndarray:
    base = dict(value_ratio=1.0, wtp_sigma=0.0, taste_weight=0.0, fraud_appeal=0.0, loyalty_scale=1.0,
                over_budget_weight=0.0, minor_in_app_appeal=0.0, outside_markup=0.0)  # fmt: skip
    base.update(kw)
    return np.array([base[name] for name in PARAM_NAMES], dtype=np.float64)


def _buy(price, value, list_price: float, sensitivity: float, tick: int = 0) -> dict:
    """One tick of ``purchase_step``: users 0..n-1, one legitimate product, no comparison, budget or caps."""
    price = np.asarray(price, dtype=np.float32)
    n = price.size
    f32 = np.float32

    def per_user(x, dtype=np.float32):
        return np.full(n, x, dtype=dtype)

    out = dict(
        outcome=np.empty(n, dtype=np.int8),
        compared=np.empty(n, dtype=np.bool_),
        blocked=np.empty(n, dtype=np.bool_),
        paid=np.empty(n, dtype=np.float32),
        value=np.empty(n, dtype=np.float64),
        surplus=np.empty(n, dtype=np.float64),
    )
    K.purchase_step(
        KEY, tick, np.arange(n, dtype=np.int64), np.zeros(n, dtype=np.int32), price,
        np.asarray(value, dtype=np.float64), 1.0, _params(),
        np.array([list_price], dtype=f32), np.zeros(1, dtype=np.bool_), per_user(sensitivity), per_user(0.0),
        per_user(0.0), per_user(0.0), per_user(np.inf), per_user(np.inf), per_user(np.inf),
        per_user(0.0), per_user(0, np.int32), per_user(0.0), per_user(0.0),
        out["outcome"], out["compared"], out["blocked"], out["paid"], out["value"], out["surplus"],
    )  # fmt: skip
    assert not out["compared"].any() and not out["blocked"].any()
    assert not (out["outcome"] == K.OUTCOME_OUTSIDE).any()
    out["bought"] = out["outcome"] == K.OUTCOME_PLATFORM
    return out


# -- demand -----------------------------------------------------------------------------------


def test_demand_responds_to_price_as_the_logit_says():
    value, list_price, s = 10.0, 10.0, 4.0
    levels = np.array([5.0, 7.5, 10.0, 12.5, 15.0, 20.0], dtype=np.float32)
    n_each = 200_000 // levels.size
    price = np.repeat(levels, n_each)
    out = _buy(price, np.full(price.size, value), list_price, s)
    shares = []
    for x in levels:
        sel = price == x
        p = 1.0 / (1.0 + math.exp(-s * (value - float(x)) / list_price))
        share = float(out["bought"][sel].mean())
        se = math.sqrt(p * (1.0 - p) / sel.sum())
        assert abs(share - p) < Z * se, (float(x), share, p, se)
        shares.append(share)
    assert np.all(np.diff(shares) < 0)  # demand slopes down
    # what buyers pay and keep: the quote, and value minus the quote
    b = out["bought"]
    assert (out["paid"][b] == price[b]).all()
    assert np.allclose(out["surplus"][b], value - price[b].astype(np.float64), rtol=0, atol=1e-12)


# -- price discrimination: set-up and closed forms --------------------------------------------


@pytest.fixture(scope="module")
def population():
    """Segments 0, 1, 2 (as cohorts), N users each, jittered stratified willingness to pay."""
    rng = np.random.default_rng(2021)
    seg = np.repeat(np.arange(A.size), N)
    wtp = np.empty(seg.size)
    for s, a in enumerate(A):
        wtp[seg == s] = a * (rng.permutation(N) + rng.random(N)) / N
    view = MarketView(
        tick=0, day=0, hour=0, key=0, n_users=seg.size, n_products=1,
        product_cost=np.array([C], dtype=np.float32), product_list_price=np.array([LP], dtype=np.float32),
        user_cohort=seg.astype(np.int8), quote_wtp_hat=wtp,
    )  # fmt: skip
    return seg, wtp, view


def _quote(pricer, view, n):
    return pricer.quote(np.arange(n, dtype=np.int64), np.zeros(n, dtype=np.int32), view)


def _realised(seg, wtp, price) -> dict:
    """Quantity, profit, consumer surplus and welfare per segment, from the kernel's decisions."""
    out = _buy(price, wtp, LP, SENSITIVITY)
    b = out["bought"]
    stats = {"q": [], "profit": [], "cs": [], "price": []}
    for s in range(A.size):
        sel = seg == s
        bs = b & sel
        stats["price"].append(float(np.unique(price[sel])[0]) if np.unique(price[sel]).size == 1 else np.nan)
        stats["q"].append(float(bs.sum()))
        stats["profit"].append(float((out["paid"][bs].astype(np.float64) - C).sum()))
        stats["cs"].append(float(out["surplus"][bs].sum()))
        assert np.allclose(out["surplus"][bs], wtp[bs] - price[bs].astype(np.float64), rtol=0, atol=1e-9)
    stats = {k: np.array(v) for k, v in stats.items()}
    stats["tw"] = stats["profit"] + stats["cs"]
    return stats


def _closed(a, n, p) -> dict:
    """Linear demand ``q = n (1 - p / a)`` at price p (p <= a): quantity, profit, consumer surplus, welfare."""
    q = n * (1.0 - p / a)
    profit = (p - C) * q
    cs = n * (a - p) ** 2 / (2.0 * a)
    return dict(q=q, profit=profit, cs=cs, tw=profit + cs)


def _price_tolerance(curvature: float, err: float, p_star: float) -> float:
    """Bound on |chosen price - optimal price| for the pricer's grid search on a stratified sample.

    Per user, true profit is ``pi(p) = pi* - curvature * (p - p*)**2`` near the optimum, the
    empirical profit the pricer maximises differs from it by at most ``err`` (share error
    times margin), and some grid point lies within H / 2 of p*. The chosen grid point p^
    beats that one empirically, so ``pi(p^) >= pi* - curvature * H**2 / 4 - 2 err``, i.e.
    ``|p^ - p*| <= sqrt(H**2 / 4 + 2 err / curvature)``. The quote is then rounded to float32
    (relative 2**-24; 2**-23 p* covers it).
    """
    return math.sqrt(H**2 / 4.0 + 2.0 * err / curvature) + 2.0**-23 * p_star


def _tolerances(a, n, p_star, delta) -> dict:
    """Bounds on |realised - closed form| at a price within ``delta`` of ``p_star``, per segment.

    quantity: the share error 1/N is one user, plus one for the (expected 0.003) users within
    1.6e-7 yuan of the price whom the logit decides at random; the price error moves
    ``n (1 - p / a)`` by n delta / a.
    profit ``(p - C) q``: first-order term |d profit / dp| delta, second-order n delta**2 / a,
    and the quantity error (2 users) times the margin (< a - C).
    consumer surplus ``n (a - p)**2 / (2a)``: n (a - p*) / a delta + n delta**2 / (2a), plus the
    stratification error: each buyer's draw is within a / (2n) of its bin's midpoint (<= a / 2
    over all buyers) and the bin holding the price adds at most a / n.
    """
    q = n * delta / a + 2.0
    profit = n * abs(1.0 - (2.0 * p_star - C) / a) * delta + n * delta**2 / a + 2.0 * (a - C)
    cs = n * (a - p_star) / a * delta + n * delta**2 / (2.0 * a) + a
    return dict(q=q, profit=profit, cs=cs, tw=profit + cs)


def _check(realised: dict, closed: dict, tol: dict, tag: str) -> None:
    for k in ("q", "profit", "cs", "tw"):
        err = np.abs(realised[k] - closed[k])
        assert (err <= tol[k]).all(), (tag, k, realised[k], closed[k], tol[k])


@pytest.fixture(scope="module")
def regimes(population):
    """Third-degree (per segment) and uniform monopoly pricing by PersonalisedPricer, with closed forms."""
    seg, wtp, view = population
    n_seg = np.full(A.size, float(N))
    res = {}

    # (a) per-segment prices: p_s = (a_s + C) / 2, each segment's own monopoly price
    price = _quote(PersonalisedPricer(segment_by="cohort"), view, seg.size)
    p_star = (A + C) / 2.0
    assert (p_star < 6.0 * LP).all()  # inside the pricer's grid
    # one segment's empirical profit per user is off by at most its margin (<= a - C) times 1/N
    delta = np.array([_price_tolerance(1.0 / a, (a - C) / N, p) for a, p in zip(A, p_star)])
    res["third"] = dict(
        price=price, p_star=p_star, delta=delta,
        realised=_realised(seg, wtp, price),
        closed=_closed(A, n_seg, p_star),
        tol=_tolerances(A, n_seg, p_star, delta),
    )  # fmt: skip

    # (b) one price for the pooled segments: p_u = (sum N + C sum N/a) / (2 sum N/a), serving everyone
    price = _quote(PersonalisedPricer(segment_by="none"), view, seg.size)
    m = n_seg.sum()
    k = float((n_seg / A).sum() / m)  # curvature of the pooled profit per user
    p_u = (m + C * (n_seg / A).sum()) / (2.0 * (n_seg / A).sum())
    assert p_u < A.min()  # every segment is served at the uniform price
    err = (A.max() - C) * A.size / m  # pooled share error <= sum_s (N_s / M) / N_s
    d_u = _price_tolerance(k, err, p_u)
    # the quadratic bound holds for p <= min(a); above it, the true profit must stay below pi* - eps
    eps = k * H**2 / 4.0 + 2.0 * err
    grid = np.linspace(A.min(), A.max(), 20_001)
    pooled = ((grid[:, None] - C) * (n_seg / m) * np.clip(1.0 - grid[:, None] / A, 0.0, None)).sum(axis=1)
    pi_u = (p_u - C) * float(((n_seg / m) * (1.0 - p_u / A)).sum())
    assert pooled.max() < pi_u - eps
    assert p_u + d_u < A.min()
    res["uniform"] = dict(
        price=price, p_star=np.full(A.size, p_u), delta=np.full(A.size, d_u),
        realised=_realised(seg, wtp, price),
        closed=_closed(A, n_seg, p_u),
        tol=_tolerances(A, n_seg, np.full(A.size, p_u), np.full(A.size, d_u)),
    )  # fmt: skip
    return res


# -- third-degree price discrimination --------------------------------------------------------


def test_per_segment_prices_match_segment_multiplier(population, regimes):
    seg, wtp, _ = population
    pricer = PersonalisedPricer(segment_by="cohort")
    for s in range(A.size):
        sel = seg == s
        m = pricer.segment_multiplier(wtp[sel] / LP, C / LP)
        assert (regimes["third"]["price"][sel] == np.float32(LP * m)).all()
    m = pricer.segment_multiplier(wtp / LP, C / LP)
    assert (regimes["uniform"]["price"] == np.float32(LP * m)).all()


@pytest.mark.parametrize("regime", ["third", "uniform"])
def test_monopoly_prices_quantities_profit_surplus_match_closed_forms(regimes, regime):
    r = regimes[regime]
    got = r["realised"]
    assert np.isfinite(got["price"]).all()  # one price per segment
    assert (np.abs(got["price"] - r["p_star"]) <= r["delta"]).all(), (got["price"], r["p_star"], r["delta"])
    _check(got, r["closed"], r["tol"], regime)
    if regime == "third":  # the textbook formulas, spelled out
        np.testing.assert_allclose(r["closed"]["profit"], N * (A - C) ** 2 / (4 * A))
        np.testing.assert_allclose(r["closed"]["cs"], N * (A - C) ** 2 / (8 * A))
        np.testing.assert_allclose(r["closed"]["q"], N * (A - C) / (2 * A))


def test_third_degree_discrimination_keeps_output_and_lowers_welfare(regimes):
    """Linear demand, every segment served: same total output, lower total welfare (misallocation)."""
    third, uni = regimes["third"], regimes["uniform"]
    # closed forms: output identical, welfare strictly lower under discrimination
    assert third["closed"]["q"].sum() == pytest.approx(uni["closed"]["q"].sum(), rel=1e-12)
    gap = uni["closed"]["tw"].sum() - third["closed"]["tw"].sum()
    tol_tw = third["tol"]["tw"].sum() + uni["tol"]["tw"].sum()
    assert gap > tol_tw  # large enough for the realised comparison to decide the sign
    # realised
    q_third, q_uni = third["realised"]["q"].sum(), uni["realised"]["q"].sum()
    assert abs(q_third - q_uni) <= third["tol"]["q"].sum() + uni["tol"]["q"].sum()
    tw_third, tw_uni = third["realised"]["tw"].sum(), uni["realised"]["tw"].sum()
    assert tw_third < tw_uni
    assert abs((tw_uni - tw_third) - gap) <= tol_tw
    # the monopolist gains, consumers lose more than it gains
    d_profit = third["realised"]["profit"].sum() - uni["realised"]["profit"].sum()
    d_cs = third["realised"]["cs"].sum() - uni["realised"]["cs"].sum()
    assert d_profit > 0 > d_cs and -d_cs > d_profit
    # output moves from the high-value segment to the low-value one
    dq = third["realised"]["q"] - uni["realised"]["q"]
    assert dq[0] > 0 > dq[-1]


# -- first-degree price discrimination --------------------------------------------------------


def test_first_degree_at_full_capture_leaves_buyers_indifferent(population):
    """``capture=1``: the quote is the buyer's willingness to pay (rounded to float32).

    Every buyer keeps ~0 surplus and the platform's profit is the buyers' whole surplus. At
    ``x = w`` the logit buys with probability 1/2 whatever the sensitivity, so which of the
    users with w >= C buy is decided by the float32 rounding of the quote and by the logit:
    about half of them, as the logit predicts.
    """
    seg, wtp, view = population
    price = _quote(PersonalisedPricer(segment_by="user", capture=1.0), view, seg.size)
    np.testing.assert_array_equal(price, np.maximum(C, wtp).astype(np.float32))
    out = _buy(price, wtp, LP, SENSITIVITY)
    b = out["bought"]
    band = 40.0 * LP / SENSITIVITY  # beyond this distance from the price the logit is 0 or 1 in float64
    assert (wtp[b] >= C - band).all()
    rounding = 2.0**-24 * wtp[b].sum() + band * b.sum()  # |w - float32(w)| <= 2**-24 w per buyer
    cs = out["surplus"][b].sum()
    profit = (out["paid"][b].astype(np.float64) - C).sum()
    assert abs(cs) <= rounding
    assert abs(profit - (wtp[b] - C).sum()) <= rounding
    # purchases at indifference: the logit's own probabilities, and about half
    p = expit(SENSITIVITY * (wtp - price.astype(np.float64)) / LP)
    elig = wtp >= C
    assert abs(b[elig].sum() - p[elig].sum()) < Z * math.sqrt((p[elig] * (1.0 - p[elig])).sum())
    assert 0.45 < b[elig].mean() < 0.55


def test_first_degree_extracts_all_surplus(population):
    """``capture`` just below 1: everyone with w >= C buys, consumer surplus ~0, profit = all surplus."""
    seg, wtp, view = population
    eps = 1e-6  # eps * w >= 2e-6 yuan >> 1.6e-7 (the logit's band) and >> float32 rounding (6e-8 w)
    price = _quote(PersonalisedPricer(segment_by="user", capture=1.0 - eps), view, seg.size)
    out = _buy(price, wtp, LP, SENSITIVITY)
    b = out["bought"]
    # users within 2e-6 yuan above C may go either way (expected 0.02 of them)
    unsure = (wtp >= C - 1e-6) & (wtp <= C / (1.0 - eps) + 1e-6)
    np.testing.assert_array_equal(b[~unsure], (wtp >= C)[~unsure])
    cs = out["surplus"][b].sum()
    assert 0.0 <= cs <= (eps + 2.0**-24) * wtp[b].sum()
    profit = (out["paid"][b].astype(np.float64) - C).sum()
    # all the surplus there is: sum_s N (a_s - C)**2 / (2 a_s), within the stratification error
    # (each buyer's draw within a / (2N) of its bin's midpoint, plus the bin holding C: <= a per segment)
    total = float((N * (A - C) ** 2 / (2.0 * A)).sum())
    assert abs(profit + cs - total) <= A.sum()
    assert abs(profit - total) <= A.sum() + cs
    assert cs < 1e-5 * total

"""Audit metrics of the delivery fleet (Art. 20: couriers' pay, hours, rest, deadlines, penalties).

Every statistic is a function of a set of courier indices (possibly with
repeats, for the bootstrap), built from per-courier sums over the run's
courier-days and orders, so the fleet's findings share the interval code of
the feed's. The scope ("cohort") is ``workers``. Paired findings compare the
audited dispatcher with the counterfactual dispatcher
(``audit.counterfactual_dispatcher``, default rest-respecting with
take-the-middle deadlines) run on the same orders, weather and couriers
(common random numbers).

Definitions (per courier-day; working minutes are logged-on minutes not on a break, order-taking
minutes those in which the courier was also open to new orders):

- net hourly pay: (pay - penalties + top-ups - vehicle and daily costs) / working hours, on
  courier-days with at least ``MIN_DAY_MINUTES`` of work;
- a day over 8 h: more than 480 order-taking minutes (online and open to new
  orders; delivering the last orders after the platform stopped offering does
  not count, though it counts as working time for pay);
- a stretch violation: an order offered after more than 240 minutes of
  continuous order-taking without a 20-minute pause;
- a week without rest: seven days of a calendar week of the run all with order-taking.

Per order: the deadline percentile is where the promised time sits among the
actual delivery times of orders with a similar route (deciles of route
length), i.e. the share of comparable orders delivered within it; the implied
speed is the average riding speed the promised time leaves room for from when
the courier could start the order (after the orders ahead in the box), after
the merchant's expected preparation and two handovers (``NO_TIME_KMH`` = 100
km/h when no time is left); the finding is its median over orders.

Public objects
--------------
fleet_estimators
    Estimators of every fleet metric, keyed by (metric, "workers").
FLEET_METRICS
    Names of the metrics this module estimates.
per_worker_day_pay, order_deadline_stats
    The per-courier-day and per-order quantities (also used by the report's figures).
"""

from __future__ import annotations

import numpy as np

from audits.inequality import gini
from audits.statistics import ratio_of_sums
from sim.fleet.state import O_DELIVERED
from sim.record import RunRecord

__all__ = [
    "FAST_KMH",
    "FLEET_METRICS",
    "MIN_DAY_MINUTES",
    "NO_TIME_KMH",
    "fleet_estimators",
    "order_deadline_stats",
    "per_worker_day_pay",
]

FLEET_METRICS = (
    "net_hourly_pay_to_min_wage", "below_min_wage_day_share", "over_8h_day_share", "stretch_violation_day_share",
    "weeks_without_rest_share", "rest_days_per_week", "deadline_percentile", "implied_speed_kmh",
    "fast_deadline_share", "penalty_share_of_pay", "uncontrollable_penalty_share", "hourly_pay_gini",
    "working_hours_per_day", "net_hourly_pay_change", "working_hours_change", "deadline_percentile_change",
    "cancelled_order_share",
)  # fmt: skip

MIN_DAY_MINUTES = 60.0  # courier-days shorter than an hour are not judged on hourly pay (too noisy)
FAST_KMH = 15.0  # SAMR 2025: delivery times computed at an average of at most 15 km/h
NO_TIME_KMH = 100.0  # a deadline that leaves no riding time reads as this fast (recaudit convention; > any e-bike)
_ROUTE_BINS = 10


def per_worker_day_pay(rec: RunRecord) -> tuple[np.ndarray, np.ndarray]:
    """Return the net pay (yuan) and working minutes of every courier-day, float64 (T, w) each."""
    f = rec.fleet
    col = f.day_column
    net = col("gross_pay").astype(np.float64) - col("penalties") + col("top_up") - col("costs")
    return net, col("online_minutes").astype(np.float64)


def order_deadline_stats(rec: RunRecord) -> dict[str, np.ndarray]:
    """Per delivered order: worker, duration, deadline, percentile of the deadline, implied speed.

    Returns
    -------
    dict with ``worker`` int64, ``duration``, ``deadline``, ``percentile`` (0-100) and ``implied_speed``
    (km/h to 0.01, ``NO_TIME_KMH`` where the deadline leaves no riding time, NaN without geography), all
    (n_delivered,).
    """
    f = rec.fleet
    o = f.orders
    d = o["status"] == O_DELIVERED
    worker = o["worker"][d].astype(np.int64)
    duration = (o["done_at"][d] - o["created"][d]).astype(np.float64)
    deadline = o["deadline_minutes"][d].astype(np.float64)
    route = o["route_km"][d].astype(np.float64)
    pct = np.zeros(d.sum())
    if pct.size:
        edges = np.unique(np.quantile(route, np.linspace(0, 1, _ROUTE_BINS + 1)[1:-1]))
        b = np.searchsorted(edges, route, side="right")
        for k in np.unique(b):
            m = b == k
            sorted_dur = np.sort(duration[m])
            pct[m] = 100.0 * np.searchsorted(sorted_dur, deadline[m], side="right") / m.sum()
    speed = np.full(d.sum(), np.nan)
    if rec.scenario.fleet.geography and pct.size:
        h = rec.scenario.fleet.handling_minutes
        elapsed = (o["started_at"][d] - o["created"][d]).astype(np.float64)  # riding can start only then
        prep = (o["ready_hat"][d] - o["created"][d]).astype(np.float64)
        pk = o["pickup_km"][d].astype(np.float64)
        tk = o["trip_km"][d].astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            ride1 = deadline - 2.0 * h - elapsed  # riding from the start, the food ready on arrival
            v1 = np.where(ride1 > 0, (pk + tk) / ride1 * 60.0, np.inf)
            wait_binds = elapsed + pk / v1 * 60.0 < prep  # the courier would wait at the merchant
            ride2 = deadline - 2.0 * h - prep
            v2 = np.where(ride2 > 0, tk / ride2 * 60.0, np.inf)
            speed = np.where(wait_binds, v2, v1)
        # to 0.01 km/h: deadlines are float32, and one set at exactly 15 km/h must read back as 15
        speed = np.round(np.minimum(np.nan_to_num(speed, nan=np.inf), NO_TIME_KMH), 2)
    return dict(worker=worker, duration=duration, deadline=deadline, percentile=pct, implied_speed=speed)


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    """Median of ``values`` with integer ``weights`` (a bootstrap resample repeats couriers)."""
    keep = weights > 0
    if not keep.any():
        return float("nan")
    v, w = values[keep], weights[keep]
    order = np.argsort(v, kind="stable")
    cum = np.cumsum(w[order])
    return float(v[order][np.searchsorted(cum, 0.5 * cum[-1])])


def _by_worker(worker, values, n):
    return np.bincount(worker, weights=np.asarray(values, dtype=np.float64), minlength=n)


def fleet_estimators(t: RunRecord, cd: RunRecord, Estimator) -> dict:
    """Estimators of the fleet metrics for an audited run and its dispatcher counterfactual.

    Parameters
    ----------
    t, cd : RunRecord
        The audited run and the run with the counterfactual dispatcher (same couriers and orders).
    Estimator : type
        :class:`audits.metrics.Estimator`.
    """
    if t.fleet is None or cd.fleet is None:
        reason = "the scenario has no delivery fleet (add a [fleet] table)"
        nobody = np.zeros(0, dtype=bool)
        return {(name, "workers"): Estimator(nobody, lambda idx: float("nan"), reason) for name in FLEET_METRICS}
    f = t.fleet
    n = f.n_workers
    if cd.fleet.n_workers != n or not np.array_equal(f.true_target_earnings, cd.fleet.true_target_earnings):
        raise ValueError("audited and counterfactual fleets are not paired (different couriers)")
    wage = t.scenario.fleet.min_hourly_wage
    everyone = np.ones(n, dtype=bool)

    net, minutes = per_worker_day_pay(t)
    judged = minutes >= MIN_DAY_MINUTES
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(judged, net / (minutes / 60.0), np.nan)
    days_judged = judged.sum(axis=0).astype(np.float64)
    below = (judged & (rate < wage)).sum(axis=0).astype(np.float64)
    net_w = np.where(judged, net, 0.0).sum(axis=0)
    hours_w = np.where(judged, minutes, 0.0).sum(axis=0) / 60.0

    # a worked day is a day with order-taking (finishing yesterday's last orders after midnight is not one)
    taking = f.day_column("order_taking_minutes").astype(np.float64)
    worked = taking > 0
    days_worked = worked.sum(axis=0).astype(np.float64)
    over8 = ((taking > 480.0 + 1e-3) & worked).sum(axis=0).astype(np.float64)
    stretch_bad = ((f.day_column("offers_after_4h") > 0) & worked).sum(axis=0).astype(np.float64)

    n_weeks = t.n_days // 7
    weeks = worked[: 7 * n_weeks].reshape(n_weeks, 7, n) if n_weeks else np.zeros((0, 7, n), dtype=bool)
    no_rest = weeks.all(axis=1).sum(axis=0).astype(np.float64)
    rest_days = (~weeks).sum(axis=(0, 1)).astype(np.float64)
    week_count = np.full(n, float(n_weeks))
    too_short = "needs at least 7 simulated days (one calendar week)" if n_weeks == 0 else ""

    od = order_deadline_stats(t)
    pct_sum = _by_worker(od["worker"], od["percentile"], n)
    n_orders = np.bincount(od["worker"], minlength=n).astype(np.float64)
    geo = t.scenario.fleet.geography
    speed, speed_worker = od["implied_speed"], od["worker"]
    fast = _by_worker(speed_worker, speed > FAST_KMH, n)

    def median_speed(idx):
        return _weighted_median(speed, np.bincount(idx, minlength=n)[speed_worker].astype(np.float64))

    gross = f.day_column("gross_pay").sum(axis=0, dtype=np.float64)
    pen = f.day_column("penalties").sum(axis=0, dtype=np.float64)
    pen_unc = f.day_column("penalties_uncontrollable").sum(axis=0, dtype=np.float64)

    # counterfactual (same couriers, same orders)
    net_c, minutes_c = per_worker_day_pay(cd)
    judged_c = minutes_c >= MIN_DAY_MINUTES
    net_wc = np.where(judged_c, net_c, 0.0).sum(axis=0)
    hours_wc = np.where(judged_c, minutes_c, 0.0).sum(axis=0) / 60.0
    worked_c = cd.fleet.day_column("order_taking_minutes") > 0
    od_c = order_deadline_stats(cd)
    pct_sum_c = _by_worker(od_c["worker"], od_c["percentile"], n)
    n_orders_c = np.bincount(od_c["worker"], minlength=n).astype(np.float64)

    work_w = np.where(worked, minutes, 0.0).sum(axis=0)
    work_wc = np.where(worked_c, minutes_c, 0.0).sum(axis=0)

    def gini_stat(idx):
        h = hours_w[idx]
        ok = h >= 5.0
        return gini(net_w[idx][ok] / h[ok]) if ok.sum() >= 2 else float("nan")

    def pay_change(idx):
        a, b = hours_w[idx].sum(), hours_wc[idx].sum()
        if a <= 0 or b <= 0:
            return float("nan")
        return float(net_w[idx].sum() / a - net_wc[idx].sum() / b)

    def hours_change(idx):
        a, b = days_worked[idx].sum(), worked_c.sum(axis=0)[idx].sum()
        if a <= 0 or b <= 0:
            return float("nan")
        return float(work_w[idx].sum() / a / 60.0 - work_wc[idx].sum() / b / 60.0)

    def pct_change(idx):
        a, b = n_orders[idx].sum(), n_orders_c[idx].sum()
        if a <= 0 or b <= 0:
            return float("nan")
        return float(pct_sum[idx].sum() / a - pct_sum_c[idx].sum() / b)

    no_geo = "" if geo else "no geography (fleet.geography = false): no riding speed"
    status = f.orders["status"]
    cancelled = float((status == 4).sum()) / max(status.size, 1)

    est = {
        "net_hourly_pay_to_min_wage": Estimator(everyone, ratio_of_sums(net_w, hours_w, 1.0 / wage)),
        "below_min_wage_day_share": Estimator(everyone, ratio_of_sums(below, days_judged)),
        "over_8h_day_share": Estimator(everyone, ratio_of_sums(over8, days_worked)),
        "stretch_violation_day_share": Estimator(everyone, ratio_of_sums(stretch_bad, days_worked)),
        "weeks_without_rest_share": Estimator(everyone, ratio_of_sums(no_rest, week_count), undefined_reason=too_short),
        "rest_days_per_week": Estimator(everyone, ratio_of_sums(rest_days, week_count), undefined_reason=too_short),
        "deadline_percentile": Estimator(everyone, ratio_of_sums(pct_sum, n_orders)),
        "implied_speed_kmh": Estimator(everyone, median_speed, undefined_reason=no_geo),
        "fast_deadline_share": Estimator(everyone, ratio_of_sums(fast, n_orders), undefined_reason=no_geo),
        "penalty_share_of_pay": Estimator(everyone, ratio_of_sums(pen, gross)),
        "uncontrollable_penalty_share": Estimator(everyone, ratio_of_sums(pen_unc, pen, empty=0.0)),
        "hourly_pay_gini": Estimator(everyone, gini_stat),
        "working_hours_per_day": Estimator(everyone, ratio_of_sums(work_w, days_worked, 1.0 / 60.0)),
        "net_hourly_pay_change": Estimator(everyone, pay_change),
        "working_hours_change": Estimator(everyone, hours_change),
        "deadline_percentile_change": Estimator(everyone, pct_change),
        "cancelled_order_share": Estimator(everyone, lambda idx: cancelled),
    }
    wage_note = f"minimum hourly wage used: {wage:g} yuan/h, {t.scenario.fleet.min_wage_source}"
    for name in ("net_hourly_pay_to_min_wage", "below_min_wage_day_share"):
        est[name] = Estimator(est[name].mask, est[name].stat, est[name].undefined_reason, note=wage_note)
    return {(name, "workers"): e for name, e in est.items()}

"""Built-in dispatchers: who gets which order, by when, for how much.

Every built-in offers the open orders oldest first, each to the nearest
courier (Manhattan distance from where the courier will be once its queue is
served to the merchant) that can take it, skipping the courier who last
declined it; they differ in whom they count as available, how they set
deadlines and pay, and whether they enforce rest.

- ``nearest``: idle couriers only; deadline from a speed basis
  (``speed_basis_kmh``, default 15 km/h); pay ``base_pay + pay_per_km x route``.
- ``strict``: throughput-maximising batching (busy couriers with room in the
  box are offered more orders) and the "strictest algorithm": deadlines at a low
  percentile (default P15) of past delivery times of comparable orders, low
  pay, and a lateness penalty with no excuse for weather or merchants.
- ``take_middle``: "算法取中" of the 2021 rider guidance: deadlines at the
  median (or the ``percentile`` given, at least 50) of past delivery times and
  never faster than the 15 km/h speed basis of the 2025 standard; lateness
  the courier could not control is excused.
- ``surge``: ``nearest`` with pay raised when open orders outnumber available couriers.
- ``rest_respecting``: ``take_middle`` plus the 2025 standard's caps through
  ``access``: no orders past 8 h of order-taking a day, a 20-minute pause after
  4 h continuous, no seventh working day in a row.
- ``income_fair``: ``rest_respecting`` that offers each order to the
  lowest-earning (per hour online) of the nearest couriers and tops up each
  day's pay to an hourly floor above the minimum wage, net of estimated costs.

Public objects
--------------
NearestIdle, Strict, TakeMiddle, Surge, RestRespecting, IncomeFair
BASE_DISPATCHERS
    Name -> class.
eta_minutes
    The speed-basis delivery time of orders.
"""

from __future__ import annotations

import math

import numpy as np

from sim.fleet.view import BaseDispatcher, DeliveryLog, Dispatch, FleetView
from sim.kernels.dispatch import greedy_assign, grid_shape, nearest_candidates
from sim.kernels.fleet import DAY_LIMIT_MINUTES, STRETCH_LIMIT_MINUTES

__all__ = [
    "BASE_DISPATCHERS",
    "IncomeFair",
    "NearestIdle",
    "RestRespecting",
    "Strict",
    "Surge",
    "TakeMiddle",
    "eta_minutes",
]

SPEED_BASIS_KMH = 15.0  # SAMR 2025 standard: e-bike delivery times computed at an average <= 15 km/h
PAUSE_MINUTES = 20.0  # SAMR 2025: no orders for 20 min after > 4 h continuous
MAX_CONSECUTIVE_DAYS = 6  # SAMR 2025: at least one rest day a week
_K_NEAREST = 8  # couriers considered per order
_MIN_HISTORY = 50  # deliveries needed before a percentile rule replaces the speed basis
_HISTORY = 3000  # deliveries kept for the percentile rule


def eta_minutes(order_idx: np.ndarray, pickup_km: np.ndarray, view: FleetView, speed_kmh: float) -> np.ndarray:
    """Return the delivery time (minutes after creation) of orders at ``speed_kmh``.

    Ride to the merchant while the food is prepared, hand over, ride to the customer, hand over.
    Without geography: the mean service time.
    """
    if not view.geography:
        return np.full(order_idx.shape[0], view.service_minutes_mean, dtype=np.float64)
    created = view.order_created[order_idx]
    wait = view.order_ready_hat[order_idx] - created
    to_merchant = (view.minute - created) + pickup_km / speed_kmh * 60.0
    trip = view.order_trip_km[order_idx].astype(np.float64) / speed_kmh * 60.0
    return np.maximum(to_merchant, wait) + trip + 2.0 * view.handling_minutes


def _assign(order_idx: np.ndarray, view: FleetView, capacity: np.ndarray, score=None, window: float = 0.0):
    """Greedy nearest assignment, oldest order first; returns (worker_idx int64 (n,), pickup_km (n,)).

    ``capacity`` (n_workers,) is how many orders each courier may get now. Each order goes to the
    nearest courier with capacity left (Manhattan distance from where the courier will be once its
    queue is served to the merchant), skipping the one who last declined it; with ``score``
    (n_workers,), to the lowest-scored of the available couriers within ``window`` km of the nearest.
    Without geography every courier is equally near: the lowest index with capacity (first come,
    first served).
    """
    n = order_idx.shape[0]
    out = np.full(n, -1, dtype=np.int64)
    pickup_km = np.zeros(n)
    cap = capacity.astype(np.int64).copy()
    elig = np.flatnonzero(cap > 0)
    if n == 0 or elig.size == 0:
        return out, pickup_km
    decliner = np.ascontiguousarray(view.order_last_decliner[order_idx], dtype=np.int32)
    if not view.geography:
        # every courier equally near: the lowest indices first (first come, first served); n + 1
        # distinct couriers always leave one with capacity for each order, the last decliner aside
        k = min(elig.size, n + 1)
        cand = np.broadcast_to(elig[:k], (n, k)).astype(np.int64)
        dist = np.zeros((n, k))
    else:
        k = min(_K_NEAREST, elig.size)
        cell, g = grid_shape(elig.size, view.city_km)
        pos, dist = np.empty((n, k), dtype=np.int64), np.empty((n, k))
        nearest_candidates(view.order_pickup_x[order_idx].astype(np.float64),
                           view.order_pickup_y[order_idx].astype(np.float64),
                           view.worker_tail_x[elig].astype(np.float64), view.worker_tail_y[elig].astype(np.float64),
                           k, cell, g, pos, dist)  # fmt: skip
        cand = elig[pos]
    score_arr = np.zeros(capacity.shape[0]) if score is None else np.ascontiguousarray(score, dtype=np.float64)
    greedy_assign(np.ascontiguousarray(cand), np.ascontiguousarray(dist), cap, decliner, score_arr, float(window),
                  out, pickup_km)  # fmt: skip
    return out, pickup_km


class _PercentileDeadlines:
    """Deadlines at a percentile of past delivery times of comparable orders.

    Delivery durations are regressed on the route length (least squares over the
    last deliveries); the deadline of an order is its fitted duration plus the
    chosen percentile of the residuals.
    """

    def _init_history(self):
        self.durations_ = np.zeros(0)
        self.routes_ = np.zeros(0)
        self.coef_ = None

    def _learn(self, log: DeliveryLog):
        ok = log.delivered_mask & (log.route_km > 0)
        if not ok.any():
            return
        self.durations_ = np.concatenate([self.durations_, log.duration_minutes[ok]])[-_HISTORY:]
        self.routes_ = np.concatenate([self.routes_, log.route_km[ok].astype(np.float64)])[-_HISTORY:]
        if self.durations_.size >= _MIN_HISTORY:
            # closed-form simple regression (no BLAS: the same bits on every machine)
            x, y = self.routes_, self.durations_
            xm, ym = x.mean(), y.mean()
            sxx = float(((x - xm) ** 2).sum())
            b = float(((x - xm) * (y - ym)).sum() / sxx) if sxx > 0 else 0.0
            a = float(ym - b * xm)
            self.coef_ = (a, b, float(np.percentile(y - (a + b * x), self.percentile)))

    def fit(self, view: FleetView, log: DeliveryLog):
        """Learn the distribution of delivery times."""
        self._learn(log)
        return self

    def _percentile_deadline(self, route_km: np.ndarray, fallback: np.ndarray) -> np.ndarray:
        if self.coef_ is None:
            return fallback
        a, b, r = self.coef_
        return np.maximum(a + b * route_km + r, 1.0)


class NearestIdle(BaseDispatcher):
    """Nearest idle courier; deadline at ``speed_basis_kmh``; pay ``base_pay + pay_per_km x route``.

    Parameters
    ----------
    base_pay, pay_per_km : float
        Yuan per order and per km of the courier's route (to the merchant and on to the customer).
    speed_basis_kmh : float
        The speed the promised delivery time is computed at.
    late_penalty : float
        Yuan per late minute.
    """

    def __init__(self, base_pay: float = 6.0, pay_per_km: float = 1.2, speed_basis_kmh: float = SPEED_BASIS_KMH,
                 late_penalty: float = 0.0):  # fmt: skip
        self.base_pay = base_pay
        self.pay_per_km = pay_per_km
        self.speed_basis_kmh = speed_basis_kmh
        self.late_penalty = late_penalty
        if speed_basis_kmh <= 0 or base_pay < 0 or pay_per_km < 0 or late_penalty < 0:
            raise ValueError("speed_basis_kmh must be > 0 and pay and penalties >= 0")

    def _capacity(self, view):
        return ((view.worker_queue_len == 0) & (view.worker_capacity > 0)).astype(np.int32)  # one order, idle only

    def _pay(self, order_idx, pickup_km, view):
        route = pickup_km + view.order_trip_km[order_idx]
        return self.base_pay + self.pay_per_km * route

    def _deadline(self, order_idx, pickup_km, view):
        return eta_minutes(order_idx, pickup_km, view, self.speed_basis_kmh)

    def _excuse(self, n):
        return np.zeros(n, dtype=np.bool_)

    def _score(self, view):
        return None  # the nearest courier

    window_km = 0.0

    def dispatch(self, order_idx: np.ndarray, view: FleetView) -> Dispatch:
        """Offer each open order to the nearest idle courier."""
        worker, pickup_km = _assign(order_idx, view, self._capacity(view), self._score(view), self.window_km)
        n = order_idx.shape[0]
        return Dispatch(
            worker_idx=worker,
            deadline_minutes=self._deadline(order_idx, pickup_km, view),
            pay=self._pay(order_idx, pickup_km, view),
            late_penalty=np.full(n, self.late_penalty),
            excuse_mask=self._excuse(n),
        )


class Strict(_PercentileDeadlines, NearestIdle):
    """Batching with the "strictest algorithm": low-percentile deadlines, low pay, penalties, no excuses.

    Parameters
    ----------
    percentile : float
        Percentile of past delivery times used for deadlines (the 2021 guidance's "strictest"
        practice is a low one; default 15).
    base_pay, pay_per_km, late_penalty : float
    initial_speed_kmh : float
        Speed basis until enough deliveries are logged.
    """

    def __init__(self, percentile: float = 15.0, base_pay: float = 5.0, pay_per_km: float = 1.0,
                 late_penalty: float = 0.05, initial_speed_kmh: float = 22.0):  # fmt: skip
        super().__init__(base_pay=base_pay, pay_per_km=pay_per_km, speed_basis_kmh=initial_speed_kmh,
                         late_penalty=late_penalty)  # fmt: skip
        if not 0 < percentile < 100:
            raise ValueError("percentile must be in (0, 100)")
        self.percentile = percentile
        self.initial_speed_kmh = initial_speed_kmh
        self._init_history()

    def get_params(self) -> dict:
        """Return the constructor parameters (the speed basis is ``initial_speed_kmh``)."""
        return {
            k: getattr(self, k) for k in ("percentile", "base_pay", "pay_per_km", "late_penalty", "initial_speed_kmh")
        }

    def _capacity(self, view):
        return view.worker_capacity  # busy couriers with room in the box get more orders

    def _deadline(self, order_idx, pickup_km, view):
        eta = eta_minutes(order_idx, pickup_km, view, self.initial_speed_kmh)
        return self._percentile_deadline(pickup_km + view.order_trip_km[order_idx], eta)


class TakeMiddle(_PercentileDeadlines, NearestIdle):
    """Take the middle (算法取中): deadlines at or above the median of past delivery times, never faster than 15 km/h.

    Parameters
    ----------
    percentile : float
        At least 50 (the median).
    speed_basis_kmh : float
        Deadlines never imply a faster average speed than this (at most 15 under the 2025 standard).
    base_pay, pay_per_km, late_penalty : float
    excuse_uncontrollable : bool
        Excuse lateness from weather and merchants' delays.
    """

    def __init__(self, percentile: float = 50.0, speed_basis_kmh: float = SPEED_BASIS_KMH, base_pay: float = 7.0,
                 pay_per_km: float = 1.4, late_penalty: float = 0.1, excuse_uncontrollable: bool = True):  # fmt: skip
        super().__init__(base_pay=base_pay, pay_per_km=pay_per_km, speed_basis_kmh=speed_basis_kmh,
                         late_penalty=late_penalty)  # fmt: skip
        if not 50 <= percentile < 100:
            raise ValueError("percentile must be in [50, 100): take-the-middle deadlines sit at the median or above")
        self.percentile = percentile
        self.excuse_uncontrollable = bool(excuse_uncontrollable)
        self._init_history()

    def _deadline(self, order_idx, pickup_km, view):
        eta = eta_minutes(order_idx, pickup_km, view, self.speed_basis_kmh)
        return np.maximum(self._percentile_deadline(pickup_km + view.order_trip_km[order_idx], eta), eta)

    def _excuse(self, n):
        return np.full(n, self.excuse_uncontrollable, dtype=np.bool_)


class Surge(NearestIdle):
    """Nearest idle courier with surge pay: pay x ``min(cap, 1 + slope x max(0, open / available - 1))``.

    Parameters
    ----------
    surge_slope, surge_cap : float
    base_pay, pay_per_km, speed_basis_kmh, late_penalty : float
    """

    def __init__(self, surge_slope: float = 0.5, surge_cap: float = 2.0, base_pay: float = 6.0,
                 pay_per_km: float = 1.2, speed_basis_kmh: float = SPEED_BASIS_KMH, late_penalty: float = 0.0):  # fmt: skip
        super().__init__(base_pay=base_pay, pay_per_km=pay_per_km, speed_basis_kmh=speed_basis_kmh,
                         late_penalty=late_penalty)  # fmt: skip
        if surge_slope < 0 or surge_cap < 1:
            raise ValueError("surge_slope must be >= 0 and surge_cap >= 1")
        self.surge_slope = surge_slope
        self.surge_cap = surge_cap

    def _pay(self, order_idx, pickup_km, view):
        available = max(int((self._capacity(view) > 0).sum()), 1)
        mult = min(self.surge_cap, 1.0 + self.surge_slope * max(0.0, view.n_open / available - 1.0))
        return mult * super()._pay(order_idx, pickup_km, view)


class RestRespecting(TakeMiddle):
    """Take-the-middle deadlines and the 2025 standard's rest rules, enforced through ``access``.

    Parameters
    ----------
    daily_cap_minutes : float
        Order-taking minutes a day (480 = 8 h).
    stretch_limit_minutes, pause_minutes : float
        After this much continuous order-taking, no orders for ``pause_minutes``
        (counted from the completion of the current orders).
    max_consecutive_days : int
        Working days in a row before a rest day is enforced (6: one rest day a week).
    percentile, speed_basis_kmh, base_pay, pay_per_km, late_penalty, excuse_uncontrollable :
        As for :class:`TakeMiddle`.
    """

    def __init__(self, daily_cap_minutes: float = DAY_LIMIT_MINUTES, stretch_limit_minutes: float = STRETCH_LIMIT_MINUTES,
                 pause_minutes: float = PAUSE_MINUTES, max_consecutive_days: int = MAX_CONSECUTIVE_DAYS,
                 percentile: float = 50.0, speed_basis_kmh: float = SPEED_BASIS_KMH, base_pay: float = 7.0,
                 pay_per_km: float = 1.4, late_penalty: float = 0.1, excuse_uncontrollable: bool = True):  # fmt: skip
        super().__init__(percentile=percentile, speed_basis_kmh=speed_basis_kmh, base_pay=base_pay,
                         pay_per_km=pay_per_km, late_penalty=late_penalty,
                         excuse_uncontrollable=excuse_uncontrollable)  # fmt: skip
        if daily_cap_minutes <= 0 or stretch_limit_minutes <= 0 or pause_minutes <= 0 or max_consecutive_days < 1:
            raise ValueError("caps and the pause must be positive, max_consecutive_days >= 1")
        self.daily_cap_minutes = daily_cap_minutes
        self.stretch_limit_minutes = stretch_limit_minutes
        self.pause_minutes = pause_minutes
        self.max_consecutive_days = int(max_consecutive_days)

    def access(self, worker_idx: np.ndarray, view: FleetView) -> np.ndarray:
        """Minutes each courier must wait before new orders: 0, a pause, or inf for the rest of the day."""
        step = view.step_minutes
        online = view.worker_online_minutes_today[worker_idx].astype(np.float64)
        stretch = view.worker_stretch_minutes[worker_idx].astype(np.float64)
        # a rest day is the whole day: also for a courier who finished yesterday's box after midnight
        seventh = view.worker_consecutive_days[worker_idx] >= self.max_consecutive_days
        out = np.zeros(worker_idx.shape[0])
        out[stretch + step > self.stretch_limit_minutes] = self.pause_minutes
        out[(online + step > self.daily_cap_minutes) | seventh] = math.inf
        return out


class IncomeFair(RestRespecting):
    """Rest-respecting, offering each order to the lowest-paid nearby courier, with a daily pay floor.

    Parameters
    ----------
    hourly_floor : float
        Yuan per working hour, net of the estimated costs, that ``settle`` tops each day up to
        (default 30: above the 27.7 minimum hourly wage of Beijing).
    cost_per_km_hat, daily_cost_hat : float
        The platform's estimate of couriers' costs (yuan per km, per day worked).
    **kwargs :
        As for :class:`RestRespecting`.
    """

    def __init__(
        self, hourly_floor: float = 30.0, cost_per_km_hat: float = 0.12, daily_cost_hat: float = 8.0, **kwargs
    ):
        super().__init__(**kwargs)
        if hourly_floor < 0 or cost_per_km_hat < 0 or daily_cost_hat < 0:
            raise ValueError("hourly_floor and cost estimates must be >= 0")
        self.hourly_floor = hourly_floor
        self.cost_per_km_hat = cost_per_km_hat
        self.daily_cost_hat = daily_cost_hat

    window_km = 1.0  # couriers within 1 km of the nearest one count as near

    def _score(self, view):
        """Pay per working hour so far today (the lowest-paid near courier gets the order)."""
        online_h = np.maximum(view.worker_online_minutes_today.astype(np.float64), 30.0) / 60.0
        return (view.worker_gross_today - view.worker_penalties_today) / online_h

    def settle(self, worker_idx: np.ndarray, view: FleetView) -> np.ndarray:
        """Top up each courier's day to ``hourly_floor`` per working hour, net of estimated costs."""
        hours = view.worker_online_minutes_today[worker_idx].astype(np.float64) / 60.0
        net = (view.worker_gross_today[worker_idx] - view.worker_penalties_today[worker_idx]
               - self.cost_per_km_hat * view.worker_km_today[worker_idx] - self.daily_cost_hat)  # fmt: skip
        return np.maximum(0.0, self.hourly_floor * hours - net)


BASE_DISPATCHERS = {
    "nearest": NearestIdle,
    "strict": Strict,
    "take_middle": TakeMiddle,
    "surge": Surge,
    "rest_respecting": RestRespecting,
    "income_fair": IncomeFair,
}

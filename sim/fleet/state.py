"""Struct-of-arrays state of the delivery fleet: the city, couriers and orders.

Couriers (``Workers``) and orders (``Orders``) are columns of fixed dtypes
indexed by worker and order id. Ground truth the platform cannot see (a
courier's earnings target, reservation pay, riding speed) is named
``true_*``; what the platform records itself (position, state, hours online
today, the current continuous stretch, earnings) is plain and is what a
dispatcher's :class:`sim.fleet.view.FleetView` shows.

Public objects
--------------
Workers, Orders, City
    The state.
make_workers, make_city, weather_schedule
    Generators driven by :class:`numpy.random.Generator`.
DEMAND_PROFILE
    Relative order rate by hour of day (mean 1), lunch and dinner peaks.
W_*, O_*, WD_COLUMNS
    Worker states, order statuses and the columns of the per-worker-day record.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sim.scenario import FleetSettings, Scenario

__all__ = [
    "DEMAND_PROFILE",
    "WD_COLUMNS",
    "City",
    "Orders",
    "Workers",
    "make_city",
    "make_workers",
    "weather_schedule",
]

# Worker states
W_OFFLINE, W_IDLE, W_TO_PICKUP, W_AT_MERCHANT, W_TO_DROP, W_AT_CUSTOMER, W_BREAK = 0, 1, 2, 3, 4, 5, 6
WORKER_STATES = ("offline", "idle", "to_pickup", "at_merchant", "to_dropoff", "at_customer", "break")
# Order statuses
O_OPEN, O_ASSIGNED, O_PICKED, O_DELIVERED, O_CANCELLED = 0, 1, 2, 3, 4
ORDER_STATUSES = ("open", "assigned", "picked_up", "delivered", "cancelled")

# Columns of the per-worker-day record (minutes, counts, yuan, km)
WD_COLUMNS = (
    "online_minutes",  # logged on and working (idle or busy), not on a break
    "order_taking_minutes",  # online and open to new orders (not finishing the last ones, no pause pending)
    "busy_minutes",  # riding, waiting at the merchant, handing over
    "break_minutes",  # on a break while logged on (voluntary or the platform's pause)
    "deliveries",
    "late_deliveries",
    "gross_pay",  # the dispatcher's pay for delivered orders (yuan)
    "penalties",  # lateness penalties deducted (yuan, at most each order's pay)
    "penalties_uncontrollable",  # the part of penalties for lateness the courier could not control
    "top_up",  # the platform's end-of-day top-up (yuan)
    "km",  # distance ridden
    "costs",  # vehicle and daily costs (yuan)
    "offers",  # orders offered
    "declines",
    "offers_after_4h",  # offers made after 4 h of continuous order-taking without a 20-min pause
    "offers_after_8h",  # offers made after 8 h of order-taking today
    "max_stretch_minutes",  # the longest continuous stretch of the day
)
WD = {name: i for i, name in enumerate(WD_COLUMNS)}
N_WD = len(WD_COLUMNS)

PAUSE_RESET_MINUTES = 20.0  # SAMR 2025 standard: a 20-min pause after > 4 h continuous ends the stretch
# A pause counts as complete at 20 minutes less a float32 rounding margin (pause minutes are summed in float32).
PAUSE_DONE_MINUTES = PAUSE_RESET_MINUTES - 1e-3

# Relative order rate by hour of day, normalised to mean 1. A stylised food-delivery
# curve (recaudit assumption; the reference notes give no hourly series): a lunch peak
# 11:00-13:00, a dinner peak 17:00-19:00, some late-night orders.
# fmt: off
#                            0    1    2     3     4     5    6    7    8    9   10   11   12   13   14   15   16   17   18   19   20   21   22   23
DEMAND_PROFILE = np.array([0.35, 0.2, 0.1, 0.05, 0.05, 0.05, 0.2, 0.5, 0.7, 0.7, 1.2, 3.0, 3.2, 1.6, 0.8, 0.7, 0.9, 2.2, 2.8, 1.8, 1.1, 0.9, 0.7, 0.5])
# fmt: on
DEMAND_PROFILE = (DEMAND_PROFILE / DEMAND_PROFILE.mean()).astype(np.float64)


@dataclass
class City:
    """Where things are (km).

    Attributes
    ----------
    merchant_x, merchant_y : float32 (n_merchants,)
    merchant_prep_minutes : float32 (n_merchants,)
        Each merchant's mean preparation time (the platform knows it).
    user_home_x, user_home_y : float32 (n_users,)
        Feed users' homes (where market orders are delivered); empty without users.
    size_km : float
    """

    merchant_x: np.ndarray
    merchant_y: np.ndarray
    merchant_prep_minutes: np.ndarray
    user_home_x: np.ndarray
    user_home_y: np.ndarray
    size_km: float


def make_city(fs: FleetSettings, n_users: int, rng: np.random.Generator) -> City:
    """Merchants clustered around ``n_centres`` centres; homes spread over the city."""
    size = float(fs.city_km)
    centres = rng.uniform(0.2 * size, 0.8 * size, size=(fs.n_centres, 2))
    which = rng.integers(0, fs.n_centres, fs.n_merchants)
    spread = 0.12 * size
    pos = np.clip(centres[which] + rng.normal(0.0, spread, size=(fs.n_merchants, 2)), 0.0, size)
    prep = fs.prep_minutes_mean * rng.lognormal(-0.08, 0.4, fs.n_merchants)  # mean ~1 x prep_minutes_mean
    home_c = rng.integers(0, fs.n_centres, n_users)
    homes = np.clip(centres[home_c] + rng.normal(0.0, 2.0 * spread, size=(n_users, 2)), 0.0, size)
    return City(
        merchant_x=pos[:, 0].astype(np.float32),
        merchant_y=pos[:, 1].astype(np.float32),
        merchant_prep_minutes=prep.astype(np.float32),
        user_home_x=homes[:, 0].astype(np.float32),
        user_home_y=homes[:, 1].astype(np.float32),
        size_km=size,
    )


@dataclass
class Workers:
    """Every courier's traits, state and today's counters.

    Attributes (w = n_workers, B = max_batch)
    -----------------------------------------
    x, y : float32 (w,)
        Position (km).
    true_speed_kmh : float32 (w,)
        Riding speed in good weather, fresh.
    true_target_earnings : float32 (w,)
        Daily net earnings the courier aims for (yuan).
    true_max_online_minutes : float32 (w,)
        The longest day the courier will work.
    true_start_minute : float32 (w,)
        Minute of the day the courier logs on.
    true_reservation_rate : float32 (w,)
        Pay rate (yuan per hour of the offered order) accepted with probability
        ``accept_at_reservation``.
    true_rest_streak : int16 (w,)
        Consecutive working days after which the courier rests, if the streak paid enough.
    true_break_after_minutes : float32 (w,)
        Continuous minutes after which a courier on schedule takes a break.
    true_surge_premium : float32 (w,)
        Premium of current over recent pay per hour that brings the courier online before their start.
    state : int8 (w,)
        One of ``WORKER_STATES``.
    queue : int32 (w, B)
        Order ids carried, in the order they are served; ``queue_len`` int8 (w,) of them.
    activity_left : float32 (w,)
        Minutes left of the current wait, handover or service.
    break_left : float32 (w,)
        Minutes left of the current break.
    pause_pending : float32 (w,)
        A pause the platform asked for while the courier was busy (taken when the queue empties).
    online_today, stretch_minutes, pause_minutes : float32 (w,)
        Working minutes today (logged on, not on a break); the current continuous stretch; minutes since
        the courier last stopped taking orders (a pause of 20 minutes ends a stretch).
    fatigue : float32 (w,)
        In [0, 1).
    net_today : float32 (w,)
        Today's pay minus penalties and costs so far (yuan).
    finishing_mask, done_today_mask, rest_today_mask : bool (w,)
        Finishing the queue before logging off; done for the day; resting today.
    consecutive_days : int16 (w,)
        Days worked in a row before today.
    streak_net : float32 (w,)
        Net earnings over the current streak of working days.
    day_stats : float32 (w, N_WD)
        Today's counters (``WD_COLUMNS``).
    """

    x: np.ndarray
    y: np.ndarray
    true_speed_kmh: np.ndarray
    true_target_earnings: np.ndarray
    true_max_online_minutes: np.ndarray
    true_start_minute: np.ndarray
    true_reservation_rate: np.ndarray
    true_rest_streak: np.ndarray
    true_break_after_minutes: np.ndarray
    true_surge_premium: np.ndarray
    state: np.ndarray
    queue: np.ndarray
    queue_len: np.ndarray
    activity_left: np.ndarray
    break_left: np.ndarray
    pause_pending: np.ndarray
    online_today: np.ndarray
    stretch_minutes: np.ndarray
    pause_minutes: np.ndarray
    fatigue: np.ndarray
    net_today: np.ndarray
    finishing_mask: np.ndarray
    done_today_mask: np.ndarray
    rest_today_mask: np.ndarray
    consecutive_days: np.ndarray
    streak_net: np.ndarray
    day_stats: np.ndarray

    @property
    def n_workers(self) -> int:
        """Number of couriers."""
        return int(self.x.shape[0])


def make_workers(sc: Scenario, city: City, rng: np.random.Generator) -> Workers:
    """Draw the fleet's couriers (traits from ``fleet.workers``)."""
    fs = sc.fleet
    ws = fs.workers
    n = fs.n_workers
    f4 = np.float32
    start = rng.integers(0, city.merchant_x.size, n)
    x = np.clip(city.merchant_x[start] + rng.normal(0, 1.0, n), 0, city.size_km).astype(f4)
    y = np.clip(city.merchant_y[start] + rng.normal(0, 1.0, n), 0, city.size_km).astype(f4)
    speed = np.clip(rng.normal(ws.speed_kmh_mean, ws.speed_kmh_sd, n), 8.0, 30.0).astype(f4)
    target = (ws.target_earnings_mean * rng.lognormal(0.0, ws.target_earnings_sigma, n)).astype(f4)
    max_min = (60.0 * np.clip(rng.normal(ws.max_online_hours_mean, 1.5, n), 4.0, 16.0)).astype(f4)
    late = rng.random(n) < ws.late_shift_share
    early_h = rng.uniform(ws.start_hour_min, ws.start_hour_max, n)
    late_h = rng.uniform(ws.late_start_hour_min, ws.late_start_hour_max, n)
    start_min = (60.0 * np.where(late, late_h, early_h)).astype(f4)
    reservation = (ws.reservation_pay_per_hour * rng.lognormal(0.0, 0.25, n)).astype(f4)
    streak = np.clip(np.rint(rng.normal(ws.rest_streak_days_mean, 1.0, n)), 1, 30).astype(np.int16)
    brk = (60.0 * np.clip(rng.normal(ws.break_after_hours_mean, 0.75, n), 0.5, 24.0)).astype(f4)
    surge = (ws.surge_response_premium * rng.lognormal(0.0, 0.5, n)).astype(f4)
    always = fs.shifts == "always_on"
    # history before the run: how many days in a row each courier has already worked
    consecutive = rng.integers(0, np.maximum(streak.astype(np.int64), 1)).astype(np.int16)
    z = np.zeros(n, dtype=f4)
    return Workers(
        x=x, y=y, true_speed_kmh=speed, true_target_earnings=target, true_max_online_minutes=max_min,
        true_start_minute=start_min, true_reservation_rate=reservation, true_rest_streak=streak,
        true_break_after_minutes=brk, true_surge_premium=surge,
        state=np.full(n, 1 if always else 0, dtype=np.int8),
        queue=np.full((n, fs.max_batch), -1, dtype=np.int32), queue_len=np.zeros(n, dtype=np.int8),
        activity_left=z.copy(), break_left=z.copy(), pause_pending=z.copy(), online_today=z.copy(),
        stretch_minutes=z.copy(), pause_minutes=np.full(n, 1e6, dtype=f4), fatigue=z.copy(), net_today=z.copy(),
        finishing_mask=np.zeros(n, dtype=np.bool_), done_today_mask=np.zeros(n, dtype=np.bool_),
        rest_today_mask=np.zeros(n, dtype=np.bool_), consecutive_days=consecutive,
        streak_net=(consecutive.astype(f4) * target), day_stats=np.zeros((n, N_WD), dtype=f4),
    )  # fmt: skip


_ORDER_FIELDS = {
    "created": np.float64,  # minute since the start of the run
    "ready": np.float64,  # when the food is ready
    "ready_hat": np.float64,  # when the platform expects it ready (creation + the merchant's mean preparation)
    "merchant": np.int32,
    "pickup_x": np.float32,
    "pickup_y": np.float32,
    "drop_x": np.float32,
    "drop_y": np.float32,
    "trip_km": np.float32,  # merchant to customer
    "service_minutes": np.float32,  # service time without geography
    "user_idx": np.int64,  # the feed user who ordered (-1: demand profile)
    "status": np.int8,
    "worker": np.int32,
    "assigned_at": np.float64,
    "picked_at": np.float64,
    "started_at": np.float64,  # when the courier started on it (assignment to an idle courier, or the box's turn)
    "done_at": np.float64,  # delivered or cancelled
    "deadline_minutes": np.float32,  # promised delivery time, minutes after creation
    "pay": np.float32,
    "late_penalty": np.float32,  # yuan per late minute
    "excuse_mask": np.bool_,
    "penalty": np.float32,
    "late_minutes": np.float32,
    "uncontrollable_minutes": np.float32,  # delay not the courier's doing: before the start, weather, the merchant
    "route_km": np.float32,  # the courier's distance to the merchant at assignment plus trip_km
    "pickup_km": np.float32,
    "declines": np.int32,
    "last_decliner": np.int32,
    "weather_at_creation": np.float32,
}


@dataclass
class Orders:
    """Every order of the run so far (ids ``0 .. n - 1``), growing as orders arrive.

    Columns are the keys of ``_ORDER_FIELDS`` (see the comments there); each
    is an array with room for ``capacity`` orders, of which the first ``n``
    are in use.
    """

    n: int = 0
    cols: dict = field(default_factory=dict)

    @classmethod
    def empty(cls, capacity: int) -> Orders:
        """Orders with room for ``capacity`` before growing."""
        cols = {}
        for name, dt in _ORDER_FIELDS.items():
            cols[name] = np.zeros(max(capacity, 16), dtype=dt)
        return cls(0, cols)

    def reserve(self, extra: int) -> None:
        """Make room for ``extra`` more orders (doubling the arrays when needed)."""
        cap = self.cols["created"].shape[0]
        if self.n + extra <= cap:
            return
        new = max(2 * cap, self.n + extra)
        for name, a in self.cols.items():
            b = np.zeros(new, dtype=a.dtype)
            b[: self.n] = a[: self.n]
            self.cols[name] = b

    def __getattr__(self, name):
        cols = self.__dict__.get("cols", {})
        if name in cols:
            return cols[name]
        raise AttributeError(name)

    def frame_columns(self) -> dict[str, np.ndarray]:
        """Return copies of the used part of every column."""
        return {k: v[: self.n].copy() for k, v in self.cols.items()}


def weather_schedule(fs: FleetSettings, days: int, rng: np.random.Generator) -> np.ndarray:
    """Speed factor of every fleet step of the run (1 in good weather), float32 (n_steps,).

    Events start at uniform times; their number a week is Poisson with mean
    ``weather_events_per_week``, their length exponential with mean ``weather_hours_mean``.
    """
    n_steps = int(round(days * 1440 / fs.step_minutes))
    factor = np.ones(n_steps, dtype=np.float32)
    n_events = rng.poisson(fs.weather_events_per_week * days / 7.0)
    starts = rng.uniform(0.0, days * 1440.0, n_events)
    lengths = rng.exponential(60.0 * fs.weather_hours_mean, n_events)
    for s0, ln in zip(starts, lengths):
        a = int(s0 / fs.step_minutes)
        b = int(min(days * 1440.0, s0 + ln) / fs.step_minutes)
        factor[a : b + 1] = fs.weather_speed_factor
    return factor

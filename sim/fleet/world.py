"""The fleet phase of a tick: orders arrive, the dispatcher offers them, couriers ride.

:class:`Fleet` lives inside :class:`sim.engine.FeedWorld` (same clock, same
key) and runs once per tick after the feed and the market, in steps of
``fleet.step_minutes``. One step at time ``t``:

1. cancellations: open orders older than ``patience_minutes`` are cancelled
   by their customers;
2. access: the dispatcher's optional ``access`` may pause couriers or stop
   their orders for the day (a busy courier finishes its queue first);
   (before it, offline couriers may log on early when pay per hour is well above its
   recent average: a response to surge pay);
3. dispatch: the dispatcher offers the open orders created before ``t``
   (oldest first) to couriers, with a deadline, pay and a lateness penalty;
   each courier accepts or declines (kernel ``apply_offers``);
4. riding (kernel ``worker_step``): couriers move, pick up, deliver, log on
   and off and take breaks until ``t + step``;
5. arrivals (kernels ``poisson_count``, ``make_orders``): the orders of
   ``[t, t + step)`` from the demand profile; with ``orders = "market"`` the
   market's deliveries of the tick were added before the first step.

After the tick the dispatcher's ``fit`` sees the orders finished in it; at
midnight its optional ``settle`` tops up the day's pay, the day's counters are
recorded and each courier decides whether to rest the next day.

Public objects
--------------
Fleet
"""

from __future__ import annotations

import numpy as np

from sim.fleet.state import (
    DEMAND_PROFILE,
    N_WD,
    O_CANCELLED,
    O_DELIVERED,
    O_OPEN,
    W_BREAK,
    W_IDLE,
    W_OFFLINE,
    WD,
    Orders,
    make_city,
    make_workers,
    weather_schedule,
)
from sim.fleet.view import DeliveryLog, FleetView, checked_access, checked_dispatch, checked_settle
from sim.kernels import fleet as K
from sim.platform import PluginError, _readonly
from sim.rng import Purpose, hash4, spawn_generators, uniform_np
from sim.scenario import Scenario

__all__ = ["Fleet", "SERIES_COLUMNS", "delivery_log"]

SERIES_COLUMNS = ("in_system", "open", "online", "idle")  # sampled at the end of every fleet step
RANDOM_DAY_OFF = 0.03  # chance a courier takes an unplanned day off (illness, errands): modelling choice
EARLIEST_LOGON_MINUTE = 6 * 60.0  # couriers answer a surge before their start hour from 06:00 (modelling choice)
PAY_REFERENCE_HALF_LIFE_TICKS = 96  # the recent average pay per hour couriers compare with: one day of 15-min ticks


class Fleet:
    """The delivery fleet of a :class:`sim.engine.FeedWorld`.

    Parameters
    ----------
    scenario : Scenario
        Must have a ``fleet`` table.
    replication : int
    key : int
        The run's kernel key (common random numbers with the counterfactual).
    n_users : int
        Feed users (homes for market orders).
    dispatcher : object, optional
        A dispatcher instance to use instead of ``scenario.dispatcher``.
    """

    def __init__(self, scenario: Scenario, replication: int, key: int, n_users: int, dispatcher=None):
        from sim.registry import make_dispatcher

        sc = self.scenario = scenario
        fs = self.settings = scenario.fleet
        gens = spawn_generators(sc.seed, ("city", "couriers", "weather"), replication)
        self.key = key
        self.dispatch_key = int(hash4(key, 2, 0, Purpose.RECOMMENDER_KEY) >> np.uint64(1))
        self.city = make_city(fs, n_users, gens["city"])
        self.workers = make_workers(sc, self.city, gens["couriers"])
        self.weather = weather_schedule(fs, sc.clock.days, gens["weather"])
        self.params = K.pack_params(sc)
        self.dt = float(fs.step_minutes)
        self.steps_per_tick = int(round(sc.clock.tick_minutes / self.dt))
        days = sc.clock.days
        per_day = fs.orders_per_day if fs.orders == "profile" else max(100.0, 0.5 * n_users)
        self.orders = Orders.empty(int(per_day * days * 1.3) + 64)
        self.dispatcher = make_dispatcher(sc.dispatcher if dispatcher is None else dispatcher)
        self.label = sc.dispatcher.kind if dispatcher is None else type(dispatcher).__name__
        w = self.workers.n_workers
        self.worker_days = np.zeros((days, w, N_WD), dtype=np.float32)
        self.rest_planned = np.zeros((days, w), dtype=np.bool_)
        self.series = np.zeros((self.weather.shape[0], len(SERIES_COLUMNS)), dtype=np.float32)
        self.active_ids = np.zeros(0, dtype=np.int64)
        self.n_offers = 0
        # couriers still finishing yesterday's orders after midnight: their logging off is not today's
        self._carry_mask = np.zeros(w, dtype=np.bool_)
        # the pay per hour couriers see: this tick's accepted offers, and its recent average
        self._pay_sum = self._pay_minutes = 0.0
        self.pay_rate_now = self.pay_rate_ref = float("nan")
        self.view = FleetView(
            key=self.dispatch_key, n_workers=w, max_batch=fs.max_batch, geography=fs.geography,
            handling_minutes=fs.handling_minutes, prep_minutes_mean=fs.prep_minutes_mean,
            service_minutes_mean=fs.service_minutes_mean, city_km=fs.city_km, step_minutes=self.dt,
        )  # fmt: skip
        self._static_view()
        self._refresh_view(0, 0, 0.0, np.zeros(w, dtype=np.int32), 0)

    # -- the view ------------------------------------------------------------------------
    def _open_to_orders(self) -> np.ndarray:
        """Couriers logged on, not on a break, not finishing and with no pause pending: bool (n_workers,)."""
        w = self.workers
        return (w.state != W_OFFLINE) & (w.state != W_BREAK) & ~w.finishing_mask & (w.pause_pending == 0)

    def _capacity(self) -> np.ndarray:
        room = self.settings.max_batch - self.workers.queue_len.astype(np.int32)
        return np.where(self._open_to_orders(), room, 0).astype(np.int32)

    def _static_view(self) -> None:
        """Set the view's courier arrays once: they are live arrays the engine updates in place."""
        w = self.workers
        ds = w.day_stats
        self.view._set(
            worker_x=w.x, worker_y=w.y, worker_state=w.state, worker_queue_len=w.queue_len,
            worker_online_minutes_today=w.online_today, worker_stretch_minutes=w.stretch_minutes,
            worker_pause_minutes=w.pause_minutes, worker_consecutive_days=w.consecutive_days,
            worker_deliveries_today=ds[:, WD["deliveries"]], worker_gross_today=ds[:, WD["gross_pay"]],
            worker_penalties_today=ds[:, WD["penalties"]], worker_km_today=ds[:, WD["km"]],
        )  # fmt: skip

    def _refresh_view(self, fstep: int, tick: int, t0: float, capacity: np.ndarray, n_open: int) -> None:
        """Set what changes between dispatch rounds: the clock, capacities, queue tails and the orders so far.

        Orders are stored in order of creation (market orders are sorted when added), so the orders
        created before ``t0`` are a prefix; the view shows only those.
        """
        w, o = self.workers, self.orders
        n = int(np.searchsorted(o.created[: o.n], t0, side="left")) if self.settings.orders == "market" else o.n
        has_q = w.queue_len > 0
        if has_q.any():
            last = w.queue[np.arange(w.n_workers), np.maximum(w.queue_len.astype(np.int64) - 1, 0)]
            tail_x = np.where(has_q, o.drop_x[np.maximum(last, 0)], w.x).astype(np.float32)
            tail_y = np.where(has_q, o.drop_y[np.maximum(last, 0)], w.y).astype(np.float32)
        else:
            tail_x, tail_y = w.x, w.y
        self.view._set(
            step=fstep, tick=tick, day=int(t0 // 1440), minute=t0, minute_of_day=t0 % 1440.0,
            hour=int((t0 % 1440.0) // 60), weather_factor=float(self.weather[min(fstep, self.weather.size - 1)]),
            worker_tail_x=tail_x, worker_tail_y=tail_y, worker_capacity=capacity,
            order_created=o.created[:n], order_ready_hat=o.ready_hat[:n], order_pickup_x=o.pickup_x[:n],
            order_pickup_y=o.pickup_y[:n], order_drop_x=o.drop_x[:n], order_drop_y=o.drop_y[:n],
            order_trip_km=o.trip_km[:n], order_merchant=o.merchant[:n], order_status=o.status[:n],
            order_declines=o.declines[:n], order_last_decliner=o.last_decliner[:n], n_open=n_open,
        )  # fmt: skip

    def _call(self, meth: str, *args):
        try:
            return getattr(self.dispatcher, meth)(*args)
        except PluginError:
            raise
        except Exception as exc:  # noqa: BLE001 - a plugin's failure is reported as the plugin's
            raise PluginError(f"dispatcher '{self.label}': {meth}() raised {type(exc).__name__}: {exc}") from exc

    # -- orders ----------------------------------------------------------------------------
    def _init_new(self, first: int, count: int, user_idx=None) -> None:
        o = self.orders
        sl = slice(first, first + count)
        o.status[sl] = O_OPEN
        o.worker[sl] = -1
        o.last_decliner[sl] = -1
        o.user_idx[sl] = -1 if user_idx is None else user_idx
        for c in ("assigned_at", "picked_at", "started_at", "done_at"):
            o.cols[c][sl] = np.nan
        o.deadline_minutes[sl] = np.nan
        step_idx = np.minimum((o.created[sl] / self.dt).astype(np.int64), self.weather.size - 1)
        o.weather_at_creation[sl] = self.weather[step_idx]
        self.active_ids = np.concatenate([self.active_ids, np.arange(first, first + count, dtype=np.int64)])

    def _profile_orders(self, fstep: int, t0: float, weather: float) -> None:
        fs = self.settings
        hour = int((t0 % 1440.0) // 60)
        boost = fs.weather_demand_factor if weather < 1.0 else 1.0
        shape = DEMAND_PROFILE[hour] if fs.demand_profile == "meals" else 1.0
        lam = fs.orders_per_day / 1440.0 * self.dt * shape * boost
        count = int(K.poisson_count(self.key, fstep, lam))
        if count == 0:
            return
        o, first = self.orders, self.orders.n
        o.reserve(count)
        c, sl = self.city, slice(first, first + count)
        K.make_orders(self.key, first, t0, self.dt, fs.geography, fs.delivery_radius_km, fs.city_km,
                      fs.service_minutes_mean, c.merchant_x, c.merchant_y, c.merchant_prep_minutes,
                      o.created[sl], o.ready[sl], o.ready_hat[sl], o.merchant[sl], o.pickup_x[sl], o.pickup_y[sl],
                      o.drop_x[sl], o.drop_y[sl], o.trip_km[sl], o.service_minutes[sl])  # fmt: skip
        o.n = first + count
        self._init_new(first, count)

    def add_market_orders(self, tick: int, tick_minutes: float, user_idx: np.ndarray, product_idx: np.ndarray) -> None:
        """Turn the tick's platform purchases into delivery orders (a share ``delivery_share`` of them).

        Each order arrives at a uniform time in the tick, from merchant ``product % n_merchants``
        to the buyer's home; the draws are keyed on (tick, user).
        """
        fs, c = self.settings, self.city
        keep = uniform_np(self.key, tick, user_idx, Purpose.DELIVERY) < fs.delivery_share
        user_idx, product_idx = user_idx[keep], product_idx[keep]
        created_u = uniform_np(self.key, tick, user_idx, Purpose.ORDER_MINUTE)
        order = np.lexsort((user_idx, created_u))  # ids in order of creation: first come, first offered
        user_idx, product_idx = user_idx[order], product_idx[order]
        count = int(user_idx.size)
        if count == 0:
            return
        o, first = self.orders, self.orders.n
        o.reserve(count)
        sl = slice(first, first + count)
        t0 = tick * tick_minutes
        m = (product_idx.astype(np.int64) % c.merchant_x.size).astype(np.int32)
        created = t0 + tick_minutes * created_u[order]
        prep_u = uniform_np(self.key, tick, user_idx, Purpose.ORDER_PREP)
        prep = c.merchant_prep_minutes[m].astype(np.float64) * (0.5 - 0.5 * np.log1p(-prep_u))
        o.created[sl] = created
        o.merchant[sl] = m
        o.pickup_x[sl], o.pickup_y[sl] = c.merchant_x[m], c.merchant_y[m]
        o.drop_x[sl], o.drop_y[sl] = c.user_home_x[user_idx], c.user_home_y[user_idx]
        o.trip_km[sl] = np.abs(o.drop_x[sl] - o.pickup_x[sl]) + np.abs(o.drop_y[sl] - o.pickup_y[sl])
        if fs.geography:
            o.ready[sl] = created + prep
            o.ready_hat[sl] = created + c.merchant_prep_minutes[m]
            o.service_minutes[sl] = 0.0
        else:
            o.ready[sl] = created
            o.ready_hat[sl] = created
            su = uniform_np(self.key, tick, user_idx, Purpose.SERVICE)
            o.service_minutes[sl] = -fs.service_minutes_mean * np.log1p(-su)
        o.n = first + count
        self._init_new(first, count, user_idx=user_idx)

    # -- the phase -----------------------------------------------------------------------
    def _access(self, t0: float) -> None:
        if not callable(getattr(self.dispatcher, "access", None)):
            return
        w = self.workers
        idx = np.flatnonzero(self._open_to_orders())
        if idx.size == 0:
            return
        ro = _readonly(idx)
        minutes = checked_access(self._call("access", ro, self.view), idx.size, self.label)
        minutes[minutes >= 1440.0 - t0 % 1440.0] = np.inf  # a pause past midnight stops the courier for the day
        stop = idx[np.isinf(minutes)]
        w.finishing_mask[stop] = True
        w.done_today_mask[stop] = True
        pause = np.isfinite(minutes) & (minutes > 0)
        p_idx, p_min = idx[pause], minutes[pause].astype(np.float32)
        idle = w.state[p_idx] == W_IDLE
        w.state[p_idx[idle]] = W_BREAK
        w.break_left[p_idx[idle]] = p_min[idle]
        w.pause_minutes[p_idx[idle]] = 0.0
        w.pause_pending[p_idx[~idle]] = p_min[~idle]

    def _answer_surge(self, t0: float) -> None:
        """Offline couriers log on before their start hour when pay per hour is well above its recent average.

        A courier joins (taking orders from the next step) when the last tick's pay per hour exceeds the
        one-day average by their ``true_surge_premium``, between 06:00 and their start minute, on a day they
        neither rest nor have finished.
        """
        if self.settings.shifts == "always_on" or not (self.pay_rate_ref > 0):
            return
        w = self.workers
        minute = t0 % 1440.0
        if minute < EARLIEST_LOGON_MINUTE:
            return
        surge = self.pay_rate_now / self.pay_rate_ref - 1.0
        join = ((w.state == W_OFFLINE) & ~w.done_today_mask & ~w.rest_today_mask & (minute < w.true_start_minute)
                & (surge >= w.true_surge_premium))  # fmt: skip
        w.state[join] = W_IDLE

    def _dispatch(self, fstep: int, t0: float, open_ids: np.ndarray) -> None:
        capacity = self._capacity()
        self._refresh_view(fstep, self.view.tick, t0, capacity, open_ids.size)
        ro = _readonly(open_ids)
        out = self._call("dispatch", ro, self.view)
        oid, wid, deadline, pay, pen, excuse = checked_dispatch(out, open_ids, capacity, self.label)
        if oid.size == 0:
            return
        accepted = np.zeros(oid.size, dtype=np.bool_)
        K.apply_offers(self.key, fstep, t0, oid, wid, deadline, pay, pen, excuse, self.params,
                       *K.offer_arrays(self.workers, self.orders), accepted)  # fmt: skip
        self.n_offers += int(oid.size)
        # the pay per hour of the accepted offers (expected riding at the fleet's mean speed, two handovers)
        fs, o = self.settings, self.orders
        took = oid[accepted]
        if took.size:
            if fs.geography:
                per_order = o.route_km[took].astype(np.float64) / fs.workers.speed_kmh_mean * 60.0
                minutes = (per_order + 2.0 * fs.handling_minutes).sum()
            else:
                minutes = fs.service_minutes_mean * took.size
            self._pay_sum += float(o.pay[took].astype(np.float64).sum())
            self._pay_minutes += float(minutes)

    def step(self, tick: int) -> None:
        """Run the fleet's steps of one tick, then the dispatcher's ``fit``."""
        fs, w = self.settings, self.workers
        patience = fs.patience_minutes
        self.view._set(tick=tick)
        for s in range(self.steps_per_tick):
            fstep = tick * self.steps_per_tick + s
            t0 = fstep * self.dt
            weather = float(self.weather[fstep])
            o = self.orders
            act = self.active_ids
            status = o.status[act]
            open_ids = act[(status == O_OPEN) & (o.created[act] < t0)]
            open_ids = open_ids[np.lexsort((open_ids, o.created[open_ids]))]  # oldest first
            expired = open_ids[t0 - o.created[open_ids] >= patience]
            if expired.size:
                o.status[expired] = O_CANCELLED
                o.done_at[expired] = o.created[expired] + patience
                open_ids = open_ids[t0 - o.created[open_ids] < patience]
            self._answer_surge(t0)  # before access: the platform's rules apply to couriers who just joined
            self._access(t0)
            if open_ids.size:
                self._dispatch(fstep, t0, open_ids)
            K.worker_step(t0, self.dt, t0 % 1440.0, weather, self.params, *K.worker_step_arrays(w, o))
            if self._carry_mask.any():
                gone = self._carry_mask & (w.state == W_OFFLINE)
                w.done_today_mask[gone] = False  # finished yesterday's box: today is still to come
                self._carry_mask &= ~gone
            if fs.orders == "profile":
                self._profile_orders(fstep, t0, weather)
            o = self.orders
            act = self.active_ids
            st = o.status[act]
            t1 = t0 + self.dt
            live = (st != O_DELIVERED) & (st != O_CANCELLED) & (o.created[act] < t1)
            self.series[fstep] = (
                live.sum(), ((st == O_OPEN) & (o.created[act] < t1)).sum(),
                (w.state != W_OFFLINE).sum(), (w.state == W_IDLE).sum(),
            )  # fmt: skip
        self._fit()

    def _update_pay_rates(self) -> None:
        if self._pay_minutes > 0:
            self.pay_rate_now = self._pay_sum / self._pay_minutes * 60.0
            a = 0.5 ** (1.0 / PAY_REFERENCE_HALF_LIFE_TICKS)
            ref = self.pay_rate_ref
            self.pay_rate_ref = self.pay_rate_now if not ref > 0 else a * ref + (1.0 - a) * self.pay_rate_now
        self._pay_sum = self._pay_minutes = 0.0

    def _fit(self) -> None:
        self._update_pay_rates()
        o, act = self.orders, self.active_ids
        st = o.status[act]
        done = (st == O_DELIVERED) | (st == O_CANCELLED)
        log = delivery_log(o, act[done])
        self.active_ids = act[~done]
        end = (self.view.tick + 1) * self.steps_per_tick
        self._refresh_view(end - 1, self.view.tick, end * self.dt, self._capacity(), 0)
        self._call("fit", self.view, log)

    def end_of_day(self, day: int) -> None:
        """Settle the day's pay, record it, decide tomorrow's rest days and reset today's counters."""
        w, ws = self.workers, self.settings.workers
        # a day worked is a day with order-taking: finishing yesterday's last orders after midnight is not one
        worked = w.day_stats[:, WD["order_taking_minutes"]] > 0
        if callable(getattr(self.dispatcher, "settle", None)):
            idx = np.flatnonzero(w.day_stats[:, WD["online_minutes"]] > 0)
            end = (day + 1) * 1440.0  # midnight
            self._refresh_view(int(end / self.dt) - 1, self.view.tick, end, self._capacity(), 0)
            top = checked_settle(self._call("settle", _readonly(idx), self.view), idx.size, self.label)
            w.day_stats[idx, WD["top_up"]] += top.astype(np.float32)
            w.net_today[idx] += top.astype(np.float32)
        if day < self.worker_days.shape[0]:
            self.worker_days[day] = w.day_stats
            self.rest_planned[day] = w.rest_today_mask
        w.consecutive_days[:] = np.where(worked, w.consecutive_days + 1, 0).astype(np.int16)
        w.streak_net[:] = np.where(worked, w.streak_net + w.net_today, 0.0).astype(np.float32)
        if self.settings.shifts == "always_on":
            rest = np.zeros(w.n_workers, dtype=np.bool_)
        else:
            earned = w.streak_net >= ws.rest_target_share * w.true_target_earnings * w.consecutive_days
            planned = (w.consecutive_days >= w.true_rest_streak) & earned
            ids = np.arange(w.n_workers)
            rest = planned | (uniform_np(self.key, day, ids, Purpose.WORKER_REST) < RANDOM_DAY_OFF)
        w.rest_today_mask[:] = rest
        self._carry_mask = (w.state != W_OFFLINE) & w.finishing_mask
        w.day_stats[:] = 0.0
        w.online_today[:] = 0.0
        w.net_today[:] = 0.0
        w.done_today_mask[:] = False

    def deliveries(self) -> dict[str, np.ndarray]:
        """Every order of the run so far, one array per column (copies)."""
        return self.orders.frame_columns()


def delivery_log(orders: Orders, order_idx: np.ndarray) -> DeliveryLog:
    """Return the :class:`DeliveryLog` of finished orders ``order_idx`` (read-only copies of their records)."""
    o, fin = orders, np.asarray(order_idx, dtype=np.int64)
    return DeliveryLog(
        order_idx=_readonly(fin.copy()), worker_idx=_readonly(o.worker[fin]),
        delivered_mask=_readonly(o.status[fin] == O_DELIVERED), duration_minutes=_readonly(o.done_at[fin] - o.created[fin]),
        deadline_minutes=_readonly(o.deadline_minutes[fin]), route_km=_readonly(o.route_km[fin]),
        pickup_km=_readonly(o.pickup_km[fin]), trip_km=_readonly(o.trip_km[fin]),
        late_minutes=_readonly(o.late_minutes[fin]), penalty=_readonly(o.penalty[fin]), pay=_readonly(o.pay[fin]),
    )  # fmt: skip

"""The delivery fleet's kernels: order arrivals, couriers' movement and shifts, offers.

Same guarantees as :mod:`sim.kernels.feed`: every random number is keyed on
(key, step, agent, purpose), so results are bitwise identical for any number
of threads. ``worker_step`` runs in parallel over couriers; each iteration
writes only its own courier's state and the orders in that courier's queue
(an order is carried by one courier at a time), so no two iterations write
the same entry. ``apply_offers`` runs sequentially (several offers may go to
one courier in a step); offers are few per step. The plain twins are in
:mod:`sim.kernels.reference_fleet`.

The model (time in minutes, distance in km, Manhattan distances):

- arrivals: a Poisson number of orders per step (inverse transform on one
  uniform per chunk of mean at most ``_POISSON_CHUNK``); each order's merchant, the
  customer's distance (uniform over a disc of ``delivery_radius``) and
  direction, the merchant's preparation time (``prep x (0.5 + 0.5 Exp(1))``,
  mean ``prep``) and the arrival time within the step are keyed on the order id,
  so every dispatcher faces the same orders;
- riding: a courier rides at ``speed x weather x (1 - fatigue_slowdown x fatigue)``;
  the order's *uncontrollable* delay (not the courier's doing) is the minutes
  before the courier could start it (waiting for a courier, then for the
  orders ahead in the box: ``started_at - created``), minutes lost to weather
  (``(1 - weather)`` of each minute ridden) and minutes waited at the merchant
  past the platform's estimate;
- service: orders in a courier's queue are served one after another (ride to
  the merchant, wait until ready, hand over ``handling`` minutes, ride to the
  customer, hand over); without geography a courier serves its order for an
  exponential time of mean ``service_minutes_mean`` (an M/M/c server);
- pay: a delivered order pays the dispatcher's ``pay``, less a penalty of
  ``late_penalty`` yuan per late minute (the late minutes less the
  uncontrollable ones when the order's ``excuse`` flag is set), never more
  than the order's pay;
- shifts: a courier logs on at their start minute unless resting or done,
  logs off once today's net earnings reach the target, the day's
  order-taking reaches their maximum, or it is 23:00 (a busy courier takes no
  more orders and logs off when the queue is served), and takes a voluntary
  break when the stretch passes their break point and earnings are on
  schedule (``net / target >= online / max_online``);
- acceptance: an offer is accepted with probability
  ``1 / (1 + exp(-(logit(accept_at_reservation) + accept_slope x (rate / reservation - 1))))``,
  ``rate`` the offer's pay per hour of its expected riding and handling time.

Public objects
--------------
poisson_count, make_orders, worker_step, apply_offers
P_*
    Indices of the parameter vector (:func:`pack_params`).
pack_params
    The parameter vector of a scenario.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from sim.fleet.state import (
    O_ASSIGNED,
    O_DELIVERED,
    O_PICKED,
    PAUSE_DONE_MINUTES,
    PAUSE_RESET_MINUTES,
    W_AT_CUSTOMER,
    W_AT_MERCHANT,
    W_BREAK,
    W_IDLE,
    W_OFFLINE,
    W_TO_DROP,
    W_TO_PICKUP,
    WD,
)
from sim.rng import Purpose, uniform

__all__ = [
    "apply_offers",
    "make_orders",
    "offer_arrays",
    "pack_params",
    "poisson_count",
    "worker_step",
    "worker_step_arrays",
]

_POISSON_CHUNK = 20.0  # largest mean drawn by one inverse transform (exp(-20) is far from underflow)
STRETCH_LIMIT_MINUTES = 240.0  # SAMR 2025: after > 4 h continuous, no new orders for 20 min
DAY_LIMIT_MINUTES = 480.0  # SAMR 2025: order-taking <= 8 h a day by default
LAST_LOGON_MINUTE = 23 * 60.0  # couriers stop taking orders at 23:00 (modelling choice)

(P_HANDLING, P_GEOGRAPHY, P_ALWAYS_ON, P_COST_PER_KM, P_DAILY_COST, P_FATIGUE_HALF_LIFE, P_FATIGUE_SLOWDOWN,
 P_BREAK_MINUTES, P_ACCEPT_LOGIT, P_ACCEPT_SLOPE, P_SERVICE_MEAN, P_RADIUS, P_CITY, P_PREP_MEAN) = range(14)  # fmt: skip
N_PARAMS = 14

_P_COUNT = Purpose.ORDER_COUNT
_P_MERCHANT = Purpose.ORDER_MERCHANT
_P_RADIUS = Purpose.ORDER_RADIUS
_P_ANGLE = Purpose.ORDER_ANGLE
_P_PREP = Purpose.ORDER_PREP
_P_MINUTE = Purpose.ORDER_MINUTE
_P_ACCEPT = Purpose.ACCEPT
_P_SERVICE = Purpose.SERVICE

_W_ONLINE = WD["online_minutes"]
_W_TAKING = WD["order_taking_minutes"]
_W_BUSY = WD["busy_minutes"]
_W_BREAK = WD["break_minutes"]
_W_DELIV = WD["deliveries"]
_W_LATE = WD["late_deliveries"]
_W_GROSS = WD["gross_pay"]
_W_PEN = WD["penalties"]
_W_PEN_UNC = WD["penalties_uncontrollable"]
_W_KM = WD["km"]
_W_COSTS = WD["costs"]
_W_OFFERS = WD["offers"]
_W_DECLINES = WD["declines"]
_W_AFTER4 = WD["offers_after_4h"]
_W_AFTER8 = WD["offers_after_8h"]
_W_MAXSTRETCH = WD["max_stretch_minutes"]


def pack_params(sc) -> np.ndarray:
    """Return the fleet's parameter vector, float64 (N_PARAMS,), indexed by the ``P_*`` constants."""
    fs, ws = sc.fleet, sc.fleet.workers
    p = np.zeros(N_PARAMS, dtype=np.float64)
    p[P_HANDLING] = fs.handling_minutes
    p[P_GEOGRAPHY] = 1.0 if fs.geography else 0.0
    p[P_ALWAYS_ON] = 1.0 if fs.shifts == "always_on" else 0.0
    p[P_COST_PER_KM] = ws.cost_per_km
    p[P_DAILY_COST] = ws.daily_cost
    p[P_FATIGUE_HALF_LIFE] = 60.0 * ws.fatigue_half_life_hours
    p[P_FATIGUE_SLOWDOWN] = ws.fatigue_slowdown
    # a voluntary break lasts at least the 20-minute pause that ends a stretch (a shorter one would not,
    # and a courier on schedule would break again at once)
    p[P_BREAK_MINUTES] = max(ws.break_minutes, PAUSE_RESET_MINUTES) if ws.break_minutes > 0 else 0.0
    p[P_ACCEPT_LOGIT] = math.log(ws.accept_at_reservation / (1.0 - ws.accept_at_reservation))
    p[P_ACCEPT_SLOPE] = ws.accept_slope
    p[P_SERVICE_MEAN] = fs.service_minutes_mean
    p[P_RADIUS] = fs.delivery_radius_km
    p[P_CITY] = fs.city_km
    p[P_PREP_MEAN] = fs.prep_minutes_mean
    return p


def worker_step_arrays(w, o) -> tuple:
    """Return the state arrays :func:`worker_step` takes after ``P``, in its order.

    Parameters
    ----------
    w : sim.fleet.state.Workers
    o : sim.fleet.state.Orders
    """
    c = o.cols
    return (
        w.x, w.y, w.true_speed_kmh, w.true_target_earnings, w.true_max_online_minutes, w.true_start_minute,
        w.true_break_after_minutes, w.state, w.queue, w.queue_len, w.activity_left, w.break_left, w.pause_pending,
        w.online_today, w.stretch_minutes, w.pause_minutes, w.fatigue, w.net_today, w.finishing_mask,
        w.done_today_mask, w.rest_today_mask, w.day_stats,
        c["created"], c["ready"], c["ready_hat"], c["pickup_x"], c["pickup_y"], c["drop_x"], c["drop_y"],
        c["service_minutes"], c["deadline_minutes"], c["pay"], c["late_penalty"], c["excuse_mask"], c["status"],
        c["picked_at"], c["started_at"], c["done_at"], c["penalty"], c["late_minutes"], c["uncontrollable_minutes"],
    )  # fmt: skip


def offer_arrays(w, o) -> tuple:
    """Return the state arrays :func:`apply_offers` takes between ``P`` and ``out_accepted``, in its order."""
    c = o.cols
    return (
        w.x, w.y, w.true_speed_kmh, w.true_reservation_rate, w.state, w.queue, w.queue_len, w.activity_left,
        w.online_today, w.stretch_minutes, w.day_stats,
        c["pickup_x"], c["pickup_y"], c["drop_x"], c["drop_y"], c["trip_km"], c["service_minutes"], c["status"],
        c["worker"], c["assigned_at"], c["picked_at"], c["started_at"], c["deadline_minutes"], c["pay"], c["late_penalty"],
        c["excuse_mask"], c["route_km"], c["pickup_km"], c["declines"], c["last_decliner"],
    )  # fmt: skip


@nb.njit(cache=True)
def _poisson_inverse(u, lam):
    """Poisson(lam) by inverse transform of one uniform ``u``."""
    p = math.exp(-lam)
    k = 0
    cdf = p
    while u > cdf and k < 10_000:
        k += 1
        p *= lam / k
        cdf += p
        if k > lam and p < 1e-17:
            break  # the sum of the tail beyond is below 1e-16: the float64 CDF cannot rise further
    return k


@nb.njit(cache=True)
def poisson_count(key, step, lam):
    """Return the number of arrivals in a step with mean ``lam``, keyed on (key, step) (chunks of mean <= 20)."""
    if lam <= 0.0:
        return 0
    n_chunks = int(math.ceil(lam / _POISSON_CHUNK))
    each = lam / n_chunks
    total = 0
    for c in range(n_chunks):
        total += _poisson_inverse(uniform(key, step, c, _P_COUNT), each)
    return total


@nb.njit(cache=True)  # a few orders a step: one thread (waking others costs more than it saves)
def make_orders(key, first_id, t0, span, geography, radius, city, service_mean, m_x, m_y, m_prep,
                o_created, o_ready, o_ready_hat, o_merchant, o_px, o_py, o_dx, o_dy, o_trip, o_service):  # fmt: skip
    """Fill the columns of new orders ``first_id ..`` (as many as ``o_created`` has rows).

    Parameters
    ----------
    key : int
    first_id : int
        Id of the first new order (the draws are keyed on order ids).
    t0, span : float
        The orders arrive uniformly in ``[t0, t0 + span)`` (minutes since the start).
    geography : bool
    radius, city : float
        Delivery radius and city size (km).
    service_mean : float
        Mean service time without geography (minutes).
    m_x, m_y, m_prep : float32 (n_merchants,)
        Merchants' positions (km) and mean preparation times (minutes).
    o_* : (n_new,) output columns (see :data:`sim.fleet.state._ORDER_FIELDS`).
    """
    n = o_created.shape[0]
    n_m = m_x.shape[0]
    for j in range(n):
        oid = first_id + j
        created = t0 + span * uniform(key, 0, oid, _P_MINUTE)
        m = min(int(uniform(key, 0, oid, _P_MERCHANT) * n_m), n_m - 1)
        r = radius * math.sqrt(uniform(key, 0, oid, _P_RADIUS))
        a = 2.0 * math.pi * uniform(key, 0, oid, _P_ANGLE)
        px, py = m_x[m], m_y[m]
        dx = min(max(px + r * math.cos(a), 0.0), city)
        dy = min(max(py + r * math.sin(a), 0.0), city)
        prep = m_prep[m] * (0.5 - 0.5 * math.log(1.0 - uniform(key, 0, oid, _P_PREP)))
        o_created[j] = created
        o_merchant[j] = m
        o_px[j] = px
        o_py[j] = py
        o_dx[j] = dx
        o_dy[j] = dy
        o_trip[j] = abs(np.float32(dx) - px) + abs(np.float32(dy) - py)
        if geography:
            o_ready[j] = created + prep
            o_ready_hat[j] = created + m_prep[m]
            o_service[j] = 0.0
        else:
            o_ready[j] = created
            o_ready_hat[j] = created
            o_service[j] = -service_mean * math.log(1.0 - uniform(key, 0, oid, _P_SERVICE))


@nb.njit(cache=True)
def _deliver(i, o, t, day_stats, w_net, o_created, o_started, o_deadline, o_pay, o_late_pen, o_excuse, o_status,
             o_done_at, o_penalty, o_late, o_unc):  # fmt: skip
    o_status[o] = O_DELIVERED
    o_done_at[o] = t
    late = max(0.0, t - (o_created[o] + o_deadline[o]))
    # not the courier's doing: weather, the merchant's delay, and the wait before the courier could start the
    # order (for a courier to be assigned, and for the orders ahead in the box)
    unc = o_unc[o] + (o_started[o] - o_created[o])
    o_unc[o] = unc
    excused = unc if o_excuse[o] else 0.0
    penalised = max(0.0, late - excused)
    pen = min(float(o_pay[o]), float(o_late_pen[o]) * penalised)
    o_penalty[o] = pen
    o_late[o] = late
    day_stats[i, _W_DELIV] += 1.0
    if late > 0.0:
        day_stats[i, _W_LATE] += 1.0
    if penalised > 0.0:
        # of the penalised minutes, those the courier could not control (weather, the merchant)
        day_stats[i, _W_PEN_UNC] += pen * min(penalised, max(0.0, unc - excused)) / penalised
    day_stats[i, _W_GROSS] += o_pay[o]
    day_stats[i, _W_PEN] += pen
    w_net[i] += o_pay[o] - pen


@nb.njit(parallel=True, cache=True)
def worker_step(t0, dt, minute_of_day, weather, P,
                w_x, w_y, w_speed, w_target, w_max_online, w_start, w_break_after,
                w_state, w_queue, w_qlen, w_activity, w_break_left, w_pause_pending,
                w_online, w_stretch, w_pause, w_fatigue, w_net, w_finishing, w_done, w_rest, day_stats,
                o_created, o_ready, o_ready_hat, o_px, o_py, o_dx, o_dy, o_service, o_deadline, o_pay, o_late_pen,
                o_excuse, o_status, o_picked_at, o_started, o_done_at, o_penalty, o_late, o_unc):  # fmt: skip
    """Advance every courier from ``t0`` to ``t0 + dt`` (see the module docstring).

    Parameters
    ----------
    t0, dt : float
        Start of the step (minutes since the start of the run) and its length.
    minute_of_day : float
        ``t0`` modulo 1440.
    weather : float
        Speed factor of the step (1: good weather).
    P : float64 (N_PARAMS,)
    w_* : (n_workers,) or (n_workers, max_batch)
        Courier state (:class:`sim.fleet.state.Workers`), updated in place.
    day_stats : float32 (n_workers, N_WD)
        Today's counters, updated in place.
    o_* : (capacity,)
        Order columns, updated in place for the orders the couriers carry.
    """
    n = w_x.shape[0]
    handling = P[P_HANDLING]
    geo = P[P_GEOGRAPHY] > 0.5
    always = P[P_ALWAYS_ON] > 0.5
    cost_km = P[P_COST_PER_KM]
    hl = P[P_FATIGUE_HALF_LIFE]
    slow = P[P_FATIGUE_SLOWDOWN]
    brk_len = P[P_BREAK_MINUTES]
    for i in nb.prange(n):
        if w_state[i] == W_OFFLINE:
            w_pause[i] += dt
            if w_pause[i] >= PAUSE_DONE_MINUTES:
                w_stretch[i] = 0.0
            w_fatigue[i] *= 0.5 ** (dt / hl)
            if always:
                if not w_done[i]:
                    w_state[i] = W_IDLE  # back the day after the platform stopped it
            elif (not w_done[i] and not w_rest[i] and minute_of_day >= w_start[i]
                    and minute_of_day < LAST_LOGON_MINUTE):  # fmt: skip
                w_state[i] = W_IDLE  # taking orders from the next step
            continue
        taking = not w_finishing[i] and w_pause_pending[i] == 0.0
        t = t0
        budget = dt
        online = 0.0
        busy = 0.0
        brk = 0.0
        km = 0.0
        for _guard in range(64):  # at most a few state changes per step; the guard bounds the loop
            if budget <= 1e-9:
                break
            st = w_state[i]
            if st == W_BREAK:
                use = min(budget, w_break_left[i])
                w_break_left[i] -= use
                budget -= use
                t += use
                brk += use
                w_pause[i] += use
                if w_pause[i] >= PAUSE_DONE_MINUTES:
                    w_stretch[i] = 0.0
                if w_break_left[i] <= 1e-9:
                    w_break_left[i] = 0.0
                    w_state[i] = W_IDLE
                continue
            if st == W_IDLE:
                now = minute_of_day + (t - t0)
                online_now = w_online[i] + online
                leave = w_finishing[i]
                if not always and not leave:
                    leave = (now >= LAST_LOGON_MINUTE or online_now >= w_max_online[i]
                             or w_net[i] >= w_target[i])  # fmt: skip
                if leave:
                    w_state[i] = W_OFFLINE
                    w_done[i] = True
                    w_finishing[i] = False
                    w_pause[i] = budget
                    if w_pause[i] >= PAUSE_DONE_MINUTES:
                        w_stretch[i] = 0.0
                    budget = 0.0
                    break
                if w_pause_pending[i] > 0.0:
                    w_state[i] = W_BREAK
                    w_break_left[i] = w_pause_pending[i]
                    w_pause_pending[i] = 0.0
                    w_pause[i] = 0.0
                    continue
                stretch_now = w_stretch[i] + online
                on_schedule = w_net[i] * w_max_online[i] >= online_now * w_target[i]
                if not always and brk_len > 0.0 and stretch_now >= w_break_after[i] and on_schedule:
                    w_state[i] = W_BREAK
                    w_break_left[i] = brk_len
                    w_pause[i] = 0.0
                    continue
                online += budget  # idle, waiting for an offer
                budget = 0.0
                break
            o = w_queue[i, 0]
            if st == W_TO_PICKUP or st == W_TO_DROP:
                if st == W_TO_PICKUP:
                    tx, ty = o_px[o], o_py[o]
                else:
                    tx, ty = o_dx[o], o_dy[o]
                dist = abs(tx - w_x[i]) + abs(ty - w_y[i])
                v = w_speed[i] / 60.0 * weather * (1.0 - slow * w_fatigue[i])
                need = dist / v
                arrived = need <= budget
                if arrived:
                    w_x[i] = tx
                    w_y[i] = ty
                    use = need
                else:
                    frac = budget * v / dist
                    w_x[i] = w_x[i] + (tx - w_x[i]) * frac
                    w_y[i] = w_y[i] + (ty - w_y[i]) * frac
                    use = budget
                km += v * use
                o_unc[o] += use * (1.0 - weather)
                budget -= use
                t += use
                busy += use
                online += use
                if arrived:
                    if st == W_TO_PICKUP:
                        o_unc[o] += max(0.0, o_ready[o] - max(t, o_ready_hat[o]))
                        w_activity[i] = max(0.0, o_ready[o] - t) + handling
                        w_state[i] = W_AT_MERCHANT
                    else:
                        w_activity[i] = handling
                        w_state[i] = W_AT_CUSTOMER
                continue
            # waiting at the merchant, handing over, or (without geography) serving
            use = min(budget, w_activity[i])
            w_activity[i] -= use
            budget -= use
            t += use
            busy += use
            online += use
            if w_activity[i] > 1e-9:
                continue
            w_activity[i] = 0.0
            if st == W_AT_MERCHANT:
                o_picked_at[o] = t
                o_status[o] = O_PICKED
                w_state[i] = W_TO_DROP
                continue
            _deliver(i, o, t, day_stats, w_net, o_created, o_started, o_deadline, o_pay, o_late_pen, o_excuse,
                     o_status, o_done_at, o_penalty, o_late, o_unc)  # fmt: skip
            q = w_qlen[i]
            for k in range(q - 1):
                w_queue[i, k] = w_queue[i, k + 1]
            w_queue[i, q - 1] = -1
            w_qlen[i] = q - 1
            if q - 1 > 0:
                nxt = w_queue[i, 0]
                o_started[nxt] = t
                if geo:
                    w_state[i] = W_TO_PICKUP
                else:
                    w_state[i] = W_AT_CUSTOMER
                    w_activity[i] = o_service[nxt]
                    o_picked_at[nxt] = t
                    o_status[nxt] = O_PICKED
            else:
                w_state[i] = W_IDLE
        # accounting
        if online > 0.0:
            if taking and day_stats[i, _W_TAKING] == 0.0:  # the day's fixed cost, at its first order-taking minute
                day_stats[i, _W_COSTS] += P[P_DAILY_COST]
                w_net[i] -= P[P_DAILY_COST]
            w_online[i] += online
            w_stretch[i] += online
            if w_state[i] != W_BREAK and w_state[i] != W_OFFLINE:
                w_pause[i] = 0.0
        day_stats[i, _W_ONLINE] += online
        if taking:
            day_stats[i, _W_TAKING] += online
        day_stats[i, _W_BUSY] += busy
        day_stats[i, _W_BREAK] += brk
        day_stats[i, _W_KM] += km
        day_stats[i, _W_COSTS] += km * cost_km
        w_net[i] -= km * cost_km
        day_stats[i, _W_MAXSTRETCH] = max(day_stats[i, _W_MAXSTRETCH], w_stretch[i])
        if not always and w_state[i] != W_OFFLINE and w_state[i] != W_IDLE and w_state[i] != W_BREAK:
            # a busy courier who has had enough takes no more orders and logs off once the queue is served
            end = minute_of_day + dt
            if end >= LAST_LOGON_MINUTE or w_online[i] >= w_max_online[i] or w_net[i] >= w_target[i]:
                w_finishing[i] = True
        w_fatigue[i] = 1.0 - (1.0 - w_fatigue[i]) * 0.5 ** (online / hl)
        w_fatigue[i] *= 0.5 ** ((dt - online) / hl)


@nb.njit(cache=True)
def apply_offers(key, step, t, order_ids, worker_ids, deadline, pay, late_pen, excuse, P,
                 w_x, w_y, w_speed, w_reservation, w_state, w_queue, w_qlen, w_activity, w_online, w_stretch,
                 day_stats, o_px, o_py, o_dx, o_dy, o_trip, o_service, o_status, o_worker, o_assigned_at,
                 o_picked_at, o_started, o_deadline, o_pay, o_late_pen, o_excuse, o_route, o_pickup_km, o_declines,
                 o_last_decliner, out_accepted):  # fmt: skip
    """Offer each order to its courier; the courier accepts or declines (sequential: offers share couriers).

    Parameters
    ----------
    key, step : int
        The run key and the fleet step (the acceptance draw is keyed on (step, order)).
    t : float
        The time of the offers (minutes since the start).
    order_ids, worker_ids : int64 (n_offers,)
    deadline, pay, late_pen : float32 (n_offers,)
        Promised minutes after creation, yuan, yuan per late minute.
    excuse : bool (n_offers,)
    P : float64 (N_PARAMS,)
    w_*, day_stats, o_* :
        Courier and order state, updated in place.
    out_accepted : bool (n_offers,)
    """
    handling = P[P_HANDLING]
    geo = P[P_GEOGRAPHY] > 0.5
    always = P[P_ALWAYS_ON] > 0.5
    logit0 = P[P_ACCEPT_LOGIT]
    slope = P[P_ACCEPT_SLOPE]
    for j in range(order_ids.shape[0]):
        o = order_ids[j]
        i = worker_ids[j]
        q = w_qlen[i]
        if q > 0:
            last = w_queue[i, q - 1]
            tx, ty = o_dx[last], o_dy[last]
        else:
            tx, ty = w_x[i], w_y[i]
        pk = abs(o_px[o] - tx) + abs(o_py[o] - ty)
        if geo:
            expected = (pk + o_trip[o]) / w_speed[i] * 60.0 + 2.0 * handling
        else:
            expected = P[P_SERVICE_MEAN]
        rate = pay[j] / max(expected, 1e-6) * 60.0
        day_stats[i, _W_OFFERS] += 1.0
        if w_stretch[i] > STRETCH_LIMIT_MINUTES:
            day_stats[i, _W_AFTER4] += 1.0
        if w_online[i] > DAY_LIMIT_MINUTES:
            day_stats[i, _W_AFTER8] += 1.0
        if always:
            accept = True
        else:
            z = logit0 + slope * (rate / w_reservation[i] - 1.0)
            accept = uniform(key, step, o, _P_ACCEPT) < 1.0 / (1.0 + math.exp(-z))
        out_accepted[j] = accept
        if not accept:
            o_declines[o] += 1
            o_last_decliner[o] = i
            day_stats[i, _W_DECLINES] += 1.0
            continue
        w_queue[i, q] = o
        w_qlen[i] = q + 1
        o_status[o] = O_ASSIGNED
        o_worker[o] = i
        o_assigned_at[o] = t
        o_deadline[o] = deadline[j]
        o_pay[o] = pay[j]
        o_late_pen[o] = late_pen[j]
        o_excuse[o] = excuse[j]
        o_route[o] = pk + o_trip[o] if geo else 0.0
        o_pickup_km[o] = pk if geo else 0.0
        if w_state[i] == W_IDLE:
            o_started[o] = t
            if geo:
                w_state[i] = W_TO_PICKUP
            else:
                w_state[i] = W_AT_CUSTOMER
                w_activity[i] = o_service[o]
                o_picked_at[o] = t
                o_status[o] = O_PICKED

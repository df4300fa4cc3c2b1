"""Plain NumPy/Python twins of the fleet kernels, for tests and for reading.

Each twin has the signature of its kernel in :mod:`sim.kernels.fleet` and the
same in-place semantics, and draws its random numbers from
:func:`sim.rng.uniform_np` (the vectorised twin of :func:`sim.rng.uniform`)
with the same (key, step, agent, purpose) counters, so a twin sees exactly the
random numbers its kernel sees. The arithmetic is a plain loop over orders,
couriers or offers with :mod:`math`, in the kernel's order of operations, so
the outputs are bitwise equal to the kernels'. The twins are written for
clarity, not speed: they are meant for a few thousand rows.

Arithmetic follows numba's typing rules (see :mod:`sim.kernels.reference`):
``float32 op float64`` is computed in float64 and ``float32 op float32`` in
float32, and a store into a float32 array rounds. Numba types float literals
and the scalar arguments (times, the weather, the parameter vector) as
float64, so most of a kernel's arithmetic is float64; the exceptions, computed
in float32 below with :class:`numpy.float32` scalars, are distances between two
float32 positions (``dist``, ``pk``, ``trip_km``), a courier's expected riding
time ``(pk + trip_km) / speed``, the schedule test's ``net * max_online``,
and the day's gross pay (a float32 sum). The twins read float32 array entries
with ``float()`` (exact) wherever a kernel widens them, and never mix a
:class:`numpy.float32` with a Python float (NumPy 2 would keep float32 there,
where numba widens to float64). Numba's ``min``/``max`` of a float32 and a
float64 compare and return in float64, with Python's rule for ties (the
first argument), which the built-ins below reproduce. ``math.exp`` raises on
overflow where a kernel returns ``inf``; the twins return ``inf`` too.

Public objects
--------------
poisson_count
    Twin of :func:`sim.kernels.fleet.poisson_count`.
make_orders
    Twin of :func:`sim.kernels.fleet.make_orders`.
worker_step
    Twin of :func:`sim.kernels.fleet.worker_step`.
apply_offers
    Twin of :func:`sim.kernels.fleet.apply_offers`.
"""

from __future__ import annotations

import math

import numpy as np

from sim.fleet.state import (
    O_ASSIGNED,
    O_DELIVERED,
    O_PICKED,
    PAUSE_DONE_MINUTES,
    W_AT_CUSTOMER,
    W_AT_MERCHANT,
    W_BREAK,
    W_IDLE,
    W_OFFLINE,
    W_TO_DROP,
    W_TO_PICKUP,
    WD,
)
from sim.kernels.fleet import (
    _POISSON_CHUNK,
    DAY_LIMIT_MINUTES,
    LAST_LOGON_MINUTE,
    P_ACCEPT_LOGIT,
    P_ACCEPT_SLOPE,
    P_ALWAYS_ON,
    P_BREAK_MINUTES,
    P_COST_PER_KM,
    P_DAILY_COST,
    P_FATIGUE_HALF_LIFE,
    P_FATIGUE_SLOWDOWN,
    P_GEOGRAPHY,
    P_HANDLING,
    P_SERVICE_MEAN,
    STRETCH_LIMIT_MINUTES,
)
from sim.rng import Purpose, uniform_np

__all__ = ["apply_offers", "make_orders", "poisson_count", "worker_step"]

_F32 = np.float32
_GUARD = 64  # the kernel's bound on state changes per courier and step

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


def _exp(x: float) -> float:
    """``math.exp`` with the kernels' overflow behaviour (``inf`` instead of OverflowError)."""
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


def _u(key, step, agent, purpose) -> float:
    """One counter-based uniform as a Python float."""
    return float(uniform_np(key, step, agent, purpose))


def _add(a: np.ndarray, idx, x: float) -> None:
    """``a[idx] += x`` as numba does it for a float32 ``a`` and a float64 ``x``: add in float64, round once."""
    a[idx] = float(a[idx]) + x


# -- arrivals ------------------------------------------------------------------------------


def _poisson_inverse(u: float, lam: float) -> int:
    """Poisson(lam) by inverse transform of one uniform ``u`` (the kernel's sequential CDF sum)."""
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


def poisson_count(key, step, lam):
    """Twin of :func:`sim.kernels.fleet.poisson_count`.

    Parameters
    ----------
    key, step : int
        The run key and the fleet step; chunk ``c`` uses the ORDER_COUNT uniform of (key, step, c).
    lam : float
        Mean number of arrivals.

    Returns
    -------
    int
        The sum over ``ceil(lam / 20)`` chunks of equal mean of a Poisson draw each; 0 when ``lam <= 0``.
    """
    lam = float(lam)
    if lam <= 0.0:
        return 0
    n_chunks = int(math.ceil(lam / _POISSON_CHUNK))
    each = lam / n_chunks
    total = 0
    for c in range(n_chunks):
        total += _poisson_inverse(_u(key, step, c, Purpose.ORDER_COUNT), each)
    return total


def make_orders(key, first_id, t0, span, geography, radius, city, service_mean, m_x, m_y, m_prep,
                o_created, o_ready, o_ready_hat, o_merchant, o_px, o_py, o_dx, o_dy, o_trip, o_service):  # fmt: skip
    """Twin of :func:`sim.kernels.fleet.make_orders`: fill the ``o_*`` columns of orders ``first_id ..``.

    Order ``first_id + j`` arrives at ``t0 + span * U``, from merchant ``int(U * n_merchants)``, to a
    customer at distance ``radius * sqrt(U)`` and angle ``2 pi U`` from it (clipped to the city),
    with preparation ``m_prep * (0.5 - 0.5 log(1 - U))``; without geography it has a service time
    ``-service_mean * log(1 - U)`` instead. Every ``U`` is keyed on (key, 0, order id, purpose).

    Parameters
    ----------
    key, first_id : int
    t0, span : float
    geography : bool
    radius, city, service_mean : float
    m_x, m_y, m_prep : float32 (n_merchants,)
    o_* : (n_new,)
        Output columns, written in place.
    """
    n = o_created.shape[0]
    n_m = m_x.shape[0]
    ids = int(first_id) + np.arange(n, dtype=np.int64)
    u_minute = uniform_np(key, 0, ids, Purpose.ORDER_MINUTE)
    u_merchant = uniform_np(key, 0, ids, Purpose.ORDER_MERCHANT)
    u_radius = uniform_np(key, 0, ids, Purpose.ORDER_RADIUS)
    u_angle = uniform_np(key, 0, ids, Purpose.ORDER_ANGLE)
    u_prep = uniform_np(key, 0, ids, Purpose.ORDER_PREP)
    u_service = uniform_np(key, 0, ids, Purpose.SERVICE)
    t0, span, radius, city, service_mean = float(t0), float(span), float(radius), float(city), float(service_mean)
    for j in range(n):
        created = t0 + span * float(u_minute[j])
        m = min(int(float(u_merchant[j]) * n_m), n_m - 1)
        r = radius * math.sqrt(float(u_radius[j]))
        a = 2.0 * math.pi * float(u_angle[j])
        px, py = m_x[m], m_y[m]  # float32
        dx = min(max(float(px) + r * math.cos(a), 0.0), city)
        dy = min(max(float(py) + r * math.sin(a), 0.0), city)
        prep = float(m_prep[m]) * (0.5 - 0.5 * math.log(1.0 - float(u_prep[j])))
        o_created[j] = created
        o_merchant[j] = m
        o_px[j] = px
        o_py[j] = py
        o_dx[j] = dx
        o_dy[j] = dy
        o_trip[j] = abs(_F32(dx) - px) + abs(_F32(dy) - py)  # float32 arithmetic
        if geography:
            o_ready[j] = created + prep
            o_ready_hat[j] = created + float(m_prep[m])
            o_service[j] = 0.0
        else:
            o_ready[j] = created
            o_ready_hat[j] = created
            o_service[j] = -service_mean * math.log(1.0 - float(u_service[j]))


# -- couriers ------------------------------------------------------------------------------


def _deliver(i, o, t, day_stats, w_net, o_created, o_started, o_deadline, o_pay, o_late_pen, o_excuse, o_status,
             o_done_at, o_penalty, o_late, o_unc):  # fmt: skip
    """Deliver order ``o`` at ``t``: its lateness, penalty, and courier ``i``'s pay and counters."""
    o_status[o] = O_DELIVERED
    o_done_at[o] = t
    late = max(0.0, t - (float(o_created[o]) + float(o_deadline[o])))
    unc = float(o_unc[o]) + (float(o_started[o]) - float(o_created[o]))
    o_unc[o] = unc
    excused = unc if o_excuse[o] else 0.0
    penalised = max(0.0, late - excused)
    pay = float(o_pay[o])
    pen = min(pay, float(o_late_pen[o]) * penalised)
    o_penalty[o] = pen
    o_late[o] = late
    _add(day_stats, (i, _W_DELIV), 1.0)
    if late > 0.0:
        _add(day_stats, (i, _W_LATE), 1.0)
    if penalised > 0.0:
        _add(day_stats, (i, _W_PEN_UNC), pen * min(penalised, max(0.0, unc - excused)) / penalised)
    day_stats[i, _W_GROSS] = day_stats[i, _W_GROSS] + o_pay[o]  # float32 + float32
    _add(day_stats, (i, _W_PEN), pen)
    _add(w_net, i, pay - pen)


def worker_step(t0, dt, minute_of_day, weather, P,
                w_x, w_y, w_speed, w_target, w_max_online, w_start, w_break_after,
                w_state, w_queue, w_qlen, w_activity, w_break_left, w_pause_pending,
                w_online, w_stretch, w_pause, w_fatigue, w_net, w_finishing, w_done, w_rest, day_stats,
                o_created, o_ready, o_ready_hat, o_px, o_py, o_dx, o_dy, o_service, o_deadline, o_pay, o_late_pen,
                o_excuse, o_status, o_picked_at, o_started, o_done_at, o_penalty, o_late, o_unc):  # fmt: skip
    """Twin of :func:`sim.kernels.fleet.worker_step`: advance every courier from ``t0`` to ``t0 + dt``.

    An offline courier rests (pause, fatigue recovery) and logs on at their start minute. An online
    courier spends the step's minutes in turn on a break, idling (after checking whether to log off
    or take a break), riding to the merchant or the customer, waiting and handing over, and delivers
    each order in its queue in turn; then the step's minutes, kilometres and costs are booked, a busy
    courier who has had enough is marked finishing, and fatigue builds with the minutes online and
    recovers with the others.

    Parameters
    ----------
    t0, dt, minute_of_day, weather : float
    P : float64 (N_PARAMS,)
    w_*, day_stats, o_* :
        Courier and order state, updated in place (as for the kernel).
    """
    t0, dt, minute_of_day, weather = float(t0), float(dt), float(minute_of_day), float(weather)
    handling = float(P[P_HANDLING])
    geo = float(P[P_GEOGRAPHY]) > 0.5
    always = float(P[P_ALWAYS_ON]) > 0.5
    cost_km = float(P[P_COST_PER_KM])
    hl = float(P[P_FATIGUE_HALF_LIFE])
    slow = float(P[P_FATIGUE_SLOWDOWN])
    brk_len = float(P[P_BREAK_MINUTES])
    daily_cost = float(P[P_DAILY_COST])
    for i in range(w_x.shape[0]):
        if w_state[i] == W_OFFLINE:
            _add(w_pause, i, dt)
            if float(w_pause[i]) >= PAUSE_DONE_MINUTES:
                w_stretch[i] = 0.0
            w_fatigue[i] = float(w_fatigue[i]) * 0.5 ** (dt / hl)
            if always:
                if not w_done[i]:
                    w_state[i] = W_IDLE  # back the day after the platform stopped it
            elif (not w_done[i] and not w_rest[i] and minute_of_day >= float(w_start[i])
                    and minute_of_day < LAST_LOGON_MINUTE):  # fmt: skip
                w_state[i] = W_IDLE
            continue
        taking = not w_finishing[i] and float(w_pause_pending[i]) == 0.0
        t = t0
        budget = dt
        online = 0.0
        busy = 0.0
        brk = 0.0
        km = 0.0
        for _guard in range(_GUARD):
            if budget <= 1e-9:
                break
            st = int(w_state[i])
            if st == W_BREAK:
                use = min(budget, float(w_break_left[i]))
                w_break_left[i] = float(w_break_left[i]) - use
                budget -= use
                t += use
                brk += use
                _add(w_pause, i, use)
                if float(w_pause[i]) >= PAUSE_DONE_MINUTES:
                    w_stretch[i] = 0.0
                if float(w_break_left[i]) <= 1e-9:
                    w_break_left[i] = 0.0
                    w_state[i] = W_IDLE
                continue
            if st == W_IDLE:
                now = minute_of_day + (t - t0)
                online_now = float(w_online[i]) + online
                leave = bool(w_finishing[i])
                if not always and not leave:
                    leave = (now >= LAST_LOGON_MINUTE or online_now >= float(w_max_online[i])
                             or float(w_net[i]) >= float(w_target[i]))  # fmt: skip
                if leave:
                    w_state[i] = W_OFFLINE
                    w_done[i] = True
                    w_finishing[i] = False
                    w_pause[i] = budget
                    if float(w_pause[i]) >= PAUSE_DONE_MINUTES:
                        w_stretch[i] = 0.0
                    budget = 0.0
                    break
                if float(w_pause_pending[i]) > 0.0:
                    w_state[i] = W_BREAK
                    w_break_left[i] = w_pause_pending[i]
                    w_pause_pending[i] = 0.0
                    w_pause[i] = 0.0
                    continue
                stretch_now = float(w_stretch[i]) + online
                on_schedule = float(w_net[i] * w_max_online[i]) >= online_now * float(w_target[i])  # float32 product
                if not always and brk_len > 0.0 and stretch_now >= float(w_break_after[i]) and on_schedule:
                    w_state[i] = W_BREAK
                    w_break_left[i] = brk_len
                    w_pause[i] = 0.0
                    continue
                online += budget  # idle, waiting for an offer
                budget = 0.0
                break
            o = int(w_queue[i, 0])
            if st == W_TO_PICKUP or st == W_TO_DROP:
                if st == W_TO_PICKUP:
                    tx, ty = o_px[o], o_py[o]
                else:
                    tx, ty = o_dx[o], o_dy[o]
                dist = float(abs(tx - w_x[i]) + abs(ty - w_y[i]))  # float32 arithmetic
                v = float(w_speed[i]) / 60.0 * weather * (1.0 - slow * float(w_fatigue[i]))
                need = dist / v
                arrived = need <= budget
                if arrived:
                    w_x[i] = tx
                    w_y[i] = ty
                    use = need
                else:
                    frac = budget * v / dist
                    w_x[i] = float(w_x[i]) + float(tx - w_x[i]) * frac
                    w_y[i] = float(w_y[i]) + float(ty - w_y[i]) * frac
                    use = budget
                km += v * use
                _add(o_unc, o, use * (1.0 - weather))
                budget -= use
                t += use
                busy += use
                online += use
                if arrived:
                    if st == W_TO_PICKUP:
                        ready = float(o_ready[o])
                        _add(o_unc, o, max(0.0, ready - max(t, float(o_ready_hat[o]))))
                        w_activity[i] = max(0.0, ready - t) + handling
                        w_state[i] = W_AT_MERCHANT
                    else:
                        w_activity[i] = handling
                        w_state[i] = W_AT_CUSTOMER
                continue
            # waiting at the merchant, handing over, or (without geography) serving
            use = min(budget, float(w_activity[i]))
            w_activity[i] = float(w_activity[i]) - use
            budget -= use
            t += use
            busy += use
            online += use
            if float(w_activity[i]) > 1e-9:
                continue
            w_activity[i] = 0.0
            if st == W_AT_MERCHANT:
                o_picked_at[o] = t
                o_status[o] = O_PICKED
                w_state[i] = W_TO_DROP
                continue
            _deliver(i, o, t, day_stats, w_net, o_created, o_started, o_deadline, o_pay, o_late_pen, o_excuse,
                     o_status, o_done_at, o_penalty, o_late, o_unc)  # fmt: skip
            q = int(w_qlen[i])
            for k in range(q - 1):
                w_queue[i, k] = w_queue[i, k + 1]
            w_queue[i, q - 1] = -1
            w_qlen[i] = q - 1
            if q - 1 > 0:
                nxt = int(w_queue[i, 0])
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
            if taking and float(day_stats[i, _W_TAKING]) == 0.0:
                _add(day_stats, (i, _W_COSTS), daily_cost)
                w_net[i] = float(w_net[i]) - daily_cost
            _add(w_online, i, online)
            _add(w_stretch, i, online)
            if w_state[i] != W_BREAK and w_state[i] != W_OFFLINE:
                w_pause[i] = 0.0
        _add(day_stats, (i, _W_ONLINE), online)
        if taking:
            _add(day_stats, (i, _W_TAKING), online)
        _add(day_stats, (i, _W_BUSY), busy)
        _add(day_stats, (i, _W_BREAK), brk)
        _add(day_stats, (i, _W_KM), km)
        _add(day_stats, (i, _W_COSTS), km * cost_km)
        w_net[i] = float(w_net[i]) - km * cost_km
        day_stats[i, _W_MAXSTRETCH] = max(day_stats[i, _W_MAXSTRETCH], w_stretch[i])
        if not always and w_state[i] != W_OFFLINE and w_state[i] != W_IDLE and w_state[i] != W_BREAK:
            end = minute_of_day + dt
            if (end >= LAST_LOGON_MINUTE or float(w_online[i]) >= float(w_max_online[i])
                    or float(w_net[i]) >= float(w_target[i])):  # fmt: skip
                w_finishing[i] = True
        w_fatigue[i] = 1.0 - (1.0 - float(w_fatigue[i])) * 0.5 ** (online / hl)
        w_fatigue[i] = float(w_fatigue[i]) * 0.5 ** ((dt - online) / hl)


# -- offers --------------------------------------------------------------------------------


def apply_offers(key, step, t, order_ids, worker_ids, deadline, pay, late_pen, excuse, P,
                 w_x, w_y, w_speed, w_reservation, w_state, w_queue, w_qlen, w_activity, w_online, w_stretch,
                 day_stats, o_px, o_py, o_dx, o_dy, o_trip, o_service, o_status, o_worker, o_assigned_at,
                 o_picked_at, o_started, o_deadline, o_pay, o_late_pen, o_excuse, o_route, o_pickup_km, o_declines,
                 o_last_decliner, out_accepted):  # fmt: skip
    """Twin of :func:`sim.kernels.fleet.apply_offers`: offer each order to its courier, in order.

    The offer's rate is its pay per hour of expected riding (from the end of the courier's queue,
    or their position, to the merchant and on to the customer, at the courier's speed) and two
    handovers, or of ``service_minutes_mean`` without geography; the courier accepts when the ACCEPT
    uniform of (key, step, order) is below the logistic acceptance probability (always when
    ``always_on``). An accepted order joins the courier's queue; an idle courier sets off.

    Parameters
    ----------
    key, step : int
    t : float
    order_ids, worker_ids : int64 (n_offers,)
    deadline, pay, late_pen : float32 (n_offers,)
    excuse : bool (n_offers,)
    P : float64 (N_PARAMS,)
    w_*, day_stats, o_* :
        Courier and order state, updated in place.
    out_accepted : bool (n_offers,)
    """
    t = float(t)
    handling = float(P[P_HANDLING])
    geo = float(P[P_GEOGRAPHY]) > 0.5
    always = float(P[P_ALWAYS_ON]) > 0.5
    logit0 = float(P[P_ACCEPT_LOGIT])
    slope = float(P[P_ACCEPT_SLOPE])
    for j in range(order_ids.shape[0]):
        o = int(order_ids[j])
        i = int(worker_ids[j])
        q = int(w_qlen[i])
        if q > 0:
            last = int(w_queue[i, q - 1])
            tx, ty = o_dx[last], o_dy[last]
        else:
            tx, ty = w_x[i], w_y[i]
        pk = abs(o_px[o] - tx) + abs(o_py[o] - ty)  # float32 arithmetic
        if geo:
            expected = float((pk + o_trip[o]) / w_speed[i]) * 60.0 + 2.0 * handling  # float32 riding time
        else:
            expected = float(P[P_SERVICE_MEAN])
        rate = float(pay[j]) / max(expected, 1e-6) * 60.0
        _add(day_stats, (i, _W_OFFERS), 1.0)
        if float(w_stretch[i]) > STRETCH_LIMIT_MINUTES:
            _add(day_stats, (i, _W_AFTER4), 1.0)
        if float(w_online[i]) > DAY_LIMIT_MINUTES:
            _add(day_stats, (i, _W_AFTER8), 1.0)
        if always:
            accept = True
        else:
            z = logit0 + slope * (rate / float(w_reservation[i]) - 1.0)
            accept = _u(key, step, o, Purpose.ACCEPT) < 1.0 / (1.0 + _exp(-z))
        out_accepted[j] = accept
        if not accept:
            o_declines[o] += 1
            o_last_decliner[o] = i
            _add(day_stats, (i, _W_DECLINES), 1.0)
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

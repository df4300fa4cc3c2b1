"""What a dispatcher sees, and the dispatcher protocol.

A dispatcher never receives the world. It receives a :class:`FleetView`: the
clock, the weather, the platform's records of its couriers (position, state,
order-taking minutes today, the current continuous stretch, days worked in a
row, pay today, distance ridden) and of its orders (where from, where to,
when created, when the merchant expects the food ready). A courier's
earnings target, reservation pay and riding speed are ground truth and not
in it.

Protocol (as small as scikit-learn's estimator)::

    fit(view, log) -> self                    # learn from the deliveries of the last tick
    dispatch(order_idx, view) -> Dispatch     # offer open orders to couriers

and, optionally::

    access(worker_idx, view) -> minutes       # 0: may take orders; > 0: pause this long; inf: no more today
    settle(worker_idx, view) -> yuan          # end-of-day top-up of each courier's pay (>= 0)

Public objects
--------------
FleetView, DeliveryLog, Dispatch, Dispatcher, BaseDispatcher
checked_dispatch, checked_access, checked_settle
    Validate what a dispatcher returned (the engine's protocol checks).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from sim.platform import PlatformView, PluginError

__all__ = [
    "BaseDispatcher",
    "DeliveryLog",
    "Dispatch",
    "Dispatcher",
    "FleetView",
    "checked_access",
    "checked_dispatch",
    "checked_settle",
]


class FleetView(PlatformView):
    """Read-only view of the platform's fleet data for dispatchers.

    Attributes (w = n_workers, o = orders so far)
    ---------------------------------------------
    step, tick, day : int
        Fleet step (``step_minutes`` long), feed tick, day.
    minute : float
        Minutes since the start of the run (the time of this dispatch round).
    minute_of_day, hour : float, int
    step_minutes : float
    key : int
        The dispatcher's own random key (use with :func:`sim.rng.uniform`).
    weather_factor : float
        Speed factor of the weather now (1 good weather; public information).
    n_workers, max_batch : int
    geography : bool
        False: no travel; every order takes an exponential service time.
    handling_minutes, prep_minutes_mean, service_minutes_mean, city_km : float
    worker_x, worker_y : float32 (w,)
        Positions (km).
    worker_tail_x, worker_tail_y : float32 (w,)
        Where each courier will be once its queue is served (its position when empty).
    worker_state : int8 (w,)
        :data:`sim.fleet.state.WORKER_STATES` codes.
    worker_queue_len : int8 (w,)
    worker_capacity : int32 (w,)
        How many more orders each courier can be offered now (0: not offerable:
        offline, on a break, finishing, or a full box).
    worker_online_minutes_today, worker_stretch_minutes, worker_pause_minutes : float32 (w,)
        Working minutes today (logged on, not on a break; finishing the last orders
        included), the current continuous stretch, minutes since the courier last
        stopped working (a pause of 20 minutes ends a stretch).
    worker_consecutive_days : int16 (w,)
        Days worked in a row before today.
    worker_deliveries_today, worker_gross_today, worker_penalties_today, worker_km_today : float32 (w,)
    order_created, order_ready_hat : float64 (o,)
        Creation time and when the merchant expects the food ready (minutes).
    order_pickup_x, order_pickup_y, order_drop_x, order_drop_y, order_trip_km : float32 (o,)
    order_merchant : int32 (o,)
    order_status : int8 (o,)
        :data:`sim.fleet.state.ORDER_STATUSES` codes.
    order_declines : int16 (o,)
    order_last_decliner : int32 (o,)
        The courier who last declined the order (-1: none).
    n_open : int
        Orders waiting for a courier.
    """

    _READERS = (
        "dispatchers see only the platform's records (positions, states, minutes online, pay, orders), "
        "not couriers' targets, reservation pay or speed"
    )


@dataclass(frozen=True)
class DeliveryLog:
    """Orders finished (delivered or cancelled) during the last tick (the platform's records).

    Attributes (f = orders finished)
    --------------------------------
    order_idx : int64 (f,)
    worker_idx : int32 (f,)
        -1 for a cancelled order never carried.
    delivered_mask : bool (f,)
    duration_minutes : float64 (f,)
        Creation to delivery (or cancellation).
    deadline_minutes : float32 (f,)
    route_km, pickup_km, trip_km : float32 (f,)
    late_minutes, penalty, pay : float32 (f,)
    """

    order_idx: np.ndarray
    worker_idx: np.ndarray
    delivered_mask: np.ndarray
    duration_minutes: np.ndarray
    deadline_minutes: np.ndarray
    route_km: np.ndarray
    pickup_km: np.ndarray
    trip_km: np.ndarray
    late_minutes: np.ndarray
    penalty: np.ndarray
    pay: np.ndarray


@dataclass
class Dispatch:
    """A dispatcher's decision for a batch of open orders, aligned with ``order_idx``.

    Attributes (n = orders in the batch)
    ------------------------------------
    worker_idx : int (n,)
        The courier offered each order; -1 holds it for a later step.
    deadline_minutes : float (n,)
        Promised delivery time, minutes after the order was created.
    pay : float (n,)
        Yuan paid to the courier for delivering it.
    late_penalty : float (n,), optional
        Yuan deducted per late minute (default 0; never more than the order's pay in all).
    excuse_mask : bool (n,), optional
        Excuse lateness the platform can see was not the courier's doing
        (weather, waiting at the merchant past the estimate); default False.
    """

    worker_idx: np.ndarray
    deadline_minutes: np.ndarray
    pay: np.ndarray
    late_penalty: np.ndarray | None = None
    excuse_mask: np.ndarray | None = None


@runtime_checkable
class Dispatcher(Protocol):
    """The dispatcher protocol (see the module docstring)."""

    def fit(self, view: FleetView, log: DeliveryLog) -> Dispatcher:
        """Learn from one tick of finished orders; return self."""
        ...

    def dispatch(self, order_idx: np.ndarray, view: FleetView) -> Dispatch:
        """Offer open orders (int64 (n,), oldest first: by creation time, then id) to couriers."""
        ...


class BaseDispatcher:
    """Convenience base: ``get_params`` from the constructor, a no-op ``fit``, no pauses, no top-ups."""

    def get_params(self) -> dict:
        """Return the constructor parameters (of this class and its bases) and their current values."""
        names: list[str] = []
        for cls in type(self).__mro__:
            init = cls.__dict__.get("__init__")
            if init is None:
                continue
            for p in inspect.signature(init).parameters.values():
                if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name not in names:
                    names.append(p.name)
        return {n: getattr(self, n) for n in names if hasattr(self, n)}

    def fit(self, view: FleetView, log: DeliveryLog):
        """Learn nothing; return self."""
        return self


def _label_error(label, meth, msg, fix):
    return PluginError(f"dispatcher '{label}': {meth}() {msg}; fix: {fix}")


def _float_array(a, n, label, meth, what):
    if not isinstance(a, np.ndarray):
        raise _label_error(label, meth, f"returned {what} as {type(a).__name__}, not a numpy array",
                           f"return a float array of shape ({n},)")  # fmt: skip
    if a.shape != (n,):
        raise _label_error(label, meth, f"returned {what} of shape {a.shape}, expected ({n},)",
                           "one value per row of the batch")  # fmt: skip
    if a.dtype.kind not in "fiu":
        raise _label_error(label, meth, f"returned {what} of dtype {a.dtype}", "return numbers")
    # the engine stores float32: a value beyond float32's range would become inf there
    with np.errstate(over="ignore"):
        a32 = a.astype(np.float32)
    return np.where(np.isfinite(a) & ~np.isfinite(a32), np.inf, a).astype(np.float64)


def checked_dispatch(out, order_idx: np.ndarray, capacity: np.ndarray, label: str):
    """Validate a :class:`Dispatch`; return the offers as (order, worker, deadline, pay, penalty, excuse) arrays.

    Parameters
    ----------
    out : Dispatch or tuple
        What ``dispatch`` returned (a tuple is read as the fields of :class:`Dispatch` in order).
    order_idx : int64 (n,)
    capacity : int32 (n_workers,)
        Offers each courier can take now (:attr:`FleetView.worker_capacity`).
    label : str

    Raises
    ------
    PluginError
        Naming the dispatcher, what was wrong and the fix.
    """
    n = order_idx.shape[0]
    if isinstance(out, tuple):
        if not 3 <= len(out) <= 5:
            raise _label_error(label, "dispatch", f"returned a tuple of {len(out)}",
                               "return sim.fleet.view.Dispatch(worker_idx, deadline_minutes, pay[, late_penalty, excuse_mask])")  # fmt: skip
        out = Dispatch(*out)
    if not isinstance(out, Dispatch):
        raise _label_error(label, "dispatch", f"returned {type(out).__name__}",
                           "return sim.fleet.view.Dispatch(worker_idx, deadline_minutes, pay)")  # fmt: skip
    w = out.worker_idx
    if not isinstance(w, np.ndarray) or w.shape != (n,) or w.dtype.kind not in "iu":
        shape = getattr(w, "shape", None)
        raise _label_error(label, "dispatch", f"returned worker_idx {type(w).__name__} of shape {shape}",
                           f"an integer array of shape ({n},), -1 to hold an order")  # fmt: skip
    w = w.astype(np.int64)
    n_workers = capacity.shape[0]
    if n and (w.min() < -1 or w.max() >= n_workers):
        raise _label_error(label, "dispatch", f"offered to courier {int(w.max() if w.max() >= n_workers else w.min())}",
                           f"courier ids are 0..{n_workers - 1}, or -1 to hold")  # fmt: skip
    deadline = _float_array(out.deadline_minutes, n, label, "dispatch", "deadline_minutes")
    pay = _float_array(out.pay, n, label, "dispatch", "pay")
    pen = (
        np.zeros(n)
        if out.late_penalty is None
        else _float_array(out.late_penalty, n, label, "dispatch", "late_penalty")
    )
    if out.excuse_mask is None:
        excuse = np.zeros(n, dtype=np.bool_)
    else:
        excuse = np.asarray(out.excuse_mask)
        if excuse.shape != (n,) or excuse.dtype != np.bool_:
            raise _label_error(label, "dispatch", f"returned excuse_mask of shape {excuse.shape} and dtype {excuse.dtype}",
                               f"a bool array of shape ({n},)")  # fmt: skip
    sel = w >= 0
    if sel.any():
        d, p, lp = deadline[sel], pay[sel], pen[sel]
        if not (np.isfinite(d).all() and (d > 0).all()):
            raise _label_error(label, "dispatch", "returned a deadline that is not a positive finite number of minutes",
                               "promise each offered order a delivery time > 0 minutes after creation")  # fmt: skip
        if not (np.isfinite(p).all() and (p >= 0).all()):
            raise _label_error(label, "dispatch", "returned pay that is negative, NaN or infinite",
                               "pay each offered order a finite amount >= 0 yuan")  # fmt: skip
        if not (np.isfinite(lp).all() and (lp >= 0).all()):
            raise _label_error(label, "dispatch", "returned a late_penalty that is negative, NaN or infinite",
                               "a finite penalty >= 0 yuan per late minute")  # fmt: skip
        offered = w[sel]
        counts = np.bincount(offered, minlength=n_workers)
        over = np.flatnonzero(counts > capacity)
        if over.size:
            i = int(over[0])
            raise _label_error(
                label, "dispatch",
                f"offered {int(counts[i])} order(s) to courier {i}, who can take {int(capacity[i])} now",
                "offer only to couriers with view.worker_capacity > 0, at most that many orders each "
                "(offline, on a break, finishing or full couriers have capacity 0)",
            )  # fmt: skip
    return (
        order_idx[sel].astype(np.int64),
        w[sel],
        deadline[sel].astype(np.float32),
        pay[sel].astype(np.float32),
        pen[sel].astype(np.float32),
        excuse[sel].copy(),
    )


def checked_access(out, n: int, label: str) -> np.ndarray:
    """Validate ``access``: float minutes (n,), no NaN, >= 0 (inf allowed)."""
    a = _float_array(out, n, label, "access", "minutes")
    if n and (np.isnan(a).any() or (a < 0).any()):
        raise _label_error(label, "access", "returned NaN or negative minutes",
                           "0 to allow orders, > 0 to pause, inf for no more orders today")  # fmt: skip
    return a


def checked_settle(out, n: int, label: str) -> np.ndarray:
    """Validate ``settle``: finite yuan (n,) >= 0."""
    a = _float_array(out, n, label, "settle", "top-ups")
    if n and not (np.isfinite(a).all() and (a >= 0).all()):
        raise _label_error(label, "settle", "returned a top-up that is negative, NaN or infinite",
                           "a finite amount >= 0 yuan per courier")  # fmt: skip
    return a

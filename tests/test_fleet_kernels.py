"""Fleet kernels against their plain twins (bit for bit), across thread counts, and the
arrival counts against the Poisson distribution.

The twins in :mod:`sim.kernels.reference_fleet` follow the kernels' order of
operations and float32 casts, so every return value and every array a kernel
writes must agree to the last bit. The kernels are checked on realistic states:
a fleet-only world (200 couriers, 5000 orders a day) is run through the day and,
over a few windows (couriers logging on, the lunch peak, 23:00 when couriers
log off), every kernel call of the world is repeated by the twin on a deep copy
of its arguments. A state taken at noon is then perturbed (excused lateness,
rain, pauses, couriers on schedule for a break or at their target) to reach
the branches the built-in dispatchers rarely take. Each test checks that the
branches it is about were reached.

The statistical tolerances (4 standard errors) are derived from the sample
size; every draw is keyed, so each test is deterministic.

The tests at the end reproduce defects found in review (now fixed): a full
20-minute pause summed in float32 falling short of 20, voluntary breaks shorter
than the pause that ends a stretch, and always-on couriers never coming back.
"""

from __future__ import annotations

import copy
import inspect
import math
from collections import Counter

import numba as nb
import numpy as np
import pytest
from kernel_checks import assert_bitwise
from kernel_checks import threads as n_threads

import sim.engine
from sim.engine import FeedWorld, simulate
from sim.fleet.state import (
    N_WD,
    O_DELIVERED,
    O_OPEN,
    O_PICKED,
    W_AT_CUSTOMER,
    W_AT_MERCHANT,
    W_BREAK,
    W_IDLE,
    W_OFFLINE,
    W_TO_DROP,
    W_TO_PICKUP,
    WD,
)
from sim.kernels import fleet as K
from sim.kernels import reference_fleet as R
from sim.rng import Purpose, root_key, uniform_np
from sim.scenario import scenario_from_dict

Z = 4.0  # standard errors allowed
KEY = root_key(2025)
KERNELS = ("poisson_count", "make_orders", "worker_step", "apply_offers")
ARG_NAMES = {name: tuple(inspect.signature(getattr(R, name)).parameters) for name in KERNELS}
DELIV, LATE, PEN, BRK, ONLINE = (WD[c] for c in ("deliveries", "late_deliveries", "penalties", "break_minutes",
                                                  "online_minutes"))  # fmt: skip


def _scenario(days: int = 1, dispatcher: str = "strict", **fleet):
    return scenario_from_dict({
        "population": {"n_users": 0}, "clock": {"days": days},
        "fleet": {"n_workers": 200, "orders_per_day": 5000, **fleet}, "dispatcher": {"kind": dispatcher},
    })  # fmt: skip


_assert_bitwise, _threads = assert_bitwise, n_threads


# -- every kernel call of a running world, repeated by the twin --------------------------------


def _observe(name: str, before: dict, after: dict, result, seen: Counter) -> None:
    """Count the branches a kernel call took (from its arguments before and after)."""
    if name == "poisson_count":
        seen["count_zero" if result == 0 else "count_positive"] += 1
    elif name == "make_orders":
        seen["orders_made"] += after["o_created"].shape[0]
    elif name == "apply_offers":
        acc = after["out_accepted"]
        seen["accepted"] += int(acc.sum())
        seen["declined"] += int((~acc).sum())
        seen["offered_to_busy"] += int((before["w_qlen"][after["worker_ids"]] > 0).sum())
    else:
        st0, st1 = before["w_state"], after["w_state"]
        d = after["day_stats"].astype(np.float64) - before["day_stats"]
        delivered = d[:, DELIV] > 0
        seen["deliveries"] += int(d[:, DELIV].sum())
        seen["late"] += int(d[:, LATE].sum())
        seen["penalised"] += int((d[:, PEN] > 0).sum())
        seen["next_in_queue"] += int((delivered & (before["w_qlen"] >= 2)).sum())
        seen["log_on"] += int(((st0 == W_OFFLINE) & (st1 == W_IDLE)).sum())
        seen["log_off"] += int(((st0 != W_OFFLINE) & (st1 == W_OFFLINE)).sum())
        seen["finishing"] += int((~before["w_finishing"] & after["w_finishing"]).sum())
        seen["on_break"] += int((d[:, BRK] > 0).sum())
        seen["break_ends"] += int(((st0 == W_BREAK) & (st1 != W_BREAK)).sum())
        seen["pause_taken"] += int(((before["w_pause_pending"] > 0) & (after["w_pause_pending"] == 0)).sum())
        seen["stretch_reset"] += int(((before["w_stretch"] > 0) & (after["w_stretch"] < before["w_stretch"])).sum())
        seen["riding_on"] += int(((st1 == W_TO_PICKUP) | (st1 == W_TO_DROP)).sum())
        seen["waiting_at_merchant"] += int((st1 == W_AT_MERCHANT).sum())
        seen["serving"] += int((st1 == W_AT_CUSTOMER).sum())


def _twin_checked(name: str, kernel, twin, seen: Counter):
    names = ARG_NAMES[name]

    def call(*args):
        before = copy.deepcopy(args)
        mine = copy.deepcopy(args)
        got = kernel(*args)  # on the world's own arrays: the run goes on with the kernel's results
        want = twin(*mine)
        assert got == want, f"{name} call {seen[name]}: returned {got}, twin {want}"
        for arg, a, b in zip(names, args, mine):
            if isinstance(a, np.ndarray):
                _assert_bitwise(a, b, f"{name} call {seen[name]}: {arg}")
        _observe(name, dict(zip(names, before)), dict(zip(names, args)), got, seen)
        seen[name] += 1
        return got

    return call


def _run_checked(world: FeedWorld, windows, monkeypatch) -> Counter:
    """Run ``world`` to the end; in the windows (minutes of the day) every kernel call is twin-checked."""
    seen = Counter()
    tick_min = world.scenario.clock.tick_minutes
    originals = {name: getattr(K, name) for name in KERNELS}
    while world.tick < world.n_ticks:
        minute = world.tick * tick_min % 1440
        if any(a <= minute < b for a, b in windows):
            with monkeypatch.context() as mp:
                for name in KERNELS:
                    mp.setattr(K, name, _twin_checked(name, originals[name], getattr(R, name), seen))
                world.step()
        else:
            world.step()
    return seen


_LOGON, _NOON, _END = (10 * 60 + 30, 11 * 60 + 15), (11 * 60 + 45, 12 * 60 + 30), (22 * 60 + 45, 23 * 60 + 15)
_BRANCHES = ("poisson_count", "make_orders", "worker_step", "apply_offers", "count_positive", "orders_made",
             "accepted", "deliveries", "late", "penalised", "next_in_queue")  # fmt: skip

CASES = {
    # the strictest dispatcher: batching, late deliveries, declines; logging on and off
    "strict": (
        dict(),
        "strict",
        (_LOGON, _NOON, _END),
        _BRANCHES
        + ("declined", "offered_to_busy", "log_on", "log_off", "finishing", "riding_on", "waiting_at_merchant"),
    ),
    # pauses and stops through ``access``, voluntary breaks of couriers on schedule
    "rest_respecting": (
        dict(),
        "rest_respecting",
        ((12 * 60, 13 * 60),),
        # it offers to idle couriers only, and excuses every minute that is not the courier's doing
        tuple(b for b in _BRANCHES if b not in ("next_in_queue", "penalised"))
        + ("declined", "on_break", "break_ends", "pause_taken", "stretch_reset"),
    ),
    # without geography: an M/M/c server, every courier always on and accepting
    "no_geography": (dict(geography=False, shifts="always_on"), "strict", (_NOON,), _BRANCHES + ("serving",)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_kernels_match_twins_in_a_running_world(case, monkeypatch):
    fleet, dispatcher, windows, required = CASES[case]
    world = FeedWorld(_scenario(dispatcher=dispatcher, **fleet))
    seen = _run_checked(world, windows, monkeypatch)
    missing = [k for k in required if seen[k] == 0]
    assert not missing, (missing, dict(seen))
    if case == "no_geography":
        assert seen["declined"] == seen["log_off"] == seen["on_break"] == 0


# -- a noon state, perturbed to reach the rarer branches ----------------------------------------


@pytest.fixture(scope="module")
def noon():
    """The strict world at 12:00: (fleet, workers, orders) with busy couriers and a queue of open orders."""
    world = FeedWorld(_scenario(orders_per_day=7000))
    while world.tick * world.scenario.clock.tick_minutes < 12 * 60:
        world.step()
    f = world.fleet
    assert ((f.workers.state != W_OFFLINE) & (f.workers.state != W_IDLE)).sum() > 50
    return f, copy.deepcopy(f.workers), copy.deepcopy(f.orders)


def _worker_step(fn, P, w, o, t0: float, dt: float, weather: float) -> None:
    fn(t0, dt, t0 % 1440.0, weather, P, *K.worker_step_arrays(w, o))


def _apply_offers(fn, P, w, o, step: int, t: float, oid, wid, deadline, pay, pen, excuse) -> np.ndarray:
    accepted = np.zeros(oid.size, dtype=np.bool_)
    fn(KEY, step, t, oid, wid, deadline, pay, pen, excuse, P, *K.offer_arrays(w, o), accepted)
    return accepted


def _assert_same_state(wa, wb, oa, ob, label: str) -> None:
    for name in wa.__dataclass_fields__:
        _assert_bitwise(getattr(wa, name), getattr(wb, name), f"{label}: workers.{name}")
    for name in oa.cols:
        _assert_bitwise(oa.cols[name], ob.cols[name], f"{label}: orders.{name}")


def _perturb(w, o, rng) -> None:
    """Excused orders and penalties; couriers on a break, on schedule, at their target, pausing, finishing."""
    n, nw = o.n, w.n_workers
    f4 = np.float32
    o.excuse_mask[:n] = rng.random(n) < 0.5
    o.late_penalty[:n] = np.where(rng.random(n) < 0.5, 0.5, o.late_penalty[:n]).astype(f4)
    o.deadline_minutes[:n] = np.where(rng.random(n) < 0.3, 5.0, o.deadline_minutes[:n]).astype(f4)
    off, pick = w.state == W_OFFLINE, rng.random(nw)
    back = off & (pick < 0.7)  # some of the offline couriers are logged on instead: on a break or idle
    w.online_today[back] = rng.uniform(30.0, 500.0, back.sum()).astype(f4)
    w.stretch_minutes[back] = np.minimum(w.online_today[back], rng.uniform(0.0, 300.0, back.sum()).astype(f4))
    brk = back & (pick < 0.4)
    w.state[brk] = W_BREAK
    w.break_left[brk] = rng.uniform(0.2, 25.0, brk.sum()).astype(f4)
    w.pause_minutes[brk] = rng.uniform(0.0, 19.0, brk.sum()).astype(f4)
    w.state[back & (pick >= 0.4)] = W_IDLE
    on, pick = w.state != W_OFFLINE, rng.random(nw)
    sched = on & (pick < 0.3)  # on schedule, past the break point: a break when next idle
    w.net_today[sched] = (w.true_target_earnings[sched] * w.online_today[sched] / w.true_max_online_minutes[sched]
                          + 5.0).astype(f4)  # fmt: skip
    w.true_break_after_minutes[sched] = np.minimum(w.stretch_minutes[sched], 30.0)
    rich = on & (pick >= 0.3) & (pick < 0.4)  # reached the target: log off or finish
    w.net_today[rich] = w.true_target_earnings[rich] + 1.0
    busy = on & (w.state != W_IDLE) & (w.state != W_BREAK) & (pick >= 0.4) & (pick < 0.55)
    w.pause_pending[busy] = 20.0  # the platform's pause, taken when the queue is served
    w.finishing_mask[on & (w.state != W_BREAK) & (pick >= 0.95)] = True
    w.fatigue[:] = rng.uniform(0.0, 0.9, nw).astype(f4)


@pytest.mark.parametrize("weather", [1.0, 0.6])
def test_worker_step_matches_twin_from_a_perturbed_noon_state(noon, weather):
    """Forty steps from the same perturbed state, the kernel on one copy and the twin on another."""
    f, w0, o0 = noon
    w0, o0 = copy.deepcopy(w0), copy.deepcopy(o0)
    _perturb(w0, o0, np.random.default_rng(3))
    wa, oa, wb, ob = copy.deepcopy(w0), copy.deepcopy(o0), copy.deepcopy(w0), copy.deepcopy(o0)
    seen = Counter()
    t0 = 12 * 60.0
    for s in range(40):
        before = copy.deepcopy(wa)
        wx = weather if s % 2 == 0 else 1.0  # weather changing between steps
        _worker_step(K.worker_step, f.params, wa, oa, t0 + s * f.dt, f.dt, wx)
        _worker_step(R.worker_step, f.params, wb, ob, t0 + s * f.dt, f.dt, wx)
        _assert_same_state(wa, wb, oa, ob, f"step {s}")
        args = {"w_state": before.state, "day_stats": before.day_stats, "w_qlen": before.queue_len,
                "w_finishing": before.finishing_mask, "w_pause_pending": before.pause_pending,
                "w_stretch": before.stretch_minutes}  # fmt: skip
        after = {"w_state": wa.state, "day_stats": wa.day_stats, "w_finishing": wa.finishing_mask,
                 "w_pause_pending": wa.pause_pending, "w_stretch": wa.stretch_minutes}  # fmt: skip
        _observe("worker_step", args, after, None, seen)
    for k in ("deliveries", "late", "penalised", "log_off", "finishing", "on_break", "break_ends", "pause_taken",
              "stretch_reset", "next_in_queue", "riding_on", "waiting_at_merchant"):  # fmt: skip
        assert seen[k] > 0, (k, dict(seen))
    n = oa.n
    excused = oa.excuse_mask[:n] & (oa.status[:n] == O_DELIVERED) & (oa.late_minutes[:n] > 0)
    assert (excused & (oa.uncontrollable_minutes[:n] > 0)).any()  # excused lateness was reached
    if weather < 1.0:
        assert (oa.uncontrollable_minutes[: oa.n] > o0.uncontrollable_minutes[: o0.n]).any()


@pytest.mark.parametrize(("geography", "always_on"), [(True, False), (True, True), (False, False), (False, True)])
def test_apply_offers_matches_twin(noon, geography, always_on):
    """Offers of the noon state's open orders, several to one courier, pay from derisory to generous."""
    f, w0, o0 = noon
    P = f.params.copy()
    P[K.P_GEOGRAPHY] = 1.0 if geography else 0.0
    P[K.P_ALWAYS_ON] = 1.0 if always_on else 0.0
    rng = np.random.default_rng(int(geography) * 2 + int(always_on))
    w0 = copy.deepcopy(w0)
    w0.state[np.flatnonzero(w0.state == W_OFFLINE)[::3]] = W_IDLE  # some couriers logged on and waiting
    open_ids = np.flatnonzero((o0.status[: o0.n] == O_OPEN) & (o0.created[: o0.n] < 12 * 60.0))
    cap = np.where((w0.state != W_OFFLINE) & (w0.state != W_BREAK), f.settings.max_batch - w0.queue_len, 0)
    slots = np.repeat(np.arange(w0.n_workers), cap)
    n = min(open_ids.size, slots.size, 150)
    assert n > 50
    oid = rng.permutation(open_ids)[:n].astype(np.int64)
    # every slot of the chosen couriers, about half of the offers to busy couriers and half to idle ones:
    # several offers to one courier, and offers to idle and to busy couriers alike
    chosen = rng.permutation(np.flatnonzero(cap > 0))
    busy, idle = chosen[w0.state[chosen] != W_IDLE], chosen[w0.state[chosen] == W_IDLE]
    busy_slots, idle_slots = np.repeat(busy, cap[busy]), np.repeat(idle, cap[idle])
    b = min(busy_slots.size, n // 2)
    wid = np.concatenate([busy_slots[:b], idle_slots[: n - b]])
    n = wid.size
    oid, wid = oid[:n], rng.permutation(wid).astype(np.int64)
    deadline = rng.uniform(10.0, 60.0, n).astype(np.float32)
    pay = (rng.lognormal(math.log(6.0), 0.8, n)).astype(np.float32)
    pen = rng.uniform(0.0, 0.5, n).astype(np.float32)
    excuse = rng.random(n) < 0.5
    wa, oa, wb, ob = copy.deepcopy(w0), copy.deepcopy(o0), copy.deepcopy(w0), copy.deepcopy(o0)
    acc_a = _apply_offers(K.apply_offers, P, wa, oa, 720, 720.0, oid, wid, deadline, pay, pen, excuse)
    acc_b = _apply_offers(R.apply_offers, P, wb, ob, 720, 720.0, oid, wid, deadline, pay, pen, excuse)
    _assert_bitwise(acc_a, acc_b, "out_accepted")
    _assert_same_state(wa, wb, oa, ob, "apply_offers")
    assert acc_a.all() if always_on else (0 < acc_a.sum() < n)
    assert (np.bincount(wid[acc_a]) >= 2).any()  # a courier took two offers in one call
    assert (w0.state[wid[acc_a]] == W_IDLE).any() and (w0.state[wid[acc_a]] != W_IDLE).any()
    if not geography:
        started = oa.status[oid[acc_a]] == O_PICKED
        assert started.any()
    # the whole state again on the twin's output, then riding on from it
    _worker_step(K.worker_step, P, wa, oa, 720.0, f.dt, 1.0)
    _worker_step(R.worker_step, P, wb, ob, 720.0, f.dt, 1.0)
    _assert_same_state(wa, wb, oa, ob, "worker_step after the offers")


def test_apply_offers_empty_batch(noon):
    f, w0, o0 = noon
    wa, oa = copy.deepcopy(w0), copy.deepcopy(o0)
    e_i, e_f = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    for fn in (K.apply_offers, R.apply_offers):
        out = _apply_offers(fn, f.params, wa, oa, 1, 1.0, e_i, e_i, e_f, e_f, e_f, np.zeros(0, dtype=np.bool_))
        assert out.size == 0
    _assert_same_state(wa, w0, oa, o0, "empty offers")


# -- new orders ---------------------------------------------------------------------------------


def _new_orders(fn, n: int, first_id: int, geography: bool, m_x, m_y, m_prep, city: float = 10.0) -> dict:
    out = dict(
        created=np.zeros(n), ready=np.zeros(n), ready_hat=np.zeros(n), merchant=np.zeros(n, dtype=np.int32),
        px=np.zeros(n, dtype=np.float32), py=np.zeros(n, dtype=np.float32), dx=np.zeros(n, dtype=np.float32),
        dy=np.zeros(n, dtype=np.float32), trip=np.zeros(n, dtype=np.float32), service=np.zeros(n, dtype=np.float32),
    )  # fmt: skip
    fn(KEY, first_id, 733.0, 1.0, geography, 2.5, city, 30.0, m_x, m_y, m_prep, *out.values())
    return out


@pytest.mark.parametrize("geography", [True, False])
@pytest.mark.parametrize(("n", "first_id"), [(0, 0), (1, 7), (3000, 123_456_789_012)])
def test_make_orders_matches_twin_at_the_city_edges(n, first_id, geography):
    """Merchants in the corners and the middle: customers' positions are clipped to the city."""
    m_x = np.array([0.0, 10.0, 0.3, 5.0, 9.9], dtype=np.float32)
    m_y = np.array([0.0, 10.0, 9.8, 5.0, 0.1], dtype=np.float32)
    m_prep = np.array([10.0, 4.5, 17.25, 8.0, 12.0], dtype=np.float32)
    got = _new_orders(K.make_orders, n, first_id, geography, m_x, m_y, m_prep)
    want = _new_orders(R.make_orders, n, first_id, geography, m_x, m_y, m_prep)
    for name in got:
        _assert_bitwise(got[name], want[name], name)
    if n > 1000:
        assert ((got["dx"] == 0) | (got["dy"] == 0)).any() and ((got["dx"] == 10) | (got["dy"] == 10)).any()
        assert np.unique(got["merchant"]).size == m_x.size
        assert (got["created"] >= 733.0).all() and (got["created"] < 734.0).all()
        if geography:
            assert (got["ready"] > got["ready_hat"]).any() and (got["ready"] < got["ready_hat"]).any()
        else:
            assert (got["service"] > 0).all() and abs(got["service"].mean() - 30.0) < Z * 30.0 / math.sqrt(n)


# -- thread-count independence ---------------------------------------------------------------------


@pytest.mark.skipif(nb.config.NUMBA_NUM_THREADS < 2, reason="needs NUMBA_NUM_THREADS >= 2")
def test_fleet_run_bitwise_identical_across_thread_counts(monkeypatch):
    """Two days of the rest-respecting fleet, on one thread and on two (the parallel path forced).

    Steps of a whole tick (15 minutes) keep the parallel launches few: each costs far more on a busy machine.
    """
    monkeypatch.setattr(sim.engine, "PARALLEL_MIN_ROWS", 1)
    sc = _scenario(days=2, dispatcher="rest_respecting", step_minutes=15.0)
    threads_seen = Counter()
    step = K.worker_step

    def counted(*args):
        threads_seen[nb.get_num_threads()] += 1
        return step(*args)

    monkeypatch.setattr(K, "worker_step", counted)
    recs = {}
    for threads in (1, 2):
        with _threads(threads):
            recs[threads] = simulate(sc).fleet
    assert set(threads_seen) == {1, 2} and threads_seen[1] == threads_seen[2]
    a, b = recs[1], recs[2]
    _assert_bitwise(a.worker_days, b.worker_days, "worker_days")
    _assert_bitwise(a.series, b.series, "series")
    assert a.orders.keys() == b.orders.keys()
    for name in a.orders:
        _assert_bitwise(a.orders[name], b.orders[name], f"orders.{name}")
    assert a.n_offers == b.n_offers
    assert a.worker_days[:, :, DELIV].sum(axis=1).min() > 1000  # both days were busy


# -- arrival counts ---------------------------------------------------------------------------------


def _counts(lam: float, steps) -> np.ndarray:
    return np.array([K.poisson_count(KEY, int(s), lam) for s in steps], dtype=np.int64)


@pytest.mark.parametrize("lam", [3.7, 45.0])
def test_poisson_count_moments_and_frequencies(lam):
    n = 40_000
    x = _counts(lam, range(n))
    mean, var = x.mean(), x.var(ddof=1)
    assert abs(mean - lam) < Z * math.sqrt(lam / n), (mean, lam)
    # Var of the sample variance of a Poisson: (mu4 - sigma^4 (n - 3) / (n - 1)) / n, mu4 = lam (1 + 3 lam)
    se_var = math.sqrt((lam * (1.0 + 3.0 * lam) - lam * lam * (n - 3) / (n - 1)) / n)
    assert abs(var - lam) < Z * se_var, (var, lam, se_var)
    for k in range(int(lam - 2 * math.sqrt(lam)), int(lam + 2 * math.sqrt(lam)) + 1):
        p = math.exp(k * math.log(lam) - lam - math.lgamma(k + 1))
        assert abs((x == k).mean() - p) < Z * math.sqrt(p * (1 - p) / n), (k, (x == k).mean(), p)


@pytest.mark.parametrize("lam", [0.0, -1.0, 1e-3, 3.7, 20.0, 20.000001, 45.0, 301.0])
def test_poisson_count_matches_twin_and_is_keyed(lam):
    steps = range(1000, 1300)
    x = _counts(lam, steps)
    np.testing.assert_array_equal(x, [R.poisson_count(KEY, s, lam) for s in steps])
    np.testing.assert_array_equal(x, _counts(lam, steps))  # reproducible for (key, step)
    np.testing.assert_array_equal(x[::-1], _counts(lam, reversed(steps)))  # independent of the call order
    if lam <= 0.0:
        assert (x == 0).all()
        return
    chunks = math.ceil(lam / 20.0)
    u = uniform_np(KEY, np.array(steps)[:, None], np.arange(chunks)[None, :], Purpose.ORDER_COUNT)
    by_chunk = [[R._poisson_inverse(float(v), lam / chunks) for v in row] for row in u]
    np.testing.assert_array_equal(x, np.sum(by_chunk, axis=1))  # one inverse transform per chunk
    if lam > 1.0:
        other = np.array([K.poisson_count(KEY + 1, s, lam) for s in steps])
        assert (other != x).mean() > 0.5  # another key, other counts


# -- defects the twins reproduce (they follow the kernels) ------------------------------------------


def _one_courier(state: int, **values):
    """One courier and one order, in the layout of the kernel's arguments (float32 state)."""
    f4 = np.float32
    w = dict(x=f4([1]), y=f4([1]), speed=f4([18]), target=f4([300]), max_online=f4([660]), start=f4([480]),
             break_after=f4([210]), state=np.array([state], np.int8), queue=np.array([[0, -1, -1]], np.int32),
             qlen=np.zeros(1, np.int8), activity=f4([0]), break_left=f4([0]), pause_pending=f4([0]),
             online=f4([300]), stretch=f4([250]), pause=f4([0]), fatigue=f4([0.5]), net=f4([200]),
             finishing=np.zeros(1, bool), done=np.zeros(1, bool), rest=np.zeros(1, bool),
             day_stats=np.zeros((1, N_WD), f4))  # fmt: skip
    for k, v in values.items():
        w[k][...] = v
    o = dict(created=np.zeros(1), ready=np.zeros(1), ready_hat=np.zeros(1), px=f4([1]), py=f4([1]), dx=f4([1]),
             dy=f4([1]), service=f4([0]), deadline=f4([30]), pay=f4([6]), late_pen=f4([0]), excuse=np.zeros(1, bool),
             status=np.array([O_PICKED], np.int8), picked_at=np.zeros(1), started=np.zeros(1), done_at=np.full(1, np.nan),
             penalty=f4([0]), late=f4([0]), unc=f4([0]))  # fmt: skip
    return w, o


def _params(**settings) -> np.ndarray:
    fleet = {"n_workers": 1, **settings}
    return K.pack_params(scenario_from_dict({"population": {"n_users": 0}, "clock": {"days": 1}, "fleet": fleet}))


def _ride(fn, P, w, o, t0: float, minutes: int) -> None:
    with _threads(1):  # one courier: no use waking other threads
        for s in range(minutes):
            fn(t0 + s, 1.0, (t0 + s) % 1440.0, 1.0, P, *w.values(), *o.values())


@pytest.mark.parametrize("fn", [K.worker_step, R.worker_step], ids=["kernel", "twin"])
def test_a_full_20_minute_pause_ends_the_stretch(fn):
    """A courier hands over the last order 0.005 min into a step, then takes the platform's 20-minute pause."""
    w, o = _one_courier(W_AT_CUSTOMER, qlen=1, activity=0.005, pause_pending=20.0, stretch=250.0, net=0.0)
    _ride(fn, _params(), w, o, 900.0, 22)  # the pause sums to 19.999998 in float32
    assert o["done_at"][0] == pytest.approx(900.005) and w["day_stats"][0, BRK] == pytest.approx(20.0)
    assert w["stretch"][0] < 2.0, w["stretch"][0]  # only the minutes after the pause


@pytest.mark.parametrize("fn", [K.worker_step, R.worker_step], ids=["kernel", "twin"])
def test_short_breaks_end(fn):
    """break_minutes = 10: an idle courier on schedule past the break point, two hours later."""
    w, o = _one_courier(W_IDLE, qlen=0, queue=-1, stretch=250.0, net=250.0, online=300.0)
    _ride(fn, _params(workers={"break_minutes": 10.0}), w, o, 900.0, 120)
    assert w["day_stats"][0, BRK] <= 20.0 and w["day_stats"][0, ONLINE] >= 100.0, w["day_stats"][0, [ONLINE, BRK]]


@pytest.mark.parametrize("fn", [K.worker_step, R.worker_step], ids=["kernel", "twin"])
def test_always_on_courier_returns_the_next_day(fn):
    """Offline at midnight (yesterday's stop), done flag reset by end_of_day: online again during the day."""
    w, o = _one_courier(W_OFFLINE, qlen=0, queue=-1, online=0.0, stretch=0.0)
    _ride(fn, _params(shifts="always_on"), w, o, 1440.0, 600)
    assert w["day_stats"][0, ONLINE] > 0.0

"""Dispatchers: conformance, bad plugins, and the properties of Art. 20 the engine must keep.

Properties (hypothesis, small fleets): the rest-respecting dispatchers never offer an order to
a courier past the caps (8 h a day, 4 h continuous without a 20-minute pause, a seventh day in
a row); every order is delivered, cancelled or still open or carried at the end (none lost);
pay is never negative and no penalty exceeds its order's pay.
"""

import re
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sim import registry
from sim.builtin.dispatchers import BASE_DISPATCHERS, RestRespecting
from sim.engine import simulate
from sim.fleet.state import O_ASSIGNED, O_CANCELLED, O_DELIVERED, O_OPEN, O_PICKED
from sim.fleet.view import BaseDispatcher, Dispatch
from sim.platform import PluginError
from sim.scenario import scenario_from_dict
from sim.testing import check_dispatcher


def _fleet_scenario(kind="nearest", days=1, n_workers=60, seed=3, orders=1500.0, params=None, **fleet):
    return scenario_from_dict(
        {
            "seed": seed,
            "clock": {"days": days},
            "population": {"n_users": 0},
            "fleet": {"n_workers": n_workers, "n_merchants": 50, "orders_per_day": orders, **fleet},
            "dispatcher": {"kind": kind, "params": params or {}},
        }
    )


@pytest.mark.parametrize("kind", sorted(BASE_DISPATCHERS))
def test_builtins_pass_conformance(kind):
    passed = check_dispatcher(kind)
    assert "check_dispatch_output" in passed and "check_deterministic" in passed
    if kind in ("rest_respecting", "income_fair"):
        assert "check_access" in passed
    if kind == "income_fair":
        assert "check_settle" in passed


# -- bad plugins -------------------------------------------------------------------------------


class _Nearest(BaseDispatcher):
    """Offers every order to the first courier with capacity (at most its capacity)."""

    def dispatch(self, order_idx, view):
        cap = np.asarray(view.worker_capacity).copy()
        out = np.full(order_idx.shape[0], -1, dtype=np.int64)
        for j in range(order_idx.shape[0]):
            free = np.flatnonzero(cap > 0)
            if free.size:
                out[j] = free[0]
                cap[free[0]] -= 1
        n = order_idx.shape[0]
        return Dispatch(out, np.full(n, 40.0), np.full(n, 8.0))


class ReturnsList(_Nearest):
    def dispatch(self, order_idx, view):
        return [0] * order_idx.shape[0]


class WrongShape(_Nearest):
    def dispatch(self, order_idx, view):
        d = super().dispatch(order_idx, view)
        return Dispatch(d.worker_idx[:-1], d.deadline_minutes, d.pay)


class Overbooks(_Nearest):
    def dispatch(self, order_idx, view):
        n = order_idx.shape[0]
        return Dispatch(np.zeros(n, dtype=np.int64), np.full(n, 40.0), np.full(n, 8.0))


class NegativePay(_Nearest):
    def dispatch(self, order_idx, view):
        d = super().dispatch(order_idx, view)
        return Dispatch(d.worker_idx, d.deadline_minutes, -d.pay)


class NanDeadline(_Nearest):
    def dispatch(self, order_idx, view):
        d = super().dispatch(order_idx, view)
        return Dispatch(d.worker_idx, d.deadline_minutes * np.nan, d.pay)


class WritesView(_Nearest):
    def dispatch(self, order_idx, view):
        view.worker_x[0] = 0.0
        return super().dispatch(order_idx, view)


class ReadsTruth(_Nearest):
    def dispatch(self, order_idx, view):
        _ = view.true_target_earnings
        return super().dispatch(order_idx, view)


class Raises(_Nearest):
    def dispatch(self, order_idx, view):
        raise RuntimeError("boom")


class BadAccess(_Nearest):
    def access(self, worker_idx, view):
        return np.full(worker_idx.shape[0], np.nan)


class NegativeTopUp(_Nearest):
    def settle(self, worker_idx, view):
        return np.full(worker_idx.shape[0], -1.0)


class Unseeded(_Nearest):
    def dispatch(self, order_idx, view):
        d = super().dispatch(order_idx, view)
        return Dispatch(d.worker_idx, d.deadline_minutes, d.pay * np.random.default_rng().random())


class HugePay(_Nearest):
    def dispatch(self, order_idx, view):
        d = super().dispatch(order_idx, view)
        return Dispatch(d.worker_idx, d.deadline_minutes, d.pay * 1e38)


class NoDispatch:
    def fit(self, view, log):
        return self


BAD = {
    "ReturnsList": (ReturnsList, "returned list"),
    "WrongShape": (WrongShape, "worker_idx"),
    "Overbooks": (Overbooks, "who can take"),
    "NegativePay": (NegativePay, "pay that is negative"),
    "NanDeadline": (NanDeadline, "deadline"),
    "WritesView": (WritesView, "check_no_view_writes"),
    "ReadsTruth": (ReadsTruth, "ground truth"),
    "Raises": (Raises, "RuntimeError: boom"),
    "BadAccess": (BadAccess, "NaN or negative minutes"),
    "NegativeTopUp": (NegativeTopUp, "top-up that is negative"),
    "Unseeded": (Unseeded, "check_deterministic"),
    "NoDispatch": (NoDispatch, "no dispatch() method"),
    "HugePay": (HugePay, "pay that is negative, NaN or infinite"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_check_dispatcher_rejects_bad_plugins(name):
    cls, expected = BAD[name]
    with pytest.raises(PluginError, match=re.escape(expected)):
        check_dispatcher(cls())


def test_good_plugin_passes_and_runs_by_module_path():
    assert "check_dispatch_output" in check_dispatcher(_Nearest())
    rec = simulate(_fleet_scenario(kind="tests.test_dispatchers:_Nearest", n_workers=40, orders=800.0))
    assert rec.fleet.dispatcher == "tests.test_dispatchers:_Nearest"
    assert (rec.fleet.orders["status"] == O_DELIVERED).sum() > 100


@pytest.mark.parametrize("name", ["Overbooks", "NegativePay", "Raises", "BadAccess", "NegativeTopUp"])
def test_engine_reports_broken_plugins(name):
    cls, expected = BAD[name]
    with pytest.raises(PluginError, match=re.escape(expected)):
        simulate(_fleet_scenario(), dispatcher=cls())


def test_cli_exit_2_on_broken_dispatcher(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(
        "[population]\nn_users = 0\n[clock]\ndays = 1\n[fleet]\nn_workers = 30\norders_per_day = 600\n"
        '[dispatcher]\nkind = "tests.test_dispatchers:Overbooks"\n'
    )
    proc = subprocess.run(
        [sys.executable, "-m", "sim.cli", "run", str(path), "--out", str(tmp_path / "out"), "--no-progress"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "dispatcher 'tests.test_dispatchers:Overbooks'" in proc.stderr and "fix:" in proc.stderr
    assert not list((tmp_path / "out").glob("*.parquet"))


def test_entry_point_by_name(monkeypatch):
    class _EP:
        name = "firstfree"

        def load(self):
            return _Nearest

    monkeypatch.setattr(registry, "_dispatcher_entry_points", lambda: {"firstfree": _EP()})
    assert "firstfree" in registry.available_dispatchers()
    assert isinstance(registry.make_dispatcher("firstfree"), _Nearest)


# -- properties --------------------------------------------------------------------------------


class _Recording(RestRespecting):
    """Rest-respecting dispatcher that records the courier state behind every offer it makes."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.offers_ = []

    def dispatch(self, order_idx, view):
        d = super().dispatch(order_idx, view)
        w = d.worker_idx[d.worker_idx >= 0]
        self.offers_.append(
            np.column_stack([
                np.asarray(view.worker_online_minutes_today)[w], np.asarray(view.worker_stretch_minutes)[w],
                np.asarray(view.worker_consecutive_days)[w],
            ])
        )  # fmt: skip
        return d


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), cap_hours=st.sampled_from([6.0, 8.0]), streak=st.sampled_from([2, 6]))
@example(seed=679, cap_hours=8.0, streak=6)  # a courier finishing after midnight, then a seventh day (fixed)
def test_rest_respecting_never_offers_past_the_caps(seed, cap_hours, streak):
    cap = 60.0 * cap_hours
    disp = _Recording(daily_cap_minutes=cap, max_consecutive_days=streak)
    sc = _fleet_scenario(kind="rest_respecting", days=3, seed=seed, orders=2000.0)
    rec = simulate(sc, dispatcher=disp)
    offers = np.concatenate(disp.offers_)
    assert offers.shape[0] > 200
    step = sc.fleet.step_minutes
    assert (offers[:, 0] + step <= cap + 1e-3).all()
    assert (offers[:, 1] + step <= 240.0 + 1e-3).all()
    # an offered courier is never on a day past the streak limit
    assert (offers[:, 2] < streak).all()
    f = rec.fleet
    assert (f.day_column("offers_after_4h") == 0).all() and (f.day_column("order_taking_minutes") <= cap + 1e-3).all()
    worked = f.day_column("online_minutes") > 0
    runs = np.zeros(f.n_workers, dtype=int)
    for day in range(worked.shape[0]):
        runs = np.where(worked[day], runs + 1, 0)
        # the run before the simulation counts too: consecutive_days starts from each courier's history
        assert (runs <= streak).all()


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(sorted(BASE_DISPATCHERS)),
    seed=st.integers(0, 10_000),
    penalty=st.sampled_from([0.0, 0.5, 20.0]),
    batch=st.integers(1, 3),
)
def test_no_order_lost_and_pay_never_negative(kind, seed, penalty, batch):
    params = {"late_penalty": penalty} if kind != "income_fair" else {}
    rec = simulate(_fleet_scenario(kind=kind, seed=seed, params=params, max_batch=batch, orders=2500.0))
    o = rec.fleet.orders
    status = o["status"]
    n = status.size
    assert n > 500
    counts = {s: int((status == s).sum()) for s in (O_OPEN, O_ASSIGNED, O_PICKED, O_DELIVERED, O_CANCELLED)}
    assert sum(counts.values()) == n  # every order is in exactly one of the five states
    delivered, cancelled = status == O_DELIVERED, status == O_CANCELLED
    assert (o["worker"][delivered] >= 0).all()
    assert (o["done_at"][delivered] >= o["assigned_at"][delivered]).all()
    assert (o["assigned_at"][delivered] >= o["created"][delivered]).all()
    assert (o["worker"][cancelled] == -1).all()
    np.testing.assert_allclose(o["done_at"][cancelled], o["created"][cancelled] + 45.0)
    assert (o["pay"][delivered] >= 0).all()
    assert (o["penalty"][delivered] >= 0).all() and (o["penalty"] <= o["pay"] + 1e-4).all()
    f = rec.fleet
    assert (f.day_column("gross_pay") - f.day_column("penalties") >= -1e-3).all()
    assert (f.day_column("top_up") >= 0).all()
    # orders still carried at the end are the ones in couriers' queues: none dropped, none carried twice
    carried = (status == O_ASSIGNED) | (status == O_PICKED)
    assert carried.sum() <= f.n_workers * batch


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(0, 30), k=st.integers(1, 8), window=st.sampled_from([0.0, 0.5, 2.0]))
def test_greedy_assign_kernel_matches_twin(seed, n, k, window):
    from sim.kernels import dispatch as D
    from sim.kernels import reference_dispatch as R

    rng = np.random.default_rng(seed)
    n_workers = 12
    cand = rng.integers(-1, n_workers, size=(n, k)).astype(np.int64)
    dist = np.sort(rng.uniform(0, 5, size=(n, k)), axis=1)
    cap = rng.integers(0, 3, n_workers).astype(np.int64)
    decliner = rng.integers(-1, n_workers, n).astype(np.int32)
    score = rng.choice([0.0, 1.0, 2.5], n_workers)
    outs = []
    for fn in (D.greedy_assign, R.greedy_assign):
        c = cap.copy()
        w, d = np.empty(n, dtype=np.int64), np.empty(n)
        fn(cand, dist, c, decliner, score, window, w, d)
        outs.append((w, d, c))
    for a, b in zip(*outs):
        np.testing.assert_array_equal(a, b)
    w, _, c = outs[0]
    # capacity is never overdrawn and every assignment used one unit of it
    assert (c >= 0).all()
    np.testing.assert_array_equal(cap - c, np.bincount(w[w >= 0], minlength=n_workers))
    assert not (w == decliner)[w >= 0].any()


def test_couriers_finishing_after_midnight_still_work_the_next_day():
    # strict stacks orders, so couriers are still delivering at midnight; logging off after
    # midnight must not count as being done with the new day
    rec = simulate(_fleet_scenario(kind="strict", days=3, orders=3000.0))
    f = rec.fleet
    online, taking = f.day_column("online_minutes"), f.day_column("order_taking_minutes")
    carried = (online > 0) & (taking == 0)
    assert carried.any()  # some couriers did finish yesterday's box after midnight
    lost = carried & ~f.rest_planned  # ...and then did not work the day they had not planned to rest
    assert lost.sum() == 0, np.argwhere(lost)[:5]


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), m=st.integers(1, 400), n=st.integers(0, 40), k=st.integers(1, 8),
       lattice=st.booleans())  # fmt: skip
def test_grid_nearest_matches_brute_force(seed, m, n, k, lattice):
    from sim.kernels import dispatch as D
    from sim.kernels import reference_dispatch as R

    rng = np.random.default_rng(seed)
    size = 10.0
    draw = (lambda s: np.round(rng.uniform(0, size, s))) if lattice else (lambda s: rng.uniform(0, size, s))
    px, py, qx, qy = draw(m), draw(m), draw(n), draw(n)  # on a lattice: many ties in distance
    k = min(k, m)
    cell, g = D.grid_shape(m, size)
    got = np.empty((n, k), dtype=np.int64), np.empty((n, k))
    want = np.empty((n, k), dtype=np.int64), np.empty((n, k))
    D.nearest_candidates(qx, qy, px, py, k, cell, g, *got)
    R.nearest_candidates(qx, qy, px, py, k, cell, g, *want)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_grid_nearest_is_the_same_on_one_and_two_threads():
    from kernel_checks import threads

    from sim.kernels import dispatch as D

    rng = np.random.default_rng(4)
    px, py, qx, qy = (rng.uniform(0, 30, s) for s in (50_000, 50_000, 3_000, 3_000))
    cell, g = D.grid_shape(px.size, 30.0)
    outs = []
    for t in (1, 2):
        out = np.empty((qx.size, 8), dtype=np.int64), np.empty((qx.size, 8))
        with threads(t):
            D.nearest_candidates(qx, qy, px, py, 8, cell, g, *out)
        outs.append(out)
    np.testing.assert_array_equal(outs[0][0], outs[1][0])
    np.testing.assert_array_equal(outs[0][1], outs[1][1])


def test_surge_pay_brings_offline_couriers_online_early():
    # the same fleet under surge pay, with couriers who answer a surge and with couriers who never do
    def early_courier_steps(premium):
        from sim.engine import FeedWorld

        sc = _fleet_scenario(kind="surge", days=2, n_workers=80, orders=2400.0,
                             workers={"surge_response_premium": premium})  # fmt: skip
        world, count = FeedWorld(sc), 0
        while world.tick < world.n_ticks:
            world.step()
            w = world.fleet.workers
            minute = (world.tick * sc.clock.tick_minutes) % 1440
            count += int(((w.state != 0) & (minute < w.true_start_minute)).sum())
        return count

    assert early_courier_steps(0.01) > 0
    assert early_courier_steps(1e6) == 0  # nobody answers: everyone starts at their start hour

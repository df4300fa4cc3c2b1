"""Conformance checks for plugin authors (like scikit-learn's estimator checks).

>>> from sim.testing import check_recommender
>>> check_recommender(MyRecommender())  # doctest: +SKIP

>>> from sim.testing import check_pricer
>>> check_pricer(MyPricer())  # doctest: +SKIP

>>> from sim.testing import check_dispatcher
>>> check_dispatcher(MyDispatcher())  # doctest: +SKIP

Public objects
--------------
check_recommender
    Runs every check on a recommender instance; raises :class:`ConformanceError`
    naming the failed check, or returns the list of checks passed.
check_pricer
    Runs every check on a pricer (instance, class, name or
    :class:`sim.scenario.PricerSettings`): protocol, ``fit`` returns self, the
    output of ``quote`` (shape, dtype, finite positive prices, the optional
    disclosed mask), determinism, batch order, no writes to the view or the
    inputs, the empty batch, no ground truth. Raises
    :class:`sim.platform.PluginError` naming the pricer, the failed check and
    the fix (the error the engine and the CLI report for a bad pricer), or
    returns the list of checks passed.
PRICER_CHECKS
    Names of the pricer checks, in the order they run.
check_dispatcher, DISPATCHER_CHECKS
    The same for dispatchers (protocol, ``fit`` returns self, the output of
    ``dispatch`` and of the optional ``access`` and ``settle``, determinism, no
    writes, the empty batch, no ground truth).
make_check_fleet
    A small fleet at the lunch peak, whose ``fleet.view`` :func:`check_dispatcher` uses.
make_check_world
    A tiny world whose view and logs the checks use.
make_check_market
    A tiny world with a market, whose ``market.view`` :func:`check_pricer` uses.
ConformanceError
"""

from __future__ import annotations

import copy
import hashlib

import numpy as np

from sim.platform import InteractionLog, PluginError
from sim.scenario import scenario_from_dict

__all__ = [
    "DISPATCHER_CHECKS",
    "PRICER_CHECKS",
    "check_dispatcher",
    "make_check_fleet",
    "ConformanceError",
    "check_pricer",
    "check_recommender",
    "make_check_market",
    "make_check_world",
]


class ConformanceError(AssertionError):
    """A recommender failed a conformance check."""


def make_check_world(seed: int = 7, n_users: int = 300, n_items: int = 400, ticks: int = 8):
    """Return a small :class:`sim.engine.FeedWorld` advanced ``ticks`` ticks with a content recommender."""
    from sim.engine import FeedWorld

    sc = scenario_from_dict(
        {
            "seed": seed,
            "clock": {"days": 1},
            "population": {"n_users": n_users, "opt_out_share": 0.2},
            "catalogue": {"n_items": n_items, "new_items_per_day": 20},
            "recommender": {"kind": "content", "n_candidates": 50, "slate_size": 10},
        }
    )
    world = FeedWorld(sc)
    world.tick = 18 * world.ticks_per_day // 24  # start at 18:00, when many users are active
    for _ in range(ticks):
        world.step()
    return world


def _digest(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _batch(world, n_batch: int = 64):
    rng = np.random.default_rng(11)
    user_idx = np.sort(rng.choice(world.users.n_users, n_batch, replace=False)).astype(np.int64)
    cand = np.stack([rng.choice(world.items.n_items, 50, replace=False) for _ in range(n_batch)]).astype(np.int32)
    return user_idx, cand


def _log(world) -> InteractionLog:
    rng = np.random.default_rng(5)
    n = 200
    return InteractionLog(
        user_idx=rng.integers(0, world.users.n_users, n).astype(np.int64),
        item_idx=rng.integers(0, world.items.n_items, n).astype(np.int32),
        minutes=rng.uniform(0.1, 2.0, n).astype(np.float32),
        step=np.zeros(n, dtype=np.int64),
        item_impressions=rng.integers(0, 20, world.items.n_items).astype(np.int32),
    )


def check_recommender(rec, name: str | None = None) -> list[str]:
    """Run the conformance checks on a recommender instance.

    Checks: fit returns self; score returns a float array of shape
    (n_batch, n_cand) with no NaN or +inf; inputs are not mutated; the result
    is deterministic (two deep copies fitted on the same log agree); rows are
    permutation-equivariant in the users of the batch; the view refuses ground
    truth (``true_*``); and scores do not change when the world's ground truth
    is scrambled. ``access``, if present, returns two float arrays (n_batch,).

    Returns
    -------
    list of str
        Names of the checks passed.

    Raises
    ------
    ConformanceError
        Naming the recommender and the failed check.
    """
    label = name or type(rec).__name__
    passed: list[str] = []

    def fail(check, msg):
        raise ConformanceError(f"recommender {label}: {check} failed: {msg}")

    for meth in ("fit", "score"):
        if not callable(getattr(rec, meth, None)):
            fail("check_protocol", f"no {meth}() method")
    passed.append("check_protocol")

    world = make_check_world()
    view, log = world.view, _log(world)
    view._set(step=world.tick * 1024)
    user_idx, cand = _batch(world)

    a, b = copy.deepcopy(rec), copy.deepcopy(rec)
    if a.fit(view, log) is not a:
        fail("check_fit_returns_self", "fit() must return self")
    b.fit(view, log)
    passed.append("check_fit_returns_self")

    before = _digest(user_idx, cand, log.item_idx, log.minutes, world.platform.user_hat, world.items.embedding)
    s1 = a.score(user_idx, cand, view)
    if before != _digest(user_idx, cand, log.item_idx, log.minutes, world.platform.user_hat, world.items.embedding):
        fail("check_no_input_mutation", "score() changed its inputs")
    passed.append("check_no_input_mutation")

    if not isinstance(s1, np.ndarray) or s1.shape != cand.shape:
        fail("check_score_shape", f"expected ndarray of shape {cand.shape}, got {getattr(s1, 'shape', type(s1))}")
    if s1.dtype.kind != "f":
        fail("check_score_dtype", f"scores must be floating (float32), got {s1.dtype}")
    if np.isnan(s1).any() or np.isposinf(s1).any():
        fail("check_score_finite", "scores contain NaN or +inf")
    passed += ["check_score_shape", "check_score_dtype", "check_score_finite"]

    s2 = b.score(user_idx, cand, view)
    if not np.array_equal(s1, s2):
        fail("check_deterministic", "two copies fitted on the same data gave different scores")
    passed.append("check_deterministic")

    perm = np.random.default_rng(3).permutation(user_idx.size)
    s3 = a.score(user_idx[perm], cand[perm], view)
    if not np.array_equal(s3, s1[perm]):
        fail("check_user_permutation", "permuting the users of a batch must permute the score rows")
    passed.append("check_user_permutation")

    try:
        view.true_interest  # noqa: B018
        fail("check_no_ground_truth", "the view exposed ground truth")
    except AttributeError:
        pass
    world.users.true_interest[:] = np.random.default_rng(9).permutation(world.users.true_interest)
    world.items.true_hook[:] = 0.0
    world.items.true_quality[:] = 0.0
    if not np.array_equal(a.score(user_idx, cand, view), s1):
        fail("check_no_ground_truth", "scores changed when only ground truth changed")
    passed.append("check_no_ground_truth")

    if hasattr(rec, "access"):
        try:
            allowance, prompt_after = a.access(user_idx, view)
        except (TypeError, ValueError) as exc:
            fail("check_access", f"access() must return (allowance, prompt_after): {exc}")
        for arr, what in ((allowance, "allowance"), (prompt_after, "prompt_after")):
            arr = np.asarray(arr)
            if arr.shape != user_idx.shape or arr.dtype.kind != "f" or np.isnan(arr).any():
                fail("check_access", f"{what} must be a float array of shape {user_idx.shape} without NaN")
        passed.append("check_access")
    return passed


# -- pricers ---------------------------------------------------------------------------------

PRICER_CHECKS = (
    "check_protocol",
    "check_fit_returns_self",
    "check_quote_output",
    "check_no_view_writes",
    "check_deterministic",
    "check_batch_order",
    "check_empty_batch",
    "check_no_ground_truth",
)


def make_check_market(seed: int = 7, n_users: int = 300, n_products: int = 200, ticks: int = 4):
    """Return a small :class:`sim.engine.FeedWorld` with a market, advanced ``ticks`` ticks from 18:00.

    Its ``market.view`` is the :class:`sim.market.view.MarketView` the pricer
    checks quote against (built-in uniform pricer; minors' mode on, so some
    users have payment caps).
    """
    from sim.engine import FeedWorld

    sc = scenario_from_dict(
        {
            "seed": seed,
            "clock": {"days": 1},
            "population": {"n_users": n_users, "opt_out_share": 0.2},
            "catalogue": {"n_items": 400, "new_items_per_day": 20},
            "recommender": {"kind": "content", "n_candidates": 50, "slate_size": 10, "minors_mode": {}},
            "market": {"n_products": n_products, "store_visits_per_day": 2.0},
        }
    )
    world = FeedWorld(sc)
    world.tick = 18 * world.ticks_per_day // 24
    for _ in range(ticks):
        world.step()
    return world


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.flags.writeable = False
    return a


def _market_batch(view, n_batch: int, seed: int):
    """Return (user_idx int64, product_idx int32, wtp_hat float64), read-only, users unique and sorted."""
    rng = np.random.default_rng(seed)
    n_batch = min(n_batch, view.n_users)
    user_idx = np.sort(rng.choice(view.n_users, n_batch, replace=False)).astype(np.int64)
    product_idx = rng.integers(0, view.n_products, n_batch).astype(np.int32)
    wtp_hat = view.product_list_price[product_idx].astype(np.float64) * rng.lognormal(0.0, 0.5, n_batch)
    return _frozen(user_idx), _frozen(product_idx), _frozen(wtp_hat)


def _quote_log(view, n: int, seed: int):
    from sim.market.view import QuoteLog

    rng = np.random.default_rng(seed)
    user_idx = rng.integers(0, view.n_users, n).astype(np.int64)
    product_idx = rng.integers(0, view.n_products, n).astype(np.int32)
    lp = view.product_list_price[product_idx].astype(np.float64)
    return QuoteLog(
        user_idx=_frozen(user_idx),
        product_idx=_frozen(product_idx),
        price=_frozen((lp * rng.uniform(0.8, 1.3, n)).astype(np.float32)),
        disclosed_mask=_frozen(rng.random(n) < 0.2),
        wtp_hat=_frozen(lp * rng.lognormal(0.0, 0.5, n)),
        bought_mask=_frozen(rng.random(n) < 0.3),
    )


def _view_digest(view, *extra) -> str:
    arrays = [a for _, a in sorted(vars(view).items()) if isinstance(a, np.ndarray)]
    return _digest(*arrays, *extra)


def _plugin_caller(fail, truth_fix: str, view_name: str):
    """Return ``call(check, meth, fn, *args)``: run a plugin method, turning its failures into check failures."""

    def call(check, meth, fn, *args):
        try:
            return fn(*args)
        except PluginError:
            raise
        except AttributeError as exc:
            if "ground truth" in str(exc):
                fail("check_no_ground_truth", f"{meth}() read ground truth ({exc})", truth_fix)
            fail(check, f"{meth}() raised AttributeError: {exc}", f"use only the attributes {view_name} documents")
        except ValueError as exc:
            if "read-only" in str(exc):
                fail("check_no_view_writes", f"{meth}() wrote to a read-only array ({exc})",
                     "copy arrays before changing them (arr.copy()); never write to the view, the batch or the log")  # fmt: skip
            fail(check, f"{meth}() raised ValueError: {exc}", f"{meth}() must not raise on valid input")
        except Exception as exc:  # noqa: BLE001 - any failure is the plugin's
            fail(check, f"{meth}() raised {type(exc).__name__}: {exc}", f"{meth}() must not raise on valid input")

    return call


def check_pricer(pricer, n_users: int = 300, seed: int = 7, name: str | None = None, n_batch: int = 64) -> list[str]:
    """Run the conformance checks on a pricer.

    Checks, in order (names as returned):

    - ``check_protocol``: ``fit`` and ``quote`` are callable (a name, class or
      :class:`~sim.scenario.PricerSettings` is first built with
      :func:`sim.registry.make_pricer`, so unknown names and bad parameters fail here);
    - ``check_fit_returns_self``: ``fit(view, log)`` returns the pricer itself;
    - ``check_quote_output``: ``quote`` returns what
      :func:`sim.market.view.checked_quotes` accepts: a numpy array of shape
      (n_batch,) of finite positive prices, or ``(prices, disclosed_mask)`` with
      a bool mask of the same shape;
    - ``check_no_view_writes``: ``fit`` and ``quote`` leave the view, the batch
      and the log unchanged (they are read-only: a write raises, and a pricer
      that makes them writable again is caught by a digest);
    - ``check_deterministic``: two deep copies fitted on the same log quote the
      same prices and masks, and quoting twice gives the same answer;
    - ``check_batch_order``: permuting the pairs of a batch permutes the prices;
    - ``check_empty_batch``: ``quote`` of an empty batch returns an empty
      result and ``fit`` accepts an empty log (ticks without shoppers);
    - ``check_no_ground_truth``: the pricer reads no ``view.true_*`` (the view
      refuses them with an ``AttributeError``).

    Parameters
    ----------
    pricer : object, class, str or PricerSettings
        The pricer to check; instances are deep-copied, never changed.
    n_users : int
        Users of the check world.
    seed : int
        Seed of the check world and of the batches.
    name : str, optional
        Label in messages; default the pricer's class name.
    n_batch : int
        Pairs quoted per batch.

    Returns
    -------
    list of str
        Names of the checks passed (:data:`PRICER_CHECKS`).

    Raises
    ------
    PluginError
        Naming the pricer, the failed check, and the fix.
    """
    from sim.market.view import checked_quotes
    from sim.registry import make_pricer

    obj = make_pricer(pricer)  # PluginError on unknown names, bad params, missing fit/quote
    label = name or type(obj).__name__
    passed = ["check_protocol"]

    def fail(check, msg, fix):
        raise PluginError(f"pricer '{label}': {check} failed: {msg}; fix: {fix}")

    call = _plugin_caller(fail, "use only the view's records and estimates (quote_wtp_hat, user_purchases_stock, ...)",
                          "MarketView")  # fmt: skip

    def quotes(check, p, users, products, wtp):
        view._set(quote_wtp_hat=wtp)
        out = call(check, "quote", p.quote, users, products, view)
        try:
            return checked_quotes(out, users.shape[0], label)
        except PluginError as exc:
            raise PluginError(f"{exc} (conformance check: {check})") from None

    world = make_check_market(seed=seed, n_users=n_users)
    view = world.market.view
    log = _quote_log(view, 200, seed + 1)
    users, products, wtp = _market_batch(view, n_batch, seed + 2)
    view._set(quote_wtp_hat=wtp)
    before = _view_digest(view, users, products, *(getattr(log, f) for f in log.__dataclass_fields__))

    a, b = copy.deepcopy(obj), copy.deepcopy(obj)
    if call("check_fit_returns_self", "fit", a.fit, view, log) is not a:
        fail("check_fit_returns_self", "fit() did not return self", "end fit() with 'return self'")
    passed.append("check_fit_returns_self")

    p1, m1 = quotes("check_quote_output", a, users, products, wtp)
    passed.append("check_quote_output")

    view._set(quote_wtp_hat=wtp)
    if _view_digest(view, users, products, *(getattr(log, f) for f in log.__dataclass_fields__)) != before:
        fail("check_no_view_writes", "fit() or quote() changed the view, the batch or the log",
             "treat every array you are given as read-only; copy before changing")  # fmt: skip
    passed.append("check_no_view_writes")

    call("check_deterministic", "fit", b.fit, view, log)
    p2, m2 = quotes("check_deterministic", b, users, products, wtp)
    p3, m3 = quotes("check_deterministic", a, users, products, wtp)
    for p, m, what in ((p2, m2, "two copies fitted on the same log"), (p3, m3, "quoting the same batch twice")):
        if not (np.array_equal(p, p1) and np.array_equal(m, m1)):
            fail("check_deterministic", f"{what} gave different prices or masks",
                 "derive randomness from view.key (sim.rng.uniform), not from global or unseeded generators")  # fmt: skip
    passed.append("check_deterministic")

    perm = np.random.default_rng(seed + 3).permutation(users.shape[0])
    pp, mp = quotes("check_batch_order", a, _frozen(users[perm]), _frozen(products[perm]), _frozen(wtp[perm]))
    if not (np.allclose(pp, p1[perm], rtol=1e-5, atol=0.0) and np.array_equal(mp, m1[perm])):
        fail("check_batch_order", "permuting the pairs of a batch did not permute the prices",
             "price each (user, product) pair from its own row, aligned with user_idx and product_idx")  # fmt: skip
    passed.append("check_batch_order")

    empty_u, empty_p, empty_w = _frozen(np.zeros(0, np.int64)), _frozen(np.zeros(0, np.int32)), _frozen(np.zeros(0))
    pe, me = quotes("check_empty_batch", copy.deepcopy(a), empty_u, empty_p, empty_w)
    if pe.shape != (0,) or me.shape != (0,):
        fail("check_empty_batch", "quote() of an empty batch returned a non-empty result", "return np.zeros(0)")
    empty_log = type(log)(**{f: getattr(log, f)[:0] for f in log.__dataclass_fields__})
    c = copy.deepcopy(obj)
    if call("check_empty_batch", "fit", c.fit, view, empty_log) is not c:
        fail("check_empty_batch", "fit() of an empty log did not return self", "end fit() with 'return self'")
    quotes("check_empty_batch", c, users, products, wtp)
    passed.append("check_empty_batch")

    try:
        view.true_price_sensitivity  # noqa: B018
    except AttributeError:
        pass
    else:  # pragma: no cover - the platform's own guard
        fail("check_no_ground_truth", "the view exposed ground truth", "report a bug in sim.market.view")
    passed.append("check_no_ground_truth")
    return passed


# -- dispatchers -----------------------------------------------------------------------------

DISPATCHER_CHECKS = (
    "check_protocol",
    "check_fit_returns_self",
    "check_dispatch_output",
    "check_no_view_writes",
    "check_deterministic",
    "check_empty_batch",
    "check_access",
    "check_settle",
    "check_no_ground_truth",
)


def make_check_fleet(seed: int = 7, n_workers: int = 120, hour: int = 12):
    """Return a small fleet-only :class:`sim.engine.FeedWorld` advanced to ``hour``:00 of its first day.

    At noon the lunch peak has open orders waiting and couriers idle, busy and on
    breaks, so a dispatcher is checked on a realistic, crowded view.
    """
    from sim.engine import FeedWorld

    sc = scenario_from_dict(
        {
            "seed": seed,
            "clock": {"days": 1},
            "population": {"n_users": 0},
            "fleet": {"n_workers": n_workers, "n_merchants": 80, "orders_per_day": 4000.0},
            "dispatcher": {"kind": "strict"},
        }
    )
    world = FeedWorld(sc)
    while world.tick < hour * world.ticks_per_day // 24:
        world.step()
    return world


def _open_batch(fleet) -> np.ndarray:
    from sim.fleet.state import O_OPEN

    o, act = fleet.orders, fleet.active_ids
    t = fleet.view.minute
    return _frozen(act[(o.status[act] == O_OPEN) & (o.created[act] < t)].astype(np.int64))


def _dispatch_digest(out) -> str:
    from sim.fleet.view import Dispatch

    if isinstance(out, tuple):
        out = Dispatch(*out)
    return _digest(*(np.asarray(getattr(out, f)) for f in ("worker_idx", "deadline_minutes", "pay", "late_penalty",
                                                           "excuse_mask") if getattr(out, f) is not None))  # fmt: skip


def check_dispatcher(dispatcher, seed: int = 7, name: str | None = None) -> list[str]:
    """Run the conformance checks on a dispatcher.

    Checks, in order (names as returned):

    - ``check_protocol``: ``fit`` and ``dispatch`` are callable (a name, class or
      :class:`~sim.scenario.DispatcherSettings` is first built with
      :func:`sim.registry.make_dispatcher`, so unknown names and bad parameters fail here);
    - ``check_fit_returns_self``: ``fit(view, log)`` returns the dispatcher itself;
    - ``check_dispatch_output``: ``dispatch`` on the open orders of a lunch-time
      fleet returns what :func:`sim.fleet.view.checked_dispatch` accepts (a
      :class:`sim.fleet.view.Dispatch` of arrays aligned with the orders, offers
      only to couriers with capacity, positive deadlines, pay and penalties >= 0);
    - ``check_no_view_writes``: ``fit``, ``dispatch``, ``access`` and ``settle`` leave
      the view, the batch and the log unchanged;
    - ``check_deterministic``: two deep copies fitted on the same log decide the same;
    - ``check_empty_batch``: ``dispatch`` of no orders and ``fit`` of an empty log work;
    - ``check_access``: if present, ``access(worker_idx, view)`` returns minutes
      (n,) that are 0, a positive pause, or inf, never NaN or negative;
    - ``check_settle``: if present, ``settle(worker_idx, view)`` returns finite top-ups >= 0;
    - ``check_no_ground_truth``: the view refuses ``true_*`` (couriers' targets and speeds).

    Parameters
    ----------
    dispatcher : object, class, str or DispatcherSettings
        The dispatcher to check; instances are deep-copied, never changed.
    seed : int
        Seed of the check fleet.
    name : str, optional
        Label in messages; default the dispatcher's class name.

    Returns
    -------
    list of str
        Names of the checks passed (:data:`DISPATCHER_CHECKS`; ``check_access`` and
        ``check_settle`` only when the method exists).

    Raises
    ------
    PluginError
        Naming the dispatcher, the failed check, and the fix.
    """
    from sim.fleet.view import checked_access, checked_dispatch, checked_settle
    from sim.registry import make_dispatcher

    obj = make_dispatcher(dispatcher)
    label = name or type(obj).__name__
    passed = ["check_protocol"]

    def fail(check, msg, fix):
        raise PluginError(f"dispatcher '{label}': {check} failed: {msg}; fix: {fix}")

    call = _plugin_caller(fail, "use only the view's records (positions, states, minutes online, pay, orders)",
                          "FleetView")  # fmt: skip

    world = make_check_fleet(seed=seed)
    fleet = world.fleet
    fleet._refresh_view(fleet.view.step, fleet.view.tick, fleet.view.minute, fleet._capacity(), 0)
    orders = _open_batch(fleet)
    fleet._refresh_view(fleet.view.step, fleet.view.tick, fleet.view.minute, fleet._capacity(), orders.size)
    view = fleet.view
    if orders.size == 0:  # pragma: no cover - the check fleet is built to have a queue at noon
        raise RuntimeError("the check fleet has no open orders; report a bug in sim.testing")
    log = _delivery_log(fleet)

    def digest():
        return _view_digest(view, orders, *(getattr(log, f) for f in log.__dataclass_fields__))

    before = digest()
    a, b = copy.deepcopy(obj), copy.deepcopy(obj)
    if call("check_fit_returns_self", "fit", a.fit, view, log) is not a:
        fail("check_fit_returns_self", "fit() did not return self", "end fit() with 'return self'")
    passed.append("check_fit_returns_self")

    out = call("check_dispatch_output", "dispatch", a.dispatch, orders, view)
    _in_check("check_dispatch_output", checked_dispatch, out, orders, np.asarray(view.worker_capacity), label)
    passed.append("check_dispatch_output")

    workers = _frozen(np.flatnonzero(np.asarray(view.worker_state) != 0).astype(np.int64))
    has_access, has_settle = callable(getattr(obj, "access", None)), callable(getattr(obj, "settle", None))
    if has_access:
        call("check_access", "access", a.access, workers, view)
    if has_settle:
        call("check_settle", "settle", a.settle, workers, view)
    if digest() != before:
        fail("check_no_view_writes", "a method changed the view, the batch or the log",
             "treat every array you are given as read-only; copy before changing")  # fmt: skip
    passed.append("check_no_view_writes")

    call("check_deterministic", "fit", b.fit, view, log)
    out_b = call("check_deterministic", "dispatch", b.dispatch, orders, view)
    out_a = call("check_deterministic", "dispatch", a.dispatch, orders, view)
    d1 = _dispatch_digest(out)
    if _dispatch_digest(out_b) != d1 or _dispatch_digest(out_a) != d1:
        fail("check_deterministic", "two copies fitted on the same log (or the same copy asked twice) decided differently",
             "derive randomness from view.key (sim.rng.uniform), not from global or unseeded generators")  # fmt: skip
    passed.append("check_deterministic")

    empty = _frozen(np.zeros(0, dtype=np.int64))
    out_e = call("check_empty_batch", "dispatch", copy.deepcopy(a).dispatch, empty, view)
    _in_check("check_empty_batch", checked_dispatch, out_e, empty, np.asarray(view.worker_capacity), label)
    empty_log = type(log)(**{f: getattr(log, f)[:0] for f in log.__dataclass_fields__})
    c = copy.deepcopy(obj)
    if call("check_empty_batch", "fit", c.fit, view, empty_log) is not c:
        fail("check_empty_batch", "fit() of an empty log did not return self", "end fit() with 'return self'")
    passed.append("check_empty_batch")

    for present, check, meth, validate in ((has_access, "check_access", "access", checked_access),
                                           (has_settle, "check_settle", "settle", checked_settle)):  # fmt: skip
        if not present:
            continue
        for batch in (workers, empty):
            _in_check(check, validate, call(check, meth, getattr(a, meth), batch, view), batch.size, label)
        passed.append(check)

    try:
        view.true_target_earnings  # noqa: B018
    except AttributeError:
        pass
    else:  # pragma: no cover - the platform's own guard
        fail("check_no_ground_truth", "the view exposed ground truth", "report a bug in sim.fleet.view")
    passed.append("check_no_ground_truth")
    return passed


def _delivery_log(fleet):
    """Return the orders finished so far as the :class:`sim.fleet.view.DeliveryLog` a ``fit`` receives."""
    from sim.fleet.state import O_CANCELLED, O_DELIVERED
    from sim.fleet.world import delivery_log

    o, n = fleet.orders, fleet.orders.n
    return delivery_log(o, np.flatnonzero((o.status[:n] == O_DELIVERED) | (o.status[:n] == O_CANCELLED)))


def _in_check(check: str, fn, *args):
    """Run a protocol validator; a failure names the conformance check it came from."""
    try:
        return fn(*args)
    except PluginError as exc:
        raise PluginError(f"{exc} (conformance check: {check})") from None

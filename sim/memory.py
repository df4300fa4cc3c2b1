"""Memory a scenario needs, estimated before anything is allocated.

A run that does not fit is refused with a clear message (how much it needs,
how much the machine has available) instead of being killed by the operating
system half-way. The estimate adds up the struct-of-arrays state (bytes per
user, per item, per product), the per-user-day records kept for the audit, the
market's quote summary and, where kept, its quote log (expected quotes from the
scenario's rates), the transient arrays of one sub-step, and the interpreter with numpy, numba and the compiled
kernels. The per-unit byte counts below are read off the dtypes in
``sim/state.py``, ``sim/market/state.py`` and ``sim/record.py``; the two
behavioural factors (how many users are active in the busiest sub-step, how
many minutes a user scrolls) are calibrated by ``benchmarks/memory_check.py``
against measured peak resident memory.

Public objects
--------------
estimate_memory
    Bytes a run (or an audit of several runs) needs, by component.
available_memory
    Bytes the machine can give now (``MemAvailable``).
check_memory
    Raise :class:`sim.scenario.ScenarioError` if the estimate does not fit.
"""

from __future__ import annotations

import os

import numpy as np

from sim.scenario import Scenario, ScenarioError

__all__ = ["available_memory", "check_memory", "estimate_memory"]

PROCESS_BASE = 300 * 2**20  # Python, numpy, pandas, numba and the loaded kernels (measured ~250-280 MB)
PEAK_ACTIVE_SHARE = 0.25  # share of users in session in the busiest sub-step (calibration: evening peak)
PEAK_VIEWS_PER_USER_MINUTE = 0.25  # views per user and tick minute in the busiest tick (baseline: 3.19 / 15 min)
FEED_MINUTES_PER_DAY = 200.0  # generous mean scrolling for the expected number of sponsored offers
# one quote of a kept log: 90 B of columns (sim.market.world.QUOTE_COLUMNS) and the writing of quotes.parquet;
# measured: +195 MB of peak RSS for 1.13 M quotes (loyalty_pricing, 100k users x 7 days, with vs without --quote-log)
QUOTE_BYTES = 190
ORDER_BYTES = 140  # one order: the columns of sim.fleet.state._ORDER_FIELDS
WORKER_BYTES = 160  # one courier's state and traits (sim.fleet.state.Workers), queue of 3 included


def _recommender_traits(sc: Scenario) -> tuple[bool, bool]:
    """Return (fused, keeps the per-view log) for the scenario's recommender.

    Fused: its ranking runs inside the view kernel. Keeps the per-view log: the
    engine keeps each tick's per-view arrays (:class:`sim.platform.InteractionLog`).
    """
    from sim.builtin.recommenders import reads_views, runs_fused
    from sim.registry import make_recommender

    try:
        rec = make_recommender(sc.recommender)
    except Exception:  # a plugin that cannot be built here is reported by the engine
        return False, True
    observed = sc.bots is not None or sc.recommender.hot_list is not None  # on_tick observers read the log
    return runs_fused(rec), reads_views(rec) or observed


def _world_bytes(sc: Scenario) -> dict[str, float]:
    from sim.engine import _ENTROPY_ROWS  # imported here: the engine imports this module
    from sim.output import BATCH_ROWS
    from sim.state import N_MINHASH, category_count_dtype, row_width

    n, d, t = sc.population.n_users, sc.population.interest_dim, sc.clock.days
    m, c = sc.catalogue.n_items, sc.catalogue.n_categories
    k, s = sc.recommender.n_candidates, sc.recommender.slate_size
    cc_size = np.dtype(category_count_dtype(sc)).itemsize
    per_user = (
        2 * 4 * d  # true_interest, true_interest0
        + 4 * d  # user_hat
        + 4 * d  # imp_emb_sum
        + 16 * 4  # minhash
        + cc_size * row_width(c, cc_size)  # category counts of today's feed, rows padded to whole lines
        + 8 * 4  # the session block: seven float32 scalars in a row of eight (sim.state.Users.session)
        + 4 + 6  # open_rate, and the int8/int16/bool fields (cohort 1, age 2, opt-out, night owl, in session 1 each)
    )  # fmt: skip
    fused, keeps_views = _recommender_traits(sc)
    parts = {
        "users": n * per_user,
        "items": m * (4 * d + 8 * 4 + 4 * N_MINHASH),  # embedding, scalars, MinHash signature
        "per-user-day records": n * t * (11 + 2) * 4,
        # the fused kernel (built-in profile rankings) keeps no (n_act, n_cand) candidates or scores
        "sub-step buffers": PEAK_ACTIVE_SHARE * n * ((0 if fused else k * (4 + 4)) + s * 4 + 32),
        # the busiest tick's per-view arrays (24 B a view) and one field joined (8 B), when they are kept; bots
        # (sim.bots) build a second, longer log while the first is alive
        "tick interaction log": keeps_views
        * n
        * PEAK_VIEWS_PER_USER_MINUTE
        * sc.clock.tick_minutes
        * (24 + 8 + (32 if sc.bots is not None else 0)),
        # float64 temporaries of the chunked feed entropy (sim.engine._ENTROPY_ROWS rows) and one slice of
        # users.parquet as a DataFrame and an Arrow table (sim.output.BATCH_ROWS rows, ~200 B each)
        "end-of-day and output temporaries": min(n, _ENTROPY_ROWS) * c * 8 * 4 + min(n, BATCH_ROWS) * 2 * 200,
    }
    if sc.market is not None:
        mk = sc.market
        per_day = mk.store_visits_per_day + mk.offers_per_feed_minute * FEED_MINUTES_PER_DAY
        # shoppers' 16 float32 columns and the market's contiguous copy of self-control (Market._self_control)
        parts["market state"] = n * 17 * 4 + mk.n_products * (4 * d + 24)
        from sim.market.summary import QuoteSummary
        from sim.market.world import holds_quotes

        # the whole log with quote_log; else at most the day the decision log has not yet written
        held_days = t if mk.quote_log else int(holds_quotes(sc))
        parts["quote log"] = n * held_days * per_day * QUOTE_BYTES
        parts["quote summary"] = n * QuoteSummary.bytes_per_user()
    if sc.fleet is not None:
        from sim.fleet.state import N_WD

        fs = sc.fleet
        orders_per_day = fs.orders_per_day if fs.orders == "profile" else fs.delivery_share * n * 2.0
        n_steps = t * 1440.0 / fs.step_minutes
        parts["fleet state"] = fs.n_workers * (WORKER_BYTES + 4 * N_WD + 4 * (fs.max_batch - 3)) + fs.n_merchants * 12
        parts["orders"] = 1.3 * orders_per_day * t * ORDER_BYTES + n_steps * 20
        parts["per-courier-day records"] = fs.n_workers * t * (N_WD * 4 + 1)
    return parts


def estimate_memory(sc: Scenario, runs: int = 1, concurrent: int = 1) -> dict[str, float]:
    """Estimate the bytes needed to run ``runs`` simulations of ``sc``, ``concurrent`` at a time.

    Each concurrent run holds a whole world; the records of every run are kept
    until the audit is computed (records are the per-user-day counters, the
    market's quote summary, its quote log where ``quote_log`` keeps it, and about 0.25 KB per user of
    final state).

    Returns
    -------
    dict of str -> float
        Bytes by component, with ``"total"``.
    """
    world = _world_bytes(sc)
    one = sum(world.values())
    kept_log = world.get("quote log", 0.0) if sc.market is not None and sc.market.quote_log else 0.0
    record = (world["per-user-day records"] + kept_log + world.get("quote summary", 0.0) + world.get("orders", 0.0)
              + world.get("per-courier-day records", 0.0) + 256 * sc.population.n_users)  # fmt: skip
    concurrent = max(1, min(concurrent, runs))
    out = {f"{name} (x{concurrent})": v * concurrent for name, v in world.items()}
    out["kept records"] = record * max(0, runs - concurrent)
    out["processes"] = PROCESS_BASE * (concurrent + (1 if concurrent > 1 else 0))
    out["total"] = one * concurrent + out["kept records"] + out["processes"]
    return out


def available_memory() -> float:
    """Bytes available for new allocations (``MemAvailable`` on Linux; total physical memory otherwise)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return float("inf")


def _gib(x: float) -> str:
    return f"{x / 2**30:.1f} GiB"


def check_memory(sc: Scenario, runs: int = 1, concurrent: int = 1, available: float | None = None) -> dict:
    """Raise :class:`ScenarioError` when the estimated memory exceeds what is available.

    The message gives the estimate, its largest parts and what is available, and how to fit.
    ``RECAUDIT_SKIP_MEMORY_CHECK=1`` turns the check off (at your own risk).
    """
    est = estimate_memory(sc, runs=runs, concurrent=concurrent)
    if os.environ.get("RECAUDIT_SKIP_MEMORY_CHECK") == "1":
        return est
    avail = available_memory() if available is None else available
    if est["total"] > 0.9 * avail:
        parts = sorted(((v, k) for k, v in est.items() if k != "total"), reverse=True)[:3]
        detail = ", ".join(f"{k} {_gib(v)}" for v, k in parts)
        raise ScenarioError(
            f"scenario '{sc.name}' needs about {_gib(est['total'])} of memory ({detail}) for "
            f"{sc.population.n_users:,} users x {sc.clock.days} days ({runs} run(s), {concurrent} at a time), "
            f"but this machine has {_gib(avail)} available; fix: fewer users (--users) or days (--days), "
            "fewer replications or workers, or a machine with more memory"
        )
    return est

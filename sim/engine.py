"""The feed world and its step: the one place where the order of things is written.

One tick (``FeedWorld.step``):

1. Opening (kernel ``open_step``): habit decays; idle users may open the app;
   in-session users get the tick's minutes.
2. Sub-steps, while any in-session user has tick time left:
   a. access: the recommender's gate (caps, curfew, rest prompts);
   b. retrieval (kernel ``draw_candidates``): candidates per block of users;
   c. scoring: ``recommender.score`` (checked against the protocol);
   d. viewing (kernel ``view_step``): slate, choice, watching, updates, go on?;
   e. logging: platform counters, hourly minutes.
   (then, with a market: the market phase, :class:`sim.market.world.Market`;
   with a fleet: the fleet phase, :class:`sim.fleet.world.Fleet`, in minute steps)
3. Learning: ``recommender.fit(view, log of the tick)``.
4. At midnight: the day's feed entropy is stored (the day counters were the
   record's row all day; the next day gets its own row), category counts reset,
   the platform's counts decay and the oldest items are replaced.

Public objects
--------------
FeedWorld
    The world (struct-of-arrays state) and its step.
simulate
    Run a scenario to the end and return a :class:`sim.record.RunRecord`.
"""

from __future__ import annotations

import contextlib
import math
import time

import numba
import numpy as np

from sim.builtin.recommenders import reads_views, runs_fused
from sim.fleet.world import Fleet
from sim.kernels import feed
from sim.kernels import layout as L
from sim.market.world import Market
from sim.memory import check_memory
from sim.observers import SubStep
from sim.platform import InteractionLog, PlatformView, PluginError
from sim.record import RunRecord
from sim.registry import make_recommender
from sim.rng import Purpose, hash4, root_key, spawn_generators
from sim.scenario import Scenario, ScenarioError
from sim.state import (
    ACTIVITY_PROFILES,
    N_MINHASH,
    PlatformState,
    category_centroids,
    category_count_dtype,
    full_aligned,
    make_items,
    make_users,
    n_creators,
    replace_items,
    row_width,
)

__all__ = ["FeedWorld", "simulate", "BLOCK_SIZE", "MAX_SUBSTEPS"]

BLOCK_SIZE = 128  # users sharing one retrieval draw (see benchmarks/README.md)
MAX_SUBSTEPS = 1024  # draw-counter room per tick: step = tick * MAX_SUBSTEPS + substep
# Batches smaller than this run the kernels on one thread: waking the other threads
# costs more than it saves, and far more when the machine is busy. Results do not
# depend on the thread count, so this changes speed only.
PARALLEL_MIN_ROWS = 4_096


@contextlib.contextmanager
def _threads_for(n_rows: int):
    """Run the enclosed kernels on one thread when the batch is small."""
    if n_rows >= PARALLEL_MIN_ROWS:
        yield
        return
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(before)


def _coprime_strides(n_items: int, rng: np.random.Generator, n: int = 64) -> np.ndarray:
    cand = rng.integers(1, max(2, n_items), size=8 * n)
    good = [int(c) for c in cand if math.gcd(int(c), n_items) == 1]
    return np.array((good or [1])[:n], dtype=np.int64)


_ENTROPY_ROWS = 1 << 17  # users per chunk: the float64 temporaries stay ~100 MB at any population


def _entropy_top1(cat_counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Category entropy (nats) and top-category share of each row of counts, float32 (n,) each.

    Computed in chunks of rows, so the temporaries do not grow with the population.
    """
    n = cat_counts.shape[0]
    ent = np.empty(n, dtype=np.float32)
    top1 = np.empty(n, dtype=np.float32)
    for lo in range(0, n, _ENTROPY_ROWS):
        counts = cat_counts[lo : lo + _ENTROPY_ROWS]
        tot = counts.sum(axis=1, dtype=np.float64)
        p = counts / np.maximum(tot, 1.0)[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            e = -np.where(p > 0, p * np.log(p), 0.0).sum(axis=1)
        t = counts.max(axis=1) / np.maximum(tot, 1.0)
        e[tot == 0] = np.nan
        t[tot == 0] = np.nan
        ent[lo : lo + counts.shape[0]] = e
        top1[lo : lo + counts.shape[0]] = t
    return ent, top1


class FeedWorld:
    """The feed world of a scenario, advanced one tick at a time.

    Parameters
    ----------
    scenario : Scenario
    replication : int
        Replication index (selects the spawned seed).
    recommender : object, optional
        A recommender instance used as the base recommender, wrapped with the
        wrappers ``scenario.recommender`` asks for (diversity, non-personalised
        option, minors' mode); by default built from ``scenario.recommender``.
    pricer : object, optional
        A pricer instance to use instead of ``scenario.pricer`` (scenarios with a market).
    dispatcher : object, optional
        A dispatcher instance to use instead of ``scenario.dispatcher`` (scenarios with a fleet).
    fused : bool
        Let the built-in content-based and engagement recommenders rank inside the view
        kernel (default); ``False`` sends them through ``score()`` like any other (the same
        results, slower).
    market_definitions : dict, optional
        The auditor's definitions the market's quote summary needs (``loyal_min_purchases``,
        ``price_tolerance``; :class:`sim.market.summary.QuoteSummary`); default: the catalogue's.
    """

    def __init__(
        self,
        scenario: Scenario,
        replication: int = 0,
        recommender=None,
        pricer=None,
        dispatcher=None,
        fused=True,
        market_definitions=None,
    ):
        sc = self.scenario = scenario
        self.replication = replication
        self.key = root_key(sc.seed, replication)
        # the recommenders' own stream: a key derived from the run key, never equal to it
        self.rec_key = int(hash4(self.key, 0, 0, Purpose.RECOMMENDER_KEY) >> np.uint64(1))
        gens = spawn_generators(sc.seed, ("population", "items", "retrieval"), replication)
        self._item_rng = gens["items"]
        self.centroids = category_centroids(sc.catalogue.n_categories, sc.population.interest_dim, gens["items"])
        self.users = make_users(sc, self.centroids, gens["population"])
        self.items = make_items(sc, self.centroids, gens["items"])
        self.strides = _coprime_strides(sc.catalogue.n_items, gens["retrieval"])
        n, m, dim = self.users.n_users, self.items.n_items, sc.population.interest_dim
        self.platform = PlatformState(
            user_hat=full_aligned((n, dim), 0.0, np.float32),
            item_views_hat=np.zeros(m, dtype=np.float32),
            item_minutes_hat=np.zeros(m, dtype=np.float32),
            item_impressions_hat=np.zeros(m, dtype=np.float32),
        )
        # today's impressions by category; rows padded so none straddles a cache line (the kernels read only
        # the first n_categories columns, and the day's end only those: _end_of_day)
        cc_dtype = category_count_dtype(sc)
        cc_width = row_width(sc.catalogue.n_categories, np.dtype(cc_dtype).itemsize)
        self.cat_counts = full_aligned((n, cc_width), 0, cc_dtype)
        self.imp_emb_sum = full_aligned((n, dim), 0.0, np.float32)  # rows on cache lines: sim.state.empty_aligned
        self.minhash = full_aligned((n, N_MINHASH), np.iinfo(np.uint32).max, np.uint32)
        self.beh = L.pack_behaviour(sc)
        self.habit_decay = L.habit_decay_per_tick(sc)
        self.recommender = make_recommender(sc.recommender, base=recommender)
        # The built-in profile-match rankings (content-based, engagement), unwrapped, are computed
        # inside the view kernel (feed.profile_view_step: the same results, bit for bit, without the
        # (n_act, n_cand) arrays). Any other recommender, subclasses included, goes through score().
        self.fused = fused and runs_fused(self.recommender)
        self.recommender_label = sc.recommender.kind if recommender is None else type(recommender).__name__
        n_days = sc.clock.days
        self.user_days = np.zeros((n_days, n, L.N_DAY), dtype=np.float32)
        # today's counters are the record's row of today itself (no copy at midnight: -44 B per user)
        self.day_stats = self._day_stats_for(0)
        self.feed_days = np.full((n_days, n, 2), np.nan, dtype=np.float32)  # entropy, top1 share
        self.hourly_minutes = np.zeros((3, 24), dtype=np.float64)
        self.creator_minutes = np.zeros(n_creators(sc), dtype=np.float64)  # attention by creator over the run
        self._on_substep, self._on_tick, self._on_day_end = [], [], []
        self.tick = 0
        self.substeps = 0
        self.agent_steps = 0
        self._replaced = np.zeros(0, dtype=np.int32)
        self.view = PlatformView(
            n_users=n, n_items=m, key=self.rec_key, slate_size=sc.recommender.slate_size,
            tick_minutes=sc.clock.tick_minutes, tick=0, step=0, day=0, hour=0,
            item_embedding=self.items.embedding, item_category=self.items.category,
            item_creator=self.items.creator, item_birth_tick=self.items.birth_tick,
            item_length_minutes=self.items.length_minutes, item_harmful_mask=self.items.harmful_mask,
            item_views_hat=self.platform.item_views_hat, item_minutes_hat=self.platform.item_minutes_hat,
            item_impressions_hat=self.platform.item_impressions_hat, user_hat=self.platform.user_hat,
            user_age=self.users.age, user_cohort=self.users.cohort,
            user_opt_out_mask=self.users.opt_out_mask, user_minutes_today=self.day_stats[:, L.MINUTES],
            user_streak_minutes=self.users.streak_minutes, user_time_left=self.users.time_left, replaced_item_idx=self._replaced,
        )  # fmt: skip
        from sim.bots import attach_manipulation  # Art. 14: bot accounts and the hot list, when the scenario has them

        self.manipulation = attach_manipulation(self)  # the first observer: later ones see the fake views
        self.market = None
        if sc.market is not None:
            self.market = Market(sc, replication, self.key, self.users, self.centroids, self.platform.user_hat,
                                 pricer=pricer, definitions=market_definitions)  # fmt: skip
        self.fleet = Fleet(sc, replication, self.key, n, dispatcher=dispatcher) if sc.fleet is not None else None
        # Art. 28: the platform's decision log (sim/decision_log.py), when enabled; it closes after the last day
        self.decision_log = None
        if sc.decision_log.enabled:
            from sim.decision_log import DecisionLogger

            self.decision_log = DecisionLogger(self)
            self.add_observer(self.decision_log)
        from sim.tags import attach_tags  # Art. 10/17: tag deletions and attribution, when the platform keeps tags

        self.tags = attach_tags(self)

    def add_observer(self, observer) -> None:
        """Attach an observer (:mod:`sim.observers`); those of its hooks it has are called from now on."""
        for name, hooks in (("on_substep", self._on_substep), ("on_tick", self._on_tick),
                            ("on_day_end", self._on_day_end)):  # fmt: skip
            fn = getattr(observer, name, None)
            if fn is not None:
                hooks.append(fn)

    # -- protocol checks -------------------------------------------------------------------
    def _checked_ranking(self, bias, sharpness, exploration):
        """Check the fused ranking's inputs by the rule of ``score()``: no NaN or +inf score may come out."""
        top = bias.max() if bias.size else 0.0  # NaN propagates through max
        if np.isnan(top) or top == np.inf or not np.isfinite(sharpness):
            raise PluginError(
                f"recommender '{self.recommender_label}': its ranking gives NaN or +inf scores (item bias max "
                f"{top}, sharpness {sharpness}); fix: check its parameters (e.g. prior_views > 0)"
            )
        return bias, sharpness, exploration

    def _checked_scores(self, scores, shape):
        name = self.recommender_label
        if not isinstance(scores, np.ndarray):
            raise PluginError(
                f"recommender '{name}': score() returned {type(scores).__name__}, not a numpy array; "
                f"fix: return a float32 array of shape (n_batch, n_cand) = {shape}"
            )
        if scores.shape != shape:
            raise PluginError(
                f"recommender '{name}': score() returned shape {scores.shape}, expected {shape} "
                "(n_batch, n_cand); fix: one row per user, one column per candidate"
            )
        if scores.dtype.kind != "f":
            raise PluginError(
                f"recommender '{name}': score() returned dtype {scores.dtype}; fix: return float32 scores"
            )
        scores = np.ascontiguousarray(scores, dtype=np.float32)
        top = scores.max() if scores.size else 0.0  # NaN propagates through max
        if np.isnan(top) or top == np.inf:
            raise PluginError(
                f"recommender '{name}': score() returned NaN or +inf; fix: return finite scores "
                "(-inf only to exclude a candidate)"
            )
        return scores

    def _checked_access(self, n_act):
        rec = self.recommender
        if not hasattr(rec, "access"):
            inf = np.full(n_act, np.inf, dtype=np.float32)
            return inf, inf
        out = rec.access(self._active, self.view)
        try:
            allowance, prompt_after = out
            allowance = np.ascontiguousarray(allowance, dtype=np.float32)
            prompt_after = np.ascontiguousarray(prompt_after, dtype=np.float32)
        except (TypeError, ValueError):
            raise PluginError(
                f"recommender '{self.recommender_label}': access() must return two float arrays "
                "(allowance, prompt_after) of shape (n_batch,)"
            ) from None
        if allowance.shape != (n_act,) or prompt_after.shape != (n_act,):
            raise PluginError(
                f"recommender '{self.recommender_label}': access() returned shapes "
                f"{allowance.shape}, {prompt_after.shape}; expected ({n_act},) each"
            )
        if np.isnan(allowance).any() or np.isnan(prompt_after).any():
            raise PluginError(
                f"recommender '{self.recommender_label}': access() returned NaN; fix: return minutes "
                "(inf for no limit, 0 to refuse service)"
            )
        return allowance, prompt_after

    # -- the step -----------------------------------------------------------------------------
    @property
    def ticks_per_day(self) -> int:
        """Ticks in one day."""
        return self.scenario.ticks_per_day

    @property
    def n_ticks(self) -> int:
        """Ticks in the whole run."""
        return self.ticks_per_day * self.scenario.clock.days

    def step(self) -> None:
        """Advance the world by one tick (see the module docstring for the phases)."""
        sc, u, it, pf = self.scenario, self.users, self.items, self.platform
        tpd = self.ticks_per_day
        tick = self.tick
        tod = tick % tpd
        hour = (tod * sc.clock.tick_minutes) // 60
        night = L.is_night(hour)
        self.view._set(tick=tick, day=tick // tpd, hour=hour, replaced_item_idx=self._replaced)

        # 1. opening
        with _threads_for(u.n_users):
            feed.open_step(
                self.key, tick, float(sc.clock.tick_minutes), hour, u.cohort, u.night_owl_mask, u.open_rate,
                ACTIVITY_PROFILES, float(self.beh[L.HABIT_CUE]), self.habit_decay, u.session,
                u.in_session_mask, self.day_stats,
            )  # fmt: skip

        # 2. sub-steps
        minutes_before = self.day_stats[:, L.MINUTES].copy() if self.market is not None else None
        n_cand, k = sc.recommender.n_candidates, sc.recommender.slate_size
        active = np.flatnonzero(u.in_session_mask & (u.time_left > 0))
        # the per-view arrays of the tick's log only when something reads them (InteractionLog)
        keep_views = bool(self._on_tick) or reads_views(self.recommender)
        logs_user, logs_item, logs_min, logs_step = [], [], [], []
        impressions = np.zeros(it.n_items, dtype=np.int64)
        item_views = np.zeros(it.n_items, dtype=np.int64)
        item_minutes = np.zeros(it.n_items, dtype=np.float64)
        sub = 0
        while active.size:
            if sub >= MAX_SUBSTEPS:
                raise ScenarioError(
                    f"more than {MAX_SUBSTEPS} views by one user in one tick; fix: raise "
                    "catalogue.mean_item_minutes or shorten clock.tick_minutes"
                )
            step = tick * MAX_SUBSTEPS + sub
            self.view._set(step=step)
            active_ro = active.view()
            active_ro.flags.writeable = False  # plugins get a read-only view; the kernels own `active`
            self._active = active_ro
            n_act = active.size
            with _threads_for(n_act):
                allowance, prompt_after = self._checked_access(n_act)
                out_item = np.empty(n_act, dtype=np.int32)
                out_min = np.empty(n_act, dtype=np.float32)
                out_slate = np.empty((n_act, k), dtype=np.int32)
                if self.fused:  # the recommender's ranking, computed inside the view kernel
                    bias, sharpness, exploration = self._checked_ranking(*self.recommender._profile_ranking(self.view))
                    starts = feed.retrieval_blocks(active, BLOCK_SIZE)
                    block_cand = np.empty((starts.size - 1, n_cand), dtype=np.int32)
                    feed.profile_view_step(
                        self.key, step, night, active, starts, it.n_items, self.strides, BLOCK_SIZE,
                        self.rec_key, bias, sharpness, exploration, allowance, prompt_after, k, self.beh,
                        it.embedding, it.category, it.harmful_mask, it.true_quality, it.true_hook,
                        it.length_minutes, it.minhash,
                        u.true_interest, u.session, u.in_session_mask,
                        pf.user_hat, self.day_stats, self.cat_counts, self.imp_emb_sum,
                        self.minhash, out_item, out_min, out_slate, block_cand,
                    )  # fmt: skip
                else:
                    cand = np.empty((n_act, n_cand), dtype=np.int32)
                    feed.draw_candidates(self.key, step, active, it.n_items, self.strides, BLOCK_SIZE, cand)
                    scores = self._checked_scores(self.recommender.score(active_ro, cand, self.view), cand.shape)
                    feed.view_step(
                        self.key, step, night, active, cand, scores, allowance, prompt_after, k, self.beh,
                        it.embedding, it.category, it.harmful_mask, it.true_quality, it.true_hook,
                        it.length_minutes, it.minhash,
                        u.true_interest, u.session, u.in_session_mask,
                        pf.user_hat, self.day_stats, self.cat_counts, self.imp_emb_sum,
                        self.minhash, out_item, out_min, out_slate,
                    )  # fmt: skip
            watched = out_item >= 0
            feed.add_impressions(out_slate, impressions)
            if watched.any():
                if keep_views:  # the log's totals are then computed from these
                    logs_user.append(active[watched])
                    logs_item.append(out_item[watched])
                    logs_min.append(out_min[watched])
                    logs_step.append(np.full(int(watched.sum()), step, dtype=np.int64))
                else:
                    feed.add_views(out_item[watched], out_min[watched], item_views, item_minutes)
                feed.add_watch_minutes(  # the hour's column of hourly_minutes is updated in place
                    active, out_item, out_min, u.cohort, it.creator, self.hourly_minutes[:, hour], self.creator_minutes
                )
            self.agent_steps += n_act
            if self._on_substep:
                sub_rec = (
                    SubStep.make(tick, step, hour, active, out_item, out_min, out_slate,
                                 block_starts=starts, block_cand=block_cand)
                    if self.fused
                    else SubStep.make(tick, step, hour, active, out_item, out_min, out_slate, scores=scores, cand=cand)
                )  # fmt: skip
                for fn in self._on_substep:
                    fn(self, sub_rec)
            active = active[u.in_session_mask[active] & (u.time_left[active] > 0)]
            sub += 1
        self.substeps += sub

        # 2b. the market (after the feed: sponsored offers follow the tick's scrolling)
        if self.market is not None:
            feed_minutes = self.day_stats[:, L.MINUTES] - minutes_before
            with _threads_for(u.n_users):
                self.market.step(tick, tpd, hour, feed_minutes, ACTIVITY_PROFILES)

        # 2c. the fleet (after the market: a share of the tick's purchases are delivered)
        if self.fleet is not None:
            if sc.fleet.orders == "market" and self.market is not None:
                buyers, products = self.market.last_sales
                self.fleet.add_market_orders(tick, float(sc.clock.tick_minutes), buyers, products)
            with _threads_for(self.fleet.workers.n_workers):
                self.fleet.step(tick)

        # 3. learning
        def joined(chunks, dtype):  # one field at a time, each chunk list freed once joined
            if not keep_views:
                return None
            out = np.concatenate(chunks) if chunks else np.zeros(0, dtype=dtype)
            chunks.clear()
            return out

        log = InteractionLog(
            user_idx=joined(logs_user, np.int64), item_idx=joined(logs_item, np.int32),
            minutes=joined(logs_min, np.float32), step=joined(logs_step, np.int64),
            item_impressions=impressions.astype(np.int32),
            item_views=None if keep_views else item_views, item_minutes=None if keep_views else item_minutes,
        )  # fmt: skip
        for fn in self._on_tick:  # e.g. fake engagement: the platform sees it, no user watched it
            log = fn(self, log) or log
        impressions = log.item_impressions
        pf.item_views_hat += log.item_views.astype(np.float32)
        pf.item_minutes_hat += log.item_minutes.astype(np.float32)
        pf.item_impressions_hat += impressions.astype(np.float32)
        self.recommender.fit(self.view, log)
        self._replaced = np.zeros(0, dtype=np.int32)

        # 4. midnight
        self.tick += 1
        if self.tick % tpd == 0:
            self._end_of_day(self.tick // tpd - 1)

    def _day_stats_for(self, day: int) -> np.ndarray:
        """Today's counters float32 (n_users, N_DAY), zero: ``user_days[day]`` itself while the record has that day."""
        if day < self.user_days.shape[0]:
            return self.user_days[day]
        return np.zeros(self.user_days.shape[1:], dtype=np.float32)

    def _end_of_day(self, day: int) -> None:
        sc, pf = self.scenario, self.platform
        if day < self.user_days.shape[0]:
            ent, top1 = _entropy_top1(self.cat_counts[:, : sc.catalogue.n_categories])
            self.feed_days[day, :, 0] = ent
            self.feed_days[day, :, 1] = top1
        for fn in self._on_day_end:
            fn(self, day)
        self.day_stats = self._day_stats_for(day + 1)
        self.view._set(user_minutes_today=self.day_stats[:, L.MINUTES])
        self.cat_counts[:] = 0
        decay = np.float32(0.5 ** (1.0 / pf.stats_half_life_days))
        pf.item_views_hat *= decay
        pf.item_minutes_hat *= decay
        pf.item_impressions_hat *= decay
        new = replace_items(self.items, sc, self.centroids, self._item_rng, self.tick)
        pf.item_views_hat[new] = 0.0
        pf.item_minutes_hat[new] = 0.0
        pf.item_impressions_hat[new] = 0.0
        self._replaced = new
        if self.market is not None:
            self.market.end_of_day(day)
        if self.fleet is not None:
            self.fleet.end_of_day(day)

    def run(self, progress: bool = False, label: str = "") -> RunRecord:
        """Run to the end of the scenario and return its record."""
        started = time.perf_counter()
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=self.scenario.clock.days, unit="day", desc=label or self.scenario.name, leave=False)
        while self.tick < self.n_ticks:
            self.step()
            if bar is not None and self.tick % self.ticks_per_day == 0:
                bar.update(1)
        if bar is not None:
            bar.close()
        # the run is over: the record takes the world's final arrays instead of copying them
        return RunRecord.from_world(self, wall_seconds=time.perf_counter() - started, copy=False)


def simulate(
    scenario: Scenario,
    replication: int = 0,
    recommender=None,
    progress: bool = False,
    pricer=None,
    dispatcher=None,
    market_definitions=None,
) -> RunRecord:
    """Run ``scenario`` (replication ``replication``) and return its :class:`RunRecord`.

    ``recommender``, ``pricer``, ``dispatcher`` and ``market_definitions`` are passed to :class:`FeedWorld`.

    Raises
    ------
    ScenarioError
        If the run would not fit in the memory available (:func:`sim.memory.check_memory`).
    """
    check_memory(scenario)
    world = FeedWorld(scenario, replication=replication, recommender=recommender, pricer=pricer, dispatcher=dispatcher,
                      market_definitions=market_definitions)  # fmt: skip
    return world.run(progress=progress)

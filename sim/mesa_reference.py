"""A plain Mesa reference implementation of the feed dynamics, one agent per user.

:class:`ReferenceFeedModel` re-implements, in ordinary per-agent Python and
NumPy, what the numba kernels of :mod:`sim.kernels.feed` do for the
content-based recommender (``user_hat . item embedding``): opening,
retrieval, scoring, top-k slate, logit choice, watching, learning and the
decision to go on. It exists for two reasons:

* tests: it is an independent implementation (its own
  :class:`numpy.random.Generator`, not the counter-based draws of
  :mod:`sim.rng`), so the distributions of its outcomes can be compared with
  the engine's (same population, same catalogue, same retrieval scheme);
* the benchmark: :meth:`ReferenceFeedModel.standard_steps` times the
  "standard agent-step" (D = 16, 100 candidates scored, a slate of 10, choice
  and updates) of a conventional agent-based implementation.

Scope: the content-based recommender only, no wrappers (no access limits, no
rest prompts, no minors' mode), no platform item counters. Each view keeps the
same per-user statistics as the kernel: the day's impressions by category (and
from them each day's feed entropy and top-category share), the run total of
impression embeddings and the MinHash sketch of watched items, so the benchmark
times the same work on both sides. Items are replaced at midnight exactly as in the
engine (same generator stream), so the catalogue matches the engine's on
every day; users start with the habit that ``make_users`` gives them, as in the
engine. Scalars are kept in float64 where the kernel rounds to float32;
vectors (``user_hat``, interests) are float32 as in the engine.

Public objects
--------------
FeedUserAgent
    One user: state, opening decision and the per-view step.
ReferenceFeedModel
    The model: population, catalogue, block retrieval and the day records.
"""

from __future__ import annotations

import math

import mesa
import numpy as np
import pandas as pd

from sim.engine import BLOCK_SIZE, _coprime_strides, _entropy_top1
from sim.kernels import layout as L
from sim.rng import spawn_generators
from sim.scenario import COHORTS, Scenario
from sim.state import (
    ACTIVITY_PROFILES,
    N_MINHASH,
    category_centroids,
    make_items,
    make_users,
    replace_items,
)

__all__ = ["FeedUserAgent", "ReferenceFeedModel"]


def _sigmoid(z: float) -> float:
    """Logistic function without overflow for large ``|z|``."""
    if z >= 0.0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


class _Params:
    """Behaviour parameters as Python floats (read once per view)."""

    def __init__(self, beh: np.ndarray):
        self.temperature = float(beh[L.TEMPERATURE])
        self.match_w = float(beh[L.MATCH_W])
        self.quality_w = float(beh[L.QUALITY_W])
        self.hook_w = float(beh[L.HOOK_W])
        self.leave_u = float(beh[L.LEAVE_U])
        self.fatigue_w = float(beh[L.FATIGUE_W])
        self.cont_base = float(beh[L.CONT_BASE])
        self.cont_habit = float(beh[L.CONT_HABIT])
        self.cont_hook = float(beh[L.CONT_HOOK])
        self.cont_fatigue = float(beh[L.CONT_FATIGUE])
        self.cont_self = float(beh[L.CONT_SELF])
        self.habit_gain = float(beh[L.HABIT_GAIN])
        self.drift = float(beh[L.DRIFT])
        self.hat_rate = float(beh[L.HAT_RATE])
        self.watch_slope = float(beh[L.WATCH_SLOPE])
        self.watch_hook = float(beh[L.WATCH_HOOK])
        self.streak_alert = float(beh[L.STREAK_ALERT])
        self.habit_cue = float(beh[L.HABIT_CUE])


class FeedUserAgent(mesa.Agent):
    """One user of the feed, stepped once per tick.

    Parameters
    ----------
    model : ReferenceFeedModel
        The model the agent belongs to.
    index : int
        The user's index in the population (its row in the engine's arrays);
        the retrieval block is ``index // BLOCK_SIZE``.
    cohort : int
        0 adult, 1 minor, 2 elderly.
    night_owl : bool
        Uses the late-night activity profile.
    open_rate : float
        Expected openings per tick at profile weight 1 and zero habit.
    self_control : float
        In [0, 1].
    intended_minutes : float
        Intended daily use (minutes).
    interest : numpy.ndarray
        Unit interest vector, float32 (D,); copied.
    habit : float, optional
        Initial habit stock (hours a day), by default 0.

    Attributes
    ----------
    vecs : numpy.ndarray
        float32 (D, 2): column 0 the platform's profile ``user_hat`` (starts
        at zero), column 1 the true interest (drifts toward what is watched).
    habit, time_left, streak, since_prompt : float
        Habit stock (hours a day), tick minutes left, session minutes, minutes
        since the last prompt (here: since the session started).
    in_session, alerted : bool
        In a session; a 30-minute streak was already counted this session.
    day_stats : list of float
        Today's counters, columns as in :mod:`sim.kernels.layout`.
    cat_counts : list of int
        Today's impressions by category (n_categories,); Python ints, so no
        saturation (the engine's uint16 counts saturate only past
        ``sim.state.category_count_dtype``'s bound, far beyond a day's views).
    imp_emb_sum : numpy.ndarray
        float32 (D,): run total of the embeddings of the items shown.
    minhash : numpy.ndarray
        uint32 (N_MINHASH,): MinHash sketch of the items watched (element-wise
        minimum of their signatures).
    """

    def __init__(
        self,
        model: ReferenceFeedModel,
        index: int,
        cohort: int,
        night_owl: bool,
        open_rate: float,
        self_control: float,
        intended_minutes: float,
        interest: np.ndarray,
        habit: float = 0.0,
    ):
        super().__init__(model)
        self.index = int(index)
        self.block = self.index // BLOCK_SIZE
        self.cohort = int(cohort)
        self.owl = 1 if night_owl else 0
        self.open_rate = float(open_rate)
        self.self_control = float(self_control)
        self.intended = float(intended_minutes)
        self.vecs = np.zeros((len(interest), 2), dtype=np.float32)
        self.vecs[:, 1] = interest
        self._coef = np.zeros(2, dtype=np.float32)
        self.habit = float(habit)
        self.in_session = False
        self.time_left = 0.0
        self.streak = 0.0
        self.since_prompt = 0.0
        self.alerted = False
        self.day_stats = [0.0] * L.N_DAY
        self.cat_counts = [0] * model.n_categories
        self.imp_emb_sum = np.zeros(len(interest), dtype=np.float32)
        self.minhash = np.full(N_MINHASH, np.iinfo(np.uint32).max, dtype=np.uint32)

    @property
    def user_hat(self) -> np.ndarray:
        """The platform's profile of the user, float32 (D,) (a view of ``vecs[:, 0]``)."""
        return self.vecs[:, 0]

    @property
    def interest(self) -> np.ndarray:
        """The user's true interest, float32 (D,) (a view of ``vecs[:, 1]``)."""
        return self.vecs[:, 1]

    def _end_session(self) -> None:
        self.in_session = False
        self.time_left = 0.0
        self.streak = 0.0
        self.since_prompt = 0.0
        self.alerted = False

    def step(self) -> None:
        """One tick: habit decay, maybe open the app, then view while tick time is left."""
        m = self.model
        self.habit *= m.habit_decay
        if self.in_session:
            self.time_left += m.tick_minutes
        else:
            rate = self.open_rate * m.profiles[self.cohort][self.owl][m.hour] * (1.0 + m.params.habit_cue * self.habit)
            if m.rng.random() < 1.0 - math.exp(-rate):
                self.in_session = True
                self.time_left = m.tick_minutes * m.rng.random()
                self.day_stats[L.SESSIONS] += 1.0
        sub = 0
        while self.in_session and self.time_left > 0.0:
            self.view(m.candidates(self.block, sub))
            sub += 1

    def view(self, cand: np.ndarray) -> int:
        """One standard agent-step: scores, slate, choice, watching, updates, going on.

        Parameters
        ----------
        cand : numpy.ndarray
            int64 (n_cand,) candidate item slots.

        Returns
        -------
        int
            The watched item slot, or -1 if the user left.
        """
        m = self.model
        p = m.params
        day = self.day_stats
        # a 30-minute streak with no rest prompt (there are no prompts here)
        if self.since_prompt >= p.streak_alert and not self.alerted:
            day[L.UNPROMPTED_STREAKS] += 1.0
            self.alerted = True

        # 1. content-based scores and the slate (top-k, ties to the earlier candidate);
        #    one product gives the platform's scores (user_hat) and the true matches
        vecs = self.vecs
        rows = m.emb.take(cand, axis=0)  # (n_cand, D) float32
        prod = np.dot(rows, vecs)  # (n_cand, 2) float32: [score, match]
        top = (-prod[:, 0]).argsort(kind="stable")[: m.slate_size]
        slate = cand.take(top)
        n_top = slate.shape[0]

        # 2. impressions (counts, by category, their embeddings) and true utilities
        day[L.IMPRESSIONS] += n_top
        day[L.HARMFUL_IMPRESSIONS] += float(np.count_nonzero(m.harmful.take(slate)))
        slate_l = slate.tolist()
        counts = self.cat_counts
        category = m.category_list
        for i in slate_l:
            counts[category[i]] += 1
        self.imp_emb_sum += np.dot(m.ones_slate[:n_top], rows.take(top, axis=0))
        match = prod[:, 1].take(top).tolist()
        temp = p.temperature
        mw = p.match_w
        item_u = m.item_utility_list
        util = [(mw * mk + item_u[i]) / temp for mk, i in zip(match, slate_l)]
        u_leave = (p.leave_u + p.fatigue_w * self.streak / 60.0) / temp
        umax = max(u_leave, max(util))

        # 3. logit choice among the slate and leaving (inverse CDF, leaving first, as in the kernel)
        w = [math.exp(uk - umax) for uk in util]
        w_leave = math.exp(u_leave - umax)
        x = m.rng.random() * (w_leave + sum(w))
        acc = w_leave
        pick = -1
        if x >= acc:
            for k in range(n_top):
                acc += w[k]
                pick = k
                if x < acc:
                    break
        if pick < 0:
            self._end_session()
            return -1

        # 4. watch
        i = slate_l[pick]
        mt = match[pick]
        h = m.hook_list[i]
        share = _sigmoid(p.watch_slope * (mt + m.quality_list[i]) + p.watch_hook * h)
        minutes = m.length_list[i] * share
        before = day[L.MINUTES]
        after = before + minutes
        day[L.MINUTES] = after
        day[L.VIEWS] += 1.0
        if m.night:
            day[L.NIGHT_MINUTES] += minutes
        over = after - max(before, self.intended)
        if over > 0.0:
            day[L.REGRET_MINUTES] += min(over, minutes)
        if m.harmful_list[i]:
            day[L.HARMFUL_VIEWS] += 1.0
        self.streak += minutes
        self.since_prompt += minutes
        self.time_left -= minutes
        self.habit += p.habit_gain * minutes
        np.minimum(self.minhash, m.item_minhash[i], out=self.minhash)

        # 5. learning: the platform's profile moves toward the item by a = HAT_RATE * share,
        #    the true interest by g = DRIFT * share (then renormalised); both columns at once
        a = p.hat_rate * share
        g = p.drift * share
        coef = self._coef
        coef[0] = a
        coef[1] = g
        d = m.emb[i][:, None] - vecs
        d *= coef
        vecs += d
        if g > 0.0:
            t = vecs[:, 1]
            norm = float(t @ t)
            if norm > 0.0:
                t *= np.float32(1.0 / math.sqrt(norm))

        # 6. go on?
        ratio = after / self.intended - 1.0
        z = (
            p.cont_base
            + p.cont_habit * self.habit
            + p.cont_hook * h
            - p.cont_fatigue * self.streak / 60.0
            - p.cont_self * self.self_control * (0.5 + max(ratio, 0.0))
        )
        if m.rng.random() >= _sigmoid(z):
            self._end_session()
        return i


class ReferenceFeedModel(mesa.Model):
    """Pure-Mesa reference model of the feed with the content-based recommender.

    The population, the catalogue (including the items replaced at midnight)
    and the retrieval strides are drawn with the same generators, in the same
    order, as :class:`sim.engine.FeedWorld`, so both models simulate the same
    users and items; all dynamic draws come from ``model.rng``, a
    :class:`numpy.random.Generator` independent of the engine's counter-based
    draws.

    Parameters
    ----------
    scenario : Scenario
        The scenario; only the content-based recommender is implemented
        (``recommender.kind``, ``params`` and wrappers are ignored; the
        settings ``n_candidates`` and ``slate_size`` are used).
    replication : int, optional
        Replication index, by default 0.
    rng : numpy.random.Generator or seed, optional
        Generator of the dynamic draws; by default a named child
        (``"mesa_reference"``) of the scenario seed and replication.
    collect : bool, optional
        Collect per-tick model variables with ``datacollector`` (default True).

    Attributes
    ----------
    users, items : sim.state.Users, sim.state.Items
        The generated population (initial values) and the catalogue (current).
    user_days : numpy.ndarray
        float64 (days, n_users, N_DAY): each finished day's counters per user.
    feed_days : numpy.ndarray
        float32 (days, n_users, 2): each finished day's feed entropy (nats) and
        top-category share per user, as the engine's ``feed_days``.
    datacollector : mesa.DataCollector
        One row per tick: ``tick``, ``in_session``, ``minutes_today_<cohort>``.
    """

    def __init__(self, scenario: Scenario, replication: int = 0, rng=None, collect: bool = True):
        if rng is None:
            gens = spawn_generators(scenario.seed, ("mesa_reference",), replication)
            rng = gens["mesa_reference"]
        super().__init__(rng=rng)
        sc = self.scenario = scenario
        self.replication = replication
        gens = spawn_generators(sc.seed, ("population", "items", "retrieval"), replication)
        self._item_rng = gens["items"]
        dim = sc.population.interest_dim
        self.centroids = category_centroids(sc.catalogue.n_categories, dim, gens["items"])
        self.users = make_users(sc, self.centroids, gens["population"])
        self.items = make_items(sc, self.centroids, gens["items"])
        self.strides = _coprime_strides(sc.catalogue.n_items, gens["retrieval"])
        self._strides_list = [int(s) for s in self.strides]
        self.n_items = self.items.n_items
        self.n_categories = sc.catalogue.n_categories
        self.ones_slate = np.ones(sc.recommender.slate_size, dtype=np.float32)  # sums rows by a product
        self.n_candidates = sc.recommender.n_candidates
        self.slate_size = sc.recommender.slate_size
        self._offsets = np.arange(self.n_candidates, dtype=np.int64)
        self.params = _Params(L.pack_behaviour(sc))
        self.habit_decay = L.habit_decay_per_tick(sc)
        self.tick_minutes = float(sc.clock.tick_minutes)
        self.profiles = ACTIVITY_PROFILES.astype(np.float64).tolist()
        self.ticks_per_day = sc.ticks_per_day
        self.n_ticks = self.ticks_per_day * sc.clock.days
        self.tick = 0
        self.hour = 0
        self.night = L.is_night(0)
        self._cand_cache: dict[tuple[int, int], np.ndarray] = {}
        self._sync_items()

        u = self.users
        for idx in range(u.n_users):
            FeedUserAgent(
                self, idx, u.cohort[idx], bool(u.night_owl_mask[idx]), u.open_rate[idx],
                u.true_self_control[idx], u.true_intended_minutes[idx], u.true_interest[idx], u.true_habit[idx],
            )  # fmt: skip
        self._agent_list = list(self.agents)
        self.cohort = u.cohort.copy()
        self.user_days = np.zeros((sc.clock.days, u.n_users, L.N_DAY), dtype=np.float64)
        self.feed_days = np.full((sc.clock.days, u.n_users, 2), np.nan, dtype=np.float32)
        self.in_session = 0
        for name in COHORTS:
            setattr(self, f"minutes_today_{name}", 0.0)
        self.collect = collect
        self.datacollector = mesa.DataCollector(
            model_reporters={n: n for n in ("tick", "in_session", *(f"minutes_today_{c}" for c in COHORTS))}
        )
        self.running = self.n_ticks > 0

    # -- catalogue and retrieval ------------------------------------------------------------
    def _sync_items(self) -> None:
        """Refresh the per-item lookups after the catalogue changed."""
        it = self.items
        self.emb = it.embedding
        self.harmful = it.harmful_mask
        quality = it.true_quality.astype(np.float64)
        hook = it.true_hook.astype(np.float64)
        # the item's part of the true utility (before the temperature)
        p = self.params
        self.item_utility_list = (p.quality_w * quality + p.hook_w * hook).tolist()
        self.quality_list = quality.tolist()
        self.hook_list = hook.tolist()
        self.length_list = it.length_minutes.astype(np.float64).tolist()
        self.harmful_list = it.harmful_mask.tolist()
        self.category_list = it.category.tolist()
        self.item_minhash = it.minhash

    def draw_candidates(self) -> np.ndarray:
        """Draw one retrieval: ``start + j * stride (mod n_items)``, ``j < n_candidates``.

        Returns
        -------
        numpy.ndarray
            int64 (n_candidates,) distinct item slots; ``start`` is uniform and
            ``stride`` one of the coprime strides, as in the kernel.
        """
        start = int(self.rng.integers(self.n_items))
        stride = self._strides_list[int(self.rng.integers(len(self._strides_list)))]
        return (start + self._offsets * stride) % self.n_items

    def candidates(self, block: int, sub: int) -> np.ndarray:
        """Return the candidates of retrieval block ``block`` at sub-step ``sub`` of this tick.

        The users of one block share one draw per sub-step, as in the engine
        (a user's k-th view in a tick is the tick's k-th sub-step).
        """
        key = (block, sub)
        cand = self._cand_cache.get(key)
        if cand is None:
            cand = self._cand_cache[key] = self.draw_candidates()
        return cand

    # -- the step --------------------------------------------------------------------------
    def step(self) -> None:
        """Advance one tick: every agent steps in a fixed order, then midnight bookkeeping."""
        tod = self.tick % self.ticks_per_day
        self.hour = int((tod * self.scenario.clock.tick_minutes) // 60)
        self.night = L.is_night(self.hour)
        self._cand_cache.clear()
        self.agents.do("step")
        self.tick += 1
        ended_day = None
        if self.tick % self.ticks_per_day == 0:
            ended_day = self.tick // self.ticks_per_day - 1
        if self.collect:
            self._collect(ended_day)
        if ended_day is not None:
            self._end_of_day(ended_day)
        if self.tick >= self.n_ticks:
            self.running = False

    def _collect(self, day) -> None:
        minutes = np.zeros(len(COHORTS))
        in_session = 0
        for a in self._agent_list:
            minutes[a.cohort] += a.day_stats[L.MINUTES]
            in_session += a.in_session
        counts = np.bincount(self.cohort, minlength=len(COHORTS))
        self.in_session = int(in_session)
        for c, name in enumerate(COHORTS):
            mean = float(minutes[c] / counts[c]) if counts[c] else np.nan
            setattr(self, f"minutes_today_{name}", mean)
        self.datacollector.collect(self)

    def _end_of_day(self, day: int) -> None:
        store = day < self.user_days.shape[0]
        if store:
            counts = np.array([a.cat_counts for a in self._agent_list], dtype=np.int64)
            ent, top1 = _entropy_top1(counts)
            for a, e, t in zip(self._agent_list, ent, top1, strict=True):
                self.feed_days[day, a.index] = (e, t)
        for a in self._agent_list:
            if store:
                self.user_days[day, a.index] = a.day_stats
            a.day_stats = [0.0] * L.N_DAY
            a.cat_counts = [0] * self.n_categories
        replace_items(self.items, self.scenario, self.centroids, self._item_rng, self.tick)
        self._sync_items()

    def run(self) -> ReferenceFeedModel:
        """Run to the end of the scenario; return ``self``."""
        while self.tick < self.n_ticks:
            self.step()
        return self

    # -- results ---------------------------------------------------------------------------
    def day_column(self, name: str) -> np.ndarray:
        """Return one counter for every finished user-day, float64 (days, n_users)."""
        return self.user_days[:, :, L.DAY_COLUMNS.index(name)]

    def daily(self) -> pd.DataFrame:
        """One row per day and cohort, like :meth:`sim.record.RunRecord.daily`.

        Returns
        -------
        pandas.DataFrame
            Columns: day, cohort, n_users, minutes_mean, minutes_sd (per-user
            standard deviation, ddof=1), views_mean, sessions_mean,
            regret_minutes_mean, night_minutes_mean.
        """
        rows = []
        n_days = min(self.tick // self.ticks_per_day, self.user_days.shape[0])
        for day in range(n_days):
            d = self.user_days[day]
            for c, name in enumerate(COHORTS):
                mask = self.cohort == c
                n = int(mask.sum())
                if n == 0:
                    continue
                dm = d[mask]
                rows.append(
                    dict(
                        day=day,
                        cohort=name,
                        n_users=n,
                        minutes_mean=float(dm[:, L.MINUTES].mean()),
                        minutes_sd=float(dm[:, L.MINUTES].std(ddof=1)) if n > 1 else np.nan,
                        views_mean=float(dm[:, L.VIEWS].mean()),
                        sessions_mean=float(dm[:, L.SESSIONS].mean()),
                        regret_minutes_mean=float(dm[:, L.REGRET_MINUTES].mean()),
                        night_minutes_mean=float(dm[:, L.NIGHT_MINUTES].mean()),
                    )
                )
        return pd.DataFrame(rows)

    # -- benchmark -------------------------------------------------------------------------
    def standard_steps(self, n_steps: int) -> int:
        """Run ``n_steps`` standard agent-steps, cycling over the agents.

        Each agent-step is one :meth:`FeedUserAgent.view` of an agent forced
        into a session with unlimited tick time: its block's candidates (one
        draw per block and pass), content scores of all candidates, the
        top-``slate_size`` slate, the logit choice, watching and the updates.
        One pass over the agents is one sub-step.

        Parameters
        ----------
        n_steps : int
            Number of agent-steps.

        Returns
        -------
        int
            The number of agent-steps run (``n_steps``).
        """
        agents = self._agent_list
        done = 0
        while done < n_steps:
            self._cand_cache.clear()
            for a in agents[: min(len(agents), n_steps - done)]:
                a.in_session = True
                a.time_left = math.inf
                a.view(self.candidates(a.block, 0))
            done += min(len(agents), n_steps - done)
        return done

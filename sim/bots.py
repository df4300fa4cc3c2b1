"""Bot accounts that fake engagement, and what an auditor measures of them in a run (Art. 14).

Art. 14 of the Provisions forbids registering fake accounts, faking likes, views and shares, and manipulating
rankings, hot lists and recommendations (regulation-map.md §1, Art 14). A ``[bots]`` scenario table
(:class:`sim.scenario.BotSettings`) runs a *campaign*: bot accounts that make fake views of target items, or of
a target creator's items, from a start time on. The campaign is an observer (:mod:`sim.observers`) attached by
:class:`sim.engine.FeedWorld` (:func:`attach_manipulation`), so fake engagement enters the platform's data the
way a real platform receives it: in the tick's interaction log, before the platform counts it (its decayed
counts, ``*_hat``), its recommender learns from it (``fit``) and its hot list (:mod:`sim.hotlist`) is
recomputed. No simulated user watches a fake view, and users' own records never contain one.

Fake views. In every tick ``t`` of the campaign each bot account ``b`` makes ``floor(r)`` or ``floor(r) + 1``
fake views, ``r = views_per_bot_hour * tick_minutes / 60``, the extra one with probability ``r - floor(r)``
(uniform ``(key, t, b, BOT_VIEWS)``), so the mean rate is exact. View ``j`` of account ``b`` (agent
``b * 4096 + j``) is of a live target chosen uniformly (``BOT_TARGET``; for a creator target, then one of the
creator's current items uniformly, ``BOT_ITEM``), lasts ``watch_share`` of the item's length, comes with an
impression (the bot loads the item), and is caught by the platform's filter with probability
``detection_rate`` (``BOT_DETECT``): caught views are dropped, the rest are appended to the tick's log with
user ids ``n_users + b`` (accounts the platform has, not simulated users) and the tick's last draw counter as
their step. All draws are counter-based (:mod:`sim.rng`) and use their own purposes, so a run with bots and the
same scenario with ``n_bots = 0`` share every other random number (common random numbers): until the campaign
starts the two runs are identical, and so are the targets.

Targets are chosen at the campaign's start from the catalogue then (``choose``: ``random``, ``newest``,
``harmful``), with the campaign's own generator. A target item whose slot is replaced by the catalogue's daily
renewal is gone; a target creator's new items become targets.

Measurements (the audit's raw material, :class:`ManipulationRecord`), kept with or without fake views:

- exposure: per real user, slate impressions of targets and of all items, and minutes watched of targets and of
  all items, from the campaign's start (:meth:`Manipulation.on_substep`);
- per tick: real impressions and real minutes of each target, all real impressions and minutes, fake views
  made, caught and let through (per target);
- rank probes: every :data:`PROBE_EVERY_MINUTES` from the start, a panel of users (the probes' own generator)
  is scored by a copy of the recommender on candidate sets made of each target item and ``n_candidates - 1``
  random other items; the target's rank in its set (0 = first, ties count half) is kept per user and per
  probe. The same panels and sets are drawn in the run with bots and in the bot-free run, so the difference
  is the rank displacement the bots caused;
- with a hot list: its log (:class:`sim.hotlist.HotList`), which listed items were targets, and the position
  of the best-placed target among all items by hot-list score.

Public objects
--------------
Manipulation
    The observer: the campaign, the hot list and the measurements of one run.
ManipulationRecord
    What a run keeps of them (``RunRecord.manipulation``).
attach_manipulation
    Build and attach the observer when a scenario has ``[bots]`` or ``[recommender.hot_list]``.
bot_free_scenario
    The same scenario with no bot accounts (the audit's paired counterfactual).
PROBE_EVERY_MINUTES, PROBE_SETS, MAX_VIEWS_PER_TICK
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sim.hotlist import HotList, hotlist_frame
from sim.platform import InteractionLog, PluginError
from sim.rng import Purpose, spawn_generators, uniform_np
from sim.scenario import BotSettings, Scenario

__all__ = [
    "MAX_VIEWS_PER_TICK",
    "PROBE_EVERY_MINUTES",
    "PROBE_SETS",
    "Manipulation",
    "ManipulationRecord",
    "attach_manipulation",
    "bot_free_scenario",
]

# Agent ids of fake views are bot * 4096 + view: room for 4,096 views per account and tick. The scenario caps a
# bot at 3,600 views an hour (one a second) and ticks at 60 minutes, so the room is never exceeded.
MAX_VIEWS_PER_TICK = 4096
PROBE_EVERY_MINUTES = 60  # rank probes every hour from the campaign's start (recaudit choice)
PROBE_SETS = 4000  # candidate sets scored per probe (panel users x targets; recaudit choice bounding the cost)
PROBE_MAX_USERS = 400  # panel users per probe at most
PROBE_MIN_USERS = 30  # and at least (audits.audit.MIN_SCOPE: fewer users give no credible interval)


@dataclass(frozen=True)
class ManipulationRecord:
    """The Art. 14 part of a run: the campaign, its targets, what they got, and the hot list.

    Attributes (n = n_users, S = ticks, T = targets, P = rank probes, N = hot-list size)
    ------------------------------------------------------------------------------------
    bots : dict or None
        The ``[bots]`` settings (None: no campaign).
    hot_list : dict or None
        The ``[recommender.hot_list]`` settings (None: no hot list).
    tick_minutes : int
    start_tick, end_tick : int
        The campaign's first tick and the tick after its last (both -1 without bots).
    target_kind : str
        ``"items"`` or ``"creators"`` ("" without bots).
    targets : int64 (T,)
        Target item slots, or creator ids, chosen at the start.
    target_uids : int64 (T,)
        Item ids of target items (-1 for creators).
    user_target_impressions, user_impressions : float64 (n,)
        Slate impressions of targets, and of all items, per real user from the start.
    user_target_minutes, user_minutes : float64 (n,)
        Minutes watched of targets, and of all items, per real user from the start.
    tick_target_impressions, tick_target_minutes : float64 (S, T)
        Real users' impressions and minutes of each target per tick.
    tick_impressions, tick_minutes_total : float64 (S,)
        All real impressions and minutes per tick.
    fake_made, fake_caught : int64 (S,)
        Fake views made, and caught by the platform's filter, per tick.
    fake_accepted : int64 (S, T)
        Fake views let through per tick and target.
    probe_ticks : int64 (P,)
    probe_rank : float64 (P, T)
        Mean rank of each target in the probe's candidate sets (0 = first; NaN: target gone).
    user_rank_sum, user_rank_count : float64 (n,)
        Sum of the ranks of the targets in the user's probed sets, and their number.
    n_candidates : int
        Candidate-set size of the probes.
    hot_items, hot_uid, hot_creator : (S, N) int32, int64, int32
        The hot-list log (-1: empty slot); None without a hot list.
    hot_scores, hot_fake_scores : float64 (S, N)
    hot_target_mask : bool (S, N)
        Listed items that were campaign targets at that tick.
    hot_target_position : float64 (S,)
        Position (1 = top) of the best-placed target among all items by hot-list score (NaN: no target).
    """

    bots: dict | None
    hot_list: dict | None
    tick_minutes: int
    start_tick: int
    end_tick: int
    target_kind: str
    targets: np.ndarray
    target_uids: np.ndarray
    user_target_impressions: np.ndarray
    user_impressions: np.ndarray
    user_target_minutes: np.ndarray
    user_minutes: np.ndarray
    tick_target_impressions: np.ndarray
    tick_target_minutes: np.ndarray
    tick_impressions: np.ndarray
    tick_minutes_total: np.ndarray
    fake_made: np.ndarray
    fake_caught: np.ndarray
    fake_accepted: np.ndarray
    probe_ticks: np.ndarray
    probe_rank: np.ndarray
    user_rank_sum: np.ndarray
    user_rank_count: np.ndarray
    n_candidates: int
    hot_items: np.ndarray | None = None
    hot_uid: np.ndarray | None = None
    hot_creator: np.ndarray | None = None
    hot_scores: np.ndarray | None = None
    hot_fake_scores: np.ndarray | None = None
    hot_target_mask: np.ndarray | None = None
    hot_target_position: np.ndarray | None = None

    @property
    def has_bots(self) -> bool:
        """Whether the run had a campaign (a ``[bots]`` table, possibly with zero accounts)."""
        return self.bots is not None

    @property
    def has_hot_list(self) -> bool:
        """Whether the platform ran a hot list."""
        return self.hot_items is not None

    def hotlist_frame(self) -> pd.DataFrame:
        """Return the hot-list log, one row per (tick, rank) listed (the ``hotlist.parquet`` table).

        Columns :data:`sim.hotlist.HOTLIST_COLUMNS`, plus ``campaign_target`` (bool, the auditor's
        annotation) when the run had a campaign.
        """
        if not self.has_hot_list:
            return pd.DataFrame()
        df = hotlist_frame(self.hot_items, self.hot_uid, self.hot_creator, self.hot_scores, self.hot_fake_scores,
                           self.tick_minutes)  # fmt: skip
        if self.has_bots:
            t, r = np.nonzero(self.hot_items >= 0)
            df["campaign_target"] = self.hot_target_mask[t, r]
        return df


class Manipulation:
    """The Art. 14 observer of one run: the bot campaign, the hot list and the measurements.

    Parameters
    ----------
    world : sim.engine.FeedWorld
        The world, fully built.
    """

    def __init__(self, world):
        sc = world.scenario
        self.scenario = sc
        self.bots: BotSettings | None = sc.bots
        self.n_users = world.users.n_users
        self.n_items = world.items.n_items
        self.n_ticks = world.n_ticks
        self.tick_minutes = sc.clock.tick_minutes
        self.key = int(world.key)
        hl = sc.recommender.hot_list
        self.hot = HotList(hl, self.n_items, self.tick_minutes, self.n_ticks) if hl is not None else None
        if self.hot is not None:
            world.view._set(hot_list_idx=self.hot.current)
        self.started = False
        self._synced_tick = -1
        self.targets = np.zeros(0, dtype=np.int64)
        self.target_uids = np.zeros(0, dtype=np.int64)
        self.target_of = np.full(self.n_items, -1, dtype=np.int32)  # target index of each item slot, -1: none
        self.creator_lookup = None
        if self.bots is None:
            self.start_tick = self.end_tick = -1
            return
        b = self.bots
        tpd = sc.ticks_per_day
        self.start_tick = b.start_day * tpd + (b.start_hour * 60) // self.tick_minutes
        end = self.n_ticks if b.duration_hours is None else self.start_tick + math.ceil(
            b.duration_hours * 60.0 / self.tick_minutes - 1e-9)  # fmt: skip
        self.end_tick = int(min(end, self.n_ticks))
        self.rate = b.views_per_bot_hour * self.tick_minutes / 60.0
        gens = spawn_generators(sc.seed, ("bots", "bots_probe"), world.replication)
        self.rng, self.probe_rng = gens["bots"], gens["bots_probe"]
        n, s = self.n_users, self.n_ticks
        self.user_target_impressions = np.zeros(n)
        self.user_impressions = np.zeros(n)
        self.user_target_minutes = np.zeros(n)
        self.user_minutes = np.zeros(n)
        self.user_rank_sum = np.zeros(n)
        self.user_rank_count = np.zeros(n)
        self.tick_impressions = np.zeros(s)
        self.tick_minutes_total = np.zeros(s)
        self.fake_made = np.zeros(s, dtype=np.int64)
        self.fake_caught = np.zeros(s, dtype=np.int64)
        self.probe_ticks, self.probe_rank = [], []
        self.probe_every = max(1, PROBE_EVERY_MINUTES // self.tick_minutes)
        if self.hot is not None:
            self.hot_target_mask = np.zeros((s, self.hot.size), dtype=bool)
            self.hot_target_position = np.full(s, np.nan)

    # -- targets -------------------------------------------------------------------------------------------------
    def _start(self, world) -> None:
        """Choose the targets from the catalogue at the campaign's start."""
        b, it = self.bots, world.items
        n_creators = int(world.creator_minutes.size)
        slots = np.arange(self.n_items)
        if b.target == "items":
            if b.choose == "newest":
                pool = np.lexsort((slots, -it.birth_tick.astype(np.int64)))[: b.n_targets]
            elif b.choose == "harmful":
                harmful = np.flatnonzero(it.harmful_mask)
                pool = self.rng.choice(harmful, size=min(b.n_targets, harmful.size), replace=False)
            else:
                pool = self.rng.choice(self.n_items, size=b.n_targets, replace=False)
            self.targets = np.sort(pool).astype(np.int64)
            self.target_uids = it.uid[self.targets].astype(np.int64)
            self.target_of[self.targets] = np.arange(self.targets.size, dtype=np.int32)
        else:
            if b.choose == "newest":
                order = np.lexsort((slots, -it.birth_tick.astype(np.int64)))
                _, first = np.unique(it.creator[order], return_index=True)
                pool = it.creator[order][np.sort(first)][: b.n_targets]  # creators of the newest items, newest first
            elif b.choose == "harmful":
                makers = np.unique(it.creator[it.harmful_mask])
                pool = self.rng.choice(makers, size=min(b.n_targets, makers.size), replace=False)
            else:
                pool = self.rng.choice(n_creators, size=b.n_targets, replace=False)
            self.targets = np.sort(pool).astype(np.int64)
            self.target_uids = np.full(self.targets.size, -1, dtype=np.int64)
            self.creator_lookup = np.full(n_creators, -1, dtype=np.int32)
            self.creator_lookup[self.targets] = np.arange(self.targets.size, dtype=np.int32)
            self.target_of[:] = self.creator_lookup[it.creator]
        n_t = self.targets.size
        self.tick_target_impressions = np.zeros((self.n_ticks, n_t))
        self.tick_target_minutes = np.zeros((self.n_ticks, n_t))
        self.fake_accepted = np.zeros((self.n_ticks, n_t), dtype=np.int64)
        self.started = True

    def _renew(self, world, replaced: np.ndarray) -> None:
        """Follow the catalogue's renewal: replaced target items are gone; a target creator's new items join."""
        if replaced.size == 0:
            return
        if self.creator_lookup is None:
            self.target_of[replaced] = -1
        else:
            self.target_of[replaced] = self.creator_lookup[world.items.creator[replaced]]

    def _ensure_started(self, world, tick: int) -> bool:
        """Bring the targets up to date at the first hook of a tick; return whether the campaign has started."""
        if self.bots is None or tick < self.start_tick:
            return False
        if tick != self._synced_tick:
            if not self.started:
                self._start(world)
            else:  # slots renewed at midnight are published in the view for the whole next tick
                self._renew(world, np.asarray(world.view.replaced_item_idx))
            self._synced_tick = tick
        return True

    # -- the hooks -----------------------------------------------------------------------------------------------
    def on_substep(self, world, sub) -> None:
        """Count real users' impressions and minutes of targets and of all items (from the start)."""
        if not self._ensure_started(world, sub.tick):
            return
        slate = sub.out_slate
        shown = slate >= 0
        hit = shown & (self.target_of[np.maximum(slate, 0)] >= 0)
        act = sub.active_idx
        self.user_impressions[act] += shown.sum(axis=1)
        self.user_target_impressions[act] += hit.sum(axis=1)
        watched = sub.out_item >= 0
        self.user_minutes[act[watched]] += sub.out_minutes[watched]
        on_target = watched & (self.target_of[np.maximum(sub.out_item, 0)] >= 0)
        self.user_target_minutes[act[on_target]] += sub.out_minutes[on_target]

    def on_tick(self, world, log: InteractionLog) -> InteractionLog | None:
        """Add the campaign's fake views to the tick's log, recompute the hot list, probe the ranking."""
        tick = world.tick
        replaced = np.asarray(world.view.replaced_item_idx)
        fake_mask = None
        if self._ensure_started(world, tick):
            self._count_real(tick, log)
            log, fake_mask = self._inject(world, tick, log)
        if self.hot is not None:
            it = world.items
            top = self.hot.update(tick, log, replaced, it.uid, it.creator, fake_mask)
            world.view._set(hot_list_idx=top)
            if self.started:
                self.hot_target_mask[tick, : top.size] = self.target_of[top] >= 0
                self._hot_position(tick)
        if self.started and (tick - self.start_tick) % self.probe_every == 0:
            self._probe(world, tick)
        return log if fake_mask is not None else None

    # -- pieces --------------------------------------------------------------------------------------------------
    def _count_real(self, tick: int, log: InteractionLog) -> None:
        n_t = self.targets.size
        imp = log.item_impressions.astype(np.float64)
        tgt = self.target_of
        on = tgt >= 0
        self.tick_target_impressions[tick] = np.bincount(tgt[on], weights=imp[on], minlength=n_t)
        self.tick_impressions[tick] = imp.sum()
        rows = tgt[log.item_idx]
        mins = log.minutes.astype(np.float64)
        keep = rows >= 0
        self.tick_target_minutes[tick] = np.bincount(rows[keep], weights=mins[keep], minlength=n_t)
        self.tick_minutes_total[tick] = mins.sum()

    def _fake_views(self, world, tick: int):
        """Draw the tick's fake views: (item slots int32 (v,), caught bool (v,), bot ids int64 (v,))."""
        empty = np.zeros(0, dtype=np.int64)
        b = self.bots
        if b.n_bots == 0 or not (self.start_tick <= tick < self.end_tick):
            return empty.astype(np.int32), empty.astype(bool), empty
        bot = np.arange(b.n_bots, dtype=np.int64)
        base = math.floor(self.rate)
        n_b = base + (uniform_np(self.key, tick, bot, Purpose.BOT_VIEWS) < self.rate - base).astype(np.int64)
        total = int(n_b.sum())
        if total == 0:
            return empty.astype(np.int32), empty.astype(bool), empty
        bot_of = np.repeat(bot, n_b)
        view_j = np.arange(total) - np.repeat(np.cumsum(n_b) - n_b, n_b)
        agent = bot_of * MAX_VIEWS_PER_TICK + view_j
        u_target = uniform_np(self.key, tick, agent, Purpose.BOT_TARGET)
        on = np.flatnonzero(self.target_of >= 0)
        if on.size == 0:  # every target is gone
            return empty.astype(np.int32), empty.astype(bool), empty
        order = on[np.argsort(self.target_of[on], kind="stable")]  # target items grouped by target, by slot
        counts = np.bincount(self.target_of[order], minlength=self.targets.size)
        starts = np.cumsum(counts) - counts
        live = np.flatnonzero(counts > 0)
        tgt = live[np.minimum((u_target * live.size).astype(np.int64), live.size - 1)]
        if self.creator_lookup is None:
            pick = np.zeros(total, dtype=np.int64)
        else:
            u_item = uniform_np(self.key, tick, agent, Purpose.BOT_ITEM)
            pick = np.minimum((u_item * counts[tgt]).astype(np.int64), counts[tgt] - 1)
        items = order[starts[tgt] + pick].astype(np.int32)
        caught = uniform_np(self.key, tick, agent, Purpose.BOT_DETECT) < b.detection_rate
        return items, caught, bot_of

    def _inject(self, world, tick: int, log: InteractionLog):
        items, caught, bot_of = self._fake_views(world, tick)
        self.fake_made[tick] = items.size
        self.fake_caught[tick] = int(caught.sum())
        keep = ~caught
        items, bot_of = items[keep], bot_of[keep]
        if items.size == 0:
            return log, None
        self.fake_accepted[tick] = np.bincount(self.target_of[items], minlength=self.targets.size)
        from sim.engine import MAX_SUBSTEPS  # the engine is loaded: it attached this observer

        minutes = (self.bots.watch_share * world.items.length_minutes[items]).astype(np.float32)
        n = log.item_idx.size
        fake_mask = np.zeros(n + items.size, dtype=bool)
        fake_mask[n:] = True
        new = InteractionLog(
            user_idx=np.concatenate([log.user_idx, self.n_users + bot_of]).astype(np.int64),
            item_idx=np.concatenate([log.item_idx, items]).astype(np.int32),
            minutes=np.concatenate([log.minutes, minutes]).astype(np.float32),
            step=np.concatenate([log.step, np.full(items.size, tick * MAX_SUBSTEPS + MAX_SUBSTEPS - 1)]).astype(
                np.int64
            ),
            item_impressions=(log.item_impressions + np.bincount(items, minlength=self.n_items)).astype(np.int32),
        )
        return new, fake_mask

    def _hot_position(self, tick: int) -> None:
        score = self.hot.score
        on = self.target_of >= 0
        if on.any():
            best = score[on].max()
            self.hot_target_position[tick] = float((score > best).sum() + 1)

    def _probe(self, world, tick: int) -> None:
        """Score a panel of users on candidate sets holding each target; keep the targets' ranks."""
        n_t = self.targets.size
        n_cand = self.scenario.recommender.n_candidates
        n_panel = int(min(self.n_users, max(PROBE_MIN_USERS, min(PROBE_MAX_USERS, PROBE_SETS // max(n_t, 1)))))
        rng = self.probe_rng
        users = np.sort(rng.choice(self.n_users, size=n_panel, replace=False)).astype(np.int64)
        u_item = rng.random(n_t)  # which current item stands for a creator target
        others = rng.integers(0, self.n_items - 1, size=(n_panel * n_t, n_cand - 1))
        on = np.flatnonzero(self.target_of >= 0)
        order = on[np.argsort(self.target_of[on], kind="stable")]
        counts = np.bincount(self.target_of[order], minlength=n_t)
        starts = np.cumsum(counts) - counts
        alive = counts > 0
        item_t = np.full(n_t, -1, dtype=np.int64)
        if alive.any():
            pick = np.minimum((u_item[alive] * counts[alive]).astype(np.int64), counts[alive] - 1)
            item_t[alive] = order[starts[alive] + pick]
        self.probe_ticks.append(tick)
        rank_t = np.full(n_t, np.nan)
        if alive.any():
            cols = np.flatnonzero(alive)
            target_item = np.tile(item_t[cols], n_panel)  # row = panel user p, target cols[q]
            rows_user = np.repeat(users, cols.size)
            oth = others.reshape(n_panel, n_t, n_cand - 1)[:, cols].reshape(-1, n_cand - 1)
            oth = oth + (oth >= target_item[:, None])  # never the target itself
            cand = np.concatenate([target_item[:, None], oth], axis=1).astype(np.int32)
            rec = copy.deepcopy(world.recommender)
            scores = rec.score(rows_user, cand, world.view)
            if not isinstance(scores, np.ndarray) or scores.shape != cand.shape or scores.dtype.kind != "f":
                raise PluginError(
                    f"recommender: score() returned {type(scores).__name__} {getattr(scores, 'shape', '')} for a "
                    f"rank probe of shape {cand.shape}; fix: return float32 scores of shape (n_batch, n_cand)"
                )
            s = np.asarray(scores, dtype=np.float64)
            own = s[:, :1]
            rank = (s[:, 1:] > own).sum(axis=1) + 0.5 * (s[:, 1:] == own).sum(axis=1)
            rank = rank.reshape(n_panel, cols.size)
            rank_t[cols] = rank.mean(axis=0)
            self.user_rank_sum[users] += rank.sum(axis=1)
            self.user_rank_count[users] += cols.size
        self.probe_rank.append(rank_t)

    # -- the record ----------------------------------------------------------------------------------------------
    def record(self) -> ManipulationRecord:
        """Return what the run keeps (:class:`ManipulationRecord`)."""
        hot = self.hot
        hot_kw = {}
        if hot is not None:
            hot_kw = dict(hot_items=hot.items, hot_uid=hot.item_uid, hot_creator=hot.creator, hot_scores=hot.scores,
                          hot_fake_scores=hot.fake_scores)  # fmt: skip
            if self.bots is not None:
                hot_kw.update(hot_target_mask=self.hot_target_mask, hot_target_position=self.hot_target_position)
        z, s = np.zeros(0), self.n_ticks
        if self.bots is None:
            return ManipulationRecord(
                bots=None, hot_list=self.scenario.recommender.hot_list.model_dump() if hot is not None else None,
                tick_minutes=self.tick_minutes, start_tick=-1, end_tick=-1, target_kind="",
                targets=np.zeros(0, dtype=np.int64), target_uids=np.zeros(0, dtype=np.int64),
                user_target_impressions=z, user_impressions=z, user_target_minutes=z, user_minutes=z,
                tick_target_impressions=np.zeros((0, 0)), tick_target_minutes=np.zeros((0, 0)),
                tick_impressions=z, tick_minutes_total=z, fake_made=np.zeros(0, dtype=np.int64),
                fake_caught=np.zeros(0, dtype=np.int64), fake_accepted=np.zeros((0, 0), dtype=np.int64),
                probe_ticks=np.zeros(0, dtype=np.int64), probe_rank=np.zeros((0, 0)), user_rank_sum=z,
                user_rank_count=z, n_candidates=self.scenario.recommender.n_candidates, **hot_kw,
            )  # fmt: skip
        if not self.started:  # the run ended before the campaign's start (cannot happen in a validated scenario)
            self.tick_target_impressions = self.tick_target_minutes = np.zeros((s, 0))
            self.fake_accepted = np.zeros((s, 0), dtype=np.int64)
        n_t = self.targets.size
        return ManipulationRecord(
            bots=self.bots.model_dump(),
            hot_list=self.scenario.recommender.hot_list.model_dump() if hot is not None else None,
            tick_minutes=self.tick_minutes, start_tick=int(self.start_tick), end_tick=int(self.end_tick),
            target_kind=self.bots.target, targets=self.targets, target_uids=self.target_uids,
            user_target_impressions=self.user_target_impressions, user_impressions=self.user_impressions,
            user_target_minutes=self.user_target_minutes, user_minutes=self.user_minutes,
            tick_target_impressions=self.tick_target_impressions, tick_target_minutes=self.tick_target_minutes,
            tick_impressions=self.tick_impressions, tick_minutes_total=self.tick_minutes_total,
            fake_made=self.fake_made, fake_caught=self.fake_caught, fake_accepted=self.fake_accepted,
            probe_ticks=np.asarray(self.probe_ticks, dtype=np.int64),
            probe_rank=np.asarray(self.probe_rank, dtype=np.float64).reshape(len(self.probe_ticks), n_t),
            user_rank_sum=self.user_rank_sum, user_rank_count=self.user_rank_count,
            n_candidates=self.scenario.recommender.n_candidates, **hot_kw,
        )  # fmt: skip


def attach_manipulation(world) -> Manipulation | None:
    """Attach the Art. 14 observer to a world whose scenario has ``[bots]`` or a hot list; return it (or None).

    Called by :class:`sim.engine.FeedWorld` at the end of its construction, so the campaign is the first
    observer: later observers see the log with its fake views.
    """
    sc = world.scenario
    if world.users.n_users == 0 or (sc.bots is None and sc.recommender.hot_list is None):
        return None
    m = Manipulation(world)
    if sc.bots is None:  # a hot list only: no exposure to track
        world.add_observer(_TickOnly(m))
    else:
        world.add_observer(m)
    return m


class _TickOnly:
    """Expose only ``on_tick`` of an observer (no sub-step records are built for it)."""

    def __init__(self, inner):
        self.inner = inner

    def on_tick(self, world, log):
        """Pass the tick to the wrapped observer."""
        return self.inner.on_tick(world, log)


def bot_free_scenario(scenario: Scenario) -> Scenario:
    """Return ``scenario`` with ``bots.n_bots = 0``: the same targets and measurements, no fake view.

    The audit's paired counterfactual for Art. 14: with the same seed it shares every random number of the
    run with bots (the bots' draws have their own purposes), so the two runs are identical up to the
    campaign's start and differ afterwards only through what the fake views did.
    """
    if scenario.bots is None:
        raise ValueError("the scenario has no [bots] table")
    return scenario.with_values({"bots.n_bots": 0}, source=f"{scenario.name} without bots")

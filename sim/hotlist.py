"""The platform's hot list (热榜): the top items by recent engagement, recomputed every tick and logged.

Art. 14 of the Provisions forbids manipulating hot-search and ranking lists; the CAC's Qinglang 2024 campaign
(item 2) asks platforms to publish the principles of their hot lists and to keep hot-list logs so the results
can be verified (regulation-map.md §1, Art 14). This module is that list and its log.

Definition. After every tick the platform counts the tick's interactions (the views real users made, and any
fake ones its bot filter let through: :mod:`sim.bots`). The hot list at the end of tick ``t`` is the ``size``
items with the largest *score*, the sum of ``signal`` (1 per view, or the minutes watched) over the
interactions counted in ticks ``t - W + 1 .. t``, with ``W = ceil(window_hours * 60 / tick_minutes)`` ticks.
Only items with a positive score are listed; ties go to the lower item slot. A slot whose item was replaced
(the catalogue's daily renewal) starts with no history. The list is published in the platform's view as
``view.hot_list_idx`` (int32 item slots, best first), which :class:`sim.builtin.recommenders.HotListFeed`
reads to place hot items in the feed.

Every tick's list is kept (the hot-list log, ``hotlist.parquet``): the slots, the items' ids and creators, the
scores, and, for the auditor only, the part of each score that came from fake engagement (the platform does
not know it). The log is exactly what a plain recomputation from the counted interactions gives
(``tests/test_manipulation.py``).

Public objects
--------------
HotList
    The windowed counts, the current list and its log.
HOTLIST_COLUMNS
    Columns of :meth:`HotList.frame` (the ``hotlist.parquet`` table).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from sim.platform import InteractionLog
from sim.scenario import HotListSettings

__all__ = ["HOTLIST_COLUMNS", "HotList", "hotlist_frame", "top_items"]

HOTLIST_COLUMNS = ("tick", "day", "minute_of_day", "rank", "item_idx", "item_uid", "creator", "score", "fake_score")


def top_items(score: np.ndarray, size: int) -> np.ndarray:
    """Return the hot list of a score vector: up to ``size`` item slots with a positive score, best first.

    Parameters
    ----------
    score : float64 (n_items,)
        Windowed engagement of each item slot.
    size : int
        Length of the list.

    Returns
    -------
    int32 (<= size,)
        Slots by decreasing score, ties by increasing slot.
    """
    pos = np.flatnonzero(score > 0)
    if pos.size > size:  # keep every slot tied with the size-th score, then order exactly
        kth = np.partition(score[pos], pos.size - size)[pos.size - size]
        pos = pos[score[pos] >= kth]
    order = np.lexsort((pos, -score[pos]))
    return pos[order[:size]].astype(np.int32)


class HotList:
    """The hot list of one run: windowed counts per item slot, the current list, and the log of every tick's list.

    Parameters
    ----------
    settings : HotListSettings
    n_items : int
        Item slots in the catalogue.
    tick_minutes : int
        Minutes per tick.
    n_ticks : int
        Ticks in the run (the log's length).

    Attributes
    ----------
    n_window : int
        Ticks in the window, ``W``.
    current : int32 (<= size,)
        The list at the end of the last tick, best first.
    score : float64 (n_items,)
        Every slot's score at the end of the last tick.
    items, item_uid, creator : (n_ticks, size) int32, int64, int32
        The log: every tick's list (-1 where the list is shorter than ``size``).
    scores, fake_scores : float64 (n_ticks, size)
        Scores of the listed items (views or minutes in the window) and the part from fake engagement.
    """

    def __init__(self, settings: HotListSettings, n_items: int, tick_minutes: int, n_ticks: int):
        self.settings = settings
        self.size = int(settings.size)
        self.tick_minutes = int(tick_minutes)
        self.n_window = max(1, math.ceil(settings.window_hours * 60.0 / tick_minutes - 1e-9))
        self.ring = np.zeros((self.n_window, n_items), dtype=np.float64)
        self.fake_ring = None  # the fake part of the counts (auditor's annotation), from the first fake view on
        self.current = np.zeros(0, dtype=np.int32)
        self.score = np.zeros(n_items, dtype=np.float64)
        self.items = np.full((n_ticks, self.size), -1, dtype=np.int32)
        self.item_uid = np.full((n_ticks, self.size), -1, dtype=np.int64)
        self.creator = np.full((n_ticks, self.size), -1, dtype=np.int32)
        self.scores = np.zeros((n_ticks, self.size), dtype=np.float64)
        self.fake_scores = np.zeros((n_ticks, self.size), dtype=np.float64)
        self.n_logged = 0

    def weights(self, log: InteractionLog) -> np.ndarray:
        """Return each logged interaction's contribution to the score, float64 (n_views,)."""
        if self.settings.signal == "minutes":
            return log.minutes.astype(np.float64)
        return np.ones(log.item_idx.size, dtype=np.float64)

    def update(self, tick: int, log: InteractionLog, replaced_idx: np.ndarray, item_uid: np.ndarray,
               item_creator: np.ndarray, fake_mask: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
        """Count one tick's interactions, recompute the list, log it and return it.

        Parameters
        ----------
        tick : int
        log : InteractionLog
            The interactions the platform counts this tick.
        replaced_idx : int32 (n_new,)
            Slots that received new items since the last update (their history is cleared).
        item_uid, item_creator : (n_items,)
            The items now in the slots (for the log).
        fake_mask : bool (n_views,), optional
            Which rows of ``log`` are fake (auditor's annotation; does not change the list).

        Returns
        -------
        int32 (<= size,)
            The new list, best first.
        """
        n_items = self.ring.shape[1]
        has_fake = fake_mask is not None and bool(fake_mask.any())
        if has_fake and self.fake_ring is None:
            self.fake_ring = np.zeros_like(self.ring)
        if replaced_idx.size:
            self.ring[:, replaced_idx] = 0.0
            if self.fake_ring is not None:
                self.fake_ring[:, replaced_idx] = 0.0
        row = tick % self.n_window
        w = self.weights(log)
        self.ring[row] = np.bincount(log.item_idx, weights=w, minlength=n_items)
        if self.fake_ring is not None:
            if has_fake:
                self.fake_ring[row] = np.bincount(log.item_idx[fake_mask], weights=w[fake_mask], minlength=n_items)
            else:
                self.fake_ring[row] = 0.0
        score = self.score = self.ring.sum(axis=0)
        top = top_items(score, self.size)
        self.current = top
        if tick < self.items.shape[0]:
            k = top.size
            self.items[tick, :k] = top
            self.item_uid[tick, :k] = item_uid[top]
            self.creator[tick, :k] = item_creator[top]
            self.scores[tick, :k] = score[top]
            if self.fake_ring is not None:
                self.fake_scores[tick, :k] = self.fake_ring[:, top].sum(axis=0)
            self.n_logged = max(self.n_logged, tick + 1)
        return top

    def frame(self) -> pd.DataFrame:
        """Return the hot-list log as a table, one row per (tick, rank) listed (:data:`HOTLIST_COLUMNS`)."""
        return hotlist_frame(self.items[: self.n_logged], self.item_uid[: self.n_logged],
                             self.creator[: self.n_logged], self.scores[: self.n_logged],
                             self.fake_scores[: self.n_logged], self.tick_minutes)  # fmt: skip


def hotlist_frame(items, item_uid, creator, scores, fake_scores, tick_minutes: int) -> pd.DataFrame:
    """Build the ``hotlist.parquet`` table from the log arrays ((n_ticks, size) each; -1 items are empty slots)."""
    tick_idx, rank = np.nonzero(items >= 0)
    tpd = 1440 // tick_minutes
    return pd.DataFrame(
        {
            "tick": tick_idx.astype(np.int64),
            "day": (tick_idx // tpd).astype(np.int64),
            "minute_of_day": ((tick_idx % tpd) * tick_minutes).astype(np.int64),
            "rank": (rank + 1).astype(np.int64),
            "item_idx": items[tick_idx, rank].astype(np.int64),
            "item_uid": item_uid[tick_idx, rank],
            "creator": creator[tick_idx, rank].astype(np.int64),
            "score": scores[tick_idx, rank],
            "fake_score": fake_scores[tick_idx, rank],
        },
        columns=list(HOTLIST_COLUMNS),
    )

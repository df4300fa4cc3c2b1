"""Observers: code that watches a feed world's run, and may add to what the platform sees.

An observer is any object with one or more of these methods (all optional); attach it with
:meth:`sim.engine.FeedWorld.add_observer` before the run.

``on_substep(world, sub)``
    After every view sub-step; ``sub`` is a :class:`SubStep` (read-only arrays). For decision
    logs, exposure counters, probes.
``on_tick(world, log) -> InteractionLog or None``
    After the tick's views are collected, before the platform counts them and the
    recommender learns from them (``fit``). Returning a log replaces the tick's log for the
    platform: how fake engagement (bot accounts) enters the platform's data without any user
    having watched. Users' own records (minutes, day statistics) are never changed by it.
``on_day_end(world, day)``
    At midnight, when the day's statistics are complete and before the next day's counters start.

Observers must not change the world's arrays; they run in the order they were added.

Public objects
--------------
SubStep
    One sub-step's decisions and outcomes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SubStep"]


def _readonly(a: np.ndarray | None) -> np.ndarray | None:
    if a is None:
        return None
    v = a.view()
    v.flags.writeable = False
    return v


@dataclass(frozen=True)
class SubStep:
    """One view sub-step as observers see it.

    Attributes
    ----------
    tick, step, hour : int
        Clock: the tick, the draw counter of the sub-step, the hour of day.
    active_idx : int64 (n_act,)
        The users who viewed in this sub-step.
    out_item : int32 (n_act,)
        The item watched, -1 if none.
    out_minutes : float32 (n_act,)
        Minutes watched.
    out_slate : int32 (n_act, slate_size)
        The slate shown in rank order, -1 padded (all -1: none shown).
    scores : float32 (n_act, n_cand) or None
        The recommender's scores of :meth:`candidates`; None when the ranking ran inside
        the view kernel (``world.fused``: set it to False before the run to get scores).
    """

    tick: int
    step: int
    hour: int
    active_idx: np.ndarray
    out_item: np.ndarray
    out_minutes: np.ndarray
    out_slate: np.ndarray
    scores: np.ndarray | None
    _cand: np.ndarray | None = None
    _block_starts: np.ndarray | None = None
    _block_cand: np.ndarray | None = None

    @classmethod
    def make(cls, tick, step, hour, active_idx, out_item, out_minutes, out_slate, scores=None, cand=None,
             block_starts=None, block_cand=None):  # fmt: skip
        """Build a sub-step record with read-only views of the arrays."""
        ro = _readonly
        return cls(tick, step, hour, ro(active_idx), ro(out_item), ro(out_minutes), ro(out_slate), ro(scores),
                   ro(cand), block_starts, ro(block_cand))  # fmt: skip

    def candidates(self) -> np.ndarray:
        """Return the candidate items of every row: int32 (n_act, n_cand)."""
        if self._cand is not None:
            return self._cand
        return np.repeat(self._block_cand, np.diff(self._block_starts), axis=0)

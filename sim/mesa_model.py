"""A Mesa front end to the feed world: :class:`FeedModel` wraps :class:`sim.engine.FeedWorld`.

The world keeps its struct-of-arrays state and numba kernels; the Mesa model
adds the usual Mesa interface (``model.step()``, ``model.running``,
``model.datacollector``) so the simulator can be driven from Mesa tools
(batch runs, notebooks, visualisation) without an agent object per user.

Public objects
--------------
FeedModel
    ``mesa.Model`` that advances the feed world one tick per ``step()`` and
    collects per-tick model variables with a ``mesa.DataCollector``.
MODEL_REPORTERS
    Names of the collected model variables, in column order.
"""

from __future__ import annotations

import mesa
import numpy as np

from sim.engine import FeedWorld
from sim.kernels import layout as L
from sim.record import RunRecord
from sim.rng import spawn_generators
from sim.scenario import COHORTS, Scenario

__all__ = ["MODEL_REPORTERS", "FeedModel"]

MODEL_REPORTERS = (
    "tick",
    "day",
    "hour",
    "in_session",
    "views",
    "minutes_today_adult",
    "minutes_today_minor",
    "minutes_today_elderly",
)


class FeedModel(mesa.Model):
    """Mesa model of the feed world; one ``step()`` is one tick of :class:`FeedWorld`.

    Parameters
    ----------
    scenario : Scenario
        The validated scenario.
    replication : int, optional
        Replication index (selects the spawned seed), by default 0.
    recommender : object, optional
        A recommender instance; by default built from ``scenario.recommender``.

    Attributes
    ----------
    world : FeedWorld
        The wrapped world (its arrays are the state; there is no agent per user).
    datacollector : mesa.DataCollector
        Collects one row per ``step()`` with the columns in :data:`MODEL_REPORTERS`:
        ``tick`` (ticks completed), ``day`` and ``hour`` of the tick just run,
        ``in_session`` (users in a session at the end of the tick), ``views``
        (views computed in the tick), and ``minutes_today_<cohort>`` (mean
        minutes watched per user of the cohort so far on the tick's day; at a
        tick that ends a day, that day's total).
    running : bool
        False once the scenario's last tick has run.

    Notes
    -----
    The Mesa random generators (``model.rng``, ``model.random``) are seeded
    from a named child of the scenario seed but are not used by the world,
    whose draws come from :mod:`sim.rng` (counter-based in the kernels).
    """

    def __init__(self, scenario: Scenario, replication: int = 0, recommender=None):
        gen = spawn_generators(scenario.seed, ("mesa_model",), replication)["mesa_model"]
        super().__init__(rng=gen)
        self.scenario = scenario
        self.replication = replication
        self.world = FeedWorld(scenario, replication=replication, recommender=recommender)
        self.tick = 0
        self.day = 0
        self.hour = 0
        self.in_session = 0
        self.views = 0
        for name in COHORTS:
            setattr(self, f"minutes_today_{name}", 0.0)
        self._cohort_counts = np.bincount(self.world.users.cohort, minlength=len(COHORTS))
        self.datacollector = mesa.DataCollector(model_reporters={n: n for n in MODEL_REPORTERS})
        self.running = self.world.n_ticks > 0

    def step(self) -> None:
        """Advance the world by one tick and collect the model variables."""
        w = self.world
        tpd = w.ticks_per_day
        tick = w.tick
        steps_before = w.agent_steps
        w.step()
        self.tick = w.tick
        self.day = tick // tpd
        self.hour = int(((tick % tpd) * self.scenario.clock.tick_minutes) // 60)
        self.in_session = int(w.users.in_session_mask.sum())
        self.views = int(w.agent_steps - steps_before)
        if w.tick % tpd == 0 and self.day < w.user_days.shape[0]:
            minutes = w.user_days[self.day][:, L.MINUTES]  # the day just ended (counters reset)
        else:
            minutes = w.day_stats[:, L.MINUTES]
        sums = np.bincount(w.users.cohort, weights=minutes, minlength=len(COHORTS))
        means = sums / np.maximum(self._cohort_counts, 1)
        for c, name in enumerate(COHORTS):
            value = float(means[c]) if self._cohort_counts[c] else float("nan")
            setattr(self, f"minutes_today_{name}", value)
        self.datacollector.collect(self)
        if w.tick >= w.n_ticks:
            self.running = False

    def record(self) -> RunRecord:
        """Snapshot the world as a :class:`sim.record.RunRecord` (final once not ``running``).

        Returns
        -------
        RunRecord
            The run's record, as :func:`sim.engine.simulate` would return it.
        """
        return RunRecord.from_world(self.world)

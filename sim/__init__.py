"""recaudit simulation engine: the feed world, its kernels and pluggable algorithms.

The front door:

>>> from sim import load_scenario, simulate
>>> record = simulate(load_scenario("scenarios/baseline.toml").with_overrides(n_users=500, days=1))
>>> record.daily().head()  # doctest: +SKIP

Public objects
--------------
load_scenario, scenario_from_dict, Scenario, ScenarioError
    Scenario files (:mod:`sim.scenario`).
simulate, FeedWorld
    Run a scenario (:mod:`sim.engine`).
RunRecord
    The immutable result of a run that audits read (:mod:`sim.record`).
make_recommender
    Build a recommender from a name, ``module:Class`` or class (:mod:`sim.registry`).
"""

from sim.engine import FeedWorld, simulate
from sim.record import RunRecord
from sim.registry import make_recommender
from sim.scenario import Scenario, ScenarioError, load_scenario, scenario_from_dict

__all__ = [
    "FeedWorld",
    "RunRecord",
    "Scenario",
    "ScenarioError",
    "load_scenario",
    "make_recommender",
    "scenario_from_dict",
    "simulate",
]

"""Rigour of the audit's comparisons and intervals (issue 6).

1. A "do nothing" counterfactual (the audited algorithm on both sides, run separately) must give exactly zero
   for every paired difference, with the interval [0, 0]: anything else is a pairing bug (different random
   numbers, populations or orders on the two sides).
2. The intervals ``run_audit`` reports (``audits.audit._finding``: a paired bootstrap over users with one
   replication, a t-interval over replication estimates with several) must cover a known truth at about their
   nominal rate. The truth is the value of an audit estimator on a large simulated population; each trial draws
   a small sample of its users (the audit of a smaller platform in the same world) and asks the audit's own
   interval code for an interval. Users are independent given the world here (random and chronological feeds
   read no other user's data), so the sample estimates behave like audits of independent small populations.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from audits.audit import _finding, run_audit
from audits.catalogue import load_catalogue
from audits.metrics import Estimator, build_estimators
from sim.engine import simulate
from sim.scenario import load_scenario, read_toml, scenario_from_dict

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"


def _is_paired_difference(unit: str) -> bool:
    """Catalogue lines whose value is audited minus (or over) counterfactual, by their declared unit."""
    return "(difference)" in unit or "vs counterfactual" in unit


def _assert_exact_zero(result, expected_metrics: set[str]) -> None:
    diffs = [f for f in result.findings if _is_paired_difference(f.unit) and f.value is not None]
    assert expected_metrics <= {f.metric for f in diffs}, sorted({f.metric for f in diffs})
    for f in diffs:
        assert (f.value, f.ci_low, f.ci_high) == (0.0, 0.0, 0.0), f


# ---- 1. do-nothing counterfactuals --------------------------------------------------------------------------


def test_do_nothing_feed_is_exactly_zero():
    # the engagement feed against itself: a stateful learner with random exploration, run twice (the
    # counterfactual run is always separate); baseline's explicit exploration = 0.05 is the default
    sc = load_scenario(SCENARIOS / "baseline.toml").with_overrides(n_users=500, days=2)
    data = sc.model_dump()
    data["audit"]["counterfactual"] = data["recommender"]["kind"]
    res = run_audit(scenario_from_dict(data), replications=2, workers=1)
    assert res.counterfactual_records[0] is not res.records[0]
    np.testing.assert_array_equal(res.records[1].user_days, res.counterfactual_records[1].user_days)
    _assert_exact_zero(
        res,
        {"minutes_mean_uplift", "minutes_p90_uplift", "compulsive_share_increase", "regret_minutes_increase",
         "homogenisation_increase", "creator_gini_increase"},
    )  # fmt: skip


def test_do_nothing_market_is_exactly_zero():
    # the loyalty pricer against itself; explicit (default) params make the audit run the pricer-only
    # counterfactual as a separate run, so its pairing is tested too
    sc = load_scenario(SCENARIOS / "loyalty_pricing.toml").with_overrides(n_users=500, days=2)
    data = sc.model_dump()
    data["market"]["n_products"] = 100
    data["pricer"] = {"kind": "loyalty", "params": {"uplift": 0.15, "full_loyalty": 5.0}}
    data["audit"].update(counterfactual="engagement", counterfactual_pricer="loyalty")
    res = run_audit(scenario_from_dict(data), replications=1, workers=1)
    assert res.pricer_counterfactual_records[0] is not res.records[0]
    _assert_exact_zero(
        res, {"minutes_mean_uplift", "consumer_surplus_change", "over_budget_share_increase", "spend_uplift"}
    )
    # the shadow price is the same pricer's quote: no price difference of any kind
    by = {(f.metric, f.cohort): f for f in res.findings}
    for metric, truth in (("loyal_new_price_ratio", 1.0), ("device_price_ratio", 1.0),
                          ("trait_price_coefficient", 0.0), ("undisclosed_difference_share", 0.0),
                          ("overcharge_per_user_month", 0.0)):  # fmt: skip
        f = by[(metric, "all")]
        assert (f.value, f.ci_low, f.ci_high) == (truth, truth, truth), f


def test_do_nothing_fleet_with_feed_is_exactly_zero():
    # orders from the feed's purchases, so the audit runs a dispatcher-only counterfactual (explicit default
    # params make it separate) on top of the recommender and pricer counterfactuals
    sc = scenario_from_dict(
        {
            "seed": 5,
            "clock": {"days": 2},
            "population": {"n_users": 400},
            "catalogue": {"n_items": 500, "new_items_per_day": 20},
            "recommender": {"kind": "engagement"},
            "market": {"n_products": 100, "store_visits_per_day": 3.0},
            "pricer": {"kind": "uniform", "params": {"markup": None}},
            "fleet": {"n_workers": 30, "orders": "market", "delivery_share": 1.0},
            "dispatcher": {"kind": "strict", "params": {"percentile": 15.0}},
            "audit": {"counterfactual": "engagement", "counterfactual_pricer": "uniform",
                      "counterfactual_dispatcher": "strict", "replications": 2},
        }
    )  # fmt: skip
    res = run_audit(sc, workers=1)
    assert res.dispatcher_counterfactual_records[0] is not res.records[0]
    assert res.records[0].fleet.orders["created"].size > 0
    _assert_exact_zero(
        res,
        {"net_hourly_pay_change", "working_hours_change", "deadline_percentile_change", "minutes_mean_uplift",
         "consumer_surplus_change"},
    )  # fmt: skip


def test_do_nothing_fleet_alone_is_exactly_zero():
    data = read_toml(SCENARIOS / "rider_strict.toml")
    data["fleet"].update(n_workers=45, n_merchants=45, orders_per_day=data["fleet"]["orders_per_day"] * 0.15)
    data["clock"]["days"] = 2
    params = dict(data["dispatcher"].get("params", {}))
    data["dispatcher"] = {"kind": data["dispatcher"]["kind"], "params": params or {"percentile": 15.0}}
    data["audit"].update(counterfactual_dispatcher=data["dispatcher"]["kind"], replications=1)
    res = run_audit(scenario_from_dict(data), workers=1)
    _assert_exact_zero(res, {"net_hourly_pay_change", "working_hours_change", "deadline_percentile_change"})


# ---- 2. coverage of the audit's intervals ---------------------------------------------------------------------


def _population(n_users: int, seed: int = 11):
    """A large paired population: a random feed audited against a chronological one, one day, adults only."""
    data = {
        "seed": seed,
        "clock": {"days": 1},
        "population": {"n_users": n_users, "shares": {"adult": 1.0, "minor": 0.0, "elderly": 0.0}},
        "catalogue": {"n_items": 1000, "new_items_per_day": 50},
        "recommender": {"kind": "random"},
        "audit": {"counterfactual": "chronological", "bootstrap_samples": 400, "confidence": 0.95},
    }
    sc = scenario_from_dict(data)
    t = simulate(sc)
    c = simulate(sc.with_overrides(recommender_kind="chronological"))
    est = build_estimators(t, c, load_catalogue(), np.random.default_rng(0))
    return sc, est


def _coverage(sc, est, metric: str, n_sample: int, n_trials: int, reps: int, seed: int) -> tuple[float, float]:
    """Share of the audit's intervals (``_finding``) that contain the population value; returns (coverage, truth)."""
    cat = load_catalogue()
    spec = next(s for s in cat.metrics if s.metric == metric)
    full = est[(metric, "all")]
    truth = full.value()
    pool = np.flatnonzero(full.mask)
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(n_trials):
        # ``reps`` disjoint samples: the replications of one small audit (reps = 1: the bootstrap path)
        drawn = rng.choice(pool, size=reps * n_sample, replace=False).reshape(reps, n_sample)
        per_rep = []
        for rows in drawn:
            mask = np.zeros(full.mask.size, dtype=bool)
            mask[rows] = True
            per_rep.append({(metric, "all"): Estimator(mask, full.stat)})
        f = _finding(spec, "all", per_rep, reps, sc.audit.confidence, rng, sc, "test")
        hits += f.ci_low <= truth <= f.ci_high
    return hits / n_trials, truth


def _tolerance(n_trials: int, confidence: float) -> float:
    """Three binomial standard errors of a coverage estimate from ``n_trials`` trials at the nominal rate."""
    return 3.0 * math.sqrt(confidence * (1.0 - confidence) / n_trials)


@pytest.fixture(scope="module")
def population():
    return _population(20_000)


# 300 trials at 95%: SE = sqrt(0.95 * 0.05 / 300) = 0.0126, so the tolerance is 3 SE = 0.038 (a correct
# interval fails this check with probability about 0.003). Samples of 300 users from 20,000 overlap by about
# 4.5 users per pair of trials, so the trials are close to independent.
FAST_TRIALS = 300


@pytest.mark.parametrize("metric", ["minutes_per_day", "minutes_mean_uplift", "regret_minutes_increase"])
def test_bootstrap_interval_covers_at_nominal_rate(population, metric):
    sc, est = population
    cov, truth = _coverage(sc, est, metric, n_sample=300, n_trials=FAST_TRIALS, reps=1, seed=1)
    assert abs(cov - 0.95) <= _tolerance(FAST_TRIALS, 0.95), (metric, cov, truth)


@pytest.mark.parametrize("metric", ["minutes_per_day", "minutes_mean_uplift"])
def test_t_interval_over_replications_covers_at_nominal_rate(population, metric):
    # three replications of 300 users each: the t-interval with 2 degrees of freedom
    sc, est = population
    cov, truth = _coverage(sc, est, metric, n_sample=300, n_trials=FAST_TRIALS, reps=3, seed=2)
    assert abs(cov - 0.95) <= _tolerance(FAST_TRIALS, 0.95), (metric, cov, truth)


def test_coverage_check_detects_a_wrong_interval(population):
    # the check can fail: an interval of the wrong confidence (80% asked, 95% claimed) is caught
    sc, est = population
    narrow = sc.model_copy(update={"audit": sc.audit.model_copy(update={"confidence": 0.80})})
    cov, _ = _coverage(narrow, est, "minutes_per_day", n_sample=300, n_trials=FAST_TRIALS, reps=1, seed=3)
    assert abs(cov - 0.95) > _tolerance(FAST_TRIALS, 0.95), cov


@pytest.mark.slow
@pytest.mark.parametrize("reps", [1, 3])
def test_coverage_at_nominal_rate_large(reps):
    # 1,500 trials: SE = sqrt(0.95 * 0.05 / 1500) = 0.0056, tolerance 3 SE = 0.017
    sc, est = _population(60_000, seed=12)
    for metric in ("minutes_per_day", "minutes_mean_uplift", "regret_minutes_increase"):
        cov, truth = _coverage(sc, est, metric, n_sample=400, n_trials=1500, reps=reps, seed=4)
        assert abs(cov - 0.95) <= _tolerance(1500, 0.95), (metric, reps, cov, truth)

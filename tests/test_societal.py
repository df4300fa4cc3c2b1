"""Concentration of attention across creators (a societal measure, issue 6) and the shared Gini coefficient."""

import numpy as np
import pytest

from audits.audit import run_audit
from audits.inequality import gini
from sim.engine import simulate
from sim.scenario import scenario_from_dict


def test_gini_closed_forms():
    assert gini(np.full(50, 3.0)) == pytest.approx(0.0, abs=1e-12)  # all equal
    one = np.zeros(40)
    one[7] = 5.0
    assert gini(one) == pytest.approx(39 / 40)  # everything held by one of n: (n - 1) / n
    # two-point distribution: a share p of holders owns everything equally -> 1 - p
    x = np.r_[np.zeros(75), np.ones(25)]
    assert gini(x) == pytest.approx(0.75)
    assert np.isnan(gini(np.zeros(5))) and np.isnan(gini(np.zeros(0))) and np.isnan(gini(None))
    assert gini(np.array([-2.0, 0.0, 4.0])) == pytest.approx(gini(np.array([0.0, 0.0, 4.0])))  # negatives as 0


def _scenario(kind="engagement"):
    return scenario_from_dict(
        {"seed": 11, "clock": {"days": 1}, "population": {"n_users": 400},
         "catalogue": {"n_items": 600, "new_items_per_day": 30}, "recommender": {"kind": kind}}
    )  # fmt: skip


def test_creator_minutes_add_up_to_the_minutes_watched():
    rec = simulate(_scenario())
    assert rec.creator_minutes.shape == (600 // 20,)
    watched = rec.day_column("minutes").sum(dtype=np.float64)
    assert rec.creator_minutes.sum() == pytest.approx(watched, rel=1e-5)
    assert (rec.creator_minutes > 0).sum() > 10


def test_same_recommender_on_both_sides_gives_zero_creator_gini_increase():
    sc = _scenario(kind="chronological")  # the counterfactual itself
    res = run_audit(sc, replications=2, workers=1)
    f = {x.metric: x for x in res.findings if x.metric.startswith("creator_")}
    assert f["creator_gini_increase"].value == 0.0 and f["creator_gini_increase"].ci_high == 0.0
    assert 0.0 < f["creator_attention_gini"].value < 1.0


# -- polarisation (stances) and aggregate regret ---------------------------------------------------


def _stance_scenario(kind="engagement", share=0.4, days=4, n_users=1500):
    return scenario_from_dict(
        {"seed": 5, "clock": {"days": days}, "population": {"n_users": n_users},
         "catalogue": {"n_items": 1500, "new_items_per_day": 60, "stance_share": share, "stance_strength": 1.5},
         "recommender": {"kind": kind}}
    )  # fmt: skip


def test_without_stances_nothing_changes_and_the_findings_are_undefined():
    plain = scenario_from_dict({**_stance_scenario(days=1, n_users=300).model_dump(), "catalogue": {
        "n_items": 1500, "new_items_per_day": 60}})  # fmt: skip
    zero = _stance_scenario(share=0.0, days=1, n_users=300)
    a, b = simulate(plain), simulate(zero)
    assert a.user_days.tobytes() == b.user_days.tobytes()  # no stance draws at all
    res = run_audit(zero, replications=1, workers=1)
    f = {x.metric: x for x in res.findings}
    assert f["polarisation_increase"].verdict == "undefined" and "stance_share" in f["polarisation_increase"].note


def test_stance_items_lean_along_the_stance_axis_and_users_start_spread():
    from sim.engine import FeedWorld
    from sim.state import STANCE_AXIS, stances

    w = FeedWorld(_stance_scenario(days=1, n_users=2000))
    lean = np.abs(w.items.embedding[:, STANCE_AXIS])
    share = (lean > 0.2).mean()  # stance items lean by >= 0.5 * 1.5 before normalisation
    assert abs(share - 0.4) < 4 * np.sqrt(0.4 * 0.6 / lean.size)
    assert (lean[lean <= 0.2] == 0).all()  # the others are neutral on the issue
    s = stances(w.users.true_interest)
    assert 0.02 < s.var() < 0.2 and abs(s.mean()) < 4 * s.std() / np.sqrt(s.size)


def test_engagement_ranking_polarises_more_than_the_chronological_feed():
    res = run_audit(_stance_scenario(), replications=1, workers=1)
    f = {x.metric: x for x in res.findings}
    assert f["stance_polarisation_change"].value > 0.02  # users' stances spread out under engagement
    assert f["polarisation_increase"].ci_low > 0.0  # and more than under the chronological feed
    assert np.isfinite(f["aggregate_regret_hours_increase"].value)


def test_aggregate_regret_hours_are_the_paired_regret_scaled_to_a_million_users():
    res = run_audit(_stance_scenario(days=2, n_users=600), replications=1, workers=1)
    f = {(x.metric, x.cohort): x for x in res.findings}
    per_user = f[("regret_minutes_increase", "all")].value
    assert f[("aggregate_regret_hours_increase", "all")].value == pytest.approx(per_user * 1e6 / 60.0, rel=1e-9)

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

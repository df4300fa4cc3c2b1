"""The market's online quote summary (sim/market/summary.py) against the quote log it replaces.

The twin of the online fold is the whole log folded at once; the twin of the summary-based market
metrics is the same statistics computed row by row from the log (a design matrix for the regression).
"""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import numpy as np
import pytest

from audits.catalogue import load_catalogue
from audits.market_metrics import (
    check_definitions,
    market_definitions,
    market_estimators,
    trait_coefficients,
)
from audits.metrics import Estimator, cohort_masks
from sim.engine import FeedWorld, simulate
from sim.kernels.market import OUTCOME_PLATFORM
from sim.market.summary import LOYAL_MIN_PURCHASES_DEFAULT, PRICE_TOLERANCE_DEFAULT, QuoteSummary
from sim.memory import estimate_memory
from sim.scenario import load_scenario, scenario_from_dict


def _scenario(quote_log: bool, users: int = 800, days: int = 3, **market):
    sc = load_scenario("scenarios/loyalty_pricing.toml").with_overrides(n_users=users, days=days)
    d = sc.model_dump()
    d["market"].update(quote_log=quote_log, **market)
    return scenario_from_dict(d)


@pytest.fixture(scope="module")
def runs():
    kept = simulate(_scenario(True))
    summarised = simulate(_scenario(False))
    reference = simulate(_scenario(True).with_overrides(pricer_kind="uniform"))  # the pricer counterfactual
    return kept, summarised, reference


def test_the_online_fold_equals_one_fold_of_the_whole_log(runs):
    kept, summarised, _ = runs
    q = kept.market.quotes
    assert q["tick"].size > 2000
    whole = QuoteSummary.from_log(q, kept.n_users, kept.n_days, kept.scenario.ticks_per_day)
    for qs in (kept.market.summary, summarised.market.summary):  # folded tick by tick, with and without the log
        assert qs.n_total == q["tick"].size
        for name, v in whole.sums.items():
            assert np.array_equal(qs[name], v), name  # bit for bit: the same additions in the same order
        for name in ("segment_quoted_rel", "segment_quoted_n", "segment_paid_rel", "segment_paid_n",
                     "offers_by_day", "fraud_by_day"):  # fmt: skip
            np.testing.assert_allclose(getattr(qs, name), getattr(whole, name), rtol=1e-12, err_msg=name)
        for name, v in whole.minor_payments.items():
            assert np.array_equal(qs.minor_payments[name], v), name


def test_the_summary_sums_are_those_of_the_log(runs):
    kept, _, _ = runs
    q, qs, n = kept.market.quotes, kept.market.summary, kept.n_users
    u = q["user_idx"].astype(np.int64)
    rel = q["price"].astype(np.float64) / q["shadow_price"].astype(np.float64)
    plain = ~q["disclosed"]
    bought = q["outcome"] == OUTCOME_PLATFORM
    loyal = plain & (q["purchases_stock"] >= LOYAL_MIN_PURCHASES_DEFAULT) & (q["lifetime_purchases"] > 0)
    assert loyal.sum() > 100 and (plain & (q["lifetime_purchases"] == 0)).sum() > 10
    np.testing.assert_array_equal(qs["n_quotes"], np.bincount(u, minlength=n))
    np.testing.assert_array_equal(qs["n_loyal"], np.bincount(u[loyal], minlength=n))
    np.testing.assert_array_equal(qs["rel_loyal"], np.bincount(u[loyal], weights=rel[loyal], minlength=n))
    np.testing.assert_array_equal(qs["n_fraud"], np.bincount(u[q["fraud"]], minlength=n))
    np.testing.assert_array_equal(qs["surplus"], np.bincount(u, weights=q["surplus"], minlength=n))
    differs = bought & plain & (np.abs(rel - 1.0) > PRICE_TOLERANCE_DEFAULT)
    assert differs.sum() > 50
    np.testing.assert_array_equal(qs["n_differs"], np.bincount(u[differs], minlength=n))
    over = (q["price"].astype(np.float64) - q["shadow_price"].astype(np.float64))[bought]
    np.testing.assert_array_equal(qs["overcharge"], np.bincount(u[bought], weights=over, minlength=n))
    users = kept.users_frame()  # users.parquet carries the per-user sums
    np.testing.assert_array_equal(users["offers"], np.bincount(u, minlength=n))
    np.testing.assert_array_equal(users["purchases"], np.bincount(u[bought], minlength=n))
    np.testing.assert_array_equal(users["overcharge"], qs["overcharge"])
    # the figure tables: quotes per cohort and day add up to the quotes
    assert qs.offers_by_day.sum() == q["tick"].size and qs.segment_quoted_n.sum() == plain.sum()


def test_normal_equations_from_sums_equal_those_of_the_design_matrix(runs):
    kept, _, _ = runs
    q, qs, mk = kept.market.quotes, kept.market.summary, kept.market
    lm = LOYAL_MIN_PURCHASES_DEFAULT
    log_income = np.log(mk.income_month.astype(np.float64))
    z = (log_income - log_income.mean()) / log_income.std()
    plain = ~q["disclosed"]
    u = q["user_idx"].astype(np.int64)[plain]
    x = np.column_stack([np.ones(u.size), np.minimum(q["purchases_stock"][plain].astype(np.float64), 2 * lm) / lm,
                         (q["lifetime_purchases"][plain] == 0).astype(np.float64), (mk.device[u] == 1).astype(float),
                         (kept.cohort[u] == 1).astype(float), (kept.cohort[u] == 2).astype(float), z[u]])  # fmt: skip
    y = np.log(q["price"][plain].astype(np.float64) / q["shadow_price"][plain].astype(np.float64))
    rng = np.random.default_rng(3)
    for idx in (np.arange(kept.n_users), rng.integers(0, kept.n_users, kept.n_users)):  # all; a bootstrap resample
        w = np.bincount(idx, minlength=kept.n_users)[u].astype(np.float64)  # each quote counts once per draw
        xtx, xty = qs.normal_equations(idx, mk.device.astype(np.int64), kept.cohort.astype(np.int64), z)
        np.testing.assert_allclose(xtx, x.T @ (x * w[:, None]), rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(xty, x.T @ (y * w), rtol=1e-9, atol=1e-9)
    beta = trait_coefficients(*qs.normal_equations(np.arange(kept.n_users), mk.device.astype(np.int64),
                                                   kept.cohort.astype(np.int64), z))  # fmt: skip
    np.testing.assert_allclose(beta, np.linalg.lstsq(x, y, rcond=None)[0][1:], rtol=1e-6, atol=1e-9)


def test_market_metrics_from_the_summary_equal_those_from_the_log(runs):
    kept, _, reference = runs
    cat = load_catalogue()
    est = market_estimators(kept, reference, reference, cat, cohort_masks(kept), Estimator)
    q, n = kept.market.quotes, kept.n_users
    u = q["user_idx"].astype(np.int64)
    rel = q["price"].astype(np.float64) / q["shadow_price"].astype(np.float64)
    plain, bought = ~q["disclosed"], q["outcome"] == OUTCOME_PLATFORM
    loyal = plain & (q["purchases_stock"] >= 3.0) & (q["lifetime_purchases"] > 0)
    new = plain & (q["lifetime_purchases"] == 0)
    want = rel[loyal].mean() / rel[new].mean()
    assert est[("loyal_new_price_ratio", "all")].value() == pytest.approx(want, rel=1e-12)
    assert want > 1.05  # the loyalty pricer charges regulars more
    ios = plain & (kept.market.device[u] == 1)
    android = plain & (kept.market.device[u] == 0)
    want = rel[ios].mean() / rel[android].mean()
    assert est[("device_price_ratio", "all")].value() == pytest.approx(want, rel=1e-12)
    months = kept.n_days / 30.0
    over = np.bincount(u[bought], weights=(q["price"].astype(np.float64) - q["shadow_price"])[bought], minlength=n)
    want = (over / months).mean()
    assert est[("overcharge_per_user_month", "all")].value() == pytest.approx(want, rel=1e-12)
    pay_cap, _ = cat.payment_caps(kept.age)
    minor_buy = bought & (q["cohort"] == 1)
    want = (minor_buy & (q["price"] > pay_cap[u] + 1e-6)).sum() / minor_buy.sum()
    assert est[("payments_over_cap_share", "minor")].value() == pytest.approx(want, rel=1e-12)
    elderly, adult = kept.cohort[u] == 2, kept.cohort[u] == 0
    want = q["fraud"][elderly].mean() / q["fraud"][adult].mean()
    assert est[("fraud_exposure_ratio", "elderly")].value() == pytest.approx(want, rel=1e-12)


def test_without_the_quote_log_the_run_is_the_same_and_keeps_no_rows(runs):
    kept, summarised, _ = runs
    assert summarised.market.quotes is None and kept.market.quotes is not None
    assert np.array_equal(kept.user_days, summarised.user_days)
    assert np.array_equal(kept.market.month_spend, summarised.market.month_spend)
    with pytest.raises(ValueError, match="quote_log = true"):
        summarised.market.quotes_frame()
    w = FeedWorld(_scenario(False, users=300, days=1))
    for _ in range(w.scenario.ticks_per_day // 2):
        w.step()
    assert w.market.n_quotes > 0 and not w.market._log  # nothing held, nothing allocated
    with pytest.raises(ValueError, match="quote_log = true"):
        w.market.quotes_from(0)


def test_the_memory_estimate_counts_the_log_only_when_kept():
    big_kept = estimate_memory(_scenario(True, users=1_000_000, days=30))
    big = estimate_memory(_scenario(False, users=1_000_000, days=30))
    assert big_kept["quote log (x1)"] > 5e9  # ~2 quotes a user-day at 90-190 B
    assert big["quote log (x1)"] == 0 and big["quote summary (x1)"] == 1_000_000 * QuoteSummary.bytes_per_user()
    assert big["total"] < big_kept["total"] - 5e9


def test_defaults_are_the_catalogues_and_other_definitions_are_refused(runs):
    defs = tomllib.loads(Path("audits/thresholds.toml").read_text())["definitions"]
    assert defs["loyal_min_purchases"] == LOYAL_MIN_PURCHASES_DEFAULT
    assert defs["price_tolerance"] == PRICE_TOLERANCE_DEFAULT
    kept, _, reference = runs
    cat = load_catalogue()
    assert market_definitions(cat) == {"loyal_min_purchases": 3.0, "price_tolerance": 0.005}
    check_definitions(cat, kept, reference)
    stricter = dataclasses.replace(cat, definitions={**cat.definitions, "loyal_min_purchases": 5.0})
    with pytest.raises(ValueError, match="market_definitions"):
        check_definitions(stricter, kept)
    # folded with the stricter definition, fewer quotes count as loyal
    sc = _scenario(False, users=300, days=2)
    a = simulate(sc).market.summary
    b = simulate(sc, market_definitions=market_definitions(stricter)).market.summary
    assert b.loyal_min_purchases == 5.0 and b["n_loyal"].sum() < a["n_loyal"].sum()
    with pytest.raises(ValueError, match="loyal_min_purchases"):
        QuoteSummary(10, 1, 96, loyal_min_purchases=0.0)


def test_a_record_taken_mid_run_keeps_its_own_summary():
    from sim.record import RunRecord

    w = FeedWorld(_scenario(False, users=400, days=2, minor_in_app_appeal=6.0, store_visits_per_day=10.0))
    while w.tick < w.ticks_per_day:
        w.step()
    rec = RunRecord.from_world(w)  # copy=True: the world goes on
    qs = rec.market.summary
    n_total, sums, minors = qs.n_total, {k: v.copy() for k, v in qs.sums.items()}, qs.minor_payments["price"].size
    while w.tick < w.n_ticks:
        w.step()
    assert w.market.summary.n_total > n_total == qs.n_total
    assert all(np.array_equal(qs[k], v) for k, v in sums.items())
    assert qs.minor_payments["price"].size == minors == qs["n_bought"][rec.cohort == 1].sum() > 0

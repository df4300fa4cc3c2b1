"""Pricers: conformance of the built-ins, rejection of bad plugins, and market properties."""

import copy
import importlib
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sim.registry as registry
from sim import scenario_from_dict, simulate
from sim.builtin.pricers import (
    BASE_PRICERS,
    CompliantPricer,
    DevicePricer,
    LoyaltyPricer,
    NewCustomerDiscount,
    PersonalisedPricer,
    UniformPricer,
)
from sim.kernels.market import OUTCOME_NONE, OUTCOME_OUTSIDE, OUTCOME_PLATFORM
from sim.market.state import DAYS_PER_MONTH
from sim.market.view import MarketView
from sim.platform import PluginError
from sim.registry import make_pricer
from sim.scenario import PricerSettings
from sim.testing import PRICER_CHECKS, check_pricer, make_check_market

# -- bad plugins: one module, used in-process (check_pricer, simulate) and by the CLI ------------

PLUGIN_MODULE = "recaudit_test_pricers"
PLUGIN_SOURCE = textwrap.dedent(
    '''
    import numpy as np


    class Good:
        def fit(self, view, log):
            return self

        def quote(self, user_idx, product_idx, view):
            return view.product_list_price[product_idx].astype(np.float32)


    class WrongShape(Good):
        def quote(self, user_idx, product_idx, view):
            return np.ones(len(user_idx) + 1, dtype=np.float32)


    class NanPrices(Good):
        def quote(self, user_idx, product_idx, view):
            return np.full(len(user_idx), np.nan, dtype=np.float32)


    class NegativePrices(Good):
        def quote(self, user_idx, product_idx, view):
            return -view.product_list_price[product_idx].astype(np.float32)


    class ListPrices(Good):
        def quote(self, user_idx, product_idx, view):
            return [float(p) for p in view.product_list_price[product_idx]]


    class BadMask(Good):
        def quote(self, user_idx, product_idx, view):
            return view.product_list_price[product_idx].astype(np.float32), np.zeros(len(user_idx), dtype=np.int8)


    class NoQuote:
        def fit(self, view, log):
            return self


    class ReadsTruth(Good):
        def quote(self, user_idx, product_idx, view):
            return view.true_income_month[user_idx].astype(np.float32)


    class WritesView(Good):
        def quote(self, user_idx, product_idx, view):
            view.product_list_price[product_idx] *= 2.0
            return view.product_list_price[product_idx].astype(np.float32)


    class Sneaky(Good):
        """Makes a view array writable again and changes it."""

        def quote(self, user_idx, product_idx, view):
            lp = view.product_list_price
            lp.flags.writeable = True
            lp[product_idx] += 1.0
            return lp[product_idx].astype(np.float32)


    class RewritesLog(Good):
        """Rewrites the quotes it learns from."""

        def fit(self, view, log):
            if log.price.size:
                log.price[:] = 12345.0
            return self


    class Unseeded(Good):
        def quote(self, user_idx, product_idx, view):
            lp = view.product_list_price[product_idx].astype(np.float64)
            return (lp * np.random.default_rng().uniform(0.9, 1.1, len(lp))).astype(np.float32)


    class FitNotSelf(Good):
        def fit(self, view, log):
            return None


    class OrderDependent(Good):
        """The first pair of each batch pays double."""

        def quote(self, user_idx, product_idx, view):
            price = view.product_list_price[product_idx].astype(np.float32)
            price[:1] *= 2.0
            return price


    class Strict(Good):
        def __init__(self, markup=0.2):
            if markup < 0:
                raise ValueError("markup must be >= 0")
            self.markup = markup
    '''
)

# case -> (kind, params, substring of the message); the kind is a class of the plugin module or a name
BAD = {
    "wrong_shape": ("WrongShape", {}, "returned shape"),
    "nan_prices": ("NanPrices", {}, "NaN or infinite"),
    "negative_prices": ("NegativePrices", {}, "price <= 0"),
    "list_not_array": ("ListPrices", {}, "returned list, not a numpy array"),
    "bad_disclosed_mask": ("BadMask", {}, "disclosed mask"),
    "missing_quote": ("NoQuote", {}, "has no quote() method"),
    "reads_ground_truth": ("ReadsTruth", {}, "ground truth"),
    "writes_view": ("WritesView", {}, "read-only"),
    "unknown_kind": ("no_such_pricer", {}, "is unknown; choose one of uniform, personalised, loyalty"),
    "bad_params": ("Strict", {"markup": -1.0}, "bad params"),
    "unexpected_param": ("Strict", {"margin": 0.1}, "bad params"),
}
CLI_CASES = ["wrong_shape", "nan_prices", "list_not_array", "bad_disclosed_mask", "missing_quote", "unknown_kind",
             "bad_params"]  # fmt: skip


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("plugins")
    (path / f"{PLUGIN_MODULE}.py").write_text(PLUGIN_SOURCE)
    return path


@pytest.fixture
def plugins(plugin_dir, monkeypatch):
    monkeypatch.syspath_prepend(str(plugin_dir))
    monkeypatch.delitem(sys.modules, PLUGIN_MODULE, raising=False)
    return importlib.import_module(PLUGIN_MODULE)


def _kind(case: str) -> str:
    kind = BAD[case][0]
    return kind if kind == "no_such_pricer" else f"{PLUGIN_MODULE}:{kind}"


def _label(case: str) -> str:
    """What the message must name: the plugin's class (or the unknown name)."""
    return BAD[case][0]


def _tiny(pricer_kind: str = "uniform", params: dict | None = None, **market) -> dict:
    return {
        "seed": 5,
        "clock": {"days": 1},
        "population": {"n_users": 200},
        "catalogue": {"n_items": 300, "new_items_per_day": 20},
        "recommender": {"kind": "content", "n_candidates": 50},
        "market": {"store_visits_per_day": 2.0, "quote_log": True, **market},
        "pricer": {"kind": pricer_kind, "params": params or {}},
    }


# -- conformance -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(BASE_PRICERS))
def test_builtin_passes_check_pricer(kind):
    assert check_pricer(BASE_PRICERS[kind]()) == list(PRICER_CHECKS)


@pytest.mark.parametrize("segment_by", PersonalisedPricer.SEGMENTS)
def test_personalised_segments_pass_check_pricer(segment_by):
    settings_ = PricerSettings(kind="personalised", params={"segment_by": segment_by})
    assert check_pricer(settings_) == list(PRICER_CHECKS)


def test_check_pricer_accepts_names_and_classes_and_leaves_instances_alone():
    assert check_pricer("compliant") == list(PRICER_CHECKS)
    assert check_pricer(LoyaltyPricer) == list(PRICER_CHECKS)
    p = PersonalisedPricer(segment_by="cohort")
    check_pricer(p)
    assert p._ratios == {}  # checked on deep copies


def test_market_view_is_read_only_and_hides_truth():
    view = make_check_market(ticks=1).market.view
    with pytest.raises(ValueError, match="read-only"):
        view.product_list_price[0] = 1.0
    with pytest.raises(AttributeError):
        view.tick = 3
    with pytest.raises(AttributeError, match="ground truth"):
        view.true_budget_month  # noqa: B018


# -- bad plugins -------------------------------------------------------------------------------


def _settings(case: str) -> PricerSettings:
    return PricerSettings(kind=_kind(case), params=BAD[case][1])


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_plugin_rejected_by_check_pricer(plugins, case):
    expected = BAD[case][2]
    with pytest.raises(PluginError) as info:
        check_pricer(_settings(case))
    msg = str(info.value)
    assert _label(case) in msg and expected in msg, msg
    assert "\n" not in msg
    if case not in ("unknown_kind", "bad_params", "unexpected_param"):  # instances too
        with pytest.raises(PluginError) as info:
            check_pricer(getattr(plugins, BAD[case][0])())
        assert f"pricer '{_label(case)}'" in str(info.value) and expected in str(info.value)


@pytest.mark.parametrize(
    "cls, check",
    [
        ("Sneaky", "check_no_view_writes"),
        ("RewritesLog", "check_no_view_writes"),
        ("WritesView", "check_no_view_writes"),
        ("ReadsTruth", "check_no_ground_truth"),
        ("Unseeded", "check_deterministic"),
        ("FitNotSelf", "check_fit_returns_self"),
        ("OrderDependent", "check_batch_order"),
        ("WrongShape", "check_quote_output"),
    ],
)
def test_check_pricer_names_the_failed_check(plugins, cls, check):
    with pytest.raises(PluginError, match=check) as info:
        check_pricer(getattr(plugins, cls)())
    assert f"pricer '{cls}'" in str(info.value) and "fix:" in str(info.value)


def test_good_plugin_passes(plugins):
    assert check_pricer(plugins.Good()) == list(PRICER_CHECKS)


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_plugin_rejected_by_the_world(plugins, case):
    kind, params, expected = BAD[case]
    if case in ("unknown_kind", "bad_params", "unexpected_param"):  # named in the scenario
        sc, pricer = scenario_from_dict(_tiny(_kind(case), params)), None
    else:  # an instance passed to simulate
        sc, pricer = scenario_from_dict(_tiny()), getattr(plugins, kind)()
    with pytest.raises(PluginError) as info:
        simulate(sc, pricer=pricer)
    msg = str(info.value)
    assert f"'{_label(case)}" in msg or f":{_label(case)}'" in msg, msg
    assert expected in msg and "\n" not in msg, msg


def test_fit_error_is_reported_as_the_plugins(plugins):
    class FitRaises(plugins.Good):
        def fit(self, view, log):
            raise RuntimeError("boom")

    with pytest.raises(PluginError, match="FitRaises"):
        simulate(scenario_from_dict(_tiny()), pricer=FitRaises())


def test_fit_cannot_rewrite_the_quote_log(plugins):
    try:
        record = simulate(scenario_from_dict(_tiny()), pricer=plugins.RewritesLog())
    except (PluginError, ValueError):  # refused (read-only log): what should happen
        return
    assert record.market.quotes["price"].size > 0
    assert not np.any(record.market.quotes["price"] == 12345.0), "a pricer's fit() rewrote the audited quote log"


@pytest.mark.parametrize("case", CLI_CASES)
def test_bad_plugin_cli_exit_2(plugin_dir, tmp_path, case):
    params = "".join(f"{k} = {v}\n" for k, v in BAD[case][1].items())
    path = tmp_path / f"{case}.toml"
    path.write_text(
        "seed = 5\n[clock]\ndays = 1\n[population]\nn_users = 200\n[market]\nstore_visits_per_day = 2.0\n"
        f'[pricer]\nkind = "{_kind(case)}"\n' + (f"[pricer.params]\n{params}" if params else "")
    )
    proc = subprocess.run(
        [sys.executable, "-m", "sim.cli", "run", str(path), "--out", str(tmp_path / "out"), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(plugin_dir)},
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("recaudit: error: ") and "pricer" in lines[0]
    assert _label(case) in lines[0] and BAD[case][2] in lines[0], lines[0]
    assert not (tmp_path / "out" / "metrics.parquet").exists()


# -- entry points -------------------------------------------------------------------------------


class MyPricer(UniformPricer):
    """An installed plugin: list price plus a fixed fee."""

    def __init__(self, fee: float = 1.0):
        super().__init__()
        self.fee = fee

    def quote(self, user_idx, product_idx, view):
        return (view.product_list_price[product_idx] + np.float32(self.fee)).astype(np.float32)


class _EP:
    def __init__(self, name, obj):
        self.name, self._obj = name, obj

    def load(self):
        if isinstance(self._obj, Exception):
            raise self._obj
        return self._obj


def test_entry_point_by_name(monkeypatch):
    monkeypatch.setattr(registry, "_pricer_entry_points", lambda: {"feeplus": _EP("feeplus", MyPricer)})
    assert "feeplus" in registry.available_pricers()
    assert registry.available_pricers()[: len(BASE_PRICERS)] == list(BASE_PRICERS)
    assert registry.resolve_pricer_class("feeplus") is MyPricer
    p = make_pricer(PricerSettings(kind="feeplus", params={"fee": 2.5}))
    assert isinstance(p, MyPricer) and p.fee == 2.5
    assert check_pricer("feeplus") == list(PRICER_CHECKS)
    record = simulate(scenario_from_dict(_tiny("feeplus", {"fee": 2.5})))
    q = record.market.quotes
    assert record.market.pricer == "feeplus" and record.market.pricer_params == {"fee": 2.5}
    assert q["price"].size > 0
    np.testing.assert_allclose(q["price"], q["list_price"] + 2.5, rtol=1e-6)
    np.testing.assert_allclose(q["shadow_price"], q["list_price"])  # the reference pricer is uniform


def test_entry_point_that_fails_to_load(monkeypatch):
    monkeypatch.setattr(registry, "_pricer_entry_points", lambda: {"broken": _EP("broken", ImportError("no numpy"))})
    with pytest.warns(UserWarning, match="broken"), pytest.raises(PluginError, match="broken.*failed to load"):
        make_pricer("broken")


def test_builtin_names_shadow_entry_points(monkeypatch):
    monkeypatch.setattr(registry, "_pricer_entry_points", lambda: {"uniform": _EP("uniform", MyPricer)})
    assert registry.available_pricers().count("uniform") == 1
    assert registry.resolve_pricer_class("uniform") is UniformPricer


def test_unknown_name_lists_choices(monkeypatch):
    monkeypatch.setattr(registry, "_pricer_entry_points", lambda: {"feeplus": _EP("feeplus", MyPricer)})
    with pytest.raises(PluginError) as info:
        make_pricer("nope")
    for name in [*BASE_PRICERS, "feeplus", "module:Class"]:
        assert name in str(info.value)


# -- property: twins who differ only in a trait that carries no cost pay the same ----------------

TWIN_TRAITS = ("device", "purchases_stock", "lifetime_purchases", "cohort")


def _twin_prices(pricer, trait: str, cost: float, markup: float, wtp: float, promo: bool, a, b) -> np.ndarray:
    """Quote one product to two users identical but for ``trait`` (values ``a`` and ``b``)."""
    users = {
        "user_age": np.array([30, 30], np.int16),
        "user_cohort": np.zeros(2, np.int8),
        "user_device": np.zeros(2, np.int8),
        "user_promo_opt_in_mask": np.array([promo, promo]),
        "user_purchases_stock": np.full(2, 3.0, np.float32),
        "user_lifetime_purchases": np.full(2, 4, np.int32),
        "user_platform_spend_month": np.full(2, 20.0, np.float32),
        "user_hat": np.zeros((2, 4), np.float32),
    }
    if trait == "cohort":  # the declared age cohort, with an age to match
        ages = {0: 30, 1: 15, 2: 70}
        users["user_cohort"] = np.array([a, b], np.int8)
        users["user_age"] = np.array([ages[a], ages[b]], np.int16)
    else:
        key = f"user_{trait}"
        users[key] = np.array([a, b], dtype=users[key].dtype)
    view = MarketView(
        tick=0, day=0, hour=12, key=1, n_users=2, n_products=1,
        product_cost=np.array([cost], np.float32), product_list_price=np.array([cost * (1 + markup)], np.float32),
        product_commission=np.array([0.1], np.float32), product_category=np.zeros(1, np.int32),
        product_fraud_hat_mask=np.zeros(1, bool), product_in_app_mask=np.zeros(1, bool),
        quote_wtp_hat=np.array([wtp, wtp]), **users,
    )  # fmt: skip
    user_idx, product_idx = np.arange(2, dtype=np.int64), np.zeros(2, np.int32)
    out = copy.deepcopy(pricer).quote(user_idx, product_idx, view)
    return out[0] if isinstance(out, tuple) else out


def _trait_values(trait: str):
    return {
        "device": st.tuples(st.just(0), st.just(1)),
        "purchases_stock": st.tuples(st.floats(0, 50, width=32), st.floats(0, 50, width=32)),
        "lifetime_purchases": st.tuples(st.integers(0, 500), st.integers(0, 500)),
        "cohort": st.tuples(st.sampled_from([0, 1, 2]), st.sampled_from([0, 1, 2])),
    }[trait]


@st.composite
def _twins(draw):
    trait = draw(st.sampled_from(TWIN_TRAITS))
    a, b = draw(_trait_values(trait))
    return dict(
        trait=trait,
        a=a,
        b=b,
        cost=draw(st.floats(0.5, 5000.0)),
        markup=draw(st.floats(0.0, 3.0)),
        wtp=draw(st.floats(0.1, 20000.0)),
        promo=draw(st.booleans()),
    )


@pytest.mark.parametrize(
    "pricer", [UniformPricer(), UniformPricer(markup=0.5), CompliantPricer(), CompliantPricer(promo_discount=0.3)]
)
@settings(max_examples=60, deadline=None)
@given(twins=_twins())
def test_compliant_pricers_price_twins_alike(pricer, twins):
    prices = _twin_prices(pricer, **twins)
    assert prices[0] == prices[1], (twins, prices)


@pytest.mark.parametrize(
    "pricer, trait, a, b",
    [
        (LoyaltyPricer(), "purchases_stock", 0.0, 5.0),
        (DevicePricer(), "device", 0, 1),
        (NewCustomerDiscount(), "lifetime_purchases", 0, 3),
    ],
)
def test_discriminating_pricers_fail_the_twin_property(pricer, trait, a, b):
    prices = _twin_prices(pricer, trait, cost=30.0, markup=0.3, wtp=50.0, promo=False, a=a, b=b)
    assert prices[0] != prices[1]
    with pytest.raises(AssertionError):  # the property test above would catch it
        test_compliant_pricers_price_twins_alike.hypothesis.inner_test(
            pricer, dict(trait=trait, a=a, b=b, cost=30.0, markup=0.3, wtp=50.0, promo=False)
        )


# -- property: minors' payment caps (NPPA 2019) -------------------------------------------------------


def _minors_scenario(minors_mode: bool, days: int = 3):
    data = {
        "seed": 3,
        "clock": {"days": days},
        "population": {"n_users": 600, "shares": {"adult": 0.4, "minor": 0.5, "elderly": 0.1}},
        "catalogue": {"n_items": 400, "new_items_per_day": 20},
        "recommender": {"kind": "content", "n_candidates": 50},
        "market": {"minor_in_app_appeal": 6.0, "store_visits_per_day": 10.0, "in_app_share": 0.5, "quote_log": True},
        "pricer": {"kind": "uniform", "params": {"markup": 0.5}},  # above the list price (markup 0.3)
    }
    if minors_mode:
        data["recommender"]["minors_mode"] = {}
    return scenario_from_dict(data)


@pytest.fixture(scope="module")
def minors_runs():
    return {mm: simulate(_minors_scenario(mm)) for mm in (True, False)}


def _caps(record):
    """Per-user payment and monthly caps of the NPPA 2019 notice (inf for adults and the elderly)."""
    minor = record.cohort == 1
    pay = np.where(minor, np.where(record.age < 16, 50.0, 100.0), np.inf)
    month = np.where(minor, np.where(record.age < 16, 200.0, 400.0), np.inf)
    return minor, pay, month


def test_minors_payments_within_caps_in_minors_mode(minors_runs):
    rec = minors_runs[True]
    q, mk = rec.market.quotes, rec.market
    minor, pay_cap, month_cap = _caps(rec)
    assert minor.sum() > 200
    np.testing.assert_array_equal(mk.payment_cap, pay_cap.astype(np.float32))
    np.testing.assert_array_equal(mk.monthly_cap, month_cap.astype(np.float32))
    u = q["user_idx"]
    bought = (q["outcome"] == OUTCOME_PLATFORM) & minor[u]
    assert bought.sum() > 50
    assert np.all(q["paid"][bought] <= pay_cap[u[bought]])
    spend = np.bincount(u[bought], weights=q["paid"][bought].astype(np.float64), minlength=rec.n_users)
    assert np.all(spend[minor] <= month_cap[minor] * (1 + 1e-6))
    assert np.all(mk.month_platform_spend[0][minor] <= month_cap[minor] * (1 + 1e-6))
    # the caps bind: both kinds of refusal happen, and only for minors
    blocked = q["blocked"]
    assert not blocked[~minor[u]].any()
    assert blocked.any() and np.all(q["outcome"][blocked] == OUTCOME_NONE) and np.all(q["paid"][blocked] == 0)
    over_payment_cap = q["price"] > pay_cap[u]
    assert (blocked & over_payment_cap).sum() > 20
    assert (blocked & ~over_payment_cap).sum() > 5  # refused by the monthly cap alone
    assert (mk.month_platform_spend[0][minor] > 0.9 * month_cap[minor]).sum() > 5


def test_minors_payments_exceed_caps_without_minors_mode(minors_runs):
    rec = minors_runs[False]
    q, mk = rec.market.quotes, rec.market
    minor, pay_cap, month_cap = _caps(rec)
    assert np.all(np.isinf(mk.payment_cap)) and np.all(np.isinf(mk.monthly_cap))
    assert not q["blocked"].any()
    u = q["user_idx"]
    bought = (q["outcome"] == OUTCOME_PLATFORM) & minor[u]
    assert (q["paid"][bought] > pay_cap[u[bought]]).sum() > 20
    assert (mk.month_platform_spend[0][minor] > month_cap[minor]).sum() > 5


# -- property: money is conserved -----------------------------------------------------------------


def _check_money(rec):
    q, mk = rec.market.quotes, rec.market
    m = mk.money
    paid = q["paid"].astype(np.float64)
    platform = q["outcome"] == OUTCOME_PLATFORM
    outside = q["outcome"] == OUTCOME_OUTSIDE
    com = q["commission"].astype(np.float64)
    assert platform.sum() > 0
    assert m["user_paid_platform"] == pytest.approx(m["platform_revenue"] + m["seller_revenue"], rel=1e-12)
    assert paid[platform].sum() == pytest.approx(m["user_paid_platform"], rel=1e-9)
    assert (paid * com)[platform].sum() == pytest.approx(m["platform_revenue"], rel=1e-9)
    assert (paid * (1 - com))[platform].sum() == pytest.approx(m["seller_revenue"], rel=1e-9)
    assert paid[outside].sum() == pytest.approx(m["outside_spend"], rel=1e-9)
    honest = platform & ~q["fraud"]
    assert q["cost"][honest].astype(np.float64).sum() == pytest.approx(m["seller_cost"], rel=1e-6)
    # a platform purchase pays the quoted price; no purchase pays nothing
    np.testing.assert_array_equal(q["paid"][platform], q["price"][platform])
    assert np.all(q["paid"][q["outcome"] == OUTCOME_NONE] == 0)
    assert np.all(q["paid"] >= 0)
    # the quote log's spend is the month counters' spend, per user and month
    month = (q["tick"] // rec.scenario.ticks_per_day) // DAYS_PER_MONTH
    n = rec.n_users
    for mo in range(mk.month_spend.shape[0]):
        here = month == mo
        spent = np.bincount(q["user_idx"][here], weights=paid[here], minlength=n)
        on_platform = np.bincount(q["user_idx"][here & platform], weights=paid[here & platform], minlength=n)
        np.testing.assert_allclose(mk.month_spend[mo], spent, rtol=1e-5, atol=1e-3)
        np.testing.assert_allclose(mk.month_platform_spend[mo], on_platform, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("minors_mode", [True, False])
def test_money_is_conserved(minors_runs, minors_mode):
    _check_money(minors_runs[minors_mode])


def test_money_is_conserved_across_a_month_boundary():
    sc = scenario_from_dict(
        {
            "seed": 11,
            "clock": {"days": DAYS_PER_MONTH + 1, "tick_minutes": 60},
            "population": {"n_users": 60},
            "catalogue": {"n_items": 200, "new_items_per_day": 10},
            "recommender": {"kind": "content", "n_candidates": 50},
            "market": {"store_visits_per_day": 1.0, "fraud_share": 0.2, "outside_markup": 0.05, "quote_log": True},
            "pricer": {"kind": "loyalty", "params": {"uplift": 0.3}},  # regulars may buy elsewhere
        }
    )
    rec = simulate(sc)
    assert rec.market.month_spend.shape == (2, 60) and rec.market.month_spend[1].sum() > 0
    assert (rec.market.quotes["outcome"] == OUTCOME_OUTSIDE).any()
    _check_money(rec)

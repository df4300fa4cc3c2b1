"""Art. 20 audits: strict dispatch fails, fair dispatch passes, a do-nothing counterfactual is exactly zero,
the CLI writes the fleet's tables and report section, and market purchases become deliveries."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from audits.audit import article_verdicts, articles_in_scope, run_audit
from audits.report import render_html
from sim.engine import simulate
from sim.scenario import read_toml, scenario_from_dict

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"


def _shipped(name: str, scale: float = 0.25, reps: int = 2, **overrides) -> dict:
    """A shipped rider scenario with its fleet and demand scaled down together (same orders per courier)."""
    data = read_toml(SCENARIOS / f"{name}.toml")
    data["fleet"]["n_workers"] = int(data["fleet"]["n_workers"] * scale)
    data["fleet"]["n_merchants"] = int(data["fleet"]["n_merchants"] * scale)
    data["fleet"]["orders_per_day"] = data["fleet"]["orders_per_day"] * scale
    data["audit"]["replications"] = reps
    for k, v in overrides.items():
        data[k] = {**data.get(k, {}), **v}
    return data


def _by_metric(findings):
    return {f.metric: f for f in findings if f.article == 20}


@pytest.fixture(scope="module")
def strict_result():
    return run_audit(scenario_from_dict(_shipped("rider_strict", reps=3)))


@pytest.fixture(scope="module")
def fair_result():
    return run_audit(scenario_from_dict(_shipped("rider_fair", reps=3)))


def test_strict_dispatch_fails_art20(strict_result):
    assert article_verdicts(strict_result.findings)[20] == "fail"
    f = _by_metric(strict_result.findings)
    for metric in ("net_hourly_pay_to_min_wage", "over_8h_day_share", "stretch_violation_day_share",
                   "deadline_percentile", "fast_deadline_share", "uncontrollable_penalty_share"):  # fmt: skip
        assert f[metric].verdict == "fail", (metric, f[metric])
    assert f["deadline_percentile"].value < 30  # the 15th percentile rule, measured
    assert f["net_hourly_pay_change"].value < 0 and f["working_hours_change"].value > 0
    assert "27.7" in f["net_hourly_pay_to_min_wage"].note  # the figure used is cited
    # only the fleet is simulated: the feed and market articles are out of scope
    assert articles_in_scope(strict_result.findings) == {20}


def test_fair_dispatch_passes_art20(fair_result):
    assert article_verdicts(fair_result.findings)[20] == "pass"
    f = _by_metric(fair_result.findings)
    assert f["deadline_percentile"].value >= 50 and f["fast_deadline_share"].value == 0.0
    assert f["implied_speed_kmh"].value <= 15.0
    assert f["below_min_wage_day_share"].value == 0.0 and f["over_8h_day_share"].value == 0.0
    assert f["uncontrollable_penalty_share"].value == 0.0


def test_report_has_art20_section_with_figures(strict_result):
    page = render_html(strict_result)
    section = page[page.index("<h2 id='art20'>") :]
    section = section[: section.index("<h2>Method</h2>")]
    assert section.count("<img") == 3  # pay vs minimum wage, hours worked, deadline tightness
    assert "id='art8'" not in page  # not simulated: no section
    assert "Not simulated in this scenario" in page


def test_do_nothing_counterfactual_is_exactly_zero():
    # the counterfactual dispatcher on both sides, given once with explicit (default) params so the
    # audit runs it separately: every paired difference must be exactly zero
    data = _shipped(
        "rider_fair",
        scale=0.15,
        reps=2,
        dispatcher={"kind": "rest_respecting", "params": {"percentile": 50}},
        clock={"days": 2},
    )
    res = run_audit(scenario_from_dict(data))
    assert res.dispatcher_counterfactual_records[0] is not res.records[0]
    f = _by_metric(res.findings)
    for metric in ("net_hourly_pay_change", "working_hours_change", "deadline_percentile_change"):
        assert f[metric].value == 0.0 and f[metric].ci_low == 0.0 and f[metric].ci_high == 0.0, f[metric]
    a, b = res.records[0].fleet, res.dispatcher_counterfactual_records[0].fleet
    np.testing.assert_array_equal(a.worker_days, b.worker_days)


def test_cli_audit_writes_fleet_tables(tmp_path):
    data = _shipped("rider_strict", scale=0.15, reps=1, clock={"days": 2})
    path = tmp_path / "small_strict.toml"
    lines = [f"{k} = {json.dumps(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for table, values in data.items():
        if isinstance(values, dict):
            flat = {k: v for k, v in values.items() if not isinstance(v, dict)}
            lines.append(f"[{table}]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in flat.items()]
            for sub, sv in values.items():
                if isinstance(sv, dict):
                    lines.append(f"[{table}.{sub}]")
                    lines += [f"{k} = {json.dumps(v)}" for k, v in sv.items()]
    path.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "sim.cli", "audit", str(path), "--out", str(out), "--no-progress"],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Art. 20: FAIL" in proc.stdout and "net_hourly_pay_to_min_wage" in proc.stdout
    assert "not simulated in this scenario: Art. 8" in proc.stdout
    deliveries = pd.read_parquet(out / "deliveries.parquet")
    days = pd.read_parquet(out / "worker_days.parquet")
    assert {"created", "deadline_minutes", "pay", "penalty", "status"} <= set(deliveries.columns)
    assert len(days) == data["fleet"]["n_workers"] * data["clock"]["days"]
    assert not (out / "metrics.parquet").exists()  # no feed users: no feed tables
    findings = json.loads((out / "findings.json").read_text())
    assert any(f["article"] == 20 and f["verdict"] == "fail" for f in findings)
    assert "Art. 20" in (out / "report.html").read_text()
    assert "Art. 20" in (out / "self_assessment.md").read_text()


def test_market_purchases_become_deliveries():
    sc = scenario_from_dict(
        {
            "seed": 5,
            "clock": {"days": 1},
            "population": {"n_users": 600},
            "catalogue": {"n_items": 500, "new_items_per_day": 20},
            "recommender": {"kind": "engagement"},
            "market": {"n_products": 100, "store_visits_per_day": 2.0, "quote_log": True},
            "fleet": {"n_workers": 40, "orders": "market", "delivery_share": 1.0},
            "dispatcher": {"kind": "nearest"},
        }
    )
    rec = simulate(sc)
    q = rec.market.quotes
    sold = int((q["outcome"] == 1).sum())
    o = rec.fleet.orders
    assert sold > 50 and o["created"].size == sold  # every platform purchase is delivered (share 1)
    assert (o["user_idx"] >= 0).all()
    # each order goes from the product's merchant to the buyer's home (orders are kept in order of creation)
    sold_mask = q["outcome"] == 1
    expected = sorted(
        zip(q["user_idx"][sold_mask].tolist(), (q["product_idx"][sold_mask] % sc.fleet.n_merchants).tolist())
    )
    assert sorted(zip(o["user_idx"].tolist(), o["merchant"].tolist())) == expected
    assert (np.diff(o["created"]) >= 0).all()
    assert (o["status"] == 3).sum() > 0.5 * sold


def test_market_fed_fleet_audit_runs_a_dispatcher_counterfactual():
    sc = scenario_from_dict(
        {
            "seed": 5,
            "clock": {"days": 1},
            "population": {"n_users": 400},
            "catalogue": {"n_items": 500, "new_items_per_day": 20},
            "market": {"n_products": 100, "store_visits_per_day": 3.0},
            "fleet": {"n_workers": 30, "orders": "market", "delivery_share": 1.0},
            "dispatcher": {"kind": "strict"},
            "audit": {"replications": 1},
        }
    )
    res = run_audit(sc, workers=1)
    # the dispatcher counterfactual keeps the audited recommender: the same purchases, so the same orders
    a, d = res.records[0].fleet.orders, res.dispatcher_counterfactual_records[0].fleet.orders
    np.testing.assert_array_equal(a["created"], d["created"])
    assert res.dispatcher_counterfactual_records[0].fleet.dispatcher == "rest_respecting"
    assert 20 in articles_in_scope(res.findings) and 8 in articles_in_scope(res.findings)

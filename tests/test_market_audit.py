"""The market's audit path: Art. 21 verdicts, the pricer counterfactual, the report section."""

import json
import subprocess
import sys

import numpy as np
import pytest

from audits.audit import article_verdicts, run_audit
from audits.report import render_html
from sim.scenario import load_scenario


def _small(path, **market):
    sc = load_scenario(path).with_overrides(n_users=600, days=2)
    if market:
        d = sc.model_dump()
        d["market"].update(market)
        from sim.scenario import scenario_from_dict

        sc = scenario_from_dict(d)
    return sc


@pytest.fixture(scope="module")
def loyalty_audit():
    return run_audit(_small("scenarios/loyalty_pricing.toml"), replications=2, workers=1)


@pytest.fixture(scope="module")
def uniform_audit():
    return run_audit(_small("scenarios/uniform_pricing.toml"), replications=2, workers=1)


def _finding(result, metric, cohort="all"):
    return next(f for f in result.findings if f.metric == metric and f.cohort == cohort)


def test_loyalty_pricing_fails_art21_with_the_ratio(loyalty_audit):
    f = _finding(loyalty_audit, "loyal_new_price_ratio")
    assert f.verdict == "fail"
    # the pricer charges full loyalty +15%: loyal customers (stock >= 3 of 5) pay 9-15% more
    assert 1.08 < f.ci_low <= f.value <= f.ci_high < 1.16
    assert article_verdicts(loyalty_audit.findings)[21] == "fail"
    # the overcharge is a transfer from consumers: positive, and consumer surplus falls against the pricer counterfactual
    assert _finding(loyalty_audit, "overcharge_per_user_month").value > 0
    assert _finding(loyalty_audit, "consumer_surplus_change").value < 0
    assert "uniform pricer, same recommender" in _finding(loyalty_audit, "consumer_surplus_change").counterfactual
    # the pricer-only counterfactual keeps the audited recommender
    assert all(r.recommender == "engagement" for r in loyalty_audit.pricer_counterfactual_records)
    assert all(r.market.pricer == "uniform" for r in loyalty_audit.pricer_counterfactual_records)


def test_uniform_pricing_passes_art21(uniform_audit):
    art21 = [f for f in uniform_audit.findings if f.article == 21 and f.rule != "info"]
    assert art21 and all(f.verdict == "pass" for f in art21), [(f.metric, f.verdict, f.note) for f in art21]
    assert article_verdicts(uniform_audit.findings)[21] == "pass"
    f = _finding(uniform_audit, "loyal_new_price_ratio")
    assert f.value == f.ci_low == f.ci_high == 1.0
    # no pricer counterfactual is run when the audited pricer is the reference
    assert uniform_audit.pricer_counterfactual_records is uniform_audit.records


def test_market_findings_are_undefined_without_a_market():
    sc = load_scenario("scenarios/chronological.toml").with_overrides(n_users=200, days=1)
    result = run_audit(sc, replications=1, workers=1)
    market = [f for f in result.findings if f.article in (19, 21)]
    assert market and all(f.verdict == "undefined" and "no market" in f.note for f in market)
    html = render_html(result)
    assert "has no market" in html


def test_report_has_the_market_sections(loyalty_audit):
    html = render_html(loyalty_audit)
    for anchor in ("id='art19'", "id='art21'", "loyal_new_price_ratio", "audited pricer: <code>loyalty</code>"):
        assert anchor in html
    # Art. 21 shows two figures (price by segment, surplus by cohort)
    section = html.split("id='art21'")[1].split("<h2")[0]
    assert section.count("<img") == 2


def test_equivalence_with_center():
    from audits.audit import verdict

    assert verdict("equivalence", 1.0, 0.995, 1.005, 0.01, center=1.0)[0] == "pass"
    assert verdict("equivalence", 1.14, 1.13, 1.15, 0.01, center=1.0)[0] == "fail"
    assert verdict("equivalence", 1.0, 0.98, 1.02, 0.01, center=1.0)[0] == "undefined"


def test_cli_audit_writes_quotes(tmp_path):
    out = tmp_path / "u"
    proc = subprocess.run(
        [sys.executable, "-m", "sim.cli", "audit", "scenarios/uniform_pricing.toml", "--users", "300", "--days", "1",
         "--replications", "1", "--out", str(out), "--no-progress", "--quote-log"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Art. 21: PASS" in proc.stdout and "loyal_new_price_ratio = 1.000" in proc.stdout
    assert "## 4. Mitigations tested" in (out / "self_assessment.md").read_text()
    import pandas as pd

    q = pd.read_parquet(out / "quotes.parquet")
    assert len(q) > 0 and {"price", "shadow_price", "wtp_hat", "disclosed", "outcome"} <= set(q.columns)
    assert np.all(q["price"] == q["shadow_price"])
    findings = json.loads((out / "findings.json").read_text())
    assert any(f["metric"] == "loyal_new_price_ratio" and f["verdict"] == "pass" for f in findings)


def test_self_assessment_draft(loyalty_audit):
    from audits.self_assessment import render_self_assessment

    md = render_self_assessment(loyalty_audit, manifest={"command": "recaudit audit x", "git_commit": "abc"})
    for heading in ("## 1. Filing information", "## 2. The algorithm assessed", "## 3. Risks assessed",
                    "## 4. Mitigations tested", "## 5. Method and limits", "## 6. Provenance"):  # fmt: skip
        assert heading in md
    assert "personalised push" in md and "Pricer: `loyalty`" in md
    row = next(line for line in md.splitlines() if line.startswith("| 21 |"))
    assert "**fail**" in row and "loyal_new_price_ratio" in row
    assert "Pricing (Art. 21)" not in md  # the loyalty pricer is not listed as a mitigation


def test_trait_regression_ignores_traits_that_do_not_vary():
    from audits.market_metrics import trait_coefficients

    rng = np.random.default_rng(0)
    n = 1000
    x = np.column_stack([np.ones(n), rng.random(n), np.ones(n)])  # intercept, a varying trait, a constant trait
    y = np.full(n, np.log(1.05))  # a uniform 5% markup: no trait explains it
    coef = trait_coefficients(x.T @ x, x.T @ y)
    assert np.allclose(coef, 0.0, atol=1e-9)
    y2 = np.log(1.05) + 0.1 * x[:, 1]
    assert trait_coefficients(x.T @ x, x.T @ y2)[0] == pytest.approx(0.1)


def test_fraud_exposure_needs_the_elderly():
    from sim.scenario import scenario_from_dict

    sc = load_scenario("scenarios/elderly_fraud.toml").with_overrides(n_users=300, days=1)
    d = sc.model_dump()
    d["population"]["shares"] = {"adult": 0.9, "minor": 0.1, "elderly": 0.0}
    res = run_audit(scenario_from_dict(d), replications=1, workers=1)
    f = _finding(res, "fraud_exposure_ratio", "elderly")
    assert f.verdict == "undefined" and f.n_users == 0 and "absent" in f.note


def test_the_quote_log_is_contiguous_and_read_from_any_row():
    from sim.engine import FeedWorld
    from sim.market.world import QUOTE_COLUMNS

    sc = _small("scenarios/loyalty_pricing.toml", quote_log=True).with_overrides(n_users=600, days=1)
    w = FeedWorld(sc)
    for _ in range(sc.ticks_per_day // 2):
        w.step()
    m = w.market
    half = m.n_quotes
    early = m.quote_log()
    for _ in range(sc.ticks_per_day // 2):
        w.step()
    n = m.n_quotes
    assert 0 < half < n
    assert all(early[c].shape == (half,) for c in QUOTE_COLUMNS)  # an earlier snapshot does not grow
    later = m.quotes_from(half)
    full = m.quote_log()
    assert all(full[c].shape == (n,) and not full[c].flags.writeable for c in QUOTE_COLUMNS)
    for c in QUOTE_COLUMNS:
        np.testing.assert_array_equal(later[c], full[c][half:])
        np.testing.assert_array_equal(early[c], full[c][:half])
        assert np.shares_memory(full[c], m._log[c])  # views of the log: never joined or copied
    assert m.quotes_from(n)["tick"].size == 0

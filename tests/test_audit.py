import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from audits.audit import article_verdicts, run_audit, verdict
from sim.scenario import load_scenario

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"


@pytest.fixture(scope="module")
def baseline_audit():
    sc = load_scenario(SCENARIOS / "baseline.toml").with_overrides(n_users=1500, days=2)
    return run_audit(sc, replications=1)


@pytest.fixture(scope="module")
def minors_mode_audit():
    sc = load_scenario(SCENARIOS / "minors_mode.toml").with_overrides(n_users=1500, days=2)
    return run_audit(sc, replications=1)


def test_baseline_fails_art18(baseline_audit):
    v = article_verdicts(baseline_audit.findings)
    assert v[18] == "fail"
    over = [f for f in baseline_audit.findings if f.metric == "days_over_cap_share" and f.cohort == "minor"][0]
    assert over.value > 0 and over.ci_low > 0


def test_minors_mode_passes_art18(minors_mode_audit):
    v = article_verdicts(minors_mode_audit.findings)
    assert v[18] == "pass"
    rec = minors_mode_audit.records[0]
    minor = rec.cohort == 1
    assert rec.day_column("night_minutes")[:, minor].max() == 0.0
    cap = minors_mode_audit.catalogue.cap_minutes(rec.age)
    assert np.all(rec.day_column("minutes")[:, minor] <= cap[minor] + 1e-3)


def test_opt_out_art17(baseline_audit, minors_mode_audit):
    def f(res):
        return [x for x in res.findings if x.article == 17][0]

    assert f(baseline_audit).verdict == "fail"  # opt-out ignored: feed follows the profile
    assert f(minors_mode_audit).value < f(baseline_audit).value / 5


def test_do_nothing_counterfactual_is_exactly_zero():
    sc = load_scenario(SCENARIOS / "chronological.toml").with_overrides(n_users=800, days=1)
    res = run_audit(sc, replications=1)
    for f in res.findings:
        if (
            f.metric
            in (
                "minutes_mean_uplift",
                "minutes_p90_uplift",
                "compulsive_share_increase",
                "regret_minutes_increase",
                "homogenisation_increase",
            )
            and f.value is not None
        ):
            assert f.value == 0.0 and f.ci_low == 0.0 and f.ci_high == 0.0, f


def test_absent_cohort_is_undefined():
    sc = load_scenario(SCENARIOS / "baseline.toml").with_overrides(n_users=400, days=1)
    data = sc.model_dump()
    data["population"]["shares"] = {"adult": 1.0, "minor": 0.0, "elderly": 0.0}
    from sim.scenario import scenario_from_dict

    res = run_audit(scenario_from_dict(data), replications=1)
    for f in res.findings:
        if f.cohort.startswith("minor"):
            assert f.verdict == "undefined" and ("absent" in f.note or "no market" in f.note)
    assert article_verdicts(res.findings)[18] == "undefined"
    ent = [f for f in res.findings if f.metric == "feed_entropy_change"][0]
    assert ent.verdict == "undefined" and "2 simulated days" in ent.note  # a 1-day run has no trend


@pytest.mark.parametrize(
    "rule, value, lo, hi, thr, expected",
    [
        ("max", 0.2, 0.15, 0.25, 0.1, "fail"),
        ("max", 0.05, 0.01, 0.09, 0.1, "pass"),
        ("max", 0.1, 0.05, 0.15, 0.1, "undefined"),
        ("min", -0.3, -0.35, -0.25, -0.1, "fail"),
        ("zero", 0.0, 0.0, 0.0, 0.0, "pass"),
        ("zero", 0.01, 0.0, 0.02, 0.0, "fail"),
        ("equivalence", 0.0, -0.01, 0.01, 0.05, "pass"),
        ("equivalence", 0.7, 0.6, 0.8, 0.05, "fail"),
        ("info", 1.0, 0.9, 1.1, None, "undefined"),
    ],
)
def test_verdict_rules(rule, value, lo, hi, thr, expected):
    assert verdict(rule, value, lo, hi, thr)[0] == expected


def test_cli_audit_end_to_end(tmp_path):
    out = tmp_path / "audit"
    proc = subprocess.run(
        [sys.executable, "-m", "sim.cli", "audit", str(SCENARIOS / "baseline.toml"), "--out", str(out),
         "--users", "600", "--days", "2", "--seed", "5", "--replications", "2"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Art. 18: FAIL" in proc.stdout
    for name in ("metrics.parquet", "users.parquet", "hourly.parquet", "manifest.json", "findings.json", "report.html"):
        assert (out / name).is_file(), name
    assert not [p for p in out.iterdir() if p.name.startswith(".recaudit-staging")]
    metrics = pd.read_parquet(out / "metrics.parquet")
    for col in ("day", "cohort", "n_users", "minutes_mean", "minutes_p90", "night_minutes_mean"):
        assert col in metrics.columns
    assert len(metrics) == 2 * 3
    assert metrics.groupby("day").n_users.sum().tolist() == [600, 600]
    findings = json.loads((out / "findings.json").read_text())
    keys = {"article", "metric", "cohort", "value", "ci_low", "ci_high", "threshold", "source", "verdict"}
    assert all(keys <= set(f) for f in findings)
    assert all(isinstance(f["article"], int) and f["verdict"] in ("pass", "fail", "undefined") for f in findings)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["seed"] == 5 and manifest["scenario"]["population"]["n_users"] == 600
    assert manifest["replications"] == 2 and all(f["replications"] == 2 for f in findings)
    assert manifest["versions"]["numba"] and manifest["git_commit"]
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64") >= 4 and "Verdicts by article" in html


def test_cli_run_and_failed_run_leaves_nothing(tmp_path):
    out = tmp_path / "run"
    ok = subprocess.run(
        [sys.executable, "-m", "sim.cli", "run", str(SCENARIOS / "chronological.toml"), "--out", str(out),
         "--users", "300", "--days", "1"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    users = pd.read_parquet(out / "users.parquet")
    assert len(users) == 300
    # a plugin that breaks the protocol mid-run: exit 2, and no new file in a fresh directory
    plugin = tmp_path / "badplugin.py"
    plugin.write_text(
        "import numpy as np\n"
        "class LateNaN:\n"
        "    calls = 0\n"
        "    def fit(self, view, log):\n        return self\n"
        "    def score(self, user_idx, cand_idx, view):\n"
        "        LateNaN.calls += 1\n"
        "        s = np.zeros(cand_idx.shape, dtype=np.float32)\n"
        "        if LateNaN.calls > 50: s[:] = np.nan\n"
        "        return s\n"
    )
    scen = tmp_path / "bad.toml"
    scen.write_text('[population]\nn_users = 300\n[recommender]\nkind = "badplugin:LateNaN"\n')
    fresh = tmp_path / "fresh"
    bad = subprocess.run(
        [sys.executable, "-m", "sim.cli", "run", str(scen), "--out", str(fresh), "--days", "1"],
        capture_output=True, text=True, timeout=600, env={**__import__("os").environ, "PYTHONPATH": str(tmp_path)},
    )  # fmt: skip
    assert bad.returncode == 2, bad.stderr
    assert "badplugin:LateNaN" in bad.stderr and "NaN" in bad.stderr and "Traceback" not in bad.stderr
    assert list(fresh.iterdir()) == []


def test_worker_processes_give_identical_results():
    sc = load_scenario(SCENARIOS / "minors_mode.toml").with_overrides(n_users=300, days=1)
    one = run_audit(sc, replications=1, workers=1)
    two = run_audit(sc, replications=1, workers=2)
    assert [f.to_dict() for f in one.findings] == [f.to_dict() for f in two.findings]
    assert np.array_equal(one.records[0].user_days, two.records[0].user_days)

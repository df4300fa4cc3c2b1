"""The memory estimate and the refusal of runs that do not fit."""

import subprocess
import sys
from pathlib import Path

import pytest

from audits.audit import run_audit
from sim.memory import check_memory, estimate_memory
from sim.scenario import ScenarioError, load_scenario

ROOT = Path(__file__).resolve().parents[1]


def test_estimate_scales_with_users_days_and_runs():
    sc = load_scenario(ROOT / "scenarios" / "loyalty_pricing.toml")
    small = estimate_memory(sc.with_overrides(n_users=10_000, days=1))
    big = estimate_memory(sc.with_overrides(n_users=100_000, days=1))
    longer = estimate_memory(sc.with_overrides(n_users=10_000, days=10))
    base = small["processes"]
    assert (big["total"] - base) == pytest.approx(10 * (small["total"] - base), rel=0.05)
    assert longer["total"] > small["total"]
    assert "quote log (x1)" in small  # the market's log is counted when there is a market
    audit = estimate_memory(sc, runs=9, concurrent=2)
    assert audit["kept records"] > 0 and audit["total"] > estimate_memory(sc)["total"]


def test_refusal_names_need_and_availability():
    sc = load_scenario(ROOT / "scenarios" / "baseline.toml")
    with pytest.raises(ScenarioError, match=r"needs about .* GiB .* but this machine has 1\.0 GiB available"):
        check_memory(sc.with_overrides(n_users=10_000_000), available=2**30)
    check_memory(sc, available=64 * 2**30)  # fits: no error


def test_cli_refuses_a_run_that_does_not_fit(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "sim.cli", "run", str(ROOT / "scenarios" / "baseline.toml"), "--users", "200000000",
         "--days", "365", "--out", str(tmp_path / "o"), "--no-progress"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "needs about" in proc.stderr and "available" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "o").exists()


def test_audit_counts_every_run(monkeypatch):
    sc = load_scenario(ROOT / "scenarios" / "baseline.toml").with_overrides(n_users=3_000_000, days=60)
    monkeypatch.setattr("sim.memory.available_memory", lambda: 8 * 2**30)
    with pytest.raises(ScenarioError, match="needs about"):
        run_audit(sc, replications=3, workers=2)


def test_users_table_written_in_slices_equals_the_whole_frame(tmp_path, monkeypatch):
    import pandas as pd

    import sim.cli as cli
    from sim import output
    from sim.engine import simulate

    sc = load_scenario(ROOT / "scenarios" / "baseline.toml").with_overrides(n_users=300, days=2)
    rec = simulate(sc)
    monkeypatch.setattr(output, "BATCH_ROWS", 64)  # 5 slices, the last one short
    cli._write_run_tables(tmp_path, rec, {"seed": sc.seed})
    got = pd.read_parquet(tmp_path / "users.parquet")
    pd.testing.assert_frame_equal(got, rec.users_frame(), check_dtype=True)


def test_quotes_parquet_is_written_in_slices(tmp_path, monkeypatch):
    import pandas as pd

    import sim.cli as cli
    from sim import output
    from sim.engine import simulate

    sc = load_scenario(ROOT / "scenarios" / "loyalty_pricing.toml").with_overrides(n_users=200, days=1, quote_log=True)
    rec = simulate(sc)
    assert rec.market.summary.n_total > 3 * 64
    monkeypatch.setattr(output, "BATCH_ROWS", 64)
    cli._write_run_tables(tmp_path, rec, {"seed": sc.seed})
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "quotes.parquet"), rec.market.quotes_frame())

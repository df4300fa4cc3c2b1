import subprocess
import sys
from pathlib import Path

import pytest

from sim.scenario import ScenarioError, load_scenario, scenario_from_dict

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"

BAD = {
    "unknown_top_key": ("seed = 1\nsede = 2\n", "unknown key 'sede'"),
    "unknown_nested_key": ("[population]\nn_user = 10\n", "did you mean 'n_users'"),
    "wrong_type": ('[population]\nn_users = "many"\n', "population.n_users"),
    "negative_users": ("[population]\nn_users = -5\n", "population.n_users"),
    "shares_not_summing": ("[population]\nshares = { adult = 0.5, minor = 0.1, elderly = 0.1 }\n", "sum to 1"),
    "unknown_cohort": ("[population]\nshares = { adult = 0.5, teen = 0.5 }\n", "population.shares"),
    "probability_above_one": ("[population]\nopt_out_share = 1.5\n", "population.opt_out_share"),
    "bad_tick": ("[clock]\ntick_minutes = 7\n", "clock.tick_minutes"),
    "zero_days": ("[clock]\ndays = 0\n", "clock.days"),
    "slate_bigger_than_candidates": ("[recommender]\nn_candidates = 5\nslate_size = 10\n", "slate_size"),
    "unknown_recommender": ('[recommender]\nkind = "magic"\n', "unknown; choose one of"),
    "bad_plugin_path": ('[recommender]\nkind = "no_such_module:Rec"\n', "cannot import module"),
    "bad_recommender_param": (
        '[recommender]\nkind = "engagement"\n[recommender.params]\nexplore = 0.1\n',
        "bad params",
    ),
    "not_toml": ("[population\nn_users = 3\n", "not valid TOML"),
    "minor_ages_reversed": ("[population]\nminor_age_min = 15\nminor_age_max = 9\n", "minor_age_min"),
    "wrapper_typo": ("[recommender.minors_mode]\ncap_under_16 = 60\n", "recommender.minors_mode"),
    "market_typo": ("[market]\nn_prodcts = 5\n", "did you mean 'n_products'"),
    "market_bad_share": ("[market]\nfraud_share = 1.5\n", "market.fraud_share"),
    "market_bad_targeting": ('[market]\ntargeting = "psychic"\n', "market.targeting"),
    "unknown_pricer": ('[market]\n[pricer]\nkind = "loyal"\n', "pricer.kind = 'loyal' is unknown"),
    "bad_pricer_param": ('[market]\n[pricer]\nkind = "loyalty"\nparams = { uplif = 0.1 }\n', "bad params"),
    "fleet_typo": ("[fleet]\nn_worker = 5\n", "did you mean 'n_workers'"),
    "fleet_worker_typo": ("[fleet.workers]\nspeed_kmh = 20\n", "fleet.workers"),
    "fleet_bad_step": ("[fleet]\nstep_minutes = 7\n", "fleet.step_minutes"),
    "fleet_negative_wage": ("[fleet]\nmin_hourly_wage = -3\n", "fleet.min_hourly_wage"),
    "fleet_market_orders_without_market": ('[fleet]\norders = "market"\n', "needs a [market] table"),
    "no_users_no_fleet": ("[population]\nn_users = 0\n", "nothing to simulate"),
    "unknown_dispatcher": ('[fleet]\n[dispatcher]\nkind = "fastest"\n', "dispatcher.kind = 'fastest' is unknown"),
    "bad_dispatcher_param": ('[fleet]\n[dispatcher]\nkind = "strict"\nparams = { percentil = 10 }\n', "bad params"),
    "impossible_dispatcher_param": (
        '[fleet]\n[dispatcher]\nkind = "take_middle"\nparams = { percentile = 20 }\n',
        "take-the-middle deadlines sit at the median or above",
    ),
    "dispatcher_without_fleet": ('[dispatcher]\nkind = "strict"\n', "no delivery fleet"),
    "fleet_impatient_customers": ("[fleet]\npatience_minutes = 1\n", "cancelled before their first offer"),
    "fleet_radius_beyond_city": ("[fleet]\ncity_km = 2\ndelivery_radius_km = 5\n", "exceeds city_km"),
    "fleet_start_after_cutoff": ("[fleet.workers]\nstart_hour_max = 23.5\n", "fleet.workers.start_hour_max"),
    "unknown_counterfactual_dispatcher": (
        '[fleet]\n[audit]\ncounterfactual_dispatcher = "nope"\n',
        "counterfactual_dispatcher",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_malformed_scenario_exit_2(tmp_path, case):
    text, expected = BAD[case]
    path = tmp_path / f"{case}.toml"
    path.write_text(text)
    proc = subprocess.run(
        [sys.executable, "-m", "sim.cli", "run", str(path), "--out", str(tmp_path / "out"), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert str(path) in proc.stderr or any(w in proc.stderr for w in ("recommender", "pricer", "dispatcher"))
    assert expected in proc.stderr, proc.stderr
    assert not (tmp_path / "out" / "metrics.parquet").exists()


def test_missing_file_exit_2(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "sim.cli", "run", str(tmp_path / "nope.toml")], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "no such scenario file" in proc.stderr


SCENARIO_FILES = sorted(p for p in SCENARIOS.glob("*.toml") if not p.name.endswith("_sweep.toml"))
SWEEP_FILES = sorted(SCENARIOS.glob("*_sweep.toml"))


@pytest.mark.parametrize("path", SWEEP_FILES, ids=lambda p: p.name)
def test_shipped_sweeps_load(path):
    from sim.sweep.spec import expand, load_sweep

    spec, base = load_sweep(path)
    assert len(expand(spec, base)) > 0


@pytest.mark.parametrize("path", SCENARIO_FILES, ids=lambda p: p.name)
def test_shipped_scenarios_load_and_run(path):
    from sim.engine import FeedWorld

    sc = load_scenario(path)
    sc = sc.with_overrides(n_users=300 if sc.population.n_users else None, days=1)
    world = FeedWorld(sc)
    for _ in range(6):
        world.step()
    assert world.tick == 6


def test_loader_error_type(tmp_path):
    p = Path(tmp_path) / "x.toml"
    p.write_text("[clock]\ndays = -1\n")
    with pytest.raises(ScenarioError, match="clock.days"):
        load_scenario(p)


@pytest.mark.parametrize(
    "table, value",
    [({"decision_log": {"enabled": "yes"}}, "decision_log.enabled"),
     ({"fleet": {"geography": 1}}, "fleet.geography"),
     ({"recommender": {"kind": "engagement", "tags": {"honour_deletion": "true"}}}, "recommender.tags.honour_deletion")],
)  # fmt: skip
def test_switches_must_be_toml_booleans(table, value):
    with pytest.raises(ScenarioError, match=value.replace(".", r"\.") + ".*valid boolean"):
        scenario_from_dict({"name": "x", "population": {"n_users": 10}, **table})


def test_with_values_sets_dotted_paths_and_validates():
    sc = load_scenario("scenarios/tag_targeting.toml")
    assert sc.tags is None or sc.tags.attribute
    days = sc.clock.days + 1
    out = sc.with_values(
        {"clock.days": days, "tags.attribute": False, "recommender.params.alpha": 0.5}, add_tables=True
    )
    assert out.clock.days == days and out.tags.attribute is False  # [tags] added with its defaults where absent
    assert out.recommender.params == {**sc.recommender.params, "alpha": 0.5}  # a plugin's params may be new
    assert sc.clock.days == days - 1  # a copy
    with pytest.raises(ScenarioError, match="'clock.dayz' is not a scenario setting"):
        sc.with_values({"clock.dayz": 3})
    with pytest.raises(ScenarioError, match="'nope' is unknown"):
        sc.with_values({"nope.x": 1})
    with pytest.raises(ScenarioError, match="clock.days"):
        sc.with_values({"clock.days": -1})  # validated as a scenario file is
    assert sc.market is None
    with pytest.raises(ScenarioError, match=r"no \[market\] table"):
        sc.with_values({"market.quote_log": True})  # a missing table only with add_tables
    assert sc.with_overrides(quote_log=False) == sc.with_overrides()

"""Sweeps on Dask: in-process and multi-process clusters, by address, resumption, failures as data."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from audits.sweeps import policy_comparison, sobol_indices
from sim.scenario import ScenarioError
from sim.sweep.runner import run_sweep
from sim.sweep.spec import expand, load_sweep

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "scenarios" / "minors_mode.toml"


def _sweep_file(tmp_path, name="tiny", extra_axes="", caps=(40.0, 90.0), replications=2, users=150):
    text = f"""
name = "{name}"
base = "{BASE}"
replications = {replications}
outcomes = ["minutes_per_day:minor", "minutes_per_day:all", "days_over_cap_share:minor"]

[overrides]
"population.n_users" = {users}
"clock.days" = 1

[[axes]]
path = "recommender.minors_mode.cap_under_16_minutes"
role = "lever"
name = "cap"
values = {list(caps)}

[[axes]]
path = "behaviour.minor.self_control_mean"
role = "uncertainty"
values = [0.3]
{extra_axes}
"""
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


def _quiet(*args, **kwargs):
    pass


def test_in_process_and_multi_process_clusters_agree(tmp_path):
    sweep = _sweep_file(tmp_path)
    a = run_sweep(sweep, tmp_path / "a", workers=1, processes=False, log=_quiet)
    b = run_sweep(sweep, tmp_path / "b", workers=2, processes=True, log=_quiet)
    assert a.n_run == b.n_run == 4 and a.n_failed == b.n_failed == 0
    pd.testing.assert_frame_equal(a.outcomes, b.outcomes)
    cols = ["experiment_id", "design_point", "replication", "seed", "cap", "status"]
    pd.testing.assert_frame_equal(a.experiments[cols], b.experiments[cols])
    # hive partitioning: the outcome column is not stored inside the files
    part = next((tmp_path / "a" / "outcomes").glob("outcome=*/part-*.parquet"))
    import pyarrow.parquet as pq

    assert "outcome" not in pq.read_schema(part).names
    # a looser cap lets minors watch more, on the same populations (common random numbers)
    table = policy_comparison(load_sweep(sweep)[0], a.experiments, a.outcomes)
    row = table[(table.outcome == "minutes_per_day") & (table.cohort == "minor") & (table.cap == 90.0)].iloc[0]
    assert row["diff"] > 0 and row["n"] == 2
    ref = table[(table.cap == 40.0)]
    assert (ref["diff"] == 0).all()


def test_failed_experiment_is_recorded_and_the_sweep_goes_on(tmp_path):
    extra = """
[[axes]]
path = "catalogue.new_items_per_day"
role = "lever"
values = [100, 99999999]
"""
    sweep = _sweep_file(tmp_path, extra_axes=extra, caps=(60.0,), replications=1)
    res = run_sweep(sweep, tmp_path / "out", workers=1, processes=False, log=_quiet)
    assert res.n_run == 2 and res.n_failed == 1
    bad = res.experiments[res.experiments.status == "error"].iloc[0]
    assert "new_items_per_day" in bad["error"] and "ScenarioError" in bad["error"]
    assert set(res.outcomes.experiment_id) == set(res.experiments[res.experiments.status == "ok"].experiment_id)
    # failures count as done on resumption, unless asked to retry
    again = run_sweep(sweep, tmp_path / "out", workers=1, processes=False, log=_quiet)
    assert again.n_run == 0 and again.n_skipped == 2
    retry = run_sweep(sweep, tmp_path / "out", workers=1, processes=False, log=_quiet, retry_failed=True)
    assert retry.n_run == 1 and retry.n_failed == 1 and len(retry.experiments) == 2


def test_resume_runs_only_missing_experiments(tmp_path):
    sweep = _sweep_file(tmp_path, caps=(40.0, 60.0, 90.0), replications=1)
    full = run_sweep(sweep, tmp_path / "out", workers=1, processes=False, log=_quiet, flush_every=1)
    parts = sorted((tmp_path / "out" / "experiments").glob("part-*.parquet"))
    assert len(parts) == 3
    # as if killed between writing a batch's outcomes and its experiments row
    parts[1].unlink()
    res = run_sweep(sweep, tmp_path / "out", workers=1, processes=False, log=_quiet)
    assert res.n_run == 1 and res.n_skipped == 2
    pd.testing.assert_frame_equal(res.outcomes, full.outcomes)  # no duplicates, same values


def test_killed_sweep_resumes(tmp_path):
    sweep = _sweep_file(tmp_path, caps=(30.0, 40.0, 50.0, 60.0, 90.0, 120.0), replications=1, users=300)
    out = tmp_path / "out"
    code = (f"from sim.sweep.runner import run_sweep\nif __name__ == '__main__':\n"
            f"    run_sweep({str(sweep)!r}, {str(out)!r}, workers=1, processes=False, flush_every=1)\n")  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and len(list((out / "experiments").glob("part-*.parquet"))) < 2:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    n_before = len(list((out / "experiments").glob("part-*.parquet")))
    assert 2 <= n_before < 6, n_before
    res = run_sweep(sweep, out, workers=1, processes=False, log=_quiet)
    assert res.n_skipped == n_before and res.n_run == 6 - n_before
    assert sorted(res.experiments.experiment_id) == [e.experiment_id for e in expand(*load_sweep(sweep))]
    assert not res.outcomes.duplicated(["experiment_id", "outcome", "cohort"]).any()


def test_cluster_by_address_gives_identical_outcomes(tmp_path):
    sweep = _sweep_file(tmp_path)
    local = run_sweep(sweep, tmp_path / "local", workers=1, processes=False, log=_quiet)
    sched_file = tmp_path / "scheduler.json"
    env = dict(os.environ, DASK_DISTRIBUTED__WORKER__DAEMON="False")
    sched = subprocess.Popen(["dask", "scheduler", "--scheduler-file", str(sched_file), "--no-dashboard",
                              "--port", "0"], env=env, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    worker = None
    try:
        deadline = time.time() + 60
        while not sched_file.exists() and time.time() < deadline:
            time.sleep(0.2)
        address = json.loads(sched_file.read_text())["address"]
        worker = subprocess.Popen(["dask", "worker", address, "--nthreads", "1", "--nworkers", "1", "--no-dashboard"],
                                  env=env, cwd=ROOT, start_new_session=True,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        remote = run_sweep(sweep, tmp_path / "remote", cluster=address, log=_quiet)
    finally:
        for p in (worker, sched):
            if p is not None:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(timeout=30)
    pd.testing.assert_frame_equal(local.outcomes, remote.outcomes)


def test_different_sweep_in_same_directory_is_refused(tmp_path):
    a = _sweep_file(tmp_path, name="a", replications=1, caps=(60.0,))
    run_sweep(a, tmp_path / "out", workers=1, processes=False, log=_quiet)
    b = _sweep_file(tmp_path, name="b", replications=1, caps=(60.0,))
    with pytest.raises(ScenarioError, match="holds a different sweep"):
        run_sweep(b, tmp_path / "out", workers=1, processes=False, log=_quiet)


@pytest.mark.parametrize(
    "axis, expected",
    [
        ('path = "recommender.minors_mode.cap_under_16"\nrole = "lever"\nvalues = [1.0]', "not a scenario setting"),
        ('path = "population.n_users"\nrole = "lever"\nvalues = ["many"]', "population.n_users"),
        ('path = "population.n_users"\nrole = "knob"\nvalues = [10]', "axes.0.role"),
        ('path = "population.n_users"\nrole = "lever"', "either values"),
    ],
)
def test_bad_sweep_files_exit_2(tmp_path, axis, expected):
    path = tmp_path / "bad.toml"
    path.write_text(f'name = "bad"\nbase = "{BASE}"\noutcomes = ["minutes_per_day"]\n[[axes]]\n{axis}\n')
    proc = subprocess.run([sys.executable, "-m", "sim.cli", "sweep", str(path), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert expected in proc.stderr and "Traceback" not in proc.stderr


def test_unknown_outcome_is_reported(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(f'name = "bad"\nbase = "{BASE}"\noutcomes = ["minutes:teens"]\n[[axes]]\npath = "population.n_users"\n'
                    'role = "lever"\nvalues = [100]\n')  # fmt: skip
    with pytest.raises(ScenarioError, match="unknown outcome 'minutes'"):
        load_sweep(path)


def test_sobol_indices_match_a_linear_model(tmp_path):
    """Y = 2 x1 + x2 with x1, x2 uniform on [0, 1]: S1 = ST = (0.8, 0.2) (variance shares 4:1)."""
    path = tmp_path / "sobol.toml"
    path.write_text(f"""
name = "sobol"
base = "{BASE}"
design = "sobol"
sobol_samples = 512
outcomes = ["minutes_per_day"]
[[axes]]
path = "behaviour.habit_cue"
role = "uncertainty"
name = "x1"
range = [0.0, 1.0]
[[axes]]
path = "behaviour.interest_drift"
role = "uncertainty"
name = "x2"
range = [0.0, 1.0]
""")
    spec, base = load_sweep(path)
    exps = expand(spec, base)
    assert len(exps) == 512 * (2 * 2 + 2)
    experiments = pd.DataFrame([dict(experiment_id=e.experiment_id, design_point=e.design_point,
                                     replication=e.replication, status="ok", **e.values) for e in exps])  # fmt: skip
    outcomes = pd.DataFrame(dict(experiment_id=experiments.experiment_id, outcome="minutes_per_day", cohort="all",
                                 value=2 * experiments.x1 + experiments.x2))  # fmt: skip
    table = sobol_indices(spec, experiments, outcomes).set_index("parameter")
    for name, share in (("x1", 0.8), ("x2", 0.2)):
        for idx in ("S1", "ST"):
            tol = max(3 * table.loc[name, f"{idx}_conf"], 0.02)
            assert abs(table.loc[name, idx] - share) < tol, (name, idx, table.loc[name, idx])


def test_shipped_sweep_loads():
    spec, base = load_sweep(ROOT / "scenarios" / "minors_cap_sweep.toml")
    exps = expand(spec, base)
    assert len(exps) == 4 * 2 * 2 * spec.replications
    assert len({e.experiment_id for e in exps}) == len(exps)
    # replication r of every design point shares the seed: levers compared on common random numbers
    assert len({(e.seed, e.replication) for e in exps}) == spec.replications
    assert np.isfinite([e.values["cap_under_16"] for e in exps]).all()


def test_mixed_int_and_float_lever_values_stay_readable(tmp_path):
    sweep = _sweep_file(tmp_path, caps=(60, 40.5), replications=1)
    res = run_sweep(sweep, tmp_path / "out", workers=1, processes=False, log=_quiet, flush_every=1)
    assert res.experiments["cap"].tolist() == [60.0, 40.5]
    again = run_sweep(sweep, tmp_path / "out", workers=1, processes=False, log=_quiet)
    assert again.n_run == 0


@pytest.mark.parametrize(
    "extra, expected",
    [
        ('[[axes]]\npath = "recommender.minors_mode.cap_under_16_minutes"\nrole = "uncertainty"\nname = "c2"\n'
         "values = [50.0]\n", "set the same setting"),
        ('[[axes]]\npath = "seed"\nrole = "lever"\nvalues = [1, 2]\n', "used by the result tables"),
    ],
)  # fmt: skip
def test_conflicting_axes_are_refused(tmp_path, extra, expected):
    sweep = _sweep_file(tmp_path, extra_axes=extra)
    with pytest.raises(ScenarioError, match=expected):
        load_sweep(sweep)


def test_sobol_with_no_outcomes_reports_instead_of_crashing(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(f'name = "s"\nbase = "{BASE}"\ndesign = "sobol"\nsobol_samples = 2\noutcomes = ["minutes_per_day"]\n'
                    '[[axes]]\npath = "behaviour.habit_cue"\nrole = "uncertainty"\nrange = [0.0, 1.0]\n')  # fmt: skip
    spec, _ = load_sweep(path)
    empty = pd.DataFrame(columns=["experiment_id", "outcome", "cohort", "value"])
    exps = pd.DataFrame(columns=["experiment_id", "design_point", "replication", "status", "behaviour__habit_cue"])
    table = sobol_indices(spec, exps, empty)
    assert "error" in table.columns and len(table) == 0

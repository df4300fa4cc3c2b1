"""Art. 28 decision log: exactly the run's decisions, no effect on the run, atomic, replayable, audited."""

import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from audits.logs import LogEvidence, log_estimators
from audits.metrics import Estimator
from sim.cli import main
from sim.decision_log import (
    DecisionLogError,
    algorithm_fingerprint,
    log_dirs,
    open_kind,
    read_log,
    replay,
    without_decision_log,
)
from sim.engine import FeedWorld
from sim.fleet.state import O_CANCELLED, O_DELIVERED
from sim.kernels import layout as L
from sim.scenario import ScenarioError, scenario_from_dict


def _data(path=None, **log):
    d = {
        "seed": 5,
        "population": {"n_users": 300},
        "catalogue": {"n_items": 400},
        "clock": {"days": 2},
        "recommender": {"kind": "engagement"},
        "market": {},
        "pricer": {"kind": "personalised"},
        "fleet": {"n_workers": 25, "orders": "market"},
    }
    if path is not None:
        d["decision_log"] = {"enabled": True, "path": str(path), "batch_rows": 5_000, **log}
    return d


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    root = tmp_path_factory.mktemp("decisions")
    world = FeedWorld(scenario_from_dict(_data(root)))
    rec = world.run()
    return world, rec, root / "replication=0"


def _copy(log_dir, tmp_path):
    dst = tmp_path / "replication=0"
    shutil.copytree(log_dir, dst)
    return dst


def test_log_holds_exactly_the_runs_decisions(logged):
    world, rec, log_dir = logged
    meta = read_log(log_dir)
    slates = open_kind(log_dir, "slate").to_table()
    quotes = open_kind(log_dir, "quote").to_table()
    orders = open_kind(log_dir, "dispatch").to_table()
    assert slates.num_rows == world.agent_steps == meta["kinds"]["slate"]["rows"] > 0
    assert quotes.num_rows == rec.market.summary.n_total > 0
    assert rec.market.quotes is None and world.market._log_n == 0  # written, then released by the market
    assert orders.num_rows == rec.fleet.orders["status"].size > 0
    # one row per decision: keys are unique
    key = np.asarray(slates["step"]).astype(np.int64) * 1000 + np.asarray(slates["user_idx"])
    assert np.unique(key).size == key.size
    assert np.array_equal(np.sort(np.asarray(orders["order_idx"])), np.arange(orders.num_rows))
    # the outputs are the run's: minutes watched and quoted prices
    minutes = float(np.asarray(slates["minutes"], dtype=np.float64).sum())
    assert minutes == pytest.approx(float(rec.user_days[..., L.MINUTES].sum(dtype=np.float64)), rel=1e-5)
    logged_user = np.asarray(quotes["user_idx"]).astype(np.int64)
    assert np.array_equal(np.bincount(logged_user, minlength=rec.n_users), rec.market.summary["n_quotes"])
    bought = np.asarray(quotes["outcome"]) == 1
    assert np.array_equal(np.bincount(logged_user[bought], minlength=rec.n_users), rec.market.summary["n_bought"])
    # a slate is shown from its own candidates, in rank order of its scores
    row = slates.slice(0, 1).to_pylist()[0]
    shown = [i for i in row["slate"] if i >= 0]
    assert set(shown) <= set(row["candidates"]) and row["scores"] is not None
    st = np.asarray(orders["status"])
    assert np.array_equal(np.asarray(orders["finished"]), (st == O_DELIVERED) | (st == O_CANCELLED))


def test_logging_does_not_change_the_run(logged, tmp_path):
    world, rec, _ = logged
    plain = FeedWorld(scenario_from_dict(_data()))
    assert plain.fused  # the unlogged run ranks inside the kernel; the logged one through score()
    assert not world.fused
    other = plain.run()
    assert np.array_equal(other.user_days, rec.user_days)
    assert np.array_equal(other.feed_days, rec.feed_days, equal_nan=True)  # NaN: no views that day
    for k, v in other.market.summary.sums.items():
        assert np.array_equal(v, rec.market.summary[k]), k
    for k, v in other.fleet.orders.items():
        assert np.array_equal(v, rec.fleet.orders[k], equal_nan=v.dtype.kind == "f"), k


def test_partitions_and_metadata_are_readable(logged):
    world, _, log_dir = logged
    dset = ds.dataset(log_dir / "kind=slate", format="parquet", partitioning="hive")
    days = set(dset.to_table(columns=["day"])["day"].to_pylist())
    assert days == {0, 1}
    assert len(list((log_dir / "kind=slate" / "day=0").glob("part-*.parquet"))) > 1  # written in batches
    meta = json.loads((log_dir / "retention.json").read_text())
    assert meta["complete"] and meta["seed"] == 5 and meta["manifest"] == "manifest.json"
    for kind, legal in (("slate", 180), ("quote", 1095), ("dispatch", 1095)):
        info = meta["kinds"][kind]
        assert info["retention_days"] == info["legal_minimum_days"] == legal and "Art." in info["legal_source"]
        assert sum(info["rows_by_hour"]) == info["rows"]
    version = algorithm_fingerprint(world.recommender, world.recommender_label)["version"]
    assert meta["kinds"]["slate"]["algorithm"]["version"] == version
    assert set(dset.to_table(columns=["algorithm_version"])["algorithm_version"].to_pylist()) == {version}
    man = json.loads((log_dir / "manifest.json").read_text())
    assert man["scenario"]["recommender"]["kind"] == "engagement" and "git_commit" in man


def test_fingerprint_follows_code_and_parameters():
    from sim.builtin.recommenders import EngagementMax, Popularity

    a = algorithm_fingerprint(EngagementMax(), "e")
    assert a["version"] == algorithm_fingerprint(EngagementMax(), "e")["version"]
    assert a["version"] != algorithm_fingerprint(EngagementMax(sharpness=2.0), "e")["version"]
    assert a["source_sha256"] != algorithm_fingerprint(Popularity(), "e")["source_sha256"]


def test_replay_reproduces(logged):
    report = replay(logged[2], days=1)
    assert report.ok, report.lines()
    assert report.resimulated["slate"].logged > 0 and report.resimulated["quote"].logged > 0
    assert report.recomputed["checked"] == logged[0].agent_steps


def _rewrite_first_part(log_dir, kind, change):
    part = sorted((log_dir / f"kind={kind}" / "day=0").glob("part-*.parquet"))[0]
    table = pq.read_table(part)
    pq.write_table(change(table), part)


def test_replay_detects_a_tampered_row(logged, tmp_path):
    log_dir = _copy(logged[2], tmp_path)

    def more_minutes(t):
        m = np.asarray(t["minutes"]).copy()
        j = int(np.flatnonzero(m > 0)[0])
        m[j] += 1.0
        return t.set_column(t.schema.get_field_index("minutes"), "minutes", pa.array(m))

    _rewrite_first_part(log_dir, "slate", more_minutes)
    report = replay(log_dir, days=1)
    assert not report.ok
    c = report.resimulated["slate"]
    assert c.mismatched == 1 and c.columns == {"minutes": 1} and report.recomputed["mismatched"] == 0
    assert any("minutes" in line for line in report.lines())


def test_recompute_detects_a_reordered_slate(logged, tmp_path):
    log_dir = _copy(logged[2], tmp_path)

    def swap(t):
        s = np.asarray(t["slate"].combine_chunks().flatten()).reshape(t.num_rows, -1).copy()
        j = int(np.flatnonzero(s[:, 1] >= 0)[0])
        s[j, [0, 1]] = s[j, [1, 0]]
        arr = pa.FixedSizeListArray.from_arrays(pa.array(s.reshape(-1)), s.shape[1])
        return t.set_column(t.schema.get_field_index("slate"), "slate", arr)

    _rewrite_first_part(log_dir, "slate", swap)
    report = replay(log_dir, resimulate=False)
    assert report.recomputed["mismatched"] == 1 and not report.ok


def test_replay_detects_a_deleted_quote(logged, tmp_path):
    log_dir = _copy(logged[2], tmp_path)
    _rewrite_first_part(log_dir, "quote", lambda t: t.slice(1))
    c = replay(log_dir, days=1, recompute=False).resimulated["quote"]
    assert c.extra == 1 and c.mismatched == 0  # the re-run made a decision the log lacks


def test_interrupted_write_leaves_no_complete_log(tmp_path):
    world = FeedWorld(scenario_from_dict(_data(tmp_path, batch_rows=1_000)))
    for _ in range(world.ticks_per_day + 10):  # past the first midnight: parts were written
        world.step()
    assert not world.decision_log.closed and world.decision_log.rows["slate"] > 0
    assert not (tmp_path / "replication=0").exists()
    assert log_dirs(tmp_path) == []
    with pytest.raises(DecisionLogError, match="no complete decision log"):
        read_log(world.decision_log.stage_dir)
    assert world.decision_log.stage_dir.name.startswith(".")  # dataset readers skip it
    assert ds.dataset(tmp_path, format="parquet").files == []


def test_a_new_log_replaces_an_old_one_atomically(tmp_path):
    for seed in (1, 2):
        data = _data(tmp_path)
        data.update(seed=seed, clock={"days": 1}, population={"n_users": 100}, fleet=None, market=None)
        FeedWorld(scenario_from_dict(data)).run()
        assert read_log(tmp_path / "replication=0")["seed"] == seed
    assert [p.name for p in tmp_path.iterdir()] == ["replication=0"]


@pytest.mark.parametrize(
    "table, words",
    [
        ({"enabled": "maybe"}, "decision_log.enabled"),
        ({"kinds": ["slates"]}, "decision_log.kinds.0"),
        ({"kinds": []}, "kinds is empty"),
        ({"retention_days": {"slate": 0}}, "decision_log.retention_days.slate"),
        ({"retention_days": {"quotes": 1000}}, "did you mean 'quote'"),
        ({"retension_days": 10}, "did you mean 'retention_days'"),
        ({"candidates": False}, "scores = true needs candidates"),
        ({"batch_rows": 10}, "decision_log.batch_rows"),
    ],
)
def test_bad_decision_log_table_is_a_clear_error(table, words):
    with pytest.raises(ScenarioError, match=words.replace(".", r"\.")):
        scenario_from_dict({"decision_log": table}, source="s.toml")


def test_retention_defaults_are_the_legal_minima():
    st = scenario_from_dict({"decision_log": {"enabled": True, "retention_days": {"slate": 400}}}).decision_log
    assert st.retention_days == {"slate": 400, "quote": 1095, "dispatch": 1095}
    assert not without_decision_log(scenario_from_dict({"decision_log": {"enabled": True}})).decision_log.enabled


def test_no_log_fails_completeness_and_retention(logged):
    _, rec, _ = logged
    est = log_estimators(None, rec, Estimator)
    for kind in ("slate", "quote", "dispatch"):
        assert est[("unlogged_decision_share", kind)].value() == 1.0
        assert est[("replay_mismatch_share", kind)].undefined_reason
    assert est[("log_retention_days", "slate")].value() == 0.0
    assert est[("transaction_log_retention_days", "quote")].value() == 0.0


def test_partial_log_is_measured_as_incomplete(logged):
    _, rec, log_dir = logged
    n = rec.agent_steps
    ev = LogEvidence(log_dir, {"slate": True, "quote": False, "dispatch": False}, {"slate": n, "quote": 0, "dispatch": 0},
                     rows={"slate": n - 10}, complete_rows={"slate": n - 10}, retention_days={"slate": 90})  # fmt: skip
    est = log_estimators(ev, rec, Estimator)
    assert est[("unlogged_decision_share", "slate")].value() == pytest.approx(10 / n)
    assert est[("log_retention_days", "slate")].value() == 90.0
    assert est[("unlogged_decision_share", "quote")].undefined_reason


def test_audit_reports_art_28(tmp_path):
    from audits.audit import article_verdicts, run_audit

    data = _data(tmp_path)
    data.update(clock={"days": 1}, population={"n_users": 200}, fleet=None, market=None)
    result = run_audit(scenario_from_dict(data), workers=1)
    f = {(x.metric, x.cohort): x for x in result.findings if x.article == 28}
    assert f[("unlogged_decision_share", "slate")].verdict == "pass"
    assert f[("replay_mismatch_share", "slate")].verdict == "pass"
    assert f[("unlogged_decision_share", "quote")].n_users == 0  # no market: out of scope
    assert article_verdicts(result.findings)[28] == "pass"
    assert log_dirs(tmp_path) == [tmp_path / "replication=0"]  # the counterfactual kept no log
    plain = run_audit(without_decision_log(scenario_from_dict(data)), workers=1)
    assert article_verdicts(plain.findings)[28] == "fail"


def test_cli_run_with_decision_log_and_verify(tmp_path, capsys):
    sc = tmp_path / "s.toml"
    sc.write_text("seed = 2\n[population]\nn_users = 150\n[catalogue]\nn_items = 300\n[clock]\ndays = 1\n")
    out = tmp_path / "out"
    assert main(["run", str(sc), "--out", str(out), "--decision-log", "--no-progress"]) == 0
    assert read_log(out / "decisions" / "replication=0")["kinds"]["slate"]["rows"] > 0
    assert main(["verify-log", str(out / "decisions")]) == 0
    _rewrite_first_part(out / "decisions" / "replication=0", "slate", lambda t: t.slice(1))
    assert main(["verify-log", str(out / "decisions")]) == 3
    assert main(["verify-log", str(tmp_path)]) == 2
    assert "not reproduced" in capsys.readouterr().out

"""Replay audit ("bring your own logs"): schema checks, the replay against the kernel, determinism, CLI."""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from audits.catalogue import load_catalogue
from audits.replay import replay_audit, replay_estimators
from sim.kernels import feed
from sim.kernels import layout as L
from sim.replay import (
    counterfactual_slates,
    load_logs,
    replay,
    replay_population,
    replay_scenario,
)
from sim.rng import root_key
from sim.scenario import COHORTS, ScenarioError, load_scenario, scenario_from_dict
from sim.state import N_MINHASH

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_SOURCE = ROOT / "scenarios" / "replay_example"
EXAMPLE_SCENARIO = EXAMPLE_SOURCE / "scenario.toml"


def _make_example():
    """The example's generator module (scenarios/replay_example/make_example.py)."""
    sys.path.insert(0, str(EXAMPLE_SOURCE))
    try:
        import make_example
    finally:
        sys.path.remove(str(EXAMPLE_SOURCE))
    return make_example


# The example's Parquet logs are not tracked (results and data files are rebuilt, not committed): the tests
# build them once, deterministically, from the script a user runs too.
EXAMPLE = Path(tempfile.mkdtemp(prefix="recaudit-replay-example-"))
_make_example().main(EXAMPLE)
TZ = "Asia/Shanghai"


# -- a tiny hand-made log ------------------------------------------------------------------------------


def _items() -> dict:
    rng = np.random.default_rng(3)
    return {
        "item_id": pa.array([11, 12, 13, 14, 15, 16], pa.int64()),
        "embedding": pa.array(
            [list(r) for r in rng.standard_normal((6, 4)).astype(np.float32)], pa.list_(pa.float32())
        ),  # fmt: skip
        "category": pa.array([1, 1, 2, 2, 7, 7], pa.int64()),
        "harmful": pa.array([False, True, False, False, True, False]),
        "length_minutes": pa.array([1.0, 2.0, 0.5, 3.0, 1.5, 0.8], pa.float32()),
        "hook": pa.array([0.1, 1.2, 0.0, 0.3, 0.9, 0.2], pa.float32()),
        "creator_id": pa.array([5, 5, 6, 6, 7, 8], pa.int64()),
        "published": pa.array(
            pd.to_datetime(
                [
                    "2024-05-31 08:00",
                    "2024-05-31 09:00",
                    "2024-06-01 09:00",
                    "2024-06-01 21:00",
                    "2024-06-02 08:00",
                    "2024-05-30 00:00",
                ]
            ).tz_localize(TZ),
            pa.timestamp("s", tz=TZ),
        ),  # fmt: skip
    }


_REQUESTS = [  # user, local time, slate, cohort, age
    (7, "2024-06-01 10:00", [12, 11, 13], None, 12),
    (7, "2024-06-01 10:01", [14, 15], None, 12),
    (7, "2024-06-01 10:03", [16, 12, 11, 15], None, 12),
    (7, "2024-06-01 23:00", [15, 12], None, 12),
    (7, "2024-06-01 23:02", [12, 15, 16], None, 12),
    (8, "2024-06-02 09:00", [11, 13, 14], "adult", 40),
    (8, "2024-06-02 09:01", [13], "adult", 40),
    (8, "2024-06-02 12:00", [16, 14], "adult", 40),
    (9, "2024-06-01 20:00", [11, 12], None, None),
    (9, "2024-06-02 20:00", [13, 14, 15], None, None),
    (10, "2024-06-02 07:00", [11, 16], None, 67),
]


def _slates() -> dict:
    user, when, slate, cohort, age = zip(*_REQUESTS, strict=True)
    return {
        "user_id": pa.array(user, pa.int64()),
        "time": pa.array(pd.to_datetime(list(when)).tz_localize(TZ), pa.timestamp("s", tz=TZ)),
        "slate": pa.array(slate, pa.list_(pa.int64())),
        "cohort": pa.array(cohort, pa.string()),
        "age": pa.array(age, pa.int16()),
    }


def _write(path, slates=None, items=None):
    path.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(slates if slates is not None else _slates()), path / "slates.parquet")
    pq.write_table(pa.table(items if items is not None else _items()), path / "items.parquet")
    return path


@pytest.fixture
def tiny(tmp_path):
    return _write(tmp_path / "logs")


def _scenario():
    return scenario_from_dict({"name": "tiny", "seed": 11, "audit": {"bootstrap_samples": 50}})


# -- schema -------------------------------------------------------------------------------------------


def _with(table: dict, **changes) -> dict:
    out = dict(table)
    for k, v in changes.items():
        if v is None:
            out.pop(k)
        else:
            out[k] = v
    return out


_N = len(_REQUESTS)
_BAD = [
    ("slates", dict(slate=None), "slates.parquet", "'slate'", "missing column"),
    ("slates", dict(time=pa.array(["2024-06-01 10:00"] * _N)), "slates.parquet", "'time'", "timestamp"),
    ("slates", dict(user_id=pa.array([1.5] * _N)), "slates.parquet", "'user_id'", "int64 or string"),
    ("slates", dict(slate=pa.array([["11"]] * _N)), "slates.parquet", "'slate'", "list<int64>"),
    ("slates", dict(slate=pa.array([[11, 99]] + [[11]] * (_N - 1), pa.list_(pa.int64()))), "slates.parquet",
     "'slate'", "99"),
    ("slates", dict(slate=pa.array([[]] + [[11]] * (_N - 1), pa.list_(pa.int64()))), "slates.parquet", "'slate'",
     "empty"),
    ("slates", dict(slate=pa.array([[11, 12, 11]] + [[11]] * (_N - 1), pa.list_(pa.int64()))), "slates.parquet",
     "'slate'", "repeats"),
    ("slates", dict(cohort=pa.array(["child"] + [None] * (_N - 1), pa.string())), "slates.parquet", "'cohort'",
     "child"),
    ("slates", dict(cohort=pa.array(["minor", "adult"] + [None] * (_N - 2), pa.string())), "slates.parquet",
     "'cohort'", "changes within"),
    ("slates", dict(cohort=pa.array(["adult"] * _N, pa.string())), "slates.parquet", "'cohort' and 'age'",
     "under 18"),
    ("slates", dict(age=pa.array([200] * _N, pa.int16())), "slates.parquet", "'age'", "0 to 120"),
    ("items", dict(embedding=None), "items.parquet", "'embedding'", "missing column"),
    ("items", dict(embedding=pa.array([[1.0, 0.0]] * 5 + [[1.0, 0.0, 0.0]], pa.list_(pa.float32()))),
     "items.parquet", "'embedding'", "same length"),
    ("items", dict(embedding=pa.array([[0.0, 0.0]] + [[1.0, 0.0]] * 5, pa.list_(pa.float32()))), "items.parquet",
     "'embedding'", "all-zero"),
    ("items", dict(length_minutes=pa.array([1.0, -2.0, 1.0, 1.0, 1.0, 1.0], pa.float32())), "items.parquet",
     "'length_minutes'", "(0, 1440]"),
    ("items", dict(item_id=pa.array([11, 11, 13, 14, 15, 16], pa.int64())), "items.parquet", "'item_id'", "repeats"),
    ("items", dict(harmful=pa.array([True, None, False, False, False, False])), "items.parquet", "'harmful'", "null"),
    ("items", dict(category=pa.array(["a"] * 6)), "items.parquet", "'category'", "integer"),
]  # fmt: skip


@pytest.mark.parametrize("table, change, file, column, words", _BAD, ids=[f"{b[0]}-{b[4]}" for b in _BAD])
def test_schema_problem_is_one_clear_line(tmp_path, table, change, file, column, words):
    slates, items = _slates(), _items()
    if table == "slates":
        slates = _with(slates, **change)
    else:
        items = _with(items, **change)
    logs = _write(tmp_path / "logs", slates, items)
    with pytest.raises(ScenarioError) as exc:
        load_logs(logs)
    msg = str(exc.value)
    assert "\n" not in msg, msg
    assert file in msg and column in msg and words in msg and "fix:" in msg, msg


def test_missing_and_unreadable_files(tmp_path, tiny):
    (tiny / "items.parquet").unlink()
    with pytest.raises(ScenarioError, match=r"items\.parquet: no such file; fix"):
        load_logs(tiny)
    (tiny / "items.parquet").write_text("not parquet")
    with pytest.raises(ScenarioError, match=r"items\.parquet: not a readable Parquet"):
        load_logs(tiny)
    with pytest.raises(ScenarioError, match="no such logs directory"):
        load_logs(tmp_path / "nowhere")


def test_several_problems_one_line_each(tmp_path):
    items = _with(_items(), embedding=None, length_minutes=None)
    with pytest.raises(ScenarioError) as exc:
        load_logs(_write(tmp_path / "logs", None, items))
    lines = str(exc.value).splitlines()
    assert len(lines) == 2 and all("items.parquet" in x and "fix:" in x for x in lines)


def test_log_is_read_in_local_time_and_sorted(tiny):
    log = load_logs(tiny)
    assert log.n_users == 4 and log.n_requests == _N and log.n_items == 6 and log.n_days == 2
    assert log.start_date == "2024-06-01" and log.slate_idx.shape == (_N, 4)
    assert log.user_cohort.tolist() == [1, 0, -1, 2] and log.user_age.tolist() == [12, 40, -1, 67]
    first = log.req_user_idx == 0
    assert log.req_hour[first].tolist() == [10, 10, 10, 23, 23]
    assert np.all(np.diff(log.req_minute[first]) > 0)
    # slates keep rank order; ids -> slots
    assert log.item_id[log.slate_idx[0, :3]].tolist() == [12, 11, 13] and log.slate_idx[0, 3] == -1
    assert log.category_id.tolist() == [1, 2, 7] and log.item_category.tolist() == [0, 0, 1, 1, 2, 2]
    np.testing.assert_allclose(np.linalg.norm(log.item_embedding, axis=1), 1.0, rtol=1e-6)
    # a naive timestamp is local time: the same log without a time zone reads the same
    naive = _with(_slates(), time=pa.array(pd.to_datetime([r[1] for r in _REQUESTS]), pa.timestamp("s")))
    log2 = load_logs(_write(tiny.parent / "naive", naive))
    assert np.array_equal(log2.req_minute, log.req_minute)


# -- the replay ---------------------------------------------------------------------------------------


def test_replay_equals_direct_view_step(tiny):
    """One request at a time in time order, straight into the kernel, gives the replay's records bitwise."""
    log = load_logs(tiny)
    sc = replay_scenario(_scenario(), log)
    gap = 30.0
    rec = replay(log, sc, replication=0, session_gap_minutes=gap)

    users = replay_population(log, sc, 0)
    key, beh = root_key(sc.seed, 0), L.pack_behaviour(sc)
    n, dim = log.n_users, log.item_embedding.shape[1]
    hook = log.item_hook
    day_stats = np.zeros((n, L.N_DAY), dtype=np.float32)
    cat_counts = np.zeros((n, 3), dtype=np.uint16)
    imp = np.zeros((n, dim), dtype=np.float32)
    minhash = np.full((n, N_MINHASH), np.iinfo(np.uint32).max, dtype=np.uint32)
    user_hat = np.zeros((n, dim), dtype=np.float32)
    days = np.zeros((2, n, L.N_DAY), dtype=np.float32)
    seen = {}  # user -> (ordinal of the next request, minute of the previous request, of the last view, day)
    for row in np.argsort(log.req_minute, kind="stable"):
        u, t, d = int(log.req_user_idx[row]), float(log.req_minute[row]), int(log.req_day[row])
        k, prev, last, day = seen.get(u, (0, None, None, d))
        if day != d:
            days[day, u] = day_stats[u]
            day_stats[u] = 0.0
        if prev is None or t - prev > gap:
            users.in_session_mask[u] = True
            users.streak_minutes[u] = users.since_prompt_minutes[u] = 0.0
            users.session[u, L.S_ALERTED] = 0.0
            day_stats[u, L.SESSIONS] += 1
        seen[u] = (k + 1, t, last, d)
        if not users.in_session_mask[u]:
            continue
        if last is not None:
            decay = 0.5 ** ((t - last) / (1440.0 * sc.behaviour.habit_half_life_days))
            users.true_habit[u] = np.float32(np.float64(users.true_habit[u]) * decay)
        seen[u] = (k + 1, t, t, d)
        slate = log.slate_idx[row][log.slate_idx[row] >= 0]
        cand = slate[None, :].astype(np.int32)
        scores = np.arange(slate.size, 0, -1, dtype=np.float32)[None, :]
        inf = np.full(1, np.inf, dtype=np.float32)
        out = np.empty(1, np.int32), np.empty(1, np.float32), np.empty((1, slate.size), np.int32)
        feed.view_step(
            key, k, bool(log.req_hour[row] >= 22 or log.req_hour[row] < 6), np.array([u], np.int64), cand, scores,
            inf, inf, slate.size, beh, log.item_embedding, log.item_category, log.item_harmful_mask,
            log.item_quality if log.item_quality is not None else np.zeros(6, np.float32), hook,
            log.item_length_minutes, feed.item_signatures(log.item_id, N_MINHASH), users.true_interest,
            users.session, users.in_session_mask, user_hat, day_stats, cat_counts, imp, minhash, *out,
        )  # fmt: skip
        assert np.array_equal(out[2][0], slate)  # the logged slate, in the logged order
    for u, (_, _, _, d) in seen.items():
        days[d, u] = day_stats[u]
    assert np.array_equal(rec.user_days, days)
    assert np.array_equal(rec.minhash, minhash) and np.array_equal(rec.imp_emb_sum, imp)
    assert np.array_equal(rec.true_interest, users.true_interest)
    assert np.array_equal(rec.extra["true_habit"], users.true_habit)
    assert rec.day_column("sessions").sum() == 7  # 7 morning and night, 8 morning and noon, 9 two days, 10 once
    assert rec.day_column("impressions").sum() > 0


def test_logged_cohort_and_age_fix_the_simulated_user(tiny):
    log = load_logs(tiny)
    sc = replay_scenario(_scenario(), log)
    for r in range(4):
        users = replay_population(log, sc, r)
        assert users.cohort[0] == 1 and users.age[0] == 12  # age 12: a minor
        assert users.cohort[1] == 0 and users.age[1] == 40
        lo, hi = [(18, 59), (sc.population.minor_age_min, sc.population.minor_age_max), (60, 85)][users.cohort[2]]
        assert lo <= users.age[2] <= hi and not users.opt_out_mask.any()
        assert users.cohort[3] == 2 and users.age[3] == 67  # an age alone gives its band's cohort


def test_counterfactual_slates(tiny):
    log = load_logs(tiny)
    lengths = log.slate_lengths
    uni = counterfactual_slates(log, "uniform", 5)
    assert np.array_equal((uni >= 0).sum(axis=1), lengths)
    for row in uni:
        shown = row[row >= 0]
        assert np.unique(shown).size == shown.size
    assert np.array_equal(uni, counterfactual_slates(log, "uniform", 5))
    chrono = counterfactual_slates(log, "chronological", 5)
    for r in range(log.n_requests):
        shown = chrono[r][chrono[r] >= 0]
        pub = log.item_published_minute[shown]
        assert np.all(pub <= log.req_minute[r]) and np.all(np.diff(pub) <= 0)
        newer = np.flatnonzero(log.item_published_minute <= log.req_minute[r])
        assert shown.size == min(lengths[r], newer.size)
    assert np.array_equal(counterfactual_slates(log, "logged", 5), log.slate_idx)
    no_pub = load_logs(_write(tiny.parent / "nopub", None, _with(_items(), published=None)))
    with pytest.raises(ScenarioError, match="'published'"):
        counterfactual_slates(no_pub, "chronological", 5)


def test_do_nothing_counterfactual_is_exactly_zero():
    res = replay_audit(EXAMPLE, EXAMPLE_SCENARIO, counterfactual="logged", replications=2)
    assert all(np.array_equal(a.user_days, b.user_days) for a, b in zip(res.records, res.counterfactual_records))
    diffs = {"minutes_mean_uplift", "minutes_p90_uplift", "compulsive_share_increase", "regret_minutes_increase",
             "homogenisation_increase", "creator_gini_increase", "night_minutes_increase",
             "harmful_impression_share_increase", "feed_entropy_difference"}  # fmt: skip
    got = [f for f in res.findings if f.metric in diffs and f.value is not None]
    assert {f.metric for f in got} == diffs
    assert all(f.value == 0.0 and f.ci_low == 0.0 and f.ci_high == 0.0 for f in got)


def test_replay_is_deterministic_and_seeded():
    a = replay_audit(EXAMPLE, EXAMPLE_SCENARIO, replications=2)
    b = replay_audit(EXAMPLE, EXAMPLE_SCENARIO, replications=2)
    assert [f.to_dict() for f in a.findings] == [f.to_dict() for f in b.findings]
    for x, y in zip(a.records + a.counterfactual_records, b.records + b.counterfactual_records):
        assert x.user_days.tobytes() == y.user_days.tobytes() and x.minhash.tobytes() == y.minhash.tobytes()
    c = replay_audit(EXAMPLE, EXAMPLE_SCENARIO, replications=2, seed=7)
    assert c.records[0].user_days.tobytes() != a.records[0].user_days.tobytes()
    # replications draw different populations
    assert a.records[0].true_intended_minutes.tobytes() != a.records[1].true_intended_minutes.tobytes()


def test_example_shows_what_the_logged_system_does_to_minors():
    res = replay_audit(EXAMPLE, EXAMPLE_SCENARIO, replications=3)
    f = {(x.metric, x.cohort, x.article): x for x in res.findings}
    assert f[("harmful_impression_share", "minor", 18)].verdict == "fail"
    assert f[("harmful_impression_share_increase", "minor", 18)].ci_low > 0.1
    assert f[("night_minutes_increase", "minor", 18)].ci_low > 0
    assert f[("minutes_mean_uplift", "minor", 8)].verdict == "fail"
    assert f[("optout_profile_alignment", "opted_out", 17)].n_users == 0  # not in logs: out of the verdicts
    s = res.summary()
    assert s["requests"] == res.log.n_requests and 0 <= s["logged"]["truncated_session_share"] <= 1


def test_estimators_cover_the_feed_catalogue(tiny):
    log = load_logs(tiny)
    sc = replay_scenario(_scenario(), log)
    t = replay(log, sc)
    est = replay_estimators(t, t, load_catalogue(), np.random.default_rng(0))
    assert est[("night_minutes_increase", "minor")].value() == 0.0
    assert est[("minutes_per_day", "all")].value() == pytest.approx(t.day_column("minutes").mean())


# -- the example and the command line -----------------------------------------------------------------------


def test_shipped_example_is_small_and_rebuilt_exactly(tmp_path):
    for name in ("slates.parquet", "items.parquet"):
        assert (EXAMPLE / name).stat().st_size < 1_000_000
    _make_example().main(tmp_path)
    for name in ("slates.parquet", "items.parquet"):
        assert pq.read_table(tmp_path / name).equals(pq.read_table(EXAMPLE / name)), name
    log = load_logs(EXAMPLE)
    assert 200 <= log.n_users <= 1000 and 2_000 <= log.n_requests <= 20_000 and log.n_days == 2
    assert (np.bincount(log.user_cohort + 1, minlength=4)[1:] > 0).all()  # every cohort, and unknown users
    assert (log.user_cohort < 0).any()


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "sim.cli", "replay", *map(str, args)], capture_output=True,
                          text=True, timeout=300, cwd=cwd)  # fmt: skip


def test_cli_replay_on_the_example(tmp_path):
    out = tmp_path / "replay"
    proc = _cli(EXAMPLE, "--scenario", EXAMPLE_SCENARIO, "--out", out, "--replications", "2")
    assert proc.returncode == 0, proc.stderr
    assert "Art. 18: FAIL" in proc.stdout and "Art. 17" not in proc.stdout
    for name in ("findings.json", "report.html", "replay_daily.parquet", "manifest.json"):
        assert (out / name).is_file(), name
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    findings = json.loads((out / "findings.json").read_text())
    assert all(f["replications"] == 2 and f["verdict"] in ("pass", "fail", "undefined") for f in findings)
    assert {"harmful_impression_share", "night_minutes_per_day", "feed_entropy_change"} <= {
        f["metric"] for f in findings
    }
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counterfactual"] == "uniform" and len(manifest["logs"]["slates_sha256"]) == 64
    assert manifest["replay"]["requests"] == load_logs(EXAMPLE).n_requests
    daily = pd.read_parquet(out / "replay_daily.parquet")
    assert set(daily["arm"]) == {"logged", "counterfactual:uniform"} and set(daily["cohort"]) == set(COHORTS)
    assert len(daily) == 2 * 2 * 2 * 3  # arms x replications x days x cohorts
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64") >= 3 and "Verdicts by article" in html and "The log" in html


def test_cli_bad_file_exits_2_and_writes_nothing(tmp_path):
    logs = _write(tmp_path / "logs", _with(_slates(), time=pa.array(["2024-06-01 10:00"] * _N)))
    out = tmp_path / "out"
    proc = _cli(logs, "--scenario", EXAMPLE_SCENARIO, "--out", out)
    assert proc.returncode == 2, proc.stderr
    assert "slates.parquet" in proc.stderr and "'time'" in proc.stderr and "fix:" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not out.exists() or not list(out.iterdir())
    bad_cf = _cli(tiny_no_pub := _write(tmp_path / "nopub", None, _with(_items(), published=None)), "--scenario",
                  EXAMPLE_SCENARIO, "--out", out, "--counterfactual", "chronological")  # fmt: skip
    assert bad_cf.returncode == 2 and "'published'" in bad_cf.stderr, (tiny_no_pub, bad_cf.stderr)


def test_scenario_errors_propagate():
    with pytest.raises(ScenarioError, match="no such scenario"):
        replay_audit(EXAMPLE, ROOT / "scenarios" / "nope.toml")
    with pytest.raises(ScenarioError, match="counterfactual"):
        replay_audit(EXAMPLE, load_scenario(EXAMPLE_SCENARIO), counterfactual="popular")

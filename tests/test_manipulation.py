"""Art. 14: bot accounts, the hot list, and the manipulation findings (sim/bots.py, sim/hotlist.py,
audits/manipulation.py)."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from audits.audit import articles_in_scope, run_audit
from audits.manipulation import MANIPULATION_METRICS, manipulation_estimators
from audits.metrics import Estimator
from sim.bots import bot_free_scenario
from sim.builtin.recommenders import Chronological, HotListFeed
from sim.engine import FeedWorld, simulate
from sim.hotlist import top_items
from sim.kernels import layout as L
from sim.platform import PlatformView
from sim.scenario import ScenarioError, scenario_from_dict

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"


def _scenario(kind="chronological", bots=None, hot_list=None, days=2, n_users=300, seed=11):
    rec = {"kind": kind}
    if hot_list is not None:
        rec["hot_list"] = hot_list
    data = {
        "seed": seed,
        "population": {"n_users": n_users},
        "catalogue": {"n_items": 600, "new_items_per_day": 30},
        "clock": {"days": days},
        "recommender": rec,
    }
    if bots is not None:
        data["bots"] = bots
    return scenario_from_dict(data)


class _LogRecorder:
    """Keep every tick's log as the platform counts it (attached after the campaign, so with its fake views)."""

    def __init__(self):
        self.ticks = []

    def on_tick(self, world, log):
        self.ticks.append(
            dict(tick=world.tick, item=log.item_idx.copy(), minutes=log.minutes.astype(np.float64),
                 uid=world.items.uid[log.item_idx].copy(), slot_uid=world.items.uid.copy(),
                 real=int((log.user_idx < world.users.n_users).sum()))
        )  # fmt: skip


def _run(sc, ticks=None, recorder=None):
    w = FeedWorld(sc)
    if recorder is not None:
        w.add_observer(recorder)
    for _ in range(ticks if ticks is not None else w.n_ticks):
        w.step()
    return w


def test_fake_views_reach_the_platform_but_not_the_users():
    # A chronological feed does not read views, and a hot list with no feed slots is not shown: the fake views
    # change the platform's counts and nothing any user sees or does.
    bots = {"n_bots": 40, "n_targets": 2, "choose": "random", "start_day": 0, "start_hour": 6,
            "views_per_bot_hour": 3.0}  # fmt: skip
    hot = {"size": 10, "feed_slots": 0}
    sc = _scenario(bots=bots, hot_list=hot, days=1)
    tpd = sc.ticks_per_day
    botted, free = _run(sc, ticks=tpd - 1), _run(bot_free_scenario(sc), ticks=tpd - 1)  # before the midnight decay
    m = botted.manipulation
    assert m.fake_made.sum() > 0 and m.fake_caught.sum() == 0
    # users' own records are bitwise those of the bot-free world
    for name in ("day_stats", "cat_counts", "imp_emb_sum", "minhash"):
        assert np.array_equal(getattr(botted, name), getattr(free, name)), name
    assert np.array_equal(botted.platform.user_hat, free.platform.user_hat)
    # the platform's view counts differ by exactly the accepted fake views, on the targets only
    gap = botted.platform.item_views_hat.astype(np.float64) - free.platform.item_views_hat
    expected = np.zeros_like(gap)
    expected[m.targets] = m.fake_accepted.sum(axis=0)
    assert np.array_equal(gap, expected)
    assert expected[m.targets].min() > 0
    # the fake views reach the hot list: a target is listed, scored by fake views the real users never made
    rec = m.record()
    assert rec.hot_target_mask.any() and rec.hot_fake_scores.sum() > 0
    assert free.manipulation.record().hot_fake_scores.sum() == 0


def test_zero_bots_is_exactly_no_manipulation():
    # a campaign of zero accounts paired with the bot-free run: the same run, so exactly 1 and exactly 0
    bots = {"n_bots": 0, "n_targets": 3, "choose": "newest", "start_day": 0, "start_hour": 9}
    sc = _scenario(kind="engagement", bots=bots, hot_list={"size": 10})
    res = run_audit(sc, replications=1, workers=1)
    f = {x.metric: x for x in res.findings if x.article == 14}
    assert set(f) == set(MANIPULATION_METRICS)
    idx = f["over_recommendation_index"]
    assert idx.value == 1.0 and idx.ci_low == 1.0 and idx.ci_high == 1.0 and idx.verdict == "pass"
    disp = f["rank_displacement"]
    assert disp.value == 0.0 and disp.ci_low == 0.0 and disp.ci_high == 0.0
    assert f["hotlist_share_increase"].value == 0.0 and f["hotlist_share_increase"].verdict == "pass"
    assert f["bot_detection_recall"].value is None  # no fake view made
    assert f["rank_displacement_per_1k_fake_views"].verdict == "undefined"
    assert 14 in articles_in_scope(res.findings)


def test_no_bots_table_leaves_art14_out_of_scope():
    sc = _scenario(kind="popularity", days=1)
    rec = simulate(sc)
    assert rec.manipulation is None
    est = manipulation_estimators(rec, None, Estimator)
    assert set(k[0] for k in est) == set(MANIPULATION_METRICS)
    assert all(e.mask.sum() == 0 and e.undefined_reason for e in est.values())


@pytest.mark.parametrize("signal", ["views", "minutes"])
def test_hot_list_is_a_plain_recomputation_from_the_logs(signal):
    bots = {"n_bots": 30, "n_targets": 2, "choose": "newest", "start_day": 0, "start_hour": 10,
            "views_per_bot_hour": 4.0, "detection_rate": 0.3}  # fmt: skip
    hot = {"size": 15, "window_hours": 1.5, "signal": signal, "feed_slots": 2}
    sc = _scenario(kind="popularity", bots=bots, hot_list=hot)
    logs = _LogRecorder()
    w = _run(sc, recorder=logs)
    rec = w.manipulation.record()
    n_window = math.ceil(1.5 * 60 / sc.clock.tick_minutes)
    # the log as the platform counted it, event by event with the item's id, then windowed sums by item id
    ev_tick = np.concatenate([np.full(t["item"].size, t["tick"]) for t in logs.ticks])
    ev_uid = np.concatenate([t["uid"] for t in logs.ticks])
    ev_w = np.concatenate([t["minutes"] if signal == "minutes" else np.ones(t["item"].size) for t in logs.ticks])
    checked = 0
    for tick in range(0, w.n_ticks, 7):
        inside = (ev_tick > tick - n_window) & (ev_tick <= tick)
        by_uid = pd.Series(ev_w[inside]).groupby(ev_uid[inside]).sum()
        listed = rec.hot_items[tick][rec.hot_items[tick] >= 0]
        uids = rec.hot_uid[tick][: listed.size]
        assert np.allclose(rec.hot_scores[tick][: listed.size], by_uid.reindex(uids).to_numpy(), rtol=1e-12, atol=0)
        expect = np.sort(by_uid.to_numpy())[::-1][: sc.recommender.hot_list.size]
        assert np.allclose(rec.hot_scores[tick][: listed.size], expect[: listed.size], rtol=1e-12, atol=0)
        assert listed.size == min(sc.recommender.hot_list.size, int((by_uid > 0).sum()))
        if signal == "views":  # integer counts: the very same list, ties to the lower slot
            slot_uid = logs.ticks[tick]["slot_uid"]  # the item in each slot at that tick
            score = by_uid.reindex(slot_uid).fillna(0.0).to_numpy()
            order = np.lexsort((np.arange(score.size), -score))
            plain = order[: sc.recommender.hot_list.size]
            assert np.array_equal(listed, plain[score[plain] > 0])
            assert np.array_equal(listed, top_items(score, sc.recommender.hot_list.size))
        checked += 1
    assert checked > 10
    # the hot list the feed reads is the last one logged
    assert np.array_equal(w.view.hot_list_idx, rec.hot_items[w.n_ticks - 1][rec.hot_items[w.n_ticks - 1] >= 0])


def test_campaign_reaches_the_hot_list_within_the_derived_bound():
    # Bound: the N others with the highest scores hold at most all the real views V_t counted in the window, so
    # a target whose window holds more than V_t / N fake views is listed (pigeonhole). With 4 views an hour per
    # bot and 15-minute ticks each bot makes exactly one view a tick, so the fake views are known exactly.
    n_bots, size = 120, 20
    bots = {"n_bots": n_bots, "n_targets": 1, "choose": "newest", "start_day": 0, "start_hour": 12,
            "views_per_bot_hour": 4.0}  # fmt: skip
    sc = _scenario(kind="popularity", bots=bots, hot_list={"size": size, "window_hours": 1.0, "feed_slots": 1})
    logs = _LogRecorder()
    w = _run(sc, recorder=logs)
    rec = w.manipulation.record()
    start = rec.start_tick
    assert np.all(rec.fake_made[start:] == n_bots) and rec.fake_made[:start].sum() == 0
    n_window = 60 // sc.clock.tick_minutes
    real = np.array([t["real"] for t in logs.ticks], dtype=np.float64)
    bound_tick = None
    for tick in range(start, w.n_ticks):
        fake_in_window = n_bots * (min(tick, start + n_window - 1) - start + 1)
        if fake_in_window > real[max(0, tick - n_window + 1) : tick + 1].sum() / size:
            bound_tick = tick
            break
    assert bound_tick is not None
    bound_minutes = (bound_tick - start + 1) * sc.clock.tick_minutes
    first = np.flatnonzero(rec.hot_target_mask[start:].any(axis=1))
    assert first.size and (first[0] + 1) * sc.clock.tick_minutes <= bound_minutes
    # and it stays listed while the bound holds (the bots keep the pace)
    for tick in range(bound_tick, w.n_ticks):
        if n_bots * n_window > real[tick - n_window + 1 : tick + 1].sum() / size and tick >= start + n_window - 1:
            assert rec.hot_target_mask[tick].any(), tick


def test_fake_view_counts_and_detection_match_their_rates():
    # 2.5 views per bot and tick on average (10 an hour, 15-minute ticks): each bot's count is 2 or 3, so the
    # total over B bots and S ticks has mean 2.5 B S and variance 0.25 B S; caught views are binomial(made, 0.3)
    n_bots, rate, p = 50, 10.0, 0.3
    bots = {"n_bots": n_bots, "n_targets": 4, "target": "creators", "choose": "random", "start_day": 0,
            "start_hour": 0, "views_per_bot_hour": rate, "detection_rate": p}  # fmt: skip
    sc = _scenario(kind="popularity", bots=bots, days=1, n_users=100)
    rec = simulate(sc).manipulation
    ticks = rec.fake_made.size
    made = int(rec.fake_made.sum())
    mean = 2.5 * n_bots * ticks
    assert abs(made - mean) <= 4 * math.sqrt(0.25 * n_bots * ticks)
    assert np.all((rec.fake_made >= 2 * n_bots) & (rec.fake_made <= 3 * n_bots))
    caught = int(rec.fake_caught.sum())
    assert abs(caught / made - p) <= 4 * math.sqrt(p * (1 - p) / made)
    assert rec.fake_accepted.sum() == made - caught
    # creators' campaigns spread over the creators' items: every target creator got views
    assert np.all(rec.fake_accepted.sum(axis=0) > 0)


def test_hot_list_feed_puts_hot_candidates_first():
    n_items = 50
    birth = np.arange(n_items, dtype=np.int32)  # chronological: the highest slot first
    view = PlatformView(n_items=n_items, item_birth_tick=birth, hot_list_idx=np.array([3, 7, 11], dtype=np.int32),
                        slate_size=5)  # fmt: skip
    rec = HotListFeed(inner=Chronological(), slots=2)
    cand = np.array([[40, 3, 11, 20, 7], [1, 2, 30, 31, 32]], dtype=np.int32)
    scores = rec.score(np.array([0, 1]), cand, view)
    order = np.argsort(-scores, axis=1, kind="stable")
    assert list(cand[0][order[0][:3]]) == [3, 7, 40]  # the two best hot ranks, in hot-list order, then the inner order
    assert np.array_equal(order[1], np.argsort(-birth[cand[1]], kind="stable"))  # no hot candidate: inner order
    assert np.isfinite(scores).all()


BAD_BOTS = {
    "unknown_key": ({"n_bot": 5}, "did you mean 'n_bots'"),
    "wrong_type": ({"n_bots": "many"}, "bots.n_bots"),
    "negative_bots": ({"n_bots": -1}, "bots.n_bots"),
    "detection_above_one": ({"detection_rate": 1.5}, "bots.detection_rate"),
    "zero_rate": ({"views_per_bot_hour": 0}, "bots.views_per_bot_hour"),
    "bad_choice": ({"choose": "loudest"}, "bots.choose"),
    "start_after_end": ({"start_day": 2}, "bots.start_day (2) is not before the end of the run"),
    "too_many_targets": ({"n_targets": 601}, "bots.n_targets (601) exceeds the number of items"),
    "too_many_creators": ({"target": "creators", "n_targets": 31}, "exceeds the number of creators (30"),
}


@pytest.mark.parametrize("case", sorted(BAD_BOTS))
def test_bad_bots_table_is_refused_with_the_key_and_the_fix(case):
    table, expected = BAD_BOTS[case]
    with pytest.raises(ScenarioError) as err:
        _scenario(bots=table)
    assert expected in str(err.value)


@pytest.mark.parametrize(
    "table, expected",
    [
        ({"feed_slots": 11}, "hot_list.feed_slots (11) exceeds slate_size (10)"),
        ({"window_hours": 0.1}, "shorter than one tick"),
        ({"sizes": 3}, "did you mean 'size'"),
        ({"signal": "likes"}, "recommender.hot_list.signal"),
    ],
)
def test_bad_hot_list_table_is_refused(table, expected):
    with pytest.raises(ScenarioError) as err:
        _scenario(hot_list=table)
    assert expected in str(err.value)


def test_harmful_campaign_needs_harmful_items():
    data = {"catalogue": {"n_items": 600, "harmful_share": 0.0}, "clock": {"days": 2},
            "bots": {"choose": "harmful"}}  # fmt: skip
    with pytest.raises(ScenarioError, match="no harmful items"):
        scenario_from_dict(data)


def test_cli_bad_bots_exit_2(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[clock]\ndays = 2\n[bots]\nstart_day = 5\n")
    proc = subprocess.run([sys.executable, "-m", "sim.cli", "run", str(path), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "bots.start_day" in proc.stderr and "fix:" in proc.stderr


def test_cli_audit_of_the_shipped_bot_campaign(tmp_path):
    out = tmp_path / "bc"
    proc = subprocess.run(
        [sys.executable, "-m", "sim.cli", "audit", str(SCENARIOS / "bot_campaign.toml"), "--out", str(out),
         "--no-progress"], capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Art. 14: FAIL" in proc.stdout
    html = (out / "report.html").read_text(encoding="utf-8")
    section = html[html.index("id='art14'") :]
    section = section[: section.index("<h2", 10)]
    assert "over_recommendation_index" in section and section.count("<img") >= 2
    assert "| 14 |" in (out / "self_assessment.md").read_text(encoding="utf-8")
    findings = {f["metric"]: f for f in json.loads((out / "findings.json").read_text()) if f["article"] == 14}
    idx = findings["over_recommendation_index"]
    assert idx["verdict"] == "fail" and idx["ci_low"] > 1.2  # the bots bought exposure
    assert findings["rank_displacement"]["ci_low"] > 0
    assert findings["time_to_hotlist_minutes"]["value"] is not None
    hot = pd.read_parquet(out / "hotlist.parquet")
    assert {"tick", "rank", "item_idx", "score", "fake_score", "campaign_target"} <= set(hot.columns)
    assert hot["campaign_target"].any() and (hot["rank"] <= 20).all()
    # the users' own records in the audit's tables hold only real views
    users = pd.read_parquet(out / "users.parquet")
    assert len(users) == 500 and (users["views"] >= 0).all()


def test_manipulation_record_keeps_users_views_real():
    # the per-user exposure counters are of real users' slates only: their impressions equal the users' own
    bots = {"n_bots": 20, "n_targets": 2, "choose": "random", "start_day": 0, "start_hour": 0}
    sc = _scenario(kind="popularity", bots=bots, days=1)
    rec = simulate(sc)
    m = rec.manipulation
    own = rec.day_column("impressions").sum(axis=0)
    assert np.array_equal(m.user_impressions, own.astype(np.float64))
    minutes = rec.user_days[..., L.MINUTES].sum(axis=0)
    assert np.allclose(m.user_minutes, minutes, rtol=1e-4)


def test_exposure_quotient_of_a_resample_without_organic_exposure():
    from audits.manipulation import _quotient

    assert _quotient(0.2, 0.1) == pytest.approx(2.0)
    assert _quotient(0.2, 0.0) == math.inf  # shown only with the bots: an infinite over-recommendation index
    assert math.isnan(_quotient(0.0, 0.0))  # nothing shown either way

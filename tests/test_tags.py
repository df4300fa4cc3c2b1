"""Art. 10 tags and Art. 17 tag deletion: the platform's tags follow from its logs, the attribution is exact,
compliant platforms show exactly zero harmful- or deleted-tag-driven items and non-compliant ones do not, bad
[tags] input is refused with the key and the fix, and the shipped scenario audits with an Art. 10 section."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from audits.metrics import Estimator
from audits.tags_metrics import tag_estimators
from sim.builtin.recommenders import DiversityReranker, MinorsMode, TagTargeting
from sim.engine import FeedWorld
from sim.platform import PlatformView
from sim.scenario import ScenarioError, load_scenario, scenario_from_dict
from sim.tags import find_targeting, select_tags, top_slate_mask, update_tag_counts

SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "tag_targeting.toml"


def _small(n_users=160, days=2, delete_day=1, delete_hour=0, delete_share=0.5, **tags):
    """The shipped scenario, smaller; ``tags`` override [recommender.tags]."""
    data = load_scenario(SCENARIO).model_dump()
    data["population"]["n_users"] = n_users
    data["clock"]["days"] = days
    data["catalogue"].update(n_items=400, new_items_per_day=20)
    data["recommender"]["tags"].update(tags)
    data["tags"].update(delete_day=delete_day, delete_hour=delete_hour, delete_share=delete_share)
    return scenario_from_dict(data)


def _run(sc):
    world = FeedWorld(sc)
    world.run()
    return world, world.tags.evidence()


# ---- the platform's tags ---------------------------------------------------------------------------------------


class _LogTap:
    """Keep every tick's log as the platform receives it."""

    def __init__(self):
        self.logs = []

    def on_tick(self, world, log):
        self.logs.append((world.tick, log.user_idx.copy(), log.item_idx.copy(), log.minutes.copy(),
                          world.items.category.copy()))  # fmt: skip


def test_tags_equal_a_plain_recomputation_from_the_logs():
    sc = _small(n_users=80, days=1, delete_share=0.0, use_harmful_tags=False)
    world = FeedWorld(sc)
    tap = _LogTap()
    world.add_observer(tap)
    world.run()
    tw = find_targeting(world.recommender)
    st = sc.recommender.tags
    n, n_cat = world.users.n_users, sc.catalogue.n_categories
    decay = 0.5 ** (sc.clock.tick_minutes / (1440.0 * st.half_life_days))
    last = tap.logs[-1][0]
    counts = np.zeros((n, n_cat))
    for tick, users, items, minutes, category in tap.logs:  # category as of that tick (slots are recycled)
        for u, i, m in zip(users, items, minutes, strict=True):
            counts[u, category[i]] += m * decay ** (last - tick)
    np.testing.assert_allclose(tw.counts_, counts, rtol=2e-4, atol=1e-4)
    harmful = set(sc.tags.harmful_categories)
    expected = np.zeros((n, n_cat), dtype=bool)
    for u in range(n):
        total = counts[u].sum()
        ok = [c for c in range(n_cat) if counts[u, c] > 0 and counts[u, c] >= st.min_share * total and c not in harmful]
        for c in sorted(ok, key=lambda c: (-counts[u, c], c))[: st.n_tags]:
            expected[u, c] = True
    assert expected.any()
    np.testing.assert_array_equal(tw.tags_, expected)


def test_update_and_select_by_hand():
    counts = np.zeros((3, 4), dtype=np.float32)
    touched = update_tag_counts(counts, np.array([0, 0, 2, 7]), np.array([1, 2, 0, 0]), np.array([3.0, 1.0, 2.0, 9.0]),
                                np.array([0, 3, 3], dtype=np.int32), 0.5)  # fmt: skip
    np.testing.assert_array_equal(touched, [0, 2])  # user 7 is not a simulated user (e.g. a bot account)
    np.testing.assert_array_equal(counts, [[0, 0, 0, 4], [0, 0, 0, 0], [2, 0, 0, 0]])
    c = np.array([[5.0, 5.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    np.testing.assert_array_equal(select_tags(c, 1, 0.1), [[1, 0, 0, 0], [0, 0, 0, 0]])  # tie to the lower index
    np.testing.assert_array_equal(select_tags(c, 3, 0.1), [[1, 1, 0, 0], [0, 0, 0, 0]])  # 1/11 < 10%
    allowed = np.array([False, True, True, True])
    np.testing.assert_array_equal(select_tags(c, 3, 0.05, allowed), [[0, 1, 1, 0], [0, 0, 0, 0]])


def test_top_slate_mask_is_the_view_kernels_rule():
    from sim.kernels.reference import _slate

    rng = np.random.default_rng(3)
    scores = rng.integers(0, 4, size=(200, 12)).astype(np.float32)  # many ties
    scores[rng.random(scores.shape) < 0.2] = -np.inf
    got = top_slate_mask(scores, 5)
    for r in range(scores.shape[0]):
        want = np.zeros(12, dtype=bool)
        want[_slate(scores[r], 5)] = True
        np.testing.assert_array_equal(got[r], want)


# ---- attribution -----------------------------------------------------------------------------------------------


class _Fixed:
    """A recommender with fixed scores."""

    def __init__(self, scores):
        self.scores = np.asarray(scores, dtype=np.float32)

    def fit(self, view, log):
        return self

    def score(self, user_idx, cand_idx, view):
        return self.scores[: len(user_idx)].copy()


def _view(n_users, category, step=0):
    category = np.asarray(category, dtype=np.int32)
    return PlatformView(n_users=n_users, n_items=category.size, item_category=category, step=step,
                        n_categories=int(category.max()) + 1)  # fmt: skip


def _driven(tw, rec, view, users, cand, drop, k):
    shown = top_slate_mask(rec.score(users, cand, view), k)
    cf = top_slate_mask(tw.replay(rec, users, cand, view, drop), k)
    at_risk = shown & np.take_along_axis(drop, view.item_category[cand].astype(np.int64), axis=1)
    return shown, at_risk & ~cf


def test_attribution_is_exact_on_a_hand_made_case():
    # six candidates, categories 0,0,1,1,2,2, inner scores 5..0 (sd sqrt(17.5/6)); boost 2 sd; slate of 3
    view = _view(1, [0, 0, 1, 1, 2, 2])
    users, cand = np.array([0]), np.arange(6, dtype=np.int32)[None, :]
    tw = TagTargeting(inner=_Fixed([[5, 4, 3, 2, 1, 0]]), boost=2.0)
    tw._ensure(view)
    tw.tags_[0, 2] = True  # one tag: category 2 (say, on the harmful list)
    shown, driven = _driven(tw, tw, view, users, cand, np.array([[False, False, True]]), 3)
    # boosted: item 4 -> 1 + 2 sd = 4.42 enters (slate 0, 4, 1); without the boost the slate is 0, 1, 2
    np.testing.assert_array_equal(np.flatnonzero(shown[0]), [0, 1, 4])
    np.testing.assert_array_equal(np.flatnonzero(driven[0]), [4])
    tw.tags_[0, 1] = True  # tags 1 and 2: slate 2, 3, 0
    shown, driven = _driven(tw, tw, view, users, cand, np.array([[False, False, True]]), 3)
    np.testing.assert_array_equal(np.flatnonzero(shown[0]), [0, 2, 3])
    assert not driven.any()  # tag 2's items are not in the slate: nothing driven by it
    shown, driven = _driven(tw, tw, view, users, cand, np.array([[False, True, False]]), 3)
    np.testing.assert_array_equal(np.flatnonzero(driven[0]), [2, 3])  # without tag 1: slate 0, 4, 1
    # a replay with nothing suppressed is the scored slate, bit for bit
    np.testing.assert_array_equal(tw.replay(tw, users, cand, view, np.zeros((1, 3), bool)), tw.score(users, cand, view))


def test_replay_reproduces_every_substep_bit_for_bit_through_outer_wrappers():
    sc = _small(n_users=120, days=1, delete_share=0.0, use_harmful_tags=True)
    world = FeedWorld(sc)
    world.recommender = MinorsMode(inner=DiversityReranker(inner=world.recommender))  # more wrappers outside
    world.tags.tw = find_targeting(world.recommender)
    checked = []

    class Check:
        def on_substep(self, w, sub):
            cand = sub.candidates()
            zero = np.zeros((sub.active_idx.size, sc.catalogue.n_categories), dtype=bool)
            again = w.tags.tw.replay(w.recommender, np.asarray(sub.active_idx), cand, w.view, zero)
            np.testing.assert_array_equal(again, sub.scores)
            checked.append(sub.active_idx.size)

    world.add_observer(Check())
    for _ in range(sc.ticks_per_day):
        world.step()
    assert sum(checked) > 1000


# ---- compliant and non-compliant platforms ---------------------------------------------------------------------


def test_compliant_settings_give_exactly_zero():
    _, ev = _run(_small(use_harmful_tags=False, honour_deletion=True))
    assert ev.shown.sum() > 0 and ev.deleted_mask.sum() > 20
    assert ev.driven[0].sum() == 0  # no harmful-tag-driven item
    assert ev.driven[1].sum() == 0  # nothing driven by a deleted tag after the deletion
    assert ev.driven[2].sum() > 0  # the other tags still steer the feed
    assert np.all(ev.harmful_tags_per_day == 0)
    assert np.all(ev.latency_minutes == 0)


def test_non_compliant_settings_are_caught():
    _, ev = _run(_small(use_harmful_tags=True, honour_deletion=False))
    assert ev.driven[0].sum() > 0
    assert ev.driven[1].sum() > 0
    assert ev.harmful_tags_per_day.mean() > 0
    assert ev.latency_minutes[ev.deleted_mask].max() > 0


def test_a_delayed_deletion_has_a_latency_of_about_the_delay():
    sc = _small(days=3, delete_day=1, delete_hour=0, use_harmful_tags=False, honour_deletion=True,
                deletion_delay_days=0.5)  # fmt: skip
    _, ev = _run(sc)
    lat = ev.latency_minutes[ev.deleted_mask]
    assert ev.driven[1].sum() > 0
    assert 0 < lat.max() <= 0.5 * 1440 + sc.clock.tick_minutes


def test_estimators_and_undefined_without_tags():
    _, ev = _run(_small(use_harmful_tags=True, honour_deletion=False))
    est = tag_estimators(ev, ev.n_users, Estimator)
    f = est[("harmful_tag_driven_share", "all")]
    assert f.value() == pytest.approx(ev.driven[0].sum() / ev.shown.sum())
    d = est[("deleted_tag_driven_share", "deleted_tag")]
    mine = ev.deleted_mask & (ev.shown_after_deletion > 0)
    assert d.value() == pytest.approx(ev.driven[1, mine].sum() / ev.shown_after_deletion[mine].sum())
    none = tag_estimators(None, 50, Estimator)
    assert all(e.undefined_reason and not e.mask.any() for e in none.values())


# ---- bad input -------------------------------------------------------------------------------------------------


def _data():
    return load_scenario(SCENARIO).model_dump()


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda d: d["tags"].update(harmful_categories=[3, 40]), ["tags.harmful_categories", "[40]", "fix"]),
        (lambda d: d["tags"].update(harmful_categories=[3, 3]), ["tags.harmful_categories", "twice", "fix"]),
        (lambda d: d["tags"].update(delete_day=9), ["tags.delete_day", "fix"]),
        (lambda d: d["tags"].update(delete_day=0, delete_hour=0), ["delete_hour at least 1"]),
        (lambda d: d["tags"].update(delete_share=1.5), ["tags.delete_share"]),
        (lambda d: d["recommender"].update(tags=None), ["[recommender.tags]", "fix"]),
        (lambda d: d["recommender"]["tags"].update(n_tags=99), ["recommender.tags.n_tags", "fix"]),
        (lambda d: d["recommender"]["tags"].update(boost=-1), ["recommender.tags.boost"]),
        (
            lambda d: d["tags"].update(harmful_categorys=[1]),
            ["tags.harmful_categorys", "did you mean 'harmful_categories'"],
        ),
    ],
)
def test_bad_tags_input_is_refused_with_the_key_and_the_fix(change, words):
    data = _data()
    change(data)
    with pytest.raises(ScenarioError) as exc:
        scenario_from_dict(data, source="x.toml")
    for w in words:
        assert w in str(exc.value)


def test_cli_exits_2_on_bad_tags(tmp_path, capsys):
    from sim.cli import main

    bad = tmp_path / "bad.toml"
    bad.write_text(SCENARIO.read_text().replace("harmful_categories = [3, 7]", "harmful_categories = [3, 70]"))
    assert main(["run", str(bad), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "tags.harmful_categories" in err and "fix" in err and "Traceback" not in err


# ---- the shipped scenario --------------------------------------------------------------------------------------


def test_cli_audit_of_the_shipped_scenario(tmp_path):
    from sim.cli import main

    out = tmp_path / "tt"
    assert main(["audit", str(SCENARIO), "--out", str(out), "--no-progress"]) == 0
    findings = json.loads((out / "findings.json").read_text())
    rows = findings["findings"] if isinstance(findings, dict) else findings
    by = {(f["metric"], f["cohort"]): f for f in rows}
    assert by[("harmful_tag_driven_share", "all")]["verdict"] == "fail"
    assert by[("deleted_tag_driven_share", "deleted_tag")]["verdict"] == "fail"
    html = (out / "report.html").read_text()
    assert "id='art10'" in html and "Art. 10 evidence" in html
    assert "Tag deletion" in html


@pytest.mark.slow
def test_flipped_shipped_scenario_passes():
    from audits.audit import article_verdicts, run_audit

    data = _data()
    data["recommender"]["tags"].update(use_harmful_tags=False, honour_deletion=True)
    res = run_audit(scenario_from_dict(data))
    v = article_verdicts(res.findings)
    assert v[10] == "pass" and v[17] == "pass"

"""Observers see every sub-step and day, and fake engagement reaches the platform only."""

import numpy as np
import pytest

from sim.engine import FeedWorld
from sim.kernels import layout as L
from sim.platform import InteractionLog
from sim.scenario import scenario_from_dict


def _scenario(kind="popularity"):
    return scenario_from_dict(
        {
            "seed": 3,
            "population": {"n_users": 400},
            "catalogue": {"n_items": 300},
            "clock": {"days": 1},
            "recommender": {"kind": kind},
        }  # fmt: skip
    )


class _Counter:
    def __init__(self):
        self.rows = 0
        self.watched = 0.0
        self.days = []
        self.cand_shapes = set()

    def on_substep(self, world, sub):
        assert not sub.out_slate.flags.writeable and not sub.active_idx.flags.writeable
        self.rows += sub.active_idx.size
        self.watched += float(sub.out_minutes.sum())
        cand = sub.candidates()
        assert cand.shape[0] == sub.active_idx.size
        shown = sub.out_slate >= 0
        rows, cols = np.nonzero(shown)
        assert np.isin(sub.out_slate[rows, cols], cand[rows]).all() if rows.size else True
        self.cand_shapes.add(cand.shape[1])

    def on_day_end(self, world, day):
        self.days.append(day)


@pytest.mark.parametrize("kind", ["popularity", "content"])  # through score(), and fused
def test_observer_sees_every_view(kind):
    w = FeedWorld(_scenario(kind))
    c = _Counter()
    w.add_observer(c)
    rec = w.run()
    assert c.rows == w.agent_steps > 0
    assert c.watched == pytest.approx(float(rec.user_days[..., L.MINUTES].sum()), rel=1e-4)
    assert c.days == [0] and c.cand_shapes == {w.scenario.recommender.n_candidates}


class _Bots:
    """Fake views of one item every tick (no user watches them)."""

    def __init__(self, item):
        self.item = item

    def on_tick(self, world, log):
        n = 50
        return InteractionLog(
            user_idx=np.concatenate([log.user_idx, np.zeros(n, dtype=np.int64)]),
            item_idx=np.concatenate([log.item_idx, np.full(n, self.item, dtype=np.int32)]),
            minutes=np.concatenate([log.minutes, np.ones(n, dtype=np.float32)]),
            step=np.concatenate([log.step, np.full(n, -1, dtype=np.int64)]),
            item_impressions=log.item_impressions,
        )


def test_fake_engagement_moves_the_platform_not_the_users():
    plain, botted = FeedWorld(_scenario()), FeedWorld(_scenario())
    botted.add_observer(_Bots(item=17))
    for w in (plain, botted):
        for _ in range(40):
            w.step()
    gap = botted.platform.item_views_hat[17] - plain.platform.item_views_hat[17]
    assert gap > 40 * 50 * 0.5  # decayed at midnight only; 40 ticks of 50 fake views
    assert np.argmax(botted.platform.item_views_hat) == 17  # the popularity ranking now favours it
    # users' records hold only real views
    assert botted.day_stats[:, L.VIEWS].sum() > 0
    assert (botted.day_stats[:, L.MINUTES] >= 0).all()


class _TickLogs:
    """Keep every tick's log (an ``on_tick`` observer: the engine then keeps the per-view arrays)."""

    def __init__(self):
        self.logs = []

    def on_tick(self, world, log):
        self.logs.append(log)


class _ReadsViews:
    """A plugin recommender (not a built-in): it is given the per-view arrays."""

    def __init__(self):
        self.seen = []

    def fit(self, view, log):
        self.seen.append((log.user_idx is not None, log.n_views))
        return self

    def score(self, user_idx, cand_idx, view):
        return np.zeros(cand_idx.shape, dtype=np.float32)


class _LogSpy:
    """Wrap a built-in's ``fit`` to see the log it gets, without changing the recommender's type."""

    def __init__(self, world):
        self.logs = []
        fit = world.recommender.fit

        def spied(view, log):
            self.logs.append(log)
            return fit(view, log)

        world.recommender.fit = spied


@pytest.mark.parametrize("kind", ["engagement", "popularity"])
def test_per_item_totals_are_the_log_counted_online_and_per_view_arrays_only_when_read(kind):
    plain, observed = FeedWorld(_scenario(kind)), FeedWorld(_scenario(kind))
    spy = _LogSpy(plain)
    obs = _TickLogs()
    observed.add_observer(obs)
    rec_plain, rec_obs = plain.run(), observed.run()
    assert all(log.user_idx is None and log.item_idx is None for log in spy.logs)  # a built-in: totals only
    assert sum(log.n_views for log in spy.logs) > 0
    for log in obs.logs:  # kept: the online totals are the bincounts of the per-view arrays, bit for bit
        n = log.item_impressions.size
        np.testing.assert_array_equal(log.item_views, np.bincount(log.item_idx, minlength=n))
        np.testing.assert_array_equal(log.item_minutes, np.bincount(log.item_idx, weights=log.minutes, minlength=n))
    for name in ("user_days", "feed_days", "true_interest", "imp_emb_sum", "minhash"):
        np.testing.assert_array_equal(getattr(rec_plain, name), getattr(rec_obs, name))
    np.testing.assert_array_equal(plain.platform.item_views_hat, observed.platform.item_views_hat)
    np.testing.assert_array_equal(plain.platform.item_minutes_hat, observed.platform.item_minutes_hat)


def test_a_plugin_recommender_gets_the_per_view_arrays():
    rec = _ReadsViews()
    FeedWorld(_scenario(), recommender=rec).run()
    assert rec.seen and all(kept for kept, _ in rec.seen)
    assert sum(n for _, n in rec.seen) > 0


def test_an_interaction_log_without_views_needs_the_totals():
    with pytest.raises(ValueError, match="item_views"):
        InteractionLog(None, None, None, None, item_impressions=np.zeros(3, dtype=np.int32))


class _ReplaceViews:
    """An observer that edits the log with dataclasses.replace: every view becomes a view of item 0."""

    def on_tick(self, world, log):
        import dataclasses

        return dataclasses.replace(log, item_idx=np.zeros_like(log.item_idx))


def test_a_replaced_log_gets_its_totals_from_its_own_views():
    w = FeedWorld(_scenario("engagement"))
    w.add_observer(_ReplaceViews())
    for _ in range(w.scenario.ticks_per_day - 1):  # before midnight, which resets replaced items' counts
        w.step()
    hat = w.platform.item_views_hat
    assert hat[0] > 0 and (hat[1:] == 0).all()  # the platform counted the edited views, not the originals


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # the 0/0 this test provokes
def test_a_ranking_that_gives_nan_scores_is_a_plugin_error():
    from sim.builtin.recommenders import EngagementMax
    from sim.platform import PluginError

    w = FeedWorld(_scenario("engagement"), recommender=EngagementMax(prior_views=0.0))
    with pytest.raises(PluginError, match="NaN or \\+inf"):
        w.run()

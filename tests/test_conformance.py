import numpy as np
import pytest

from sim.builtin.recommenders import (
    BASE_RECOMMENDERS,
    ContentBased,
    DiversityReranker,
    EngagementMax,
    MinorsMode,
    NonPersonalised,
    Popularity,
)
from sim.testing import ConformanceError, check_recommender, make_check_world

WRAPPED = {
    "diversity(engagement)": lambda: DiversityReranker(inner=EngagementMax()),
    "non_personalised(content)": lambda: NonPersonalised(inner=ContentBased(), fallback=Popularity()),
    "minors_mode(engagement)": lambda: MinorsMode(inner=EngagementMax()),
}
ALL = {**{k: v for k, v in BASE_RECOMMENDERS.items()}, **WRAPPED}


@pytest.mark.parametrize("name", sorted(ALL))
def test_builtin_passes_conformance(name):
    passed = check_recommender(ALL[name](), name=name)
    assert len(passed) >= 9, passed


class _Broken:
    def fit(self, view, log):
        return self

    def score(self, user_idx, cand_idx, view):
        return np.zeros((len(user_idx), 3), dtype=np.float32)


class _PeeksAtTruth(_Broken):
    def score(self, user_idx, cand_idx, view):
        return view.true_interest[user_idx][:, :1].repeat(cand_idx.shape[1], axis=1)


class _Mutates(_Broken):
    def score(self, user_idx, cand_idx, view):
        cand_idx[:] = 0
        return np.zeros(cand_idx.shape, dtype=np.float32)


class _Nan(_Broken):
    def score(self, user_idx, cand_idx, view):
        return np.full(cand_idx.shape, np.nan, dtype=np.float32)


@pytest.mark.parametrize(
    "cls, check",
    [(_Broken, "check_score_shape"), (_Mutates, "check_no_input_mutation"), (_Nan, "check_score_finite")],
)
def test_broken_plugins_are_caught(cls, check):
    with pytest.raises(ConformanceError, match=check):
        check_recommender(cls())


def test_ground_truth_is_refused():
    with pytest.raises(AttributeError, match="ground truth"):
        check_recommender(_PeeksAtTruth())


def test_view_is_read_only():
    world = make_check_world(ticks=1)
    with pytest.raises(ValueError):
        world.view.user_hat[0, 0] = 1.0
    with pytest.raises(AttributeError):
        world.view.tick = 3


def test_minors_mode_access_caps_and_curfew():
    world = make_check_world(ticks=1)
    mm = MinorsMode(inner=EngagementMax())
    users = np.arange(world.users.n_users, dtype=np.int64)
    world.view._set(hour=23)
    allowance, prompt = mm.access(users, world.view)
    minor = world.users.age < 18
    assert np.all(allowance[minor] == 0)
    assert np.all(np.isinf(allowance[~minor]))
    assert np.all(prompt[minor] == 30)
    world.view._set(hour=15)
    allowance, _ = mm.access(users, world.view)
    cap = mm.cap_minutes(world.users.age)
    expected = cap - world.day_stats[:, 0]
    np.testing.assert_allclose(allowance[minor], expected[minor])

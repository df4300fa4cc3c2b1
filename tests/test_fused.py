"""The fused profile-ranking kernel against retrieval + scoring + view_step, bit for bit."""

import copy

import numba as nb
import numpy as np
import pytest

from sim.engine import BLOCK_SIZE, MAX_SUBSTEPS, FeedWorld
from sim.kernels import feed, scoring
from sim.kernels import layout as L
from sim.scenario import scenario_from_dict

_STATE = ("true_interest", "session", "in_session_mask")
_WORLD = ("day_stats", "cat_counts", "imp_emb_sum", "minhash")


def _scenario(kind: str, params: dict | None = None, n_users: int = 2000):
    return scenario_from_dict(
        {
            "seed": 7,
            "population": {"n_users": n_users},
            "catalogue": {"n_items": 1200, "new_items_per_day": 40},
            "clock": {"days": 1},
            "recommender": {"kind": kind, "params": params or {}},
        }
    )


@pytest.fixture(scope="module")
def evening_world():
    """An engagement world at 19:00: profiles, habits and item statistics are not all zero."""
    w = FeedWorld(_scenario("engagement", {"exploration": 0.2}))
    before = nb.get_num_threads()
    nb.set_num_threads(1)
    try:
        for _ in range(76):
            w.step()
    finally:
        nb.set_num_threads(before)
    return w


def _state(w, rng):
    u = w.users
    s = {name: getattr(u, name).copy() for name in _STATE}
    s.update({name: getattr(w, name).copy() for name in _WORLD})
    s["user_hat"] = w.platform.user_hat.copy()
    n = u.n_users
    s["in_session_mask"][:] = True
    s["session"][:, L.S_TIME_LEFT] = 10.0
    s["session"][:, L.S_STREAK] = rng.random(n) * 90
    s["session"][:, L.S_SINCE_PROMPT] = rng.random(n) * 45
    return s


def _gates(rng, n_act):
    allowance = np.full(n_act, np.inf, dtype=np.float32)
    r = rng.random(n_act)
    allowance[r < 0.05] = 0.0
    allowance[(r >= 0.05) & (r < 0.2)] = 0.4
    prompt_after = np.full(n_act, np.inf, dtype=np.float32)
    prompt_after[rng.random(n_act) < 0.2] = 20.0
    return allowance, prompt_after


def _run(w, s, active, step, night, allowance, prompt_after, bias, sharpness, exploration, fused):
    it, k = w.items, w.scenario.recommender.slate_size
    n_act, n_cand = active.size, w.scenario.recommender.n_candidates
    out_item = np.empty(n_act, dtype=np.int32)
    out_min = np.empty(n_act, dtype=np.float32)
    out_slate = np.empty((n_act, k), dtype=np.int32)
    state = (
        s["true_interest"], s["session"], s["in_session_mask"], s["user_hat"], s["day_stats"], s["cat_counts"], s["imp_emb_sum"], s["minhash"],
    )  # fmt: skip
    items = (it.embedding, it.category, it.harmful_mask, it.true_quality, it.true_hook, it.length_minutes, it.minhash)
    if fused:
        starts = feed.retrieval_blocks(active, BLOCK_SIZE)
        block_cand = np.empty((starts.size - 1, n_cand), dtype=np.int32)
        feed.profile_view_step(
            w.key, step, night, active, starts, it.n_items, w.strides, BLOCK_SIZE, w.rec_key, bias, sharpness,
            exploration, allowance, prompt_after, k, w.beh, *items, *state, out_item, out_min, out_slate, block_cand,
        )  # fmt: skip
        cand = np.repeat(block_cand, np.diff(starts), axis=0)
    else:
        cand = np.empty((n_act, n_cand), dtype=np.int32)
        feed.draw_candidates(w.key, step, active, it.n_items, w.strides, BLOCK_SIZE, cand)
        scores = np.empty(cand.shape, dtype=np.float32)
        if bias.size:
            scoring.engagement_scores(
                w.rec_key, step, s["user_hat"], active, it.embedding, cand, bias, sharpness, exploration, scores
            )
        else:
            scoring.dot_scores(s["user_hat"], active, it.embedding, cand, scores)
        feed.view_step(
            w.key, step, night, active, cand, scores, allowance, prompt_after, k, w.beh, *items, *state,
            out_item, out_min, out_slate,
        )  # fmt: skip
    return {**s, "out_item": out_item, "out_min": out_min, "out_slate": out_slate, "cand": cand}


@pytest.mark.parametrize("ranking", ["content", "engagement"])
@pytest.mark.parametrize("density", [1.0, 0.07])  # every user of a block active; a few per block
def test_profile_view_step_equals_retrieval_scoring_and_view_step(evening_world, ranking, density):
    w = evening_world
    rng = np.random.default_rng(int(density * 100) + len(ranking))
    active = np.flatnonzero(rng.random(w.users.n_users) < density).astype(np.int64)
    if ranking == "content":
        bias, sharpness, exploration = np.zeros(0, dtype=np.float32), 1.0, 0.0
    else:
        bias, sharpness, exploration = w.recommender._profile_ranking(w.view)
        assert bias.size == w.items.n_items and exploration > 0
    base = _state(w, rng)
    allowance, prompt_after = _gates(rng, active.size)
    for sub in range(3):  # consecutive sub-steps, each side evolving its own state
        step = 77 * MAX_SUBSTEPS + sub
        args = (active, step, sub == 1, allowance, prompt_after, bias, sharpness, exploration)
        got = _run(w, copy.deepcopy(base), *args, fused=True)
        want = _run(w, copy.deepcopy(base), *args, fused=False)
        for name in want:
            assert got[name].tobytes() == want[name].tobytes(), f"{name} differs at sub-step {sub}"
        assert (got["out_item"] >= 0).mean() > 0.2
        base = {name: got[name] for name in base}


@pytest.mark.parametrize("kind, params", [("content", {}), ("engagement", {"exploration": 0.1})])
def test_engine_runs_the_same_fused_or_through_score(kind, params):
    sc = _scenario(kind, params, n_users=800)
    worlds = []
    for fused in (True, False):
        w = FeedWorld(sc, fused=fused)
        assert w.fused == fused
        for _ in range(80):
            w.step()
        worlds.append(w)
    a, b = worlds
    assert a.agent_steps == b.agent_steps > 0
    for name in ("day_stats", "cat_counts", "imp_emb_sum", "minhash", "creator_minutes", "hourly_minutes"):
        assert getattr(a, name).tobytes() == getattr(b, name).tobytes(), name
    assert a.platform.user_hat.tobytes() == b.platform.user_hat.tobytes()
    assert a.platform.item_impressions_hat.tobytes() == b.platform.item_impressions_hat.tobytes()


def test_wrapped_or_subclassed_recommenders_go_through_score():
    from sim.builtin.recommenders import ContentBased

    class Mine(ContentBased):
        pass

    assert not FeedWorld(_scenario("content", n_users=50), recommender=Mine()).fused
    wrapped = scenario_from_dict({**_scenario("content", n_users=50).model_dump(), "recommender": {
        "kind": "content", "minors_mode": {}}})  # fmt: skip
    assert not FeedWorld(wrapped).fused
    assert FeedWorld(_scenario("content", n_users=50)).fused

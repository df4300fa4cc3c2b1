"""Kernels against their plain twins, the generator's statistics, choice against its closed form,
and bitwise determinism across thread counts.

Every statistical tolerance below is derived from the sample size: means within
4 standard errors, correlations within 4 / sqrt(n), chi-square tests at a
p-value of 1e-4. All draws are seeded, so each test is deterministic; the
thresholds say how unlikely a failure of a correct generator would be.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numba as nb
import numpy as np
import pytest
from scipy import stats

from sim import FeedWorld, scenario_from_dict, simulate
from sim.engine import BLOCK_SIZE, MAX_SUBSTEPS, _coprime_strides
from sim.kernels import feed, reference, scoring
from sim.kernels import layout as L
from sim.kernels.expo import EXP_MIN, exp_nonpos, exp_nonpos_np
from sim.kernels.feed import item_signatures
from sim.rng import Purpose, hash4, root_key, uniform, uniform_np
from sim.state import ACTIVITY_PROFILES, N_MINHASH, session_block

P_MIN = 1e-4  # p-value threshold of the chi-square tests
Z = 4.0  # standard errors allowed for means and shares


# -- the counter-based generator ------------------------------------------------------------


@nb.njit(cache=True)
def _draw_many(key, tick, agent, purpose):
    """The numba generator's uniforms and hashes, one per row of the argument arrays."""
    u = np.empty(tick.shape[0], dtype=np.float64)
    h = np.empty(tick.shape[0], dtype=np.uint64)
    for r in range(tick.shape[0]):
        u[r] = uniform(key[r], tick[r], agent[r], purpose[r])
        h[r] = hash4(key[r], tick[r], agent[r], purpose[r])
    return u, h


def test_uniform_matches_numpy_twin_bit_for_bit():
    rng = np.random.default_rng(1)
    n = 100_000
    key = rng.integers(0, 2**63 - 1, size=n, dtype=np.int64)
    key[:10] = [root_key(s) for s in range(10)]
    tick = rng.integers(0, 2**40, size=n, dtype=np.int64)
    agent = rng.integers(0, 2**31, size=n, dtype=np.int64)
    purpose = rng.integers(0, 32, size=n, dtype=np.int64)
    got = _draw_many(key, tick, agent, purpose)[0]
    want = np.array(
        [uniform_np(int(k), t, a, p) for k, t, a, p in zip(key[:200], tick[:200], agent[:200], purpose[:200])]
    )
    np.testing.assert_array_equal(got[:200].view(np.uint64), want.view(np.uint64))
    # vectorised over all arguments at once (keys one at a time: the key is a scalar)
    for k in np.unique(key[:50]):
        m = key == k
        np.testing.assert_array_equal(
            got[m].view(np.uint64), uniform_np(int(k), tick[m], agent[m], purpose[m]).view(np.uint64)
        )
    same_key = int(key[0])
    k0 = np.full(n, same_key, dtype=np.int64)
    u0, h = _draw_many(k0, tick, agent, purpose)
    np.testing.assert_array_equal(u0.view(np.uint64), uniform_np(same_key, tick, agent, purpose).view(np.uint64))
    np.testing.assert_array_equal(h, reference.hash4_np(same_key, tick, agent, purpose))
    # uniform is the top 53 bits of hash4
    np.testing.assert_array_equal(
        (h >> np.uint64(11)).astype(np.float64) * 2.0**-53, uniform_np(same_key, tick, agent, purpose)
    )
    assert ((got >= 0.0) & (got < 1.0)).all()


def test_uniform_statistics():
    key = root_key(12345)
    n = 1_000_000
    agent = np.arange(n, dtype=np.int64)
    x = uniform_np(key, 7, agent, Purpose.CHOICE)
    # mean and variance of U(0, 1): 1/2 and 1/12; Var(sample variance) ~ (mu4 - sigma^4)/n = 1/(180 n)
    assert abs(x.mean() - 0.5) < Z * math.sqrt(1.0 / 12.0 / n)
    assert abs(x.var() - 1.0 / 12.0) < Z * math.sqrt(1.0 / 180.0 / n)
    # 20 equal bins
    counts = np.bincount((x * 20).astype(np.int64), minlength=20)
    assert stats.chisquare(counts).pvalue > P_MIN
    # independence: between purposes, neighbouring agents, neighbouring ticks, and runs
    bound = Z / math.sqrt(n)
    others = {
        "purpose": uniform_np(key, 7, agent, Purpose.CONTINUE),
        "agent+1": uniform_np(key, 7, agent + 1, Purpose.CHOICE),
        "tick+1": uniform_np(key, 8, agent, Purpose.CHOICE),
        "replication": uniform_np(root_key(12345, 1), 7, agent, Purpose.CHOICE),
    }
    for name, y in others.items():
        r = np.corrcoef(x, y)[0, 1]
        assert abs(r) < bound, (name, r, bound)
    # pairs of purposes on a 10 x 10 grid (tests dependence beyond correlation)
    y = others["purpose"]
    grid = np.bincount((x * 10).astype(np.int64) * 10 + (y * 10).astype(np.int64), minlength=100)
    assert stats.chisquare(grid).pvalue > P_MIN


# -- retrieval --------------------------------------------------------------------------------


@pytest.mark.parametrize("n_items", [1000, 1009])
def test_draw_candidates_matches_twin(n_items):
    rng = np.random.default_rng(n_items)
    key = root_key(3)
    strides = _coprime_strides(n_items, rng)
    active = np.sort(rng.choice(50_000, size=5_000, replace=False)).astype(np.int64)
    for step in (0, 1, 5 * MAX_SUBSTEPS + 3):
        got = np.empty((active.size, 100), dtype=np.int32)
        want = np.empty_like(got)
        feed.draw_candidates(key, step, active, n_items, strides, BLOCK_SIZE, got)
        reference.draw_candidates(key, step, active, n_items, strides, BLOCK_SIZE, want)
        np.testing.assert_array_equal(got, want)
        assert ((got >= 0) & (got < n_items)).all()
        # distinct within a row
        srt = np.sort(got, axis=1)
        assert (np.diff(srt, axis=1) > 0).all()
        # users of one block share the row
        block = active // BLOCK_SIZE
        first = np.unique(block, return_index=True)[1]
        same = np.searchsorted(block[first], block)
        np.testing.assert_array_equal(got, got[first][same])
        # different blocks differ, except for the expected (start, stride) collisions (Poisson)
        n_blocks = first.size
        expected = n_blocks * (n_blocks - 1) / 2 / (n_items * strides.size)
        repeats = n_blocks - len({tuple(r) for r in got[first]})
        assert repeats <= expected + Z * math.sqrt(expected) + 1


def test_candidate_frequency_is_uniform():
    n_items, n_cand = 1000, 100
    key = root_key(4)
    strides = _coprime_strides(n_items, np.random.default_rng(4))
    active = np.arange(0, 2_000 * BLOCK_SIZE, BLOCK_SIZE, dtype=np.int64)  # one user per block
    counts = np.zeros(n_items, dtype=np.int64)
    n_draws = 0
    for step in range(10):
        out = np.empty((active.size, n_cand), dtype=np.int32)
        feed.draw_candidates(key, step, active, n_items, strides, BLOCK_SIZE, out)
        counts += np.bincount(out.ravel(), minlength=n_items)
        n_draws += active.size
    # Each draw contains a given item with probability p = n_cand / n_items, independently
    # across draws, so a count is Binomial(n_draws, p): Pearson's statistic is rescaled by
    # 1 / (1 - p), and the fixed total (n_draws * n_cand) removes one degree of freedom.
    p = n_cand / n_items
    expected = n_draws * p
    stat = ((counts - expected) ** 2).sum() / (expected * (1.0 - p)) * (n_items - 1) / n_items
    assert stats.chi2.sf(stat, n_items - 1) > P_MIN
    assert abs(counts.mean() - expected) < 1e-9


# -- state from a small world ---------------------------------------------------------------


@contextlib.contextmanager
def _one_thread():
    """Run whole worlds on one numba thread in-process.

    A world makes thousands of small parallel kernel calls; on a busy machine each call's
    thread barrier can cost milliseconds. Thread-count independence is tested separately,
    in subprocesses (test_bitwise_identical_across_thread_counts).
    """
    before = nb.get_num_threads()
    nb.set_num_threads(1)
    try:
        yield
    finally:
        nb.set_num_threads(before)


def _world_state():
    sc = scenario_from_dict(
        {
            "seed": 99,
            "population": {"n_users": 3000},
            "catalogue": {"n_items": 1500, "new_items_per_day": 50},
            "clock": {"days": 1},
            "recommender": {"kind": "content"},
        }
    )
    w = FeedWorld(sc)
    with _one_thread():
        for _ in range(72):  # to 18:00, so habits, profiles and counters are not all zero
            w.step()
    return w


@pytest.fixture(scope="module")
def world():
    return _world_state()


_USER_STATE = ("true_interest", "session", "in_session_mask")


def _copy_state(w, rng):
    """Copies of every mutable array, with sessions and streaks perturbed to reach all branches."""
    u = w.users
    n = u.n_users
    s = {name: getattr(u, name).copy() for name in _USER_STATE}
    s["in_session_mask"] = rng.random(n) < 0.8
    s["session"][:, L.S_TIME_LEFT] = rng.random(n) * 15
    s["session"][:, L.S_STREAK] = rng.random(n) * 90
    s["session"][:, L.S_SINCE_PROMPT] = rng.random(n) * 45
    s["session"][:, L.S_ALERTED] = rng.random(n) < 0.3
    s["user_hat"] = w.platform.user_hat.copy()
    s["day_stats"] = w.day_stats.copy()
    s["cat_counts"] = w.cat_counts.copy()
    s["imp_emb_sum"] = w.imp_emb_sum.copy()
    s["minhash"] = w.minhash.copy()
    return s


def _clone(s):
    return {k: v.copy() for k, v in s.items()}


def _assert_twin_close(got, want, rows_ok, tag):
    """Floats within 1e-5 relative on the rows whose discrete outcomes agree.

    The twins follow the kernels' operation order, so they normally agree bit for bit;
    the tolerance covers the last-bit differences a compiler may introduce (e.g. a
    vectorised or fused float32 sum, or a different ``exp``), and the discrete
    tolerance (0.1% of rows) covers a uniform that lands within such a rounding
    error of a choice boundary.
    """
    for name in got:
        a, b = got[name][rows_ok], want[name][rows_ok]
        if a.dtype.kind == "f":
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7, err_msg=f"{tag}: {name}")
        else:
            np.testing.assert_array_equal(a, b, err_msg=f"{tag}: {name}")


def test_session_scalars_are_columns_of_one_aligned_block_the_kernels_write_through():
    """``Users.session`` holds the six per-view scalars; the ``Users`` attributes are views of its columns."""
    sc = scenario_from_dict({"seed": 3, "population": {"n_users": 500}, "catalogue": {"n_items": 300}})
    w = FeedWorld(sc)
    u = w.users
    assert u.session.shape == (500, L.N_SESSION) and u.session.dtype == np.float32
    assert u.session.flags.c_contiguous and u.session.ctypes.data % 64 == 0  # a 32-byte row within one cache line
    for c, name in enumerate(L.SESSION_FIELDS):
        col = getattr(u, name)
        assert col.base is u.session or np.shares_memory(col, u.session), name
        assert col.ctypes.data == u.session[:, c].ctypes.data, name
    assert (u.session[:, L.S_ALERTED :] == 0.0).all()  # the unprompted-streak flag and the spare column
    habit0 = u.true_habit.copy()
    minutes0 = u.streak_minutes.copy()
    with _one_thread():
        for _ in range(80):  # to 20:00: sessions open, views happen
            w.step()
    assert not np.array_equal(u.true_habit, habit0)  # open_step and the view kernel wrote through the views
    assert not np.array_equal(u.streak_minutes, minutes0)
    assert np.array_equal(u.true_habit, u.session[:, L.S_HABIT])
    # a record keeps its own contiguous copy of the intended minutes, not a view that pins the block
    rec = simulate(sc.with_values({"clock.days": 1}))
    assert rec.true_intended_minutes.flags.c_contiguous and rec.true_intended_minutes.base is None
    for clone in (copy.deepcopy(u), pickle.loads(pickle.dumps(u))):  # copies keep the six tied to their block
        clone.time_left[:] = 7.0
        assert (clone.session[:, L.S_TIME_LEFT] == 7.0).all(), "a copy's attribute detached from its block"
        assert np.array_equal(clone.true_habit, u.true_habit) and not np.shares_memory(clone.session, u.session)


@pytest.mark.parametrize("tick", [2, 75, 90])
def test_open_step_matches_twin(world, tick):
    w = world
    u = w.users
    rng = np.random.default_rng(tick)
    base = _copy_state(w, rng)
    base["session"][:, L.S_HABIT] = rng.random(u.n_users) * 3
    hour = (tick * w.scenario.clock.tick_minutes) // 60
    results = []
    for impl in (feed, reference):
        s = _clone(base)
        impl.open_step(
            w.key, tick, float(w.scenario.clock.tick_minutes), hour, u.cohort, u.night_owl_mask,
            u.open_rate * np.float32(3.0), ACTIVITY_PROFILES, float(w.beh[L.HABIT_CUE]),
            w.habit_decay, s["session"], s["in_session_mask"], s["day_stats"],
        )  # fmt: skip
        results.append(s)
    got, want = results
    opened = got["in_session_mask"] & ~base["in_session_mask"]
    idle = ~base["in_session_mask"]
    assert 20 <= opened.sum() < idle.sum()  # both outcomes are reached
    ok = got["in_session_mask"] == want["in_session_mask"]
    assert ok.mean() >= 0.999
    _assert_twin_close(got, want, ok, "open_step")


def _view_inputs(w, rng, step):
    """Active users, candidates, scores, allowance and prompts reaching every branch."""
    n = w.users.n_users
    sc = w.scenario
    n_cand, k = sc.recommender.n_candidates, sc.recommender.slate_size
    active = np.arange(n, dtype=np.int64)
    cand = np.empty((n, n_cand), dtype=np.int32)
    feed.draw_candidates(w.key, step, active, w.items.n_items, w.strides, BLOCK_SIZE, cand)
    scores = np.empty(cand.shape, dtype=np.float32)
    scoring.dot_scores(w.view.user_hat, active, w.view.item_embedding, cand, scores)
    scores[rng.random(scores.shape) < 0.05] = -np.inf  # excluded candidates
    scores[rng.random(n) < 0.01] = -np.inf  # nothing to show
    allowance = np.full(n, np.inf, dtype=np.float32)
    r = rng.random(n)
    allowance[r < 0.05] = 0.0  # refused
    allowance[(r >= 0.05) & (r < 0.25)] = 0.3  # capped watching
    prompt_after = np.full(n, np.inf, dtype=np.float32)
    r = rng.random(n)
    prompt_after[r < 0.3] = 30.0
    prompt_after[r < 0.1] = 5.0
    return active, cand, scores, allowance, prompt_after, k


def _run_view(impl, w, before, step, night, inputs):
    """Run ``impl.view_step`` on a copy of ``before``; return the new state and the outputs."""
    it = w.items
    active, cand, scores, allowance, prompt_after, k = inputs
    n = active.size
    s = _clone(before)
    o = {
        "out_item": np.empty(n, dtype=np.int32),
        "out_minutes": np.empty(n, dtype=np.float32),
        "out_slate": np.empty((n, k), dtype=np.int32),
    }
    impl.view_step(
        w.key, step, night, active, cand, scores, allowance, prompt_after, k, w.beh,
        it.embedding, it.category, it.harmful_mask, it.true_quality, it.true_hook,
        it.length_minutes, it.minhash,
        s["true_interest"], s["session"], s["in_session_mask"], s["user_hat"], s["day_stats"], s["cat_counts"], s["imp_emb_sum"],
        s["minhash"], o["out_item"], o["out_minutes"], o["out_slate"],
    )  # fmt: skip
    return {**s, **o}


@pytest.mark.parametrize("tick, night", [(73, False), (89, True)])
def test_view_step_matches_twin(world, tick, night):
    w = world
    n = w.users.n_users
    rng = np.random.default_rng(tick)
    base = _copy_state(w, rng)
    prev = (base, base)
    for sub in range(3):  # three consecutive sub-steps, each implementation evolving its own state
        step = tick * MAX_SUBSTEPS + sub
        inputs = _view_inputs(w, rng, step)
        got = _run_view(feed, w, prev[0], step, night, inputs)
        want = _run_view(reference, w, prev[1], step, night, inputs)
        # the kernel on one thread: bit for bit the same (n rows = several chunks of CHUNK rows)
        with _one_thread():
            single = _run_view(feed, w, prev[0], step, night, inputs)
        for name in got:
            assert got[name].tobytes() == single[name].tobytes(), name
        # every branch is reached
        ds = got["day_stats"] - prev[0]["day_stats"]
        for col in (L.BLOCKED, L.PROMPTS, L.UNPROMPTED_STREAKS, L.VIEWS, L.HARMFUL_VIEWS):
            assert (ds[:, col] > 0).any(), L.DAY_COLUMNS[col]
        if night:
            assert (ds[:, L.NIGHT_MINUTES] > 0).any()
        assert (got["out_item"] >= 0).mean() > 0.3
        assert ((got["out_item"] >= 0) & ~got["in_session_mask"]).any()
        ok = (
            (got["out_item"] == want["out_item"])
            & (got["out_slate"] == want["out_slate"]).all(axis=1)
            & (got["in_session_mask"] == want["in_session_mask"])
        )
        assert ok.mean() >= 0.999, f"discrete outputs differ on {np.count_nonzero(~ok)} of {n} rows"
        _assert_twin_close(got, want, ok, f"view_step sub-step {sub}")
        prev = ({k_: got[k_] for k_ in base}, {k_: want[k_] for k_ in base})


# -- logit choice and continuation against their closed forms ------------------------------


@nb.njit(cache=False)  # not cached: the test reads its assembly
def _exp_nonpos_many(x, out):
    for k in range(x.shape[0]):
        out[k] = exp_nonpos(x[k])


def test_exp_nonpos_matches_twin_bit_for_bit_and_math_exp_within_one_ulp():
    rng = np.random.default_rng(20261201)
    edges = [0.0, -0.0, EXP_MIN, np.nextafter(EXP_MIN, -np.inf), -1e-300, -700.5, -1e300, -np.inf, np.nan]
    x = np.concatenate([-700.0 * rng.random(500_000), -5.0 * rng.random(500_000), edges])
    out = np.empty_like(x)
    _exp_nonpos_many(x, out)  # the kernel's loop (vectorised)
    assert np.array_equal(out.view(np.int64), exp_nonpos_np(x).view(np.int64))
    scalar = exp_nonpos_np(-1.25)  # a scalar in, a Python float out (the twin's choice uses it so)
    assert type(scalar) is float and scalar == exp_nonpos_np(np.array([-1.25]))[0]
    normal = x >= EXP_MIN
    ref = np.array([math.exp(v) for v in x[normal]])
    ulp = np.abs(out[normal].view(np.int64) - ref.view(np.int64))
    assert ulp.max() <= 1
    assert (ulp == 0).mean() > 0.85
    assert (out[x < EXP_MIN] == 0.0).all()
    assert np.isnan(out[-1])  # NaN stays NaN, as with math.exp
    assert out[x == 0.0].tolist() == [1.0, 1.0]
    cpuinfo = Path("/proc/cpuinfo")
    host = nb.config.CPU_NAME in (None, "host")  # numba compiles for this machine, not a generic target
    if host and cpuinfo.exists() and " avx2" in cpuinfo.read_text():  # the point of it: a loop in vector lanes
        asm = _exp_nonpos_many.inspect_asm(_exp_nonpos_many.signatures[0])
        assert re.search(r"vroundpd\s+\$\d+,\s*%ymm", asm), "exp_nonpos no longer vectorises"


def test_choice_and_continuation_match_closed_form():
    n, dim, k = 200_000, 4, 5
    beh = L.pack_behaviour(scenario_from_dict({}))
    temp = beh[L.TEMPERATURE]
    # five items with known match (cosine to the user's interest), quality and hook
    cos = np.array([0.3, 0.2, 0.1, 0.0, -0.1])
    quality = np.array([0.1, 0.0, 0.2, 0.3, 0.5], dtype=np.float32)
    hook = np.array([0.1, 0.3, 0.0, 0.2, 0.4], dtype=np.float32)
    emb = np.zeros((k, dim), dtype=np.float32)
    emb[:, 0] = cos
    emb[:, 1] = np.sqrt(1.0 - cos**2)
    length = np.array([0.5, 1.0, 0.8, 1.5, 0.6], dtype=np.float32)
    interest = np.zeros((n, dim), dtype=np.float32)
    interest[:, 0] = 1.0
    habit0, self_control, intended = 0.5, 0.4, 1e4
    state = dict(
        true_interest=interest,
        session=session_block(
            np.full(n, habit0),
            np.full(n, self_control),
            np.full(n, intended),
            np.full(n, 15.0),
            np.zeros(n),
            np.zeros(n),
        ),
        in_session_mask=np.ones(n, dtype=np.bool_),
        user_hat=np.zeros((n, dim), dtype=np.float32),
        day_stats=np.zeros((n, L.N_DAY), dtype=np.float32),
        cat_counts=np.zeros((n, 3), dtype=np.uint16),
        imp_emb_sum=np.zeros((n, dim), dtype=np.float32),
        minhash=np.full((n, N_MINHASH), np.iinfo(np.uint32).max, dtype=np.uint32),
    )
    active = np.arange(n, dtype=np.int64)
    cand = np.tile(np.arange(k, dtype=np.int32), (n, 1))  # the same candidates for everyone
    scores = np.tile(np.arange(k, 0, -1, dtype=np.float32), (n, 1))  # fixed slate: items 0..4
    out_item = np.empty(n, dtype=np.int32)
    out_min = np.empty(n, dtype=np.float32)
    out_slate = np.empty((n, k), dtype=np.int32)
    inf = np.full(n, np.inf, dtype=np.float32)
    s = state
    feed.view_step(
        root_key(5), 17, False, active, cand, scores, inf, inf, k, beh,
        emb, np.array([0, 1, 2, 0, 1], dtype=np.int32), np.zeros(k, dtype=np.bool_), quality, hook,
        length, item_signatures(np.arange(k, dtype=np.int64), N_MINHASH),
        s["true_interest"], s["session"], s["in_session_mask"], s["user_hat"], s["day_stats"], s["cat_counts"],
        s["imp_emb_sum"], s["minhash"], out_item, out_min, out_slate,
    )  # fmt: skip
    assert (out_slate == np.arange(k)).all()

    # choice: softmax over (leave, items) of utility / temperature
    match = cos  # the closed form, not the kernel's float32 dot product
    util = (beh[L.MATCH_W] * match + beh[L.QUALITY_W] * quality + beh[L.HOOK_W] * hook) / temp
    u_all = np.concatenate([[beh[L.LEAVE_U] / temp], util])
    p = np.exp(u_all - u_all.max())
    p /= p.sum()
    counts = np.bincount(out_item + 1, minlength=k + 1)
    share = counts / n
    se = np.sqrt(p * (1 - p) / n)
    assert (np.abs(share - p) < Z * se).all(), (share, p, se)
    assert (p > 0.05).all()  # every option is a real alternative

    # continuation among the watchers of each item: sigmoid(z) with the item's watch minutes
    for i in range(k):
        watch_share = 1.0 / (
            1.0 + np.exp(-(beh[L.WATCH_SLOPE] * (match[i] + quality[i]) + beh[L.WATCH_HOOK] * hook[i]))
        )
        minutes = length[i] * watch_share
        habit = habit0 + beh[L.HABIT_GAIN] * minutes
        z = (
            beh[L.CONT_BASE]
            + beh[L.CONT_HABIT] * habit
            + beh[L.CONT_HOOK] * hook[i]
            - beh[L.CONT_FATIGUE] * minutes / 60.0
            - beh[L.CONT_SELF] * self_control * 0.5  # under the intended minutes
        )
        q = 1.0 / (1.0 + math.exp(-z))
        watched = out_item == i
        m = int(watched.sum())
        np.testing.assert_allclose(out_min[watched], minutes, rtol=1e-5)
        cont = s["in_session_mask"][watched].mean()
        assert abs(cont - q) < Z * math.sqrt(q * (1 - q) / m), (i, cont, q, m)
    assert not s["in_session_mask"][out_item < 0].any()


# -- scoring kernels --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scoring_inputs():
    rng = np.random.default_rng(8)
    n_users, n_items, dim, n, c = 400, 700, 16, 300, 50
    emb = rng.standard_normal((n_items, dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    user_vec = rng.standard_normal((n_users, dim)).astype(np.float32)
    user_idx = np.sort(rng.choice(n_users, size=n, replace=False)).astype(np.int64)
    cand = np.stack([rng.choice(n_items, size=c, replace=False) for _ in range(n)]).astype(np.int32)
    # read-only like the engine's PlatformView arrays, so the kernels' compiled (and cached)
    # signatures are reused rather than compiled a second time
    emb.flags.writeable = False
    user_vec.flags.writeable = False
    return dict(emb=emb, user_vec=user_vec, user_idx=user_idx, cand=cand, rng=rng, n_items=n_items)


def _both(fn_name, *args, shape):
    got = np.empty(shape, dtype=np.float32)
    want = np.empty(shape, dtype=np.float32)
    getattr(scoring, fn_name)(*args, got)
    getattr(reference, fn_name)(*args, want)
    return got, want


def test_dot_gather_random_scores_match_twins(scoring_inputs):
    d = scoring_inputs
    shape = d["cand"].shape
    got, want = _both("dot_scores", d["user_vec"], d["user_idx"], d["emb"], d["cand"], shape=shape)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    value = d["rng"].random(d["n_items"]).astype(np.float32)
    got, want = _both("gather_scores", value, d["cand"], shape=shape)
    np.testing.assert_array_equal(got, want)
    got, want = _both("random_scores", root_key(9), 1234, d["user_idx"], shape=shape)
    np.testing.assert_array_equal(got, want)
    assert len(np.unique(got)) > 0.99 * got.size


def test_engagement_scores_match_twin(scoring_inputs):
    d = scoring_inputs
    log_value = d["rng"].normal(-1.0, 0.5, d["n_items"]).astype(np.float32)
    for exploration in (0.0, 0.3, 1.0):
        got, want = _both(
            "engagement_scores", root_key(10), 77, d["user_vec"], d["user_idx"], d["emb"], d["cand"],
            log_value, 4.0, exploration, shape=d["cand"].shape,
        )  # fmt: skip
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    explored = (got >= 0) & (got < 1)
    assert explored.all()  # exploration 1: every row is uniform


def test_mmr_rerank_matches_twin(scoring_inputs):
    d = scoring_inputs
    shape = d["cand"].shape
    base = np.empty(shape, dtype=np.float32)
    scoring.dot_scores(d["user_vec"], d["user_idx"], d["emb"], d["cand"], base)
    base[d["rng"].random(shape) < 0.1] = -np.inf
    base[0] = -np.inf  # nothing eligible
    base[1] = 0.5  # all tied: span 0
    base[2, 3:] = -np.inf  # fewer eligible than the slate
    for weight, slate in ((0.7, 10), (0.0, 5), (1.0, 10)):
        got, want = _both("mmr_rerank", base, d["cand"], d["emb"], weight, slate, shape=shape)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
        assert np.isneginf(got[0]).all()
        assert (np.sort(got[3])[::-1][:slate] == 2 * slate - np.arange(slate)).all()
    # relevance weight 1 keeps the inner order for the slate
    top = np.argsort(-base[5], kind="stable")[:10]
    np.testing.assert_array_equal(np.argsort(-got[5], kind="stable")[:10], top)


# -- whole runs: determinism -----------------------------------------------------------------

_SMALL = {
    "seed": 2024,
    "population": {"n_users": 1000},
    "catalogue": {"n_items": 1000, "new_items_per_day": 50, "mean_item_minutes": 2.0},
    "clock": {"days": 1},
    "recommender": {"kind": "engagement", "diversity": {}, "minors_mode": {}},
}  # every feed and scoring kernel runs; longer items mean fewer sub-steps (a faster test)
_SAVED = ("user_days", "feed_days", "minhash", "true_interest", "imp_emb_sum", "hourly_minutes")

_CHILD = """
import json, sys
import numba
import numpy as np
import sim.engine
from sim import scenario_from_dict, simulate
sc_dict, out = json.loads(sys.argv[1]), sys.argv[2]
# the engine runs small batches on one thread; make every kernel call use all threads here
if hasattr(sim.engine, "PARALLEL_MIN_ROWS"):
    sim.engine.PARALLEL_MIN_ROWS = 0
record = simulate(scenario_from_dict(sc_dict))
for name in {saved!r}:
    np.save(f"{{out}}/{{name}}.npy", getattr(record, name))
print(numba.get_num_threads())
"""


def test_bitwise_identical_across_thread_counts(tmp_path):
    code = _CHILD.format(saved=_SAVED)
    dirs = []
    for threads in (1, 2):
        out = tmp_path / f"threads{threads}"
        out.mkdir()
        # passive OpenMP waiting: on a busy machine, spinning threads slow a run down ~5x
        env = {**os.environ, "NUMBA_NUM_THREADS": str(threads), "OMP_WAIT_POLICY": "passive"}
        proc = subprocess.run(
            [sys.executable, "-c", code, json.dumps(_SMALL), str(out)],
            env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.split()[-1] == str(threads)
        dirs.append(out)
    for name in _SAVED:
        a = (dirs[0] / f"{name}.npy").read_bytes()
        b = (dirs[1] / f"{name}.npy").read_bytes()
        assert a == b, name
    days = np.load(dirs[0] / "user_days.npy")
    assert days[..., L.VIEWS].sum() > 0 and days[..., L.PROMPTS].sum() > 0


def test_same_seed_same_run_other_seed_other_run():
    recommender = {"kind": "engagement", "minors_mode": {}}
    sc = scenario_from_dict({**_SMALL, "population": {"n_users": 500}, "recommender": recommender})
    with _one_thread():
        a, b = simulate(sc), simulate(sc)
        c = simulate(sc.with_overrides(seed=sc.seed + 1))
    np.testing.assert_array_equal(a.user_days, b.user_days)
    np.testing.assert_array_equal(a.minhash, b.minhash)
    assert a.user_days[..., L.VIEWS].sum() > 0
    assert not np.array_equal(a.user_days, c.user_days)


def test_item_signatures_are_the_minhash_of_each_uid_and_follow_replaced_slots():
    uid = np.array([0, 1, 7, 123_456_789, 2**40 + 3], dtype=np.int64)
    sig = item_signatures(uid, N_MINHASH)
    want = reference.minhash_item_np(uid[:, None], np.arange(N_MINHASH)[None, :])
    assert sig.dtype == np.uint32 and sig.shape == (uid.size, N_MINHASH)
    np.testing.assert_array_equal(sig, want)
    sc = scenario_from_dict(
        {"name": "sig", "population": {"n_users": 50}, "catalogue": {"n_items": 200, "new_items_per_day": 20}}
    )
    w = FeedWorld(sc)
    for _ in range(sc.ticks_per_day):  # midnight replaces the oldest slots with new uids
        w.step()
    np.testing.assert_array_equal(w.items.minhash, item_signatures(w.items.uid, N_MINHASH))
    assert w.items.uid.max() >= 200


@pytest.mark.parametrize("dtype", [np.uint16, np.uint32])
def test_category_counts_saturate_at_the_dtype_maximum_in_kernel_and_twin(world, dtype):
    w = world
    rng = np.random.default_rng(5)
    top = np.iinfo(dtype).max
    base = _copy_state(w, rng)
    base["cat_counts"] = np.full(w.cat_counts.shape, top - 2, dtype=dtype)  # two impressions from the ceiling
    step = 40 * MAX_SUBSTEPS
    inputs = _view_inputs(w, rng, step)
    got = _run_view(feed, w, base, step, False, inputs)
    want = _run_view(reference, w, base, step, False, inputs)
    assert got["cat_counts"].dtype == dtype
    assert got["cat_counts"].max() == top  # reached, never wrapped round to small values
    assert got["cat_counts"].min() == top - 2
    np.testing.assert_array_equal(got["cat_counts"], want["cat_counts"])


def test_category_count_dtype_widens_for_heavy_slates():
    from sim.state import category_count_dtype

    assert category_count_dtype(scenario_from_dict({})) == np.uint16
    heavy = scenario_from_dict({"recommender": {"slate_size": 50}, "catalogue": {"mean_item_minutes": 0.5}})
    assert category_count_dtype(heavy) == np.uint32


def test_the_kernels_rows_start_on_cache_lines():
    """A 64-byte row on a cache line is one miss, not two (sim.state.empty_aligned); replaced items stay aligned."""
    from sim.state import CACHE_LINE_BYTES, empty_aligned, full_aligned, replace_items

    w = FeedWorld(scenario_from_dict({"seed": 3, "population": {"n_users": 500}, "catalogue": {"n_items": 300}}))
    replace_items(w.items, w.scenario, w.centroids, np.random.default_rng(5), tick=3)
    rows = {
        "user_hat": w.platform.user_hat, "true_interest": w.users.true_interest, "imp_emb_sum": w.imp_emb_sum,
        "minhash": w.minhash, "item embedding": w.items.embedding, "item minhash": w.items.minhash,
    }  # fmt: skip
    for name, a in rows.items():
        assert a.ctypes.data % CACHE_LINE_BYTES == 0, name
        assert a.flags.c_contiguous and a.flags.writeable, name
        # deterministic, unlike the address alone (a small np.zeros is on a line one time in four):
        base = a.base
        assert base is not None and base.dtype == np.uint8 and base.nbytes == a.nbytes + CACHE_LINE_BYTES, name
    for shape in [(0, 16), (7,), (3, 5, 2), 4]:
        a = empty_aligned(shape, np.float64)
        assert a.shape == (shape if isinstance(shape, tuple) else (shape,)) and a.dtype == np.float64
        assert a.size == 0 or a.ctypes.data % CACHE_LINE_BYTES == 0  # an empty array has no data to place
    assert (full_aligned((5, 3), 0, np.float32) == 0).all() and (full_aligned((2, 2), 7, np.uint32) == 7).all()
    with pytest.raises(ValueError, match="negative"):
        empty_aligned((-1, 16), np.float32)


def test_online_totals_equal_bincount_bit_for_bit():
    """add_views / add_impressions / add_watch_minutes are the engine's per-sub-step totals: bincount's sums exactly."""
    from sim.kernels.feed import add_impressions, add_views, add_watch_minutes

    rng = np.random.default_rng(8)
    n_users, n_items, n_act, k, n_creators = 5_000, 700, 1_500, 10, 40
    active = np.sort(rng.choice(n_users, n_act, replace=False)).astype(np.int64)
    out_item = np.where(rng.random(n_act) < 0.8, rng.integers(0, n_items, n_act), -1).astype(np.int32)
    out_minutes = np.where(out_item >= 0, rng.random(n_act) * 3, 0).astype(np.float32)
    out_slate = rng.integers(0, n_items, (n_act, k)).astype(np.int32)
    n_top = rng.integers(0, k + 1, n_act)
    out_slate[np.arange(k)[None, :] >= n_top[:, None]] = -1  # -1 padded at the end, some slates empty
    cohort = rng.integers(0, 3, n_users).astype(np.int8)
    creator = rng.integers(0, n_creators, n_items).astype(np.int32)
    watched = out_item >= 0

    impressions = rng.integers(0, 50, n_items)  # totals carried over from earlier sub-steps
    want = impressions + np.bincount(out_slate[out_slate >= 0], minlength=n_items)
    add_impressions(out_slate, impressions)
    np.testing.assert_array_equal(impressions, want)

    views, minutes = np.zeros(n_items, dtype=np.int64), np.zeros(n_items, dtype=np.float64)
    add_views(out_item[watched], out_minutes[watched], views, minutes)
    np.testing.assert_array_equal(views, np.bincount(out_item[watched], minlength=n_items))
    want_min = np.bincount(out_item[watched], weights=out_minutes[watched], minlength=n_items)
    assert minutes.tobytes() == want_min.tobytes()

    by_cohort, by_creator = rng.random(3) * 100, rng.random(n_creators) * 100
    want_cohort = by_cohort + np.bincount(cohort[active[watched]], weights=out_minutes[watched], minlength=3)
    want_creator = by_creator + np.bincount(
        creator[out_item[watched]], weights=out_minutes[watched], minlength=n_creators
    )
    add_watch_minutes(active, out_item, out_minutes, cohort, creator, by_cohort, by_creator)
    assert by_cohort.tobytes() == want_cohort.tobytes()
    assert by_creator.tobytes() == want_creator.tobytes()

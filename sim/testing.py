"""Conformance checks for plugin authors (like scikit-learn's estimator checks).

>>> from sim.testing import check_recommender
>>> check_recommender(MyRecommender())  # doctest: +SKIP

Public objects
--------------
check_recommender
    Runs every check on a recommender instance; raises :class:`ConformanceError`
    naming the failed check, or returns the list of checks passed.
make_check_world
    A tiny world whose view and logs the checks use.
ConformanceError
"""

from __future__ import annotations

import copy
import hashlib

import numpy as np

from sim.platform import InteractionLog
from sim.scenario import scenario_from_dict

__all__ = ["ConformanceError", "check_recommender", "make_check_world"]


class ConformanceError(AssertionError):
    """A recommender failed a conformance check."""


def make_check_world(seed: int = 7, n_users: int = 300, n_items: int = 400, ticks: int = 8):
    """Return a small :class:`sim.engine.FeedWorld` advanced ``ticks`` ticks with a content recommender."""
    from sim.engine import FeedWorld

    sc = scenario_from_dict(
        {
            "seed": seed,
            "clock": {"days": 1},
            "population": {"n_users": n_users, "opt_out_share": 0.2},
            "catalogue": {"n_items": n_items, "new_items_per_day": 20},
            "recommender": {"kind": "content", "n_candidates": 50, "slate_size": 10},
        }
    )
    world = FeedWorld(sc)
    world.tick = 18 * world.ticks_per_day // 24  # start at 18:00, when many users are active
    for _ in range(ticks):
        world.step()
    return world


def _digest(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _batch(world, n_batch: int = 64):
    rng = np.random.default_rng(11)
    user_idx = np.sort(rng.choice(world.users.n_users, n_batch, replace=False)).astype(np.int64)
    cand = np.stack([rng.choice(world.items.n_items, 50, replace=False) for _ in range(n_batch)]).astype(np.int32)
    return user_idx, cand


def _log(world) -> InteractionLog:
    rng = np.random.default_rng(5)
    n = 200
    return InteractionLog(
        user_idx=rng.integers(0, world.users.n_users, n).astype(np.int64),
        item_idx=rng.integers(0, world.items.n_items, n).astype(np.int32),
        minutes=rng.uniform(0.1, 2.0, n).astype(np.float32),
        step=np.zeros(n, dtype=np.int64),
        item_impressions=rng.integers(0, 20, world.items.n_items).astype(np.int32),
    )


def check_recommender(rec, name: str | None = None) -> list[str]:
    """Run the conformance checks on a recommender instance.

    Checks: fit returns self; score returns a float array of shape
    (n_batch, n_cand) with no NaN or +inf; inputs are not mutated; the result
    is deterministic (two deep copies fitted on the same log agree); rows are
    permutation-equivariant in the users of the batch; the view refuses ground
    truth (``true_*``); and scores do not change when the world's ground truth
    is scrambled. ``access``, if present, returns two float arrays (n_batch,).

    Returns
    -------
    list of str
        Names of the checks passed.

    Raises
    ------
    ConformanceError
        Naming the recommender and the failed check.
    """
    label = name or type(rec).__name__
    passed: list[str] = []

    def fail(check, msg):
        raise ConformanceError(f"recommender {label}: {check} failed: {msg}")

    for meth in ("fit", "score"):
        if not callable(getattr(rec, meth, None)):
            fail("check_protocol", f"no {meth}() method")
    passed.append("check_protocol")

    world = make_check_world()
    view, log = world.view, _log(world)
    view._set(step=world.tick * 1024)
    user_idx, cand = _batch(world)

    a, b = copy.deepcopy(rec), copy.deepcopy(rec)
    if a.fit(view, log) is not a:
        fail("check_fit_returns_self", "fit() must return self")
    b.fit(view, log)
    passed.append("check_fit_returns_self")

    before = _digest(user_idx, cand, log.item_idx, log.minutes, world.platform.user_hat, world.items.embedding)
    s1 = a.score(user_idx, cand, view)
    if before != _digest(user_idx, cand, log.item_idx, log.minutes, world.platform.user_hat, world.items.embedding):
        fail("check_no_input_mutation", "score() changed its inputs")
    passed.append("check_no_input_mutation")

    if not isinstance(s1, np.ndarray) or s1.shape != cand.shape:
        fail("check_score_shape", f"expected ndarray of shape {cand.shape}, got {getattr(s1, 'shape', type(s1))}")
    if s1.dtype.kind != "f":
        fail("check_score_dtype", f"scores must be floating (float32), got {s1.dtype}")
    if np.isnan(s1).any() or np.isposinf(s1).any():
        fail("check_score_finite", "scores contain NaN or +inf")
    passed += ["check_score_shape", "check_score_dtype", "check_score_finite"]

    s2 = b.score(user_idx, cand, view)
    if not np.array_equal(s1, s2):
        fail("check_deterministic", "two copies fitted on the same data gave different scores")
    passed.append("check_deterministic")

    perm = np.random.default_rng(3).permutation(user_idx.size)
    s3 = a.score(user_idx[perm], cand[perm], view)
    if not np.array_equal(s3, s1[perm]):
        fail("check_user_permutation", "permuting the users of a batch must permute the score rows")
    passed.append("check_user_permutation")

    try:
        view.true_interest  # noqa: B018
        fail("check_no_ground_truth", "the view exposed ground truth")
    except AttributeError:
        pass
    world.users.true_interest[:] = np.random.default_rng(9).permutation(world.users.true_interest)
    world.items.true_hook[:] = 0.0
    world.items.true_quality[:] = 0.0
    if not np.array_equal(a.score(user_idx, cand, view), s1):
        fail("check_no_ground_truth", "scores changed when only ground truth changed")
    passed.append("check_no_ground_truth")

    if hasattr(rec, "access"):
        try:
            allowance, prompt_after = a.access(user_idx, view)
        except (TypeError, ValueError) as exc:
            fail("check_access", f"access() must return (allowance, prompt_after): {exc}")
        for arr, what in ((allowance, "allowance"), (prompt_after, "prompt_after")):
            arr = np.asarray(arr)
            if arr.shape != user_idx.shape or arr.dtype.kind != "f" or np.isnan(arr).any():
                fail("check_access", f"{what} must be a float array of shape {user_idx.shape} without NaN")
        passed.append("check_access")
    return passed

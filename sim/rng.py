"""Randomness for recaudit: one seed, one tree, counter-based draws in kernels.

A run is driven by one integer seed. Python-side components draw from
:class:`numpy.random.Generator` objects spawned from one
:class:`numpy.random.SeedSequence` (one named child per purpose, so adding a
component does not change the draws of the others). Kernels draw from a
counter-based generator: every uniform is a pure function of
``(key, tick, agent, purpose)``. A draw therefore does not depend on which
thread evaluates it, or in which order, and a run is bitwise identical with
any number of threads. Two runs with the same seed (e.g. a scenario and its
counterfactual) see the same random numbers for the same (tick, agent,
purpose): common random numbers, which is what makes paired counterfactual
audits precise.

Public objects
--------------
root_key
    64-bit kernel key derived from a seed and a replication index.
spawn_generators
    Named :class:`numpy.random.Generator` children of a seed.
uniform, hash4
    The counter-based generator (numba), scalar form.
uniform_np
    Its vectorised NumPy twin, used by tests and plugin authors.
Purpose
    Integer tags that keep the streams of different decisions apart.

The mixing function is the SplitMix64 finaliser (Steele, Lea & Flood,
"Fast splittable pseudorandom number generators", OOPSLA 2014), applied once
per key word so every word changes every output bit.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

__all__ = [
    "Purpose",
    "hash4",
    "hash4_np",
    "normal",
    "normal_np",
    "root_key",
    "spawn_generators",
    "uniform",
    "uniform_np",
]

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_INV_2_53 = 1.0 / 9007199254740992.0  # 2**-53: 53 random bits -> a double in [0, 1)


class Purpose:
    """Stream tags for kernel draws; a new decision gets a new number."""

    OPEN = 1  # does an idle user open the app this tick
    OPEN_OFFSET = 2  # minute within the tick at which the session starts
    CANDIDATES = 3  # retrieval: which items a block of users is scored on
    CHOICE = 4  # which slate item the user picks (or leaving)
    CONTINUE = 5  # does the user go on after watching
    REST_PROMPT = 6  # does the user obey a rest prompt
    EXPLORE = 7  # recommender exploration noise
    RANDOM_REC = 8  # random recommender scores
    POPULATION = 9  # reserved: population generation uses a Generator instead
    STRIDE = 10  # retrieval stride choice
    RECOMMENDER_KEY = 11  # derives the recommenders' key from the run key
    SHOP = 12  # does a user have a shopping occasion this tick
    OFFER_CANDIDATES = 13  # which products the platform considers for an occasion
    WTP = 14  # the occasion's taste shock (first uniform of a normal draw)
    WTP_HAT = 15  # the platform's estimation error of willingness to pay (first uniform)
    COMPARE = 16  # does the user compare prices elsewhere
    BUY = 17  # the purchase decision
    WTP_PAIR = 18  # second uniform of the WTP normal draw
    WTP_HAT_PAIR = 19  # second uniform of the WTP_HAT normal draw
    ORDER_COUNT = 20  # how many delivery orders arrive in a fleet step (agent 0)
    ORDER_MERCHANT = 21  # which merchant an order is from (agent: order id)
    ORDER_RADIUS = 22  # customer's distance from the merchant
    ORDER_ANGLE = 23  # customer's direction from the merchant
    ORDER_PREP = 24  # the merchant's preparation time
    ORDER_MINUTE = 25  # when in the step (or tick) an order arrives
    ACCEPT = 26  # does a courier accept an offer (agent: order id, tick: fleet step)
    SERVICE = 27  # service time of an order without geography
    WORKER_REST = 28  # does a courier take an unplanned day off (agent: worker, tick: day)
    DELIVERY = 29  # is a platform purchase delivered by the fleet (agent: user, tick: tick)
    BOT_VIEWS = 30  # is a bot account's fake-view count this tick rounded up (agent: bot, tick: tick)
    BOT_TARGET = 31  # which campaign target a fake view is for (agent: bot * 4096 + view, tick: tick)
    BOT_ITEM = 32  # which of a target creator's items a fake view is of (agent and tick as BOT_TARGET)
    BOT_DETECT = 33  # does the platform's filter catch a fake view (agent and tick as BOT_TARGET)
    TAG_DELETE = 40  # does a user delete their top interest tag (agent: user, tick: the deletion tick; sim.tags)


def root_key(seed: int, replication: int = 0) -> int:
    """Return the 64-bit kernel key of a run.

    Parameters
    ----------
    seed : int
        The scenario seed (any non-negative integer).
    replication : int
        Replication index; replication ``r`` uses the ``r``-th spawned child.

    Returns
    -------
    int
        A key in ``[0, 2**63)`` that kernels combine with (tick, agent, purpose).
    """
    seq = np.random.SeedSequence(seed).spawn(replication + 1)[replication]
    words = seq.generate_state(2, dtype=np.uint32)
    return int((int(words[0]) << 31) ^ int(words[1]))


def spawn_generators(seed: int, names: tuple[str, ...], replication: int = 0):
    """Return one independent :class:`numpy.random.Generator` per name.

    Parameters
    ----------
    seed : int
        The scenario seed.
    names : tuple of str
        Purposes, e.g. ``("population", "items", "bootstrap")``. The stream of
        a name depends only on the seed, the replication and the name.
    replication : int
        Replication index.
    """
    out = {}
    for name in names:
        entropy = [seed, replication] + [ord(c) for c in name]
        out[name] = np.random.default_rng(np.random.SeedSequence(entropy))
    return out


@nb.njit(inline="always", cache=True)
def _mix(z):
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


@nb.njit(inline="always", cache=True)
def hash4(key, tick, agent, purpose):
    """Hash four integers into 64 random bits (numba scalar function)."""
    h = _mix(np.uint64(key) + _GOLDEN)
    h = _mix(h ^ (np.uint64(tick) * _GOLDEN))
    h = _mix(h ^ (np.uint64(agent) * _M1))
    h = _mix(h ^ (np.uint64(purpose) * _M2))
    return h


@nb.njit(inline="always", cache=True)
def uniform(key, tick, agent, purpose):
    """Return a double in [0, 1) determined by (key, tick, agent, purpose)."""
    return float(hash4(key, tick, agent, purpose) >> np.uint64(11)) * _INV_2_53


@nb.njit(inline="always", cache=True)
def normal(key, tick, agent, purpose, purpose_pair):
    """Return a standard normal draw (Box-Muller on two counter-based uniforms)."""
    u1 = uniform(key, tick, agent, purpose)
    u2 = uniform(key, tick, agent, purpose_pair)
    return math.sqrt(-2.0 * math.log(1.0 - u1)) * math.cos(2.0 * math.pi * u2)


def normal_np(key: int, tick, agent, purpose: int, purpose_pair: int) -> np.ndarray:
    """Twin of :func:`normal`, element by element with :mod:`math` (bitwise equal to the kernel)."""
    u1 = np.atleast_1d(uniform_np(key, tick, agent, purpose))
    u2 = np.atleast_1d(uniform_np(key, tick, agent, purpose_pair))
    u1, u2 = np.broadcast_arrays(u1, u2)
    return np.array(
        [math.sqrt(-2.0 * math.log(1.0 - a)) * math.cos(2.0 * math.pi * b) for a, b in zip(u1.ravel(), u2.ravel())],
        dtype=np.float64,
    ).reshape(u1.shape)


def _mix_np(z: np.ndarray) -> np.ndarray:
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def hash4_np(key: int, tick, agent, purpose) -> np.ndarray:
    """Vectorised NumPy twin of :func:`hash4`; arguments broadcast; returns uint64."""
    with np.errstate(over="ignore"):
        t = np.asarray(tick).astype(np.uint64)
        a = np.asarray(agent).astype(np.uint64)
        p = np.asarray(purpose).astype(np.uint64)
        h = _mix_np(np.uint64(key) + _GOLDEN)
        h = _mix_np(h ^ (t * _GOLDEN))
        h = _mix_np(h ^ (a * _M1))
        return _mix_np(h ^ (p * _M2))


def uniform_np(key: int, tick, agent, purpose) -> np.ndarray:
    """Vectorised NumPy twin of :func:`uniform`; arguments broadcast.

    Returns
    -------
    numpy.ndarray of float64
        Exactly the values :func:`uniform` returns for the same arguments.
    """
    return (hash4_np(key, tick, agent, purpose) >> np.uint64(11)).astype(np.float64) * _INV_2_53

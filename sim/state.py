"""Struct-of-arrays state of the feed world: users, items, and the platform's logs.

Nothing here is an object per agent: every attribute is one array over all
users (or all item slots). Ground truth the platform cannot see is named
``true_*``; the platform's estimates are ``*_hat``.

Public objects
--------------
Users
    The population (ground truth and day counters).
Items
    The rolling catalogue of item slots.
PlatformState
    What the platform logs and estimates (visible to recommenders).
make_users, make_items, replace_items
    Generators (vectorised, driven by a :class:`numpy.random.Generator`).
ACTIVITY_PROFILES
    Relative hourly opening rates by cohort and chronotype, shape (3, 2, 24).
empty_aligned, full_aligned, aligned_copy
    Arrays whose data start on a cache line (the kernels' per-user and per-item rows).
session_block
    The view kernels' per-user session scalars as one (n, 8) float32 block.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sim.kernels import layout as L
from sim.kernels.feed import item_signatures
from sim.scenario import COHORTS, Scenario

__all__ = [
    "ACTIVITY_PROFILES",
    "CACHE_LINE_BYTES",
    "N_MINHASH",
    "Items",
    "PlatformState",
    "Users",
    "aligned_copy",
    "category_count_dtype",
    "empty_aligned",
    "full_aligned",
    "make_items",
    "make_users",
    "n_creators",
    "replace_items",
    "row_width",
    "session_block",
]

N_MINHASH = 16  # MinHash signature length per user (Jaccard standard error ~ 1/sqrt(16))

# Relative opening rate by hour of day, shape (cohort, chronotype, 24); each
# row is normalised to mean 1. Modelling assumptions (no published hourly
# curve is in our reference notes): adults peak at lunch and 19-23h; minors
# are at school 8-16h and peak after school and in the evening; the elderly
# are morning and early-evening users. Chronotype 1 ("night owl") moves
# evening use past midnight, which is what produces late-night minutes.
# fmt: off
#                  0     1     2     3     4     5    6    7    8    9   10   11   12   13   14   15   16   17   18   19   20   21   22   23
_DAY = np.array([
    [0.3, 0.1, 0.05, 0.05, 0.05, 0.1, 0.4, 0.9, 1.0, 0.8, 0.8, 1.0, 1.6, 1.4, 0.9, 0.9, 1.0, 1.2, 1.5, 1.8, 2.0, 2.0, 1.6, 0.8],  # adult
    [0.2, 0.1, 0.05, 0.05, 0.05, 0.1, 0.4, 0.8, 0.2, 0.2, 0.2, 0.2, 0.6, 0.3, 0.2, 0.3, 1.6, 2.0, 1.8, 1.8, 2.0, 2.0, 1.2, 0.5],  # minor
    [0.1, 0.05, 0.05, 0.05, 0.2, 0.8, 1.5, 1.8, 1.6, 1.4, 1.2, 1.0, 1.0, 0.8, 0.9, 1.0, 1.1, 1.2, 1.4, 1.8, 1.8, 1.2, 0.5, 0.2],  # elderly
])
_OWL = np.array([
    [1.4, 1.0, 0.6, 0.3, 0.1, 0.05, 0.1, 0.3, 0.6, 0.6, 0.7, 0.8, 1.2, 1.0, 0.8, 0.8, 0.9, 1.0, 1.2, 1.5, 1.8, 2.0, 2.2, 2.0],
    [1.2, 0.8, 0.5, 0.2, 0.1, 0.05, 0.1, 0.5, 0.2, 0.2, 0.2, 0.2, 0.5, 0.3, 0.2, 0.3, 1.4, 1.7, 1.6, 1.7, 1.9, 2.0, 2.2, 1.8],
    [0.6, 0.3, 0.2, 0.1, 0.1, 0.3, 0.8, 1.2, 1.2, 1.1, 1.0, 1.0, 1.0, 0.8, 0.9, 1.0, 1.1, 1.2, 1.4, 1.7, 1.8, 1.6, 1.2, 0.9],
])
# fmt: on
ACTIVITY_PROFILES = np.stack([_DAY, _OWL], axis=1)
ACTIVITY_PROFILES = (ACTIVITY_PROFILES / ACTIVITY_PROFILES.mean(axis=2, keepdims=True)).astype(np.float32)


@dataclass
class Users:
    """The population, one array per attribute.

    Attributes (n = n_users, D = interest_dim, C = n_categories)
    -------------------------------------------------------------
    cohort : int8 (n,)
        0 adult, 1 minor, 2 elderly (index into :data:`sim.scenario.COHORTS`).
    age : int16 (n,)
        Age in years (declared to the platform, and true).
    opt_out_mask : bool (n,)
        Has switched personalisation off (Art. 17).
    night_owl_mask : bool (n,)
        Uses the late-night activity profile.
    true_interest : float32 (n, D)
        Unit interest vector; drifts toward what is consumed.
    true_interest0 : float32 (n, D)
        The interest vector at the start of the run.
    true_habit : float32 (n,)
        Habit stock ("addiction capital"), in hours a day of recent use.
    true_self_control : float32 (n,)
        In [0, 1]; damps continuation once intended use is exceeded.
    true_intended_minutes : float32 (n,)
        Minutes a day the user would choose with full self-control.
    open_rate : float32 (n,)
        Expected openings per tick at a profile weight of 1 and zero habit.
    in_session_mask : bool (n,)
        Currently scrolling.
    time_left : float32 (n,)
        Minutes of the current tick not yet used (negative: a view spilled over).
    streak_minutes : float32 (n,)
        Minutes of the current session (continuous use).
    since_prompt_minutes : float32 (n,)
        Minutes since the last rest prompt (or session start).
    session : float32 (n, N_SESSION)
        Set on construction, not passed: the six fields of
        ``sim.kernels.layout.SESSION_FIELDS`` (habit .. minutes since the prompt)
        as the columns ``S_HABIT`` .. ``S_SINCE_PROMPT`` of one block, a 32-byte
        row per user starting on a cache line (:func:`empty_aligned`), with the
        session's unprompted-streak flag in ``S_ALERTED`` (0.0 / 1.0). Those six
        attributes are then strided views of its columns, and the view kernels
        take the block itself: one cache line per user and view instead of seven
        (``benchmarks/README.md``, stop 16).
        Assign into the six (``users.time_left[:] = 0``), never rebind them to
        new arrays: the kernels would not see the new ones, nor would
        ``PlatformView`` (``user_streak_minutes``, ``user_time_left``).
    """

    cohort: np.ndarray
    age: np.ndarray
    opt_out_mask: np.ndarray
    night_owl_mask: np.ndarray
    true_interest: np.ndarray
    true_interest0: np.ndarray
    true_habit: np.ndarray
    true_self_control: np.ndarray
    true_intended_minutes: np.ndarray
    open_rate: np.ndarray
    in_session_mask: np.ndarray
    time_left: np.ndarray
    streak_minutes: np.ndarray
    since_prompt_minutes: np.ndarray
    session: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.session = session_block(*(getattr(self, name) for name in L.SESSION_FIELDS))
        self._tie_to_session()

    def __setstate__(self, state: dict) -> None:
        # copy.deepcopy and unpickling copy each view apart from the block: tie the six to the block's columns again
        self.__dict__.update(state)
        self._tie_to_session()

    def _tie_to_session(self) -> None:
        for c, name in enumerate(L.SESSION_FIELDS):
            setattr(self, name, self.session[:, c])

    @property
    def n_users(self) -> int:
        """Number of users."""
        return self.cohort.shape[0]


@dataclass
class Items:
    """The catalogue: ``n_items`` slots, the oldest replaced by new items each day.

    Attributes (m = n_items, D = interest_dim)
    ------------------------------------------
    embedding : float32 (m, D)
        Unit content vector (visible to the platform: content features).
    category : int32 (m,)
    creator : int32 (m,)
    uid : int64 (m,)
        Unique id of the item now in the slot (slots are recycled).
    birth_tick : int32 (m,)
        Tick at which the item arrived (negative: before the run).
    length_minutes : float32 (m,)
        Full duration (minutes).
    harmful_mask : bool (m,)
        Content harmful to minors (the platform's moderation label; here exact).
    true_quality : float32 (m,)
        Satisfaction the item gives beyond interest match (hidden).
    true_hook : float32 (m,)
        Engagement bait: raises clicks, watch share and continuation, not satisfaction (hidden).
    minhash : uint32 (m, N_MINHASH)
        MinHash signature of the item now in the slot (of ``uid``; for the users' consumption sketches).
    """

    embedding: np.ndarray
    category: np.ndarray
    creator: np.ndarray
    uid: np.ndarray
    birth_tick: np.ndarray
    length_minutes: np.ndarray
    harmful_mask: np.ndarray
    true_quality: np.ndarray
    true_hook: np.ndarray
    minhash: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        self.minhash = aligned_copy(item_signatures(self.uid, N_MINHASH))

    @property
    def n_items(self) -> int:
        """Number of item slots."""
        return self.category.shape[0]


@dataclass
class PlatformState:
    """The platform's own logs and estimates, updated from interactions only.

    Attributes
    ----------
    user_hat : float32 (n_users, D)
        Profile: exponential average of the embeddings of watched items, weighted by watch share.
    item_views_hat, item_minutes_hat, item_impressions_hat : float32 (n_items,)
        Exponentially decayed counts (half-life ``stats_half_life_days``).
    """

    user_hat: np.ndarray
    item_views_hat: np.ndarray
    item_minutes_hat: np.ndarray
    item_impressions_hat: np.ndarray
    stats_half_life_days: float = 2.0


CACHE_LINE_BYTES = 64  # the L1 line of x86-64 and most ARM64 cores (Apple's M-series use 128)


def empty_aligned(shape: tuple[int, ...], dtype, zero: bool = False) -> np.ndarray:
    """``np.empty(shape, dtype)`` (or ``np.zeros`` with ``zero``) whose data starts on a cache line (C order).

    An array big enough for glibc to map it on its own starts 16 bytes into a
    cache line (smaller ones start at any 16-byte offset), so every 64-byte row
    of an (n, 16) float32 array (a profile, an interest, a sketch) straddles two
    lines: two misses instead of one when the view kernels read a scattered
    user's row. Aligned, such a row is one line; at realistic activity (6% of
    users viewing) that made the fused view kernel ~9% faster
    (``benchmarks/README.md``, stop 14). Values are unaffected. With ``zero``
    the buffer comes from ``np.zeros``, so untouched pages stay unallocated, as
    with ``np.zeros`` itself.
    """
    shape = (int(shape),) if np.ndim(shape) == 0 else tuple(int(n) for n in shape)
    if any(n < 0 for n in shape):
        raise ValueError(f"negative dimensions are not allowed: {shape}")
    dtype = np.dtype(dtype)
    n_bytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    buf = (np.zeros if zero else np.empty)(n_bytes + CACHE_LINE_BYTES, dtype=np.uint8)
    start = (-buf.ctypes.data) % CACHE_LINE_BYTES
    return buf[start : start + n_bytes].view(dtype).reshape(shape)


def session_block(
    true_habit, true_self_control, true_intended_minutes, time_left, streak_minutes, since_prompt_minutes
) -> np.ndarray:
    """Return the view kernels' session block float32 (n, N_SESSION) holding these six (n,) arrays as its columns.

    The columns are ``sim.kernels.layout.S_HABIT`` .. ``S_SINCE_PROMPT``, in the
    order of the arguments (``SESSION_FIELDS``); the flag ``S_ALERTED`` and the spare column are 0. The
    block starts on a cache line (:func:`empty_aligned`), so each user's 32-byte row
    lies in one line. :class:`Users` builds its own; tests and benchmarks that call
    the kernels on made-up users use this.
    """
    cols = (true_habit, true_self_control, true_intended_minutes, time_left, streak_minutes, since_prompt_minutes)
    block = empty_aligned((np.shape(true_habit)[0], L.N_SESSION), np.float32, zero=True)
    for c, values in enumerate(cols):
        block[:, c] = values
    return block


def full_aligned(shape: tuple[int, ...], fill_value, dtype) -> np.ndarray:
    """``np.full(shape, fill_value, dtype)`` starting on a cache line (:func:`empty_aligned`; zeros stay lazy)."""
    if fill_value == 0:
        return empty_aligned(shape, dtype, zero=True)
    out = empty_aligned(shape, dtype)
    out.fill(fill_value)
    return out


def aligned_copy(a: np.ndarray) -> np.ndarray:
    """Copy ``a`` (C order) into an array that starts on a cache line (:func:`empty_aligned`)."""
    out = empty_aligned(a.shape, a.dtype)
    out[...] = a
    return out


def _unit_rows(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norm, 1e-12)).astype(np.float32)


def category_centroids(n_categories: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    """Return unit centroids of the item categories, shape (n_categories, dim)."""
    return _unit_rows(rng.standard_normal((n_categories, dim)))


def make_users(sc: Scenario, centroids: np.ndarray, rng: np.random.Generator) -> Users:
    """Draw the population of a scenario.

    Cohort counts are exact (largest-remainder rounding of ``shares``), users
    are in cohort order. Interests mix one or two favourite categories.
    """
    pop, beh = sc.population, sc.behaviour
    n, dim = pop.n_users, pop.interest_dim
    shares = np.array([pop.shares.get(c, 0.0) for c in COHORTS])
    raw = shares * n
    counts = np.floor(raw).astype(np.int64)
    for i in np.argsort(-(raw - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    cohort = np.repeat(np.arange(3, dtype=np.int8), counts)

    age = np.empty(n, dtype=np.int16)
    for c, (lo, hi) in enumerate([(18, 59), (pop.minor_age_min, pop.minor_age_max), (60, 85)]):
        m = cohort == c
        age[m] = rng.integers(lo, hi + 1, size=int(m.sum()))

    n_cat = centroids.shape[0]
    fav1 = rng.integers(0, n_cat, size=n)
    fav2 = rng.integers(0, n_cat, size=n)
    w2 = rng.uniform(0.0, 0.6, size=(n, 1))
    interest = centroids[fav1] + w2 * centroids[fav2] + 0.5 * rng.standard_normal((n, dim)) / np.sqrt(dim)
    interest = _unit_rows(interest)

    cb = [beh.adult, beh.minor, beh.elderly]
    sc_mean = np.array([b.self_control_mean for b in cb])[cohort]
    kappa = 8.0  # Beta concentration: sd of self-control ~0.16 at mean 0.5 (assumption)
    self_control = rng.beta(sc_mean * kappa, (1 - sc_mean) * kappa).astype(np.float32)
    intended = np.array([b.intended_minutes for b in cb])[cohort] * rng.lognormal(0.0, 0.35, n)
    owl = rng.random(n) < np.array([b.night_owl_share for b in cb])[cohort]
    opens = np.array([b.opens_per_day for b in cb])[cohort] * rng.lognormal(-0.125, 0.5, n)
    open_rate = (opens / sc.ticks_per_day).astype(np.float32)
    opt_out = rng.random(n) < pop.opt_out_share
    if sc.catalogue.stance_share > 0.0:  # drawn last: without stances every other draw is unchanged
        interest[:, STANCE_AXIS] = pop.stance_spread * rng.standard_normal(n)
        interest = _unit_rows(interest)
    return Users(
        cohort=cohort,
        age=age,
        opt_out_mask=opt_out,
        night_owl_mask=owl,
        true_interest=aligned_copy(interest),
        true_interest0=interest,
        # Users arrive with the habit of their intended use (hours a day), not from zero:
        # the population is already using the app when the audit starts.
        true_habit=(intended / 60.0).astype(np.float32),
        true_self_control=self_control,
        true_intended_minutes=intended.astype(np.float32),
        open_rate=open_rate,
        in_session_mask=np.zeros(n, dtype=np.bool_),
        time_left=np.zeros(n, dtype=np.float32),
        streak_minutes=np.zeros(n, dtype=np.float32),
        since_prompt_minutes=np.zeros(n, dtype=np.float32),
    )


def _draw_item_fields(sc: Scenario, centroids: np.ndarray, rng: np.random.Generator, m: int):
    cat = sc.catalogue
    dim = centroids.shape[1]
    category = rng.integers(0, centroids.shape[0], size=m).astype(np.int32)
    emb = _unit_rows(centroids[category] + cat.category_spread * rng.standard_normal((m, dim)) / np.sqrt(dim))
    harmful = rng.random(m) < cat.harmful_share
    hook = rng.exponential(cat.hook_mean, m) + cat.harmful_hook_bonus * harmful
    quality = rng.normal(0.0, 0.3, m)
    length = rng.lognormal(np.log(cat.mean_item_minutes) - 0.18, 0.6, m)
    creator = rng.integers(0, n_creators(sc), size=m).astype(np.int32)
    if cat.stance_share > 0.0:  # drawn last: without stances every other draw is unchanged
        emb[:, STANCE_AXIS] = cat.stance_strength * item_stances(rng, m, cat.stance_share)
        emb = _unit_rows(emb)
    return dict(
        embedding=emb,
        category=category,
        creator=creator,
        length_minutes=np.clip(length, 0.1, 60.0).astype(np.float32),
        harmful_mask=harmful,
        true_quality=quality.astype(np.float32),
        true_hook=hook.astype(np.float32),
    )


STANCE_AXIS = 0  # the embedding coordinate that carries the contested issue's stance (with stances)


def item_stances(rng: np.random.Generator, m: int, share: float) -> np.ndarray:
    """Stances of ``m`` new items: 0 (none) or a side, -1..-0.5 or 0.5..1, for a share ``share``."""
    has = rng.random(m) < share
    side = np.where(rng.random(m) < 0.5, -1.0, 1.0)
    return np.where(has, side * rng.uniform(0.5, 1.0, m), 0.0)


def stances(interest: np.ndarray) -> np.ndarray:
    """Users' stances on the contested issue: their unit interest along :data:`STANCE_AXIS`, (n_users,)."""
    norm = np.maximum(np.linalg.norm(interest, axis=1), 1e-12)
    return interest[:, STANCE_AXIS] / norm


def row_width(n_cols: int, itemsize: int) -> int:
    """Columns to allocate for rows of ``n_cols`` values of ``itemsize`` bytes so no row straddles a cache line.

    The row's bytes are rounded up to a power of two up to ``CACHE_LINE_BYTES``,
    and beyond it to a whole number of lines; with the array starting on a line
    (:func:`empty_aligned`), each row then lies in as few lines as it can. For the
    daily category counts (20 uint16 = 40 bytes, 64 with the padding) this made
    views at realistic activity ~3% faster (``benchmarks/README.md``, stop 16).
    """
    n_bytes = max(n_cols * itemsize, 1)
    if n_bytes <= CACHE_LINE_BYTES:
        padded = 1 << (n_bytes - 1).bit_length()
    else:
        padded = -(-n_bytes // CACHE_LINE_BYTES) * CACHE_LINE_BYTES
    return max(n_cols, padded // itemsize)


def category_count_dtype(sc: Scenario) -> type:
    """Dtype of the per-user daily impression counts by category: uint16 unless a user could pass ~32k a day.

    The bound is a whole day of scrolling items of mean length, a full slate per
    view (1440 / mean_item_minutes x slate_size: 18,000 at the defaults); the
    kernels saturate at the dtype's maximum, which such a bound keeps out of reach.
    """
    heavy = 1440.0 / sc.catalogue.mean_item_minutes * sc.recommender.slate_size
    return np.uint16 if heavy <= 32_767 else np.uint32


def n_creators(sc: Scenario) -> int:
    """Return the number of creators whose items fill the catalogue: one per 20 item slots (modelling choice)."""
    return max(1, sc.catalogue.n_items // 20)


def make_items(sc: Scenario, centroids: np.ndarray, rng: np.random.Generator) -> Items:
    """Draw the initial catalogue; items have ages spread over the past days."""
    m = sc.catalogue.n_items
    fields = _draw_item_fields(sc, centroids, rng, m)
    fields["embedding"] = aligned_copy(fields["embedding"])  # rows on cache lines (replace_items writes in place)
    birth = -rng.integers(1, 30 * sc.ticks_per_day, size=m).astype(np.int32)
    return Items(uid=np.arange(m, dtype=np.int64), birth_tick=birth, **fields)


def replace_items(items: Items, sc: Scenario, centroids: np.ndarray, rng: np.random.Generator, tick: int) -> np.ndarray:
    """Replace the ``new_items_per_day`` oldest slots with new items born at ``tick``.

    Returns
    -------
    numpy.ndarray of int32
        The slot indices that now hold new items.
    """
    k = sc.catalogue.new_items_per_day
    if k == 0:
        return np.zeros(0, dtype=np.int32)
    slot_idx = np.argsort(items.birth_tick, kind="stable")[:k].astype(np.int32)
    fields = _draw_item_fields(sc, centroids, rng, k)
    for name, values in fields.items():
        getattr(items, name)[slot_idx] = values
    items.birth_tick[slot_idx] = tick
    items.uid[slot_idx] = items.uid.max() + 1 + np.arange(k)
    items.minhash[slot_idx] = item_signatures(items.uid[slot_idx], N_MINHASH)
    return slot_idx

"""The feed world's kernels: who opens the app, and one view of a slate per active user.

All kernels are ``njit(parallel=True, cache=True)`` loops over users in which
every iteration writes only its own user's rows, and every random number is
:func:`sim.rng.uniform` keyed on (key, step, user, purpose). Results are
therefore bitwise identical for any number of threads. The plain
NumPy/Python twins are in :mod:`sim.kernels.reference`.

Public objects
--------------
open_step
    Habit decay, tick-time refill, and session openings for all users.
draw_candidates
    Retrieval: each block of ``block_size`` users shares ``n_cand`` distinct items per step.
view_step
    Slate selection (top-k of the recommender's scores), logit choice, watching,
    state updates and the decision to go on, for every active user.
minhash_item, item_signatures
    The MinHash function used for users' consumption sketches, and the items' signatures.
add_views, add_impressions, add_watch_minutes
    Per-item totals of a sub-step's views and impressions, and its watched minutes by
    cohort and by creator, summed in log order (online aggregation).
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from sim.kernels import layout as L
from sim.kernels.expo import exp_nonpos
from sim.kernels.lanes import LANES, NET_MAX_SLATE, lane_dots, lane_dots2, load_lanes, select_slates8, slate_scratch
from sim.kernels.prefetch import prefetch_row
from sim.rng import _GOLDEN, Purpose, _mix, hash4, uniform

__all__ = [
    "CHUNK",
    "add_impressions",
    "add_views",
    "add_watch_minutes",
    "block_dots",
    "profile_view_step",
    "dot16",
    "draw_candidates",
    "load_block",
    "item_signatures",
    "minhash_item",
    "open_step",
    "retrieval_blocks",
    "view_step",
]

CHUNK = 256  # rows per parallel work item in view_step (scratch buffers are per chunk)
_GROUPS_PER_CHUNK = CHUNK // LANES
_BLOCKS_PER_CHUNK = 4  # retrieval blocks per parallel work item in content_view_step
_P_OPEN = Purpose.OPEN
_P_OFFSET = Purpose.OPEN_OFFSET
_P_CAND = Purpose.CANDIDATES
_P_CHOICE = Purpose.CHOICE
_P_CONT = Purpose.CONTINUE
_P_PROMPT = Purpose.REST_PROMPT
_P_EXPLORE = Purpose.EXPLORE
_P_RANDOM = Purpose.RANDOM_REC
_MINHASH_SALT = np.uint64(0x5EED5EED)


@nb.njit(parallel=True, cache=True)
def open_step(
    key, tick, tick_minutes, hour, cohort, night_owl_mask, open_rate, profiles, habit_cue,
    habit_decay, session, in_session_mask, day_stats,
):  # fmt: skip
    """Advance every user by one tick's opening decision.

    Parameters
    ----------
    key, tick : int
        Run key and tick number (the counter of the draws).
    tick_minutes : float
        Minutes per tick.
    hour : int
        Hour of day (0-23) of this tick.
    cohort : int8 (n_users,)
    night_owl_mask : bool (n_users,)
    open_rate : float32 (n_users,)
        Expected openings per tick at profile weight 1 and zero habit.
    profiles : float32 (3, 2, 24)
        Relative hourly rates by cohort and chronotype.
    habit_cue : float
        Relative increase of the opening rate per unit of habit (hours/day).
    habit_decay : float
        Multiplicative habit decay per tick.
    session : float32 (n_users, N_SESSION)
        Updated in place (:mod:`sim.kernels.layout`): every habit decays; in-session
        users get ``tick_minutes`` more tick time; openers get a uniform share of
        the tick (they open part-way through it).
    in_session_mask : bool (n_users,)
        Updated in place: openers enter a session.
    day_stats : float32 (n_users, N_DAY)
        The SESSIONS column is incremented for openers.
    """
    n = cohort.shape[0]
    for u in nb.prange(n):
        habit = np.float32(session[u, L.S_HABIT] * habit_decay)
        session[u, L.S_HABIT] = habit
        if in_session_mask[u]:
            session[u, L.S_TIME_LEFT] = np.float32(session[u, L.S_TIME_LEFT] + tick_minutes)
        else:
            owl = 1 if night_owl_mask[u] else 0
            rate = open_rate[u] * profiles[cohort[u], owl, hour] * (1.0 + habit_cue * habit)
            p = 1.0 - math.exp(-rate)
            if uniform(key, tick, u, _P_OPEN) < p:
                in_session_mask[u] = True
                session[u, L.S_TIME_LEFT] = np.float32(tick_minutes * uniform(key, tick, u, _P_OFFSET))
                day_stats[u, L.SESSIONS] += 1.0


@nb.njit(parallel=True, cache=True)
def draw_candidates(key, step, active_idx, n_items, strides, block_size, out):
    """Fill ``out`` (n_active, n_cand) int32 with each active user's candidate items.

    Users ``u`` with the same ``u // block_size`` share one draw per step: an
    arithmetic progression ``start + j * stride (mod n_items)`` with a stride
    coprime to ``n_items``, so the ``n_cand`` items are distinct and each item
    is equally likely to be a candidate.
    """
    n_act = out.shape[0]
    for r in nb.prange(n_act):
        _block_candidates(key, step, active_idx[r] // block_size, n_items, strides, out[r])


@nb.njit(inline="always", cache=True)
def _block_candidates(key, step, block, n_items, strides, out_row):
    """Candidates of retrieval block ``block`` at ``step`` into ``out_row`` (n_cand,)."""
    h = hash4(key, step, block, _P_CAND)
    pos = np.int64(h % np.uint64(n_items))
    stride = np.int64(strides[np.int64((h >> np.uint64(40)) % np.uint64(strides.shape[0]))])
    for j in range(out_row.shape[0]):  # pos = (start + j * stride) mod n_items, without a division
        out_row[j] = np.int32(pos)
        pos += stride
        if pos >= n_items:
            pos -= n_items


@nb.njit(cache=True)
def add_views(item_idx, minutes, item_views, item_minutes):
    """Add views to the per-item totals: ``item_views`` int64, ``item_minutes`` float64 (n_items,).

    Sequential, in the order of the views: the float64 sums are bitwise those of
    ``np.bincount(all_item_idx, weights=all_minutes)`` over the tick's whole log.
    """
    for r in range(item_idx.shape[0]):
        i = item_idx[r]
        item_views[i] += 1
        item_minutes[i] += np.float64(minutes[r])


@nb.njit(cache=True)
def add_impressions(out_slate, impressions):
    """Add a sub-step's slates (int32 (n_act, slate_size), -1 padded) to ``impressions`` int64 (n_items,).

    The same counts as ``np.bincount(out_slate[out_slate >= 0], minlength=n_items)``, in one pass and without the
    masked copy (~1.9 -> ~0.6 ms a sub-step at 60k viewers).
    """
    for r in range(out_slate.shape[0]):
        for k in range(out_slate.shape[1]):
            i = out_slate[r, k]
            if i >= 0:
                impressions[i] += 1


@nb.njit(cache=True)
def add_watch_minutes(active_idx, out_item, out_minutes, cohort, creator, cohort_minutes, creator_minutes):
    """Add a sub-step's watched minutes by the viewers' cohort and by the items' creator.

    Parameters
    ----------
    active_idx : int64 (n_act,)
    out_item : int32 (n_act,)
        The watched item slot, -1 for none (rows without a view are skipped).
    out_minutes : float32 (n_act,)
    cohort : int8 (n_users,)
    creator : int32 (n_items,)
    cohort_minutes : float64 (n_cohorts,)
        Updated in place: ``+=`` the sub-step's sums.
    creator_minutes : float64 (n_creators,)
        Updated in place, likewise.

    Each sub-step's sums are formed from 0.0 in row order, then added to the
    totals: bitwise what ``np.bincount(..., weights=...)`` of the watched rows,
    added to the totals, gives.
    """
    part_cohort = np.zeros(cohort_minutes.shape[0], dtype=np.float64)
    part_creator = np.zeros(creator_minutes.shape[0], dtype=np.float64)
    for r in range(out_item.shape[0]):
        i = out_item[r]
        if i >= 0:
            m = np.float64(out_minutes[r])
            part_cohort[cohort[active_idx[r]]] += m
            part_creator[creator[i]] += m
    for c in range(part_cohort.shape[0]):
        cohort_minutes[c] += part_cohort[c]
    for c in range(part_creator.shape[0]):
        creator_minutes[c] += part_creator[c]


@nb.njit(parallel=True, cache=True)
def item_signatures(uid, n_hash):
    """MinHash signatures of items: uint32 (n_items, n_hash), ``[r, k] = minhash_item(uid[r], k)``.

    Computed once per item (the catalogue keeps them), so a view costs a
    minimum of two rows instead of ``n_hash`` hashes.
    """
    out = np.empty((uid.shape[0], n_hash), dtype=np.uint32)
    for r in nb.prange(uid.shape[0]):
        for k in range(n_hash):
            out[r, k] = minhash_item(uid[r], k)
    return out


@nb.njit(inline="always", cache=True)
def minhash_item(uid, k):
    """Return the k-th 32-bit MinHash value of item ``uid`` (independent of the run).

    One SplitMix64 finaliser round of ``uid * golden + k + salt``: distinct
    (uid, k) pairs give distinct inputs for any realistic ``uid``.
    """
    return np.uint32(_mix(np.uint64(uid) * _GOLDEN + np.uint64(k) + _MINHASH_SALT) >> np.uint64(32))


@nb.njit(inline="always", cache=True)
def dot16(a, ia, b, ib, dim):
    """Dot product of rows ``a[ia]`` and ``b[ib]``: one float32 running sum in coordinate order.

    Every dot product in the kernels uses this order (the batched scoring
    kernels too), so results are the same on every thread and in the NumPy twins.
    """
    s = np.float32(0.0)
    for d in range(dim):
        s += a[ia, d] * b[ib, d]
    return s


@nb.njit(inline="always", cache=True)
def load_block(item_emb, cand_row, et):
    """Copy the embeddings of the candidates ``cand_row`` (n_cand,) into ``et`` (D, n_cand), transposed."""
    dim = item_emb.shape[1]
    for j in range(cand_row.shape[0]):
        i = cand_row[j]
        for d in range(dim):
            et[d, j] = item_emb[i, d]


@nb.njit(inline="always", cache=True)
def block_dots(user_vec, u, et, acc):
    """``acc[j] = user_vec[u] . et[:, j]``, a float32 running sum over d (as :func:`dot16`).

    The loop over candidates is innermost and contiguous, so it runs in SIMD
    lanes without changing the order of any sum.
    """
    dim, c = et.shape
    for j in range(c):
        acc[j] = np.float32(0.0)
    for d in range(dim):
        ud = user_vec[u, d]
        for j in range(c):
            acc[j] += ud * et[d, j]


@nb.njit(inline="always", cache=True)
def _sigmoid(z):
    return 1.0 / (1.0 + math.exp(-z))


@nb.njit(inline="always", cache=True)
def _end_session(u, in_session_mask, session):
    in_session_mask[u] = False
    session[u, L.S_TIME_LEFT] = 0.0
    session[u, L.S_STREAK] = 0.0
    session[u, L.S_SINCE_PROMPT] = 0.0
    session[u, L.S_ALERTED] = 0.0


@nb.njit(inline="always", cache=True)
def _prefetch_users(
    active_idx, lo, hi, true_interest, session, in_session_mask, user_hat, day_stats, cat_counts, imp_emb_sum,
    minhash,
):  # fmt: skip
    """Prefetch the rows of users ``active_idx[lo:hi]`` that a view reads and writes (:mod:`sim.kernels.prefetch`).

    Each row whole: its first and its last cache line (the arrays start on a line, ``sim.state.empty_aligned``,
    but the 44-byte rows of ``day_stats`` still straddle two, and unpadded callers' category counts may).

    Skipped when those users are (nearly) consecutive: the hardware prefetcher follows such streams.
    """
    hi = min(hi, active_idx.shape[0])
    if hi <= lo or active_idx[hi - 1] - active_idx[lo] < 2 * (hi - lo):
        return
    for q in range(lo, hi):
        u = active_idx[q]
        prefetch_row(user_hat, u)
        prefetch_row(true_interest, u)
        prefetch_row(day_stats, u)
        prefetch_row(cat_counts, u)
        prefetch_row(imp_emb_sum, u)
        prefetch_row(minhash, u)
        prefetch_row(session, u)
        prefetch_row(in_session_mask, u)


@nb.njit(inline="always", cache=True)
def _gate(
    r, u, key, step, allowance, prompt_after, beh, day_stats, in_session_mask, session, out_item, out_minutes,
    out_slate,
):  # fmt: skip
    """Reset row ``r``'s outputs; refuse, prompt or let user ``u`` view. Return whether the view goes on."""
    out_item[r] = -1
    out_minutes[r] = 0.0
    for k in range(out_slate.shape[1]):
        out_slate[r, k] = -1
    if allowance[r] <= 0.0:
        day_stats[u, L.BLOCKED] += 1.0
        _end_session(u, in_session_mask, session)
        return False
    # A session past 30 minutes since the last prompt whose platform would not prompt by then
    # is an unprompted streak, even if a (late) prompt follows now.
    alert = beh[L.STREAK_ALERT]
    since_prompt = session[u, L.S_SINCE_PROMPT]
    if since_prompt >= alert and session[u, L.S_ALERTED] == 0.0 and prompt_after[r] > alert:
        day_stats[u, L.UNPROMPTED_STREAKS] += 1.0
        session[u, L.S_ALERTED] = 1.0
    if since_prompt >= prompt_after[r]:
        day_stats[u, L.PROMPTS] += 1.0
        session[u, L.S_SINCE_PROMPT] = 0.0
        session[u, L.S_ALERTED] = 0.0
        if uniform(key, step, u, _P_PROMPT) < beh[L.PROMPT_COMPLY]:
            _end_session(u, in_session_mask, session)
            return False
    return True


@nb.njit(inline="always", cache=True)
def _impressions(r, u, cand_row, top_j, n_top, emb, category, harmful_mask, slate_i, row_emb, cat_counts,
                 imp_emb_sum, day_stats, out_slate):  # fmt: skip
    """Record the slate ``cand_row[top_j[:n_top]]`` as shown to user ``u`` (row ``r``).

    In passes: the slate's items and labels first (independent loads), then the
    category counts (each a read-modify-write of the user's row), then the
    embeddings, summed in a local row (slate order) and added to the run total
    once. One pass for all of it chained every item's loads behind the previous
    item's count update (~15% of a view before, ``benchmarks/README.md``, stop 15).
    """
    dim = emb.shape[1]
    count_max = np.iinfo(cat_counts.dtype).max
    n_harm = 0
    for k in range(n_top):
        i = cand_row[top_j[k]]
        slate_i[k] = i
        out_slate[r, k] = i
        n_harm += np.int64(harmful_mask[i])
    for k in range(n_top):
        cat = category[slate_i[k]]
        c = cat_counts[u, cat]
        if c < count_max:  # saturating (uint16 or uint32: sim.state.category_count_dtype)
            cat_counts[u, cat] = c + 1
    for d in range(dim):
        row_emb[d] = 0.0
    for k in range(n_top):
        i = slate_i[k]
        for d in range(dim):
            row_emb[d] += emb[i, d]
    for d in range(dim):
        imp_emb_sum[u, d] += row_emb[d]
    day_stats[u, L.IMPRESSIONS] += np.float32(n_top)
    day_stats[u, L.HARMFUL_IMPRESSIONS] += np.float32(n_harm)


@nb.njit(inline="always", cache=True)
def _slate_match(u, slate_i, n_top, emb, true_interest, match32):
    """``match32[k] = true_interest[u] . emb[slate_i[k]]``, each a float32 running sum over d in order (:func:`dot16`).

    Four items share one pass over d, so four independent sums are in flight
    (one sum alone waits on the latency of each addition).
    """
    dim = emb.shape[1]
    k = 0
    while k + 4 <= n_top:
        i0, i1, i2, i3 = slate_i[k], slate_i[k + 1], slate_i[k + 2], slate_i[k + 3]
        s0 = s1 = s2 = s3 = np.float32(0.0)
        for d in range(dim):
            a = true_interest[u, d]
            s0 += a * emb[i0, d]
            s1 += a * emb[i1, d]
            s2 += a * emb[i2, d]
            s3 += a * emb[i3, d]
        match32[k], match32[k + 1], match32[k + 2], match32[k + 3] = s0, s1, s2, s3
        k += 4
    for j in range(k, n_top):
        match32[j] = dot16(true_interest, u, emb, slate_i[j], dim)


@nb.njit(inline="always", cache=True)
def _util_size(slate_size):
    """Length of the choice's weight buffer: leaving plus the slate, rounded up to whole vectors of four float64."""
    return (slate_size + 4) & ~3


@nb.njit(inline="always", cache=True)
def _choose(u, key, step, n_top, slate_i, match32, util, beh, true_quality, true_hook, session):
    """Logit choice among the slate and leaving (inverse CDF); return the slate position, -1 to leave.

    ``util`` (``_util_size(slate_size)``,) holds leaving at 0 and the slate at
    1 .. n_top, padded with ``-inf`` (weight 0) to whole vectors, so every
    exponential runs in vector lanes; the padding adds exact zeros at the end of
    the total, which leaves it unchanged.
    """
    temp = beh[L.TEMPERATURE]
    umax = (beh[L.LEAVE_U] + beh[L.FATIGUE_W] * session[u, L.S_STREAK] / 60.0) / temp
    util[0] = umax
    for k in range(n_top):
        i = slate_i[k]
        uk = (
            beh[L.MATCH_W] * np.float64(match32[k]) + beh[L.QUALITY_W] * true_quality[i] + beh[L.HOOK_W] * true_hook[i]
        ) / temp
        util[k + 1] = uk
        if uk > umax:
            umax = uk
    n_w = _util_size(n_top)
    for k in range(n_top + 1, n_w):
        util[k] = -np.inf
    for k in range(n_w):  # in vector lanes (sim.kernels.expo)
        util[k] = exp_nonpos(util[k] - umax)
    total = util[0]
    for k in range(1, n_w):
        total += util[k]
    x = uniform(key, step, u, _P_CHOICE) * total
    pick = -1
    acc = util[0]
    if x >= acc:
        for k in range(n_top):
            acc += util[k + 1]
            pick = k
            if x < acc:
                break
    return pick


@nb.njit(inline="always", cache=True)
def _watch(
    r, u, key, step, night, i, match_i, allowance, beh, emb, harmful_mask, true_quality, true_hook,
    length_minutes, item_minhash, true_interest, session, in_session_mask, user_hat, day_stats, minhash, out_item,
    out_minutes,
):  # fmt: skip
    """User ``u`` watches item ``i`` (true match ``match_i``): minutes, learning, and the decision to go on.

    At most 30 arguments: CPython passes more through ``*args``, which numba cannot inline.
    """
    dim = emb.shape[1]
    share = _sigmoid(beh[L.WATCH_SLOPE] * (match_i + true_quality[i]) + beh[L.WATCH_HOOK] * true_hook[i])
    minutes = np.float32(length_minutes[i] * share)
    if minutes > allowance[r]:
        minutes = np.float32(allowance[r])
    out_item[r] = i
    out_minutes[r] = minutes
    before = day_stats[u, L.MINUTES]
    after = np.float32(before + minutes)
    day_stats[u, L.MINUTES] = after
    day_stats[u, L.VIEWS] += 1.0
    if night:
        day_stats[u, L.NIGHT_MINUTES] += minutes
    intended = session[u, L.S_INTENDED]
    over = after - max(before, intended)
    if over > 0.0:
        day_stats[u, L.REGRET_MINUTES] += np.float32(min(over, minutes))
    if harmful_mask[i]:
        day_stats[u, L.HARMFUL_VIEWS] += 1.0
    streak = np.float32(session[u, L.S_STREAK] + minutes)
    habit = np.float32(session[u, L.S_HABIT] + beh[L.HABIT_GAIN] * minutes)
    session[u, L.S_STREAK] = streak
    session[u, L.S_SINCE_PROMPT] = np.float32(session[u, L.S_SINCE_PROMPT] + minutes)
    session[u, L.S_TIME_LEFT] = np.float32(session[u, L.S_TIME_LEFT] - minutes)
    session[u, L.S_HABIT] = habit

    # learning: the platform's profile, and the user's interest drift
    a = beh[L.HAT_RATE] * share
    g = beh[L.DRIFT] * share
    for d in range(dim):  # three loops: the first two run in vector lanes, the last is a sum in order
        user_hat[u, d] = np.float32((1.0 - a) * user_hat[u, d] + a * emb[i, d])
    for d in range(dim):
        true_interest[u, d] = np.float32(true_interest[u, d] + g * (emb[i, d] - true_interest[u, d]))
    norm = 0.0
    for d in range(dim):
        t = true_interest[u, d]
        norm += t * t
    if g > 0.0 and norm > 0.0:
        inv = 1.0 / math.sqrt(norm)
        for d in range(dim):
            true_interest[u, d] = np.float32(true_interest[u, d] * inv)
    for k in range(minhash.shape[1]):  # branch-free minimum with the item's precomputed signature
        minhash[u, k] = min(minhash[u, k], item_minhash[i, k])

    # go on?
    ratio = after / intended - 1.0
    z = (
        beh[L.CONT_BASE]
        + beh[L.CONT_HABIT] * habit
        + beh[L.CONT_HOOK] * true_hook[i]
        - beh[L.CONT_FATIGUE] * streak / 60.0
        - beh[L.CONT_SELF] * session[u, L.S_SELF_CONTROL] * (0.5 + max(ratio, 0.0))
    )
    if uniform(key, step, u, _P_CONT) >= _sigmoid(z):
        _end_session(u, in_session_mask, session)


@nb.njit(parallel=True, cache=True)
def view_step(
    key, step, night, active_idx, cand_idx, scores, allowance, prompt_after, slate_size, beh,
    emb, category, harmful_mask, true_quality, true_hook, length_minutes, item_minhash,
    true_interest, session, in_session_mask, user_hat, day_stats, cat_counts, imp_emb_sum, minhash,
    out_item, out_minutes, out_slate,
):  # fmt: skip
    """One view for every active user: show a slate, choose, watch, maybe go on.

    Parameters
    ----------
    key, step : int
        Run key and the draw counter of this sub-step (``tick * 1024 + substep``).
    night : bool
        Whether this tick is in 22:00-06:00.
    active_idx : int64 (n_act,)
        Users who view now (in session, tick time left); distinct (each lane group runs its users' views
        in two passes, and the fused kernel reads two groups' profiles before either views, so a user listed
        twice would see them interleaved).
    cand_idx : int32 (n_act, n_cand)
        Candidate item slots.
    scores : float32 (n_act, n_cand)
        The recommender's scores; ``-inf`` excludes a candidate. The slate is
        the top ``slate_size`` finite scores, ties to the earlier candidate.
    allowance : float32 (n_act,)
        Minutes the platform still serves each user now (``inf``: no limit;
        ``<= 0``: the session is refused).
    prompt_after : float32 (n_act,)
        Show a rest prompt once this many minutes passed since the last one
        (``inf``: never).
    slate_size : int
    beh : float64 (N_BEH,)
        Behaviour parameters (:mod:`sim.kernels.layout`).
    emb .. item_minhash : item arrays (n_items, ...)
        Content embedding (float32, (n_items, D)), category, harmful label,
        true quality, true hook, length (minutes), MinHash signature
        (uint32, (n_items, K): :func:`item_signatures` of the unique ids).
    true_interest : float32 (n_users, D)
        Updated in place (drift toward consumed items).
    session : float32 (n_users, N_SESSION)
        Habit, self-control, intended minutes a day, tick time left, streak,
        minutes since the last prompt and the unprompted-streak flag
        (:mod:`sim.kernels.layout`); all but self-control and intended minutes
        are updated in place.
    in_session_mask : bool (n_users,)
        Updated in place.
    user_hat : float32 (n_users, D)
        The platform's profile, updated in place from the watched item.
    day_stats : float32 (n_users, N_DAY)
        Today's counters, updated in place.
    cat_counts : uint16 or uint32 (n_users, n_cols), ``n_cols >= n_categories``
        Today's impressions by category, updated in place (saturating at the dtype's maximum); the
        engine pads the rows to whole cache lines (``sim.state.row_width``), only the categories' columns are used.
    imp_emb_sum : float32 (n_users, D)
        Run total of impression embeddings, updated in place.
    minhash : uint32 (n_users, K)
        Run MinHash sketch of consumed item ids, updated in place.
    out_item : int32 (n_act,)
        Output: the watched item slot, or -1 if the user did not watch.
    out_minutes : float32 (n_act,)
        Output: minutes watched.
    out_slate : int32 (n_act, slate_size)
        Output: the slate shown (-1 padded; all -1 if none was shown).
    """
    n_act, n_cand = scores.shape
    n_groups = (n_act + LANES - 1) // LANES
    n_chunks = (n_groups + _GROUPS_PER_CHUNK - 1) // _GROUPS_PER_CHUNK
    for ch in nb.prange(n_chunks):
        util = np.empty(_util_size(slate_size), dtype=np.float64)
        match32 = np.empty(slate_size, dtype=np.float32)
        slate_i = np.empty(slate_size, dtype=np.int64)
        row_emb = np.empty(emb.shape[1], dtype=np.float32)
        buf = np.empty((n_cand, LANES), dtype=np.float32)
        tops = np.empty((NET_MAX_SLATE, LANES), dtype=np.float32)
        scratch = slate_scratch(n_cand, slate_size)
        top_j8 = np.empty((LANES, slate_size), dtype=np.int64)
        n_top8 = np.empty(LANES, dtype=np.int64)
        pick_i = np.empty(LANES, dtype=np.int64)  # each lane's watched item (-1: none)
        pick_match = np.empty(LANES, dtype=np.float64)  # and its true match
        for g in range(ch * _GROUPS_PER_CHUNK, min(n_groups, (ch + 1) * _GROUPS_PER_CHUNK)):
            r0 = g * LANES
            n_lanes = min(LANES, n_act - r0)
            _prefetch_users(
                active_idx, r0 + LANES, r0 + 2 * LANES, true_interest, session, in_session_mask, user_hat, day_stats,
                cat_counts, imp_emb_sum, minhash,
            )  # fmt: skip
            load_lanes(scores, r0, n_lanes, buf)
            select_slates8(buf, n_lanes, slate_size, tops, scratch, top_j8, n_top8)
            for lane in range(n_lanes):  # first pass: everything up to the choice
                pick_i[lane] = -1
                r = r0 + lane
                u = active_idx[r]
                if not _gate(
                    r, u, key, step, allowance, prompt_after, beh, day_stats, in_session_mask, session,
                    out_item, out_minutes, out_slate,
                ):  # fmt: skip
                    continue
                n_top = n_top8[lane]
                if n_top == 0:
                    _end_session(u, in_session_mask, session)
                    continue
                _impressions(r, u, cand_idx[r], top_j8[lane], n_top, emb, category, harmful_mask, slate_i, row_emb,
                             cat_counts, imp_emb_sum, day_stats, out_slate)  # fmt: skip
                _slate_match(u, slate_i, n_top, emb, true_interest, match32)
                pick = _choose(u, key, step, n_top, slate_i, match32, util, beh, true_quality, true_hook, session)
                if pick < 0:
                    _end_session(u, in_session_mask, session)
                    continue
                pick_i[lane] = slate_i[pick]
                pick_match[lane] = np.float64(match32[pick])
            for lane in range(n_lanes):  # second pass: watching (the lanes' chains of latencies overlap)
                if pick_i[lane] < 0:
                    continue
                _watch(
                    r0 + lane, active_idx[r0 + lane], key, step, night, pick_i[lane], pick_match[lane], allowance,
                    beh, emb, harmful_mask, true_quality, true_hook, length_minutes, item_minhash, true_interest,
                    session, in_session_mask, user_hat, day_stats, minhash, out_item, out_minutes,
                )  # fmt: skip


@nb.njit(cache=True)
def retrieval_blocks(active_idx, block_size):
    """Row offsets of the retrieval blocks in ``active_idx`` (sorted): int64 (n_blocks + 1,).

    Rows ``starts[b] .. starts[b + 1] - 1`` hold the active users of one block
    (the same ``u // block_size``), who share their candidates in a sub-step.
    """
    n = active_idx.shape[0]
    starts = np.empty(n + 1, dtype=np.int64)
    n_blocks = 0
    prev = -1
    for r in range(n):
        b = active_idx[r] // block_size
        if b != prev:
            starts[n_blocks] = r
            n_blocks += 1
            prev = b
    starts[n_blocks] = n
    return starts[: n_blocks + 1].copy()


@nb.njit(parallel=True, cache=True)
def profile_view_step(
    key, step, night, active_idx, block_starts, n_items, strides, block_size,
    rec_key, item_bias, sharpness, exploration, allowance, prompt_after, slate_size, beh,
    emb, category, harmful_mask, true_quality, true_hook, length_minutes, item_minhash,
    true_interest, session, in_session_mask, user_hat, day_stats, cat_counts, imp_emb_sum, minhash,
    out_item, out_minutes, out_slate, out_cand,
):  # fmt: skip
    """Run retrieval, a profile-match ranking and :func:`view_step` in one pass over the retrieval blocks.

    The ranking is ``item_bias[i] + sharpness * user_hat[u] . emb[i]``, with
    the whole row replaced by uniform scores with probability ``exploration``
    (the rule of :func:`sim.kernels.scoring.engagement_scores`); with
    ``sharpness = 1``, no bias and no exploration it is the content-based
    ranking of :func:`sim.kernels.scoring.dot_scores`. The results are the same,
    bit for bit, as :func:`draw_candidates`, then that scoring kernel, then
    :func:`view_step` (tested).
    The platform's scores of sixteen users, two lane groups of a block, are
    computed at once (:func:`lane_dots2`, reading the candidates' rows in place;
    :func:`lane_dots` for a block's last group alone), the users' true matches
    for the slate only; nothing of size (n_act, n_cand) is written. The scores hold
    no NaN (unit embeddings, a profile learned from them, and an item bias and
    sharpness the engine checks: ``FeedWorld._checked_ranking``), so unlike
    :func:`view_step` there is no NaN guard.

    Parameters (beyond :func:`view_step`'s)
    ---------------------------------------
    block_starts : int64 (n_blocks + 1,)
        Row offsets of the retrieval blocks (:func:`retrieval_blocks`).
    n_items, strides, block_size
        Retrieval, as in :func:`draw_candidates`.
    rec_key : int
        The recommender's random key (exploration draws).
    item_bias : float32 (n_items,) or (0,)
        Per-item score offset (``log_value_hat`` of the engagement ranking);
        empty for none (then the score is the dot product itself).
    sharpness, exploration : float
        Weight of the profile match; probability of an exploring row.
    out_cand : int32 (n_blocks, n_cand)
        Output: each block's candidates.
    """
    n_blocks = block_starts.shape[0] - 1
    n_cand = out_cand.shape[1]
    dim = emb.shape[1]
    n_chunks = (n_blocks + _BLOCKS_PER_CHUNK - 1) // _BLOCKS_PER_CHUNK
    affine = item_bias.shape[0] > 0 or sharpness != 1.0
    for ch in nb.prange(n_chunks):
        bias_c = np.empty(n_cand, dtype=np.float32)
        hat2 = np.empty((2, dim, LANES), dtype=np.float32)  # two lane groups' profiles, transposed
        buf2 = np.empty((2, n_cand, LANES), dtype=np.float32)  # and their scores
        tops = np.empty((NET_MAX_SLATE, LANES), dtype=np.float32)
        scratch = slate_scratch(n_cand, slate_size)
        top_j8 = np.empty((LANES, slate_size), dtype=np.int64)
        n_top8 = np.empty(LANES, dtype=np.int64)
        pick_i = np.empty(LANES, dtype=np.int64)  # each lane's watched item (-1: none)
        pick_match = np.empty(LANES, dtype=np.float64)  # and its true match
        util = np.empty(_util_size(slate_size), dtype=np.float64)
        match32 = np.empty(slate_size, dtype=np.float32)
        slate_i = np.empty(slate_size, dtype=np.int64)
        row_emb = np.empty(dim, dtype=np.float32)
        r_first = block_starts[ch * _BLOCKS_PER_CHUNK]
        _prefetch_users(  # the chunk's first two groups (the later ones are prefetched two groups ahead)
            active_idx, r_first, r_first + 2 * LANES, true_interest, session, in_session_mask, user_hat, day_stats,
            cat_counts, imp_emb_sum, minhash,
        )  # fmt: skip
        for b in range(ch * _BLOCKS_PER_CHUNK, min(n_blocks, (ch + 1) * _BLOCKS_PER_CHUNK)):
            cand = out_cand[b]
            r_start, r_end = block_starts[b], block_starts[b + 1]
            _block_candidates(key, step, active_idx[r_start] // block_size, n_items, strides, cand)
            if affine:
                for j in range(n_cand):
                    bias_c[j] = item_bias[cand[j]]
            for p0 in range(r_start, r_end, 2 * LANES):  # two lane groups at a time share the scoring's loads
                n_pair = min(2 * LANES, r_end - p0)
                for lane in range(2 * LANES):  # the sixteen users' profiles, transposed
                    u = active_idx[p0 + min(lane, n_pair - 1)]
                    for d in range(dim):
                        hat2[lane // LANES, d, lane % LANES] = user_hat[u, d]
                if n_pair > LANES:
                    lane_dots2(hat2[0], hat2[1], emb, cand, buf2[0], buf2[1])
                else:
                    lane_dots(hat2[0], emb, cand, buf2[0])
                for r0 in range(p0, p0 + n_pair, LANES):
                    n_lanes = min(LANES, r_end - r0)
                    buf = buf2[(r0 - p0) // LANES]
                    _prefetch_users(  # the users two groups on (in this block or the next; one ahead: 2% slower)
                        active_idx, r0 + n_lanes + LANES, r0 + n_lanes + 2 * LANES, true_interest, session,
                        in_session_mask, user_hat, day_stats, cat_counts, imp_emb_sum, minhash,
                    )  # fmt: skip
                    if affine:
                        for j in range(n_cand):
                            for lane in range(LANES):
                                buf[j, lane] = np.float32(bias_c[j] + sharpness * buf[j, lane])
                    for lane in range(n_lanes):
                        u = active_idx[r0 + lane]
                        if exploration > 0.0 and uniform(rec_key, step, u, _P_EXPLORE) < exploration:
                            for j in range(n_cand):
                                buf[j, lane] = np.float32(uniform(rec_key, step, u * n_cand + j, _P_RANDOM))
                    if n_lanes < LANES:  # the lanes past the group are not eligible
                        for j in range(n_cand):
                            for lane in range(n_lanes, LANES):
                                buf[j, lane] = np.float32(-np.inf)
                    select_slates8(buf, n_lanes, slate_size, tops, scratch, top_j8, n_top8)
                    for lane in range(n_lanes):  # first pass: everything up to the choice
                        pick_i[lane] = -1
                        r = r0 + lane
                        u = active_idx[r]
                        if not _gate(
                            r, u, key, step, allowance, prompt_after, beh, day_stats, in_session_mask, session,
                            out_item, out_minutes, out_slate,
                        ):  # fmt: skip
                            continue
                        n_top = n_top8[lane]
                        if n_top == 0:
                            _end_session(u, in_session_mask, session)
                            continue
                        _impressions(r, u, cand, top_j8[lane], n_top, emb, category, harmful_mask, slate_i, row_emb,
                                     cat_counts, imp_emb_sum, day_stats, out_slate)  # fmt: skip
                        _slate_match(u, slate_i, n_top, emb, true_interest, match32)
                        pick = _choose(
                            u, key, step, n_top, slate_i, match32, util, beh, true_quality, true_hook, session
                        )
                        if pick < 0:
                            _end_session(u, in_session_mask, session)
                            continue
                        pick_i[lane] = slate_i[pick]
                        pick_match[lane] = np.float64(match32[pick])
                    for lane in range(n_lanes):  # second pass: watching (the lanes' chains of latencies overlap)
                        if pick_i[lane] < 0:
                            continue
                        _watch(
                            r0 + lane, active_idx[r0 + lane], key, step, night, pick_i[lane], pick_match[lane], allowance,
                            beh, emb, harmful_mask, true_quality, true_hook, length_minutes, item_minhash, true_interest,
                            session, in_session_mask, user_hat, day_stats, minhash, out_item, out_minutes,
                        )  # fmt: skip

"""Plain NumPy/Python twins of the numba kernels, for tests and for reading.

Each twin has the signature of its kernel and the same in-place semantics,
and draws its random numbers from :func:`sim.rng.uniform_np` (the vectorised
twin of :func:`sim.rng.uniform`) with the same (key, tick or step, agent,
purpose) counters, so a twin sees exactly the random numbers its kernel sees.
The twins are written for clarity, not speed: they loop over users in
Python and are meant for a few thousand rows.

Arithmetic follows numba's typing rules, which differ from NumPy 2's for
mixed scalars: in a kernel ``float32 * float64`` is computed in float64 and
``float32 * float32`` in float32. The twins therefore convert to Python
floats (float64) or to :class:`numpy.float32` explicitly wherever a kernel
computes in that precision, and accumulate float32 sums in the kernel's
order.

Public objects
--------------
hash4_np
    Vectorised twin of :func:`sim.rng.hash4` (64 random bits).
dot16_np
    Twin of :func:`sim.kernels.feed.dot16` (float32 dot products, one running sum in coordinate order).
minhash_item_np
    Twin of :func:`sim.kernels.feed.minhash_item`.
open_step
    Twin of :func:`sim.kernels.feed.open_step`.
draw_candidates
    Twin of :func:`sim.kernels.feed.draw_candidates`.
view_step
    Twin of :func:`sim.kernels.feed.view_step`.
dot_scores, gather_scores, random_scores, engagement_scores, mmr_rerank
    Twins of the scoring kernels in :mod:`sim.kernels.scoring`.
"""

from __future__ import annotations

import math

import numpy as np

from sim.kernels import layout as L
from sim.kernels.expo import exp_nonpos_np
from sim.rng import _GOLDEN, Purpose, hash4_np, uniform_np
from sim.rng import _mix_np as _mix

__all__ = [
    "dot16_np",
    "dot_scores",
    "draw_candidates",
    "engagement_scores",
    "gather_scores",
    "hash4_np",
    "minhash_item_np",
    "mmr_rerank",
    "open_step",
    "random_scores",
    "view_step",
]

_MINHASH_SALT = np.uint64(0x5EED5EED)  # same salt as sim.kernels.feed
_F32 = np.float32


def minhash_item_np(uid, k) -> np.ndarray:
    """Twin of :func:`sim.kernels.feed.minhash_item`: the k-th 32-bit MinHash of item ``uid``.

    Arguments broadcast; returns uint32.
    """
    with np.errstate(over="ignore"):
        x = np.asarray(uid).astype(np.uint64) * _GOLDEN + np.asarray(k).astype(np.uint64) + _MINHASH_SALT
        return (_mix(x) >> np.uint64(32)).astype(np.uint32)


def dot16_np(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Twin of :func:`sim.kernels.feed.dot16`: float32 dot products along the last axis.

    One float32 running sum in coordinate order (each product rounded to
    float32, then added), as every kernel computes it. Leading axes broadcast.

    Returns
    -------
    numpy.ndarray of float32
    """
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    shape = np.broadcast_shapes(a.shape[:-1], b.shape[:-1])
    s = np.zeros(shape, dtype=np.float32)
    for d in range(a.shape[-1]):
        s += a[..., d] * b[..., d]  # float32 product, then float32 sum
    return s


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def _u(key, tick, agent, purpose) -> float:
    """One uniform from the counter-based generator, as a Python float."""
    return float(uniform_np(key, tick, agent, purpose))


# -- feed kernels ---------------------------------------------------------------------------


def open_step(
    key, tick, tick_minutes, hour, cohort, night_owl_mask, open_rate, profiles, habit_cue,
    habit_decay, session, in_session_mask, day_stats,
):  # fmt: skip
    """Twin of :func:`sim.kernels.feed.open_step` (same arguments, same in-place updates).

    For each user: habit decays; a user in session gets ``tick_minutes`` more
    tick time; an idle user opens the app with probability
    ``1 - exp(-rate)``, ``rate = open_rate * profile[cohort, owl, hour] *
    (1 + habit_cue * habit)``, starting at a uniform point of the tick.
    """
    habit, _, _, time_left, _, _ = _session_columns(session)
    n = cohort.shape[0]
    for u in range(n):
        habit[u] = _F32(float(habit[u]) * habit_decay)
        if in_session_mask[u]:
            time_left[u] = _F32(float(time_left[u]) + tick_minutes)
            continue
        owl = 1 if night_owl_mask[u] else 0
        base = _F32(open_rate[u]) * _F32(profiles[cohort[u], owl, hour])  # float32 product
        rate = float(base) * (1.0 + habit_cue * float(habit[u]))
        p = 1.0 - math.exp(-rate)
        if _u(key, tick, u, Purpose.OPEN) < p:
            in_session_mask[u] = True
            time_left[u] = _F32(tick_minutes * _u(key, tick, u, Purpose.OPEN_OFFSET))
            day_stats[u, L.SESSIONS] += _F32(1.0)


def draw_candidates(key, step, active_idx, n_items, strides, block_size, out):
    """Twin of :func:`sim.kernels.feed.draw_candidates`: fill ``out`` (n_active, n_cand).

    The block ``b = user // block_size`` gets 64 hashed bits ``h``; its
    candidates are ``(h mod n_items) + j * stride (mod n_items)``, with the
    stride ``strides[(h >> 40) mod len(strides)]``.
    """
    n_cand = out.shape[1]
    j = np.arange(n_cand, dtype=np.int64)
    blocks = np.asarray(active_idx, dtype=np.int64) // block_size
    h = hash4_np(key, step, blocks, Purpose.CANDIDATES)
    start = (h % np.uint64(n_items)).astype(np.int64)
    stride = np.asarray(strides, dtype=np.int64)[((h >> np.uint64(40)) % np.uint64(len(strides))).astype(np.int64)]
    out[:] = ((start[:, None] + j[None, :] * stride[:, None]) % n_items).astype(np.int32)


def _session_columns(session: np.ndarray) -> tuple[np.ndarray, ...]:
    """Return views of the session block's columns: habit, self-control, intended, time left, streak, since prompt."""
    cols = (L.S_HABIT, L.S_SELF_CONTROL, L.S_INTENDED, L.S_TIME_LEFT, L.S_STREAK, L.S_SINCE_PROMPT)
    return tuple(session[:, c] for c in cols)


def _end_session(u, in_session_mask, time_left, streak, since_prompt, alerted_mask):
    in_session_mask[u] = False
    time_left[u] = 0.0
    streak[u] = 0.0
    since_prompt[u] = 0.0
    alerted_mask[u] = False


def _slate(row_scores: np.ndarray, slate_size: int) -> np.ndarray:
    """Candidate positions of the top ``slate_size`` finite scores; ties to the earlier one."""
    eligible = np.flatnonzero(row_scores > -np.inf)  # drops -inf and NaN
    order = np.argsort(-row_scores[eligible], kind="stable")
    return eligible[order[:slate_size]]


def view_step(
    key, step, night, active_idx, cand_idx, scores, allowance, prompt_after, slate_size, beh,
    emb, category, harmful_mask, true_quality, true_hook, length_minutes, item_minhash,
    true_interest, session, in_session_mask, user_hat, day_stats, cat_counts, imp_emb_sum, minhash,
    out_item, out_minutes, out_slate,
):  # fmt: skip
    """Twin of :func:`sim.kernels.feed.view_step` (same arguments, same in-place updates).

    For each active user, in order: refusal (``allowance <= 0``), rest prompt
    or unprompted-streak count, the slate (top ``slate_size`` finite scores),
    impressions, a logit choice among the slate and leaving (inverse CDF on
    one uniform), watching, the day counters, habit, the platform's profile,
    interest drift, the MinHash sketch, and the decision to go on.
    """
    true_habit, true_self_control, true_intended, time_left, streak, since_prompt = _session_columns(session)
    alerted_mask = session[:, L.S_ALERTED]  # 1.0 / 0.0: assigning True / False stores those
    temp = float(beh[L.TEMPERATURE])
    out_item[:] = -1
    out_minutes[:] = 0.0
    out_slate[:] = -1
    end = (in_session_mask, time_left, streak, since_prompt, alerted_mask)
    for r in range(active_idx.shape[0]):
        u = int(active_idx[r])
        if allowance[r] <= 0.0:
            day_stats[u, L.BLOCKED] += _F32(1.0)
            _end_session(u, *end)
            continue
        alert = beh[L.STREAK_ALERT]
        if float(since_prompt[u]) >= alert and not alerted_mask[u] and float(prompt_after[r]) > alert:
            day_stats[u, L.UNPROMPTED_STREAKS] += _F32(1.0)
            alerted_mask[u] = True
        if since_prompt[u] >= prompt_after[r]:
            day_stats[u, L.PROMPTS] += _F32(1.0)
            since_prompt[u] = 0.0
            alerted_mask[u] = False
            if _u(key, step, u, Purpose.REST_PROMPT) < beh[L.PROMPT_COMPLY]:
                _end_session(u, *end)
                continue

        # 1. slate
        top = _slate(scores[r], slate_size)
        if top.size == 0:
            _end_session(u, *end)
            continue
        items = cand_idx[r, top].astype(np.int64)
        n_top = items.size

        # 2. impressions and true utilities
        out_slate[r, :n_top] = items
        day_stats[u, L.IMPRESSIONS] += _F32(n_top)
        day_stats[u, L.HARMFUL_IMPRESSIONS] += _F32(np.count_nonzero(harmful_mask[items]))
        row_emb = np.zeros(emb.shape[1], dtype=np.float32)
        for i in items:
            if cat_counts[u, category[i]] < np.iinfo(cat_counts.dtype).max:  # saturating, as the kernel
                cat_counts[u, category[i]] += 1
            row_emb += emb[i]  # the slate's sum in slate order, then one add to the run total
        imp_emb_sum[u] += row_emb
        match = dot16_np(true_interest[u], emb[items]).astype(np.float64)
        util = (
            beh[L.MATCH_W] * match
            + beh[L.QUALITY_W] * true_quality[items].astype(np.float64)
            + beh[L.HOOK_W] * true_hook[items].astype(np.float64)
        ) / temp
        u_leave = (beh[L.LEAVE_U] + beh[L.FATIGUE_W] * float(streak[u]) / 60.0) / temp

        # 3. logit choice: inverse CDF over (leave, slate items in slate order)
        umax = max(u_leave, float(util.max()))
        w_leave = exp_nonpos_np(u_leave - umax)
        w = [float(x) for x in exp_nonpos_np(util - umax)]
        total = w_leave
        for x in w:
            total += x
        x = _u(key, step, u, Purpose.CHOICE) * total
        pick = -1
        acc = w_leave
        if x >= acc:
            for k in range(n_top):
                acc += w[k]
                pick = k
                if x < acc:
                    break
        if pick < 0:
            _end_session(u, *end)
            continue

        # 4. watch
        i = int(items[pick])
        share = _sigmoid(
            beh[L.WATCH_SLOPE] * (float(match[pick]) + float(true_quality[i])) + beh[L.WATCH_HOOK] * float(true_hook[i])
        )
        minutes = _F32(float(length_minutes[i]) * share)
        if minutes > allowance[r]:
            minutes = _F32(allowance[r])
        out_item[r] = i
        out_minutes[r] = minutes
        before = _F32(day_stats[u, L.MINUTES])
        after = _F32(before + minutes)
        day_stats[u, L.MINUTES] = after
        day_stats[u, L.VIEWS] += _F32(1.0)
        if night:
            day_stats[u, L.NIGHT_MINUTES] = _F32(day_stats[u, L.NIGHT_MINUTES]) + minutes
        over = after - max(before, _F32(true_intended[u]))
        if over > 0.0:
            day_stats[u, L.REGRET_MINUTES] = _F32(day_stats[u, L.REGRET_MINUTES]) + min(over, minutes)
        if harmful_mask[i]:
            day_stats[u, L.HARMFUL_VIEWS] += _F32(1.0)
        streak[u] = _F32(streak[u]) + minutes
        since_prompt[u] = _F32(since_prompt[u]) + minutes
        time_left[u] = _F32(time_left[u]) - minutes
        true_habit[u] = _F32(float(true_habit[u]) + beh[L.HABIT_GAIN] * float(minutes))

        # 5. learning: the platform's profile, the user's interest drift, the MinHash sketch
        a = float(beh[L.HAT_RATE]) * share
        g = float(beh[L.DRIFT]) * share
        e64 = emb[i].astype(np.float64)
        user_hat[u] = ((1.0 - a) * user_hat[u].astype(np.float64) + a * e64).astype(np.float32)
        diff = (emb[i] - true_interest[u]).astype(np.float64)  # float32 difference
        t = (true_interest[u].astype(np.float64) + g * diff).astype(np.float32)
        true_interest[u] = t
        norm = 0.0
        for td in t:
            norm += float(td * td)  # float32 square, float64 sum
        if g > 0.0 and norm > 0.0:
            inv = 1.0 / math.sqrt(norm)
            true_interest[u] = (true_interest[u].astype(np.float64) * inv).astype(np.float32)
        minhash[u] = np.minimum(minhash[u], item_minhash[i])

        # 6. go on?
        ratio = float(after / _F32(true_intended[u])) - 1.0  # float32 quotient
        z = (
            beh[L.CONT_BASE]
            + beh[L.CONT_HABIT] * float(true_habit[u])
            + beh[L.CONT_HOOK] * float(true_hook[i])
            - beh[L.CONT_FATIGUE] * float(streak[u]) / 60.0
            - beh[L.CONT_SELF] * float(true_self_control[u]) * (0.5 + max(ratio, 0.0))
        )
        if _u(key, step, u, Purpose.CONTINUE) >= _sigmoid(z):
            _end_session(u, *end)


# -- scoring kernels ------------------------------------------------------------------------


def _dot32(user_rows: np.ndarray, item_emb: np.ndarray, cand_idx: np.ndarray) -> np.ndarray:
    """``user_rows[r] . item_emb[cand_idx[r, j]]`` as :func:`dot16_np` computes it."""
    return dot16_np(user_rows[:, None, :], item_emb[cand_idx])


def dot_scores(user_vec, user_idx, item_emb, cand_idx, out):
    """Twin of :func:`sim.kernels.scoring.dot_scores`.

    ``out[r, j] = user_vec[user_idx[r]] . item_emb[cand_idx[r, j]]`` (float32).
    """
    out[:] = _dot32(user_vec[user_idx], item_emb, cand_idx)


def gather_scores(item_value, cand_idx, out):
    """Twin of :func:`sim.kernels.scoring.gather_scores`: ``out[r, j] = item_value[cand_idx[r, j]]``."""
    out[:] = np.asarray(item_value)[cand_idx]


def random_scores(key, step, user_idx, out):
    """Twin of :func:`sim.kernels.scoring.random_scores`.

    ``out[r, j]`` is the uniform keyed on (key, step, ``user * n_cand + j``, RANDOM_REC).
    """
    c = out.shape[1]
    agent = np.asarray(user_idx, dtype=np.int64)[:, None] * c + np.arange(c)[None, :]
    out[:] = uniform_np(key, step, agent, Purpose.RANDOM_REC).astype(np.float32)


def engagement_scores(
    key, step, user_hat, user_idx, item_emb, cand_idx, log_value_hat, sharpness, exploration, out
):  # fmt: skip
    """Twin of :func:`sim.kernels.scoring.engagement_scores`.

    ``out[r, j] = log_value_hat[i] + sharpness * user_hat[u] . emb[i]``; a row
    whose exploration uniform is below ``exploration`` gets the
    :func:`random_scores` row instead.
    """
    n, c = cand_idx.shape
    users = np.asarray(user_idx, dtype=np.int64)
    dots = _dot32(user_hat[users], item_emb, cand_idx)
    exploit = (np.asarray(log_value_hat)[cand_idx].astype(np.float64) + sharpness * dots.astype(np.float64)).astype(
        np.float32
    )
    explore_row = uniform_np(key, step, users, Purpose.EXPLORE) < exploration
    agent = users[:, None] * c + np.arange(c)[None, :]
    explore = uniform_np(key, step, agent, Purpose.RANDOM_REC).astype(np.float32)
    out[:] = np.where(explore_row[:, None], explore, exploit)


def mmr_rerank(scores, cand_idx, item_emb, relevance_weight, slate_size, out):
    """Twin of :func:`sim.kernels.scoring.mmr_rerank` (maximal marginal relevance).

    Greedily picks ``slate_size`` candidates maximising ``w * relevance - (1 - w)
    * max cosine to those already picked`` (relevance: the row's finite scores
    min-max scaled to [0, 1]; ties to the earlier candidate). The picks get
    ``2 * slate_size - rank``, the rest ``-1 - 1 / (1 + relevance)``; ``-inf``
    and NaN scores become ``-inf``.
    """
    n, c = scores.shape
    w = float(relevance_weight)
    for r in range(n):
        s = scores[r].astype(np.float64)
        ok = s > -np.inf
        lo = float(s[ok].min()) if ok.any() else np.inf
        hi = float(s[ok].max()) if ok.any() else -np.inf
        span = hi - lo if hi > lo else 1.0
        rel = np.where(ok, (s - lo) / span, 0.0)
        row = np.full(c, -np.inf)
        row[ok] = -1.0 - 1.0 / (1.0 + rel[ok])
        chosen = np.zeros(c, dtype=bool)
        max_sim = np.full(c, -1.0)
        for rank in range(min(slate_size, c)):
            sim = max_sim if rank > 0 else np.zeros(c)
            value = np.where(ok & ~chosen, w * rel - (1.0 - w) * sim, -np.inf)
            if not (value > -np.inf).any():
                break
            best = int(np.argmax(value))  # first maximum: ties to the earlier candidate
            chosen[best] = True
            row[best] = 2 * slate_size - rank
            # cosine to the new pick: float32 products summed in float64, coordinate by coordinate
            eb = item_emb[cand_idx[r, best]]
            cos = np.zeros(c)
            for d in range(item_emb.shape[1]):
                cos += (eb[d] * item_emb[cand_idx[r], d]).astype(np.float64)
            max_sim = np.where(~chosen, np.maximum(max_sim, cos), max_sim)
        out[r] = row.astype(np.float32)

"""Scoring kernels of the built-in recommenders (numba, parallel over users).

Every kernel fills ``out`` (n_batch, n_cand) float32 and writes only its own
row per iteration, so results do not depend on the thread count.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from sim.kernels.feed import CHUNK, block_dots, load_block
from sim.rng import Purpose, uniform

__all__ = [
    "dot_scores",
    "engagement_scores",
    "gather_scores",
    "mmr_rerank",
    "random_scores",
]

_P_EXPLORE = Purpose.EXPLORE
_P_RANDOM = Purpose.RANDOM_REC


@nb.njit(inline="always", cache=True)
def _same_candidates(cand_idx, r, q):
    c = cand_idx.shape[1]
    for j in range(c):
        if cand_idx[r, j] != cand_idx[q, j]:
            return False
    return True


@nb.njit(inline="always", cache=True)
def _same_candidates(cand_idx, r, q):
    c = cand_idx.shape[1]
    for j in range(c):
        if cand_idx[r, j] != cand_idx[q, j]:
            return False
    return True


@nb.njit(inline="always", cache=True)
def _block_dots(user_vec, u, item_emb, cand_idx, r, et, acc, cached):
    """Score row ``r`` into ``acc``, reloading ``et`` only if its candidates differ from row ``cached``.

    Returns the row whose candidates ``et`` now holds.
    """
    if cached < 0 or not _same_candidates(cand_idx, r, cached):
        load_block(item_emb, cand_idx[r], et)
        cached = r
    block_dots(user_vec, u, et, acc)
    return cached


@nb.njit(parallel=True, cache=True)
def dot_scores(user_vec, user_idx, item_emb, cand_idx, out):
    """``out[r, j] = user_vec[user_idx[r]] . item_emb[cand_idx[r, j]]``.

    Shapes: user_vec (n_users, D), item_emb (n_items, D), cand_idx/out (n_batch, n_cand).
    Consecutive rows with the same candidates (a retrieval block) reuse one
    transposed copy of the candidates' embeddings.
    """
    n, c = cand_idx.shape
    dim = item_emb.shape[1]
    n_chunks = (n + CHUNK - 1) // CHUNK
    for ch in nb.prange(n_chunks):
        et = np.empty((dim, c), dtype=np.float32)
        acc = np.empty(c, dtype=np.float32)
        cached = -1
        for r in range(ch * CHUNK, min(n, (ch + 1) * CHUNK)):
            cached = _block_dots(user_vec, user_idx[r], item_emb, cand_idx, r, et, acc, cached)
            for j in range(c):
                out[r, j] = acc[j]


@nb.njit(parallel=True, cache=True)
def gather_scores(item_value, cand_idx, out):
    """``out[r, j] = item_value[cand_idx[r, j]]`` (non-personal rankings)."""
    n, c = cand_idx.shape
    for r in nb.prange(n):
        for j in range(c):
            out[r, j] = item_value[cand_idx[r, j]]


@nb.njit(parallel=True, cache=True)
def random_scores(key, step, user_idx, out):
    """Uniform scores keyed on (key, step, user, candidate position)."""
    n, c = out.shape
    for r in nb.prange(n):
        base = user_idx[r] * c
        for j in range(c):
            out[r, j] = np.float32(uniform(key, step, base + j, _P_RANDOM))


@nb.njit(parallel=True, cache=True)
def engagement_scores(
    key, step, user_hat, user_idx, item_emb, cand_idx, log_value_hat, sharpness, exploration, out
):  # fmt: skip
    """Predicted watch minutes per impression (in logs), with epsilon-greedy exploration.

    ``score = log_value_hat[i] + sharpness * user_hat[u] . emb[i]``, the log of
    ``ctr_hat * watch_hat * exp(sharpness * match)`` (the same order, no exp);
    with probability ``exploration`` a user's whole row is replaced by uniform
    scores (keyed on (key, step, user)), which explores the catalogue.
    """
    n, c = cand_idx.shape
    dim = item_emb.shape[1]
    n_chunks = (n + CHUNK - 1) // CHUNK
    for ch in nb.prange(n_chunks):
        et = np.empty((dim, c), dtype=np.float32)
        acc = np.empty(c, dtype=np.float32)
        cached = -1
        for r in range(ch * CHUNK, min(n, (ch + 1) * CHUNK)):
            u = user_idx[r]
            if uniform(key, step, u, _P_EXPLORE) < exploration:
                for j in range(c):
                    out[r, j] = np.float32(uniform(key, step, u * c + j, _P_RANDOM))
                continue
            cached = _block_dots(user_hat, u, item_emb, cand_idx, r, et, acc, cached)
            for j in range(c):
                out[r, j] = np.float32(log_value_hat[cand_idx[r, j]] + sharpness * acc[j])


@nb.njit(parallel=True, cache=True)
def mmr_rerank(scores, cand_idx, item_emb, relevance_weight, slate_size, out):
    """Maximal marginal relevance (Carbonell & Goldstein, SIGIR 1998) over each row.

    Relevance is the row's scores min-max normalised to [0, 1]; similarity is
    the cosine of content embeddings (unit vectors). The ``slate_size``
    selected candidates get scores ``2 * slate_size - rank`` (rank 0 best);
    the others keep their order below them; ``-inf`` stays ``-inf``.
    """
    n, c = scores.shape
    dim = item_emb.shape[1]
    for r in nb.prange(n):
        lo = np.inf
        hi = -np.inf
        for j in range(c):
            s = scores[r, j]
            if s > -np.inf:
                lo = min(lo, s)
                hi = max(hi, s)
        span = hi - lo if hi > lo else 1.0
        chosen = np.zeros(c, dtype=np.bool_)
        max_sim = np.full(c, -1.0)
        for j in range(c):
            s = scores[r, j]
            out[r, j] = -np.inf if not (s > -np.inf) else np.float32(-1.0 - 1.0 / (1.0 + (s - lo) / span))
        for rank in range(min(slate_size, c)):
            best = -1
            best_v = -np.inf
            for j in range(c):
                s = scores[r, j]
                if chosen[j] or not (s > -np.inf):
                    continue
                rel = (s - lo) / span
                sim = max_sim[j] if rank > 0 else 0.0
                v = relevance_weight * rel - (1.0 - relevance_weight) * sim
                if v > best_v:
                    best_v = v
                    best = j
            if best < 0:
                break
            chosen[best] = True
            out[r, best] = np.float32(2 * slate_size - rank)
            ib = cand_idx[r, best]
            for j in range(c):
                if chosen[j]:
                    continue
                ij = cand_idx[r, j]
                sim = 0.0
                for d in range(dim):
                    sim += item_emb[ib, d] * item_emb[ij, d]
                if sim > max_sim[j]:
                    max_sim[j] = sim

"""Agent-steps per second: the numba feed kernels against the pure-Mesa reference.

One "standard agent-step" is one view of one user with the content-based
recommender: retrieve 100 candidates, score them (D = 16 dot products), show
the top-10 slate (counting its impressions by category and summing their
embeddings), logit choice among the slate and leaving, watch, update the
platform profile, habit, interest and the MinHash sketch of watched items, and
decide whether to go on. Both sides compute all of it (the Mesa reference keeps
the same per-view statistics as the kernel since stop 15).

* numba: ``profile_view_step``, the kernel the engine runs for the built-in
  content-based recommender (retrieval, scoring and the view in one pass), on a
  batch of users who are all in a session with unlimited time, allowance and
  ``prompt_after``; the session state is reset before every sub-step so every
  row is an agent-step. JIT compilation is excluded (warm-up sub-steps);
  the rate is that of the fastest sub-step. The same model as three kernels
  (``draw_candidates`` + ``dot_scores`` + ``view_step``, the path of any other
  recommender) is timed too (``numba_pipeline_agent_steps_per_s``), and so is the
  fused kernel at realistic activity, where a random 6% of the users view in a
  sub-step (``numba_realistic_agent_steps_per_s``: scattered rows, ~8 viewers per
  retrieval block; the rate is per agent-step, as the others).
  The engine's per-sub-step Python work (active set, logging) is not timed.
* scoring throughput: :func:`sim.kernels.lanes.lane_dots2` (the scoring part of
  the fused kernel, two lane groups at a time: 2 x D x n_cand flops per user) against the machine's measured
  float32 peak, taken as the best of NumPy's BLAS ``sgemm`` on 2048 x 2048
  matrices (``scoring_fraction_of_sgemm``).
* Mesa: :meth:`sim.mesa_reference.ReferenceFeedModel.standard_steps`, one
  ``FeedUserAgent.view`` per agent-step, cycling over a few thousand agents;
  the rate is the best of 5 repeats. Single-threaded (plain Python).

Both sides report their best repeat (the timeit convention): on a shared machine the
fastest repeat is the one least disturbed by other load, and the same rule applies to both.

Usage::

    python benchmarks/bench_kernel.py --quick     # < 1 minute
    python benchmarks/bench_kernel.py             # larger sizes
    python benchmarks/bench_kernel.py --quick --json benchmarks/results/kernel.json

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time

import numba as nb
import numpy as np

from sim.engine import BLOCK_SIZE, FeedWorld
from sim.kernels import feed
from sim.kernels.lanes import LANES, lane_dots2
from sim.kernels.scoring import dot_scores
from sim.mesa_reference import ReferenceFeedModel
from sim.scenario import scenario_from_dict


def provenance() -> dict:
    """The command, commit and time of this measurement, for the result files in ``benchmarks/results/``."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True,
            cwd=os.path.dirname(os.path.abspath(__file__)),
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return {
        "command": "python " + " ".join(sys.argv),
        "commit": commit,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def write_json(path: str, result: dict) -> None:
    """Write ``result`` to ``path`` atomically: a half-written result never replaces a good one."""
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=1)
    os.replace(tmp, path)


def _scenario(n_users: int, n_items: int, dim: int, n_cand: int, slate: int):
    return scenario_from_dict(
        {
            "name": "bench-kernel",
            "seed": 12345,
            "clock": {"days": 1, "tick_minutes": 15},
            "population": {"n_users": n_users, "interest_dim": dim},
            "catalogue": {"n_items": n_items},
            "recommender": {"kind": "content", "n_candidates": n_cand, "slate_size": slate},
        }
    )


_NO_BIAS = np.zeros(0, dtype=np.float32)


def fused_substep(w, step: int, rows, allowance, prompt_after, slate: int, n_cand: int, state, outs) -> float:
    """Run one sub-step of the fused kernel for the users ``rows``; return its seconds (block offsets included).

    ``state`` is the kernel's item and user arrays in its argument order (``emb`` .. ``minhash``), ``outs`` the
    (out_item, out_minutes, out_slate) arrays of at least ``rows.size`` rows. The content-based ranking (no
    bias, sharpness 1, no exploration) and unlimited ``allowance`` / ``prompt_after`` (arrays of the same length).
    """
    m = rows.size
    t0 = time.perf_counter()
    starts = feed.retrieval_blocks(rows, BLOCK_SIZE)
    block_cand = np.empty((starts.size - 1, n_cand), dtype=np.int32)
    feed.profile_view_step(
        w.key, step, False, rows, starts, w.items.n_items, w.strides, BLOCK_SIZE, w.rec_key, _NO_BIAS, 1.0, 0.0,
        allowance[:m], prompt_after[:m], slate, w.beh, *state, *(o[:m] for o in outs), block_cand,
    )  # fmt: skip
    return time.perf_counter() - t0


REALISTIC_ACTIVE_SHARE = 0.06  # users viewing in a sub-step of the baseline scenario, on average (200k x 1 day:
# 33.5 M views in 2,785 sub-steps)


def bench_numba(n_users: int, n_items: int, dim: int, n_cand: int, slate: int, substeps: int, pipeline: bool = True):
    """Time the kernels; return (fused, three-kernel, fused at realistic activity) agent-steps/s and the watched share.

    The rates are those of the fastest sub-step. At realistic activity a random
    ``REALISTIC_ACTIVE_SHARE`` of the users views (a new draw each sub-step), so
    their rows are scattered in memory and a retrieval block has ~8 of them.
    ``pipeline=False`` skips the three-kernel path (its rate is then None): its
    (n_users, n_candidates) candidate and score arrays are 8 GB at 10^7 users.
    """
    sc = _scenario(n_users, n_items, dim, n_cand, slate)
    w = FeedWorld(sc)
    u, it, pf = w.users, w.items, w.platform
    n = u.n_users
    active = np.arange(n, dtype=np.int64)
    n_wide = n if pipeline else 0
    cand = np.empty((n_wide, n_cand), dtype=np.int32)
    scores = np.empty((n_wide, n_cand), dtype=np.float32)
    allowance = np.full(n, np.inf, dtype=np.float32)
    prompt_after = np.full(n, np.inf, dtype=np.float32)
    out_item = np.empty(n, dtype=np.int32)
    out_min = np.empty(n, dtype=np.float32)
    out_slate = np.empty((n, slate), dtype=np.int32)
    state = (
        it.embedding, it.category, it.harmful_mask, it.true_quality, it.true_hook, it.length_minutes, it.minhash,
        u.true_interest, u.session, u.in_session_mask,
        pf.user_hat, w.day_stats, w.cat_counts, w.imp_emb_sum, w.minhash, out_item, out_min, out_slate,
    )  # fmt: skip

    def fused(step: int, rows=active) -> float:
        u.in_session_mask[:] = True
        u.time_left[:] = np.float32(1e9)
        seconds = fused_substep(w, step, rows, allowance, prompt_after, slate, n_cand, state[:-3], state[-3:])
        return seconds * n / rows.size  # seconds per n agent-steps

    pick = np.random.default_rng(7)
    n_sparse = max(1, int(REALISTIC_ACTIVE_SHARE * n))

    def fused_sparse(step: int) -> float:
        return fused(step, np.sort(pick.choice(n, n_sparse, replace=False)).astype(np.int64))

    def three_kernels(step: int) -> float:
        u.in_session_mask[:] = True
        u.time_left[:] = np.float32(1e9)
        t0 = time.perf_counter()
        feed.draw_candidates(w.key, step, active, it.n_items, w.strides, BLOCK_SIZE, cand)
        dot_scores(pf.user_hat, active, it.embedding, cand, scores)
        feed.view_step(w.key, step, False, active, cand, scores, allowance, prompt_after, slate, w.beh, *state)
        return time.perf_counter() - t0

    rates = []
    watched = 0
    for kernel in (fused, three_kernels if pipeline else None, fused_sparse):
        if kernel is None:
            rates.append(None)
            continue
        for s in range(3):  # JIT (or cache load) and a first pass over the memory
            kernel(s)
        times = []
        for s in range(3, 3 + substeps):
            times.append(kernel(s))
            watched += int((out_item >= 0).sum()) if kernel is fused else 0
        rates.append(n / float(np.min(times)))
    return rates[0], rates[1], rates[2], watched / (n * substeps)


def bench_scoring_fraction(dim: int, n_cand: int, n_items: int) -> dict:
    """The fused kernel's scoring part against the machine's float32 matrix-multiply peak."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((2048, 2048), dtype=np.float32)
    b = rng.standard_normal((2048, 2048), dtype=np.float32)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(5))
    sgemm_flops = 2 * 2048**3 / best
    vec_t = rng.standard_normal((2, dim, LANES), dtype=np.float32)
    emb = rng.standard_normal((n_items, dim), dtype=np.float32)
    cand = rng.choice(n_items, n_cand, replace=False).astype(np.int32)
    out = np.empty((2, n_cand, LANES), dtype=np.float32)
    reps = 10_000
    _lane_dots_loop(vec_t, emb, cand, out, 1)
    best = min(_timed(lambda: _lane_dots_loop(vec_t, emb, cand, out, reps)) for _ in range(5))
    threads = nb.get_num_threads()
    scoring_flops = threads * reps * 2 * LANES * 2 * dim * n_cand / best  # two lane groups per thread, in parallel
    return {
        "sgemm_gflops": round(sgemm_flops / 1e9, 1),
        "scoring_gflops": round(scoring_flops / 1e9, 1),
        "scoring_fraction_of_sgemm": round(scoring_flops / sgemm_flops, 3),
    }


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


@nb.njit(parallel=True)
def _lane_dots_loop(vec_t, emb, cand, out, reps):
    for t in nb.prange(nb.get_num_threads()):
        mine = np.empty_like(out)
        for _rep in range(reps):
            lane_dots2(vec_t[0], vec_t[1], emb, cand, mine[0], mine[1])
        if t == 0:
            out[:] = mine


def bench_mesa(n_agents: int, n_items: int, dim: int, n_cand: int, slate: int, steps: int):
    """Time the reference's standard agent-step; return the best rate of 5 repeats."""
    sc = _scenario(n_agents, n_items, dim, n_cand, slate)
    model = ReferenceFeedModel(sc, collect=False)
    model.standard_steps(min(steps, 2 * n_agents))  # warm-up: profiles leave zero, caches
    rates = []
    for _ in range(5):
        t0 = time.perf_counter()
        done = model.standard_steps(max(1, steps // 5))
        rates.append(done / (time.perf_counter() - t0))
    return float(np.max(rates))


def bench_engine(n_users: int, n_items: int, dim: int, n_cand: int, slate: int):
    """End-to-end engine run of one day (Python sub-step loop included)."""
    sc = _scenario(n_users, n_items, dim, n_cand, slate)
    w = FeedWorld(sc)
    t0 = time.perf_counter()
    w.run()
    return w.agent_steps / (time.perf_counter() - t0)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, under a minute")
    parser.add_argument("--threads", type=int, default=None, help="numba threads (default: all)")
    parser.add_argument("--numba-users", type=int, default=None)
    parser.add_argument("--substeps", type=int, default=None)
    parser.add_argument("--mesa-agents", type=int, default=None)
    parser.add_argument("--mesa-steps", type=int, default=None)
    parser.add_argument("--n-items", type=int, default=5_000)
    parser.add_argument("--json", default=None, help="also write the result to this file (e.g. benchmarks/results/)")
    args = parser.parse_args(argv)
    if args.threads:
        nb.set_num_threads(args.threads)
    quick = args.quick
    n_users = args.numba_users or (200_000 if quick else 1_000_000)
    substeps = args.substeps or (9 if quick else 20)
    n_agents = args.mesa_agents or (2_000 if quick else 5_000)
    mesa_steps = args.mesa_steps or (20_000 if quick else 200_000)
    dim, n_cand, slate, n_items = 16, 100, 10, args.n_items

    numba_rate, pipeline_rate, sparse_rate, watched_share = bench_numba(n_users, n_items, dim, n_cand, slate, substeps)
    size = f"{n_users:,} users, {substeps} sub-steps"
    print(f"numba kernels : {numba_rate:14,.0f} agent-steps/s ({size}; fused kernel)")
    print(f"  as 3 kernels: {pipeline_rate:14,.0f} agent-steps/s (retrieval, scoring, view: any recommender)")
    print(f"  realistic   : {sparse_rate:14,.0f} agent-steps/s (fused, {REALISTIC_ACTIVE_SHARE:.0%} of users viewing)")
    frac = bench_scoring_fraction(dim, n_cand, n_items)
    print(
        f"scoring part  : {frac['scoring_gflops']:14,.1f} GFLOP/s float32 = {frac['scoring_fraction_of_sgemm']:.1%} "
        f"of this machine's sgemm ({frac['sgemm_gflops']:,.1f} GFLOP/s)"
    )
    mesa_rate = bench_mesa(n_agents, n_items, dim, n_cand, slate, mesa_steps)
    size = f"{mesa_steps:,} steps, {n_agents:,} agents"
    print(f"Mesa reference: {mesa_rate:14,.0f} agent-steps/s ({size})")
    print(f"ratio         : {numba_rate / mesa_rate:14,.0f} x")
    result = {
        "numba_agent_steps_per_s": round(numba_rate),
        "mesa_agent_steps_per_s": round(mesa_rate),
        "ratio": round(numba_rate / mesa_rate, 1),
        "numba_pipeline_agent_steps_per_s": round(pipeline_rate),
        "numba_realistic_agent_steps_per_s": round(sparse_rate),
        "realistic_active_share": REALISTIC_ACTIVE_SHARE,
        **frac,
        "n_threads": nb.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "D": dim,
        "n_candidates": n_cand,
        "slate_size": slate,
        "n_items": n_items,
        "numba_users": n_users,
        "numba_substeps": substeps,
        "numba_watched_share": round(watched_share, 3),
        "mesa_agents": n_agents,
        "mesa_steps": mesa_steps,
        "quick": quick,
        "python": platform.python_version(),
        "numba": nb.__version__,
        **provenance(),
    }
    if not quick:
        e2e = bench_engine(100_000, n_items, dim, n_cand, slate)
        print(f"engine (1 day, 100k users, end to end): {e2e:,.0f} agent-steps/s")
        result["engine_end_to_end_agent_steps_per_s"] = round(e2e)
    print(json.dumps(result))
    if args.json:
        write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()

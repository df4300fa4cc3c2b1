"""Nanoseconds per view of the fused feed kernel, one thread by default: the figure kernel work is measured in.

``bench_kernel.py`` reports agent-steps per second on all cores against the Mesa
reference; this one times ``profile_view_step`` (with its block offsets,
``retrieval_blocks``) and nothing else, per view, which is what a
change to the kernel moves. It also prints a hash of the whole user state after
the sub-steps (``--hash``), so a change meant to be bitwise neutral can be checked
in a second: the hash must not move.

* dense: every user of the batch views in every sub-step (as ``bench_kernel.py``'s fused figure);
* ``--realistic``: a random 6% of the users view (``bench_kernel.REALISTIC_ACTIVE_SHARE``),
  a new draw each sub-step, so their rows are scattered and lane groups are partial.

Usage::

    python benchmarks/bench_view.py                       # 200k users, dense, 1 thread, best of 9 sub-steps
    python benchmarks/bench_view.py --realistic --users 1000000
    python benchmarks/bench_view.py --hash --repeats 3    # the state hash after 3 timed sub-steps

The session state is reset before every sub-step (all users in a session with
unlimited time), as in ``bench_kernel.py``. Three warm-up sub-steps keep
compilation and first-touch page faults out of the timing. The last line printed
is a JSON object.
"""

from __future__ import annotations

import argparse
import hashlib
import json

import numba as nb
import numpy as np
from bench_kernel import REALISTIC_ACTIVE_SHARE, _scenario, fused_substep, provenance

from sim.engine import FeedWorld
from sim.kernels import layout as L


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--n-items", type=int, default=5_000)
    parser.add_argument("--realistic", action="store_true", help="a random 6%% of the users view per sub-step")
    parser.add_argument("--repeats", type=int, default=9, help="timed sub-steps (the best is reported)")
    parser.add_argument("--threads", type=int, default=1, help="numba threads (default 1)")
    parser.add_argument("--hash", action="store_true", help="print a hash of the user state after the sub-steps")
    args = parser.parse_args(argv)
    nb.set_num_threads(args.threads)
    n, n_cand, slate = args.users, 100, 10
    w = FeedWorld(_scenario(n, args.n_items, 16, n_cand, slate))
    u, it, pf = w.users, w.items, w.platform
    allowance = np.full(n, np.inf, dtype=np.float32)
    prompt_after = np.full(n, np.inf, dtype=np.float32)
    out_item = np.zeros(n, dtype=np.int32)  # zeros: --realistic writes only a prefix, and --hash reads all
    out_minutes = np.zeros(n, dtype=np.float32)
    out_slate = np.zeros((n, slate), dtype=np.int32)
    outs = (out_item, out_minutes, out_slate)
    items = (it.embedding, it.category, it.harmful_mask, it.true_quality, it.true_hook, it.length_minutes, it.minhash)
    users = (
        u.true_interest, u.session, u.in_session_mask, pf.user_hat, w.day_stats, w.cat_counts,
        w.imp_emb_sum, w.minhash,
    )  # fmt: skip
    pick = np.random.default_rng(7)
    every = np.arange(n, dtype=np.int64)

    def sub_step(step: int) -> float:
        u.in_session_mask[:] = True
        u.time_left[:] = np.float32(1e9)
        rows = every
        if args.realistic:
            rows = np.sort(pick.choice(n, max(1, int(REALISTIC_ACTIVE_SHARE * n)), replace=False)).astype(np.int64)
        seconds = fused_substep(w, step, rows, allowance, prompt_after, slate, n_cand, (*items, *users), outs)
        return seconds / rows.size * 1e9

    for step in range(3):
        sub_step(step)
    times = np.array([sub_step(step) for step in range(3, 3 + args.repeats)])
    result = {
        "ns_per_view_best": round(float(times.min()), 1),
        "ns_per_view_median": round(float(np.median(times)), 1),
        "mode": "realistic" if args.realistic else "dense",
        "users": n,
        "n_items": args.n_items,
        "threads": args.threads,
        "repeats": args.repeats,
        **provenance(),
    }
    best, median = result["ns_per_view_best"], result["ns_per_view_median"]
    print(f"{result['mode']}: {best:.0f} ns per view (best), {median:.0f} median")
    if args.hash:
        h = hashlib.sha256()
        hashed = (  # the state as stop 15 had it: the session block's columns, the flag as bool, counts unpadded
            u.true_interest, u.true_habit, u.true_self_control, u.true_intended_minutes, u.in_session_mask,
            u.time_left, u.streak_minutes, u.since_prompt_minutes, u.session[:, L.S_ALERTED] != 0.0, pf.user_hat,
            w.day_stats, w.cat_counts[:, : w.scenario.catalogue.n_categories], w.imp_emb_sum, w.minhash, out_item,
            out_minutes, out_slate,
        )  # fmt: skip
        for a in hashed:
            h.update(np.ascontiguousarray(a).tobytes())
        result["state_hash"] = h.hexdigest()[:16]
        print(f"state hash: {result['state_hash']}")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()

"""Paired A/B of the fused view kernel: this tree's ``sim/kernels`` against another git revision's, in one process.

Machine noise here is +-3-10% between runs, larger than most single kernel
changes. Running both versions alternately on the same users, sub-step after
sub-step, lets the noise hit both; the paired median of their ratios is the
figure to judge a change by (``benchmarks/README.md``, stops 15 and 16).

The other revision's ``sim/kernels`` package is extracted with ``git archive``
into a temporary directory, renamed (its ``sim.kernels`` imports rewritten), and
compiled there (numba caches it beside those files, apart from this tree's). Both
kernels get the same arrays, so the revision's ``profile_view_step`` must take the
same arguments as this tree's: when the signature differs, the script says so and
stops (compare such changes with a script of their own).

Usage::

    python benchmarks/ab_view.py --rev HEAD~1                 # dense, 200k users, one thread
    python benchmarks/ab_view.py --rev 32f539d --realistic --users 1000000 --repeats 25

It prints one line per version and the paired ratio (B = this tree, A = the revision), then a JSON line.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time

import numba as nb
import numpy as np
from bench_kernel import _NO_BIAS, REALISTIC_ACTIVE_SHARE, _scenario, provenance

from sim.engine import BLOCK_SIZE, FeedWorld
from sim.kernels import feed as feed_here

_PACKAGE = "_ab_kernels"


def load_revision_kernels(rev: str, into: str):
    """Extract ``sim/kernels`` at ``rev`` into ``into`` as the package ``_ab_kernels``; return its ``feed`` module."""
    root = subprocess.run(
        ["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=True,
        cwd=os.path.dirname(os.path.abspath(__file__)),
    ).stdout.strip()  # fmt: skip
    blob = subprocess.run(["git", "archive", rev, "sim/kernels"], capture_output=True, check=True, cwd=root).stdout
    target = os.path.join(into, _PACKAGE)
    os.makedirs(target)
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        for member in tar.getmembers():
            if member.isfile() and member.name.endswith(".py"):
                text = tar.extractfile(member).read().decode()
                text = text.replace("from sim.kernels ", f"from {_PACKAGE} ").replace("sim.kernels.", f"{_PACKAGE}.")
                with open(os.path.join(target, os.path.basename(member.name)), "w") as f:
                    f.write(text)
    sys.path.insert(0, into)
    return importlib.import_module(f"{_PACKAGE}.feed")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rev", required=True, help="the git revision to compare against (A)")
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--realistic", action="store_true", help="a random 6%% of the users view per sub-step")
    parser.add_argument("--repeats", type=int, default=15, help="timed sub-step pairs")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    nb.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            feed_rev = load_revision_kernels(args.rev, tmp)
        except subprocess.CalledProcessError as exc:
            sys.exit(f"ab_view: cannot read sim/kernels at {args.rev!r}: {exc.stderr.decode().strip()}")
        here = inspect.signature(feed_here.profile_view_step.py_func)
        there = inspect.signature(feed_rev.profile_view_step.py_func)
        if here != there:
            sys.exit(
                f"ab_view: profile_view_step takes other arguments at {args.rev}; this script runs both on the same "
                f"arrays.\n  here:  {here}\n  there: {there}"
            )
        return _compare(args, feed_rev)


def _compare(args, feed_rev) -> dict:
    n, n_cand, slate = args.users, 100, 10
    w = FeedWorld(_scenario(n, 5_000, 16, n_cand, slate))
    u, it, pf = w.users, w.items, w.platform
    items = (it.embedding, it.category, it.harmful_mask, it.true_quality, it.true_hook, it.length_minutes, it.minhash)
    state = (
        *items, u.true_interest, u.session, u.in_session_mask, pf.user_hat, w.day_stats, w.cat_counts, w.imp_emb_sum,
        w.minhash,
    )  # fmt: skip
    unlimited = np.full(n, np.inf, dtype=np.float32)
    outs = (np.zeros(n, np.int32), np.zeros(n, np.float32), np.zeros((n, slate), np.int32))
    pick = np.random.default_rng(7)
    every = np.arange(n, dtype=np.int64)

    def sub_step(mod, step: int, rows) -> float:
        u.in_session_mask[:] = True
        u.time_left[:] = np.float32(1e9)
        m = rows.size
        t0 = time.perf_counter()
        starts = mod.retrieval_blocks(rows, BLOCK_SIZE)
        block_cand = np.empty((starts.size - 1, n_cand), dtype=np.int32)
        mod.profile_view_step(
            w.key, step, False, rows, starts, it.n_items, w.strides, BLOCK_SIZE, w.rec_key, _NO_BIAS, 1.0, 0.0,
            unlimited[:m], unlimited[:m], slate, w.beh, *state, *(o[:m] for o in outs), block_cand,
        )  # fmt: skip
        return (time.perf_counter() - t0) / m * 1e9

    t_rev, t_here = [], []
    for s in range(args.repeats + 2):  # the first two pairs compile and warm up
        rows = every
        if args.realistic:
            rows = np.sort(pick.choice(n, max(1, int(REALISTIC_ACTIVE_SHARE * n)), replace=False)).astype(np.int64)
        a, b = sub_step(feed_rev, 2 * s, rows), sub_step(feed_here, 2 * s + 1, rows)
        if s >= 2:
            t_rev.append(a)
            t_here.append(b)
    t_rev, t_here = np.array(t_rev), np.array(t_here)
    result = {
        "mode": "realistic" if args.realistic else "dense",
        "rev": args.rev,
        "rev_ns_per_view_best": round(float(t_rev.min()), 1),
        "rev_ns_per_view_median": round(float(np.median(t_rev)), 1),
        "here_ns_per_view_best": round(float(t_here.min()), 1),
        "here_ns_per_view_median": round(float(np.median(t_here)), 1),
        "paired_median_ratio": round(float(np.median(t_here / t_rev)), 4),
        "users": n,
        "threads": args.threads,
        "repeats": args.repeats,
        **provenance(),
    }
    r = result
    print(f"A {args.rev}: {r['rev_ns_per_view_best']:.0f} ns per view best, {r['rev_ns_per_view_median']:.0f} median")
    print(f"B this tree: {r['here_ns_per_view_best']:.0f} ns per view best, {r['here_ns_per_view_median']:.0f} median")
    print(f"B/A paired median: {r['paired_median_ratio']:.3f} ({r['mode']}, {n:,} users, {args.threads} thread(s))")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()

"""Market kernel throughput: occasions, offer values and purchase decisions per second.

Usage: ``python benchmarks/bench_market.py [--users N] [--repeats R]``. Prints one line per
kernel and ends with a JSON line. Synthetic state (struct-of-arrays, as in the world); each figure
is the best of ``repeats`` runs after a warm-up call (compilation excluded).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numba
import numpy as np

from sim.kernels import market as K
from sim.market.world import PARAM_NAMES
from sim.scenario import MarketSettings
from sim.state import ACTIVITY_PROFILES


def best(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--products", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    n, p, d = args.users, args.products, 16
    rng = np.random.default_rng(0)
    cohort = rng.integers(0, 3, n).astype(np.int8)
    owl = rng.random(n) < 0.1
    interest = rng.standard_normal((n, d)).astype(np.float32)
    interest /= np.linalg.norm(interest, axis=1, keepdims=True)
    emb = rng.standard_normal((p, d)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    lp = (30 * rng.lognormal(0, 0.7, p)).astype(np.float32)
    f32 = lambda x: np.asarray(x, dtype=np.float32)  # noqa: E731
    minutes = f32(rng.exponential(2.0, n))
    mk = MarketSettings()
    params = np.array([getattr(mk, k) for k in PARAM_NAMES], dtype=np.float64)
    key = 12345
    out = {}

    mask = np.empty(n, dtype=np.bool_)
    t = best(
        lambda: K.shop_occasions(key, 7, 20, cohort, owl, ACTIVITY_PROFILES, 0.003, 0.01, minutes, mask), args.repeats
    )
    out["shop_occasions_users_per_s"] = n / t
    occ = np.arange(n, dtype=np.int64)  # every user has an occasion: the kernels' worst case
    cand = np.empty((n, 20), dtype=np.int32)
    t = best(lambda: K.offer_candidates(key, 7, occ, p, cand), args.repeats)
    out["offer_candidates_per_s"] = n / t
    product = cand[:, 0].copy()
    value = np.empty(n)
    t = best(lambda: K.offer_values(occ, product, interest, f32(np.ones(n)), cohort, emb, lp, rng.random(p) < 0.1,
                                    params, value), args.repeats)  # fmt: skip
    out["offer_values_per_s"] = n / t
    hat = np.empty(n)
    t = best(lambda: K.wtp_estimates(key, 7, occ, value, 0.3, hat), args.repeats)
    out["wtp_estimates_per_s"] = n / t
    price = lp[product]
    state = [f32(rng.random(n) * 5), np.zeros(n, np.int32), f32(np.zeros(n)), f32(np.zeros(n))]
    outs = [np.empty(n, np.int8), np.empty(n, np.bool_), np.empty(n, np.bool_), np.empty(n, np.float32),
            np.empty(n), np.empty(n)]  # fmt: skip
    user_f = [f32(rng.lognormal(np.log(6), 0.3, n)), f32(rng.random(n) * 0.5), f32(rng.random(n) * 0.3),
              f32(rng.random(n)), f32(np.full(n, 700.0)), f32(np.full(n, np.inf)), f32(np.full(n, np.inf))]  # fmt: skip
    t = best(lambda: K.purchase_step(key, 7, occ, product, price, value, 0.5, params, lp, rng.random(p) < 0.03,
                                     *user_f, *state, *outs), args.repeats)  # fmt: skip
    out["purchase_step_per_s"] = n / t
    out.update(users=n, products=p, threads=numba.get_num_threads(), cores=os.cpu_count())
    for k, v in out.items():
        print(f"{k:32s} {v:,.0f}" if isinstance(v, float) else f"{k:32s} {v}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()

"""Fleet throughput: the courier kernel per courier-step, and whole fleet runs per simulated hour.

Usage: ``python benchmarks/bench_fleet.py [--workers N] [--run-workers N] [--hours H] [--repeats R]``.

1. ``worker_step`` (the per-courier loop of every fleet step) on a real fleet state taken at the
   lunch peak of a run with ``--workers`` couriers: courier-steps per second, best of ``repeats``
   after a warm-up call (compilation excluded).
2. A whole fleet-only run (``simulate``) of ``--run-workers`` couriers for the first ``--hours``
   hours of a day with the ``nearest`` and ``rest_respecting`` dispatchers (orders scaled with the
   fleet, 20 a courier-day): wall seconds per simulated hour and the share of it spent in the kernels.

Prints one line per figure and ends with a JSON line.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time

import numba

from sim.engine import FeedWorld
from sim.kernels import fleet as K
from sim.scenario import scenario_from_dict


def _scenario(n_workers: int, kind: str, days: int = 1):
    return scenario_from_dict(
        {
            "clock": {"days": days},
            "population": {"n_users": 0},
            "fleet": {
                "n_workers": n_workers,
                "n_merchants": max(50, n_workers),
                "orders_per_day": 20.0 * n_workers,
                "city_km": max(10.0, (n_workers / 3.0) ** 0.5),  # constant courier density (3 per km^2)
            },
            "dispatcher": {"kind": kind},
        }
    )


def _world_at(sc, hour: int) -> FeedWorld:
    world = FeedWorld(sc)
    while world.tick < hour * world.ticks_per_day // 24:
        world.step()
    return world


def bench_worker_step(n_workers: int, repeats: int) -> dict:
    world = _world_at(_scenario(n_workers, "nearest"), 12)
    f = world.fleet
    w, o = f.workers, f.orders
    t0 = world.tick * world.scenario.clock.tick_minutes

    def run():
        ww, oo = copy.deepcopy(w), copy.deepcopy(o)
        start = time.perf_counter()
        K.worker_step(t0, f.dt, t0 % 1440.0, 1.0, f.params, *K.worker_step_arrays(ww, oo))
        return time.perf_counter() - start

    run()
    best = min(run() for _ in range(repeats))
    busy = int(((w.state >= 2) & (w.state <= 5)).sum())
    return {"worker_step_courier_steps_per_s": n_workers / best, "worker_step_busy_share": busy / n_workers}


def bench_run(n_workers: int, hours: int, kind: str) -> dict:
    sc = _scenario(n_workers, kind)
    world = FeedWorld(sc)
    world.step()  # compile / load the cache
    ticks = hours * world.ticks_per_day // 24
    kernel_s = 0.0
    original = K.worker_step

    def timed(*args):
        nonlocal kernel_s
        t = time.perf_counter()
        original(*args)
        kernel_s += time.perf_counter() - t

    K.worker_step = timed
    try:
        start = time.perf_counter()
        while world.tick < ticks:
            world.step()
        wall = time.perf_counter() - start
    finally:
        K.worker_step = original
    orders = world.fleet.orders.n
    sim_hours = (ticks - 1) * sc.clock.tick_minutes / 60.0  # the first tick ran before the clock started
    return {
        f"run_{kind}_seconds_per_sim_hour": wall / max(sim_hours, 1e-9),
        f"run_{kind}_kernel_share": kernel_s / wall,
        f"run_{kind}_orders": orders,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=100_000)
    ap.add_argument("--run-workers", type=int, default=10_000)
    ap.add_argument("--hours", type=int, default=14)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    out = {"workers": args.workers, "run_workers": args.run_workers, "hours": args.hours,
           "threads": numba.get_num_threads(), "cores": os.cpu_count()}  # fmt: skip
    out.update(bench_worker_step(args.workers, args.repeats))
    for kind in ("nearest", "rest_respecting"):
        out.update(bench_run(args.run_workers, args.hours, kind))
    for k, v in out.items():
        print(f"{k:40s} {v:,.3f}" if isinstance(v, float) else f"{k:40s} {v}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()

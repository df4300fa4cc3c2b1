"""The standard agent-step across sizes: catalogues of 10^4 and 10^5 items, 10^4 ... 10^7 users.

For each catalogue size the fused numba kernel (``sim.kernels.feed.profile_view_step``) is timed at
every population size, with every user viewing (the dense figure of ``bench_kernel.py``) and with a
random 6% viewing (the realistic figure: scattered rows, ~8 viewers per retrieval block), and the
pure-Mesa reference (``sim.mesa_reference``) at 10^3, 10^4 and 10^5 agents (it times a fixed number
of agent-steps, cycling over the agents; single-threaded Python, ~30 thousand a second, so a whole
step of 10^6 agents would take half a minute and its model seconds more to build). The ratio at
each catalogue size is against the fastest Mesa rate of that catalogue, measured in the same run.
Timing rules are those of ``bench_kernel.py`` (fastest sub-step; Mesa best of 5).

Usage::

    python benchmarks/bench_sizes.py                    # 10^4 .. 10^7 users (~2 minutes; 5.6 GiB peak at 10^7)
    python benchmarks/bench_sizes.py --max-users 1000000
    python benchmarks/bench_sizes.py --json benchmarks/results/sizes.json

Prints a table and ends with one JSON line (``rows``: one object per size and side).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numba as nb
from bench_kernel import bench_mesa, bench_numba, provenance, write_json

DIM, N_CAND, SLATE = 16, 100, 10
CATALOGUES = (10_000, 100_000)
POPULATIONS = (10_000, 100_000, 1_000_000, 10_000_000)
MESA_AGENTS = (1_000, 10_000, 100_000)


def _substeps(n_users: int) -> int:
    """Timed sub-steps: more for small populations (a sub-step of 10^4 users takes ~4 ms)."""
    return 20 if n_users <= 100_000 else (6 if n_users <= 1_000_000 else 3)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-users", type=int, default=POPULATIONS[-1])
    parser.add_argument("--mesa-steps", type=int, default=20_000)
    parser.add_argument("--json", default=None, help="also write the result to this file")
    args = parser.parse_args(argv)
    rows = []
    print(f"{'items':>8} {'users':>11} {'side':>6} {'dense /s':>12} {'realistic /s':>13} {'x Mesa':>7} {'seconds':>8}")
    for n_items in CATALOGUES:
        mesa = []
        for n_agents in MESA_AGENTS:
            t0 = time.perf_counter()
            rate = bench_mesa(n_agents, n_items, DIM, N_CAND, SLATE, args.mesa_steps)
            mesa.append(rate)
            rows.append({"side": "mesa", "n_items": n_items, "n_users": n_agents, "agent_steps_per_s": round(rate)})
            print(
                f"{n_items:>8,} {n_agents:>11,} {'mesa':>6} {rate:>12,.0f} {'':>13} {'':>7} {time.perf_counter() - t0:>8.1f}"
            )
        mesa_rate = max(mesa)
        for n_users in POPULATIONS:
            if n_users > args.max_users:
                continue
            t0 = time.perf_counter()
            dense, _, sparse, _ = bench_numba(n_users, n_items, DIM, N_CAND, SLATE, _substeps(n_users), pipeline=False)
            row = {
                "side": "numba", "n_items": n_items, "n_users": n_users, "agent_steps_per_s": round(dense),
                "realistic_agent_steps_per_s": round(sparse), "ratio_to_mesa": round(dense / mesa_rate, 1),
            }  # fmt: skip
            rows.append(row)
            print(
                f"{n_items:>8,} {n_users:>11,} {'numba':>6} {dense:>12,.0f} {sparse:>13,.0f} "
                f"{dense / mesa_rate:>7.1f} {time.perf_counter() - t0:>8.1f}"
            )
    result = {
        "rows": rows,
        "D": DIM,
        "n_candidates": N_CAND,
        "slate_size": SLATE,
        "n_threads": nb.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "numba": nb.__version__,
        **provenance(),
    }
    print(json.dumps(result))
    if args.json:
        write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()

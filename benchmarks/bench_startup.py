"""Start-up cost: how long ``recaudit run`` of a small scenario takes before it computes, cold and cached.

Usage: ``python benchmarks/bench_startup.py [--scenario PATH] [--repeats R]``.

Each measurement is a fresh process running ``recaudit run SCENARIO --users 50 --days 1`` (the feed) or the
rider scenario at one day (the fleet), with ``NUMBA_CACHE_DIR`` pointing at a directory of its own:

- cold: the cache directory is empty, so every kernel the run uses is compiled;
- cached: the same directory again, so the kernels load from numba's on-disk cache.

The wall time of the whole command is reported (interpreter start, imports, kernel compilation or loading,
the simulation and the writes); the simulated work at this size is a fraction of a second. Ends with a JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(args: list[str], cache: str) -> float:
    env = {**os.environ, "NUMBA_CACHE_DIR": cache}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "sim.cli", *args], cwd=ROOT, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def measure(label: str, args: list[str], repeats: int) -> dict:
    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as out:
        cold = _run([*args, "--out", out, "--no-progress"], cache)
        cached = min(_run([*args, "--out", out, "--no-progress"], cache) for _ in range(repeats))
    return {f"{label}_cold_s": cold, f"{label}_cached_s": cached}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", default="scenarios/baseline.toml")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    out = {"cores": os.cpu_count()}
    out.update(measure("feed", ["run", args.scenario, "--users", "50", "--days", "1"], args.repeats))
    out.update(measure("fleet", ["run", "scenarios/rider_fair.toml", "--days", "1"], args.repeats))
    for k, v in out.items():
        print(f"{k:24s} {v:.2f}" if isinstance(v, float) else f"{k:24s} {v}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()

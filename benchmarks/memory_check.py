"""Check the memory estimate (sim/memory.py) against measured peak resident memory.

Usage: ``python benchmarks/memory_check.py [--sizes 20000,100000] [--days 1] [--scenario PATH]``.
Each size runs ``recaudit``'s ``simulate`` in a fresh process and reads its peak RSS
(``resource.getrusage``); prints estimate, measurement and their ratio, then a JSON line.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = """
import json, resource, sys
from sim.engine import simulate
from sim.scenario import load_scenario
sc = load_scenario(sys.argv[1]).with_overrides(n_users=int(sys.argv[2]), days=int(sys.argv[3]))
simulate(sc)
print(json.dumps({"peak_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="20000,100000")
    ap.add_argument("--days", type=int, default=1)
    ap.add_argument("--scenario", default="scenarios/loyalty_pricing.toml")
    args = ap.parse_args()
    from sim.memory import estimate_memory
    from sim.scenario import load_scenario

    rows = []
    for n in (int(x) for x in args.sizes.split(",")):
        sc = load_scenario(args.scenario).with_overrides(n_users=n, days=args.days)
        est = estimate_memory(sc)["total"]
        out = subprocess.run([sys.executable, "-c", CHILD, args.scenario, str(n), str(args.days)],
                             capture_output=True, text=True, check=True)  # fmt: skip
        peak = json.loads(out.stdout.strip().splitlines()[-1])["peak_bytes"]
        rows.append(dict(users=n, days=args.days, estimate_mb=est / 2**20, peak_mb=peak / 2**20, ratio=est / peak))
        print(f"{n:>10,} users x {args.days} d: estimate {est / 2**20:8.0f} MB, peak {peak / 2**20:8.0f} MB, "
              f"estimate/peak {est / peak:.2f}")  # fmt: skip
    print(json.dumps(rows))


if __name__ == "__main__":
    main()

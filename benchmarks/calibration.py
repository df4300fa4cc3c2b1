"""Check the baseline scenario against the calibration facts of the reference notes.

Fact #1 (regulation-map.md §9; China Netcasting Services Association, 2025): average short-video use was
156 min/day in 2024. The behaviour defaults in ``sim/scenario.py`` were tuned by hand so that adults in
``scenarios/baseline.toml`` settle near that figure and stay there (no runaway habit loop).

Usage: ``python benchmarks/calibration.py [--users N] [--days N]``; ends with one JSON line.
"""

import argparse
import json
from pathlib import Path

from sim import load_scenario, simulate

TARGET_ADULT_MINUTES = 156.0  # CNSA 2025 (regulation-map.md §9, fact #1)

p = argparse.ArgumentParser()
p.add_argument("--users", type=int, default=None)
p.add_argument("--days", type=int, default=None)
args = p.parse_args()
sc = load_scenario(Path(__file__).resolve().parents[1] / "scenarios" / "baseline.toml")
sc = sc.with_overrides(n_users=args.users, days=args.days)
rec = simulate(sc)
daily = rec.daily()
last = daily[daily.day >= daily.day.max() - 2].groupby("cohort").minutes_mean.mean()
first = daily[daily.day == 0].set_index("cohort").minutes_mean
for cohort, v in last.items():
    print(f"{cohort:8s} day 1: {first[cohort]:6.1f} min/day   last 3 days: {v:6.1f} min/day")
out = {
    "adult_minutes_last3": round(float(last["adult"]), 1),
    "target_adult_minutes": TARGET_ADULT_MINUTES,
    "relative_error": round(float(last["adult"] / TARGET_ADULT_MINUTES - 1), 3),
    "n_users": sc.population.n_users,
    "days": sc.clock.days,
}
print(json.dumps(out))

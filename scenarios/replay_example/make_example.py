"""Write the synthetic example logs of the replay audit (``slates.parquet``, ``items.parquet``).

A made-up short-video service logged over two days (China Standard Time):
300 users (200 adults, 60 minors aged 9-17, 40 elderly; 20 adults with no
cohort or age in the log), 400 items in 12 categories, about five thousand
requests with 10-item slates. The logged system ranks by a personalised
engagement score, and for minors between 22:00 and 02:00 it pushes harmful,
long, hook-heavy items: the pattern an auditor should find (Art. 18). Minors
also have late-night sessions in the log (which the replay keeps: the log fixes
when requests happen).

Deterministic: one seeded generator; run it to rebuild the shipped files::

    python3 scenarios/replay_example/make_example.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

SEED = 20240601
N_ITEMS, N_CATEGORIES, DIM, SLATE = 400, 12, 16, 10
COHORT_SIZES = {"adult": 200, "minor": 60, "elderly": 40}
START = pd.Timestamp("2024-06-01 00:00", tz="Asia/Shanghai")
DAYS = 2
# start-hour weights of sessions by cohort (minors: after school and late at night)
HOURS = {
    "adult": np.array([1, 0, 0, 0, 0, 0, 1, 2, 3, 2, 2, 3, 4, 3, 2, 2, 2, 3, 4, 5, 5, 5, 4, 2], float),
    "minor": np.array([3, 2, 1, 0, 0, 0, 1, 1, 0, 0, 0, 0, 1, 0, 0, 0, 3, 4, 4, 4, 5, 5, 5, 5], float),
    "elderly": np.array([0, 0, 0, 0, 1, 2, 4, 5, 4, 3, 3, 2, 2, 2, 2, 2, 3, 3, 4, 4, 3, 2, 1, 0], float),
}
SESSIONS_PER_DAY = {"adult": 2.0, "minor": 2.5, "elderly": 1.5}


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def make_items(rng: np.random.Generator) -> pd.DataFrame:
    """Return the items table: embeddings around category centroids, 8% harmful (longer, more hook)."""
    centroids = _unit(rng.standard_normal((N_CATEGORIES, DIM)))
    category = rng.integers(0, N_CATEGORIES, N_ITEMS)
    emb = _unit(centroids[category] + 0.5 * rng.standard_normal((N_ITEMS, DIM)) / np.sqrt(DIM))
    harmful = rng.random(N_ITEMS) < 0.08
    length = np.clip(rng.lognormal(np.log(0.7), 0.6, N_ITEMS) * np.where(harmful, 3.0, 1.0), 0.1, 20.0)
    published = START - pd.Timedelta(days=3) + pd.to_timedelta(rng.uniform(0, 5 * 1440, N_ITEMS), unit="min")
    return pd.DataFrame(
        {
            "item_id": (10_000 + np.arange(N_ITEMS) * 7).astype(np.int64),
            "embedding": list(emb.astype(np.float32)),
            "category": (100 + category).astype(np.int64),
            "harmful": harmful,
            "length_minutes": length.astype(np.float32),
            "quality": rng.normal(0.0, 0.3, N_ITEMS).astype(np.float32),
            "hook": (rng.exponential(0.3, N_ITEMS) + 0.8 * harmful).astype(np.float32),
            "creator_id": rng.integers(0, 20, N_ITEMS).astype(np.int64),
            "published": published.round("s"),
        }
    )


def make_requests(rng: np.random.Generator, items: pd.DataFrame) -> pd.DataFrame:
    """Return the slates table: sessions of requests, each with the logged system's 10-item slate."""
    cohorts = np.repeat(list(COHORT_SIZES), list(COHORT_SIZES.values()))
    n = cohorts.size
    ages = np.where(cohorts == "adult", rng.integers(18, 60, n),
                    np.where(cohorts == "minor", rng.integers(9, 18, n), rng.integers(60, 81, n)))  # fmt: skip
    user_id = 5_000_000 + rng.permutation(n) * 13
    emb = np.stack(items["embedding"].to_numpy())
    taste = _unit(emb[rng.integers(0, N_ITEMS, n)] + 0.3 * rng.standard_normal((n, DIM)) / np.sqrt(DIM))
    rows = []
    for u in range(n):
        weights = HOURS[cohorts[u]] / HOURS[cohorts[u]].sum()
        for day in range(DAYS):
            for _ in range(rng.poisson(SESSIONS_PER_DAY[cohorts[u]])):
                start = day * 1440 + rng.choice(24, p=weights) * 60 + rng.uniform(0, 60)
                n_req = 1 + rng.geometric(1 / 5)
                t = start + np.cumsum(rng.exponential(1.0, n_req))
                rows += [(u, float(x)) for x in t if x < DAYS * 1440]
    req = pd.DataFrame(rows, columns=["u", "minute"])
    u = req["u"].to_numpy()
    hour = (req["minute"].to_numpy() // 60) % 24
    # the logged system: personalised engagement, and for minors late at night harmful and long items first
    score = 3.0 * taste[u] @ emb.T + 1.5 * items["hook"].to_numpy()[None, :]
    late_minor = (cohorts[u] == "minor") & ((hour >= 22) | (hour < 2))
    push = 3.0 * items["harmful"].to_numpy() + 0.8 * np.log(items["length_minutes"].to_numpy())
    score += late_minor[:, None] * push[None, :]
    score += rng.gumbel(0.0, 1.0, score.shape)
    top = np.argsort(-score, axis=1, kind="stable")[:, :SLATE]
    ids = items["item_id"].to_numpy()
    known = np.ones(n, dtype=bool)
    known[np.flatnonzero(cohorts == "adult")[:20]] = False  # 20 adults with no cohort or age in the log
    return pd.DataFrame(
        {
            "user_id": user_id[u].astype(np.int64),
            "time": (START + pd.to_timedelta(req["minute"], unit="min")).dt.round("s"),
            "slate": [list(r) for r in ids[top]],
            "cohort": pd.Series(np.where(known[u], cohorts[u], None), dtype="string"),
            "age": pd.Series(ages[u], dtype="Int16").where(known[u]),
        }
    )


def main(out_dir: Path | None = None) -> None:
    """Write the two tables into ``out_dir`` (default: this file's directory)."""
    out = Path(out_dir) if out_dir is not None else Path(__file__).resolve().parent
    rng = np.random.default_rng(SEED)
    items = make_items(rng)
    requests = make_requests(rng, items)
    item_schema = pa.schema([
        ("item_id", pa.int64()), ("embedding", pa.list_(pa.float32())), ("category", pa.int64()),
        ("harmful", pa.bool_()), ("length_minutes", pa.float32()), ("quality", pa.float32()),
        ("hook", pa.float32()), ("creator_id", pa.int64()), ("published", pa.timestamp("s", tz="Asia/Shanghai")),
    ])  # fmt: skip
    slate_schema = pa.schema([
        ("user_id", pa.int64()), ("time", pa.timestamp("s", tz="Asia/Shanghai")), ("slate", pa.list_(pa.int64())),
        ("cohort", pa.string()), ("age", pa.int16()),
    ])  # fmt: skip
    pq.write_table(pa.Table.from_pandas(items, schema=item_schema, preserve_index=False), out / "items.parquet")
    pq.write_table(pa.Table.from_pandas(requests, schema=slate_schema, preserve_index=False), out / "slates.parquet")
    print(f"wrote {out}/items.parquet ({len(items)} items), slates.parquet ({len(requests)} requests)")


if __name__ == "__main__":
    main()
